//! The round thread: every interval, heartbeat, candidates, expire, ping
//! every member and log what the round found, asking one
//! [`PeerSource`] where the peers come from. Between rounds it waits for
//! the next tick, and for links that close or come up: a member whose link
//! closes while its entry is still there was killed, and is reported down
//! at once; a node with an entry whose link comes up while it is no
//! member has just started (it pings us first thing), and joins at once.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, select};

use crate::config::Config;
use crate::membership::{Event, Membership, Outcome, Reason};
use crate::name::NodeName;
use crate::node::report::{self, Report, Reporter};
use crate::peers::probe::{LinkNews, Prober};
use crate::registry::{Record, Target};
use crate::sources::{Entry, PeerSource};

/// One member as the latest round saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node name.
    pub name: NodeName,
    /// Whether it answered the latest round's ping.
    pub alive: bool,
}

/// The round thread's state.
pub(crate) struct Rounds {
    pub(crate) config: Config,
    /// Where the peers come from: the directory, DNS.
    pub(crate) source: Box<dyn PeerSource>,
    pub(crate) membership: Membership,
    pub(crate) prober: Prober,
    pub(crate) reporter: Reporter,
    /// The latest round's members, for [`crate::Node::members`].
    pub(crate) members: Members,
}

/// The members as the latest round found them, shared with the [`crate::Node`]
/// handle: the round thread writes it once a round, an embedder reads it.
pub(crate) type Members = Arc<Mutex<Vec<Member>>>;

