//! The log: every line to the console and appended to the shared log file.
//!
//! Many nodes append to one file, so each line must reach it in a single
//! `write` to a file opened with `O_APPEND`; the kernel then never tears or
//! interleaves lines. simplelog writes a line in several pieces, so each sink
//! is wrapped in [`WholeLines`], which holds the pieces until the newline.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use simplelog::{
    CombinedLogger, ConfigBuilder, LevelFilter, LevelPadding, SharedLogger, WriteLogger,
    format_description,
};

/// Passes on only whole lines, each with one `write_all`.
pub struct WholeLines<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> WholeLines<W> {
    /// Wraps a sink.
    pub fn new(inner: W) -> Self {
        WholeLines {
            inner,
            pending: Vec::with_capacity(256),
        }
    }
}

impl<W: Write> Write for WholeLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') {
            let result = self.inner.write_all(&self.pending[..=last]);
            self.pending.drain(..=last);
            result?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sets up logging to stdout and to `log_file` (its directory is created).
/// Lines read `22:53:19.123 [INFO] message`, in local time where the zone
/// can be known, else UTC.
pub fn init(log_file: &Path) -> Result<(), String> {
    // `-`: stdout only, for orchestrators that collect it (no shared file
    // across hosts).
    let file = if log_file == Path::new("-") {
        None
    } else {
        if let Some(dir) = log_file.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .map_err(|e| format!("cannot open log file {}: {e}", log_file.display()))?;
        Some(file)
    };
    let mut builder = ConfigBuilder::new();
    builder
        .set_time_format_custom(format_description!(
            "[hour]:[minute]:[second].[subsecond digits:3]"
        ))
        .set_level_padding(LevelPadding::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .set_time_level(LevelFilter::Error);
    // Only possible while the process has one thread, which it has here.
    let _ = builder.set_time_offset_to_local();
    let config = builder.build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![WriteLogger::new(
        LevelFilter::Info,
        config.clone(),
        WholeLines::new(io::stdout()),
    )];
    if let Some(file) = file {
        loggers.push(WriteLogger::new(
            LevelFilter::Info,
            config,
            WholeLines::new(file),
        ));
    }
    CombinedLogger::init(loggers).map_err(|e| format!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each write it gets.
    struct Writes(Vec<Vec<u8>>);
    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn pieces_become_one_write_per_line() {
        let mut w = WholeLines::new(Writes(Vec::new()));
        for piece in [
            "12:00:00.000 ",
            "[INFO] ",
            "hello",
            "\n",
            "second",
            " line\n",
        ] {
            w.write_all(piece.as_bytes()).expect("write");
        }
        assert_eq!(
            w.inner.0,
            vec![
                b"12:00:00.000 [INFO] hello\n".to_vec(),
                b"second line\n".to_vec()
            ]
        );
    }
}
