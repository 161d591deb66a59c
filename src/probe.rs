//! The pinging side: one ping per member per round over persistent links.
//!
//! The round thread writes every ping of the round first, then collects the
//! replies link by link against one deadline, so all pings are in flight at
//! once and a peer that never answers costs the round at most the timeout.
//! Opening a link (connect and handshake, plus the first ping) is left to a
//! small pool of dialer threads, so a peer that hangs mid-handshake holds up
//! one dialer, not the round. No thread or connection is made per peer per
//! round: links stay open and are reused until they break.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::erlang::frame::TICK;
use crate::erlang::handshake::HandshakeError;
use crate::erlang::link::{self, DialError, Link, ReadError, Received};
use crate::erlang::message::{self, CallTemplate, Incoming};
use crate::erlang::term::{Pid, Term};
use crate::erlang::{Identity, Phase, epmd};
use crate::membership::{Outcome, Reason};
use crate::name::NodeName;

/// Threads that open links. Each blocks for at most one timeout per dial.
const DIALERS: usize = 4;

/// Rounds in a row a peer may leave a ping unanswered before its link is
/// closed and opened afresh.
const MAX_MISSED_REPLIES: u32 = 3;

/// One member to ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its name, which the node at `addr` must answer with.
    pub name: NodeName,
    /// Its listener; `None` to ask EPMD on the name's host.
    pub addr: Option<SocketAddr>,
}

struct DialJob {
    target: Target,
    round: u64,
    reference: u64,
    timeout: Duration,
}

struct DialDone {
    target: Target,
    round: u64,
    link: Option<Link>,
    outcome: Outcome,
}

/// Pings members over links it keeps between rounds.
pub struct Prober {
    me: Arc<Identity>,
    pid: Pid,
    links: HashMap<NodeName, Link>,
    /// Each member's ping, encoded once.
    templates: HashMap<NodeName, CallTemplate>,
    /// Members being dialled, maybe since an earlier round.
    dialing: HashSet<NodeName>,
    jobs: Option<Sender<DialJob>>,
    done: Receiver<DialDone>,
    dialers: Vec<JoinHandle<()>>,
    round: u64,
    next_ref: u64,
}

impl Prober {
    /// Starts the dialer threads. `epmd_port` is where to ask for the port
    /// of a member whose record has none.
    pub fn start(me: Arc<Identity>, epmd_port: u16) -> io::Result<Prober> {
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<DialJob>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let pid = message::our_pid(&me.name, me.creation);
        let mut dialers = Vec::new();
        for i in 0..DIALERS {
            let (jobs, done, me, pid) = (job_rx.clone(), done_tx.clone(), me.clone(), pid.clone());
            let handle = thread::Builder::new()
                .name(format!("pulse-dial-{i}"))
                .spawn(move || {
                    // Ends when the prober drops the job sender.
                    for job in jobs {
                        let result = dial_and_ping(&me, &pid, epmd_port, job);
                        if done.send(result).is_err() {
                            break;
                        }
                    }
                })?;
            dialers.push(handle);
        }
        Ok(Prober {
            me,
            pid,
            links: HashMap::new(),
            templates: HashMap::new(),
            dialing: HashSet::new(),
            jobs: Some(job_tx),
            done: done_rx,
            dialers,
            round: 0,
            next_ref: 0,
        })
    }

