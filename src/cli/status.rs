//! `pulse status` and `pulse health`: one round of pings from a short-lived
//! hidden node, for people and for container health checks.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cli::json;
use crate::config::Config;
use crate::decimal::Fixed;
use crate::discovery;
use crate::erlang::Identity;
use crate::membership::{Outcome, Reason};
use crate::name::NodeName;
use crate::peers::links::Links;
use crate::peers::probe::Prober;
use crate::registry::{self, Record, Registry, Target};

/// The name a one-shot check speaks as: unique per process, on our address.
fn checker(config: &Config, what: &str) -> Arc<Identity> {
    let name = format!("pulse-{what}-{}@{}", std::process::id(), config.ip);
    Arc::new(Identity::new(&name, &config.cookie))
}

fn ping_all(me: Arc<Identity>, records: &[Record], config: &Config) -> io::Result<Vec<Outcome>> {
    let targets: Vec<Target> = records.iter().map(Record::target).collect();
    let (links, events) = Links::new(me);
    let mut prober = Prober::new(links, events, config.epmd_port);
    let results = prober.round(&targets, config.timeout);
    prober.close();
    Ok(results.into_iter().map(|(_, o)| o).collect())
}

/// Every node entry in the registry; none when the directory does not exist.
/// In DNS mode the nodes behind the name, or with `own_host` only those our
/// own EPMD names (no DNS needed). `me` speaks any handshake that names one.
fn registered(config: &Config, me: &Identity, own_host: bool) -> io::Result<Vec<Record>> {
    if let Some(source) = &config.dns {
        let found = if own_host {
            discovery::on_this_host(config, source, me)
        } else {
            discovery::registered(config, source, me)
        };
        return found.map_err(io::Error::other);
    }
    if let Some((location, settings)) = &config.s3 {
        // Our own node is named after this host, as a rule: only its
        // object is read, when there is one.
        let host = config.ip.to_string();
        let ours = |name: &NodeName| *name == config.name || name.host() == host;
        let found = if own_host {
            crate::sources::s3::registered_among(location, settings, ours)
        } else {
            crate::sources::s3::registered(location, settings)
        };
        return found.map_err(io::Error::other);
    }
    match Registry::new(&config.sync_dir).scan() {
        Ok(scan) => Ok(scan.records),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(registry::listing_error(&config.sync_dir, &e)),
    }
}

/// One registered node as `pulse status` saw it.
#[derive(Clone, Debug)]
pub(crate) struct NodeStatus {
    /// The registered name.
    pub name: String,
    /// The record's address; `None` for a foreign entry (asked of EPMD).
    pub address: Option<String>,
    /// Whether it answered the ping.
    pub alive: bool,
    /// The ping's round trip, when it answered.
    pub rtt: Option<Duration>,
    /// How old its heartbeat is, when the record carries one.
    pub heartbeat_age_ms: Option<u64>,
    /// Why it did not answer.
    pub reason: Option<String>,
}

/// Pings every registered node once and describes each.
pub(crate) fn check_all(config: &Config) -> io::Result<Vec<NodeStatus>> {
    let me = checker(config, "status");
    let records = registered(config, &me, false)?;
    let outcomes = ping_all(me, &records, config)?;
    let now = registry::unix_ms(SystemTime::now());
    Ok(records
        .iter()
        .zip(outcomes)
        .map(|(record, outcome)| {
            let (alive, rtt, reason) = match outcome {
                Outcome::Alive(rtt) => (true, Some(rtt), None),
                Outcome::Down(why) => (false, None, Some(why.to_string())),
            };
            NodeStatus {
                name: record.name.to_string(),
                address: record.addr.map(|a| a.to_string()),
                alive,
                rtt,
                heartbeat_age_ms: heartbeat_age_ms(record, now),
                reason,
            }
        })
        .collect())
}

/// How old a record's heartbeat is: the file's modification time, whoever
/// wrote it. A record from DNS has no file, so its age is unknown.
fn heartbeat_age_ms(record: &Record, now_ms: u64) -> Option<u64> {
    (record.modified_ms != 0).then(|| now_ms.saturating_sub(record.modified_ms))
}

