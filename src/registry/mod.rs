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
//! only when its inode or size changed, every [`REREAD_AFTER`], or when told
//! to [`Registry::forget`] it. Our own entry is written by [`own`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::debug;

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

/// How long an entry's text is trusted while only its heartbeat moves.
///
/// A live pulse node touches its record every interval without rewriting
/// it, and the text of a foreign entry does not matter, so reading every
/// file every round would cost each node an open, a read and a close per
/// peer per round for nothing. A record that changed without a new inode
/// or size (a restart that got the old inode back) shows first as a failed
/// ping, and a failed ping has it read again at once; this is only the
/// last resort, so it is long: at 150 nodes, 5 s cost 30 reads a round.
const REREAD_AFTER: Duration = Duration::from_secs(60);

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

/// What one directory entry turned out to be.
enum Look {
    /// The cached text still holds: only the file's heartbeat is new.
    Known {
        version: u64,
        modified_ms: u64,
    },
    /// Read afresh.
    Read(Cached),
    Skipped(Skip),
    /// Gone between the listing and the look: not worth a word.
    Vanished,
}

/// What a scan remembers of a node's file.
struct Cached {
    ino: u64,
    len: u64,
    record: Record,
    /// When its text was read; `None` once forgotten: read at the next look.
    read_at: Option<Instant>,
    /// The scan that last found it; the others drop it.
    found_in: u64,
}

/// One registry scan.
pub(crate) struct Scan {
    /// Every node entry, sorted by name.
    pub records: Vec<Record>,
    /// The directory is not the one the last scan listed (it was deleted
    /// and made again): entries missing now may just not be back yet.
    pub dir_replaced: bool,
}

/// A file's version (see [`mix_version`]).
fn version_of(meta: &fs::Metadata) -> u64 {
    // Nanoseconds since the epoch, wrapped to 64 bits: distinct for 584 years.
    let mtime_ns = (meta.mtime() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(meta.mtime_nsec() as u64);
    mix_version(meta.ino(), mtime_ns, meta.len())
}

/// A file's inode, modification time and size mixed into 64 bits, so that
/// a change of any of them changes the version (two versions collide about
/// as rarely as two 64-bit hashes). No keyed hash is needed: whoever can
/// write the directory can move any heartbeat anyway, and a scan mixes
/// every entry every round.
fn mix_version(ino: u64, mtime_ns: u64, len: u64) -> u64 {
    [ino, mtime_ns, len]
        .into_iter()
        .fold(0x243F_6A88_85A3_08D3, |h, v| {
            (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31)
        })
}

/// The modification time in Unix milliseconds; 0 before the epoch or
/// beyond 64 bits.
fn mtime_ms(meta: &fs::Metadata) -> u64 {
    let (Ok(secs), Ok(nsec)) = (
        u64::try_from(meta.mtime()),
        u64::try_from(meta.mtime_nsec()),
    ) else {
        return 0;
    };
    secs.checked_mul(1000)
        .and_then(|ms| ms.checked_add(nsec / 1_000_000))
        .unwrap_or(0)
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

/// One directory entry of `dir` under a node's name; `known` is what the
/// last scans found there.
fn look_at(
    entry: &fs::DirEntry,
    dir: &Path,
    name: &NodeName,
    known: Option<&Cached>,
    now: Instant,
) -> Look {
    // The listing gives the type without a system call.
    match entry.file_type() {
        Ok(kind) if !kind.is_file() => return Look::Skipped(Skip::NotRegular(describe(&kind))),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Vanished,
        Err(e) => return Look::Skipped(Skip::Unreadable(e.to_string())),
    }
    // An `lstat` of the name in the listed directory, without building its path.
    let meta = match entry.metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Vanished,
        Err(e) => return Look::Skipped(Skip::Unreadable(e.to_string())),
    };
    if let Err(why) = check_entry(&meta) {
        return Look::Skipped(why);
    }
    let (ino, len) = (meta.ino(), meta.len());
    let version = version_of(&meta);
    let modified_ms = mtime_ms(&meta);
    let unchanged = known.is_some_and(|c| {
        c.ino == ino
            && c.len == len
            && c.read_at
                .is_some_and(|at| now.duration_since(at) < REREAD_AFTER)
    });
    if unchanged {
        return Look::Known {
            version,
            modified_ms,
        };
    }
    let record = match read_untrusted(&dir.join(name.as_str())) {
        Ok((bytes, _)) => Record::from_file(name, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Vanished,
        // Swapped for a symlink or something else since the lstat.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Look::Skipped(Skip::NotRegular("a symlink"));
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            return Look::Skipped(Skip::NotRegular("not a regular file any more"));
        }
        // A node's entry we may not read: its text would not matter.
        Err(e) => {
            debug!("registry: cannot read '{name}' ({e}), taking it as a foreign entry");
            Record::foreign(name.clone())
        }
    };
    Look::Read(Cached {
        ino,
        len,
        record: Record {
            version,
            modified_ms,
            ..record
        },
        read_at: Some(now),
        found_in: 0,
    })
}

/// Whether a regular file's metadata can be a node's entry.
fn check_entry(meta: &fs::Metadata) -> Result<(), Skip> {
    if !meta.is_file() {
        return Err(Skip::NotRegular(describe(&meta.file_type())));
    }
    if meta.nlink() > 1 {
        return Err(Skip::HardLinked(meta.nlink()));
    }
    if meta.len() > MAX_RECORD {
        return Err(Skip::Oversized(meta.len()));
    }
    Ok(())
}

fn describe(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "unknown type"
    }
}

/// Opens a registry file for reading without following a symlink and
/// without blocking, whatever was swapped in since it was listed; anything
/// but a regular file is an `InvalidInput` error.
fn open_untrusted(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// Reads a small regular file safely (see [`open_untrusted`]).
fn read_untrusted(path: &Path) -> io::Result<(Vec<u8>, fs::Metadata)> {
    let (file, meta) = open_untrusted(path)?;
    if meta.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes is over the {MAX_RECORD}-byte limit", meta.len()),
        ));
    }
    // Room for the whole file and the end-of-file read: two reads, not a
    // growing buffer's four.
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    file.take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "grew over the size limit",
        ));
    }
    Ok((bytes, meta))
}

#[cfg(test)]
mod tests;
