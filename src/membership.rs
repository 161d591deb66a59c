//! Who is in the cluster, as this node sees it: pure state, with the clock
//! passed in, so every transition is tested with made-up times.
//!
//! Staleness is judged only by what this node observed: a heartbeat that has
//! not changed for the TTL, measured on our own monotonic clock. Clock skew
//! between hosts therefore never expires a live node.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

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
pub enum Outcome {
    /// Answered `yes` in time, after this round trip.
    Alive(Duration),
    /// Did not.
    Down(Reason),
}

impl Outcome {
    /// Whether the node answered.
    pub fn is_alive(&self) -> bool {
        matches!(self, Outcome::Alive(_))
    }
}

/// A change worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// First seen in the registry.
    Joined(NodeName),
    /// Stopped answering (or never did).
    Down(NodeName, Reason),
    /// Answers again.
    Back(NodeName),
    /// Unregistered itself while its heartbeat was fresh: a graceful leave.
    Left(NodeName),
    /// Its heartbeat stood still for the TTL; this node removed its file.
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
                "node {n} expired: no heartbeat for {:.1} s, registry entry removed",
                silent.as_secs_f64()
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
    /// Whether the heartbeat moved between our last two scans: a file that
    /// vanishes after that was removed by its live owner, however late our
    /// own rounds run.
    moved_last_scan: bool,
    health: Health,
    reason: Option<Reason>,
}

/// The members this node knows, by name.
pub struct Membership {
    me: NodeName,
    ttl: Duration,
    /// How long a heartbeat may stand still and still count as fresh.
    fresh: Duration,
    members: BTreeMap<NodeName, Member>,
}

/// What [`Membership::observe`] found in one scan.
pub struct Observation {
    /// Members to ping this round, sorted by name.
    pub live: Vec<Record>,
    /// Entries whose files this node should remove.
    pub expired: Vec<NodeName>,
    /// Joins, leaves and expiries.
    pub events: Vec<Event>,
}

impl Membership {
    /// Empty membership for node `me`. `interval` sets how long a heartbeat
    /// may stand still and still count as fresh (two intervals).
    pub fn new(me: NodeName, interval: Duration, ttl: Duration) -> Membership {
        Membership {
            me,
            ttl,
            fresh: interval * 2,
            members: BTreeMap::new(),
        }
    }

    /// Takes one registry scan at time `now`.
    pub fn observe(&mut self, records: Vec<Record>, now: Instant) -> Observation {
        let mut events = Vec::new();
        let mut seen = BTreeMap::new();
        for record in records {
            seen.insert(record.name.clone(), record);
        }
        // Vanished: a leave if the heartbeat was still moving, else an expiry
        // done by someone else.
        let gone: Vec<NodeName> = self
            .members
            .keys()
            .filter(|n| !seen.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(m) = self.members.remove(&name) {
                if m.moved_last_scan || now.duration_since(m.changed_at) <= self.fresh {
                    events.push(Event::Left(name));
                } else {
                    events.push(Event::Gone(name));
                }
            }
        }
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (name, record) in seen {
            match self.members.get_mut(&name) {
                None => {
                    events.push(Event::Joined(name.clone()));
                    self.members.insert(
                        name,
                        Member {
                            record: record.clone(),
                            changed_at: now,
                            moved_last_scan: true,
                            health: Health::Unknown,
                            reason: None,
                        },
                    );
                    live.push(record);
                }
                Some(m) => {
                    m.moved_last_scan = m.record.version != record.version;
                    if m.moved_last_scan {
                        m.changed_at = now;
                    }
                    m.record = record.clone();
                    let silent = now.duration_since(m.changed_at);
                    if silent >= self.ttl && name != self.me {
                        events.push(Event::Expired(name.clone(), silent));
                        self.members.remove(&name);
                        expired.push(name);
                    } else {
                        live.push(record);
                    }
                }
            }
        }
        Observation {
            live,
            expired,
            events,
        }
    }

    /// Takes one round's ping results and returns the changes of health.
    pub fn apply(&mut self, results: &[(NodeName, Outcome)]) -> Vec<Event> {
        let mut events = Vec::new();
        for (name, outcome) in results {
            let Some(m) = self.members.get_mut(name) else {
                continue;
            };
            match outcome {
                Outcome::Alive(_) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// A record as scanned, its heartbeat at `hb` (and its version with it).
    fn rec(n: &str, hb: u64) -> Record {
        Record {
            name: n.parse().expect("name"),
            addr: Some(([127, 0, 0, 1], 9).into()),
            heartbeat: hb.to_string(),
            version: hb,
        }
    }

    fn name(n: &str) -> NodeName {
        n.parse().expect("name")
    }

    fn membership() -> Membership {
        Membership::new(name("me@h"), SEC, 5 * SEC)
    }

    #[test]
    fn join_down_back() {
        let t0 = Instant::now();
        let mut m = membership();
        let obs = m.observe(vec![rec("me@h", 1), rec("b@h", 1)], t0);
        assert_eq!(
            obs.events,
            vec![Event::Joined(name("b@h")), Event::Joined(name("me@h"))]
        );
        assert_eq!(obs.live.len(), 2);
        let b = name("b@h");
        assert!(m.apply(&[(b.clone(), Outcome::Alive(SEC))]).is_empty());
        let down = m.apply(&[(b.clone(), Outcome::Down(Reason::Refused))]);
        assert_eq!(down, vec![Event::Down(b.clone(), Reason::Refused)]);
        // Still down for the same kind of reason: nothing new.
        assert!(
            m.apply(&[(b.clone(), Outcome::Down(Reason::Refused))])
                .is_empty()
        );
        // A different kind of reason is news.
        let timeout = Outcome::Down(Reason::Timeout(Phase::Reply));
        assert_eq!(m.apply(&[(b.clone(), timeout)]).len(), 1);
        assert_eq!(
            m.apply(&[(b.clone(), Outcome::Alive(SEC))]),
            vec![Event::Back(b)]
        );
    }

    #[test]
    fn a_silent_heartbeat_expires_after_the_ttl_but_never_our_own() {
        let t0 = Instant::now();
        let mut m = membership();
        m.observe(vec![rec("me@h", 1), rec("b@h", 1)], t0);
        let obs = m.observe(vec![rec("me@h", 1), rec("b@h", 1)], t0 + 4 * SEC);
        assert!(obs.expired.is_empty());
        let obs = m.observe(vec![rec("me@h", 1), rec("b@h", 1)], t0 + 5 * SEC);
        assert_eq!(obs.expired, vec![name("b@h")]);
        assert_eq!(obs.live, vec![rec("me@h", 1)]);
        assert!(
            matches!(obs.events[..], [Event::Expired(ref n, d)] if *n == name("b@h") && d == 5 * SEC)
        );
    }

    #[test]
    fn a_moving_heartbeat_never_expires() {
        let t0 = Instant::now();
        let mut m = membership();
        for i in 0..20 {
            let obs = m.observe(vec![rec("b@h", i)], t0 + i as u32 * SEC);
            assert!(obs.expired.is_empty());
        }
    }

    #[test]
    fn vanishing_fresh_is_a_leave_and_vanishing_stale_is_gone() {
        let t0 = Instant::now();
        let mut m = membership();
        m.observe(vec![rec("b@h", 1), rec("c@h", 1)], t0);
        m.observe(vec![rec("b@h", 2), rec("c@h", 1)], t0 + 3 * SEC);
        let obs = m.observe(vec![], t0 + 4 * SEC);
        assert_eq!(
            obs.events,
            vec![Event::Left(name("b@h")), Event::Gone(name("c@h"))]
        );
    }
}
