//! The shared registry directory: one file per node, named after it.
//!
//! Everything in the directory is untrusted. A regular file whose name is a
//! node name is that node's entry: a pulse record (it carries the address),
//! or a *foreign* entry whatever else it holds, such as the recipe's Elixir
//! nodes' timestamps (the port comes from EPMD). Only what cannot be a node's
//! entry is skipped: a name that is not a node name, something that is not a
//! regular file, a file with more than one link, an oversized file. Each is
//! warned about once; many at once are summarised in one line.
//!
//! A scan costs one `lstat` per node entry: a file's heartbeat is the file
//! changing (inode, modification time or size), and its text is read again
//! only when its inode or size changed, every
//! [`REREAD_AFTER`](entry::REREAD_AFTER), or when told to
//! [`Registry::forget`] it. Our own entry is written by [`own`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self};
use std::io::{self};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::name::NodeName;

/// Largest entry read; real ones are under 100 bytes.
pub(crate) const MAX_RECORD: u64 = 4096;
/// Most node entries looked at in one scan. Entries that cannot be node
/// entries do not count, so junk never crowds out a node.
pub(crate) const MAX_ENTRIES: usize = 10_000;
/// Skipped entries warned about one by one in a scan; more are summarised.
const WARN_EACH_UP_TO: usize = 5;

pub(crate) mod own;
mod record;
pub(crate) mod shared;

mod entry;

use entry::{Cached, Look, check_entry, look_at, mtime_ms, read_untrusted, version_of};

pub(crate) use record::{Record, Target, unix_ms};

/// An error listing the registry `dir`, naming it and saying what to do.
pub(crate) fn listing_error(dir: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot list the registry: {}",
            shared::explain(dir, e, "--sync-dir")
        ),
    )
}

/// Why a directory entry is not a node's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The file name is not a node name.
    NotANodeName,
    /// Not a regular file (what it is instead).
    NotRegular(&'static str),
    /// A regular file with other names too: it may be anyone's file.
    HardLinked(u64),
    /// Over [`MAX_RECORD`] bytes.
    Oversized(u64),
    /// Could not be looked at.
    Unreadable(String),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotANodeName => write!(f, "not a node name"),
            Skip::NotRegular(what) => write!(f, "not a regular file ({what})"),
            Skip::HardLinked(n) => write!(f, "a file with {n} hard links"),
            Skip::Oversized(len) => {
                write!(
                    f,
                    "record of {len} bytes is over the {MAX_RECORD}-byte limit"
                )
            }
            Skip::Unreadable(why) => write!(f, "cannot read: {why}"),
        }
    }
}

/// One registry scan.
pub(crate) struct Scan {
    /// Every node entry, sorted by name.
    pub records: Vec<Record>,
    /// The directory is not the one the last scan listed (it was deleted
    /// and made again): entries missing now may just not be back yet.
    pub dir_replaced: bool,
}

/// A registry directory, and what this node has seen in it.
pub(crate) struct Registry {
    dir: PathBuf,
    /// Node entries by file name, as the last scan found them: in order,
    /// so a scan's records need no sorting.
    cache: BTreeMap<String, Cached>,
    /// Scans so far: tells the entries a scan found from the others.
    scans: u64,
    /// Entries skipped, with the reason last warned about.
    warned: HashMap<String, Skip>,
    /// The directory's (device, inode) at the last listing.
    dir_id: Option<(u64, u64)>,
    /// Node entries left out of the last scan for the cap.
    over_cap: usize,
    /// Warnings from scans, for the round to pass on in its report.
    warnings: Vec<String>,
}

