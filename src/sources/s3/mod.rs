//! The S3 source (`--registry s3://BUCKET/PREFIX`): one object per node
//! under the prefix, named after the node, holding its record.
//!
//! Every store request runs on the `pulse-s3` thread, with a deadline,
//! never on the round thread. Each registry period the thread writes our
//! object again (the same bytes, so the same entity tag: no reader fetches
//! it again, but its `LastModified` moves on), lists the prefix (every
//! page) and gets only the objects whose entity tag is new or changed. The
//! round takes the latest listing without waiting.
//!
//! A record's version is its object's `LastModified` (the store's clock):
//! it stands still when its node stops writing, and membership expires a
//! member whose heartbeat stood still and who did not answer for the TTL;
//! the thread then deletes its object. An object listed with an age (by
//! the store's clock) of the TTL or more proposes its node as stale: it
//! may vanish without that being a leave. A fresh object that vanishes is
//! a leave. A listing that fails removes nobody; the round pings the nodes
//! it knows.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::{Candidates, Entry, PeerSource};
use crate::config::Config;
use crate::error::{Error, S3Cause, S3Error, S3Step};
use crate::membership::Outcome;
use crate::name::NodeName;
use crate::registry::{self, Record};
use crate::s3::{Client, Got, Location, Settings};

mod claim;
mod worker;

use worker::Worker;

/// Largest object read as a record (a record is under 100 bytes).
pub(super) const MAX_RECORD: u64 = 1024;
/// Deadline of the requests at start and of the delete at the leave.
pub(super) const START_DEADLINE: Duration = Duration::from_secs(10);
pub(super) const LEAVE_DEADLINE: Duration = Duration::from_secs(3);

/// The S3 registry, and the thread that talks to it.
pub(crate) struct S3Source {
    own: Record,
    /// When each node last answered a ping: a vanished object is a leave
    /// only if its node answered lately (not if another node expired it).
    answered: BTreeMap<NodeName, Instant>,
    /// How lately: a period (the listing that sees it gone comes at most
    /// a period after the delete) and two intervals, at most half the TTL
    /// (an expiry waits the TTL without an answer).
    leave_window: Duration,
    /// Expired nodes, with the version they expired with, until a
    /// listing no longer has their object at that version.
    expiring: BTreeMap<NodeName, u64>,
    shared: Arc<Mutex<Shared>>,
    /// Dropped (with the thread joined) at the leave, or when dropped.
    worker: Option<(Sender<Command>, JoinHandle<()>)>,
}

/// What the thread found, for the round.
#[derive(Default)]
pub(super) struct Shared {
    /// The latest listing's records, ourselves left out; `None` while the
    /// listing fails (or before the first).
    records: Option<Vec<Record>>,
    /// Nodes whose fresh object vanished since the round last asked.
    vanished: Vec<NodeName>,
    /// Whether our object was written in the latest period.
    beating: bool,
    /// Said once each, in the next round.
    warnings: Vec<String>,
}

pub(super) enum Command {
    /// Delete these expired nodes' objects.
    Expire(Vec<NodeName>),
}

