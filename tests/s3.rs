//! The S3 registry's store client against a real S3 server (Garage, started
//! on 127.0.0.1 by each test) and against hostile fake stores: put, list
//! (every page), get (conditional), create (take a name), delete; wrong
//! credentials, a missing bucket, throttling, garbage, a hung store.
//!
//! The client is private to the crate, so it is compiled here from its
//! source, as it is. The second half runs `pulse` nodes with
//! `--registry s3://…` on the same Garage: they converge, join, leave and
//! expire; wrong credentials stop them at start; junk objects (also among
//! 2,500 objects, three listing pages), a store outage, a store that
//! accepts and never answers (behind a switchable proxy) and a key revoked
//! at run time remove nobody and delay no status line; of two nodes started
//! under one name at once, one runs.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::garage::Garage;

#[path = "../src/s3/mod.rs"]
#[allow(dead_code, unused_imports)] // the tests use part of the module
mod store;

use store::{Client, Error, Got, Location, Settings};

/// A request's deadline: far more than loopback needs.
fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn client(vars: &[(&'static str, String)], registry: &str) -> Client {
    let settings = Settings::from_vars(vars).expect("settings");
    let location = Location::parse(registry, "sync_dir/").expect("location");
    Client::new(&location, &settings).expect("client")
}

fn record(name: &str, port: u16) -> String {
    format!("pulse 1\nname {name}\naddr 127.0.0.1:{port}\nheartbeat 1795474399123\n")
}

#[test]
fn put_list_get_delete() {
    let Some(garage) = Garage::start("s3::put_list_get_delete", "pulse") else {
        return;
    };
    let c = client(&garage.vars(), "s3://pulse");
    c.check(soon())
        .unwrap_or_else(|e| panic!("check: {e}{}", garage.dump()));
    assert_eq!(c.list(soon()), Ok(vec![]), "an empty prefix");

    let name = "a1@127.0.0.1";
    let written = c
        .put(name, record(name, 4001).as_bytes(), soon())
        .expect("put");
    assert!(!written.etag.is_empty(), "{written:?}");
    assert!(written.date.is_some(), "{written:?}");

    let listed = c.list(soon()).expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].name, name);
    assert_eq!(listed[0].etag, written.etag);
    assert_eq!(listed[0].size, record(name, 4001).len() as u64);
    let age = listed[0].age.expect("an age by the store's clock");
    assert!(age < Duration::from_secs(5), "{age:?}");

    let Ok(Got::Body(got)) = c.get(name, None, soon()) else {
        panic!("get");
    };
    assert_eq!(got.bytes, record(name, 4001).as_bytes());
    assert_eq!(got.etag, written.etag);
    assert!(
        got.age.is_some_and(|a| a < Duration::from_secs(5)),
        "{got:?}"
    );
    // Unchanged since its entity tag: no body.
    assert_eq!(c.get(name, Some(&got.etag), soon()), Ok(Got::NotModified));

    // A heartbeat that writes the same bytes keeps the entity tag (no
    // reader fetches the body again) and moves LastModified on.
    thread::sleep(Duration::from_millis(1100));
    let same = c
        .put(name, record(name, 4001).as_bytes(), soon())
        .expect("put");
    assert_eq!(same.etag, written.etag);
    let relisted = c.list(soon()).expect("list");
    assert_eq!(relisted[0].etag, written.etag);
    assert!(
        relisted[0].last_modified > listed[0].last_modified,
        "{relisted:?} {listed:?}"
    );
    assert_eq!(c.get(name, Some(&got.etag), soon()), Ok(Got::NotModified));

    // A changed record: a new entity tag, and the body again.
    let again = c
        .put(name, record(name, 4002).as_bytes(), soon())
        .expect("put");
    assert_ne!(again.etag, written.etag);
    let Ok(Got::Body(changed)) = c.get(name, Some(&got.etag), soon()) else {
        panic!("a changed object is fetched");
    };
    assert_eq!(changed.bytes, record(name, 4002).as_bytes());

    c.delete(name, soon()).expect("delete");
    assert_eq!(c.list(soon()), Ok(vec![]));
    assert_eq!(c.get(name, None, soon()), Ok(Got::Missing));
    assert_eq!(c.delete(name, soon()), Ok(()), "deleting what is gone");
}

#[test]
fn create_is_refused_on_an_existing_key() {
    let Some(garage) = Garage::start("s3::create_is_refused_on_an_existing_key", "pulse") else {
        return;
    };
    let c = client(&garage.vars(), "s3://pulse/nodes");
    let name = "a1@127.0.0.1";
    let mine = record(name, 4001);
    c.create(name, mine.as_bytes(), soon())
        .unwrap_or_else(|e| panic!("create: {e}{}", garage.dump()));
    // A second node under the same name loses, and our object stays ours.
    assert_eq!(
        c.create(name, record(name, 5001).as_bytes(), soon()),
        Err(Error::PreconditionFailed)
    );
    let Ok(Got::Body(held)) = c.get(name, None, soon()) else {
        panic!("get");
    };
    assert_eq!(held.bytes, mine.as_bytes());
    // Once it is deleted (a graceful leave), the name is free again.
    c.delete(name, soon()).expect("delete");
    c.create(name, record(name, 5001).as_bytes(), soon())
        .expect("create after a leave");
}

