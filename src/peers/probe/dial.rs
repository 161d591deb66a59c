//! Dial threads: a member without a link gets one of its own, which asks
//! EPMD for the port when the record has none, connects and shakes hands
//! by its own deadline. A dial that ran out of time is backed off, so a
//! hung peer costs a thread at most once per backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::round::{Round, position};
use super::{Prober, Target};
use crate::erlang::handshake::HandshakeError;
use crate::erlang::link::{self, DialError, Link};
use crate::erlang::{Identity, Phase, epmd};
use crate::membership::{Outcome, Reason};
use crate::name::NodeName;
use crate::peers::links::Links;

/// Most dials under way at once; beyond it a member waits for the next round.
const MAX_DIALS: usize = 256;

/// Stack of a dial thread: a handshake and an EPMD lookup need little.
const DIAL_STACK: usize = 128 * 1024;

/// The least time a dial is given, whatever the round's timeout: a dial may
/// finish after the round that started it, and its link then serves the
/// next round (at a 10 ms interval a handshake under load can take longer
/// than the 5 ms a round waits).
const MIN_DIAL_TIME: Duration = Duration::from_secs(1);

/// The first wait before a member whose dial timed out is dialled again.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest such wait.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(16);

pub(super) struct DialDone {
    pub(super) target: Target,
    pub(super) result: Result<Arc<Link>, Reason>,
    /// It failed at its deadline: whatever the phase (the EPMD lookup
    /// too), the peer hangs, and is backed off.
    pub(super) ran_out: bool,
}

/// A member whose dial timed out, and when it may be dialled again.
pub(super) struct Backoff {
    pub(super) target: Target,
    pub(super) until: Instant,
    pub(super) wait: Duration,
    pub(super) reason: Reason,
}

impl Prober {
    /// Starts a dial thread for target `i`, `t`, unless one is on it
    /// already or its backoff runs; in that case the last dial's failure is
    /// its outcome.
    pub(super) fn dial(&mut self, i: usize, t: &Target, timeout: Duration, round: &mut Round) {
        if self.dialing.contains(&t.name) {
            return;
        }
        if let Some(b) = self.backoff.get(&t.name) {
            if Instant::now() < b.until {
                round.settle(i, Outcome::Down(b.reason.clone()));
                return;
            }
        }
        if self.dialing.len() >= MAX_DIALS {
            round.settle(i, Outcome::Down(Reason::Timeout(Phase::Connect)));
            return;
        }
        let (links, done, target) = (self.links.clone(), self.done_tx.clone(), t.clone());
        let epmd_port = self.epmd_port;
        let deadline = Instant::now() + timeout.max(MIN_DIAL_TIME);
        let spawned = thread::Builder::new()
            .name("pulse-dial".into())
            .stack_size(DIAL_STACK)
            .spawn(move || {
                let result = open_link(&links, epmd_port, &target, deadline);
                let ran_out = result.is_err() && Instant::now() >= deadline;
                let _ = done.send(DialDone {
                    target,
                    result,
                    ran_out,
                });
            });
        match spawned {
            // Detached: it ends by its deadline and reports on `done`.
            Ok(_) => {
                self.dialing.insert(t.name.clone());
                round.dialed[i] = true;
            }
            Err(e) => {
                let why = Reason::Failed(format!("cannot start a dial thread: {e}"));
                round.settle(i, Outcome::Down(why));
            }
        }
    }

    /// Keeps a finished dial's failure, and its member's backoff.
    pub(super) fn note_dial(&mut self, done: &DialDone) {
        if let Some(m) = self.members.iter_mut().find(|m| m.name == done.target.name) {
            m.dial_failed = done.result.as_ref().err().cloned();
        }
        match &done.result {
            Err(reason) if done.ran_out || matches!(reason, Reason::Timeout(_)) => {
                let wait = self
                    .backoff
                    .get(&done.target.name)
                    .filter(|b| b.target == done.target)
                    .map_or(FIRST_BACKOFF, |b| (b.wait * 2).min(MAX_BACKOFF));
                let backoff = Backoff {
                    target: done.target.clone(),
                    until: Instant::now() + wait,
                    wait,
                    reason: reason.clone(),
                };
                self.backoff.insert(done.target.name.clone(), backoff);
            }
            _ => {
                self.backoff.remove(&done.target.name);
            }
        }
    }

    /// A dial finished during the round: its link gets the ping at once.
    pub(super) fn take_dial(
        &mut self,
        done: DialDone,
        targets: &[Target],
        round: &mut Round,
        timeout: Duration,
        deadline: Instant,
    ) {
        self.dialing.remove(&done.target.name);
        self.note_dial(&done);
        let Some(i) = position(targets, done.target.name.as_str()) else {
            return;
        };
        let t = &targets[i];
        let settled = round.outcomes[i].is_some() || round.waiting[i].is_some();
        if *t != done.target || settled {
            return;
        }
        match done.result {
            Ok(link) if Instant::now() < deadline => self.ping(i, t, &link, round, timeout),
            Ok(_) => {}
            Err(reason) => round.settle(i, Outcome::Down(reason)),
        }
    }
}

/// Opens a link to a target through the table, asking EPMD for the port
/// when the record has none.
fn open_link(
    links: &Arc<Links>,
    epmd_port: u16,
    target: &Target,
    deadline: Instant,
) -> Result<Arc<Link>, Reason> {
    let addr = address(target, epmd_port, deadline)?;
    links
        .dial(addr, target.name.as_str(), deadline)
        .map_err(dial_reason)
}

/// Where a target listens: its record's address, or EPMD's answer.
fn address(target: &Target, epmd_port: u16, deadline: Instant) -> Result<SocketAddr, Reason> {
    match target.addr {
        Some(addr) => Ok(addr),
        None => epmd_lookup(&target.name, epmd_port, deadline),
    }
}

fn dial_reason(e: DialError) -> Reason {
    match e {
        DialError::Refused => Reason::Refused,
        DialError::Timeout(phase) => Reason::Timeout(phase),
        DialError::Handshake(HandshakeError::BadCookie(_)) => Reason::BadCookie,
        DialError::Handshake(HandshakeError::NameMismatch { got }) => Reason::NameMismatch(got),
        DialError::Handshake(other) => Reason::Failed(other.to_string()),
        DialError::Io(e) => Reason::Failed(e.to_string()),
    }
}

/// Opens a link to a target outside any table (to see whether a node
/// answers under a name), asking EPMD for the port when the record has none.
pub(crate) fn open(
    me: &Identity,
    epmd_port: u16,
    target: &Target,
    deadline: Instant,
) -> Result<Link, Reason> {
    let addr = address(target, epmd_port, deadline)?;
    link::dial(addr, me, target.name.as_str(), deadline, || true).map_err(dial_reason)
}

fn epmd_lookup(name: &NodeName, epmd_port: u16, deadline: Instant) -> Result<SocketAddr, Reason> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let ip = crate::dns::resolve_host(name.host(), left())
        .map_err(|e| Reason::NoAddress(format!("no port in its record and {e}")))?;
    let left = left();
    match epmd::port_please(SocketAddr::new(ip, epmd_port), name.alive(), left) {
        Ok(Some(port)) => Ok(SocketAddr::new(ip, port)),
        Ok(None) => Err(Reason::NoAddress("not registered in EPMD".into())),
        Err(e) => Err(Reason::NoAddress(format!(
            "no port in its record and no EPMD: {e}"
        ))),
    }
}
