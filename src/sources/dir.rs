//! The directory source: the shared registry directory ([`Registry`], the
//! untrusted scan) and our own entry in it ([`OwnEntry`], claimed at start,
//! touched every round, removed at the leave).
//!
//! Every file under a node's name is a candidate; one that vanished while
//! its heartbeat moved is a leave, one that stood still and unanswered for
//! the TTL is expired and its file removed. A node heard from between
//! scans is looked up by its file alone, with the scan's rules.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use super::{Candidates, Entry, PeerSource};
use crate::config::Config;
use crate::erlang::epmd::registration::EPMD_TIMEOUT;
use crate::erlang::{Identity, epmd};
use crate::error::{Error, Taken};
use crate::membership::{Outcome, Reason};
use crate::name::NodeName;
use crate::peers::probe;
use crate::registry::own::{Beat, ClaimError, Holder, OwnEntry};
use crate::registry::{Record, Registry};

/// The shared directory, and our entry in it.
pub(crate) struct DirSource {
    name: NodeName,
    registry: Registry,
    /// Held from the claim until we leave.
    own: Option<OwnEntry>,
    /// Whether our heartbeat fails, as last said.
    heartbeat_failing: bool,
    /// Whether the directory cannot be listed, as last said.
    listing_failing: bool,
}

impl DirSource {
    /// Claims our name in the directory for our node at `addr`: taken
    /// when a live node holds it (`me` pings a holder that has an address).
    pub(crate) fn claim(
        config: &Config,
        addr: SocketAddr,
        me: &Identity,
    ) -> Result<DirSource, Error> {
        let own = OwnEntry::claim(
            &config.sync_dir,
            &Record::new(config.name.clone(), addr, SystemTime::now()),
            |holder| still_held(holder, config, me),
        )
        .map_err(|e| match e {
            ClaimError::Taken(why) => Error::Taken(config.name.clone(), why),
            ClaimError::Io(e) => Error::Registry(e),
        })?;
        Ok(DirSource {
            name: config.name.clone(),
            registry: Registry::new(&config.sync_dir),
            own: Some(own),
            heartbeat_failing: false,
            listing_failing: false,
        })
    }

    fn dir(&self) -> String {
        self.registry.dir().display().to_string()
    }
}

impl PeerSource for DirSource {
    /// Touches our entry (made again if it vanished).
    fn heartbeat(&mut self, warnings: &mut Vec<String>) -> bool {
        let Some(own) = self.own.as_mut() else {
            return true;
        };
        let dir = self.registry.dir().display().to_string();
        let failure = match own.beat(SystemTime::now()) {
            Ok(Beat::Touched) => None,
            Ok(Beat::Recreated) => {
                warnings.push(format!(
                    "our registry entry was gone: written again in {dir}"
                ));
                None
            }
            Ok(Beat::Replaced) => Some(format!(
                "another file stands under our name {} in {dir}: another node may be using the name",
                self.name
            )),
            Err(e) => Some(format!(
                "cannot write our heartbeat to {dir}: {e}; other nodes will expire this node, \
                 and it expires no one meanwhile"
            )),
        };
        match failure {
            Some(why) if !self.heartbeat_failing => {
                warnings.push(why);
                self.heartbeat_failing = true;
            }
            None if self.heartbeat_failing => {
                warnings.push(format!("our heartbeat is written again to {dir}"));
                self.heartbeat_failing = false;
            }
            _ => {}
        }
        !self.heartbeat_failing
    }

    /// One scan of the directory.
    fn candidates(&mut self, warnings: &mut Vec<String>) -> Candidates {
        let found = match self.registry.scan() {
            Ok(scan) => {
                if self.listing_failing {
                    warnings.push(format!("registry {} can be listed again", self.dir()));
                    self.listing_failing = false;
                }
                Candidates {
                    records: Some(scan.records),
                    replaced: scan.dir_replaced,
                    left: Vec::new(),
                }
            }
            Err(e) => {
                if !self.listing_failing {
                    warnings.push(format!(
                        "registry: cannot list {}: {e}; pinging the nodes known so far",
                        self.dir()
                    ));
                    self.listing_failing = true;
                }
                Candidates::default()
            }
        };
        warnings.extend(self.registry.take_warnings());
        found
    }

    /// Removes each expired file, unless its node wrote it again since.
    fn expired(&mut self, expired: &[Record], warnings: &mut Vec<String>) {
        for record in expired {
            if let Err(e) = self.registry.remove_if_unchanged(record) {
                warnings.push(format!(
                    "could not remove the expired entry {}: {e}",
                    record.name
                ));
            }
        }
    }

