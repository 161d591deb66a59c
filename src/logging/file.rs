//! The shared log file: whole lines only, reopened when it is rotated or
//! deleted, and silent about nothing when the disk is full.
//!
//! Many nodes append to one file, so each line reaches it in a single
//! `write` on an `O_APPEND` descriptor; the kernel then never interleaves
//! lines. A full disk could still cut a line short (a short write), so a
//! line is written only when the file system has room for all of it, and a
//! line that does not fit is dropped, counted and said on stderr once.
//!
//! So each line costs a `stat` of the path (a rotation) and an `fstatvfs`
//! (the room) besides its `write`: about 3.5 µs of system time, a status
//! line a round, under 0.3% of a node's CPU per round at 11 nodes (1.2 ms).
//! Without them a round's instructions and wake-ups were the same within
//! the noise (callgrind: within 1%, 11 and 50 nodes at 1 s), so they are
//! not worth saving.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::registry::shared;

/// What happened to a line, for the console to hear about.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// The line is in the file.
    Written,
    /// The line is not; the first line of a streak of failures carries why.
    Dropped(Option<String>),
    /// The line is in the file, after a streak of this many dropped ones.
    Recovered(u64),
}

/// The log file, by path and by the descriptor open on it.
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<File>,
    /// Device and inode of the open file, to notice a rotation.
    id: (u64, u64),
    /// Lines dropped since the last one written.
    dropped: u64,
    /// Whether we are root, who may use the blocks reserved for it; asked
    /// once rather than before every line.
    root: bool,
}

impl LogFile {
    /// Opens (creating) the log file, and its directory when missing.
    pub(crate) fn open(path: &Path) -> Result<LogFile, String> {
        create_dir(path).map_err(|e| {
            format!(
                "cannot create log directory {}",
                shared::explain(parent(path), &e, "--log-file")
            )
        })?;
        let mut log = LogFile {
            path: path.to_path_buf(),
            file: None,
            id: (0, 0),
            dropped: 0,
            root: is_root(),
        };
        log.reopen().map_err(|e| {
            format!(
                "cannot open log file {}",
                shared::explain(path, &e, "--log-file")
            )
        })?;
        Ok(log)
    }

