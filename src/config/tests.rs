//! Tests of parsing and resolving the configuration.

use super::*;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;

fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Args, String> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(args.iter().map(OsString::from), |k| env.get(k).cloned())
}

#[test]
fn flags_win_over_environment() {
    let a = parse_with(
        &["--name", "a1@127.0.0.1", "--interval=200"],
        &[
            ("PULSE_NAME", "b@h"),
            ("PULSE_INTERVAL_MS", "300"),
            ("PULSE_TIMEOUT_MS", "50"),
        ],
    )
    .expect("valid");
    assert_eq!(a.name.as_deref(), Some("a1@127.0.0.1"));
    assert_eq!(a.interval_ms, Some(200));
    assert_eq!(a.timeout_ms, Some(50));
    assert_eq!(a.command(), Command::Run);
}

#[test]
fn cookie_flag_beats_cookie_file_env() {
    let a = parse_with(&["--cookie", "c"], &[("PULSE_COOKIE_FILE", "/x")]).expect("valid");
    assert_eq!((a.cookie.as_deref(), a.cookie_file), (Some("c"), None));
    let a = parse_with(&[], &[("PULSE_COOKIE_FILE", "/x"), ("PULSE_COOKIE", "e")]).expect("valid");
    assert_eq!((a.cookie.as_deref(), a.cookie_file), (Some("e"), None));
}

