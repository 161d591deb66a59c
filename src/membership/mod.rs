//! Who is in the cluster, as this node sees it: pure state, with the clock
//! passed in, so every transition is tested with made-up times.
//!
//! Staleness is judged only by what this node observed, on its own
//! monotonic clock, so clock skew between hosts never expires a live node.
//! An entry expires only when its heartbeat stood still for the TTL *and*
//! its node has not answered a ping for the TTL: the recipe's nodes ping one
//! node after another, so one hung node stalls every one of their heartbeats
//! while they still answer.

#[cfg(test)]
mod tests;

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
    /// Missed one ping's timeout. A node slow to be served (its host
    /// overloaded) and a stopped one look alike for one round: the status
    /// line says `false`, and a second timeout in a row is [`Event::Down`].
    Late(NodeName, Reason),
    /// Stopped answering (or never did).
    Down(NodeName, Reason),
    /// Answers again, after it was down or late.
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
            Event::Late(n, why) => write!(f, "node {n} is late: {why}"),
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
    /// One timeout, not yet a second.
    Late,
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
                    if matches!(m.health, Health::Down | Health::Late) {
                        events.push(Event::Back(name.clone()));
                    }
                    m.health = Health::Up;
                    m.reason = None;
                }
                // A first timeout is late, not dead: overload delays a
                // reply, a stopped node never sends one.
                Outcome::Down(why @ Reason::Timeout(_))
                    if matches!(m.health, Health::Unknown | Health::Up) =>
                {
                    events.push(Event::Late(name.clone(), why.clone()));
                    m.health = Health::Late;
                    m.reason = Some(why.clone());
                }
                Outcome::Down(why) => {
                    let new_kind = m.reason.as_ref().is_none_or(|r| !r.same_kind(why));
                    if m.health != Health::Down || new_kind {
                        // After a late round, any failure is down.
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