    fn reference(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    /// Pings every target once and returns each one's outcome, in the
    /// targets' order, within `timeout` (plus a few milliseconds).
    pub fn round(&mut self, targets: &[Target], timeout: Duration) -> Vec<(NodeName, Outcome)> {
        self.round += 1;
        let deadline = Instant::now() + timeout;
        let wanted: HashMap<&NodeName, &Target> = targets.iter().map(|t| (&t.name, t)).collect();
        self.templates.retain(|name, _| wanted.contains_key(name));
        // A member that left, or came back at another address, loses its link.
        self.links.retain(|name, link| {
            wanted
                .get(name)
                .is_some_and(|t| t.addr.is_none_or(|a| a == link.addr))
        });

        let mut outcomes: HashMap<NodeName, Outcome> = HashMap::new();
        // Dials that finished after the last round's deadline hand over
        // their links (their outcomes were for that round).
        while let Ok(done) = self.done.try_recv() {
            self.take_dial(done, &wanted, &mut outcomes);
        }
        // Dials first, so the dialers work while the pings are written.
        for t in targets {
            if !self.links.contains_key(&t.name) {
                self.dispatch(t, timeout);
            }
        }
        let mut sent = Vec::new();
        let mut broken = Vec::new();
        for t in targets {
            let Some(link) = self.links.get_mut(&t.name) else {
                continue;
            };
            self.next_ref += 1;
            let reference = self.next_ref;
            if !self.templates.contains_key(&t.name) {
                let template =
                    CallTemplate::new(&self.pid, &self.me.name, self.me.creation, t.name.as_str());
                self.templates.insert(t.name.clone(), template);
            }
            let Some(template) = self.templates.get_mut(&t.name) else {
                continue;
            };
            match link.send(template.call(reference)) {
                Ok(()) => sent.push((t, reference, Instant::now())),
                Err(_) => broken.push(t),
            }
        }
        for (t, reference, at) in sent {
            let (Some(link), Some(template)) =
                (self.links.get_mut(&t.name), self.templates.get(&t.name))
            else {
                continue;
            };
            match await_reply(link, &self.me, template, reference, deadline) {
                Ok(()) => {
                    link.missed_replies = 0;
                    outcomes.insert(t.name.clone(), Outcome::Alive(at.elapsed()));
                }
                Err(reason @ Reason::Timeout(_)) => {
                    // A busy peer keeps its link (a late reply is told from
                    // this round's by its reference); one silent for several
                    // rounds loses it. Reconnecting at once would add
                    // handshakes to a machine that is already slow.
                    link.missed_replies += 1;
                    if link.missed_replies >= MAX_MISSED_REPLIES {
                        self.links.remove(&t.name);
                    }
                    outcomes.insert(t.name.clone(), Outcome::Down(reason));
                }
                Err(_) => broken.push(t),
            }
        }
        // A link that broke (its node restarted, or died) is reopened in the
        // same round: the dial's outcome is the round's, so a restarted node
        // stays true and a dead one shows why (refused, say).
        for t in broken {
            self.links.remove(&t.name);
            self.dispatch(t, timeout);
        }
        // Wait for every dial a target is waiting on, this round's or an
        // earlier one's, so a round with a hung peer always ends at its
        // deadline and the status lines keep their rhythm.
        while targets.iter().any(|t| self.dialing.contains(&t.name)) {
            match self.done.recv_deadline(deadline) {
                Ok(done) => self.take_dial(done, &wanted, &mut outcomes),
                Err(_) => break,
            }
        }
        targets
            .iter()
            .map(|t| {
                let outcome = outcomes
                    .remove(&t.name)
                    .unwrap_or(Outcome::Down(Reason::Timeout(
                        if self.dialing.contains(&t.name) {
                            Phase::Connect
                        } else {
                            Phase::Reply
                        },
                    )));
                (t.name.clone(), outcome)
            })
            .collect()
    }

    /// Hands a target to the dialers unless one is already on it.
    fn dispatch(&mut self, t: &Target, timeout: Duration) -> bool {
        if self.dialing.contains(&t.name) {
            return false;
        }
        let job = DialJob {
            target: t.clone(),
            round: self.round,
            reference: self.reference(),
            timeout,
        };
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent {
            self.dialing.insert(t.name.clone());
        }
        sent
    }

    fn take_dial(
        &mut self,
        done: DialDone,
        wanted: &HashMap<&NodeName, &Target>,
        outcomes: &mut HashMap<NodeName, Outcome>,
    ) {
        self.dialing.remove(&done.target.name);
        let still_wanted = wanted
            .get(&done.target.name)
            .is_some_and(|t| **t == done.target);
        if let Some(link) = done.link {
            if still_wanted {
                self.links.insert(done.target.name.clone(), link);
            }
        }
        if done.round == self.round {
            outcomes.insert(done.target.name, done.outcome);
        }
    }

    /// Whether some link carries calls from its peer, which
    /// [`Prober::serve_calls`] should answer between rounds.
    pub fn has_peer_calls(&self) -> bool {
        self.links.values().any(|l| l.peer_calls)
    }

    /// Answers, without waiting, the calls that arrived on links whose peers
    /// make calls; a link that broke is dropped.
    pub fn serve_calls(&mut self) {
        self.links
            .retain(|_, link| !link.peer_calls || serve_waiting_calls(link).is_ok());
    }

    /// Closes every link and stops the dialers. A dialer in the middle of a
    /// dial finishes it first (bounded by the timeout).
    pub fn close(mut self) {
        self.links.clear();
        self.jobs = None;
        for handle in self.dialers.drain(..) {
            handle.join().expect("a dialer thread never panics");
        }
    }
}

/// Reads frames until the reply to call `reference` arrives, answering any
/// call the peer makes on the same link meanwhile (Erlang nodes reuse the
/// link we opened for their own pings).
fn await_reply(
    link: &mut Link,
    me: &Identity,
    call: &CallTemplate,
    reference: u64,
    deadline: Instant,
) -> Result<(), Reason> {
    loop {
        let lost = |e: io::Error| Reason::Failed(format!("link lost: {e}"));
        let frame = match link.recv(deadline) {
            Ok(Received::Frame(frame)) => frame,
            Ok(Received::Tick) => {
                link.send(&TICK).map_err(lost)?;
                continue;
            }
            Err(ReadError::Timeout) => return Err(Reason::Timeout(Phase::Reply)),
            Err(ReadError::Broken(e)) => return Err(lost(e)),
        };
        // The usual case, told from the bytes: our call answered `yes`.
        if call.is_yes(&frame) {
            return Ok(());
        }
        if let Some(reply) = message::answer(&frame) {
            link.peer_calls = true;
            link.send(&reply).map_err(lost)?;
            continue;
        }
        if let Incoming::Reply {
            reference: r,
            value,
        } = message::parse(&frame)
        {
            if r == message::our_ref(&me.name, me.creation, reference) {
                return if value == Term::atom("yes") {
                    Ok(())
                } else {
                    Err(Reason::Failed(format!("answered {value:?}")))
                };
            }
        }
        // A late reply to an earlier round, or a message we ignore.
    }
}

/// Answers every call and tick already received on `link`.
fn serve_waiting_calls(link: &mut Link) -> Result<(), ReadError> {
    loop {
        let reply = match link.recv(Instant::now()) {
            Ok(Received::Tick) => TICK.to_vec(),
            Ok(Received::Frame(frame)) => match message::answer(&frame) {
                Some(reply) => reply,
                None => continue,
            },
            Err(ReadError::Timeout) => return Ok(()),
            Err(e) => return Err(e),
        };
        link.send(&reply).map_err(ReadError::Broken)?;
    }
}

/// A dialer's job: find the address, open the link, ping once.
fn dial_and_ping(me: &Identity, pid: &Pid, epmd_port: u16, job: DialJob) -> DialDone {
    let DialJob {
        target,
        round,
        reference,
        timeout,
    } = job;
    let deadline = Instant::now() + timeout;
    let (link, outcome) = match open(me, epmd_port, &target, deadline) {
        Err(reason) => (None, Outcome::Down(reason)),
        Ok(mut link) => {
            let at = Instant::now();
            let mut call = CallTemplate::new(pid, &me.name, me.creation, target.name.as_str());
            match link
                .send(call.call(reference))
                .map_err(|e| Reason::Failed(format!("link lost: {e}")))
            {
                Err(reason) => (None, Outcome::Down(reason)),
                Ok(()) => match await_reply(&mut link, me, &call, reference, deadline) {
                    Ok(()) => (Some(link), Outcome::Alive(at.elapsed())),
                    Err(reason) => (None, Outcome::Down(reason)),
                },
            }
        }
    };
    DialDone {
        target,
        round,
        link,
        outcome,
    }
}

/// Opens a link to a target, asking EPMD for the port when the record has
/// none.
pub fn open(
    me: &Identity,
    epmd_port: u16,
    target: &Target,
    deadline: Instant,
) -> Result<Link, Reason> {
    let addr = match target.addr {
        Some(addr) => addr,
        None => epmd_lookup(&target.name, epmd_port, deadline)?,
    };
    link::dial(addr, me, target.name.as_str(), deadline).map_err(|e| match e {
        DialError::Refused => Reason::Refused,
        DialError::Timeout(phase) => Reason::Timeout(phase),
        DialError::Handshake(HandshakeError::BadCookie(_)) => Reason::BadCookie,
        DialError::Handshake(HandshakeError::NameMismatch { got }) => Reason::NameMismatch(got),
        DialError::Handshake(other) => Reason::Failed(other.to_string()),
        DialError::Io(e) => Reason::Failed(e.to_string()),
    })
}

fn epmd_lookup(name: &NodeName, epmd_port: u16, deadline: Instant) -> Result<SocketAddr, Reason> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let ip = crate::name::resolve_host(name.host(), left())
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
