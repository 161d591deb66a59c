//! Tests of membership: joins, downs, leaves and expiry, round by round.

use super::*;

const SEC: Duration = Duration::from_secs(1);

/// A record as scanned, its heartbeat at `hb` (and its version with it).
fn rec(n: &str, hb: u64) -> Record {
    Record {
        version: hb,
        ..Record::new(
            name(n),
            ([127, 0, 0, 1], 9).into(),
            std::time::SystemTime::UNIX_EPOCH,
        )
    }
}

fn name(n: &str) -> NodeName {
    n.parse().expect("name")
}

fn membership() -> Membership {
    Membership::new(name("me@h"), SEC, 5 * SEC)
}

fn names(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.name.to_string()).collect()
}

#[test]
fn join_down_back() {
    let t0 = Instant::now();
    let mut m = membership();
    let obs = m.observe(vec![rec("me@h", 1), rec("b@h", 1)], false, t0);
    assert_eq!(
        obs.events,
        vec![Event::Joined(name("b@h")), Event::Joined(name("me@h"))]
    );
    assert_eq!(obs.live.len(), 2);
    let b = name("b@h");
    assert!(m.apply(&[(b.clone(), Outcome::Alive(SEC))], t0).is_empty());
    let down = m.apply(&[(b.clone(), Outcome::Down(Reason::Refused))], t0);
    assert_eq!(down, vec![Event::Down(b.clone(), Reason::Refused)]);
    // Still down for the same kind of reason: nothing new.
    assert!(
        m.apply(&[(b.clone(), Outcome::Down(Reason::Refused))], t0)
            .is_empty()
    );
    // A different kind of reason is news.
    let timeout = Outcome::Down(Reason::Timeout(Phase::Reply));
    assert_eq!(m.apply(&[(b.clone(), timeout)], t0).len(), 1);
    assert_eq!(
        m.apply(&[(b.clone(), Outcome::Alive(SEC))], t0),
        vec![Event::Back(b)]
    );
}

#[test]
fn one_timeout_is_late_and_a_second_in_a_row_is_down() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(vec![rec("me@h", 1), rec("b@h", 1)], false, t0);
    let b = name("b@h");
    let alive = || vec![(name("b@h"), Outcome::Alive(SEC))];
    let timeout = |phase| vec![(name("b@h"), Outcome::Down(Reason::Timeout(phase)))];
    assert!(m.apply(&alive(), t0).is_empty());
    // Slow to be served: late, then back, never down.
    let late = Event::Late(b.clone(), Reason::Timeout(Phase::Reply));
    assert_eq!(m.apply(&timeout(Phase::Reply), t0), vec![late.clone()]);
    assert_eq!(m.apply(&alive(), t0), vec![Event::Back(b.clone())]);
    // Stopped: late, then down, then nothing new while it stays so.
    assert_eq!(m.apply(&timeout(Phase::Reply), t0), vec![late]);
    assert_eq!(
        m.apply(&timeout(Phase::Reply), t0),
        vec![Event::Down(b.clone(), Reason::Timeout(Phase::Reply))]
    );
    assert!(m.apply(&timeout(Phase::Reply), t0).is_empty());
    assert_eq!(m.apply(&alive(), t0), vec![Event::Back(b.clone())]);
    // A refusal is no delay: down at once, and after a late round too.
    let refused = vec![(b.clone(), Outcome::Down(Reason::Refused))];
    assert_eq!(
        m.apply(&refused, t0),
        vec![Event::Down(b.clone(), Reason::Refused)]
    );
    assert_eq!(m.apply(&alive(), t0), vec![Event::Back(b.clone())]);
    assert_eq!(m.apply(&timeout(Phase::Connect), t0).len(), 1);
    assert_eq!(m.apply(&refused, t0), vec![Event::Down(b, Reason::Refused)]);
    // A member never heard from yet is late first as well.
    m.observe(
        vec![rec("me@h", 2), rec("b@h", 2), rec("c@h", 1)],
        false,
        t0,
    );
    let c = vec![(name("c@h"), Outcome::Down(Reason::Timeout(Phase::Connect)))];
    assert!(matches!(m.apply(&c, t0)[..], [Event::Late(..)]));
    assert!(matches!(m.apply(&c, t0)[..], [Event::Down(..)]));
}

