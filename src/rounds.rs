//! The round thread: every interval, heartbeat, scan, expire, ping every
//! member and hand the report to the reporter.

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use log::{info, warn};

use crate::config::Config;
use crate::membership::{Membership, Outcome, Reason};
use crate::name::NodeName;
use crate::probe::{Prober, Target};
use crate::registry::own::{Beat, OwnEntry};
use crate::registry::{Record, Registry};
use crate::report::{self, Outbox, Report};

/// How soon a call from an Erlang node on a link we opened is answered.
const SERVE_CALLS_EVERY: Duration = Duration::from_millis(20);

/// The round thread's state.
pub(crate) struct Rounds {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    /// Our entry, held until we leave.
    pub(crate) own: OwnEntry,
    pub(crate) membership: Membership,
    pub(crate) prober: Prober,
    pub(crate) reports: Outbox,
    pub(crate) heartbeat_failing: bool,
    pub(crate) listing_failing: bool,
}

impl Rounds {
    pub(crate) fn run(mut self, stop: Receiver<()>) {
        let ticker = crossbeam_channel::tick(self.config.interval);
        'rounds: loop {
            self.round();
            // Between rounds, links an Erlang node makes calls on are
            // answered within SERVE_CALLS_EVERY; without such links the
            // thread just sleeps until the next tick.
            loop {
                let wait = if self.prober.has_peer_calls() {
                    SERVE_CALLS_EVERY
                } else {
                    self.config.interval
                };
                select! {
                    recv(stop) -> _ => break 'rounds,
                    recv(ticker) -> _ => break,
                    default(wait) => self.prober.serve_calls(),
                }
            }
        }
        if let Err(e) = self.own.remove() {
            warn!("could not remove our registry entry: {e}");
        }
        info!(
            "node {} left: registry entry removed, closing links",
            self.config.name
        );
        self.prober.close();
    }

    /// Touches our entry; says once (in `warnings`) when that starts
    /// failing, and pauses expiry meanwhile.
    fn heartbeat(&mut self, warnings: &mut Vec<String>) {
        let dir = self.registry.dir().display().to_string();
        let failure = match self.own.beat(SystemTime::now()) {
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

    /// One round. It logs nothing itself: what it has to say goes to the
    /// reporter in its report, so the log never delays a round.
    fn round(&mut self) {
        let mut warnings = Vec::new();
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
        self.retry_moved(&mut results, &targets);
        for (name, outcome) in &results {
            if !outcome.is_alive() {
                // It may have restarted at another address: read it afresh.
                self.registry.forget(name);
            }
        }
        events.extend(self.membership.apply(&results, Instant::now()));
        let line = report::status_line(&self.config.name, &results);
        report::offer(
            &self.reports,
            Report {
                events,
                line,
                warnings,
            },
        );
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
