//! `pulse status` and `pulse health`: one round of pings from a short-lived
//! hidden node, for people and for container health checks.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::decimal::Fixed;
use crate::discovery;
use crate::erlang::Identity;
use crate::json;
use crate::links::Links;
use crate::membership::Outcome;
use crate::probe::{Prober, Target};
use crate::registry::{self, Record, Registry};

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
    match Registry::new(&config.sync_dir).scan() {
        Ok(scan) => Ok(scan.records),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// One registered node as `pulse status` saw it.
#[derive(Clone, Debug)]
pub struct NodeStatus {
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
pub fn check_all(config: &Config) -> io::Result<Vec<NodeStatus>> {
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
                // The heartbeat is the file's modification time, whoever wrote it.
                heartbeat_age_ms: Some(now.saturating_sub(record.modified_ms)),
                reason,
            }
        })
        .collect())
}

/// Pings every registered node once and prints a table (or, with `json`,
/// the JSON document PROTOCOL.md describes) to `out`. Returns whether every
/// node answered (false for an empty registry too).
pub fn status(config: &Config, json: bool, out: &mut impl Write) -> io::Result<bool> {
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
pub fn to_json(nodes: &[NodeStatus]) -> String {
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
            eprintln!("pulse: {} is down: {why}", record.name);
            Ok(false)
        }
        None => Ok(false),
    }
}
