//! Following the shared log by offset: the first read takes only the file's
//! last [`MAX_READ`] bytes, later reads only what was appended since. A file
//! that shrank (truncated) or was replaced (rotated: a new inode at the
//! path) is read again from its tail. Lines longer than [`MAX_LINE`] are
//! dropped whole.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::SystemTime;

/// Most bytes read at once: the first frame's window, and the most a frame
/// catches up on (older bytes are skipped).
pub(super) const MAX_READ: u64 = 4 << 20;
/// Longest line kept.
pub(super) const MAX_LINE: usize = 64 << 10;

/// A log file followed by offset.
pub(crate) struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// Device and inode of the open file, to notice a rotation.
    id: (u64, u64),
    offset: u64,
    /// The start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// Drop bytes up to the next newline: we started inside a line.
    skip_to_newline: bool,
    modified: Option<SystemTime>,
}

impl Tail {
    /// Follows `path`; nothing is opened until the first [`Tail::read`].
    pub(crate) fn new(path: impl Into<PathBuf>) -> Tail {
        Tail {
            path: path.into(),
            file: None,
            id: (0, 0),
            offset: 0,
            partial: Vec::new(),
            skip_to_newline: false,
            modified: None,
        }
    }

    /// When the file was last written, as of the last read.
    pub(crate) fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    /// The complete lines appended since the last call (on the first call,
    /// those in the file's last [`MAX_READ`] bytes), as text with any
    /// invalid UTF-8 replaced.
    pub(crate) fn read(&mut self) -> io::Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path)?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let id = (meta.dev(), meta.ino());
        if self.file.is_none() || id != self.id {
            self.open(id)?;
            self.start_at(meta.len().saturating_sub(MAX_READ));
        } else if meta.len() < self.offset {
            // Truncated: whatever is there now was written since.
            self.start_at(meta.len().saturating_sub(MAX_READ));
        } else if meta.len() - self.offset > MAX_READ {
            self.start_at(meta.len() - MAX_READ);
        }
        self.modified = meta.modified().ok();
        let bytes = self.read_to(&meta)?;
        Ok(self.split_lines(&bytes))
    }

    fn open(&mut self, id: (u64, u64)) -> io::Result<()> {
        // O_NONBLOCK: a FIFO swapped in at the path must not block us.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)?;
        self.file = Some(file);
        self.id = id;
        Ok(())
    }

    fn start_at(&mut self, offset: u64) {
        self.offset = offset;
        self.partial.clear();
        self.skip_to_newline = offset > 0;
    }

    fn read_to(&mut self, meta: &Metadata) -> io::Result<Vec<u8>> {
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let want = meta.len().saturating_sub(self.offset);
        let mut bytes = Vec::with_capacity(want.min(MAX_READ) as usize);
        file.seek(SeekFrom::Start(self.offset))?;
        file.take(want).read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }

    fn split_lines(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let piece = &bytes[..end];
            bytes = &bytes[end + 1..];
            if self.skip_to_newline {
                self.skip_to_newline = false;
                self.partial.clear();
                continue;
            }
            if self.partial.len() + piece.len() <= MAX_LINE {
                self.partial.extend_from_slice(piece);
                lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            }
            self.partial.clear();
        }
        if !self.skip_to_newline {
            if self.partial.len() + bytes.len() > MAX_LINE {
                self.partial.clear();
                self.skip_to_newline = true;
            } else {
                self.partial.extend_from_slice(bytes);
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct TempFile(PathBuf);
    impl TempFile {
        fn new(tag: &str) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("pulse-tail-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, "").expect("create");
            TempFile(path)
        }
        fn append(&self, text: &[u8]) {
            let mut f = OpenOptions::new().append(true).open(&self.0).expect("open");
            f.write_all(text).expect("append");
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn follows_appends_and_holds_partial_lines() {
        let f = TempFile::new("follow");
        f.append(b"one\ntw");
        let mut tail = Tail::new(&f.0);
        assert_eq!(tail.read().expect("read"), ["one"]);
        f.append(b"o\nthree\n");
        assert_eq!(tail.read().expect("read"), ["two", "three"]);
        assert!(tail.read().expect("read").is_empty());
        assert!(tail.modified().is_some());
    }

    #[test]
    fn truncation_and_rotation_start_over() {
        let f = TempFile::new("rotate");
        f.append(b"a long first line\nsecond\n");
        let mut tail = Tail::new(&f.0);
        assert_eq!(tail.read().expect("read").len(), 2);
        std::fs::write(&f.0, "new\n").expect("truncate");
        assert_eq!(tail.read().expect("read"), ["new"]);
        let moved = f.0.with_extension("old");
        std::fs::rename(&f.0, &moved).expect("rotate");
        std::fs::write(&f.0, "rotated\n").expect("new file");
        assert_eq!(tail.read().expect("read"), ["rotated"]);
        let _ = std::fs::remove_file(moved);
    }

    #[test]
    fn a_big_file_is_read_from_its_tail_and_long_lines_are_dropped() {
        let f = TempFile::new("big");
        let line = vec![b'x'; 999];
        let mut chunk = Vec::new();
        for _ in 0..(MAX_READ as usize / 1000 + 100) {
            chunk.extend_from_slice(&line);
            chunk.push(b'\n');
        }
        f.append(&chunk);
        f.append(b"last\n");
        let mut tail = Tail::new(&f.0);
        let lines = tail.read().expect("read");
        // The window holds "last" and whole lines before it; the line it
        // starts inside is dropped.
        assert_eq!(lines.len(), (MAX_READ as usize - 5) / 1000 + 1);
        assert_eq!(lines.last().map(String::as_str), Some("last"));
        assert!(lines[..lines.len() - 1].iter().all(|l| l.len() == 999));
        let huge = vec![b'y'; MAX_LINE + 10];
        f.append(&huge);
        assert!(tail.read().expect("read").is_empty());
        f.append(b"yyy\nafter\n");
        assert_eq!(tail.read().expect("read"), ["after"]);
    }

    #[test]
    fn a_missing_file_or_directory_is_an_error() {
        let mut tail = Tail::new(std::env::temp_dir());
        assert!(tail.read().is_err());
        let mut tail = Tail::new(std::env::temp_dir().join("pulse-no-such-dir/cluster.log"));
        assert!(tail.read().is_err());
    }
}
