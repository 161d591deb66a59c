//! Where a round finds the nodes to ping: the shared registry directory, or
//! the DNS an orchestrator keeps for its tasks (Docker Swarm's
//! `tasks.<service>`, a Kubernetes headless Service).
//!
//! In DNS mode there is no file per node. DNS only proposes candidates; a
//! candidate is a member until it leaves gracefully (its EPMD answers
//! without its name) or goes the TTL without a successful ping. So a partial
//! answer, a shuffled one or a failed lookup never removes anyone.

pub mod dns;
pub mod message;
pub mod resolver;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::time::SystemTime;

use crate::membership::Outcome;
use crate::name::NodeName;
use crate::registry::{self, Record, Registry};
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

/// The source of one node's candidates.
pub enum Discovery {
    /// The shared registry directory.
    Dir(Registry),
    /// DNS, through the resolver thread.
    Dns(DnsPeers),
}

impl Discovery {
    /// Where candidates come from, for messages.
    pub fn describe(&self) -> String {
        match self {
            Discovery::Dir(registry) => registry.dir().display().to_string(),
            Discovery::Dns(peers) => peers.source.to_string(),
        }
    }

    /// Makes us findable: the directory gets our record; in DNS mode the
    /// orchestrator's DNS and our EPMD already do it.
    pub fn heartbeat(&mut self, own: &Record) -> io::Result<()> {
        match self {
            Discovery::Dir(registry) => registry.write(own),
            Discovery::Dns(_) => Ok(()),
        }
    }

    /// This round's candidates, and the members that left since the last
    /// round without a record to vanish (DNS mode only).
    pub fn candidates(&mut self) -> (Vec<Record>, Vec<NodeName>) {
        match self {
            Discovery::Dir(registry) => (registry.scan(), Vec::new()),
            Discovery::Dns(peers) => peers.candidates(),
        }
    }

    /// Drops an expired member.
    pub fn remove(&mut self, name: &NodeName) -> io::Result<()> {
        match self {
            Discovery::Dir(registry) => registry.remove(name),
            Discovery::Dns(peers) => {
                peers.known.remove(name);
                Ok(())
            }
        }
    }

    /// Takes a round's ping results: a success is a DNS member's heartbeat;
    /// a failure has its record (or its address) looked at afresh.
    pub fn pinged(&mut self, results: &[(NodeName, Outcome)]) {
        match self {
            Discovery::Dir(registry) => {
                for (name, outcome) in results {
                    if !outcome.is_alive() {
                        // It may have restarted at another address.
                        registry.forget(name);
                    }
                }
            }
            Discovery::Dns(peers) => peers.pinged(results),
        }
    }

    /// Takes us out: removes our record, or stops the DNS thread.
    pub fn leave(self, me: &NodeName) -> io::Result<()> {
        match self {
            Discovery::Dir(registry) => registry.remove(me),
            Discovery::Dns(peers) => {
                peers.resolver.stop();
                Ok(())
            }
        }
    }
}

/// The members found through DNS.
pub struct DnsPeers {
    source: DnsName,
    resolver: Resolver,
    /// Our own record, always a candidate.
    own: Record,
    /// Every candidate still a member. A record's version counts its
    /// successful pings, so membership's "heartbeat stood still for the
    /// TTL" means "no successful ping for the TTL".
    known: BTreeMap<NodeName, Record>,
}

impl DnsPeers {
    /// Members found by `resolver` for `source`, with `own` always among them.
    pub fn new(source: DnsName, resolver: Resolver, own: Record) -> DnsPeers {
        DnsPeers {
            source,
            resolver,
            own,
            known: BTreeMap::new(),
        }
    }

    fn candidates(&mut self) -> (Vec<Record>, Vec<NodeName>) {
        let mut left = Vec::new();
        for found in self.resolver.found() {
            match found {
                Found::Candidates(candidates) => {
                    for c in candidates {
                        if c.name == self.own.name {
                            continue;
                        }
                        let record = self.known.entry(c.name.clone()).or_insert(Record {
                            name: c.name,
                            addr: Some(c.addr),
                            heartbeat: "-".into(),
                            version: 0,
                        });
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
        let mut records: Vec<Record> = self.known.values().cloned().collect();
        records.push(self.own.clone());
        (records, left)
    }

    fn pinged(&mut self, results: &[(NodeName, Outcome)]) {
        let now = registry::unix_ms(SystemTime::now()).to_string();
        for (name, outcome) in results {
            let Some(record) = self.known.get_mut(name) else {
                continue;
            };
            if outcome.is_alive() {
                record.version += 1;
                record.heartbeat.clone_from(&now);
            } else if let Some(addr) = record.addr {
                self.resolver.check(name.clone(), addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
