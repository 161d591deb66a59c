//! The `pulse-s3` thread: every registry period it writes our object,
//! lists the prefix and gets the objects whose entity tag is new or
//! changed, and hands the round what it found through [`Shared`]; it
//! deletes the objects of nodes the round expired, and ours when the
//! source is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{Command, LEAVE_DEADLINE, MAX_RECORD, Shared};
use crate::config::Config;
use crate::name::NodeName;
use crate::registry::{self, Record};
use crate::s3::{Client, Got, Listed};

/// Longest wait after the store asked us to slow down, doubling up to it.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One object as the latest listing had it.
struct Known {
    etag: String,
    /// Its record; `None` when its body is not one.
    record: Option<Record>,
    /// Its age was under the TTL.
    fresh: bool,
}

/// The `pulse-s3` thread's state.
pub(super) struct Worker {
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
    pub(super) shared: Arc<Mutex<Shared>>,
}

impl Worker {
    /// The thread's state for `config`'s node, whose object holds `body`
    /// with the entity tag `own_etag`; nothing listed yet.
    pub(super) fn new(
        client: Client,
        at: String,
        config: &Config,
        body: Vec<u8>,
        own_etag: String,
    ) -> Worker {
        Worker {
            client,
            at,
            own: config.name.clone(),
            body,
            own_etag,
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
        }
    }

    /// Every period: write our object, list. Ends when the source is
    /// dropped, deleting our object.
    pub(super) fn run(mut self, commands: &Receiver<Command>) {
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
    pub(super) fn list(&mut self) {
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
}
