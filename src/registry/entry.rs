//! One directory entry, looked at as untrusted input: what kind of file it
//! is, whether its heartbeat moved (inode, modification time, size), and
//! its text, read without following links and within [`MAX_RECORD`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use log::debug;

use super::{MAX_RECORD, Record, Skip};
use crate::name::NodeName;

/// How long an entry's text is trusted while only its heartbeat moves.
///
/// A live pulse node touches its record every interval without rewriting
/// it, and the text of a foreign entry does not matter, so reading every
/// file every round would cost each node an open, a read and a close per
/// peer per round for nothing. A record that changed without a new inode
/// or size (a restart that got the old inode back) shows first as a failed
/// ping, and a failed ping has it read again at once; this is only the
/// last resort, so it is long: at 150 nodes, 5 s cost 30 reads a round.
pub(super) const REREAD_AFTER: Duration = Duration::from_secs(60);

/// What one directory entry turned out to be.
pub(super) enum Look {
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
pub(super) struct Cached {
    pub(super) ino: u64,
    pub(super) len: u64,
    pub(super) record: Record,
    /// When its text was read; `None` once forgotten: read at the next look.
    pub(super) read_at: Option<Instant>,
    /// The scan that last found it; the others drop it.
    pub(super) found_in: u64,
}

/// A file's version (see [`mix_version`]).
pub(super) fn version_of(meta: &fs::Metadata) -> u64 {
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
pub(super) fn mix_version(ino: u64, mtime_ns: u64, len: u64) -> u64 {
    [ino, mtime_ns, len]
        .into_iter()
        .fold(0x243F_6A88_85A3_08D3, |h, v| {
            (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31)
        })
}

/// The modification time in Unix milliseconds; 0 before the epoch or
/// beyond 64 bits.
pub(super) fn mtime_ms(meta: &fs::Metadata) -> u64 {
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

/// One directory entry of `dir` under a node's name; `known` is what the
/// last scans found there.
pub(super) fn look_at(
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
pub(super) fn check_entry(meta: &fs::Metadata) -> Result<(), Skip> {
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

pub(super) fn describe(kind: &fs::FileType) -> &'static str {
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
pub(super) fn open_untrusted(path: &Path) -> io::Result<(File, fs::Metadata)> {
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
pub(super) fn read_untrusted(path: &Path) -> io::Result<(Vec<u8>, fs::Metadata)> {
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
