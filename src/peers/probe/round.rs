//! One round's bookkeeping: the pings in flight, and the replies and link
//! events that settle each member's outcome before the round's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LinkNews, Prober, Target};
use crate::erlang::link::Link;
use crate::erlang::message::{self, Incoming};
use crate::erlang::term::Term;
use crate::membership::{Outcome, Reason};
use crate::peers::links::LinkEvent;

/// A ping written and not yet answered.
pub(super) struct Waiting {
    pub(super) link: Arc<Link>,
    pub(super) reference: u64,
    pub(super) sent: Instant,
}

/// One round's progress, by the target's position in the round's targets.
pub(super) struct Round {
    pub(super) outcomes: Vec<Option<Outcome>>,
    pub(super) waiting: Vec<Option<Waiting>>,
    /// How many entries of `waiting` are set.
    pub(super) unanswered: usize,
    /// Which targets this round started a dial for: only those dials are
    /// waited for, and briefly.
    pub(super) dialed: Vec<bool>,
}

impl Round {
    pub(super) fn new(targets: usize) -> Round {
        Round {
            outcomes: (0..targets).map(|_| None).collect(),
            waiting: (0..targets).map(|_| None).collect(),
            unanswered: 0,
            dialed: vec![false; targets],
        }
    }

    pub(super) fn settle(&mut self, i: usize, outcome: Outcome) {
        self.outcomes[i] = Some(outcome);
    }

    pub(super) fn wait(&mut self, i: usize, waiting: Waiting) {
        if self.waiting[i].replace(waiting).is_none() {
            self.unanswered += 1;
        }
    }

    pub(super) fn take_waiting(&mut self, i: usize) -> Option<Waiting> {
        let waiting = self.waiting[i].take();
        if waiting.is_some() {
            self.unanswered -= 1;
        }
        waiting
    }
}

/// Where the member `name` is among `targets`. Used only for what the
/// round hears by name (a dial's end, a link's event), which is rare.
pub(super) fn position(targets: &[Target], name: &str) -> Option<usize> {
    targets.iter().position(|t| t.name.as_str() == name)
}

impl Prober {
    /// Writes the round's ping to target `i`, `t`, on `link`; a link that
    /// fails the write is dropped and the member dialled again.
    pub(super) fn ping(
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
    pub(super) fn collect(&mut self, round: &mut Round) {
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

    /// A reply, a link's end, or a new link, during the round.
    pub(super) fn take_event(
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
    pub(super) fn decode_reply(&self, frame: &[u8], reference: u64) -> Option<Result<(), Reason>> {
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
}
