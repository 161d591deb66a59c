//! The pinging side: one ping per member per round, over the link table.
//!
//! The round thread writes every ping of the round on the members' links
//! (whoever opened them), then waits on one channel, until its deadline, for
//! what the links' readers hand over: replies, and links that closed. So all
//! pings are in flight at once and a peer that never answers costs the round
//! at most the timeout. A member without a link gets a dial thread of its
//! own; its link, when it comes up, gets the round's ping at once.
//!
//! Dial threads are detached on purpose: each ends by its own deadline, and
//! neither a round nor shutdown waits for one past its deadline. A dial
//! that ran out of time (a peer, or its host's EPMD, that accepts and then
//! hangs) is not tried again before a backoff that doubles up to
//! [`MAX_BACKOFF`], so hung peers cost a thread at most once per backoff,
//! and never delay a live peer's dial. A round waits for a member's first
//! dial only briefly ([`Prober::hold_dials_for`]; the first round up to its
//! timeout): a dial still under way then is the member's outcome for the
//! round, so a hung peer never holds up the status line.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use log::warn;

use crate::erlang::handshake::HandshakeError;
use crate::erlang::link::{self, DialError, Link};
use crate::erlang::message::{self, CallTemplate, Incoming};
use crate::erlang::term::{Pid, Term};
use crate::erlang::{Identity, Phase, epmd};
use crate::links::{LinkEvent, Links};
use crate::membership::{Outcome, Reason};
use crate::name::NodeName;
use crate::registry::Target;

/// Most dials under way at once; beyond it a member waits for the next round.
const MAX_DIALS: usize = 256;

/// Stack of a dial thread: a handshake and an EPMD lookup need little.
const DIAL_STACK: usize = 128 * 1024;

/// Pings in a row a link may leave unanswered before it is closed (and the
/// next round dials afresh), if the peer has also sent nothing at all for
/// [`SILENT_FOR`]: a busy peer that answers late, or ticks, keeps its link.
const MAX_MISSED_REPLIES: u32 = 3;
/// See [`MAX_MISSED_REPLIES`].
const SILENT_FOR: Duration = Duration::from_secs(1);

/// The least time a dial is given, whatever the round's timeout: a dial may
/// finish after the round that started it, and its link then serves the
/// next round (at a 10 ms interval a handshake under load can take longer
/// than the 5 ms a round waits).
const MIN_DIAL_TIME: Duration = Duration::from_secs(1);

/// The first wait before a member whose dial timed out is dialled again.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest such wait.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(16);

struct DialDone {
    target: Target,
    result: Result<Arc<Link>, Reason>,
    /// It failed at its deadline: whatever the phase (the EPMD lookup
    /// too), the peer hangs, and is backed off.
    ran_out: bool,
}

/// A member whose dial timed out, and when it may be dialled again.
struct Backoff {
    target: Target,
    until: Instant,
    wait: Duration,
    reason: Reason,
}

/// A ping written and not yet answered.
struct Waiting {
    link: Arc<Link>,
    reference: u64,
    sent: Instant,
}

/// What the prober keeps of one member from round to round.
struct Member {
    name: NodeName,
    /// Its ping, encoded once.
    template: CallTemplate,
    /// Pings in a row its link left unanswered, and which link.
    missed: Option<(u64, u32)>,
    /// Links closed in a row for unanswered pings, since its last answer:
    /// each doubles the wait before the next dial.
    silent_closes: u32,
    /// Why its last dial failed; none once one succeeded. A round that
    /// ends while its next dial is under way gives it this reason: a peer
    /// that refuses us slowly (a wrong cookie) still says why.
    dial_failed: Option<Reason>,
    /// Its link in the table as of [`Prober::links_version`]. It may keep
    /// a link the table has let go until the next round looks again.
    link: Option<Arc<Link>>,
}