#[test]
fn a_silent_unanswering_entry_expires_after_the_ttl_but_never_our_own() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(vec![rec("me@h", 1), rec("b@h", 1)], false, t0);
    let obs = m.observe(vec![rec("me@h", 1), rec("b@h", 1)], false, t0 + 4 * SEC);
    assert!(obs.expired.is_empty());
    let obs = m.observe(vec![rec("me@h", 1), rec("b@h", 1)], false, t0 + 5 * SEC);
    assert_eq!(obs.expired, vec![rec("b@h", 1)]);
    assert_eq!(obs.live, vec![rec("me@h", 1)]);
    assert!(
        matches!(obs.events[..], [Event::Expired(ref n, d)] if *n == name("b@h") && d == 5 * SEC)
    );
}

#[test]
fn a_node_that_answers_never_expires_however_still_its_heartbeat() {
    let t0 = Instant::now();
    let mut m = membership();
    let b = name("b@h");
    for i in 0..30 {
        let now = t0 + i * SEC;
        let obs = m.observe(vec![rec("b@h", 1)], false, now);
        assert!(obs.expired.is_empty(), "expired at {i} s");
        m.apply(&[(b.clone(), Outcome::Alive(SEC))], now);
    }
    // It stops answering: the TTL counts from its last answer.
    let last = t0 + 29 * SEC;
    m.apply(&[(b.clone(), Outcome::Down(Reason::Refused))], last + SEC);
    let obs = m.observe(vec![rec("b@h", 1)], false, last + 4 * SEC);
    assert!(obs.expired.is_empty());
    let obs = m.observe(vec![rec("b@h", 1)], false, last + 5 * SEC);
    assert_eq!(names(&obs.expired), ["b@h"]);
}

#[test]
fn joins_expiries_and_updates_in_one_scan_come_in_name_order() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(vec![rec("c@h", 1), rec("a@h", 1)], false, t0);
    m.apply(&[(name("a@h"), Outcome::Alive(SEC))], t0 + 5 * SEC);
    // Out of order, a join after an expiry, and an updated member.
    let obs = m.observe(
        vec![rec("d@h", 1), rec("c@h", 1), rec("a@h", 2)],
        false,
        t0 + 5 * SEC,
    );
    assert!(
        matches!(obs.events[..], [Event::Expired(ref c, _), Event::Joined(ref d)]
            if *c == name("c@h") && *d == name("d@h")),
        "{:?}",
        obs.events
    );
    assert_eq!(obs.live, vec![rec("a@h", 2), rec("d@h", 1)]);
    assert_eq!(obs.expired, vec![rec("c@h", 1)]);
    assert_eq!(names(&m.records()), ["a@h", "d@h"]);
    assert_eq!(m.records()[0], rec("a@h", 2));
    // c comes back: a join again; d is a member, not new; a, its
    // heartbeat moving, left.
    let obs = m.observe(vec![rec("c@h", 1), rec("d@h", 1)], false, t0 + 6 * SEC);
    assert_eq!(
        obs.events,
        vec![Event::Left(name("a@h")), Event::Joined(name("c@h"))]
    );
}

#[test]
fn a_name_found_twice_counts_once_with_its_later_record() {
    let t0 = Instant::now();
    let mut m = membership();
    let obs = m.observe(vec![rec("b@h", 1), rec("b@h", 2)], false, t0);
    assert_eq!(obs.events, vec![Event::Joined(name("b@h"))]);
    assert_eq!(obs.live, vec![rec("b@h", 2)]);
    // Version 2 stood still since then: expired at the TTL.
    let obs = m.observe(vec![rec("b@h", 2)], false, t0 + 5 * SEC);
    assert_eq!(obs.expired, vec![rec("b@h", 2)]);
}