#[test]
fn a_listing_follows_every_page() {
    let Some(garage) = Garage::start("s3::a_listing_follows_every_page", "pulse") else {
        return;
    };
    let c = client(&garage.vars(), "s3://pulse");
    const N: usize = 2500;
    // Four writers; S3 pages hold 1,000 keys, so three pages.
    thread::scope(|s| {
        for part in 0..4 {
            let c = &c;
            s.spawn(move || {
                for i in (part..N).step_by(4) {
                    let name = format!("n{i:04}@10.0.{}.{}", i / 250, i % 250);
                    c.put(&name, record(&name, 4000).as_bytes(), soon())
                        .unwrap_or_else(|e| panic!("put {name}: {e}"));
                }
            });
        }
    });
    // What is not directly under the prefix is not listed.
    let other = client(&garage.vars(), "s3://pulse/elsewhere");
    other.put("x@h", b"x", soon()).expect("put elsewhere");
    let nested = client(&garage.vars(), "s3://pulse/sync_dir/deeper");
    nested.put("y@h", b"y", soon()).expect("put nested");

    let started = Instant::now();
    let listed = c.list(soon()).expect("list");
    let mut names: Vec<_> = listed.iter().map(|o| o.name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), N, "every object once, across pages");
    assert!(names.iter().all(|n| n.starts_with('n') && !n.contains('/')));
    assert!(listed.iter().all(|o| o.age.is_some()));
    eprintln!("listed {N} objects in {:?}", started.elapsed());
}

#[test]
fn wrong_credentials_are_access_denied() {
    let Some(garage) = Garage::start("s3::wrong_credentials_are_access_denied", "pulse") else {
        return;
    };
    let wrong_secret = "0".repeat(64);
    let unknown_id = "GK0123456789abcdef01234567";
    for (id, secret) in [
        (garage.key.0.as_str(), wrong_secret.as_str()),
        (unknown_id, garage.key.1.as_str()),
    ] {
        let mut vars = garage.vars();
        vars[0].1 = id.to_string();
        vars[1].1 = secret.to_string();
        let c = client(&vars, "s3://pulse");
        for e in [
            c.check(soon()).expect_err("check"),
            c.put("a@h", b"x", soon()).expect_err("put"),
            c.get("a@h", None, soon()).expect_err("get"),
            c.delete("a@h", soon()).expect_err("delete"),
        ] {
            assert!(
                matches!(e, Error::AccessDenied { .. }),
                "{e:?}{}",
                garage.dump()
            );
            assert!(e.is_configuration());
            let shown = format!("{e} {e:?}");
            for credential in [id, secret] {
                assert!(!shown.contains(credential), "{shown}");
            }
            assert!(shown.contains("AWS_SECRET_ACCESS_KEY"), "{shown}");
        }
    }
}

#[test]
fn an_unknown_bucket_is_no_such_bucket() {
    let Some(garage) = Garage::start("s3::an_unknown_bucket_is_no_such_bucket", "pulse") else {
        return;
    };
    let c = client(&garage.vars(), "s3://no-such-bucket/x");
    let e = c.check(soon()).expect_err("check");
    assert_eq!(e, Error::NoSuchBucket, "{}", garage.dump());
    assert!(e.is_configuration());
    assert!(e.to_string().contains("s3://BUCKET"), "{e}");
    assert_eq!(c.list(soon()), Err(Error::NoSuchBucket));
}

/// A fake store on 127.0.0.1 that answers every request with `reply`
/// (or, with `None`, accepts and never answers); its endpoint.
fn fake_store(reply: Option<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::Builder::new()
        .name("fake-store".into())
        .spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().take(50) {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 8192];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.read(&mut buf);
                match &reply {
                    Some(reply) => {
                        let _ = stream.write_all(reply.as_bytes());
                    }
                    None => held.push(stream),
                }
            }
        })
        .expect("spawn fake store");
    format!("http://127.0.0.1:{port}")
}

/// An HTTP/1.1 reply with `status` and `body`.
fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn fake_client(endpoint: String) -> Client {
    client(
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "secretsecret".to_string()),
            ("AWS_ENDPOINT_URL", endpoint),
        ],
        "s3://pulse",
    )
}

#[test]
fn a_hostile_store_gives_errors_within_the_deadline() {
    let slow_down = http(
        "503 Slow Down",
        "<Error><Code>SlowDown</Code><Message>slow</Message></Error>",
    );
    let c = fake_client(fake_store(Some(slow_down)));
    assert_eq!(c.list(soon()), Err(Error::Throttled));
    assert!(c.put("a@h", b"x", soon()).expect_err("put").is_throttled());

    let c = fake_client(fake_store(Some(http("200 OK", "<ListBucketResult><Conte"))));
    assert!(matches!(c.list(soon()), Err(Error::Garbage(_))));

    let c = fake_client(fake_store(Some("SSH-2.0-OpenSSH_9.6\r\n".into())));
    let e = c.list(soon()).expect_err("list");
    assert!(
        matches!(e, Error::Garbage(_) | Error::Transport(_)),
        "{e:?}"
    );

    // Nobody listening: refused at once, not a timeout.
    let port = crate::util::free_port();
    let c = fake_client(format!("http://127.0.0.1:{port}"));
    assert!(matches!(c.list(soon()), Err(Error::Transport(_))));

    // A store that never answers costs the deadline and no more.
    let c = fake_client(fake_store(None));
    let started = Instant::now();
    let e = c
        .list(Instant::now() + Duration::from_millis(500))
        .expect_err("list");
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    for e in [e, Error::Throttled] {
        assert!(!e.to_string().contains("AKIDEXAMPLE") && !e.to_string().contains("secretsecret"));
    }
}