/// Pings members over the links in the table.
pub(crate) struct Prober {
    me: Arc<Identity>,
    pid: Pid,
    links: Arc<Links>,
    events: Receiver<LinkEvent>,
    epmd_port: u16,
    /// What is kept of each member, in the order of the last round's
    /// targets: a round over the same members finds theirs by position,
    /// with no lookup by name.
    members: Vec<Member>,
    /// The link table's version the members' links were looked up at; none
    /// when they must be looked up again.
    links_version: Option<u64>,
    /// Members being dialled, maybe since an earlier round.
    dialing: HashSet<NodeName>,
    backoff: HashMap<NodeName, Backoff>,
    done_tx: Sender<DialDone>,
    done: Receiver<DialDone>,
    /// Disconnected when the node stops: a round then ends at once.
    stop: Receiver<()>,
    /// The number the link table gave this round's replies.
    reply_round: u32,
    /// What the links said during the round that is news for the round
    /// thread: links that closed, not under one of its pings, and links
    /// peers opened.
    meanwhile: Vec<LinkNews>,
    /// How long a round after the first waits for a dial it started; `None`:
    /// up to its timeout.
    hold_dials: Option<Duration>,
    /// Whether a round has run: the first waits for its dials up to its
    /// timeout (no status line before it to keep pace with).
    ran: bool,
    next_ref: u64,
}

/// What a link event outside a round's pings means for the round thread.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkNews {
    /// The member's link closed without its leaving (what the reader saw).
    Closed(NodeName, String),
    /// A peer opened a link to us and passed the handshake: if it is not a
    /// member yet, it has just started.
    Up(NodeName),
}

/// One round's progress, by the target's position in the round's targets.
struct Round {
    outcomes: Vec<Option<Outcome>>,
    waiting: Vec<Option<Waiting>>,
    /// How many entries of `waiting` are set.
    unanswered: usize,
    /// Which targets this round started a dial for: only those dials are
    /// waited for, and briefly.
    dialed: Vec<bool>,
}

impl Round {
    fn new(targets: usize) -> Round {
        Round {
            outcomes: (0..targets).map(|_| None).collect(),
            waiting: (0..targets).map(|_| None).collect(),
            unanswered: 0,
            dialed: vec![false; targets],
        }
    }

    fn settle(&mut self, i: usize, outcome: Outcome) {
        self.outcomes[i] = Some(outcome);
    }

    fn wait(&mut self, i: usize, waiting: Waiting) {
        if self.waiting[i].replace(waiting).is_none() {
            self.unanswered += 1;
        }
    }

    fn take_waiting(&mut self, i: usize) -> Option<Waiting> {
        let waiting = self.waiting[i].take();
        if waiting.is_some() {
            self.unanswered -= 1;
        }
        waiting
    }
}

/// Where the member `name` is among `targets`. Used only for what the
/// round hears by name (a dial's end, a link's event), which is rare.
fn position(targets: &[Target], name: &str) -> Option<usize> {
    targets.iter().position(|t| t.name.as_str() == name)
}

impl Prober {
    /// A prober over `links`, whose readers report on `events`. `epmd_port`
    /// is where to ask for the port of a member whose record has none.
    pub(crate) fn new(links: Arc<Links>, events: Receiver<LinkEvent>, epmd_port: u16) -> Prober {
        let me = links.me().clone();
        let pid = message::our_pid(&me.name, me.creation);
        let (done_tx, done) = crossbeam_channel::unbounded();
        Prober {
            me,
            pid,
            links,
            events,
            epmd_port,
            members: Vec::new(),
            links_version: None,
            dialing: HashSet::new(),
            backoff: HashMap::new(),
            done_tx,
            done,
            stop: crossbeam_channel::never(),
            reply_round: 0,
            meanwhile: Vec::new(),
            hold_dials: None,
            ran: false,
            next_ref: 0,
        }
    }

    /// Ends any round at once when `stop` disconnects (its sender dropped).
    pub(crate) fn stop_on(mut self, stop: Receiver<()>) -> Prober {
        self.stop = stop;
        self
    }

    /// From its second round on, a round waits at most `wait` from its
    /// start for a member's first dial (a new member, a link lost), and
    /// not for dials earlier rounds started (for replies, and for a dial
    /// after one that failed at once, still up to its timeout): a member
    /// whose first dial is still under way then is down for that round,
    /// `timeout (connect)`, and its link serves the next. So a peer that
    /// hangs in its first dial never stretches a round by more than
    /// `wait`, and one whose dial timed out is not waited for at all.
    pub(crate) fn hold_dials_for(mut self, wait: Duration) -> Prober {
        self.hold_dials = Some(wait);
        self
    }

