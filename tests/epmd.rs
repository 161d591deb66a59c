//! The EPMD client and stand-in against a real `epmd` and real `erl`.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pulse::internals::{RegisterError, Responder, port_please, register};

use crate::util::erlang::{Epmd, Otp, otps};
use crate::util::{free_port, require, run_within, wait_until};

/// Generous per-request timeout.
const T: Duration = Duration::from_secs(5);

fn at(epmd: &Epmd) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], epmd.1))
}

/// `erl` of `otp` with a clean environment pointing at the EPMD on
/// `epmd_port`.
fn erl(otp: &Otp, epmd_port: u16) -> Command {
    let mut cmd = otp.command("erl");
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env_remove("ERL_FLAGS")
        .env_remove("ERL_AFLAGS")
        .env_remove("ERL_ZFLAGS")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to completion, killing it if it outlives `within`.
fn run_with_deadline(cmd: Command, within: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let (out, finished) = run_within(cmd, within);
    assert!(finished, "{shown} still running after {within:?}: {out:?}");
    out
}

#[test]
fn register_then_port_please_then_unregister_on_drop() {
    if !require("epmd", "register_then_port_please_then_unregister_on_drop") {
        return;
    }
    let epmd = Epmd::start();
    let reg = register(at(&epmd), "pulse_t1", 40123, T).expect("register");
    assert_ne!(reg.creation, 0, "epmd hands out non-zero creations");
    assert!(reg.is_open());
    assert_eq!(
        port_please(at(&epmd), "pulse_t1", T).expect("pp"),
        Some(40123)
    );
    assert_eq!(port_please(at(&epmd), "pulse_other", T).expect("pp"), None);
    drop(reg);
    let gone = wait_until(Duration::from_secs(5), || {
        matches!(port_please(at(&epmd), "pulse_t1", T), Ok(None))
    });
    assert!(
        gone,
        "name still registered 5 s after dropping the Registration"
    );
}

#[test]
fn a_registration_knows_when_epmd_is_gone() {
    if !require("epmd", "a_registration_knows_when_epmd_is_gone") {
        return;
    }
    let epmd = Epmd::start();
    let addr = at(&epmd);
    let reg = register(addr, "pulse_gone", 40124, T).expect("register");
    assert!(reg.is_open());
    drop(epmd);
    assert!(
        wait_until(Duration::from_secs(5), || !reg.is_open()),
        "the registration still looks open after EPMD was killed"
    );
}

#[test]
fn duplicate_registration_is_name_taken_and_reregister_after_drop_works() {
    let test = "duplicate_registration_is_name_taken_and_reregister_after_drop_works";
    if !require("epmd", test) {
        return;
    }
    let epmd = Epmd::start();
    let first = register(at(&epmd), "pulse_t2", 40200, T).expect("first register");
    let started = Instant::now();
    let taken = register(at(&epmd), "pulse_t2", 40201, T);
    assert!(
        matches!(taken, Err(RegisterError::NameTaken(ref msg)) if msg.contains("pulse_t2")),
        "{taken:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "duplicate was not retried: failed after {:?}",
        started.elapsed()
    );
    // The held registration is untouched by the failed attempts.
    assert_eq!(
        port_please(at(&epmd), "pulse_t2", T).expect("pp"),
        Some(40200)
    );
    // Dropping and registering again at once succeeds (EPMD frees late; we retry).
    let c1 = first.creation;
    drop(first);
    let second = register(at(&epmd), "pulse_t2", 40202, T).expect("re-register");
    assert_ne!(
        second.creation, c1,
        "a new registration gets a new creation"
    );
    assert_eq!(
        port_please(at(&epmd), "pulse_t2", T).expect("pp"),
        Some(40202)
    );
}

#[test]
fn real_erl_reads_the_responder() {
    for otp in otps("real_erl_reads_the_responder") {
        real_erl_reads_the_responder_of(&otp);
    }
}

fn real_erl_reads_the_responder_of(otp: &Otp) {
    let r =
        Responder::start(SocketAddr::from(([127, 0, 0, 1], 0)), "pulse_t4", 43210).expect("start");
    let mut cmd = erl(otp, r.local_addr().port());
    cmd.args([
        "-noshell",
        "-eval",
        r#"io:format("~p~n~p~n~p~n", [erl_epmd:port_please("pulse_t4", {127,0,0,1}), erl_epmd:port_please("pulse_other", {127,0,0,1}), erl_epmd:names({127,0,0,1})]), halt()."#,
    ]);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let otp = otp.label();
    assert!(out.status.success(), "{otp} erl failed\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["{port,43210,6}", "noport", r#"{ok,[{"pulse_t4",43210}]}"#],
        "{otp} stderr: {stderr}"
    );
}

#[test]
fn real_erl_sees_our_registration() {
    for otp in otps("real_erl_sees_our_registration") {
        real_erl_sees_our_registration_of(&otp);
    }
}

/// Registered with `otp`'s own EPMD, read by its `erl`.
fn real_erl_sees_our_registration_of(otp: &Otp) {
    let epmd = Epmd::start_for(otp);
    let _reg = register(at(&epmd), "pulse_t4r", 43211, T).expect("register");
    let mut cmd = erl(otp, epmd.1);
    cmd.args([
        "-noshell",
        "-eval",
        r#"io:format("~p~n", [erl_epmd:port_please("pulse_t4r", {127,0,0,1})]), halt()."#,
    ]);
    let out = run_with_deadline(cmd, Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{port,43211,6}",
        "{} stderr: {}",
        otp.label(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn our_port_please_finds_a_real_erl_node() {
    for otp in otps("our_port_please_finds_a_real_erl_node") {
        our_port_please_finds_a_real_erl_node_of(&otp);
    }
}

fn our_port_please_finds_a_real_erl_node_of(otp: &Otp) {
    let epmd = Epmd::start_for(otp);
    let dist = free_port();
    let node = crate::util::erlang::Erl::start(otp, "pulse_t4e@127.0.0.1", "c", dist, epmd.1);
    let mut last = None;
    let found = wait_until(Duration::from_secs(20), || {
        last = Some(port_please(at(&epmd), "pulse_t4e", T).map_err(|e| e.to_string()));
        last == Some(Ok(Some(dist)))
    });
    assert!(
        found,
        "{} erl never registered at port {dist}; last answer {last:?}\n{}",
        otp.label(),
        node.0.dump()
    );
    drop(node);
    let gone = wait_until(Duration::from_secs(10), || {
        matches!(port_please(at(&epmd), "pulse_t4e", T), Ok(None))
    });
    assert!(gone, "{} killed erl still registered", otp.label());
}
