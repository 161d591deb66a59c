//! Who is in the cluster, as this node sees it: pure state, with the clock
//! passed in, so every transition is tested with made-up times.
//!
//! Staleness is judged only by what this node observed, on its own
//! monotonic clock, so clock skew between hosts never expires a live node.
//! An entry expires only when its heartbeat stood still for the TTL *and*
//! its node has not answered a ping for the TTL: the recipe's nodes ping one
//! node after another, so one hung node stalls every one of their heartbeats
//! while they still answer.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::decimal::Fixed;
use crate::erlang::Phase;
use crate::logging::text::field;
use crate::name::NodeName;
use crate::registry::Record;

/// Why a ping failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Nothing listens at the address.
    Refused,
    /// No answer within the timeout (the phase is named).
    Timeout(Phase),
    /// The handshake failed on the cookie.
    BadCookie,
    /// The node at the address has another name.
    NameMismatch(String),
    /// The address is unknown (no port in the record and none from EPMD).
    NoAddress(String),
    /// The node's link closed without its leaving: it was killed, or its
    /// host went away (the words say what the link's reader saw).
    Closed(String),
    /// Anything else: a broken link, a protocol error.
    Failed(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Refused => write!(f, "connection refused"),
            Reason::Timeout(phase) => write!(f, "timeout ({phase})"),
            Reason::BadCookie => write!(f, "bad cookie"),
            // Text from the peer or EPMD: escaped and bounded wherever it is shown.
            Reason::NameMismatch(got) => write!(f, "name mismatch (it answered as {})", field(got)),
            Reason::NoAddress(why) => write!(f, "no address ({})", field(why)),
            Reason::Closed(why) | Reason::Failed(why) => write!(f, "{}", field(why)),
        }
    }
}

impl Reason {
    /// The same kind of failure, whatever the details: a reason that only
    /// changes its wording is not a new event.
    /// After a closed link, whatever the next dials say is the same outage.
    fn same_kind(&self, other: &Reason) -> bool {
        matches!(self, Reason::Closed(_))
            || std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// One ping's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered `yes` in time, after this round trip.
    Alive(Duration),
    /// Did not.
    Down(Reason),
}

impl Outcome {
    /// Whether the node answered.
    pub(crate) fn is_alive(&self) -> bool {
        matches!(self, Outcome::Alive(_))
    }
}

/// A change worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// First seen in the registry, or first heard from (its link came up)
    /// with an entry there.
    Joined(NodeName),
    /// Stopped answering (or never did).
    Down(NodeName, Reason),
    /// Answers again.
    Back(NodeName),
    /// Unregistered itself while its heartbeat was fresh: a graceful leave.
    Left(NodeName),
    /// Its heartbeat stood still and it did not answer for the TTL; this
    /// node removed its file.
    Expired(NodeName, Duration),
    /// Its file vanished after its heartbeat had stopped: another node
    /// expired it first.
    Gone(NodeName),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Joined(n) => write!(f, "node {n} joined"),
            Event::Down(n, why) => write!(f, "node {n} is down: {why}"),
            Event::Back(n) => write!(f, "node {n} is back"),
            Event::Left(n) => write!(f, "node {n} left"),
            Event::Expired(n, silent) => write!(
                f,
                "node {n} expired: no heartbeat and no answer for {} s, registry entry removed",
                Fixed::seconds(silent.as_millis())
            ),
            Event::Gone(n) => write!(f, "node {n} expired: its registry entry was removed"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    Unknown,
    Up,
    Down,
}

struct Member {
    record: Record,
    changed_at: Instant,
    /// When it last answered a ping (when first seen, before any ping).
    answered_at: Instant,
    /// Since when its file is missing from a registry that was deleted and
    /// made again; it stays a member while its owner writes it again.
    missing_since: Option<Instant>,
    /// Whether the heartbeat moved between our last two scans: a file that
    /// vanishes after that was removed by its live owner, however late our
    /// own rounds run.
    moved_last_scan: bool,
    health: Health,
    reason: Option<Reason>,
}

impl Member {
    /// A member first seen at `now`: its heartbeat counts as fresh and as
    /// answered from then, and its health is not known before a ping.
    fn new(record: Record, now: Instant) -> Member {
        Member {
            record,
            changed_at: now,
            answered_at: now,
            missing_since: None,
            moved_last_scan: true,
            health: Health::Unknown,
            reason: None,
        }
    }
}

/// The members this node knows, by name.
pub(crate) struct Membership {
    me: NodeName,
    ttl: Duration,
    /// How long a heartbeat may stand still and still count as fresh.
    fresh: Duration,
    members: BTreeMap<NodeName, Member>,
    /// No expiry while our own heartbeat fails: the registry is not usable.
    expiry_paused: bool,
}

/// What [`Membership::observe`] found in one scan.
pub(crate) struct Observation {
    /// Members to ping this round, sorted by name.
    pub live: Vec<Record>,
    /// Entries whose files this node should remove, as scanned.
    pub expired: Vec<Record>,
    /// Joins, leaves and expiries.
    pub events: Vec<Event>,
}

impl Membership {
    /// Empty membership for node `me`. `interval` sets how long a heartbeat
    /// may stand still and still count as fresh (two intervals).
    pub(crate) fn new(me: NodeName, interval: Duration, ttl: Duration) -> Membership {
        Membership {
            me,
            ttl,
            fresh: interval * 2,
            members: BTreeMap::new(),
            expiry_paused: false,
        }
    }

