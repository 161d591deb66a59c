//! The round thread: every interval, heartbeat, scan, expire, ping every
//! member and hand the report to the reporter. Between rounds it waits for
//! the next tick, and for links that close: a member whose link closes
//! while its record is still there was killed, and is reported down at once.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use log::{info, warn};

use crate::config::Config;
use crate::membership::{Membership, Outcome, Reason};
use crate::name::NodeName;
use crate::probe::{Prober, Target};
use crate::registry::{self, Record, Registry};
use crate::report::{self, Outbox, Report};

pub(crate) fn own_record(config: &Config, addr: SocketAddr) -> Record {
    Record {
        name: config.name.clone(),
        addr: Some(addr),
        heartbeat: registry::unix_ms(SystemTime::now()).to_string(),
        version: 0,
    }
}

/// The round thread's state.
pub(crate) struct Rounds {
    pub(crate) config: Config,
    pub(crate) addr: SocketAddr,
    pub(crate) registry: Registry,
    pub(crate) membership: Membership,
    pub(crate) prober: Prober,
    pub(crate) reports: Outbox,
    pub(crate) heartbeat_failing: bool,
}

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
                        let closed = event.ok().and_then(|e| self.prober.link_closed(e));
                        if let Some((name, why)) = closed {
                            self.link_closed(name, why);
                        }
                    }
                }
            }
        }
        if let Err(e) = self.registry.remove(&self.config.name) {
            warn!("could not remove our registry entry: {e}");
        }
        info!(
            "node {} left: registry entry removed, closing links",
            self.config.name
        );
        self.prober.close();
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
        let events = self
            .membership
            .apply(&[(name.clone(), Outcome::Down(Reason::Closed(why)))]);
        // It may come back at another address: read its record afresh.
        self.registry.forget(&name);
        if !events.is_empty() {
            let (line, warnings) = (String::new(), Vec::new());
            report::offer(
                &self.reports,
                Report {
                    events,
                    line,
                    warnings,
                },
            );
        }
    }

    /// One round. It logs nothing itself: what it has to say goes to the
    /// reporter in its report, so the log never delays a round.
    fn round(&mut self) {
        let mut warnings = Vec::new();
        // Links that closed just before the tick are news too.
        while let Ok(event) = self.prober.events().try_recv() {
            if let Some((name, why)) = self.prober.link_closed(event) {
                self.link_closed(name, why);
            }
        }
        match self.registry.write(&own_record(&self.config, self.addr)) {
            Ok(()) => self.heartbeat_failing = false,
            Err(e) => {
                if !self.heartbeat_failing {
                    warnings.push(format!(
                        "cannot write our heartbeat to {}: {e}",
                        self.registry.dir().display()
                    ));
                }
                self.heartbeat_failing = true;
            }
        }
        let observed = self
            .membership
            .observe(self.registry.scan(), Instant::now());
        warnings.extend(self.registry.take_warnings());
        for name in &observed.expired {
            if let Err(e) = self.registry.remove(name) {
                warnings.push(format!("could not remove the expired entry {name}: {e}"));
            }
        }
        let targets: Vec<Target> = observed
            .live
            .into_iter()
            .map(|r| Target {
                name: r.name,
                addr: r.addr,
            })
            .collect();
        let results = self.prober.round(&targets, self.config.timeout);
        if self.prober.stopping() {
            return;
        }
        for (name, outcome) in &results {
            if !outcome.is_alive() {
                // It may have restarted at another address: read it afresh.
                self.registry.forget(name);
            }
        }
        let mut events = observed.events;
        events.extend(self.membership.apply(&results));
        let line = report::status_line(&self.config.name, &results);
        report::offer(
            &self.reports,
            Report {
                events,
                line,
                warnings,
            },
        );
        for (name, why) in self.prober.closed_meanwhile() {
            self.link_closed(name, why);
        }
    }
}
