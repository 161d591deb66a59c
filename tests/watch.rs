//! `pulse watch` and `pulse status --json` on logs and registries written by
//! real nodes: the matrix and its glyphs, colour only on a terminal (checked
//! under tmux), JSON that parses for any name or reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::util::{
    BIN, Node, TempDir, dump_all, free_port, parse_status, pulse_cmd, require, wait_for,
    wait_until, write_record,
};

const UP: char = '●';
const DOWN: char = '✗';
const UNLISTED: char = '·';

fn node_args() -> [&'static str; 8] {
    // Each ping gets the whole interval: the frames compare exact glyphs.
    [
        "--epmd",
        "off",
        "--interval",
        "300",
        "--timeout",
        "300",
        "--ttl",
        "60000",
    ]
}

/// `pulse watch --once` on the dir's log, with `extra` arguments.
fn watch_once(dir: &TempDir, extra: &[&str]) -> Output {
    pulse_cmd(dir)
        .args(["watch", "--once", "--interval", "300", "--log-file"])
        .arg(dir.log_file())
        .args(extra)
        .output()
        .expect("run pulse watch")
}

/// The glyphs of the matrix row of `node` in a text frame.
fn row_glyphs(text: &str, node: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(node))?;
    Some(
        line.chars()
            .filter(|c| [UP, DOWN, UNLISTED].contains(c))
            .collect(),
    )
}

/// The last status line of `node` in the dir's shared log, parsed.
fn last_in_log(dir: &TempDir, node: &str) -> Option<BTreeMap<String, bool>> {
    let log = std::fs::read_to_string(dir.log_file()).ok()?;
    log.lines().rev().find_map(|l| parse_status(l, node))
}

/// Starts nodes, waits until each one's line in the shared log (what watch
/// reads) sees all alive, kills the last with SIGKILL and waits until the
/// others' lines in the log list it as false.
fn cluster_with_one_killed(dir: &TempDir, names: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(dir, n, "c", &node_args()))
        .collect();
    let all_alive = |s: BTreeMap<String, bool>| {
        s.len() == names.len() && names.iter().all(|n| s.get(*n) == Some(&true))
    };
    wait_for(
        "every node's line in the log to see all alive",
        Duration::from_secs(20),
        &nodes.iter().collect::<Vec<_>>(),
        || {
            names
                .iter()
                .all(|n| last_in_log(dir, n).is_some_and(all_alive))
        },
    );
    let killed = names[names.len() - 1];
    nodes[names.len() - 1].signal("KILL");
    let _ = nodes[names.len() - 1].wait_exit(Duration::from_secs(5));
    // The killed node may have died between its stdout and its log line:
    // whatever it wrote last, it must still list everyone as alive.
    let last = last_in_log(dir, killed);
    assert!(last.clone().is_some_and(all_alive), "{last:?}");
    let all: Vec<&Node> = nodes.iter().collect();
    wait_for(
        "the others' lines in the log to list the killed node as false",
        Duration::from_secs(20),
        &all,
        || {
            names[..names.len() - 1]
                .iter()
                .all(|n| last_in_log(dir, n).is_some_and(|s| s.get(killed) == Some(&false)))
        },
    );
    nodes
}