    /// Whether the node is stopping (a round cut short says nothing).
    pub(crate) fn stopping(&self) -> bool {
        matches!(
            self.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// What the links report between rounds; see [`Prober::link_closed`].
    pub(crate) fn events(&self) -> &Receiver<LinkEvent> {
        &self.events
    }

    /// What an event that came between rounds says: a link that closed,
    /// or one a peer opened (a late reply is dropped).
    pub(crate) fn news(&self, event: LinkEvent) -> Option<LinkNews> {
        match event {
            LinkEvent::Closed { peer, why, .. } => {
                peer.parse().ok().map(|n| LinkNews::Closed(n, why))
            }
            LinkEvent::Up { peer } => peer.parse().ok().map(LinkNews::Up),
            LinkEvent::Frame { .. } => None,
        }
    }

    /// Whether a link to `name` is up (a newer one than a link that closed).
    pub(crate) fn has_link(&self, name: &NodeName) -> bool {
        self.links.get(name.as_str()).is_some()
    }

    /// What the links said during the last round that was not about its
    /// pings (see [`Prober::news`]).
    pub(crate) fn meanwhile(&mut self) -> Vec<LinkNews> {
        std::mem::take(&mut self.meanwhile)
    }

    /// Pings every target once and returns each one's outcome, in the
    /// targets' order, within `timeout` (plus a few milliseconds).
    pub(crate) fn round(
        &mut self,
        targets: &[Target],
        timeout: Duration,
    ) -> Vec<(NodeName, Outcome)> {
        let start = Instant::now();
        let deadline = start + timeout;
        // Dials are waited for until then, at the latest.
        let dials_until = match self.hold_dials {
            Some(wait) if self.ran => (start + wait).min(deadline),
            _ => deadline,
        };
        self.ran = true;
        self.keep_members(targets);
        self.look_up_links();
        // A member back at another address is dialled at once.
        if !self.backoff.is_empty() {
            let wanted: HashMap<&NodeName, &Target> =
                targets.iter().map(|t| (&t.name, t)).collect();
            self.backoff
                .retain(|name, b| wanted.get(name).is_some_and(|t| **t == b.target));
        }
        let mut round = Round::new(targets.len());
        self.reply_round = self.links.reset_replies();
        // Dials that finished since the last round: their links are in the
        // table already; only the backoff needs their news.
        while let Ok(done) = self.done.try_recv() {
            self.dialing.remove(&done.target.name);
            self.note_dial(&done);
        }
        // Anything reported between the last round and this one is old
        // news, but for a link a peer opened (the round thread has not
        // seen it yet).
        while let Ok(event) = self.events.try_recv() {
            if let Some(up @ LinkNews::Up(_)) = self.news(event) {
                self.meanwhile.push(up);
            }
        }
        for (i, t) in targets.iter().enumerate() {
            // As in Erlang, where pinging yourself is a local call: our own
            // entry is answered here, without a connection to ourselves.
            if t.name.as_str() == self.me.name {
                round.settle(i, Outcome::Alive(Duration::ZERO));
                continue;
            }
            match self.members[i].link.clone() {
                // A link the peer opened comes from an ephemeral port; one
                // we opened must still lead to the member's address.
                Some(link) if link.inbound || t.addr.is_none_or(|a| a == link.addr) => {
                    self.ping(i, t, &link, &mut round, timeout);
                }
                Some(link) => {
                    self.links.drop_link(t.name.as_str(), link.id);
                    self.dial(i, t, timeout, &mut round);
                }
                None => self.dial(i, t, timeout, &mut round),
            }
        }
        let links = self.links.clone();
        loop {
            // Replies are waited for until the deadline. A dial only by the
            // round that started it, and not at all when its member's last
            // dial timed out: a hung peer never holds up the status line. A
            // first dial until `dials_until`; one after a dial that failed
            // at once (refused, a wrong cookie: the peer is there) until
            // the deadline, as it may be the one that finds the peer up.
            let now = Instant::now();
            let mut until = (round.unanswered > 0).then_some(deadline);
            if !self.dialing.is_empty() {
                for (i, t) in targets.iter().enumerate() {
                    if round.dialed[i]
                        && round.outcomes[i].is_none()
                        && self.dialing.contains(&t.name)
                        && !self.backoff.contains_key(&t.name)
                    {
                        let by = match self.members[i].dial_failed {
                            Some(_) => deadline,
                            None => dials_until,
                        };
                        until = until.max(Some(by));
                    }
                }
            }
            let Some(until) = until.filter(|&until| now < until) else {
                break;
            };
            let left = until - now;
            select! {
                recv(links.all_in()) -> _ => self.collect(&mut round),
                recv(self.events) -> event => match event {
                    Ok(event) => self.take_event(event, targets, &mut round, timeout),
                    Err(_) => break,
                },
                recv(self.done) -> done => match done {
                    Ok(done) => self.take_dial(done, targets, &mut round, timeout, deadline),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
                default(left) => break,
            }
        }
        self.collect(&mut round);
        for (i, t) in targets.iter().enumerate() {
            let Some(waiting) = round.take_waiting(i) else {
                continue;
            };
            let link = waiting.link;
            link.forget_reply();
            let member = &mut self.members[i];
            let missed = match member.missed {
                Some((id, n)) if id == link.id => n + 1,
                _ => 1,
            };
            member.missed = Some((link.id, missed));
            let silent = link.since_read();
            if missed >= MAX_MISSED_REPLIES && silent >= SILENT_FOR {
                self.links.drop_link(t.name.as_str(), link.id);
                member.missed = None;
                let wait = FIRST_BACKOFF
                    .saturating_mul(1 << member.silent_closes.min(4))
                    .min(MAX_BACKOFF);
                member.silent_closes += 1;
                warn!(
                    "closed the link to {}: {missed} pings in a row unanswered and nothing \
                     heard for {:.1} s; dialling again in {} s",
                    t.name,
                    silent.as_secs_f64(),
                    wait.as_secs()
                );
                let backoff = Backoff {
                    target: t.clone(),
                    until: Instant::now() + wait,
                    wait,
                    reason: Reason::Timeout(Phase::Reply),
                };
                self.backoff.insert(t.name.clone(), backoff);
            }
            round.settle(i, Outcome::Down(Reason::Timeout(Phase::Reply)));
        }
        for (member, outcome) in self.members.iter_mut().zip(&round.outcomes) {
            if matches!(outcome, Some(Outcome::Alive(_))) {
                member.silent_closes = 0;
            }
        }
        targets
            .iter()
            .zip(round.outcomes)
            .zip(&self.members)
            .map(|((t, outcome), member)| {
                // Still dialling: down for this round, for the reason its
                // last dial failed, if it did (a hung peer tried again after
                // its backoff says the same thing every time).
                let outcome = outcome.unwrap_or_else(|| {
                    Outcome::Down(if self.dialing.contains(&t.name) {
                        let backoff = self.backoff.get(&t.name).map(|b| &b.reason);
                        backoff
                            .or(member.dial_failed.as_ref())
                            .cloned()
                            .unwrap_or(Reason::Timeout(Phase::Connect))
                    } else {
                        Reason::Timeout(Phase::Reply)
                    })
                });
                (t.name.clone(), outcome)
            })
            .collect()
    }

    /// Lines up the members' state with `targets`, keeping what is known
    /// of those that stay; a round over the same members changes nothing.
    fn keep_members(&mut self, targets: &[Target]) {
        let same = self.members.len() == targets.len()
            && self
                .members
                .iter()
                .zip(targets)
                .all(|(m, t)| m.name == t.name);
        if same {
            return;
        }
        self.links_version = None;
        let mut known: HashMap<NodeName, Member> = self
            .members
            .drain(..)
            .map(|m| (m.name.clone(), m))
            .collect();
        let (pid, me) = (&self.pid, &self.me);
        self.members = targets
            .iter()
            .map(|t| {
                known.remove(&t.name).unwrap_or_else(|| Member {
                    name: t.name.clone(),
                    template: CallTemplate::new(pid, &me.name, me.creation, t.name.as_str()),
                    missed: None,
                    silent_closes: 0,
                    dial_failed: None,
                    link: None,
                })
            })
            .collect();
    }

    /// Looks the members' links up in the table, unless no link came up or
    /// went since they were last looked up.
    fn look_up_links(&mut self) {
        if self.links_version == Some(self.links.version()) {
            return;
        }
        let names = self.members.iter().map(|m| m.name.as_str());
        let (version, links) = self.links.get_all(names);
        for (member, link) in self.members.iter_mut().zip(links) {
            member.link = link;
        }
        self.links_version = Some(version);
    }

    /// Writes the round's ping to target `i`, `t`, on `link`; a link that
    /// fails the write is dropped and the member dialled again.
    fn ping(
        &mut self,
        i: usize,
        t: &Target,
        link: &Arc<Link>,
        round: &mut Round,
        timeout: Duration,
    ) {
        self.next_ref += 1;
        let reference = self.next_ref;
        let template = &mut self.members[i].template;
        template.call(reference);
        self.links.await_reply();
        link.expect(template.yes_reply(), self.reply_round);
        let sent = Instant::now();
        match link.send(template.frame()) {
            Ok(()) => {
                let waiting = Waiting {
                    link: link.clone(),
                    reference,
                    sent,
                };
                round.wait(i, waiting);
            }
            Err(_) => {
                link.forget_reply();
                self.links.reply_came(self.reply_round);
                self.links.drop_link(t.name.as_str(), link.id);
                self.dial(i, t, timeout, round);
            }
        }
    }

    /// Takes the replies the links' readers have noted.
    fn collect(&mut self, round: &mut Round) {
        if round.unanswered == 0 {
            return;
        }
        for i in 0..round.waiting.len() {
            let Some(at) = round.waiting[i].as_ref().and_then(|w| w.link.answered()) else {
                continue;
            };
            if let Some(waiting) = round.take_waiting(i) {
                self.members[i].missed = None;
                let rtt = at.saturating_duration_since(waiting.sent);
                round.settle(i, Outcome::Alive(rtt));
            }
        }
    }

    /// Starts a dial thread for target `i`, `t`, unless one is on it
    /// already or its backoff runs; in that case the last dial's failure is
    /// its outcome.
    fn dial(&mut self, i: usize, t: &Target, timeout: Duration, round: &mut Round) {
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
    fn note_dial(&mut self, done: &DialDone) {
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
    fn take_dial(
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

    /// A reply, a link's end, or a new link, during the round.
    fn take_event(
        &mut self,
        event: LinkEvent,
        targets: &[Target],
        round: &mut Round,
        timeout: Duration,
    ) {
        match event {
            // News for the round thread once the round is over.
            LinkEvent::Up { peer } => {
                if let Ok(name) = peer.parse() {
                    self.meanwhile.push(LinkNews::Up(name));
                }
            }
            // The usual reply is taken by the link's reader; this is any
            // other form of it, decoded.
            LinkEvent::Frame { peer, frame, .. } => {
                let Some(i) = position(targets, &peer) else {
                    return;
                };
                let Some(waiting) = &round.waiting[i] else {
                    return;
                };
                if let Some(answer) = self.decode_reply(&frame, waiting.reference) {
                    if let Some(waiting) = round.take_waiting(i) {
                        waiting.link.forget_reply();
                        self.links.reply_came(self.reply_round);
                        self.members[i].missed = None;
                        let outcome = match answer {
                            Ok(()) => Outcome::Alive(waiting.sent.elapsed()),
                            Err(reason) => Outcome::Down(reason),
                        };
                        round.settle(i, outcome);
                    }
                }
            }
            // A link that broke under a ping (its node restarted, or died)
            // is opened again in the same round: the dial's outcome is the
            // round's, so a restarted node stays true and a dead one shows
            // why (refused, say).
            LinkEvent::Closed { peer, link, why } => {
                let ours = position(targets, &peer).filter(|&i| {
                    round.waiting[i]
                        .as_ref()
                        .is_some_and(|waiting| waiting.link.id == link)
                });
                let Some(i) = ours else {
                    // Not under a ping of this round: news for the round
                    // thread once the round is over.
                    if let Ok(name) = peer.parse() {
                        self.meanwhile.push(LinkNews::Closed(name, why));
                    }
                    return;
                };
                if let Some(waiting) = round.take_waiting(i) {
                    waiting.link.forget_reply();
                    self.links.reply_came(self.reply_round);
                    self.dial(i, &targets[i], timeout, round);
                }
            }
        }
    }

    /// A reply to call `reference` in any form, decoded; `None` for
    /// anything else (a late reply to an earlier round, a message we
    /// ignore).
    fn decode_reply(&self, frame: &[u8], reference: u64) -> Option<Result<(), Reason>> {
        let Incoming::Reply {
            reference: r,
            value,
        } = message::parse(frame)
        else {
            return None;
        };
        if r != message::our_ref(&self.me.name, self.me.creation, reference) {
            return None;
        }
        Some(if value == Term::atom("yes") {
            Ok(())
        } else {
            Err(Reason::Failed(format!("answered {value:?}")))
        })
    }

    /// Closes every link in the table (the listener's too). Dials under way
    /// are not waited for.
    pub(crate) fn close(self) {
        self.links.close_all();
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

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
