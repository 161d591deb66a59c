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

mod dial;
mod round;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use log::warn;

use crate::erlang::link::Link;
use crate::erlang::message::{self, CallTemplate};
use crate::erlang::term::Pid;
use crate::erlang::{Identity, Phase};
use crate::membership::{Outcome, Reason};
use crate::name::NodeName;
use crate::peers::links::{LinkEvent, Links};
use crate::registry::Target;
use dial::{Backoff, DialDone, FIRST_BACKOFF};
pub(crate) use dial::{MAX_BACKOFF, open};
use round::Round;

/// Pings in a row a link may leave unanswered before it is closed (and the
/// next round dials afresh), if the peer has also sent nothing at all for
/// [`SILENT_FOR`]: a busy peer that answers late, or ticks, keeps its link.
const MAX_MISSED_REPLIES: u32 = 3;
/// See [`MAX_MISSED_REPLIES`].
const SILENT_FOR: Duration = Duration::from_secs(1);

/// What the prober keeps of one member from round to round.
struct Member {
    name: NodeName,
    /// Its ping, encoded once: encoding it for every ping cost a node 2.3
    /// times the instructions per round (callgrind, 11 nodes at 1 s: 264 000
    /// against 115 000).
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
    /// with no lookup by name. Rebuilding it by name every round cost 14%
    /// more instructions per round (callgrind, 11 and 50 nodes at 1 s).
    members: Vec<Member>,
    /// The link table's version the members' links were looked up at; none
    /// when they must be looked up again. Looking them up every round cost
    /// 4% more instructions per round (callgrind, 11 and 50 nodes at 1 s).
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

    /// Closes every link in the table (the listener's too). Dials under way
    /// are not waited for.
    pub(crate) fn close(self) {
        self.links.close_all();
    }
}
