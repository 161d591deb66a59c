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

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Candidates, Entry, PeerSource};
use crate::config::Config;
use crate::decimal::Fixed;
use crate::membership::Outcome;
use crate::name::NodeName;
use crate::node::Error;
use crate::registry::{self, Record};
use crate::s3::{Client, Got, Listed, Location, Settings};

/// Largest object read as a record (a record is under 100 bytes).
const MAX_RECORD: u64 = 1024;
/// Longest wait after the store asked us to slow down, doubling up to it.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Deadline of the requests at start and of the delete at the leave.
const START_DEADLINE: Duration = Duration::from_secs(10);
const LEAVE_DEADLINE: Duration = Duration::from_secs(3);

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
    shared: Arc<Mutex<Shared>>,
    /// Dropped (with the thread joined) at the leave, or when dropped.
    worker: Option<(Sender<Command>, JoinHandle<()>)>,
}

/// What the thread found, for the round.
#[derive(Default)]
struct Shared {
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

enum Command {
    /// Delete these expired nodes' objects.
    Expire(Vec<NodeName>),
}

impl S3Source {
    /// Checks the bucket and the key, takes our name (refused while a
    /// fresh object holds it), lists once, and starts the thread.
    pub(crate) fn start(
        config: &Config,
        location: &Location,
        settings: &Settings,
        addr: SocketAddr,
    ) -> Result<S3Source, Error> {
        let at = format!("S3 registry s3://{}/{}", location.bucket, location.prefix);
        let client =
            Client::new(location, settings).map_err(|e| Error::S3(format!("{at}: {e}")))?;
        let deadline = || Instant::now() + START_DEADLINE;
        client.check(deadline()).map_err(|e| {
            if e.is_configuration() {
                Error::S3(format!("{at}: {e}"))
            } else {
                Error::S3(format!(
                    "{at}: cannot reach the store: {e}; check AWS_ENDPOINT_URL_S3 or the network"
                ))
            }
        })?;
        let own = Record::new(config.name.clone(), addr, SystemTime::now());
        let body = own.to_text().into_bytes();
        let name = config.name.as_str();
        let failed = |e: crate::s3::Error| Error::S3(format!("{at}: cannot take our name: {e}"));
        let written = match client.get(name, None, deadline()).map_err(failed)? {
            Got::Body(held) if held.age.is_none_or(|age| age < config.ttl) => {
                let age = match held.age {
                    Some(age) => format!("{} s ago", Fixed::seconds(age.as_millis())),
                    None => "at a time the store does not say".into(),
                };
                return Err(Error::Taken(
                    config.name.clone(),
                    format!("its object in {at} was written {age}, less than the TTL"),
                ));
            }
            // Stale: a node that stopped without leaving.
            Got::Body(_) | Got::NotModified => client.put(name, &body, deadline()),
            Got::Missing => client.create(name, &body, deadline()),
        };
        let written = written.map_err(|e| match e {
            crate::s3::Error::PreconditionFailed => Error::Taken(
                config.name.clone(),
                format!("another node took it in {at} at the same moment"),
            ),
            e => failed(e),
        })?;
        let mut worker = Worker {
            client,
            at,
            own: config.name.clone(),
            body,
            own_etag: written.etag,
            period: config.registry_period,
            ttl: config.ttl,
            request: config
                .registry_period
                .clamp(Duration::from_secs(1), Duration::from_secs(5)),
            known: BTreeMap::new(),
            warned: BTreeSet::new(),
            listing_failing: false,
            writing_failing: false,
            backoff: None,
            throttled: false,
            shared: Arc::new(Mutex::new(Shared {
                beating: true,
                ..Shared::default()
            })),
        };
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
        let records = shared.records.clone().map(|mut records| {
            records.push(self.own.clone());
            records
        });
        let vanished = std::mem::take(&mut shared.vanished);
        drop(shared);
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

/// One object as the latest listing had it.
struct Known {
    etag: String,
    /// Its record; `None` when its body is not one.
    record: Option<Record>,
    /// Its age was under the TTL.
    fresh: bool,
}

/// The `pulse-s3` thread's state.
struct Worker {
    client: Client,
    /// `S3 registry s3://BUCKET/PREFIX`, for messages.
    at: String,
    own: NodeName,
    body: Vec<u8>,
    own_etag: String,
    period: Duration,
    ttl: Duration,
    /// Each request's deadline.
    request: Duration,
    /// By object name (after the prefix).
    known: BTreeMap<String, Known>,
    /// Objects (name, entity tag) already warned about.
    warned: BTreeSet<(String, String)>,
    listing_failing: bool,
    writing_failing: bool,
    /// The wait after a throttled period, doubled each time.
    backoff: Option<Duration>,
    /// The store asked us to slow down in this period.
    throttled: bool,
    shared: Arc<Mutex<Shared>>,
}

impl Worker {
    /// Every period: write our object, list. Ends when the source is
    /// dropped, deleting our object.
    fn run(mut self, commands: &Receiver<Command>) {
        let mut next = Instant::now() + self.period;
        loop {
            match commands.recv_deadline(next) {
                Ok(Command::Expire(names)) => {
                    for name in names {
                        self.delete_expired(&name);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.throttled = false;
            self.write();
            self.list();
            // Asked to slow down: wait twice as long each time, up to a
            // limit; back to the period once a period goes through.
            self.backoff = self.throttled.then(|| backoff(self.backoff, self.period));
            next = Instant::now() + self.backoff.unwrap_or(self.period);
        }
        let deadline = Instant::now() + LEAVE_DEADLINE;
        if let Err(e) = self.client.delete(self.own.as_str(), deadline) {
            self.warn(format!("{}: could not delete our object: {e}", self.at));
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.request
    }

    fn warn(&self, warning: String) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.warnings.push(warning);
    }

    /// Writes our object again: same bytes, same entity tag.
    fn write(&mut self) {
        let result = self
            .client
            .put(self.own.as_str(), &self.body, self.deadline());
        let failing = match result {
            Ok(written) => {
                self.own_etag = written.etag;
                false
            }
            Err(e) => {
                if !self.writing_failing {
                    self.warn(format!(
                        "{}: cannot write our heartbeat: {e}; other nodes will expire this \
                         node, and it expires no one meanwhile",
                        self.at
                    ));
                }
                if e.is_throttled() {
                    self.throttled = true;
                }
                true
            }
        };
        if self.writing_failing && !failing {
            self.warn(format!("{}: our heartbeat is written again", self.at));
        }
        self.writing_failing = failing;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.beating = !failing;
    }

    /// Lists the prefix and hands the round what it holds.
    fn list(&mut self) {
        let listed = match self.client.list(self.deadline()) {
            Ok(listed) => listed,
            Err(e) => {
                if !self.listing_failing {
                    self.warn(format!(
                        "{}: cannot list: {e}; pinging the nodes known so far",
                        self.at
                    ));
                    self.listing_failing = true;
                }
                if e.is_throttled() {
                    self.throttled = true;
                }
                let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                shared.records = None;
                return;
            }
        };
        if self.listing_failing {
            self.warn(format!("{}: can be listed again", self.at));
            self.listing_failing = false;
        }
        let mut known = BTreeMap::new();
        let mut records = Vec::new();
        for object in listed {
            if let Some((record, fresh)) = self.read(&object) {
                let record = record.map(|mut record| {
                    record.version = version(&object);
                    record.modified_ms = object.last_modified.map_or(0, registry::unix_ms);
                    records.push(record.clone());
                    record
                });
                let etag = object.etag.clone();
                known.insert(
                    object.name,
                    Known {
                        etag,
                        record,
                        fresh,
                    },
                );
            }
        }
        // A fresh object that vanished: its node deleted it, leaving, or
        // another node expired it (the round tells which).
        let vanished: Vec<NodeName> = self
            .known
            .iter()
            .filter(|(name, k)| k.fresh && !known.contains_key(*name))
            .filter_map(|(_, k)| k.record.as_ref().map(|r| r.name.clone()))
            .collect();
        // Warned-about objects that are gone may warn again if they return.
        self.warned.retain(|(name, _)| known.contains_key(name));
        self.known = known;
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.records = Some(records);
        shared.vanished.extend(vanished);
    }

    /// One listed object: its record (`None` when it is not a node's) and
    /// whether it is fresh; `None` for our own object, and for one that
    /// vanished or could not be read (the next listing tries again).
    fn read(&mut self, object: &Listed) -> Option<(Option<Record>, bool)> {
        let fresh = object.age.is_none_or(|age| age < self.ttl);
        let Ok(name) = object.name.parse::<NodeName>() else {
            self.warn_once(object, "its key is not a node name");
            return Some((None, fresh));
        };
        if name == self.own {
            if !self.own_etag.is_empty() && object.etag != self.own_etag {
                self.warn_once(
                    object,
                    "another body than ours stands under our name: another node may be using it",
                );
            }
            return None;
        }
        if let Some(k) = self.known.get(&object.name)
            && k.etag == object.etag
        {
            return Some((k.record.clone(), fresh));
        }
        if object.size > MAX_RECORD {
            self.warn_once(object, "larger than a record");
            return Some((None, fresh));
        }
        match self.client.get(&object.name, None, self.deadline()) {
            Ok(Got::Body(got)) => {
                let text = String::from_utf8_lossy(&got.bytes);
                match Record::parse(&name, &text) {
                    Ok(record) if record.addr.is_some() => Some((Some(record), fresh)),
                    _ => {
                        self.warn_once(object, "its body is not a pulse record");
                        Some((None, fresh))
                    }
                }
            }
            Ok(Got::Missing | Got::NotModified) => None,
            Err(e) => {
                if e.is_throttled() {
                    self.throttled = true;
                }
                // Whom we knew stays until a get works.
                let k = self.known.get(&object.name)?;
                Some((k.record.clone(), fresh))
            }
        }
    }

    fn warn_once(&mut self, object: &Listed, why: &str) {
        if self
            .warned
            .insert((object.name.clone(), object.etag.clone()))
        {
            let name = printable(&object.name);
            self.warn(format!("{}: skipped the object {name}: {why}", self.at));
        }
    }

    /// Deletes an expired node's object.
    fn delete_expired(&mut self, name: &NodeName) {
        if let Err(e) = self.client.delete(name.as_str(), self.deadline()) {
            self.warn(format!(
                "{}: could not delete the expired object {name}: {e}",
                self.at
            ));
        }
        self.known.remove(name.as_str());
    }
}

/// Every node's record under the prefix now, for a one-shot check
/// (`pulse status`, `pulse health`): one listing and one get per node;
/// objects that are not records are left out.
pub(crate) fn registered(location: &Location, settings: &Settings) -> Result<Vec<Record>, String> {
    let client = Client::new(location, settings).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + START_DEADLINE;
    let mut records = Vec::new();
    for object in client.list(deadline).map_err(|e| e.to_string())? {
        let Ok(name) = object.name.parse::<NodeName>() else {
            continue;
        };
        if object.size > MAX_RECORD {
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

/// The wait after a throttled period: twice the last one (or the period),
/// up to [`MAX_BACKOFF`], never under the period.
fn backoff(last: Option<Duration>, period: Duration) -> Duration {
    last.map_or(period * 2, |b| b * 2)
        .min(MAX_BACKOFF)
        .max(period)
}

/// An object's name for a message: at most 100 characters, control
/// characters escaped, so a hostile key cannot forge log lines.
fn printable(text: &str) -> String {
    text.chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect()
}

/// A record's version: its object's `LastModified` in Unix milliseconds,
/// which our heartbeat moves on and which stands still when its node
/// stops; a store that gives none has every listing count as a beat.
fn version(object: &Listed) -> u64 {
    match object.last_modified {
        Some(at) => registry::unix_ms(at),
        None => registry::unix_ms(SystemTime::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u8) -> NodeName {
        format!("n{i}@127.0.0.1").parse().expect("name")
    }

    #[test]
    fn throttling_doubles_the_wait_up_to_a_minute() {
        let period = Duration::from_secs(10);
        let mut waits = Vec::new();
        let mut last = None;
        for _ in 0..4 {
            let wait = backoff(last, period);
            waits.push(wait.as_secs());
            last = Some(wait);
        }
        assert_eq!(waits, [20, 40, 60, 60]);
        // A period longer than the limit is never shortened.
        assert_eq!(backoff(None, Duration::from_secs(90)).as_secs(), 90);
    }

    #[test]
    fn a_vanished_object_is_a_leave_only_if_its_node_answered_lately() {
        let own = Record::new(
            name(0),
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SystemTime::now(),
        );
        let mut source = S3Source {
            own,
            answered: BTreeMap::new(),
            leave_window: Duration::from_millis(500),
            shared: Arc::new(Mutex::new(Shared::default())),
            worker: None,
        };
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
}
