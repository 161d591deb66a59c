//! The shared registry directory: one file per node, named after it.
//!
//! Our own record is rewritten every interval through a temporary file and a
//! rename, so readers see the old record or the new one, never half of one.
//! Everything else in the directory is untrusted: a file that is not a
//! regular file, has no valid node name, or holds an unreadable, oversized or
//! garbled record is skipped with one warning (repeated only if the reason
//! changes), and no file type can block a scan.
//!
//! A record, version 1 (keys in any order, unknown keys ignored):
//!
//! ```text
//! pulse 1
//! name a1@127.0.0.1
//! addr 127.0.0.1:40123
//! heartbeat 1795474399123
//! ```
//!
//! A file holding a single word instead (the recipe's Elixir nodes write just
//! a timestamp) is a *bare* entry: it has a heartbeat but no address, so its
//! port is asked of EPMD.

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::name::NodeName;

/// Largest record read; real ones are under 100 bytes.
pub const MAX_RECORD: u64 = 4096;
/// Most directory entries looked at in one scan.
pub const MAX_ENTRIES: usize = 10_000;

mod record;

pub use record::{Record, unix_ms};

/// How long a record's text is trusted while only its heartbeat moves.
///
/// Every node rewrites its record every interval, so reading every file
/// every round would cost each node an open, a read and a close per peer per
/// round. Instead a scan tells a rewrite from the listing alone (a rename
/// brings a new inode) or, for a file rewritten in place, from its
/// modification time, and reads the text again only this long after the
/// last read, or sooner when told to [`Registry::forget`] it.
const REREAD_AFTER: Duration = Duration::from_secs(5);

/// What a scan remembers of a file.
struct Cached {
    ino: u64,
    /// The modification time, once a scan has needed to look at it.
    mtime_ns: Option<i128>,
    record: Record,
    read_at: Instant,
}