// ---- pulse nodes with `--registry s3://…` --------------------------------

use crate::util::{
    Node, TempDir, dump_all, parse_status, pulse_cmd, run_within, wait_for, wait_until,
};

/// Nodes on one Garage: a short registry period and interval, so a test
/// sees many periods in a few seconds.
struct S3Cluster {
    garage: Garage,
    dir: TempDir,
}

impl S3Cluster {
    fn new(test: &str) -> Option<S3Cluster> {
        Some(S3Cluster {
            garage: Garage::start(test, "pulse")?,
            dir: TempDir::new("s3-nodes"),
        })
    }

    fn name(i: u8) -> String {
        format!("s{i}@127.0.0.1")
    }

    /// `pulse` with the garage's AWS variables and `extra` arguments.
    fn cmd(&self, name: &str, extra: &[&str]) -> std::process::Command {
        let mut cmd = pulse_cmd(&self.dir);
        cmd.envs(self.garage.vars())
            .args(["--name", name, "--cookie", "s3cookie", "--log-file", "-"])
            .args(["--registry", "s3://pulse/sync_dir/"])
            .args(["--registry-period", "300", "--interval", "300"])
            .args(["--ttl", "3000"])
            .args(extra);
        cmd
    }

    fn start(&self, i: u8) -> Node {
        let name = S3Cluster::name(i);
        Node::spawn(&name, self.cmd(&name, &[]))
    }

    /// Nodes 1 to 3, once each lists all three true; and their names.
    fn three_converged(&self) -> (Vec<Node>, Vec<String>) {
        let nodes: Vec<Node> = (1..=3).map(|i| self.start(i)).collect();
        let names: Vec<String> = (1..=3).map(S3Cluster::name).collect();
        let all: Vec<&Node> = nodes.iter().collect();
        wait_for("three nodes to see each other", CONVERGE, &all, || {
            all_alive(&all, &names)
        });
        (nodes, names)
    }

    /// The object names under the prefix, as the store lists them.
    fn objects(&self) -> Vec<String> {
        let c = client(&self.garage.vars(), "s3://pulse/sync_dir/");
        let listed = c.list(soon()).unwrap_or_default();
        listed.into_iter().map(|l| l.name).collect()
    }

    fn dump(&self, nodes: &[&Node]) -> String {
        format!(
            "{}\nobjects: {:?}{}",
            dump_all(nodes),
            self.objects(),
            self.garage.dump()
        )
    }
}

fn all_alive(nodes: &[&Node], names: &[String]) -> bool {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    nodes.iter().all(|n| n.sees_all_alive(&names))
}

