//! Peers found through the DNS an orchestrator keeps for its tasks (Docker
//! Swarm's `tasks.<service>`, a Kubernetes headless Service), instead of
//! the shared registry directory.
//!
//! In DNS mode there is no file per node. DNS only proposes candidates; a
//! candidate is a member until it leaves gracefully (its EPMD answers
//! without its name) or goes the TTL without a successful ping. So a partial
//! answer, a shuffled one or a failed lookup never removes anyone. This
//! module looks and names; what the round makes of it is
//! `sources::dns`.

pub(crate) mod dns;
mod message;
pub(crate) mod resolver;

use std::fmt;
use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::erlang::Identity;
use crate::registry::Record;

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
pub(crate) fn source(config: &Config) -> String {
    match (&config.dns, &config.s3) {
        (_, Some((at, _))) => format!("s3://{}/{}", at.bucket, at.prefix),
        (Some(source), None) => source.to_string(),
        (None, None) => config.sync_dir.display().to_string(),
    }
}

/// Every node behind the name now, for a one-shot check: one lookup, each
/// address named. `me` speaks any handshake.
pub(crate) fn registered(
    config: &Config,
    source: &DnsName,
    me: &Identity,
) -> Result<Vec<Record>, String> {
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
pub(crate) fn on_this_host(
    config: &Config,
    source: &DnsName,
    me: &Identity,
) -> Result<Vec<Record>, String> {
    let found = resolver::names_at(config.ip, source.port, config.epmd_port, me, config.timeout)?;
    Ok(found.into_iter().map(unpinged).collect())
}

/// A record for a node found through DNS, not pinged yet.
pub(crate) fn unpinged(c: resolver::Candidate) -> Record {
    Record {
        heartbeat: "-".into(),
        ..Record::new(c.name, c.addr, SystemTime::now())
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