#[test]
fn a_node_heard_from_between_scans_joins_once_and_follows_the_same_rules() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(vec![rec("me@h", 1)], false, t0);
    let b = name("b@h");
    assert!(!m.contains(&b));
    assert_eq!(m.join(rec("b@h", 1), t0), Some(Event::Joined(b.clone())));
    assert!(m.contains(&b));
    // The next scan finds it: a member, no second join.
    assert_eq!(m.join(rec("b@h", 1), t0), None);
    let obs = m.observe(vec![rec("me@h", 2), rec("b@h", 1)], false, t0 + SEC);
    assert!(obs.events.is_empty(), "{:?}", obs.events);
    assert_eq!(names(&obs.live), ["b@h", "me@h"]);
    // Never answering, its heartbeat still: expired at the TTL from
    // the join, as a member a scan found.
    m.apply(&[(b.clone(), Outcome::Down(Reason::Refused))], t0 + SEC);
    let obs = m.observe(vec![rec("me@h", 3), rec("b@h", 1)], false, t0 + 4 * SEC);
    assert!(obs.expired.is_empty());
    let obs = m.observe(vec![rec("me@h", 4), rec("b@h", 1)], false, t0 + 5 * SEC);
    assert_eq!(names(&obs.expired), ["b@h"]);
    // Joined and gone before any scan: its file's vanishing is a leave.
    assert!(m.join(rec("c@h", 1), t0 + 5 * SEC).is_some());
    let obs = m.observe(vec![rec("me@h", 5)], false, t0 + 6 * SEC);
    assert_eq!(obs.events, vec![Event::Left(name("c@h"))]);
}

#[test]
fn a_moving_heartbeat_never_expires() {
    let t0 = Instant::now();
    let mut m = membership();
    for i in 0..20 {
        let obs = m.observe(vec![rec("b@h", i)], false, t0 + i as u32 * SEC);
        assert!(obs.expired.is_empty());
    }
}

#[test]
fn no_expiry_while_paused() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(vec![rec("b@h", 1)], false, t0);
    m.pause_expiry(true);
    assert!(
        m.observe(vec![rec("b@h", 1)], false, t0 + 60 * SEC)
            .expired
            .is_empty()
    );
    m.pause_expiry(false);
    assert_eq!(
        m.observe(vec![rec("b@h", 1)], false, t0 + 61 * SEC)
            .expired
            .len(),
        1
    );
}

#[test]
fn vanishing_fresh_is_a_leave_and_vanishing_stale_is_gone() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(vec![rec("b@h", 1), rec("c@h", 1)], false, t0);
    m.observe(vec![rec("b@h", 2), rec("c@h", 1)], false, t0 + 3 * SEC);
    let obs = m.observe(vec![], false, t0 + 4 * SEC);
    assert_eq!(
        obs.events,
        vec![Event::Left(name("b@h")), Event::Gone(name("c@h"))]
    );
}

#[test]
fn a_remade_registry_keeps_its_members_while_they_write_again() {
    let t0 = Instant::now();
    let mut m = membership();
    m.observe(
        vec![rec("me@h", 1), rec("b@h", 1), rec("c@h", 1)],
        false,
        t0,
    );
    // The directory was deleted and made again: only we are back yet.
    let obs = m.observe(vec![rec("me@h", 2)], true, t0 + SEC);
    assert!(obs.events.is_empty(), "{:?}", obs.events);
    assert_eq!(names(&obs.live), ["b@h", "c@h", "me@h"]);
    // b writes again: nothing to say; c never does and goes after the TTL.
    let obs = m.observe(vec![rec("me@h", 3), rec("b@h", 3)], false, t0 + 2 * SEC);
    assert!(obs.events.is_empty(), "{:?}", obs.events);
    assert_eq!(names(&obs.live), ["b@h", "c@h", "me@h"]);
    let obs = m.observe(vec![rec("me@h", 4), rec("b@h", 4)], false, t0 + 6 * SEC);
    assert_eq!(obs.events, vec![Event::Gone(name("c@h"))]);
    assert_eq!(names(&obs.live), ["b@h", "me@h"]);
}