/// Every status line of `node` from line `mark` on.
fn statuses_since(node: &Node, mark: usize) -> Vec<std::collections::BTreeMap<String, bool>> {
    node.output()[mark..]
        .iter()
        .filter_map(|l| parse_status(l, &node.name))
        .collect()
}

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn nodes_converge_through_s3_then_leave_or_expire() {
    let Some(c) = S3Cluster::new("s3::nodes_converge_through_s3_then_leave_or_expire") else {
        return;
    };
    let t0 = Instant::now();
    let (mut nodes, _) = c.three_converged();
    eprintln!("three converged in {:?}", t0.elapsed());
    // Every status line from here on lists all three, all true.
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    {
        let all: Vec<&Node> = nodes.iter().collect();
        wait_lines(&all, &marks, 5, "five more rounds");
    }
    for (n, m) in nodes.iter().zip(&marks) {
        for s in statuses_since(n, *m) {
            assert!(
                s.len() == 3 && s.values().all(|v| *v),
                "{s:?}{}",
                c.dump(&[n])
            );
        }
    }
    // A fourth joins.
    let t1 = Instant::now();
    nodes.push(c.start(4));
    let names: Vec<String> = (1..=4).map(S3Cluster::name).collect();
    {
        let all: Vec<&Node> = nodes.iter().collect();
        wait_for("the fourth node to join", CONVERGE, &all, || {
            all_alive(&all, &names)
        });
    }
    eprintln!("the fourth joined in {:?}", t1.elapsed());
    let mut objects = c.objects();
    objects.sort();
    assert_eq!(objects, names, "{}", c.dump(&[]));
    // `pulse status` reads the same registry.
    let mut status = pulse_cmd(&c.dir);
    status.envs(c.garage.vars()).args([
        "status",
        "--cookie",
        "s3cookie",
        "--registry",
        "s3://pulse/sync_dir/",
    ]);
    let (out, finished) = run_within(status, Duration::from_secs(20));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(finished && out.status.success(), "{out:?}");
    assert!(names.iter().all(|n| table.contains(n.as_str())), "{table}");
    // So does `pulse health`, for the node it names.
    let health = |name: &str| {
        let mut cmd = pulse_cmd(&c.dir);
        cmd.envs(c.garage.vars()).args([
            "health",
            "--name",
            name,
            "--cookie",
            "s3cookie",
            "--registry",
            "s3://pulse/sync_dir/",
        ]);
        let (out, finished) = run_within(cmd, Duration::from_secs(20));
        assert!(finished, "health {name} still runs: {out:?}");
        out
    };
    let out = health(&names[0]);
    assert!(out.status.success(), "health of a live node: {out:?}");

    // kill -9 s4: false on the others' next line, then expired and its
    // object deleted after the TTL.
    let t2 = Instant::now();
    let s4 = S3Cluster::name(4);
    nodes[3].signal("KILL");
    nodes[3].wait_exit(Duration::from_secs(5));
    let out = health(&S3Cluster::name(4));
    assert_eq!(
        out.status.code(),
        Some(1),
        "health of a killed node: {out:?}"
    );
    // Its name is still taken while its object is fresh.
    let (out, finished) = run_within(c.cmd(&s4, &[]), Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(finished && out.status.code() == Some(1), "{out:?}");
    assert!(text.contains("is taken"), "{text}");
    let rest = &nodes[..3];
    let all: Vec<&Node> = rest.iter().collect();
    wait_for("s4 to be false", Duration::from_secs(5), &all, || {
        all.iter()
            .all(|n| n.last_status().is_some_and(|s| s.get(&s4) == Some(&false)))
    });
    eprintln!("s4 seen down in {:?}", t2.elapsed());
    wait_for(
        "s4 to expire and its object to go",
        Duration::from_secs(20),
        &all,
        || {
            all.iter()
                .any(|n| n.count_containing(&format!("node {s4} expired")) > 0)
                && !c.objects().contains(&s4)
                && all
                    .iter()
                    .all(|n| n.last_status().is_some_and(|s| !s.contains_key(&s4)))
        },
    );
    eprintln!("s4 expired and deleted in {:?}", t2.elapsed());
    // Whoever did not expire it saw its object removed: no leave.
    for n in &all {
        assert_eq!(
            n.count_containing(&format!("node {s4} left")),
            0,
            "{}",
            c.dump(&all)
        );
    }

    // SIGTERM s3: its object deleted at once, `left` on the others.
    let t3 = Instant::now();
    let s3 = S3Cluster::name(3);
    nodes[2].signal("TERM");
    let status = nodes[2].wait_exit(Duration::from_secs(10));
    let all: Vec<&Node> = nodes[..3].iter().collect();
    assert!(status.is_some_and(|s| s.success()), "{}", c.dump(&all));
    assert!(!c.objects().contains(&s3), "{}", c.dump(&all));
    let two: Vec<&Node> = nodes[..2].iter().collect();
    wait_for("s3's leave", Duration::from_secs(10), &two, || {
        two.iter()
            .all(|n| n.count_containing(&format!("node {s3} left")) == 1)
    });
    eprintln!("s3 left in {:?}", t3.elapsed());
    let names: Vec<String> = (1..=2).map(S3Cluster::name).collect();
    wait_for("two left", Duration::from_secs(5), &two, || {
        all_alive(&two, &names)
    });
    // Nobody saw a node expire that was alive.
    for n in &two {
        assert_eq!(n.count_containing("expired"), 1, "{}", c.dump(&two));
    }
}

#[test]
fn wrong_credentials_or_none_stop_the_node_at_start() {
    let Some(c) = S3Cluster::new("s3::wrong_credentials_or_none_stop_the_node_at_start") else {
        return;
    };
    let secret = "WrongSecretDoNotPrint0123456789abcdef";
    let mut cmd = c.cmd(&S3Cluster::name(1), &[]);
    cmd.env("AWS_SECRET_ACCESS_KEY", secret);
    let (out, finished) = run_within(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(finished && out.status.code() == Some(1), "{out:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("AWS_SECRET_ACCESS_KEY"), "{stderr}");
    assert!(!all.contains(secret), "the secret printed: {all}");
    assert!(
        !all.contains(&c.garage.key.1),
        "the real secret printed: {all}"
    );
    assert!(c.objects().is_empty(), "{:?}", c.objects());

    let mut cmd = c.cmd(&S3Cluster::name(1), &[]);
    cmd.env_remove("AWS_ACCESS_KEY_ID");
    let (out, finished) = run_within(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(finished && out.status.code() == Some(2), "{out:?}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");

    // A bucket that is not there: exit 1, saying so.
    let cmd = c.cmd(&S3Cluster::name(1), &["--registry", "s3://nothere/p/"]);
    let (out, finished) = run_within(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(finished && out.status.code() == Some(1), "{out:?}");
    assert!(stderr.contains("no such bucket"), "{stderr}");
}

#[test]
fn junk_objects_get_one_warning_each() {
    let Some(c) = S3Cluster::new("s3::junk_objects_get_one_warning_each") else {
        return;
    };
    let store = client(&c.garage.vars(), "s3://pulse/sync_dir/");
    store
        .put("not-a-node", record("x@127.0.0.1", 1).as_bytes(), soon())
        .expect("put");
    store
        .put("j9@127.0.0.1", b"garbage, not a record", soon())
        .expect("put");
    let nodes: Vec<Node> = (1..=2).map(|i| c.start(i)).collect();
    let all: Vec<&Node> = nodes.iter().collect();
    let names: Vec<String> = (1..=2).map(S3Cluster::name).collect();
    wait_for("two nodes to see each other", CONVERGE, &all, || {
        all_alive(&all, &names)
    });
    // Many periods later: still one warning per object and node.
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    wait_lines(&all, &marks, 10, "ten more rounds");
    for (n, m) in nodes.iter().zip(&marks) {
        assert_eq!(
            n.count_containing("skipped the object not-a-node"),
            1,
            "{}",
            c.dump(&all)
        );
        assert_eq!(
            n.count_containing("skipped the object j9@127.0.0.1"),
            1,
            "{}",
            c.dump(&all)
        );
        for s in statuses_since(n, *m) {
            assert!(
                s.len() == 2 && s.values().all(|v| *v),
                "{s:?}{}",
                c.dump(&all)
            );
        }
    }
}

#[test]
fn a_store_outage_loses_no_member() {
    let Some(mut c) = S3Cluster::new("s3::a_store_outage_loses_no_member") else {
        return;
    };
    let (nodes, names) = c.three_converged();
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    c.garage.kill();
    // Longer than the TTL (3 s): pings decide, and everyone answers.
    let all: Vec<&Node> = nodes.iter().collect();
    all_true_for_twice_the_ttl(&all, &marks, "while the store is down");
    for (n, m) in nodes.iter().zip(&marks) {
        assert_eq!(
            n.count_containing_since(*m, "cannot list"),
            1,
            "{}",
            dump_all(&all)
        );
    }
    c.garage.restart();
    wait_for("the store to be listed again", CONVERGE, &all, || {
        all.iter()
            .all(|n| n.count_containing("can be listed again") == 1)
    });
    wait_for("three nodes still", CONVERGE, &all, || {
        all_alive(&all, &names)
    });
    for n in &all {
        assert_eq!(n.count_containing("expired"), 0, "{}", c.dump(&all));
        assert_eq!(n.count_containing(" left"), 0, "{}", c.dump(&all));
    }
}

/// A status or log line's time of day in milliseconds.
fn ms_of_day(line: &str) -> Option<u64> {
    let t = line.get(..12)?;
    let n = |v: Option<&str>| v?.parse::<u64>().ok();
    let (h, m, s, ms) = (
        n(t.get(..2)),
        n(t.get(3..5)),
        n(t.get(6..8)),
        n(t.get(9..12)),
    );
    Some(((h? * 60 + m?) * 60 + s?) * 1000 + ms?)
}

/// The gaps between `node`'s consecutive status lines from line `mark` on,
/// in milliseconds (across midnight too).
fn status_gaps(node: &Node, mark: usize) -> Vec<u64> {
    const DAY: u64 = 24 * 3600 * 1000;
    let times: Vec<u64> = node.output()[mark..]
        .iter()
        .filter(|l| parse_status(l, &node.name).is_some())
        .filter_map(|l| ms_of_day(l))
        .collect();
    times
        .windows(2)
        .map(|w| (w[1] + DAY - w[0]) % DAY)
        .collect()
}

#[test]
fn thousands_of_objects_with_junk_hide_no_live_node() {
    let Some(c) = S3Cluster::new("s3::thousands_of_objects_with_junk_hide_no_live_node") else {
        return;
    };
    let store = client(&c.garage.vars(), "s3://pulse/sync_dir/");
    // 2,500 objects, three listing pages: records of nodes that do not
    // exist (nothing listens on port 1), keys that are not node names,
    // bodies that are not records, bodies larger than a record.
    const N: usize = 2500;
    const DEAD: usize = 150;
    let object = |i: usize| -> (String, Vec<u8>) {
        if i < DEAD {
            let name = format!("d{i:04}@127.0.0.1");
            let body = format!("pulse 1\nname {name}\naddr 127.0.0.1:1\nheartbeat 1795474399123\n");
            (name, body.into_bytes())
        } else if i.is_multiple_of(2) {
            (
                format!("junk key {i:04}.txt"),
                record("x@127.0.0.1", 1).into_bytes(),
            )
        } else if i.is_multiple_of(3) {
            (format!("big{i:04}@127.0.0.1"), vec![b'x'; 2000])
        } else {
            (
                format!("j{i:04}@127.0.0.1"),
                format!("not a record {i}").into_bytes(),
            )
        }
    };
    let t0 = Instant::now();
    thread::scope(|s| {
        for part in 0..4 {
            let (store, object) = (&store, &object);
            s.spawn(move || {
                for i in (part..N).step_by(4) {
                    let (name, body) = object(i);
                    store
                        .put(&name, &body, soon())
                        .unwrap_or_else(|e| panic!("put {name}: {e}"));
                }
            });
        }
    });
    eprintln!("put {N} objects in {:?}", t0.elapsed());
    let junk: Vec<String> = (DEAD..N).map(|i| object(i).0).collect();
    let dead: Vec<String> = (0..DEAD).map(|i| object(i).0).collect();

    // Each node logs to a file of its own: the console drops lines in a
    // burst of thousands of warnings (PROTOCOL.md, "Console"), the log
    // file has every one.
    let t1 = Instant::now();
    let names: Vec<String> = (1..=2).map(S3Cluster::name).collect();
    let logs: Vec<std::path::PathBuf> = names
        .iter()
        .map(|n| c.dir.path().join(format!("{n}.log")))
        .collect();
    let nodes: Vec<Node> = names
        .iter()
        .zip(&logs)
        .map(|(name, log)| {
            let log = log.to_str().expect("a UTF-8 path");
            Node::spawn(name, c.cmd(name, &["--log-file", log]))
        })
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    // Node i's log, and its status lines.
    let log = |i: usize| -> Vec<String> {
        let text = std::fs::read_to_string(&logs[i]).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    };
    let statuses = |i: usize, lines: &[String]| -> Vec<std::collections::BTreeMap<String, bool>> {
        lines
            .iter()
            .filter_map(|l| parse_status(l, &names[i]))
            .collect()
    };
    let last_status = |i: usize| statuses(i, &log(i)).pop();
    let skipped = |i: usize| {
        log(i)
            .iter()
            .filter(|l| l.contains("skipped the object"))
            .count()
    };
    // Thousands of warnings: a failure shows each node's other lines.
    let dump = || {
        let mut text = format!("\nobjects: {}", c.objects().len());
        for (i, n) in all.iter().enumerate() {
            let lines = log(i);
            let running = n.is_running();
            text.push_str(&format!(
                "\n--- {} (running: {running}, {} lines, {} skipped the object), other lines:\n",
                n.name,
                lines.len(),
                skipped(i),
            ));
            let other = lines.iter().filter(|l| {
                parse_status(l, &n.name).is_none() && !l.contains("skipped the object")
            });
            for l in other.take(40) {
                text.push_str(l);
                text.push('\n');
            }
            text.push_str("the last 3:\n");
            for l in &lines[lines.len().saturating_sub(3)..] {
                text.push_str(l);
                text.push('\n');
            }
            text.push_str(&format!("stdout and stderr:\n{}", n.output().join("\n")));
        }
        text
    };
    let both_true =
        |i: usize| last_status(i).is_some_and(|s| names.iter().all(|m| s.get(m) == Some(&true)));
    assert!(
        wait_until(CONVERGE, || both_true(0) && both_true(1)),
        "the two live nodes did not see each other{}",
        dump()
    );
    eprintln!("two nodes saw each other in {:?}", t1.elapsed());
    // The dead go: false while listed, then expired (TTL 3 s) and their
    // objects deleted.
    let gone = wait_until(Duration::from_secs(40), || {
        (0..2).all(|i| last_status(i).is_some_and(|s| s.len() == 2))
            && !c.objects().iter().any(|o| o.starts_with('d'))
    });
    assert!(gone, "the dead records did not expire{}", dump());
    eprintln!("the dead expired in {:?}", t1.elapsed());
    // Every junk object warned about once by each node, and never again
    // over many periods.
    let warned = wait_until(CONVERGE, || (0..2).all(|i| skipped(i) >= junk.len()));
    assert!(warned, "not every junk object warned about{}", dump());
    let marks: Vec<usize> = (0..2).map(|i| log(i).len()).collect();
    let more = wait_until(Duration::from_secs(10), || {
        (0..2).all(|i| statuses(i, &log(i)[marks[i]..]).len() >= 10)
    });
    assert!(more, "no ten more periods{}", dump());
    for (i, n) in nodes.iter().enumerate() {
        assert!(n.is_running(), "{} crashed\n{}", n.name, dump());
        let out = log(i);
        assert!(
            !n.output().iter().any(|l| l.contains("panicked")),
            "{}",
            dump()
        );
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for l in out.iter().filter(|l| l.contains("skipped the object ")) {
            let (_, rest) = l.split_once("skipped the object ").unwrap_or_default();
            let (object, _) = rest.split_once(": ").unwrap_or((rest, ""));
            *seen.entry(object.to_string()).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
        assert!(twice.is_empty(), "{}: warned twice: {twice:?}", n.name);
        let unwarned: Vec<_> = junk.iter().filter(|j| !seen.contains_key(*j)).collect();
        assert!(
            unwarned.is_empty(),
            "{}: never warned: {unwarned:?}",
            n.name
        );
        assert_eq!(skipped(i), junk.len(), "{}: {seen:?}", n.name);
        // Each dead node joined once and expired once: an expired node's
        // object still listed (before its deletion shows) proposes no one.
        for (event, want) in [("joined", dead.len()), ("expired", dead.len()), ("left", 0)] {
            let count = out
                .iter()
                .filter(|l| l.contains(": node d") && l.contains(&format!(" {event}")))
                .count();
            assert_eq!(count, want, "{}: {event}{}", n.name, dump());
        }
        // No dead record was ever true; each was seen false before it went.
        let lines = statuses(i, &out);
        for d in &dead {
            assert!(
                !lines.iter().any(|s| s.get(d) == Some(&true)),
                "{d} true\n{}",
                dump()
            );
            assert!(
                lines.iter().any(|s| s.get(d) == Some(&false)),
                "{d} never listed\n{}",
                dump()
            );
        }
        // The live pair stayed true all along, and nothing else is listed.
        for s in statuses(i, &out[marks[i]..]) {
            assert!(s.len() == 2 && s.values().all(|v| *v), "{s:?}\n{}", dump());
        }
    }
    eprintln!("done in {:?}", t0.elapsed());
}

/// Waits until every node wrote `count` status lines since its mark: as
/// many rounds went by.
fn wait_lines(nodes: &[&Node], marks: &[usize], count: usize, what: &str) {
    wait_for(what, CONVERGE, nodes, || {
        nodes
            .iter()
            .zip(marks)
            .all(|(n, m)| statuses_since(n, *m).len() >= count)
    });
}

/// Waits for twice the TTL (3 s) of status lines since `marks`, 20 each,
/// and checks that every one lists the three nodes, all true: a store
/// that cannot serve removes nobody.
fn all_true_for_twice_the_ttl(nodes: &[&Node], marks: &[usize], while_: &str) {
    wait_lines(nodes, marks, 20, &format!("6 s of lines {while_}"));
    for (n, m) in nodes.iter().zip(marks) {
        for s in statuses_since(n, *m) {
            assert!(
                s.len() == 3 && s.values().all(|v| *v),
                "{while_}: {s:?}{}",
                dump_all(nodes)
            );
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of the store that can be switched to
/// accept and never answer: while hung, a new connection is held open and
/// never forwarded, and a connection that sends or receives anything is cut
/// from the store for good (its bytes dropped, the socket held until the
/// client closes it).
struct Proxy {
    endpoint: String,
    hung: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http endpoint")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hung = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (hung.clone(), stop.clone());
        let pump = |mut from: std::net::TcpStream,
                    mut to: std::net::TcpStream,
                    hung: Arc<AtomicBool>,
                    cut: Arc<AtomicBool>| {
            move || {
                let mut buf = [0u8; 16384];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if hung.load(Ordering::SeqCst) {
                        cut.store(true, Ordering::SeqCst);
                    }
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            }
        };
        thread::Builder::new()
            .name("s3-proxy".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = stream else { continue };
                    let cut = Arc::new(AtomicBool::new(h.load(Ordering::SeqCst)));
                    let store = if cut.load(Ordering::SeqCst) {
                        None
                    } else {
                        std::net::TcpStream::connect(&upstream).ok()
                    };
                    let Some(store) = store else {
                        // Held: read and dropped until the client closes.
                        let mut client = client;
                        thread::spawn(move || {
                            let mut buf = [0u8; 16384];
                            while client.read(&mut buf).is_ok_and(|n| n > 0) {}
                        });
                        continue;
                    };
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), store.try_clone()) else {
                        continue;
                    };
                    thread::spawn(pump(client, store, h.clone(), cut.clone()));
                    thread::spawn(pump(s2, c2, h.clone(), cut));
                }
            })
            .expect("spawn proxy");
        Proxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            hung,
            stop,
            port,
        }
    }

    fn hang(&self, hung: bool) {
        self.hung.store(hung, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn a_store_that_never_answers_delays_no_line_and_loses_no_member() {
    let Some(c) =
        S3Cluster::new("s3::a_store_that_never_answers_delays_no_line_and_loses_no_member")
    else {
        return;
    };
    let proxy = Proxy::start(&c.garage.endpoint);
    // Interval 300 ms, timeout 150 ms: a round is bounded by the timeout
    // (docs/ARCHITECTURE.md), and every peer answers, so no line comes
    // more than interval + timeout after the one before.
    const INTERVAL: u64 = 300;
    const TIMEOUT: u64 = 150;
    let names: Vec<String> = (1..=3).map(S3Cluster::name).collect();
    let nodes: Vec<Node> = names
        .iter()
        .map(|name| {
            let mut cmd = c.cmd(name, &["--timeout", &TIMEOUT.to_string()]);
            cmd.env("AWS_ENDPOINT_URL_S3", &proxy.endpoint);
            Node::spawn(name, cmd)
        })
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_for("three nodes to see each other", CONVERGE, &all, || {
        all_alive(&all, &names)
    });
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    proxy.hang(true);
    let hung_at = Instant::now();
    wait_for("the hung store to be noticed", CONVERGE, &all, || {
        nodes.iter().zip(&marks).all(|(n, m)| {
            n.count_containing_since(*m, "cannot list") > 0
                && n.count_containing_since(*m, "cannot write our heartbeat") > 0
        })
    });
    eprintln!("the hung store noticed in {:?}", hung_at.elapsed());
    all_true_for_twice_the_ttl(&all, &marks, "while the store hangs");
    for (n, m) in nodes.iter().zip(&marks) {
        let gaps = status_gaps(n, *m);
        let max = gaps.iter().copied().max().unwrap_or(u64::MAX);
        assert!(
            max <= INTERVAL + TIMEOUT,
            "{}: a line came late while the store hung: gaps {gaps:?}{}",
            n.name,
            dump_all(&all)
        );
        eprintln!("{}: longest gap {max} ms", n.name);
        for said in ["cannot list", "cannot write our heartbeat"] {
            assert_eq!(
                n.count_containing_since(*m, said),
                1,
                "{said}{}",
                dump_all(&all)
            );
        }
        let line = n.output()[*m..]
            .iter()
            .find(|l| l.contains("cannot list"))
            .cloned()
            .unwrap_or_default();
        assert!(line.contains("timeout"), "{line}");
    }
    let back = Instant::now();
    proxy.hang(false);
    wait_for("the store to be back", CONVERGE, &all, || {
        nodes.iter().zip(&marks).all(|(n, m)| {
            n.count_containing_since(*m, "can be listed again") == 1
                && n.count_containing_since(*m, "our heartbeat is written again") == 1
        })
    });
    eprintln!("the store back in {:?}", back.elapsed());
    let later: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    wait_for("more periods", CONVERGE, &all, || {
        nodes
            .iter()
            .zip(&later)
            .all(|(n, m)| statuses_since(n, *m).len() >= 5)
    });
    for (n, m) in nodes.iter().zip(&marks) {
        assert!(n.sees_all_alive(&["s1@127.0.0.1", "s2@127.0.0.1", "s3@127.0.0.1"]));
        for said in [
            "expired",
            " left",
            " is down",
            "cannot list",
            "cannot write",
        ] {
            assert_eq!(
                n.count_containing_since(*m, said),
                usize::from(said.starts_with("cannot")),
                "{said}{}",
                c.dump(&all)
            );
        }
    }
    let mut objects = c.objects();
    objects.sort();
    assert_eq!(objects, names);
}

#[test]
fn a_key_revoked_at_run_time_is_said_once_and_loses_no_member() {
    let Some(c) = S3Cluster::new("s3::a_key_revoked_at_run_time_is_said_once_and_loses_no_member")
    else {
        return;
    };
    let (nodes, names) = c.three_converged();
    let all: Vec<&Node> = nodes.iter().collect();
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    let key = c.garage.key.0.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rights = ["--read", "--write", "--owner", "pulse", "--key", &key];
    c.garage
        .until(deadline, &[&["bucket", "deny"][..], &rights].concat());
    let revoked = Instant::now();
    wait_for("the refused key to be said", CONVERGE, &all, || {
        nodes.iter().zip(&marks).all(|(n, m)| {
            n.count_containing_since(*m, "cannot list: access denied") > 0
                && n.count_containing_since(*m, "cannot write our heartbeat: access denied") > 0
        })
    });
    eprintln!("the revoked key said in {:?}", revoked.elapsed());
    all_true_for_twice_the_ttl(&all, &marks, "without the store");
    for (n, m) in nodes.iter().zip(&marks) {
        // Said once, naming what to fix; nothing else said meanwhile.
        let said: Vec<String> = n.output()[*m..]
            .iter()
            .filter(|l| parse_status(l, &n.name).is_none())
            .cloned()
            .collect();
        assert_eq!(said.len(), 2, "{said:#?}");
        if n.name == names[0] {
            eprintln!("{} said:\n{}", n.name, said.join("\n"));
        }
        for l in &said {
            assert!(
                l.contains("access denied") && l.contains("AWS_SECRET_ACCESS_KEY"),
                "{l}"
            );
            assert!(l.contains("key's rights on the bucket"), "{l}");
        }
    }
    let back = Instant::now();
    c.garage
        .until(deadline, &[&["bucket", "allow"][..], &rights].concat());
    wait_for("the store to be back", CONVERGE, &all, || {
        nodes.iter().zip(&marks).all(|(n, m)| {
            n.count_containing_since(*m, "can be listed again") == 1
                && n.count_containing_since(*m, "our heartbeat is written again") == 1
        })
    });
    eprintln!("the store back in {:?}", back.elapsed());
    wait_for("three nodes still", CONVERGE, &all, || {
        all_alive(&all, &names)
    });
    for n in &nodes {
        assert_eq!(n.count_containing("expired"), 0, "{}", c.dump(&all));
        assert_eq!(n.count_containing(" left"), 0, "{}", c.dump(&all));
        for l in n.output() {
            assert!(
                !l.contains(&c.garage.key.1) && !l.contains(&c.garage.key.0),
                "a credential printed: {l}"
            );
        }
    }
    let mut objects = c.objects();
    objects.sort();
    assert_eq!(objects, names);
}

#[test]
fn two_nodes_started_under_one_name_at_once_one_runs() {
    let Some(c) = S3Cluster::new("s3::two_nodes_started_under_one_name_at_once_one_runs") else {
        return;
    };
    let name = S3Cluster::name(1);
    let store = client(&c.garage.vars(), "s3://pulse/sync_dir/");
    // Five times on a free name, then on a name a stale object holds (a
    // node that stopped without leaving, more than the TTL ago).
    for attempt in 0..6 {
        let stale = attempt == 5;
        if stale {
            store
                .put(&name, record(&name, 1).as_bytes(), soon())
                .expect("put");
            wait_for(
                "the object to go stale",
                Duration::from_secs(10),
                &[],
                || {
                    store.list(soon()).is_ok_and(|l| {
                        l.iter()
                            .any(|o| o.age.is_some_and(|a| a >= Duration::from_secs(3)))
                    })
                },
            );
        }
        let ports = [crate::util::free_port(), crate::util::free_port()];
        let mut pair: Vec<Node> = ports
            .iter()
            .map(|p| Node::spawn(&name, c.cmd(&name, &["--port", &p.to_string()])))
            .collect();
        let both: Vec<&Node> = pair.iter().collect();
        let what = format!("attempt {attempt}: one of the two to stop");
        wait_for(&what, Duration::from_secs(20), &both, || {
            both.iter().any(|n| !n.is_running())
        });
        let lost = usize::from(pair[0].is_running());
        let won = 1 - lost;
        let status = pair[lost].wait_exit(Duration::from_secs(5));
        let both: Vec<&Node> = pair.iter().collect();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "{}",
            dump_all(&both)
        );
        let said = pair[lost].output().join("\n");
        assert!(
            said.contains(&format!("the name {name} is taken")),
            "{}",
            dump_all(&both)
        );
        // The other runs on: several periods later its object is its own,
        // and nobody else's body ever stood under its name.
        let mark = pair[won].output().len();
        wait_for("five periods", Duration::from_secs(10), &both, || {
            statuses_since(&pair[won], mark).len() >= 5
        });
        assert!(pair[won].is_running(), "{}", dump_all(&both));
        assert_eq!(
            pair[won].count_containing("another body than ours"),
            0,
            "attempt {attempt}{}",
            dump_all(&both)
        );
        assert_eq!(
            c.objects(),
            std::slice::from_ref(&name),
            "{}",
            dump_all(&both)
        );
        let Ok(Got::Body(held)) = store.get(&name, None, soon()) else {
            panic!("get {name}");
        };
        let body = String::from_utf8_lossy(&held.bytes).into_owned();
        let addr = format!("addr 127.0.0.1:{}\n", ports[won]);
        assert!(body.contains(&addr), "{body}{}", dump_all(&both));
        // A graceful stop gives the name back for the next attempt.
        pair[won].signal("TERM");
        let status = pair[won].wait_exit(Duration::from_secs(10));
        let both: Vec<&Node> = pair.iter().collect();
        assert!(status.is_some_and(|s| s.success()), "{}", dump_all(&both));
        assert!(c.objects().is_empty(), "{}", c.dump(&both));
    }
}