/// Pings every registered node once and prints a table (or, with `json`,
/// the JSON document PROTOCOL.md describes) to `out`, and to `err` which
/// cookie file nodes refused. Returns whether every node answered (false
/// for an empty registry too).
pub fn status(
    config: &Config,
    json: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<bool> {
    let nodes = check_all(config)?;
    if json {
        out.write_all(to_json(&nodes).as_bytes())?;
    } else {
        write_table(&nodes, out)?;
        if nodes.is_empty() {
            writeln!(
                out,
                "(no nodes registered in {})",
                discovery::source(config)
            )?;
        }
    }
    let bad_cookie = Reason::BadCookie.to_string();
    let refused = nodes
        .iter()
        .filter(|n| n.reason.as_deref() == Some(bad_cookie.as_str()))
        .count();
    // After the table, so it is the last thing read.
    if let (Some(file), 1..) = (&config.cookie_file, refused) {
        writeln!(
            err,
            "pulse: {refused} of {} nodes refused the cookie read from {}: give the \
             cluster's cookie with --cookie or PULSE_COOKIE",
            nodes.len(),
            file.display()
        )?;
    }
    Ok(!nodes.is_empty() && nodes.iter().all(|n| n.alive))
}

fn write_table(nodes: &[NodeStatus], out: &mut impl Write) -> io::Result<()> {
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "{:<width$}  {:<21}  {:<5}  {:>9}  {:>8}  REASON",
        "NAME", "ADDRESS", "ALIVE", "RTT", "AGE"
    )?;
    for n in nodes {
        let addr = n.address.as_deref().unwrap_or("(epmd)");
        let age = n.heartbeat_age_ms.map_or("-".to_string(), |ms| {
            format!("{}s", Fixed::seconds(u128::from(ms)))
        });
        let rtt = n.rtt.map_or("-".to_string(), |rtt| {
            format!("{}ms", Fixed::new(rtt.as_micros(), 3, 2))
        });
        // The reason may quote a peer's words: no control characters.
        let reason: String = n
            .reason
            .as_deref()
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        writeln!(
            out,
            "{:<width$}  {addr:<21}  {:<5}  {rtt:>9}  {age:>8}  {reason}",
            n.name, n.alive
        )?;
    }
    Ok(())
}

/// `{"nodes": [{...}, ...]}`, one node per line.
pub(crate) fn to_json(nodes: &[NodeStatus]) -> String {
    let mut out = String::from("{\"nodes\": [");
    for (i, n) in nodes.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        let mut o = json::Object::new(&mut out);
        o.str("name", &n.name)
            .opt_str("address", n.address.as_deref())
            .raw("alive", n.alive)
            .raw(
                "rtt_ms",
                json::opt(n.rtt.map(|r| Fixed::new(r.as_micros(), 3, 3).to_string())),
            )
            .raw("heartbeat_age_ms", json::opt(n.heartbeat_age_ms))
            .opt_str("reason", n.reason.as_deref());
        o.end();
    }
    out.push_str(if nodes.is_empty() { "]}\n" } else { "\n]}\n" });
    out
}

/// Checks this host's own node: the registered node whose name was given,
/// or else the one whose record carries this host's address. Ok(false) when
/// it does not answer; an error when none can be found.
pub fn health(config: &Config, name_given: bool) -> Result<bool, String> {
    let me = checker(config, "health");
    let records = registered(config, &me, true)
        .map_err(|e| format!("cannot list {}: {e}", discovery::source(config)))?;
    let own: Vec<Record> = records
        .into_iter()
        .filter(|r| {
            if name_given {
                r.name == config.name
            } else {
                r.addr.is_some_and(|a| a.ip() == config.ip)
            }
        })
        .collect();
    let [record] = &own[..] else {
        return Err(match own.len() {
            0 => format!(
                "no registered node for this host ({}) in {}",
                config.ip,
                discovery::source(config)
            ),
            n => format!("{n} registered nodes on {}: give --name", config.ip),
        });
    };
    let outcomes = ping_all(me, std::slice::from_ref(record), config)
        .map_err(|e| format!("cannot start: {e}"))?;
    match outcomes.first() {
        Some(Outcome::Alive(_)) => Ok(true),
        Some(Outcome::Down(why)) => {
            let from = match (&why, &config.cookie_file) {
                (Reason::BadCookie, Some(file)) => {
                    format!(" (our cookie was read from {})", file.display())
                }
                _ => String::new(),
            };
            eprintln!("pulse: {} is down: {why}{from}", record.name);
            Ok(false)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_a_file_has_no_heartbeat_age() {
        let name: crate::name::NodeName = "d1@127.0.0.1".parse().expect("name");
        let addr = "127.0.0.1:4000".parse().expect("addr");
        let from_dns = Record::new(name, addr, SystemTime::now());
        let now = registry::unix_ms(SystemTime::now());
        assert_eq!(heartbeat_age_ms(&from_dns, now), None);
        let from_file = Record {
            modified_ms: now - 1500,
            ..from_dns
        };
        assert_eq!(heartbeat_age_ms(&from_file, now), Some(1500));
        let node = NodeStatus {
            name: "d1@127.0.0.1".into(),
            address: Some("127.0.0.1:4000".into()),
            alive: true,
            rtt: Some(Duration::from_micros(80)),
            heartbeat_age_ms: None,
            reason: None,
        };
        assert!(to_json(std::slice::from_ref(&node)).contains("\"heartbeat_age_ms\": null"));
        let mut table = Vec::new();
        write_table(&[node], &mut table).expect("table");
        let row = String::from_utf8(table).expect("utf-8");
        let row = row.lines().nth(1).expect("a row");
        assert_eq!(row.split_whitespace().nth(4), Some("-"), "{row}");
    }
}