#[test]
fn errors_name_the_flag() {
    let cases = [
        (&["--interval", "abc"][..], "--interval: expected"),
        (&["--port", "70000"], "--port: expected"),
        (&["--ip", "nope"], "--ip: expected an IP address"),
        (&["--bogus"], "unknown option '--bogus'"),
        (&["--name"], "--name: missing value"),
        (&["--interval", "5"], "interval: must be"),
        (&["--timeout", "2000"], "timeout: must be"),
        (&["--ttl", "100"], "ttl: must be"),
        (&["--name", "a@h", "--sname", "b"], "exclude"),
        (&["stray"], "unexpected argument"),
        (&["--epmd", "maybe"], "--epmd: expected auto, serve or off"),
        (&["--once"], "--once: only for watch"),
        (&["status", "--once"], "--once: only for watch"),
        (&["health", "--json"], "--json: only for status and watch"),
    ];
    for (args, want) in cases {
        let err = parse_with(args, &[]).expect_err(want);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let err = parse_with(&[], &[("PULSE_INTERVAL_MS", "x")]).expect_err("bad env");
    assert!(err.contains("PULSE_INTERVAL_MS"), "{err}");
}

#[test]
fn registry_forms_and_their_environment() {
    let a = parse_with(
        &["--registry", "dns:tasks.pulse"],
        &[("PULSE_SYNC_DIR", "/x")],
    )
    .expect("valid");
    assert_eq!(
        (a.sync_dir, a.dns.map(|d| d.name)),
        (None, Some("tasks.pulse".into()))
    );
    let a = parse_with(
        &[],
        &[("PULSE_REGISTRY", "dns:p:9100"), ("PULSE_SYNC_DIR", "/x")],
    )
    .expect("valid");
    assert_eq!(a.dns.and_then(|d| d.port), Some(9100));
    let a = parse_with(&["--sync-dir", "/d"], &[("PULSE_REGISTRY", "dns:p")]).expect("valid");
    assert_eq!((a.sync_dir, a.dns), (Some("/d".into()), None));
    let a = parse_with(
        &["--registry=dir:/r", "--dns-server", "127.0.0.1:5353"],
        &[],
    )
    .expect("valid");
    assert_eq!(a.sync_dir, Some("/r".into()));
    assert_eq!(a.dns_server, Some(SocketAddr::from(([127, 0, 0, 1], 5353))));
    let a = parse_with(&[], &[("PULSE_DNS_SERVER", "127.0.0.2")]).expect("valid");
    assert_eq!(a.dns_server, Some(SocketAddr::from(([127, 0, 0, 2], 53))));
    for (args, want) in [
        (
            &["--registry", "nfs:x"][..],
            "--registry: expected dir:PATH",
        ),
        (&["--registry", "dns:"], "--registry: 'dns:'"),
        (&["--registry", "dns:x:0"], "bad port"),
        (&["--dns-server", "nope"], "--dns-server: expected"),
    ] {
        let err = parse_with(args, &[]).expect_err(want);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let err = parse_with(&[], &[("PULSE_REGISTRY", "x")]).expect_err("bad env");
    assert!(err.contains("PULSE_REGISTRY"), "{err}");
}

#[test]
fn subcommands() {
    assert_eq!(
        parse_with(&["status"], &[]).expect("ok").command(),
        Command::Status
    );
    assert_eq!(
        parse_with(&["health", "--cookie", "c"], &[])
            .expect("ok")
            .command(),
        Command::Health
    );
    assert_eq!(
        parse_with(&["--help"], &[]).expect("ok").command(),
        Command::Help
    );
    let a = parse_with(
        &["watch", "--once", "--json"],
        &[("NO_COLOR", "1"), ("COLUMNS", "120")],
    )
    .expect("ok");
    assert_eq!(a.command(), Command::Watch);
    assert!(a.once && a.json && a.no_color);
    assert_eq!(a.columns, Some(120));
    // An empty NO_COLOR means nothing; a bad COLUMNS is ignored.
    let a = parse_with(&["watch"], &[("NO_COLOR", ""), ("COLUMNS", "wide")]).expect("ok");
    assert!(!a.no_color && a.columns.is_none());
}

#[test]
fn resolve_takes_the_address_from_the_name() {
    let a = parse_with(&["--name", "a1@127.0.0.3", "--cookie", "c"], &[]).expect("ok");
    let c = a.resolve().expect("resolves");
    assert_eq!(c.ip.to_string(), "127.0.0.3");
    assert_eq!(c.timeout, Duration::from_millis(500));
    assert_eq!(c.ttl, Duration::from_millis(5000));
}

#[test]
fn default_name_is_md5_at_address() {
    let a = parse_with(&["--ip", "127.0.0.9", "--cookie", "c"], &[]).expect("ok");
    let c = a.resolve().expect("resolves");
    let (alive, host) = c.name.as_str().split_once('@').expect("has @");
    assert_eq!((alive.len(), host), (10, "127.0.0.9"));
}

#[test]
fn cookie_file_is_created_once_and_reused() {
    let dir = std::env::temp_dir().join(format!("pulse-cookie-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let home = dir.to_string_lossy().to_string();
    let resolve = || {
        parse_with(&["--name", "a@127.0.0.1"], &[("HOME", &home)])
            .and_then(|a| a.resolve())
            .expect("resolves")
            .cookie
    };
    let first = resolve();
    assert_eq!(first.len(), 20);
    assert_eq!(resolve(), first);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.join(".erlang.cookie"))
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);
    // Readable by its group or by others: refused, as Erlang refuses it.
    for loose in [0o440, 0o404, 0o600 | 0o002] {
        let file = dir.join(".erlang.cookie");
        fs::set_permissions(&file, fs::Permissions::from_mode(loose)).expect("chmod");
        let refused = parse_with(&["--name", "a@127.0.0.1"], &[("HOME", &home)])
            .and_then(|a| a.resolve())
            .expect_err("loose cookie file");
        assert!(
            refused.contains("must be accessible by owner only"),
            "{refused}"
        );
        let given = parse_with(
            &[
                "--name",
                "a@127.0.0.1",
                "--cookie-file",
                &file.to_string_lossy(),
            ],
            &[],
        )
        .and_then(|a| a.resolve());
        assert!(given.is_err(), "{loose:o}");
    }
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn no_cookie_anywhere_is_a_clear_error() {
    let a = parse_with(&["--name", "a@127.0.0.1"], &[]).expect("ok");
    assert!(a.resolve().expect_err("no cookie").contains("no cookie"));
}

#[test]
fn a_bad_number_says_what_would_do() {
    for (args, want) in [
        (
            &["--port", "99999"][..],
            "--port: expected a port number from 0 to 65535, got '99999'",
        ),
        (&["--port", "-1"], "from 0 to 65535"),
        (
            &["--interval", "abc"],
            "--interval: expected milliseconds as a whole number",
        ),
        (
            &["--ttl", "99999999999999999999999"],
            "--ttl: 99999999999999999999999 ms is out of range",
        ),
    ] {
        let err = parse_with(args, &[]).expect_err(want);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let err = parse_with(&[], &[("ERL_EPMD_PORT", "70000")]).expect_err("bad port");
    assert!(
        err.starts_with("ERL_EPMD_PORT: expected a port number"),
        "{err}"
    );
}

#[test]
fn a_bad_cookie_names_its_file_and_status_makes_no_cookie_file() {
    let dir = std::env::temp_dir().join(format!("pulse-cookie-status-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let home = dir.to_string_lossy().to_string();
    let file = dir.join(".erlang.cookie");
    for command in ["status", "health"] {
        let err = parse_with(&[command, "--ip", "127.0.0.1"], &[("HOME", &home)])
            .and_then(|a| a.resolve())
            .expect_err("no cookie file, none made");
        assert!(
            err.contains(&file.display().to_string()) && err.contains("--cookie"),
            "{err}"
        );
        assert!(!file.exists(), "{command} made {}", file.display());
    }
    // A node makes it, and says where its cookie came from.
    let c = parse_with(&["--name", "a@127.0.0.1"], &[("HOME", &home)])
        .and_then(|a| a.resolve())
        .expect("made");
    assert_eq!(c.cookie_file.as_deref(), Some(file.as_path()));
    let c = parse_with(&["status", "--ip", "127.0.0.1"], &[("HOME", &home)])
        .and_then(|a| a.resolve())
        .expect("read");
    assert_eq!(c.cookie_file.as_deref(), Some(file.as_path()));
    let err = parse_with(&["--name", "a@127.0.0.1", "--cookie", ""], &[])
        .and_then(|a| a.resolve())
        .expect_err("empty");
    assert!(err.contains("it is empty"), "{err}");
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn an_s3_registry_has_its_own_period() {
    let a = parse_with(&["--registry", "s3://bkt"], &[("PULSE_SYNC_DIR", "/x")]).expect("valid");
    let at = a.s3.clone().expect("s3");
    assert_eq!(
        (at.bucket.as_str(), at.prefix.as_str()),
        ("bkt", "sync_dir/")
    );
    assert_eq!((a.sync_dir.clone(), a.dns.clone()), (None, None));
    // Each period is a billed PUT and LIST: 10 s, and a TTL of 3 periods.
    assert_eq!((a.registry_period_ms(), a.ttl_ms()), (10_000, 30_000));
    let a = parse_with(
        &["--interval", "300"],
        &[
            ("PULSE_REGISTRY", "s3://bkt/p"),
            ("PULSE_REGISTRY_PERIOD_MS", "300"),
        ],
    )
    .expect("valid");
    assert_eq!(a.s3.as_ref().map(|l| l.prefix.as_str()), Some("p/"));
    assert_eq!((a.registry_period_ms(), a.ttl_ms()), (300, 1500));
    // The directory and DNS keep the interval.
    let a = parse_with(&["--registry", "dir:/r", "--interval", "200"], &[]).expect("valid");
    assert_eq!((a.registry_period_ms(), a.ttl_ms()), (200, 1000));
    // The last registry given wins.
    let a = parse_with(&["--registry", "s3://bkt", "--sync-dir", "/d"], &[]).expect("valid");
    assert_eq!((a.s3, a.sync_dir), (None, Some("/d".into())));
    for (args, want) in [
        (
            &[
                "--registry",
                "s3://bkt",
                "--registry-period",
                "500",
                "--interval",
                "1000",
            ][..],
            "registry period: must be the interval (1000 ms)",
        ),
        (
            &["--registry", "s3://bkt", "--ttl", "15000"],
            "ttl: must be at least two registry periods (20000 ms)",
        ),
        (&["--registry", "s3://"], "--registry"),
        (&["--registry-period", "x"], "--registry-period: expected"),
    ] {
        let err = parse_with(args, &[]).expect_err(want);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn dns_names_with_and_without_a_port() {
    let n: DnsName = "tasks.pulse".parse().expect("valid");
    assert_eq!((n.name.as_str(), n.port), ("tasks.pulse", None));
    let n: DnsName = "pulse.default.svc.cluster.local:9100"
        .parse()
        .expect("valid");
    assert_eq!(n.port, Some(9100));
    assert_eq!(n.to_string(), "dns:pulse.default.svc.cluster.local:9100");
    for bad in ["", "a b", "x:0", "x:port", "x:70000", "a/b"] {
        assert!(bad.parse::<DnsName>().is_err(), "{bad}");
    }
}

#[test]
fn config_errors_say_why_in_the_same_words() {
    let why = |name: &str, cookie: &str| Config::for_node(name, cookie).expect_err(name);
    assert_eq!(why("a@h", ""), ConfigError::Cookie(CookieError::Empty),);
    assert_eq!(
        why("a@h", "").to_string(),
        "bad cookie: the cookie must be 1 to 255 printable characters, but it is empty"
    );
    let long = "c".repeat(256);
    assert_eq!(
        why("a@h", &long),
        ConfigError::Cookie(CookieError::TooLong(256))
    );
    assert_eq!(
        CookieError::TooLong(256).to_string(),
        "the cookie must be 1 to 255 printable characters, but it has 256 bytes"
    );
    assert_eq!(
        why("a@h", "c\n"),
        ConfigError::Cookie(CookieError::ControlCharacter)
    );
    assert_eq!(
        CookieError::ControlCharacter.to_string(),
        "the cookie must be 1 to 255 printable characters, but it holds a control character"
    );
    // The name is judged first, and keeps what was given.
    let bad = why("bad", "");
    assert_eq!(
        bad,
        ConfigError::Name("bad".into(), NameError::NoHost("bad".into()))
    );
    assert_eq!(
        bad.to_string(),
        "bad node name \"bad\": 'bad' is not a node name (expected name@host)"
    );
    // A cookie file's cookie is named with its file.
    let dir = std::env::temp_dir().join(format!("pulse-cookie-empty-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("cookie");
    fs::write(&file, "\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).expect("chmod");
    let path = file.display().to_string();
    let err = parse_with(&["--name", "a@127.0.0.1", "--cookie-file", &path], &[])
        .and_then(|a| a.resolve())
        .expect_err("empty");
    assert_eq!(
        err,
        format!("the cookie in {path} must be 1 to 255 printable characters, but it is empty")
    );
    fs::remove_dir_all(&dir).expect("cleanup");
}
