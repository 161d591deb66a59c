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

pub(crate) mod resolver;

use std::time::{Instant, SystemTime};

use crate::config::{Config, DnsName};
use crate::erlang::Identity;
use crate::registry::Record;

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
    let settings = resolver::settings(config, source).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + settings.timeout;
    let ips = crate::dns::resolve(&settings.resolv, &source.name, deadline)
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
