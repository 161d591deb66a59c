//! The wire code against real Erlang (Debian's `erlang-base`): pulse pings
//! an `erl` node and gets `true`, and `false` when the cookies differ.

use std::time::Duration;

use crate::util::erlang::{Epmd, Erl, Refresher};
use crate::util::{Node, TempDir, free_port, require, wait_until};

fn pulse_sees_erl(cookie_of_erl: &str, want: bool, test: &str) {
    if !require("erl", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("erl");
    let epmd = Epmd::start();
    let port = free_port();
    let _erl = Erl::start("x@127.0.0.1", cookie_of_erl, port, epmd.1);
    let _record = Refresher::start(&dir, "x@127.0.0.1", port);
    let node = Node::start(&dir, "p1@127.0.0.1", "c", &["--interval", "300"]);
    // erl takes a second or two to come up; until then it is false.
    let ok = wait_until(Duration::from_secs(15), || {
        node.last_status().is_some_and(|s| {
            s.get("x@127.0.0.1") == Some(&want) && s.get("p1@127.0.0.1") == Some(&true)
        })
    });
    assert!(ok, "{}", node.dump());
    // And it stays that way over several rounds on the reused link.
    let lines = node.output().len();
    assert!(wait_until(Duration::from_secs(9), || node.output().len() >= lines + 3));
    assert_eq!(
        node.last_status()
            .and_then(|s| s.get("x@127.0.0.1").copied()),
        Some(want),
        "{}",
        node.dump()
    );
    if !want {
        assert!(
            node.count_containing("node x@127.0.0.1 is down: bad cookie") >= 1,
            "{}",
            node.dump()
        );
    }
}

#[test]
fn pulse_pings_a_real_erlang_node() {
    pulse_sees_erl("c", true, "pulse_pings_a_real_erlang_node");
}

#[test]
fn a_real_erlang_node_with_another_cookie_is_false() {
    pulse_sees_erl(
        "other",
        false,
        "a_real_erlang_node_with_another_cookie_is_false",
    );
}
