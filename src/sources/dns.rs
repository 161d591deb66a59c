//! The DNS source: candidates from the `pulse-dns` thread
//! ([`crate::discovery::resolver`]), which looks the name up and names each
//! address through its EPMD (or the handshake on a fixed port). The round
//! only takes what the thread sent since the last round, so a lookup,
//! however slow or broken, never runs on the round thread.
//!
//! There is no file per node: candidates are only ever added, a successful
//! ping is a member's heartbeat, and a member goes only by a leave (its
//! EPMD answers without it, which the thread asks after a failed ping) or
//! by the TTL without a successful ping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use log::warn;

use super::{Candidates, Entry, PeerSource};
use crate::config::{Config, DnsName, EpmdMode};
use crate::discovery::resolver::{self, Found, Resolver};
use crate::discovery::unpinged;
use crate::erlang::Identity;
use crate::error::Error;
use crate::membership::Outcome;
use crate::name::NodeName;
use crate::registry::{self, Record};

/// The members found through DNS, with the thread that finds them.
pub(crate) struct DnsSource {
    /// Stopped at the leave, or when dropped.
    resolver: Option<Resolver>,
    members: DnsMembers,
}

impl DnsSource {
    /// Starts the DNS thread for `name`, our node being at `addr`; `me`
    /// speaks the handshake that only asks a node's name.
    pub(crate) fn start(
        config: &Config,
        name: &DnsName,
        addr: SocketAddr,
        me: &Arc<Identity>,
    ) -> Result<DnsSource, Error> {
        if name.port.is_none() && config.epmd == EpmdMode::Off {
            warn!(
                "{name} with --epmd off: peers name nodes through EPMD, so they cannot find this one"
            );
        }
        let settings = resolver::settings(config, name).map_err(Error::Dns)?;
        let resolver = Resolver::start(settings, me.clone()).map_err(Error::Thread)?;
        let own = Record::new(config.name.clone(), addr, SystemTime::now());
        Ok(DnsSource {
            resolver: Some(resolver),
            members: DnsMembers::new(own),
        })
    }
}

impl PeerSource for DnsSource {
    /// Nothing to write: DNS and EPMD make us known.
    fn heartbeat(&mut self, _warnings: &mut Vec<String>) -> bool {
        true
    }

    /// The candidates found so far (the thread says its own trouble), and
    /// the members whose EPMD answers without them.
    fn candidates(&mut self, _warnings: &mut Vec<String>) -> Candidates {
        let found = self.resolver.as_ref().map(Resolver::found);
        let left = self.members.take(found.unwrap_or_default());
        Candidates {
            records: Some(self.members.records()),
            replaced: false,
            left,
        }
    }

    fn expired(&mut self, expired: &[Record], _warnings: &mut Vec<String>) {
        for record in expired {
            self.members.known.remove(&record.name);
        }
    }

    /// A success is a member's heartbeat; a failure has its address asked
    /// about again (the thread reports a leave).
    fn pinged(&mut self, results: &[(NodeName, Outcome)]) {
        let now = registry::unix_ms(SystemTime::now());
        let failed = self.members.pinged(results, now);
        if let Some(resolver) = &self.resolver {
            for (name, addr) in failed {
                resolver.check(name, addr);
            }
        }
    }

    /// Whether a node is still registered is its EPMD's to say, which only
    /// the thread asks: a closed link is no news of a leave here, and
    /// members come from DNS only, not from links.
    fn entry(&mut self, _name: &NodeName) -> Entry {
        Entry::Unknown
    }

    /// Stops the thread; our EPMD answers without us once the node stops.
    fn leave(&mut self, _warnings: &mut Vec<String>) -> &'static str {
        self.resolver.take();
        "its EPMD now answers without it"
    }
}

/// Every candidate DNS proposed that is still a member: pure state.
struct DnsMembers {
    /// Our own record, always a candidate.
    own: Record,
    /// A record's version counts its successful pings, so membership's
    /// "heartbeat stood still for the TTL" means "no successful ping for
    /// the TTL".
    known: BTreeMap<NodeName, Record>,
}

impl DnsMembers {
    fn new(own: Record) -> DnsMembers {
        DnsMembers {
            own,
            known: BTreeMap::new(),
        }
    }

    /// Adds what the resolver found (an address moves with its node);
    /// returns the members that left.
    fn take(&mut self, found: Vec<Found>) -> Vec<NodeName> {
        let mut left = Vec::new();
        for found in found {
            match found {
                Found::Candidates(candidates) => {
                    for c in candidates.into_iter().filter(|c| c.name != self.own.name) {
                        let record = self
                            .known
                            .entry(c.name.clone())
                            .or_insert_with(|| unpinged(c.clone()));
                        record.addr = Some(c.addr);
                    }
                }
                Found::Left(name) => {
                    if self.known.remove(&name).is_some() {
                        left.push(name);
                    }
                }
            }
        }
        left
    }

