//! The round thread: every interval, heartbeat, scan, expire, ping every
//! member and hand the report to the reporter.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use log::{info, warn};

use crate::config::Config;
use crate::discovery::Discovery;
use crate::membership::Membership;
use crate::probe::{Prober, Target};
use crate::registry::{self, Record};
use crate::report::{self, Outbox, Report};

/// How soon a call from an Erlang node on a link we opened is answered.
const SERVE_CALLS_EVERY: Duration = Duration::from_millis(20);

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
    /// Where members are found; taken when the node leaves.
    pub(crate) discovery: Option<Discovery>,
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
        let mut how = "registry entry removed";
        if let Some(discovery) = self.discovery.take() {
            if matches!(discovery, Discovery::Dns(_)) {
                how = "its EPMD now answers without it";
            }
            if let Err(e) = discovery.leave(&self.config.name) {
                warn!("could not remove our registry entry: {e}");
            }
        }
        info!("node {} left: {how}, closing links", self.config.name);
        self.prober.close();
    }

    /// One round. It logs nothing itself: what it has to say goes to the
    /// reporter in its report, so the log never delays a round.
    fn round(&mut self) {
        let Some(discovery) = self.discovery.as_mut() else {
            return;
        };
        let mut warnings = Vec::new();
        match discovery.heartbeat(&own_record(&self.config, self.addr)) {
            Ok(()) => self.heartbeat_failing = false,
            Err(e) => {
                if !self.heartbeat_failing {
                    warnings.push(format!(
                        "cannot write our heartbeat to {}: {e}",
                        discovery.describe()
                    ));
                }
                self.heartbeat_failing = true;
            }
        }
        let (candidates, left) = discovery.candidates();
        let mut events: Vec<_> = left
            .iter()
            .filter_map(|n| self.membership.leave(n))
            .collect();
        let observed = self.membership.observe(candidates, Instant::now());
        warnings.extend(discovery.take_warnings());
        for name in &observed.expired {
            if let Err(e) = discovery.remove(name) {
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
        discovery.pinged(&results);
        events.extend(observed.events);
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
    }
}