#[test]
fn watch_once_draws_three_nodes_with_one_killed() {
    let dir = TempDir::new("watch3");
    let names = ["w1@127.0.0.41", "w2@127.0.0.42", "w3@127.0.0.43"];
    let nodes = cluster_with_one_killed(&dir, &names);
    let all: Vec<&Node> = nodes.iter().collect();
    let out = watch_once(&dir, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let why = format!("{text}\n{}", dump_all(&all));
    // Some link is down: exit 1, as for status.
    assert_eq!(out.status.code(), Some(1), "{why}");
    assert!(!text.contains('\x1b'), "colour on a pipe: {why}");
    let want = [
        ("w1@127.0.0.41", "●●✗"),
        ("w2@127.0.0.42", "●●✗"),
        ("w3@127.0.0.43", "●●●"),
    ];
    for (node, glyphs) in want {
        assert_eq!(row_glyphs(&text, node).as_deref(), Some(glyphs), "{why}");
    }
    // The killed node stopped logging: its row turns stale (3 intervals),
    // and only the live rows count.
    let mut last = String::new();
    let stale = wait_until(Duration::from_secs(15), || {
        last = String::from_utf8_lossy(&watch_once(&dir, &[]).stdout).into_owned();
        last.lines()
            .any(|l| l.starts_with("w3@127.0.0.43") && l.ends_with("stale"))
    });
    assert!(stale, "{last}\n{}", dump_all(&all));
    assert!(
        last.ends_with("3 nodes, 4/6 links up, 1 stale row\n"),
        "{last}"
    );
    assert!(last.contains("node w3@127.0.0.43 is down: "), "{last}");
    // The JSON frame says the same.
    let out = watch_once(&dir, &["--json"]);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{json}");
    if !require(
        "python3",
        "watch_once_draws_three_nodes_with_one_killed (JSON part)",
    ) {
        return;
    }
    let rows = python(
        &json,
        "import json,sys\n\
         f = json.load(sys.stdin)\n\
         for r in f['rows']:\n\
         \x20   g = ''.join({True: '●', False: '✗'}.get(r['links'].get(n), '·') for n in f['nodes'])\n\
         \x20   print(r['node'], g, r['stale'])\n\
         print(f['links_up'], f['links'], f['stale_rows'])",
    );
    assert_eq!(
        rows, "w1@127.0.0.41 ●●✗ False\nw2@127.0.0.42 ●●✗ False\nw3@127.0.0.43 ●●● True\n4 6 1\n",
        "{json}"
    );
}

/// Runs a python3 program on `input`; its stdout.
fn python(input: &str, program: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed python3");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "python3 rejected:\n{input}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn trim_lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim_end).collect()
}

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux(String);

impl Tmux {
    fn new() -> Tmux {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        Tmux(format!("pulse-test-{}-{n}", std::process::id()))
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.0);
        cmd
    }

    /// Runs `shell` in a fresh 160×50 window.
    fn run(&self, shell: &str) {
        let ok = self
            .cmd()
            .args(["new-session", "-d", "-x", "160", "-y", "50", shell])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux new-session failed for {shell}");
    }

    /// The screen, with colours as escape sequences.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-e"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn watch_colours_only_on_a_terminal() {
    if !require("tmux", "watch_colours_only_on_a_terminal") {
        return;
    }
    let dir = TempDir::new("watchtty");
    let names = ["t1@127.0.0.44", "t2@127.0.0.45"];
    let nodes = cluster_with_one_killed(&dir, &names);
    let all: Vec<&Node> = nodes.iter().collect();
    let log = quote(&dir.log_file().to_string_lossy());
    let watch = format!("{} watch --interval 300 --log-file {log}", quote(BIN));
    let on_terminal = |env: &str, once: &str| {
        let tmux = Tmux::new();
        tmux.run(&format!("env {env} {watch} {once}; echo __END__; sleep 60"));
        let mut screen = String::new();
        let done = wait_until(Duration::from_secs(10), || {
            screen = tmux.screen();
            screen.contains("links up") && (once.is_empty() || screen.contains("__END__"))
        });
        assert!(done, "{screen}\n{}", dump_all(&all));
        (tmux, screen)
    };
    let green = "\x1b[32m";
    let red = "\x1b[31m";
    let (_tmux, screen) = on_terminal("-u NO_COLOR", "--once");
    let plain: String = strip_escapes(&screen);
    assert_eq!(
        row_glyphs(&plain, names[0]).as_deref(),
        Some("●✗"),
        "{plain}"
    );
    assert!(screen.contains(&format!("{green}{UP}")), "{screen:?}");
    assert!(screen.contains(red), "{screen:?}");
    // NO_COLOR: the same glyphs, no colour.
    let (_tmux, screen) = on_terminal("NO_COLOR=1", "--once");
    assert!(
        !screen.contains(green) && !screen.contains(red),
        "{screen:?}"
    );
    let plain = strip_escapes(&screen);
    assert_eq!(
        row_glyphs(&plain, names[0]).as_deref(),
        Some("●✗"),
        "{plain}"
    );
    // Live, frames redraw in place: once the killed node's row shows a
    // new age (a later frame), the screen still holds one frame.
    let (tmux, first) = on_terminal("NO_COLOR=1", "");
    let age_row = |screen: &str| {
        screen
            .lines()
            .find(|l| l.starts_with(names[1]))
            .map(str::to_string)
    };
    let before = age_row(&first);
    let mut screen = String::new();
    let redrawn = wait_until(Duration::from_secs(10), || {
        screen = tmux.screen();
        age_row(&screen).is_some() && age_row(&screen) != before
    });
    assert!(redrawn, "no new frame: {screen}\n{}", dump_all(&all));
    assert_eq!(screen.matches("pulse watch").count(), 1, "{screen}");
    assert_eq!(screen.matches("links up").count(), 1, "{screen}");
}