impl S3Source {
    /// Checks the bucket and the key, takes our name (refused while a
    /// fresh object holds it, or when another node took it at the same
    /// moment: [`claim`]), lists once, and starts the thread.
    pub(crate) fn start(
        config: &Config,
        location: &Location,
        settings: &Settings,
        addr: SocketAddr,
    ) -> Result<S3Source, Error> {
        let registry = format!("s3://{}/{}", location.bucket, location.prefix);
        let failed = |step, cause| {
            Error::S3(S3Error {
                registry: registry.clone(),
                step,
                cause,
            })
        };
        let client = Client::new(location, settings)
            .map_err(|e| failed(S3Step::Client, S3Cause::Settings(e.0)))?;
        let deadline = || Instant::now() + START_DEADLINE;
        client
            .check(deadline())
            .map_err(|e| failed(S3Step::CheckBucket, e.into()))?;
        let own = Record::new(config.name.clone(), addr, SystemTime::now());
        let body = own.to_text().into_bytes();
        let own_etag = claim::claim(&client, config, &registry, &body)?;
        let at = format!("S3 registry {registry}");
        let mut worker = Worker::new(client, at, config, body, own_etag);
        // The first listing before the first round: the join at once.
        worker.list();
        let shared = worker.shared.clone();
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = thread::Builder::new()
            .name("pulse-s3".into())
            .spawn(move || worker.run(&rx))
            .map_err(Error::Thread)?;
        Ok(S3Source {
            own,
            answered: BTreeMap::new(),
            expiring: BTreeMap::new(),
            leave_window: (config.registry_period + config.interval * 2).min(config.ttl / 2),
            shared,
            worker: Some((tx, handle)),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the thread, which deletes our object on its way out.
    fn stop(&mut self) {
        if let Some((tx, handle)) = self.worker.take() {
            drop(tx);
            handle.join().expect("the pulse-s3 thread does not panic");
        }
    }
}

impl PeerSource for S3Source {
    /// Whether the thread wrote our object in its latest period.
    fn heartbeat(&mut self, warnings: &mut Vec<String>) -> bool {
        let mut shared = self.shared();
        warnings.append(&mut shared.warnings);
        shared.beating
    }

    /// The latest listing, without waiting for the store.
    fn candidates(&mut self, warnings: &mut Vec<String>) -> Candidates {
        let mut shared = self.shared();
        warnings.append(&mut shared.warnings);
        let listed = shared.records.clone();
        let vanished = std::mem::take(&mut shared.vanished);
        drop(shared);
        let records = listed.map(|mut records| {
            // An expired node's object is listed until a listing after its
            // deletion: at the version it expired with, it proposes no one
            // (it would join again); a newer one is its node back.
            self.expiring.retain(|name, version| {
                records
                    .iter()
                    .any(|r| r.name == *name && r.version == *version)
            });
            records.retain(|r| self.expiring.get(&r.name) != Some(&r.version));
            records.push(self.own.clone());
            records
        });
        let now = Instant::now();
        let left = vanished
            .into_iter()
            .filter(|name| {
                let answered = self.answered.remove(name);
                answered.is_some_and(|at| now.duration_since(at) <= self.leave_window)
            })
            .collect();
        Candidates {
            records,
            replaced: false,
            left,
        }
    }

    /// The thread deletes their objects.
    fn expired(&mut self, expired: &[Record], _warnings: &mut Vec<String>) {
        for record in expired {
            self.answered.remove(&record.name);
            self.expiring.insert(record.name.clone(), record.version);
        }
        if let Some((tx, _)) = &self.worker {
            let names = expired.iter().map(|r| r.name.clone()).collect();
            let _ = tx.send(Command::Expire(names));
        }
    }

    fn pinged(&mut self, results: &[(NodeName, Outcome)]) {
        let now = Instant::now();
        for (name, outcome) in results {
            if outcome.is_alive() {
                self.answered.insert(name.clone(), now);
            }
        }
    }

    /// Only the store knows, and the round never asks it.
    fn entry(&mut self, _name: &NodeName) -> Entry {
        Entry::Unknown
    }

    fn leave(&mut self, warnings: &mut Vec<String>) -> &'static str {
        self.stop();
        warnings.append(&mut self.shared().warnings);
        "registry object deleted"
    }
}

impl Drop for S3Source {
    /// A node that stops without its rounds' leave gives its name back too.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every node's record under the prefix now, for a one-shot check
/// (`pulse status`, `pulse health`): one listing and one get per node;
/// objects that are not records are left out.
pub(crate) fn registered(location: &Location, settings: &Settings) -> Result<Vec<Record>, String> {
    registered_among(location, settings, |_| true)
}

/// The same for the objects whose names `wanted` picks, or all of them
/// when it picks none: a health check looking for its own node reads one
/// object, not every node's (each GET is billed).
pub(crate) fn registered_among(
    location: &Location,
    settings: &Settings,
    wanted: impl Fn(&NodeName) -> bool,
) -> Result<Vec<Record>, String> {
    let client = Client::new(location, settings).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + START_DEADLINE;
    let mut records = Vec::new();
    let listed: Vec<_> = client
        .list(deadline)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|object| Some((object.name.parse::<NodeName>().ok()?, object)))
        .filter(|(_, object)| object.size <= MAX_RECORD)
        .collect();
    let any_wanted = listed.iter().any(|(name, _)| wanted(name));
    for (name, object) in listed {
        if any_wanted && !wanted(&name) {
            continue;
        }
        if let Got::Body(got) = client
            .get(&object.name, None, deadline)
            .map_err(|e| e.to_string())?
        {
            if let Ok(mut record) = Record::parse(&name, &String::from_utf8_lossy(&got.bytes)) {
                record.modified_ms = object.last_modified.map_or(0, registry::unix_ms);
                records.push(record);
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u8) -> NodeName {
        format!("n{i}@127.0.0.1").parse().expect("name")
    }

    /// A source for node `own` whose thread never ran: the tests hand it
    /// what a listing would have found.
    fn without_a_worker(own: Record) -> S3Source {
        S3Source {
            own,
            answered: BTreeMap::new(),
            leave_window: Duration::from_millis(500),
            expiring: BTreeMap::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
            worker: None,
        }
    }

    #[test]
    fn a_vanished_object_is_a_leave_only_if_its_node_answered_lately() {
        let own = Record::new(
            name(0),
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SystemTime::now(),
        );
        let mut source = without_a_worker(own);
        let mut warnings = Vec::new();
        let alive = Outcome::Alive(Duration::from_millis(1));
        source.pinged(&[(name(1), alive.clone()), (name(2), alive)]);
        source
            .answered
            .insert(name(2), Instant::now() - Duration::from_secs(5));
        source.shared().vanished = vec![name(1), name(2), name(3)];
        source.shared().warnings.push("listed again".into());
        let found = source.candidates(&mut warnings);
        // n2 went silent long ago: another node expired it; n3 never
        // answered. Membership judges those as vanished entries.
        assert_eq!(found.left, [name(1)]);
        assert_eq!(warnings, ["listed again"]);
        // No listing yet: nothing is said about anyone.
        assert!(found.records.is_none());
        source.shared().records = Some(vec![]);
        let found = source.candidates(&mut warnings);
        let names: Vec<NodeName> = found
            .records
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, [name(0)]);
        assert!(found.left.is_empty());
        assert_eq!(source.entry(&name(1)), Entry::Unknown);
    }

    #[test]
    fn an_expired_node_proposes_no_one_until_its_object_changes() {
        let at = |i: u8, version: u64| {
            let addr = SocketAddr::from(([127, 0, 0, 1], 1));
            let mut record = Record::new(name(i), addr, SystemTime::now());
            record.version = version;
            record
        };
        let mut source = without_a_worker(at(0, 0));
        let mut warnings = Vec::new();
        let mut listed = |source: &mut S3Source, records: Vec<Record>| {
            source.shared().records = Some(records);
            let found = source.candidates(&mut warnings).records;
            let found = found.unwrap_or_default().into_iter();
            found.map(|r| r.name).collect::<Vec<NodeName>>()
        };
        source.expired(&[at(1, 5)], &mut Vec::new());
        // A listing from before its deletion, round after round.
        for _ in 0..3 {
            let names = listed(&mut source, vec![at(1, 5), at(2, 5)]);
            assert_eq!(names, [name(2), name(0)]);
        }
        // Written again: its node is back.
        assert_eq!(listed(&mut source, vec![at(1, 6)]), [name(1), name(0)]);
        assert!(source.expiring.is_empty());
        // Deleted, then made again with the same version: a new object.
        source.expired(&[at(1, 6)], &mut Vec::new());
        assert_eq!(listed(&mut source, vec![]), [name(0)]);
        assert_eq!(listed(&mut source, vec![at(1, 6)]), [name(1), name(0)]);
    }
}