    /// Opens the file at its path, creating it, and its directory when
    /// that was removed too.
    fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        // Non-blocking, so a log that is a FIFO or a pipe whose reader
        // stalls drops lines instead of stopping the round thread that
        // writes them (a regular file ignores the flag).
        let append = || {
            OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
        };
        // A file we make is for every user's nodes, as its dir is.
        let open = || match append() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .mode(0o666)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&self.path)
                {
                    Ok(file) => {
                        // Past the umask; a file system without modes keeps its own.
                        let _ = file.set_permissions(fs::Permissions::from_mode(0o666));
                        Ok(file)
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => append(),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dir(&self.path)?;
                open()?
            }
            other => other?,
        };
        let meta = file.metadata()?;
        self.id = (meta.dev(), meta.ino());
        self.file = Some(file);
        Ok(())
    }

    /// Whether the path still names the file we have open. A rotated or
    /// deleted log (someone's `tail -F` follows the path) is reopened.
    fn is_current(&self) -> bool {
        self.file.is_some() && fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// Appends one whole line (ending in a newline) with one `write`, or
    /// drops it.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> Note {
        match self.try_write(line) {
            Ok(()) => match std::mem::take(&mut self.dropped) {
                0 => Note::Written,
                n => Note::Recovered(n),
            },
            Err(why) => {
                self.dropped += 1;
                Note::Dropped((self.dropped == 1).then(|| {
                    format!(
                        "cannot write to the log file {}: {why}",
                        self.path.display()
                    )
                }))
            }
        }
    }

    fn try_write(&mut self, line: &[u8]) -> Result<(), String> {
        if !self.is_current() {
            self.reopen()
                .map_err(|e| format!("cannot reopen it: {e}"))?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err("not open".into());
        };
        if free_bytes(file, self.root).is_some_and(|free| free < line.len() as u64) {
            return Err("no space left on device; lines are dropped until it has room".into());
        }
        match file.write(line) {
            Ok(n) if n == line.len() => Ok(()),
            Ok(n) => Err(format!(
                "a short write: {n} of {} bytes (another writer took the last space)",
                line.len()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The directory of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn create_dir(path: &Path) -> io::Result<()> {
    shared::create_dir(parent(path))
}

/// Whether this process runs as root.
#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Bytes this process may still write to the file system holding `file`
/// (`root` may use the blocks reserved for it); None when unknown.
// std has no statvfs: one libc call, on a descriptor we own, into a zeroed
// struct the kernel fills.
#[allow(unsafe_code)]
fn free_bytes(file: &File, root: bool) -> Option<u64> {
    // SAFETY: `stat` is a plain C struct for which all zeroes is valid, the
    // descriptor is open for the whole call, and the kernel writes only into
    // `stat`.
    let (rc, stat) = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        let rc = libc::fstatvfs(file.as_raw_fd(), &mut stat);
        (rc, stat)
    };
    // A file system that reports no size at all (some pseudo and network
    // ones) says nothing about its room: the write decides.
    if rc != 0 || stat.f_blocks == 0 {
        return None;
    }
    let blocks = if root { stat.f_bfree } else { stat.f_bavail };
    #[allow(clippy::unnecessary_cast)] // the field types differ between libcs
    Some((blocks as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pulse-logfile-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("log").join("cluster.log")
    }

    #[test]
    fn a_deleted_or_rotated_file_is_reopened() {
        let path = temp_path("rotate");
        let mut log = LogFile::open(&path).expect("open");
        assert_eq!(log.write_line(b"one\n"), Note::Written);
        fs::rename(&path, path.with_extension("log.1")).expect("rotate");
        assert_eq!(log.write_line(b"two\n"), Note::Written);
        assert_eq!(fs::read_to_string(&path).expect("read"), "two\n");
        fs::remove_file(&path).expect("delete");
        assert_eq!(log.write_line(b"three\n"), Note::Written);
        assert_eq!(fs::read_to_string(&path).expect("read"), "three\n");
        let rotated = fs::read_to_string(path.with_extension("log.1")).expect("read");
        assert_eq!(rotated, "one\n");
        let _ = fs::remove_dir_all(path.parent().and_then(Path::parent).expect("dir"));
    }

    #[test]
    fn a_removed_log_directory_is_created_again() {
        let path = temp_path("gone");
        let mut log = LogFile::open(&path).expect("open");
        let dir = path.parent().expect("dir");
        fs::remove_dir_all(dir).expect("remove dir");
        assert_eq!(log.write_line(b"a\n"), Note::Written);
        assert_eq!(fs::read_to_string(&path).expect("read"), "a\n");
        let _ = fs::remove_dir_all(dir.parent().expect("dir"));
    }

    #[test]
    fn a_file_that_cannot_be_reopened_drops_lines_and_says_why_once() {
        let path = temp_path("blocked");
        let mut log = LogFile::open(&path).expect("open");
        let dir = path.parent().expect("dir");
        fs::remove_dir_all(dir).expect("remove dir");
        // A plain file where the directory was: nothing can be created there.
        fs::write(dir, "x").expect("file in the way");
        let first = log.write_line(b"a\n");
        let said = matches!(&first, Note::Dropped(Some(why)) if why.contains("cannot reopen"));
        assert!(said, "{first:?}");
        assert_eq!(log.write_line(b"b\n"), Note::Dropped(None));
        fs::remove_file(dir).expect("out of the way");
        assert_eq!(log.write_line(b"c\n"), Note::Recovered(2));
        assert_eq!(fs::read_to_string(&path).expect("read"), "c\n");
        let _ = fs::remove_dir_all(dir.parent().expect("dir"));
    }

    #[test]
    fn a_log_it_makes_is_for_every_users_nodes() {
        let path = temp_path("shared");
        let _log = LogFile::open(&path).expect("open");
        let mode = |p: &Path| fs::metadata(p).expect("made").permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o666);
        assert_eq!(mode(parent(&path)), shared::SHARED_MODE);
        let _ = fs::remove_dir_all(path.parent().and_then(Path::parent).expect("dir"));
    }

    #[test]
    fn free_space_is_known_for_a_real_file() {
        let path = temp_path("free");
        let log = LogFile::open(&path).expect("open");
        assert!(
            log.file
                .as_ref()
                .and_then(|f| free_bytes(f, false))
                .is_some()
        );
        let _ = fs::remove_dir_all(path.parent().and_then(Path::parent).expect("dir"));
    }
}