impl Registry {
    /// A registry in `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Registry {
        Registry {
            dir: dir.into(),
            cache: BTreeMap::new(),
            scans: 0,
            warned: HashMap::new(),
            dir_id: None,
            over_cap: 0,
            warnings: Vec::new(),
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &NodeName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// Removes an expired node's file, unless it changed since `seen` was
    /// scanned (its node restarted under the name meanwhile). A file
    /// already gone is not an error.
    pub(crate) fn remove_if_unchanged(&self, seen: &Record) -> io::Result<()> {
        let path = self.path(&seen.name);
        match path.symlink_metadata() {
            Ok(meta) if version_of(&meta) == seen.version => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// One node's entry as a scan would find it now (a regular file under
    /// its name, with one link, not oversized), read afresh; `None` when
    /// it has none. For a node heard from between scans, or refused at the
    /// address the scan found.
    pub(crate) fn entry(&self, name: &NodeName) -> Option<Record> {
        let path = self.path(name);
        let meta = path.symlink_metadata().ok()?;
        check_entry(&meta).ok()?;
        let (bytes, meta) = read_untrusted(&path).ok()?;
        check_entry(&meta).ok()?;
        Some(Record {
            version: version_of(&meta),
            modified_ms: mtime_ms(&meta),
            ..Record::from_file(name, &bytes)
        })
    }

    /// Lists every node entry. Entries that cannot be node entries are
    /// skipped with one warning each (a summary when there are many). An
    /// error means the directory could not be listed: it says nothing
    /// about the nodes.
    pub(crate) fn scan(&mut self) -> io::Result<Scan> {
        let entries = fs::read_dir(&self.dir)?;
        let dir_id = fs::metadata(&self.dir)
            .ok()
            .map(|meta| (meta.dev(), meta.ino()));
        let dir_replaced = self.dir_id.is_some() && dir_id != self.dir_id;
        if dir_id.is_some() {
            self.dir_id = dir_id;
        }
        if dir_replaced {
            self.cache.clear();
        }
        self.scans += 1;
        let now = Instant::now();
        let mut skipped = HashMap::new();
        let (mut nodes, mut over_cap) = (0, 0);
        for entry in entries.flatten() {
            let os_name = entry.file_name();
            let file_name = os_name.to_string_lossy();
            if file_name.starts_with('.') {
                continue;
            }
            // A name in the cache was parsed when it was first found.
            let mut known = self.cache.get_mut(file_name.as_ref());
            let parsed;
            let name = match &known {
                Some(cached) => &cached.record.name,
                None => match file_name.parse::<NodeName>() {
                    Ok(name) => {
                        parsed = name;
                        &parsed
                    }
                    Err(_) => {
                        skipped.insert(file_name.into_owned(), Skip::NotANodeName);
                        continue;
                    }
                },
            };
            if nodes >= MAX_ENTRIES {
                over_cap += 1;
                continue;
            }
            let look = look_at(&entry, &self.dir, name, known.as_deref(), now);
            let cached = match (look, known.as_mut()) {
                (
                    Look::Known {
                        version,
                        modified_ms,
                    },
                    Some(cached),
                ) => {
                    cached.record.version = version;
                    cached.record.modified_ms = modified_ms;
                    cached
                }
                (Look::Read(fresh), Some(cached)) => {
                    **cached = fresh;
                    cached
                }
                (Look::Read(fresh), None) => {
                    self.cache.entry(file_name.into_owned()).or_insert(fresh)
                }
                (Look::Skipped(why), _) => {
                    skipped.insert(file_name.into_owned(), why);
                    continue;
                }
                (Look::Known { .. } | Look::Vanished, _) => continue,
            };
            cached.found_in = self.scans;
            nodes += 1;
        }
        // Whatever this scan did not find is forgotten (rarely anything: a
        // new map then, not one removal after another).
        let scans = self.scans;
        if self.cache.values().any(|cached| cached.found_in != scans) {
            for (name, cached) in std::mem::take(&mut self.cache) {
                if cached.found_in == scans {
                    self.cache.insert(name, cached);
                }
            }
        }
        let records = self.cache.values().map(|c| c.record.clone()).collect();
        if over_cap > 0 && over_cap != self.over_cap {
            self.warnings.push(format!(
                "registry: {over_cap} node entries over the {MAX_ENTRIES}-entry limit are left out"
            ));
        }
        self.over_cap = over_cap;
        self.warn_skipped(&skipped);
        self.warned = skipped;
        Ok(Scan {
            records,
            dir_replaced,
        })
    }

    /// Warns about entries skipped for a new reason: each one up to a few,
    /// then one summary line.
    fn warn_skipped(&mut self, skipped: &HashMap<String, Skip>) {
        let mut news: Vec<(&String, &Skip)> = skipped
            .iter()
            .filter(|(name, why)| self.warned.get(*name) != Some(why))
            .collect();
        if news.is_empty() {
            return;
        }
        news.sort_by(|a, b| a.0.cmp(b.0));
        let each = if news.len() > WARN_EACH_UP_TO {
            3
        } else {
            news.len()
        };
        for (name, why) in &news[..each] {
            self.warnings.push(format!(
                "registry: skipping '{}': {why}",
                name.escape_debug()
            ));
        }
        if news.len() > each {
            let names = news[each..]
                .iter()
                .filter(|(_, why)| **why == Skip::NotANodeName)
                .count();
            self.warnings.push(format!(
                "registry: skipping {} more entries that cannot be node entries \
                 ({names} not node names, {} other), {} skipped in all",
                news.len() - each,
                news.len() - each - names,
                skipped.len()
            ));
        }
    }

    /// The warnings of the scans since the last call.
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Forgets what it read of a node's file, so the next scan reads it
    /// again (its node did not answer: it may have restarted elsewhere).
    pub(crate) fn forget(&mut self, name: &NodeName) {
        if let Some(cached) = self.cache.get_mut(name.as_str()) {
            cached.read_at = None;
        }
    }
}

#[cfg(test)]
mod tests;