/// The text without its escape sequences (`ESC [ … letter`).
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn status_json_parses_and_matches_the_table() {
    if !require("python3", "status_json_parses_and_matches_the_table") {
        return;
    }
    let dir = TempDir::new("statusjson");
    let names = ["j1@127.0.0.46", "j2@127.0.0.47"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(&dir, n, "c", &node_args()))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_for("both to see both", Duration::from_secs(20), &all, || {
        nodes.iter().all(|n| n.sees_all_alive(&names))
    });
    // A registered node that does not answer.
    write_record(
        &dir.sync_dir(),
        "gone@127.0.0.48",
        &format!("127.0.0.48:{}", free_port()),
    );
    let status = |json: bool| {
        let mut cmd = pulse_cmd(&dir);
        cmd.args([
            "status",
            "--ip",
            "127.0.0.1",
            "--cookie",
            "c",
            "--epmd",
            "off",
        ])
        .arg("--sync-dir")
        .arg(dir.sync_dir());
        if json {
            cmd.arg("--json");
        }
        cmd.output().expect("run status")
    };
    let table = status(false);
    let json = status(true);
    let table_text = String::from_utf8_lossy(&table.stdout).into_owned();
    let json_text = String::from_utf8_lossy(&json.stdout).into_owned();
    let why = format!("{table_text}\n{json_text}\n{}", dump_all(&all));
    // One node is down: both exit 1.
    assert_eq!(table.status.code(), Some(1), "{why}");
    assert_eq!(json.status.code(), Some(1), "{why}");
    let from_json = python(
        &json_text,
        "import json,sys\n\
         for n in json.load(sys.stdin)['nodes']:\n\
         \x20   assert (n['rtt_ms'] is None) != n['alive'], n\n\
         \x20   assert n['heartbeat_age_ms'] >= 0, n\n\
         \x20   print(n['name'], n['address'], str(n['alive']).lower(), n['reason'] or '')",
    );
    let from_table: String = table_text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // NAME ADDRESS ALIVE RTT AGE REASON...
            format!("{} {} {} {}\n", f[0], f[1], f[2], f[5..].join(" "))
        })
        .collect();
    assert_eq!(trim_lines(&from_json), trim_lines(&from_table), "{why}");
    assert!(
        from_json.contains("gone@127.0.0.48 127.0.0.48:")
            && from_json.contains("connection refused"),
        "{why}"
    );
}