impl Rounds {
    pub(crate) fn run(mut self, stop: Receiver<()>) {
        let ticker = crossbeam_channel::tick(self.config.interval);
        'rounds: loop {
            self.round();
            loop {
                select! {
                    recv(stop) -> _ => break 'rounds,
                    recv(ticker) -> _ => break,
                    recv(self.prober.events()) -> event => {
                        if let Some(news) = event.ok().and_then(|e| self.prober.news(e)) {
                            self.take_news(news);
                        }
                    }
                }
            }
        }
        // The leave is logged after the last round's line, before the links
        // close.
        let mut warnings = Vec::new();
        let how = self.source.leave(&mut warnings);
        let line = format!("node {} left: {how}, closing links", self.config.name);
        self.report(Vec::new(), line, warnings);
        self.prober.close();
    }

    /// What the links said outside a round's pings.
    fn take_news(&mut self, news: LinkNews) {
        match news {
            LinkNews::Closed(name, why) => self.link_closed(name, why),
            LinkNews::Up(name) => self.link_up(name),
        }
    }

    /// A peer opened a link to us and passed the handshake. If it is no
    /// member but has an entry in the source (a pulse node writes its
    /// record before its first round pings us), it has just started: it is
    /// a member from now on, `joined` is logged at once and the next round
    /// pings it over this link. A node without an entry (an `erl` shell
    /// pinging us) never becomes one: the source proposes, pings decide.
    /// A source that cannot tell without asking over the network (DNS)
    /// proposes it in a later round, if at all.
    fn link_up(&mut self, name: NodeName) {
        if name == self.config.name || self.membership.contains(&name) {
            return;
        }
        let Entry::Found(record) = self.source.entry(&name) else {
            return;
        };
        let Some(joined) = self.membership.join(record, Instant::now()) else {
            return;
        };
        // Listed for the embedder too, not alive before it answers a ping.
        if let Ok(mut shared) = self.members.lock() {
            if let Err(at) = shared.binary_search_by(|m| m.name.cmp(&name)) {
                shared.insert(at, Member { name, alive: false });
            }
        }
        self.report(vec![joined], String::new(), Vec::new());
    }

    /// A member's link closed outside a ping. Unless its entry is gone (a
    /// leave removes the record before closing links), not known (DNS) or
    /// a newer link to it is up, it is down now; the status line still
    /// waits for the round.
    fn link_closed(&mut self, name: NodeName, why: String) {
        if name == self.config.name || self.prober.has_link(&name) {
            return;
        }
        let Entry::Found(_) = self.source.entry(&name) else {
            return;
        };
        let down = [(name, Outcome::Down(Reason::Closed(why)))];
        let events = self.membership.apply(&down, Instant::now());
        // It may come back at another address.
        self.source.pinged(&down);
        if !events.is_empty() {
            self.report(events, String::new(), Vec::new());
        }
    }

    /// One round: heartbeat, candidates, expiry, pings; what it has to say
    /// is logged once the pings are done.
    fn round(&mut self) {
        let mut warnings = Vec::new();
        // Links that closed or came up just before the tick are news too.
        while let Ok(event) = self.prober.events().try_recv() {
            if let Some(news) = self.prober.news(event) {
                self.take_news(news);
            }
        }
        let beating = self.source.heartbeat(&mut warnings);
        self.membership.pause_expiry(!beating);
        let now = Instant::now();
        let found = self.source.candidates(&mut warnings);
        let mut events: Vec<Event> = found
            .left
            .iter()
            .filter_map(|n| self.membership.leave(n))
            .collect();
        let live = match found.records {
            Some(records) => {
                let observed = self.membership.observe(records, found.replaced, now);
                events.extend(observed.events);
                self.source.expired(&observed.expired, &mut warnings);
                observed.live
            }
            // The members are whoever we knew: a source we cannot read
            // says nothing about them.
            None => self.membership.records(),
        };
        let targets: Vec<Target> = live.iter().map(Record::target).collect();
        let mut results = self.prober.round(&targets, self.config.timeout);
        // A round cut short by the stop says nothing.
        if self.prober.stopping() {
            return;
        }
        self.retry_moved(&mut results, &targets);
        self.source.pinged(&results);
        events.extend(self.membership.apply(&results, Instant::now()));
        self.publish(&results);
        let line = report::status_line(&self.config.name, &results);
        self.report(events, line, warnings);
        for news in self.prober.meanwhile() {
            self.take_news(news);
        }
    }

    /// Logs what there is to say.
    fn report(&self, events: Vec<Event>, line: String, warnings: Vec<String>) {
        self.reporter.report(Report {
            events,
            line,
            warnings,
        });
    }

    /// Hands the round's results to whoever holds the node's handle.
    fn publish(&self, results: &[(NodeName, Outcome)]) {
        let members = results
            .iter()
            .map(|(name, outcome)| Member {
                name: name.clone(),
                alive: outcome.is_alive(),
            })
            .collect();
        if let Ok(mut shared) = self.members.lock() {
            *shared = members;
        }
    }

    /// A node refused at the address we had may have restarted or left
    /// since the candidates were read (a file system may give its new file
    /// the old one's inode, so a scan cannot always tell): its entry is
    /// read again at once. Gone, it left (its result is dropped; the next
    /// listing says so); at a new address, the round is run again with it
    /// (rare: a restart between our listing and our ping). So a planned
    /// restart is not reported as a failure. A source that cannot tell
    /// without the network keeps the result.
    fn retry_moved(&mut self, results: &mut Vec<(NodeName, Outcome)>, targets: &[Target]) {
        let refused: Vec<NodeName> = results
            .iter()
            .filter(|(_, o)| *o == Outcome::Down(Reason::Refused))
            .map(|(n, _)| n.clone())
            .collect();
        if refused.is_empty() {
            return;
        }
        let mut moved = false;
        let mut left = Vec::new();
        let retargeted: Vec<Target> = targets
            .iter()
            .map(|t| {
                if !refused.contains(&t.name) {
                    return t.clone();
                }
                match self.source.entry(&t.name) {
                    Entry::Found(record) if record.addr != t.addr => {
                        moved = true;
                        record.target()
                    }
                    Entry::Found(_) | Entry::Unknown => t.clone(),
                    Entry::Missing => {
                        left.push(t.name.clone());
                        t.clone()
                    }
                }
            })
            .collect();
        if moved {
            *results = self.prober.round(&retargeted, self.config.timeout);
        }
        results.retain(|(n, _)| !left.contains(n));
    }
}
