//! The library as an embedder uses it: nodes started from code in this
//! process, their events and members read through the `Node` handle.

use std::time::Duration;

use pulse::config::EpmdMode;
use pulse::{Config, Event, Node};

use crate::util::{TempDir, wait_until};

fn config(dir: &TempDir, name: &str) -> Config {
    let mut config = Config::for_node(name, "embed-cookie").expect("a valid config");
    config.sync_dir = dir.sync_dir();
    config.interval = Duration::from_millis(200);
    config.timeout = Duration::from_millis(150);
    config.ttl = Duration::from_secs(2);
    config.epmd = EpmdMode::Off;
    config
}

#[test]
fn an_embedder_starts_nodes_reads_events_and_members_and_stops_them() {
    let dir = TempDir::new("embed");
    let a = Node::start(&config(&dir, "m1@127.0.0.1")).expect("start m1");
    let b = Node::start(&config(&dir, "m2@127.0.0.1")).expect("start m2");
    let events = a.events();

    let both_alive = wait_until(Duration::from_secs(10), || {
        let members = a.members();
        members.len() == 2 && members.iter().all(|m| m.alive)
    });
    assert!(both_alive, "m1's members: {:?}", a.members());
    let names: Vec<String> = a.members().iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["m1@127.0.0.1", "m2@127.0.0.1"]);

    b.shutdown();
    let mut seen = Vec::new();
    let left = loop {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Left(name)) => break name,
            Ok(other) => seen.push(other),
            Err(e) => panic!("no leave event ({e}); events so far: {seen:?}"),
        }
    };
    assert_eq!(left.to_string(), "m2@127.0.0.1");
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Joined(n) if n.to_string() == "m2@127.0.0.1")),
        "no join of m2 before its leave: {seen:?}"
    );
    let gone = wait_until(Duration::from_secs(5), || {
        a.members()
            .iter()
            .all(|m| m.name.to_string() != "m2@127.0.0.1")
    });
    assert!(gone, "m2 still listed after its leave: {:?}", a.members());
    a.shutdown();
}

#[test]
fn a_config_from_code_is_the_commands_default() {
    let config = Config::for_node("k1@127.0.0.1", "c").expect("a valid config");
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.timeout, Duration::from_millis(500));
    assert_eq!(config.sync_dir, std::path::PathBuf::from("/tmp/sync_dir/"));
    assert_eq!(config.ip.to_string(), "127.0.0.1");
    let bad = Config::for_node("no-at-sign", "c").expect_err("a bad name");
    assert!(bad.contains("no-at-sign"), "{bad}");
}
