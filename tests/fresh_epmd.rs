//! A fresh host: pulse starts before any EPMD runs. A script started after
//! it (`elixir --name x -e 'Node.ping(...)'`) starts EPMD and pings at
//! once, so pulse must register within the script's boot, not at its next
//! interval; and until then it says calmly what that means.

use std::process::Command;
use std::time::Duration;

use crate::util::erlang::{StartedEpmd, output_within};
use crate::util::{
    Node, TempDir, free_port, level_of, pulse_cmd, require, split_log_line, wait_for,
};

/// `pulse --name NAME` against the EPMD port `epmd_port`, where none runs
/// yet, with an interval far longer than a script takes to boot.
fn pulse_before_epmd(dir: &TempDir, name: &str, epmd_port: u16) -> Node {
    let mut cmd = pulse_cmd(dir);
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["--name", name, "--cookie", "cookie", "--interval", "10000"])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    Node::spawn(name, cmd)
}

/// The line saying there is no EPMD yet.
fn no_epmd_line(node: &Node) -> Option<String> {
    node.output().into_iter().find(|l| l.contains("no EPMD at"))
}

#[test]
fn a_start_without_epmd_says_so_calmly_and_what_it_means() {
    let dir = TempDir::new("calm-epmd");
    let port = free_port();
    let p1 = pulse_before_epmd(&dir, "p1@127.0.0.1", port);
    wait_for("p1's no-EPMD line", Duration::from_secs(9), &[&p1], || {
        no_epmd_line(&p1).is_some()
    });
    let line = no_epmd_line(&p1).unwrap_or_default();
    let (_, message) = split_log_line(&line).unwrap_or_else(|| panic!("{line}"));
    assert_eq!(level_of(&line), Some("info"), "{line}");
    for part in [
        &format!("no EPMD at 127.0.0.1:{port} yet"),
        "as soon as one starts",
        "pulse nodes reach it through its registry entry meanwhile",
    ] {
        assert!(message.contains(part), "{part}: {line}");
    }
    assert!(!message.contains("refused"), "{line}");
    assert!(
        !p1.output().iter().any(|l| level_of(l) == Some("warning")),
        "{}",
        p1.dump()
    );
}

#[test]
fn a_script_started_after_pulse_gets_pong_on_its_first_ping() {
    let test = "a_script_started_after_pulse_gets_pong_on_its_first_ping";
    if !require("elixir", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("fresh-epmd");
    let port = free_port();
    let _epmd = StartedEpmd(port);
    let p1 = pulse_before_epmd(&dir, "p1@127.0.0.1", port);
    wait_for("p1 to find no EPMD", Duration::from_secs(9), &[&p1], || {
        no_epmd_line(&p1).is_some()
    });
    // The one-liner: it starts EPMD itself, then pings at once.
    let mut elixir = Command::new("elixir");
    elixir
        .env("ERL_EPMD_PORT", port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .args(["--name", "x@127.0.0.1", "--cookie", "cookie"])
        .args(["--erl", "-kernel inet_dist_use_interface {127,0,0,1}"])
        .args(["-e", "IO.inspect Node.ping(:\"p1@127.0.0.1\")"]);
    let out = output_within(elixir, Duration::from_secs(60));
    assert_eq!(out.trim(), ":pong", "{}", p1.dump());
    assert_eq!(
        p1.count_containing("registered p1 with EPMD"),
        1,
        "{}",
        p1.dump()
    );
}