    /// Every member, ourselves included.
    fn records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self.known.values().cloned().collect();
        records.push(self.own.clone());
        records
    }

    /// Counts successful pings (at Unix time `now_ms`); returns the members
    /// whose ping failed, with their addresses, to be asked about.
    fn pinged(
        &mut self,
        results: &[(NodeName, Outcome)],
        now_ms: u64,
    ) -> Vec<(NodeName, SocketAddr)> {
        let mut failed = Vec::new();
        for (name, outcome) in results {
            let Some(record) = self.known.get_mut(name) else {
                continue;
            };
            if outcome.is_alive() {
                record.version += 1;
                record.heartbeat = now_ms.to_string();
            } else if let Some(addr) = record.addr {
                failed.push((name.clone(), addr));
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::resolver::Candidate;
    use crate::membership::{Event, Membership, Reason};
    use std::time::{Duration, Instant};

    const SEC: Duration = Duration::from_secs(1);

    fn name(i: usize) -> NodeName {
        format!("n{i}@10.0.0.{i}").parse().expect("name")
    }

    fn candidate(i: usize) -> Candidate {
        Candidate {
            name: name(i),
            addr: SocketAddr::from(([10, 0, 0, i as u8], 9100)),
        }
    }

    /// One round as the round thread runs it, every member answering
    /// unless listed in `dead`; returns the events.
    fn round(
        members: &mut DnsMembers,
        membership: &mut Membership,
        found: Vec<Found>,
        dead: &[usize],
        now: Instant,
    ) -> Vec<Event> {
        let left = members.take(found);
        let mut events: Vec<Event> = left.iter().filter_map(|n| membership.leave(n)).collect();
        let observed = membership.observe(members.records(), false, now);
        for r in &observed.expired {
            members.known.remove(&r.name);
        }
        events.extend(observed.events);
        let results: Vec<(NodeName, Outcome)> = observed
            .live
            .iter()
            .map(|r| {
                let dead = dead.iter().any(|d| name(*d) == r.name);
                let outcome = if dead {
                    Outcome::Down(Reason::Refused)
                } else {
                    Outcome::Alive(Duration::from_millis(1))
                };
                (r.name.clone(), outcome)
            })
            .collect();
        members.pinged(&results, 0);
        events.extend(membership.apply(&results, now));
        events
    }

    #[test]
    fn partial_answers_and_failed_lookups_remove_nobody() {
        let own = Record::new(name(0), candidate(0).addr, SystemTime::now());
        let mut members = DnsMembers::new(own);
        let mut membership = Membership::new(name(0), SEC, 5 * SEC);
        let t0 = Instant::now();
        // Ten nodes, two addresses per answer, rotating; some rounds no
        // answer at all (a failed lookup sends nothing).
        let mut joined = 0;
        for r in 0..60u32 {
            let found = if r % 7 == 3 {
                vec![]
            } else {
                let k = (r as usize * 2) % 10 + 1;
                vec![Found::Candidates(vec![candidate(k), candidate(k % 10 + 1)])]
            };
            for e in round(&mut members, &mut membership, found, &[], t0 + r * SEC) {
                assert!(matches!(e, Event::Joined(_)), "round {r}: {e}");
                joined += 1;
            }
        }
        assert_eq!(joined, 11, "ten peers and ourselves, each once");
        assert_eq!(members.records().len(), 11);
    }

    #[test]
    fn only_a_leave_or_the_ttl_without_a_ping_removes() {
        let own = Record::new(name(0), candidate(0).addr, SystemTime::now());
        let mut members = DnsMembers::new(own);
        let mut membership = Membership::new(name(0), SEC, 5 * SEC);
        let t0 = Instant::now();
        let all = vec![Found::Candidates((1..=3).map(candidate).collect())];
        round(&mut members, &mut membership, all, &[], t0);
        // Node 2 leaves; node 3 stops answering.
        let events = round(
            &mut members,
            &mut membership,
            vec![Found::Left(name(2))],
            &[3],
            t0 + SEC,
        );
        assert_eq!(
            events,
            vec![Event::Left(name(2)), Event::Down(name(3), Reason::Refused)]
        );
        let mut expired_at = None;
        for s in 2..10u32 {
            let events = round(&mut members, &mut membership, vec![], &[3], t0 + s * SEC);
            if events
                .iter()
                .any(|e| matches!(e, Event::Expired(n, _) if *n == name(3)))
            {
                expired_at = Some(s);
                break;
            }
        }
        // Its last successful ping, in the round at t0, is seen by the next
        // round's observation (t0 + 1 s): expired the TTL after that.
        assert_eq!(expired_at, Some(6));
        let names: Vec<NodeName> = members.records().into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec![name(1), name(0)]);
        // A leave of a node not (or no longer) a member says nothing.
        assert!(members.take(vec![Found::Left(name(2))]).is_empty());
    }
}
