//! Our own registry entry: claimed atomically, held open and locked for the
//! node's life, kept fresh by touching it.
//!
//! The claim runs under a lock on the directory, so two nodes starting at
//! once under one name never both win: the current holder of the name is
//! judged, a stale entry is removed, and the record is created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, so no link is ever followed and no
//! existing file is reused. The file then stays open (read-only) with a
//! lock on it, which tells other pulse nodes that the name is held, even by
//! a frozen node. The heartbeat is a touch of that open file's modification time: no
//! rewrite, and never a second name of ours in the directory (the recipe's
//! nodes list every entry there).

use std::fs::{self, File, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::entry::open_untrusted;
use super::{MAX_RECORD, Record, shared};
use crate::error::Taken;

/// How long a claim waits for another node's claim in the same directory
/// (which may be judging a holder by pinging it).
const DIR_LOCK_WAIT: Duration = Duration::from_secs(20);

/// Who holds a name we want.
pub(crate) struct Holder {
    /// A running (maybe frozen) pulse node holds the file's lock.
    pub locked: bool,
    /// Its pulse record; `None` for a foreign entry.
    pub record: Option<Record>,
    /// When the file was last modified.
    pub modified: SystemTime,
}

/// Why a claim failed.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// The name is held by a live node (why we think so).
    Taken(Taken),
    /// The registry cannot be used.
    Io(io::Error),
}

impl From<io::Error> for ClaimError {
    fn from(e: io::Error) -> ClaimError {
        ClaimError::Io(e)
    }
}

/// What a heartbeat did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Our file was touched.
    Touched,
    /// Our file was gone (removed by someone, or the directory deleted) and
    /// was made again.
    Recreated,
    /// Another file stands under our name: someone else took it.
    Replaced,
}

/// Our entry, held for the node's life.
#[derive(Debug)]
pub(crate) struct OwnEntry {
    dir: PathBuf,
    path: PathBuf,
    record: Record,
    /// Open and locked while we hold the name.
    file: File,
    id: (u64, u64),
}

impl OwnEntry {
    /// Claims `record.name` in `dir` (made when missing). `judge` is asked
    /// about an existing entry under the name and says why it is still
    /// held, or `None` when it is stale and may be replaced.
    pub(crate) fn claim(
        dir: &Path,
        record: &Record,
        judge: impl FnOnce(&Holder) -> Option<Taken>,
    ) -> Result<OwnEntry, ClaimError> {
        OwnEntry::claim_in(dir, record, judge).map_err(|e| match e {
            ClaimError::Io(e) => ClaimError::Io(io::Error::new(
                e.kind(),
                shared::explain(dir, &e, "--sync-dir"),
            )),
            taken => taken,
        })
    }

    fn claim_in(
        dir: &Path,
        record: &Record,
        judge: impl FnOnce(&Holder) -> Option<Taken>,
    ) -> Result<OwnEntry, ClaimError> {
        shared::create_dir(dir)?;
        check_dir_is_safe(dir)?;
        let _dir_lock = lock_dir(dir)?;
        let path = dir.join(record.name.as_str());
        match path.symlink_metadata() {
            Ok(meta) => {
                if meta.is_file()
                    && let Some(why) = judge(&holder(&path)?)
                {
                    return Err(ClaimError::Taken(why));
                }
                // Stale, or not a file at all: unlinking never follows a link.
                match fs::remove_file(&path) {
                    // In a shared dir only an entry's owner may remove it.
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        return Err(ClaimError::Io(io::Error::new(
                            e.kind(),
                            format!(
                                "{}: the stale entry of an earlier node under our name belongs \
                                 to uid {} and cannot be removed by this user ({e}); remove it \
                                 as that user, or run this node under another name",
                                path.display(),
                                meta.uid()
                            ),
                        )));
                    }
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let file = match create(&path, &record.to_text()) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A writer that takes no lock (the recipe's nodes) got there first.
                return Err(ClaimError::Taken(Taken::WrittenMeanwhile));
            }
            other => other?,
        };
        let meta = file.metadata()?;
        Ok(OwnEntry {
            dir: dir.to_path_buf(),
            path,
            record: record.clone(),
            file,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The heartbeat: touches our file, or makes it again when it is gone.
    pub(crate) fn beat(&mut self, now: SystemTime) -> io::Result<Beat> {
        match self.path.symlink_metadata() {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => {
                self.file.set_modified(now)?;
                Ok(Beat::Touched)
            }
            Ok(_) => Ok(Beat::Replaced),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Any file found under our name was made meanwhile.
                let mut judged = false;
                let again = OwnEntry::claim(&self.dir, &self.record, |_| {
                    judged = true;
                    Some(Taken::WrittenMeanwhile)
                })
                .map_err(|e| match e {
                    ClaimError::Io(e) => e,
                    ClaimError::Taken(_) if judged => {
                        io::Error::new(io::ErrorKind::AlreadyExists, "made meanwhile")
                    }
                    ClaimError::Taken(why) => {
                        io::Error::new(io::ErrorKind::AlreadyExists, why.to_string())
                    }
                })?;
                *self = again;
                Ok(Beat::Recreated)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes our file, if it still is ours, then lets go of its lock.
    pub(crate) fn remove(self) -> io::Result<()> {
        match self.path.symlink_metadata() {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => fs::remove_file(&self.path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Refuses a directory every user may write to without the sticky bit:
/// anyone could remove or replace any node's entry there.
fn check_dir_is_safe(dir: &Path) -> io::Result<()> {
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is writable by every user but has no sticky bit, so anyone could \
                 replace nodes' entries (chmod +t or chmod o-w it)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Locks the directory itself (no file of ours appears in it), waiting for
/// another node's claim to end.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let handle = File::open(dir)?;
    let deadline = Instant::now() + DIR_LOCK_WAIT;
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(handle),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "another node kept {} locked for {} s",
                        dir.display(),
                        DIR_LOCK_WAIT.as_secs()
                    ),
                ));
            }
            // A file system without locks (some network or FUSE ones):
            // claims are then judged without it.
            Err(TryLockError::Error(e)) if locks_unsupported(&e) => return Ok(handle),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Whether a lock failed only because the file system has no locks.
fn locks_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
        )
}

/// Looks at the regular file under a name we want.
fn holder(path: &Path) -> io::Result<Holder> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok());
    let (file, meta) = open_untrusted(path)?;
    let locked = match file.try_lock() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(e)) if locks_unsupported(&e) => false,
        Err(TryLockError::Error(e)) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RECORD).read_to_end(&mut bytes)?;
    let record = name
        .map(|name| Record::from_file(&name, &bytes))
        .filter(|r| !r.is_foreign());
    Ok(Holder {
        locked,
        record,
        modified: meta.modified()?,
    })
}

/// Creates our file (never an existing one, never through a link) and
/// writes the record in one write, then holds it open read-only and locked:
/// a touch needs no write access (we own the file), and an open writable
/// descriptor would keep the file system from being remounted read-only.
/// Runs under the directory lock, so no other claim sees the file unlocked.
fn create(path: &Path, text: &str) -> io::Result<File> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    let made = (meta.dev(), meta.ino());
    if let Err(e) = file.write_all(text.as_bytes()) {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    drop(file);
    let (held, meta) = open_untrusted(path)?;
    if (meta.dev(), meta.ino()) != made {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "our new file was replaced at once",
        ));
    }
    match held.try_lock() {
        Ok(()) => Ok(held),
        Err(TryLockError::Error(e)) if locks_unsupported(&e) => Ok(held),
        Err(TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "our new file is locked by someone else",
        )),
        Err(TryLockError::Error(e)) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}