    /// A node that failed may have restarted at another address: the next
    /// scan reads its file afresh.
    fn pinged(&mut self, results: &[(NodeName, Outcome)]) {
        for (name, outcome) in results {
            if !outcome.is_alive() {
                self.registry.forget(name);
            }
        }
    }

    /// Its file, read afresh with the scan's rules; the next scan reads it
    /// afresh too (its inode and size may be the old file's).
    fn entry(&mut self, name: &NodeName) -> Entry {
        let entry = self.registry.entry(name);
        self.registry.forget(name);
        match entry {
            Some(record) => Entry::Found(record),
            None => Entry::Missing,
        }
    }

    fn leave(&mut self, warnings: &mut Vec<String>) -> &'static str {
        if let Some(own) = self.own.take()
            && let Err(e) = own.remove()
        {
            warnings.push(format!("could not remove our registry entry: {e}"));
        }
        "registry entry removed"
    }
}

impl Drop for DirSource {
    /// A node that stops without its rounds' leave (its start failed later
    /// on) gives its name back too.
    fn drop(&mut self) {
        if let Some(own) = self.own.take() {
            let _ = own.remove();
        }
    }
}

/// Why an existing entry under our name is still held, or `None` when it is
/// stale. A pulse node holds its entry's lock for its life (frozen or not);
/// one that answers at its recorded address is alive even without the lock
/// (a wrong cookie still proves it is there). A foreign node is alive while
/// its file is fresh, or while EPMD on its host knows the name.
fn still_held(holder: &Holder, config: &Config, me: &Identity) -> Option<Taken> {
    if holder.locked {
        return Some(Taken::Locked);
    }
    if let Some(record) = &holder.record {
        let addr = record.addr?;
        let deadline = Instant::now() + config.timeout;
        return match probe::open(me, config.epmd_port, &record.target(), deadline) {
            Ok(_) | Err(Reason::BadCookie) => Some(Taken::Answers(addr)),
            Err(_) => None,
        };
    }
    let age = SystemTime::now()
        .duration_since(holder.modified)
        .unwrap_or(Duration::ZERO);
    if age < config.ttl {
        return Some(Taken::ForeignEntry(age));
    }
    let host: IpAddr = match config.name.host() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        host => host.parse().ok()?,
    };
    let at = SocketAddr::new(host, config.epmd_port);
    match epmd::port_please(at, config.name.alive(), EPMD_TIMEOUT) {
        Ok(Some(port)) => Some(Taken::EpmdKnows { at, port }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::shared;

    fn config(tag: &str, name: &str) -> Config {
        let dir =
            std::env::temp_dir().join(format!("pulse-dir-source-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        shared::create_dir(&dir).expect("temp dir");
        let mut config = Config::for_node(name, "c").expect("config");
        config.sync_dir = dir;
        config
    }

    fn names(found: &Candidates) -> Vec<String> {
        let records = found.records.as_deref().unwrap_or_default();
        records.iter().map(|r| r.name.to_string()).collect()
    }

    #[test]
    fn the_directory_source_proposes_entries_and_gives_ours_back() {
        let config = config("seam", "s1@127.0.0.1");
        let me = Identity::new(config.name.as_str(), &config.cookie);
        let addr = SocketAddr::from(([127, 0, 0, 1], 4001));
        let mut source = DirSource::claim(&config, addr, &me).expect("claim");
        let mut warnings = Vec::new();
        assert!(source.heartbeat(&mut warnings));
        let other: NodeName = "s2@127.0.0.1".parse().expect("name");
        std::fs::write(config.sync_dir.join(other.as_str()), "not a record").expect("write");
        let found = source.candidates(&mut warnings);
        assert_eq!(names(&found), ["s1@127.0.0.1", "s2@127.0.0.1"]);
        assert!(found.left.is_empty() && !found.replaced);
        assert!(warnings.is_empty(), "{warnings:?}");
        match source.entry(&config.name) {
            Entry::Found(record) => assert_eq!(record.addr, Some(addr)),
            other => panic!("our own entry: {other:?}"),
        }
        let expired = found.records.unwrap_or_default();
        source.expired(&expired[1..], &mut warnings);
        assert_eq!(source.entry(&other), Entry::Missing);
        assert_eq!(source.leave(&mut warnings), "registry entry removed");
        assert_eq!(source.entry(&config.name), Entry::Missing);
        // Dropped without the rounds' leave (a start that failed later on).
        let source = DirSource::claim(&config, addr, &me).expect("claim again");
        drop(source);
        let left: Vec<_> = std::fs::read_dir(&config.sync_dir).expect("dir").collect();
        assert!(left.is_empty(), "{left:?}");
        let _ = std::fs::remove_dir_all(&config.sync_dir);
    }
}