#[test]
fn json_stays_valid_for_any_name_or_reason() {
    if !require("python3", "json_stays_valid_for_any_name_or_reason") {
        return;
    }
    // Every string the writer can meet, straight through python's parser.
    let nasty: String = (0u32..0x80)
        .chain([0x7f, 0xe9, 0x2028, 0x2029, 0x202e, 0x1f600])
        .filter_map(char::from_u32)
        .collect();
    let mut doc = String::new();
    pulse::internals::json_string(&mut doc, &nasty);
    let back = python(&doc, "import json,sys; print(ascii(json.load(sys.stdin)))");
    let want = python(
        &format!("{:?}", nasty.chars().map(u32::from).collect::<Vec<_>>()),
        "import sys; print(ascii(''.join(map(chr, eval(sys.stdin.read())))))",
    );
    assert_eq!(back, want);
    // A real node's log, then lines anyone could append.
    let dir = TempDir::new("watchjson");
    let node = Node::start(&dir, "h1@127.0.0.49", "c", &node_args());
    wait_for(
        "its first status line",
        Duration::from_secs(20),
        &[&node],
        || node.sees_all_alive(&["h1@127.0.0.49"]),
    );
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.log_file())
        .expect("open log");
    // Stamped as the node's own lines are: the log has no dates, so a line
    // half a day off would read as from another day and hide the node.
    let text = std::fs::read_to_string(dir.log_file()).expect("read log");
    let stamp = text
        .lines()
        .last()
        .and_then(|l| l.get(..12))
        .expect("a line");
    let hostile = [
        format!(
            "{stamp} [WARN] node x@h is down: \"quoted\" \\ back\u{1b}[2J\u{7}\ttab \u{202e}evil\n"
        ),
        format!("{stamp} [info] q\\@h[\"a\\\"b@h\": true, \"c\\\\d@h\": false]\n"),
        "not a log line at all \u{0}\u{1}\n".to_string(),
    ];
    for line in &hostile {
        log.write_all(line.as_bytes()).expect("append");
    }
    drop(log);
    let out = watch_once(&dir, &["--json"]);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let parsed = python(
        &json,
        "import json,sys\n\
         f = json.load(sys.stdin)\n\
         print(ascii([e['detail'] for e in f['events'] if e['node'] == 'x@h']))\n\
         print(ascii(sorted(f['nodes'])))",
    );
    assert_eq!(
        parsed,
        "['\"quoted\" \\\\ back\\x1b[2J\\x07\\ttab \\u202eevil']\n\
         ['a\"b@h', 'c\\\\d@h', 'h1@127.0.0.49', 'q\\\\@h']\n",
        "{json}"
    );
    // The text on a pipe carries none of the control characters.
    let out = watch_once(&dir, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(['\x1b', '\x07', '\u{202e}', '\0']),
        "{text:?}"
    );
    assert!(text.contains("back\\u{1b}[2J\\u{7}"), "{text}");
}

#[test]
fn watch_reads_the_recipes_elixir_nodes_too() {
    let test = "watch_reads_the_recipes_elixir_nodes_too";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("watchmixed");
    let epmd = crate::util::erlang::Epmd::start();
    let names = ["ew1@127.0.0.1", "pw1@127.0.0.1"];
    let elixir = crate::mixed::start_recipe_node(&dir, names[0], epmd.1);
    let pulse = crate::mixed::pulse_with_epmd(&dir, names[1], "cookie", epmd.1, &[]);
    let all = [&elixir, &pulse];
    wait_for("both to see both", Duration::from_secs(40), &all, || {
        all.iter().all(|n| n.sees_all_alive(&names))
    });
    let out = pulse_cmd(&dir)
        .args(["watch", "--once", "--log-file"])
        .arg(dir.log_file())
        .output()
        .expect("run pulse watch");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let why = format!("{text}\n{}", dump_all(&all));
    for node in names {
        assert_eq!(row_glyphs(&text, node).as_deref(), Some("●●"), "{why}");
    }
    assert!(text.ends_with("2 nodes, 4/4 links up\n"), "{why}");
    assert_eq!(out.status.code(), Some(0), "{why}");
}

#[test]
fn watch_once_without_a_log_is_a_one_line_error() {
    let dir = TempDir::new("watchnolog");
    let out = watch_once(&dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("pulse: cannot read log file "), "{err}");
    assert!(out.stdout.is_empty());
    // Live, it keeps trying; a JSON stream stays JSON, the trouble goes to
    // stderr once, and SIGINT ends it with 0.
    let mut cmd = pulse_cmd(&dir);
    cmd.args(["watch", "--json", "--interval", "50", "--log-file"])
        .arg(dir.log_file());
    let mut watch = Node::spawn("watch", cmd);
    wait_for("five frames", Duration::from_secs(10), &[&watch], || {
        watch.output().len() >= 6
    });
    watch.signal("INT");
    let code = watch
        .wait_exit(Duration::from_secs(5))
        .and_then(|s| s.code());
    assert_eq!(code, Some(0), "{}", watch.dump());
    let lines = watch.output();
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("pulse: ")).collect();
    assert_eq!(errors.len(), 1, "{}", watch.dump());
    assert!(errors[0].contains("(retrying)"), "{}", watch.dump());
    let frames: Vec<&String> = lines.iter().filter(|l| !l.starts_with("pulse: ")).collect();
    assert!(
        frames
            .iter()
            .all(|l| l.starts_with("{\"nodes\": [], \"rows\": []") && l.ends_with('}')),
        "{}",
        watch.dump()
    );
}
