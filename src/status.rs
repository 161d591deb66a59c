//! `pulse status` and `pulse health`: one round of pings from a short-lived
//! hidden node, for people and for container health checks.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::erlang::Identity;
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
    let targets: Vec<Target> = records
        .iter()
        .map(|r| Target {
            name: r.name.clone(),
            addr: r.addr,
        })
        .collect();
    let (links, events) = Links::new(me);
    let mut prober = Prober::new(links, events, config.epmd_port);
    let results = prober.round(&targets, config.timeout);
    prober.close();
    Ok(results.into_iter().map(|(_, o)| o).collect())
}

/// Pings every registered node once and prints a table to `out`. Returns
/// whether every node answered (false for an empty registry too).
pub fn status(config: &Config, out: &mut impl Write) -> io::Result<bool> {
    let records = Registry::new(&config.sync_dir).scan();
    let outcomes = ping_all(checker(config, "status"), &records, config)?;
    let now = registry::unix_ms(SystemTime::now());
    let width = records
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:<width$}  {:<21}  {:<5}  {:>9}  {:>8}  REASON",
        "NAME", "ADDRESS", "ALIVE", "RTT", "AGE"
    )?;
    for (record, outcome) in records.iter().zip(&outcomes) {
        let addr = record.addr.map_or("(epmd)".to_string(), |a| a.to_string());
        let age = record.heartbeat_ms().map_or("-".to_string(), |hb| {
            format!("{:.1}s", now.saturating_sub(hb) as f64 / 1000.0)
        });
        let (alive, rtt, reason) = match outcome {
            Outcome::Alive(rtt) => (
                "true",
                format!("{:.2}ms", rtt.as_secs_f64() * 1000.0),
                String::new(),
            ),
            Outcome::Down(why) => ("false", "-".to_string(), why.to_string()),
        };
        writeln!(
            out,
            "{:<width$}  {addr:<21}  {alive:<5}  {rtt:>9}  {age:>8}  {reason}",
            record.name.as_str()
        )?;
    }
    if records.is_empty() {
        writeln!(
            out,
            "(no nodes registered in {})",
            config.sync_dir.display()
        )?;
    }
    Ok(!records.is_empty() && outcomes.iter().all(Outcome::is_alive))
}

/// Checks this host's own node: the registered node whose name was given,
/// or else the one whose record carries this host's address. Ok(false) when
/// it does not answer; an error when none can be found.
pub fn health(config: &Config, name_given: bool) -> Result<bool, String> {
    let records = Registry::new(&config.sync_dir).scan();
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
                config.sync_dir.display()
            ),
            n => format!("{n} registered nodes on {}: give --name", config.ip),
        });
    };
    let outcomes = ping_all(
        checker(config, "health"),
        std::slice::from_ref(record),
        config,
    )
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
