//! The log: every line to the console and appended to the shared log file,
//! in the format of Elixir's Logger (`22:53:19.123 [info] message`), so a log
//! shared with the recipe's Elixir nodes reads as one.
//!
//! Every line passes [`format_line`], which escapes control characters and
//! bounds the length, so nothing a peer or the registry says can forge a
//! line or drive a terminal. The file gets each line synchronously and
//! whole ([`file`]); the console gets it through a queue that never waits
//! ([`console`]), so a console nobody reads delays no heartbeat, ping or
//! leave.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};
use time::{OffsetDateTime, UtcOffset};

pub mod console;
pub mod file;
pub mod text;

use console::{Console, Stream};
use file::{LogFile, Note};

/// Longest message in one line. A status line lists every node (about 30
/// bytes each), so this allows some two thousand nodes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The local time zone, found once while the process has one thread (the
/// only time it can be known safely); UTC when it cannot.
static OFFSET: OnceLock<UtcOffset> = OnceLock::new();

/// The level as Elixir's Logger writes it.
fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug | Level::Trace => "debug",
    }
}

/// One log line, newline included: the time of day, the level and the
/// message with control characters escaped and its length bounded.
pub fn format_line(level: Level, message: &str) -> String {
    let now = OffsetDateTime::now_utc().to_offset(*OFFSET.get().unwrap_or(&UtcOffset::UTC));
    // `HH:MM:SS.mmm [level] ` is at most 23 bytes; an escape or the cut's
    // note may take more, rarely.
    let mut line = String::with_capacity(message.len().min(MAX_MESSAGE) + 24);
    push_digits(&mut line, u32::from(now.hour()), 2);
    line.push(':');
    push_digits(&mut line, u32::from(now.minute()), 2);
    line.push(':');
    push_digits(&mut line, u32::from(now.second()), 2);
    line.push('.');
    push_digits(&mut line, u32::from(now.millisecond()), 3);
    line.push_str(" [");
    line.push_str(level_word(level));
    line.push_str("] ");
    text::push_escaped(&mut line, message, MAX_MESSAGE);
    line.push('\n');
    line
}

/// Appends the last `width` decimal digits of `n`, zero-padded.
fn push_digits(line: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        line.push(char::from(b'0' + digit as u8));
    }
}

/// The `log` backend: the file and the console.
struct Logger {
    /// None when the log goes to the console only (`-` as the file).
    file: Option<Mutex<LogFile>>,
    console: Console,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record.level(), &record.args().to_string());
        let note = match self.file.as_ref().map(Mutex::lock) {
            Some(Ok(mut file)) => file.write_line(line.as_bytes()),
            _ => Note::Written,
        };
        match note {
            Note::Written | Note::Dropped(None) => {}
            Note::Dropped(Some(why)) => self
                .console
                .offer(Stream::Stderr, format!("pulse: {why}\n")),
            Note::Recovered(n) => {
                let back =
                    format!("the log file takes lines again: {n} lines were not written to it");
                self.console
                    .offer(Stream::Stderr, format!("pulse: {back}\n"));
                if let Some(Ok(mut file)) = self.file.as_ref().map(Mutex::lock) {
                    file.write_line(format_line(Level::Warn, &back).as_bytes());
                }
            }
        }
        // Errors (the node cannot start or go on) go where errors are looked
        // for; the file has them too.
        let stream = if record.level() == Level::Error {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        self.console.offer(stream, line);
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging to stdout and to `log_file` (its directory is created;
/// `-` means stdout only). Call it while the process has one thread, so the
/// local time zone can be read.
pub fn init(log_file: &Path) -> Result<(), String> {
    let file = if log_file == Path::new("-") {
        None
    } else {
        Some(Mutex::new(LogFile::open(log_file)?))
    };
    let _ = OFFSET.set(UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC));
    let console = Console::start().map_err(|e| format!("cannot start the console thread: {e}"))?;
    let logger = LOGGER.get_or_init(|| Logger { file, console });
    log::set_logger(logger).map_err(|e| format!("cannot set up logging: {e}"))?;
    log::set_max_level(LevelFilter::Info);
    Ok(())
}

/// Gives the console up to `timeout` to write what is queued, before the
/// process exits. A console nobody reads loses those lines; the file has them.
pub fn finish(timeout: Duration) {
    if let Some(logger) = LOGGER.get() {
        logger.console.drain(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_like_elixirs_logger_and_cannot_be_forged() {
        let line = format_line(
            Level::Warn,
            "rejected x\n00:00:00.000 [info] forged\u{1b}[2J",
        );
        let (time, rest) = line.split_once(' ').expect("time");
        assert_eq!(time.len(), 12, "{line}");
        assert_eq!(
            rest,
            "[warning] rejected x\\n00:00:00.000 [info] forged\\e[2J\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert!(format_line(Level::Info, "hi").ends_with(" [info] hi\n"));
        let long = format_line(Level::Info, &"x".repeat(MAX_MESSAGE * 2));
        assert!(long.len() < MAX_MESSAGE + 100, "{}", long.len());
    }
}
