//! Where a round finds the nodes to ping: the shared registry directory, or
//! the DNS an orchestrator keeps for its tasks (Docker Swarm's
//! `tasks.<service>`, a Kubernetes headless Service).
//!
//! In DNS mode there is no file per node. DNS only proposes candidates; a
//! candidate is a member until it leaves gracefully (its EPMD answers
//! without its name) or goes the TTL without a successful ping. So a partial
//! answer, a shuffled one or a failed lookup never removes anyone.

pub mod dns;
mod message;
pub(crate) mod resolver;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::erlang::Identity;
use crate::membership::Outcome;
use crate::name::NodeName;
use crate::registry::{self, Record};
use resolver::{Found, Resolver};

/// The `dns:NAME[:PORT]` form of `--registry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsName {
    /// The name whose A/AAAA records are the candidates.
    pub name: String,
    /// The distribution port every node listens on, when fixed.
    pub port: Option<u16>,
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "dns:{}:{port}", self.name),
            None => write!(f, "dns:{}", self.name),
        }
    }
}

impl std::str::FromStr for DnsName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, port) = match s.rsplit_once(':') {
            Some((name, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("bad port '{port}' in 'dns:{s}'"))?;
                (name, Some(port))
            }
            None => (s, None),
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
        if name.is_empty() || name.len() > 253 || !name.chars().all(plain) {
            return Err(format!("'dns:{s}': expected dns:NAME or dns:NAME:PORT"));
        }
        Ok(DnsName {
            name: name.to_string(),
            port,
        })
    }
}

/// Where nodes are registered, for messages.
pub fn source(config: &Config) -> String {
    match &config.dns {
        Some(source) => source.to_string(),
        None => config.sync_dir.display().to_string(),
    }
}

/// Every node behind the name now, for a one-shot check: one lookup, each
/// address named. `me` speaks any handshake.
pub fn registered(config: &Config, source: &DnsName, me: &Identity) -> Result<Vec<Record>, String> {
    let settings = resolver::settings(config, source)?;
    let deadline = Instant::now() + settings.timeout;
    let ips = resolver::resolve(&settings.resolv, &source.name, deadline)
        .map_err(|e| format!("DNS lookup of {}: {e}", source.name))?;
    let mut records = Vec::new();
    for ip in ips {
        match resolver::names_at(ip, source.port, config.epmd_port, me, config.timeout) {
            Ok(found) => records.extend(found.into_iter().map(unpinged)),
            Err(e) => eprintln!("pulse: cannot name the node at {ip}: {e}"),
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    records.dedup_by(|a, b| a.name == b.name);
    Ok(records)
}

/// The nodes on this host, for a health check: those our own EPMD (or
/// port) names, so neither DNS nor any peer is needed.
pub fn on_this_host(
    config: &Config,
    source: &DnsName,
    me: &Identity,
) -> Result<Vec<Record>, String> {
    let found = resolver::names_at(config.ip, source.port, config.epmd_port, me, config.timeout)?;
    Ok(found.into_iter().map(unpinged).collect())
}

/// A record for a node found through DNS, not pinged yet.
fn unpinged(c: resolver::Candidate) -> Record {
    Record {
        heartbeat: "-".into(),
        ..Record::new(c.name, c.addr, SystemTime::now())
    }
}

/// The members found through DNS, with the thread that finds them: what
/// the round asks instead of scanning the directory.
pub struct DnsPeers {
    resolver: Resolver,
    members: DnsMembers,
}

impl DnsPeers {
    /// Members found by `resolver`, with `own` always among them.
    pub fn new(resolver: Resolver, own: Record) -> DnsPeers {
        DnsPeers {
            resolver,
            members: DnsMembers::new(own),
        }
    }

    /// This round's candidates, and the members that left since the last
    /// round (their EPMD answers without them).
    pub fn candidates(&mut self) -> (Vec<Record>, Vec<NodeName>) {
        let left = self.members.take(self.resolver.found());
        (self.members.records(), left)
    }

    /// Takes a round's ping results: a success is a member's heartbeat; a
    /// failure has its address asked about again.
    pub fn pinged(&mut self, results: &[(NodeName, Outcome)]) {
        let now = registry::unix_ms(SystemTime::now());
        for (name, addr) in self.members.pinged(results, now) {
            self.resolver.check(name, addr);
        }
    }

    /// Drops a member that expired.
    pub fn remove(&mut self, name: &NodeName) {
        self.members.known.remove(name);
    }

    /// Stops the DNS thread.
    pub fn stop(self) {
        self.resolver.stop();
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
    use crate::membership::{Event, Membership, Reason};
    use resolver::Candidate;
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

    #[test]
    fn dns_names_with_and_without_a_port() {
        let n: DnsName = "tasks.pulse".parse().expect("valid");
        assert_eq!((n.name.as_str(), n.port), ("tasks.pulse", None));
        let n: DnsName = "pulse.default.svc.cluster.local:9100"
            .parse()
            .expect("valid");
        assert_eq!(n.port, Some(9100));
        assert_eq!(n.to_string(), "dns:pulse.default.svc.cluster.local:9100");
        for bad in ["", "a b", "x:0", "x:port", "x:70000", "a/b"] {
            assert!(bad.parse::<DnsName>().is_err(), "{bad}");
        }
    }
}
