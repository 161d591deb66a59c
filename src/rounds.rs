//! The round thread: every interval, heartbeat, scan, expire, ping every
//! member and log what the round found. Between rounds it waits for
//! the next tick, and for links that close or come up: a member whose link
//! closes while its record is still there was killed, and is reported down
//! at once; a node with a registry entry whose link comes up while it is no
//! member has just started (it pings us first thing), and joins at once.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, select};

use crate::config::Config;
use crate::discovery::DnsPeers;
use crate::membership::{Event, Membership, Outcome, Reason};
use crate::name::NodeName;
use crate::node::Member;
use crate::probe::{LinkNews, Prober, Target};
use crate::registry::own::{Beat, OwnEntry};
use crate::registry::{Record, Registry};
use crate::report::{self, Report, Reporter};

/// The round thread's state.
pub(crate) struct Rounds {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    /// Our entry, held until we leave; none in DNS mode.
    pub(crate) own: Option<OwnEntry>,
    /// In DNS mode, what the round asks instead of the directory.
    pub(crate) dns: Option<DnsPeers>,
    pub(crate) membership: Membership,
    pub(crate) prober: Prober,
    pub(crate) reporter: Reporter,
    pub(crate) heartbeat_failing: bool,
    pub(crate) listing_failing: bool,
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
        let mut how = "registry entry removed";
        if let Some(dns) = self.dns.take() {
            dns.stop();
            how = "its EPMD now answers without it";
        }
        // The leave is logged after the last round's line, before the links
        // close.
        let mut warnings = Vec::new();
        if let Some(own) = self.own.take() {
            if let Err(e) = own.remove() {
                warnings.push(format!("could not remove our registry entry: {e}"));
            }
        }
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
    /// member but has an entry in the registry (a pulse node writes its
    /// record before its first round pings us), it has just started: it is
    /// a member from now on, `joined` is logged at once and the next round
    /// pings it over this link. A node without an entry (an `erl` shell
    /// pinging us) never becomes one: the registry proposes, pings decide.
    /// In DNS mode members come from DNS only.
    fn link_up(&mut self, name: NodeName) {
        if self.dns.is_some() || name == self.config.name || self.membership.contains(&name) {
            return;
        }
        let Some(record) = self.registry.entry(&name) else {
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

    /// A member's link closed outside a ping. Unless its record is gone (a
    /// leave removes the record before closing links) or a newer link to it
    /// is up, it is down now; the status line still waits for the round.
    fn link_closed(&mut self, name: NodeName, why: String) {
        if name == self.config.name
            || self.prober.has_link(&name)
            || self.registry.read(&name).is_none()
        {
            return;
        }
        let down = [(name.clone(), Outcome::Down(Reason::Closed(why)))];
        let events = self.membership.apply(&down, Instant::now());
        // It may come back at another address: read its record afresh.
        self.registry.forget(&name);
        if !events.is_empty() {
            self.report(events, String::new(), Vec::new());
        }
    }

    /// Touches our entry; says once (in `warnings`) when that starts
    /// failing, and pauses expiry meanwhile.
    fn heartbeat(&mut self, warnings: &mut Vec<String>) {
        let Some(own) = self.own.as_mut() else {
            return;
        };
        let dir = self.registry.dir().display().to_string();
        let failure = match own.beat(SystemTime::now()) {
            Ok(Beat::Touched) => None,
            Ok(Beat::Recreated) => {
                warnings.push(format!(
                    "our registry entry was gone: written again in {dir}"
                ));
                None
            }
            Ok(Beat::Replaced) => Some(format!(
                "another file stands under our name {} in {dir}: another node may be using the name",
                self.config.name
            )),
            Err(e) => Some(format!(
                "cannot write our heartbeat to {dir}: {e}; other nodes will expire this node, \
                 and it expires no one meanwhile"
            )),
        };
        match failure {
            Some(why) if !self.heartbeat_failing => {
                warnings.push(why);
                self.heartbeat_failing = true;
            }
            None if self.heartbeat_failing => {
                warnings.push(format!("our heartbeat is written again to {dir}"));
                self.heartbeat_failing = false;
            }
            _ => {}
        }
        self.membership.pause_expiry(self.heartbeat_failing);
    }

    /// One round: what it has to say is logged once the pings are done.
    fn round(&mut self) {
        if self.dns.is_some() {
            return self.round_dns();
        }
        let mut warnings = Vec::new();
        // Links that closed or came up just before the tick are news too.
        while let Ok(event) = self.prober.events().try_recv() {
            if let Some(news) = self.prober.news(event) {
                self.take_news(news);
            }
        }
        self.heartbeat(&mut warnings);
        let now = Instant::now();
        let (live, expired, mut events) = match self.registry.scan() {
            Ok(scan) => {
                if self.listing_failing {
                    warnings.push(format!(
                        "registry {} can be listed again",
                        self.registry.dir().display()
                    ));
                    self.listing_failing = false;
                }
                let observed = self
                    .membership
                    .observe(scan.records, scan.dir_replaced, now);
                (observed.live, observed.expired, observed.events)
            }
            // The members are whoever we knew: a registry we cannot list
            // says nothing about them.
            Err(e) => {
                if !self.listing_failing {
                    warnings.push(format!(
                        "registry: cannot list {}: {e}; pinging the nodes known so far",
                        self.registry.dir().display()
                    ));
                    self.listing_failing = true;
                }
                (self.membership.records(), Vec::new(), Vec::new())
            }
        };
        warnings.extend(self.registry.take_warnings());
        for record in &expired {
            if let Err(e) = self.registry.remove_if_unchanged(record) {
                warnings.push(format!(
                    "could not remove the expired entry {}: {e}",
                    record.name
                ));
            }
        }
        let targets: Vec<Target> = live.iter().map(Record::target).collect();
        let mut results = self.prober.round(&targets, self.config.timeout);
        if self.prober.stopping() {
            return;
        }
        self.retry_moved(&mut results, &targets);
        for (name, outcome) in &results {
            if !outcome.is_alive() {
                // It may have restarted at another address: read it afresh.
                self.registry.forget(name);
            }
        }
        events.extend(self.membership.apply(&results, Instant::now()));
        self.publish(&results);
        let line = report::status_line(&self.config.name, &results);
        self.report(events, line, warnings);
        for news in self.prober.meanwhile() {
            self.take_news(news);
        }
    }

    /// One round in DNS mode: the candidates found so far instead of a
    /// scan; they go only by a leave or the TTL without a successful ping.
    fn round_dns(&mut self) {
        let Some(dns) = self.dns.as_mut() else {
            return;
        };
        let now = Instant::now();
        let (candidates, left) = dns.candidates();
        let mut events: Vec<_> = left
            .iter()
            .filter_map(|n| self.membership.leave(n))
            .collect();
        let observed = self.membership.observe(candidates, false, now);
        for record in &observed.expired {
            dns.remove(&record.name);
        }
        events.extend(observed.events);
        let targets: Vec<Target> = observed.live.iter().map(Record::target).collect();
        let results = self.prober.round(&targets, self.config.timeout);
        // A round cut short by the stop says nothing.
        if self.prober.stopping() {
            return;
        }
        dns.pinged(&results);
        events.extend(self.membership.apply(&results, Instant::now()));
        self.publish(&results);
        let line = report::status_line(&self.config.name, &results);
        self.report(events, line, Vec::new());
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
    /// since the scan (a file system may give its new file the old one's
    /// inode, so the scan cannot always tell): its entry is read again at
    /// once. Gone, it left (its
    /// result is dropped; the next scan says so); at a new address, the
    /// round is run again with it (rare: a restart between our scan and our
    /// ping). So a planned restart is not reported as a failure.
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
                match self.registry.read(&t.name).map(|r| r.target()) {
                    Some(now) if now.addr != t.addr => {
                        // Its file may have the old one's inode and size:
                        // the next scan must read it too.
                        self.registry.forget(&t.name);
                        moved = true;
                        now
                    }
                    Some(_) => t.clone(),
                    None => {
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