fn version_of(ino: u64, mtime_ns: Option<i128>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    (ino, mtime_ns).hash(&mut hasher);
    hasher.finish()
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// A registry directory, and what this node has seen in it.
pub struct Registry {
    dir: PathBuf,
    /// Records by file name.
    cache: HashMap<String, Cached>,
    /// Files skipped, with the reason last warned about.
    warned: HashMap<String, String>,
    dir_missing_warned: bool,
    /// Warnings from scans, for the round to pass on in its report.
    warnings: Vec<String>,
}

impl Registry {
    /// A registry in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Registry {
        Registry {
            dir: dir.into(),
            cache: HashMap::new(),
            warned: HashMap::new(),
            dir_missing_warned: false,
            warnings: Vec::new(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &NodeName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// Writes our record atomically, creating the directory when it is
    /// missing (also when it was deleted under a running node).
    pub fn write(&self, record: &Record) -> io::Result<()> {
        match self.write_once(record) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.dir)?;
                self.write_once(record)
            }
            other => other,
        }
    }

    fn write_once(&self, record: &Record) -> io::Result<()> {
        // A dot-file: scanners skip it silently while it is being written.
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", record.name, std::process::id()));
        let result = File::create(&tmp)
            .and_then(|mut f| f.write_all(record.to_text().as_bytes()))
            .and_then(|()| fs::rename(&tmp, self.path(&record.name)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes a node's file; a file already gone is not an error.
    pub fn remove(&self, name: &NodeName) -> io::Result<()> {
        match fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads one node's record, if it has a valid one.
    pub fn read(&self, name: &NodeName) -> Option<Record> {
        let (text, _) = read_untrusted(&self.path(name)).ok()?;
        Record::parse(name, &text).ok()
    }

    /// Lists every valid record, sorted by name. Bad entries are skipped with
    /// one warning each, kept for [`Registry::take_warnings`].
    pub fn scan(&mut self) -> Vec<Record> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => {
                self.dir_missing_warned = false;
                entries
            }
            Err(e) => {
                if !self.dir_missing_warned {
                    self.warnings
                        .push(format!("registry: cannot list {}: {e}", self.dir.display()));
                    self.dir_missing_warned = true;
                }
                self.cache.clear();
                return Vec::new();
            }
        };
        let mut seen_bad = HashMap::new();
        let mut cache = HashMap::new();
        let mut records = Vec::new();
        for entry in entries.flatten().take(MAX_ENTRIES) {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') {
                continue;
            }
            match self.look_at(&entry, &file_name) {
                Ok(cached) => {
                    records.push(cached.record.clone());
                    cache.insert(file_name, cached);
                }
                // Gone between the listing and the look: not worth a word.
                Err(why) if why.is_empty() => {}
                Err(why) => {
                    if self.warned.get(&file_name) != Some(&why) {
                        self.warnings.push(format!(
                            "registry: skipping '{}': {why}",
                            file_name.escape_debug()
                        ));
                    }
                    seen_bad.insert(file_name, why);
                }
            }
        }
        self.cache = cache;
        self.warned = seen_bad;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// The warnings of the scans since the last call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Forgets what it read of a node's file, so the next scan reads it
    /// again (its node did not answer: it may have restarted elsewhere).
    pub fn forget(&mut self, name: &NodeName) {
        self.cache.remove(name.as_str());
    }

    /// One directory entry: its record, or why it is skipped (empty when it
    /// vanished meanwhile).
    fn look_at(&self, entry: &fs::DirEntry, file_name: &str) -> Result<Cached, String> {
        let name: NodeName = file_name
            .parse()
            .map_err(|_| "not a node name".to_string())?;
        // The listing gives the type and the inode without a system call.
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(String::new()),
            Err(e) => return Err(format!("cannot stat: {e}")),
        };
        if !kind.is_file() {
            return Err(format!("not a regular file ({})", describe(&kind)));
        }
        let ino = entry.ino();
        let fresh = self
            .cache
            .get(file_name)
            .filter(|c| c.read_at.elapsed() < REREAD_AFTER);
        if let Some(old) = fresh {
            let (mtime, version) = if old.ino != ino {
                // Replaced by a rename, as pulse writes: the heartbeat moved.
                (None, version_of(ino, None))
            } else {
                // The same file: moved only if rewritten in place.
                let now = match entry.path().symlink_metadata() {
                    Ok(meta) => mtime_ns(&meta),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(String::new()),
                    Err(e) => return Err(format!("cannot stat: {e}")),
                };
                match old.mtime_ns {
                    Some(seen) if seen != now => (Some(now), version_of(ino, Some(now))),
                    _ => (Some(now), old.record.version),
                }
            };
            let record = Record {
                version,
                ..old.record.clone()
            };
            return Ok(Cached {
                ino,
                mtime_ns: mtime,
                record,
                read_at: old.read_at,
            });
        }
        let (text, meta) = match read_untrusted(&entry.path()) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(String::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mtime = mtime_ns(&meta);
        let version = version_of(meta.ino(), Some(mtime));
        let record = Record {
            version,
            ..Record::parse(&name, &text)?
        };
        Ok(Cached {
            ino: meta.ino(),
            mtime_ns: Some(mtime),
            record,
            read_at: Instant::now(),
        })
    }
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

/// Reads a small regular file without following a symlink and without
/// blocking, whatever was swapped in since it was listed.
fn read_untrusted(path: &Path) -> io::Result<(String, fs::Metadata)> {
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
    if meta.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "record of {} bytes is over the {MAX_RECORD}-byte limit",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "record grew over the size limit",
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "record is not UTF-8"))?;
    Ok((text, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::SystemTime;

    fn name(s: &str) -> NodeName {
        s.parse().expect("valid name")
    }

    fn record(n: &str, port: u16, hb: u64) -> Record {
        Record {
            name: name(n),
            addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            heartbeat: hb.to_string(),
            version: 0,
        }
    }

    /// Records as a scan gives them, without their versions.
    fn scanned(reg: &mut Registry) -> Vec<Record> {
        reg.scan()
            .into_iter()
            .map(|r| Record { version: 0, ..r })
            .collect()
    }

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("pulse-reg-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn write_recreates_a_deleted_dir_and_scan_sees_it() {
        let tmp = TempDir::new("write");
        let mut reg = Registry::new(tmp.0.join("sub"));
        assert!(reg.scan().is_empty());
        reg.write(&record("b@127.0.0.1", 2, 1)).expect("write");
        reg.write(&record("a@127.0.0.1", 1, 1)).expect("write");
        let names: Vec<_> = reg.scan().into_iter().map(|r| r.name.to_string()).collect();
        assert_eq!(names, ["a@127.0.0.1", "b@127.0.0.1"]);
        fs::remove_dir_all(tmp.0.join("sub")).expect("delete");
        // Told to forget it, the scan reads the new text at once.
        reg.write(&record("a@127.0.0.1", 10, 2))
            .expect("write again");
        reg.forget(&name("a@127.0.0.1"));
        assert_eq!(scanned(&mut reg), vec![record("a@127.0.0.1", 10, 2)]);
        reg.remove(&name("a@127.0.0.1")).expect("remove");
        reg.remove(&name("a@127.0.0.1")).expect("remove twice");
        assert!(reg.scan().is_empty());
    }

    #[test]
    fn a_rewrite_in_place_moves_the_version() {
        let tmp = TempDir::new("inplace");
        let mut reg = Registry::new(&tmp.0);
        let path = tmp.0.join("e@127.0.0.1");
        fs::create_dir_all(&tmp.0).expect("dir");
        fs::write(&path, "100").expect("write");
        let first = reg.scan()[0].version;
        // Looked at again, unchanged: the same version.
        assert_eq!(reg.scan()[0].version, first);
        assert_eq!(reg.scan()[0].version, first);
        // Rewritten in place (same inode, as the recipe's nodes do), with a
        // modification time that surely differs.
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_modified(SystemTime::now() + Duration::from_secs(10))
            .expect("touch");
        assert_ne!(reg.scan()[0].version, first);
    }

    #[test]
    fn a_rename_rewrite_moves_the_version_without_a_read() {
        let tmp = TempDir::new("version");
        let mut reg = Registry::new(&tmp.0);
        reg.write(&record("a@127.0.0.1", 1, 1)).expect("write");
        let first = reg.scan();
        reg.write(&record("a@127.0.0.1", 1, 2)).expect("rewrite");
        let second = reg.scan();
        assert_ne!(first[0].version, second[0].version);
        // The text is trusted for REREAD_AFTER while only the heartbeat moves.
        assert_eq!(second[0].heartbeat, "1");
        // Unchanged file, unchanged version.
        assert_eq!(reg.scan()[0].version, second[0].version);
    }

    #[test]
    fn hostile_entries_are_skipped() {
        let tmp = TempDir::new("hostile");
        let dir = &tmp.0;
        let mut reg = Registry::new(dir);
        reg.write(&record("good@127.0.0.1", 1, 1)).expect("write");
        fs::write(dir.join("not-a-name"), "x").expect("write");
        fs::write(dir.join("big@127.0.0.1"), vec![b'1'; 10_000]).expect("write");
        fs::write(dir.join("bin@127.0.0.1"), [0xff, 0xfe, 0]).expect("write");
        fs::write(dir.join("garbled@127.0.0.1"), "pulse 1\nname nope\n").expect("write");
        fs::create_dir(dir.join("dir@127.0.0.1")).expect("dir");
        std::os::unix::fs::symlink("/dev/zero", dir.join("link@127.0.0.1")).expect("symlink");
        let fifo = dir.join("fifo@127.0.0.1");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success());
        assert_eq!(made.ok(), Some(true), "mkfifo");
        // Twice: the second scan uses the cache for the good one.
        for _ in 0..2 {
            let names: Vec<_> = reg.scan().into_iter().map(|r| r.name.to_string()).collect();
            assert_eq!(names, ["good@127.0.0.1"]);
        }
        assert_eq!(reg.warned.len(), 7, "{:?}", reg.warned);
        // One warning each, over both scans, handed to the round.
        assert_eq!(reg.take_warnings().len(), 7);
        assert!(reg.take_warnings().is_empty());
        // A FIFO swapped in under a valid name is not opened for reading.
        assert!(read_untrusted(&fifo).is_err());
    }
}