    /// Stops (or resumes) expiring entries: while our own heartbeat cannot
    /// be written, the registry's heartbeats say nothing.
    pub(crate) fn pause_expiry(&mut self, paused: bool) {
        self.expiry_paused = paused;
    }

    /// The records of every member, sorted by name: whom to ping when the
    /// registry cannot be listed.
    pub(crate) fn records(&self) -> Vec<Record> {
        self.members.values().map(|m| m.record.clone()).collect()
    }

    /// Takes one registry scan at time `now`. `dir_replaced`: the registry
    /// directory was deleted and made again, so missing files may only not
    /// be back yet.
    pub(crate) fn observe(
        &mut self,
        mut records: Vec<Record>,
        dir_replaced: bool,
        now: Instant,
    ) -> Observation {
        let mut events = Vec::new();
        // By name, as the members are; a name found twice (a listing that
        // raced a rename) counts once, with its later record.
        sort_by_name(&mut records);
        records.dedup_by(|later, earlier| {
            let twice = later.name == earlier.name;
            if twice {
                std::mem::swap(later, earlier);
            }
            twice
        });
        let mut live = Vec::with_capacity(records.len());
        // Vanished: a leave if the heartbeat was still moving, else an expiry
        // done by someone else; in a remade directory, not before the TTL.
        // Members and records are both by name: one walk finds them.
        let mut found = records.iter().map(|r| &r.name).peekable();
        let gone: Vec<NodeName> = self
            .members
            .keys()
            .filter(|name| {
                while found.next_if(|f| f < name).is_some() {}
                found.peek() != Some(name)
            })
            .cloned()
            .collect();
        for name in gone {
            let Some(m) = self.members.get_mut(&name) else {
                continue;
            };
            if dir_replaced || m.missing_since.is_some() {
                // Its heartbeat is not moving while its file is missing.
                m.moved_last_scan = false;
                let since = *m.missing_since.get_or_insert(now);
                if now.duration_since(since) < self.ttl {
                    live.push(m.record.clone());
                    continue;
                }
            }
            let fresh = m.moved_last_scan
                || now.duration_since(m.changed_at) <= self.fresh
                || now.duration_since(m.answered_at) <= self.fresh;
            self.members.remove(&name);
            events.push(if fresh {
                Event::Left(name)
            } else {
                Event::Gone(name)
            });
        }
        let mut expired = Vec::new();
        for record in records {
            let Some(m) = self.members.get_mut(&record.name) else {
                events.push(Event::Joined(record.name.clone()));
                self.members
                    .insert(record.name.clone(), Member::new(record.clone(), now));
                live.push(record);
                continue;
            };
            m.missing_since = None;
            m.moved_last_scan = m.record.version != record.version;
            if m.moved_last_scan {
                m.changed_at = now;
            }
            // In place: the same name, and a heartbeat that fits where the
            // last one was.
            m.record.clone_from(&record);
            let silent = now.duration_since(m.changed_at);
            let unanswered = now.duration_since(m.answered_at);
            if silent >= self.ttl
                && unanswered >= self.ttl
                && !self.expiry_paused
                && record.name != self.me
            {
                events.push(Event::Expired(record.name.clone(), silent));
                self.members.remove(&record.name);
                expired.push(record);
            } else {
                live.push(record);
            }
        }
        sort_by_name(&mut live);
        Observation {
            live,
            expired,
            events,
        }
    }

    /// Whether `name` is a member.
    pub(crate) fn contains(&self, name: &NodeName) -> bool {
        self.members.contains_key(name)
    }

    /// Takes a node heard from between scans at time `now` (its link came
    /// up), whose entry is `record`: a member from now on, exactly as if a
    /// scan had found it, so the same leave and expiry rules hold for it.
    /// Returns its join; nothing when it is a member already.
    pub(crate) fn join(&mut self, record: Record, now: Instant) -> Option<Event> {
        if self.members.contains_key(&record.name) {
            return None;
        }
        let name = record.name.clone();
        self.members.insert(name.clone(), Member::new(record, now));
        Some(Event::Joined(name))
    }

    /// Drops a member that left without a registry file to vanish (DNS
    /// mode); returns the leave to log, if it was a member.
    pub(crate) fn leave(&mut self, name: &NodeName) -> Option<Event> {
        self.members.remove(name).map(|_| Event::Left(name.clone()))
    }

    /// Takes one round's ping results, got at `now`, and returns the
    /// changes of health.
    pub(crate) fn apply(&mut self, results: &[(NodeName, Outcome)], now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for (name, outcome) in results {
            let Some(m) = self.members.get_mut(name) else {
                continue;
            };
            match outcome {
                Outcome::Alive(_) => {
                    m.answered_at = now;
                    if m.health == Health::Down {
                        events.push(Event::Back(name.clone()));
                    }
                    m.health = Health::Up;
                    m.reason = None;
                }
                Outcome::Down(why) => {
                    let new_kind = m.reason.as_ref().is_none_or(|r| !r.same_kind(why));
                    if m.health != Health::Down || new_kind {
                        events.push(Event::Down(name.clone(), why.clone()));
                    }
                    m.health = Health::Down;
                    m.reason = Some(why.clone());
                }
            }
        }
        events
    }
}

/// Sorts records by name; a scan's come sorted already, and then checking
/// costs a fraction of sorting.
fn sort_by_name(records: &mut [Record]) {
    if !records.is_sorted_by(|a, b| a.name <= b.name) {
        records.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[cfg(test)]
mod tests {
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
}
