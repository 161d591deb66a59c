//! The log: three streams, one `log` backend.
//!
//! * The shared log file gets every line in the format of Elixir's Logger
//!   (`22:53:19.123 [info] message`), so a log shared with the recipe's
//!   Elixir nodes reads as one, and `pulse watch` can follow it.
//! * stdout gets the status and event lines, the reporter's
//!   ([`REPORTER`]), in the same format: what the recipe's nodes print.
//! * stderr gets the node's own diagnostics (start-up, configuration, EPMD
//!   state, hostile-input warnings), formatted by `simplelog`
//!   (`22:53:19.123 [WARN] message`), so a pipe that reads stdout sees the
//!   recipe's lines only.
//!
//! Every message passes [`text::push_escaped`] first, which escapes control
//! characters and bounds the length, so nothing a peer or the registry says
//! can forge a line or drive a terminal. The file gets each line
//! synchronously and whole ([`file`]); the console gets it through a queue
//! that never waits ([`console`]), so a console nobody reads delays no
//! heartbeat, ping or leave.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};
use simplelog::{ConfigBuilder, LevelPadding, WriteLogger, format_description};
use time::{OffsetDateTime, UtcOffset};

pub(crate) mod console;
pub(crate) mod file;
pub(crate) mod text;

use console::{Console, Lines, Stream};
use file::{LogFile, Note};

/// Longest message in one line. A status line lists every node (about 30
/// bytes each), so this allows some two thousand nodes.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// The target of the reporter's records (`node::report`): the status and
/// event lines, which go to stdout. Every other record is a diagnostic.
pub(crate) const REPORTER: &str = "pulse::node::report";

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
pub(crate) fn format_line(level: Level, message: &str) -> String {
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

/// The `log` backend: the file, stdout and (through `simplelog`) stderr.
struct Logger {
    /// None when the log goes to the console only (`-` as the file).
    file: Option<Mutex<LogFile>>,
    console: Console,
    /// Formats diagnostics onto stderr's queue.
    diagnostics: Box<WriteLogger<Lines>>,
}

impl Logger {
    /// Appends `line` to the file, and says on stderr when the file stops
    /// or starts taking lines.
    fn write_file(&self, line: &str) {
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
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let line = format_line(record.level(), &message);
        self.write_file(&line);
        if record.target() == REPORTER {
            self.console.offer(Stream::Stdout, line);
        } else {
            let mut escaped = String::with_capacity(message.len().min(MAX_MESSAGE));
            text::push_escaped(&mut escaped, &message, MAX_MESSAGE);
            self.diagnostics.log(
                &Record::builder()
                    .level(record.level())
                    .target(record.target())
                    .args(format_args!("{escaped}"))
                    .build(),
            );
        }
    }

    fn flush(&self) {}
}

/// `simplelog` writing diagnostics to stderr's queue: the time of day as
/// the file has it (local zone, milliseconds), the level, the message.
fn diagnostics(console: Console, offset: UtcOffset) -> Box<WriteLogger<Lines>> {
    let config = ConfigBuilder::new()
        .set_time_format_custom(format_description!(
            "[hour]:[minute]:[second].[subsecond digits:3]"
        ))
        .set_time_offset(offset)
        .set_level_padding(LevelPadding::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    WriteLogger::new(
        LevelFilter::Info,
        config,
        Lines::new(console, Stream::Stderr),
    )
}

/// Why [`init`] could not set up logging.
#[derive(Debug)]
pub enum LogError {
    /// The log file or its directory cannot be created or opened (where, and why).
    File(String),
    /// The thread that writes to the console cannot be started.
    Console(std::io::Error),
    /// Another logger is already installed in this process.
    Logger(log::SetLoggerError),
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::File(why) => write!(f, "{why}"),
            LogError::Console(e) => write!(f, "cannot start the console thread: {e}"),
            LogError::Logger(e) => write!(f, "cannot set up logging: {e}"),
        }
    }
}

impl std::error::Error for LogError {}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging to the console and to `log_file` (its directory is
/// created; `-` means the console only). Call it while the process has one thread, so the
/// local time zone can be read.
pub fn init(log_file: &Path) -> Result<(), LogError> {
    let file = if log_file == Path::new("-") {
        None
    } else {
        Some(Mutex::new(LogFile::open(log_file).map_err(LogError::File)?))
    };
    let offset =
        *OFFSET.get_or_init(|| UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC));
    let console = Console::start().map_err(LogError::Console)?;
    let diagnostics = diagnostics(console.clone(), offset);
    let logger = LOGGER.get_or_init(|| Logger {
        file,
        console,
        diagnostics,
    });
    log::set_logger(logger).map_err(LogError::Logger)?;
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
    use std::io::{self, Write};
    use std::sync::Arc;

    /// A writer that keeps what it got.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("kept").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Kept {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("kept").clone()).expect("utf8")
        }
    }

    #[test]
    fn status_lines_go_to_stdout_and_diagnostics_to_stderr_escaped() {
        let (out, err) = (Kept::default(), Kept::default());
        let console = Console::start_with(out.clone(), err.clone()).expect("console");
        let logger = Logger {
            file: None,
            console: console.clone(),
            diagnostics: diagnostics(console.clone(), UtcOffset::UTC),
        };
        let log = |level, target, message: &str| {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("{message}"))
                    .build(),
            );
        };
        log(Level::Info, REPORTER, "a1@h[\"a1@h\": true]");
        log(Level::Warn, REPORTER, "a1@h: node b@h is down: timeout");
        log(
            Level::Warn,
            "pulse::limiter",
            "rejected x\n00:00:00.000 [info] forged\u{1b}[2J",
        );
        log(Level::Info, "pulse::node", "listening");
        log(Level::Debug, "pulse::node", "not shown");
        assert!(console.drain(Duration::from_secs(10)));
        let (out, err) = (out.text(), err.text());
        let out: Vec<_> = out
            .lines()
            .map(|l| l.split_once(' ').expect("time").1)
            .collect();
        assert_eq!(
            out,
            [
                "[info] a1@h[\"a1@h\": true]",
                "[warning] a1@h: node b@h is down: timeout"
            ]
        );
        let err: Vec<_> = err.lines().collect();
        assert_eq!(err.len(), 2, "{err:?}");
        for (line, want) in err.iter().zip([
            "[WARN] rejected x\\n00:00:00.000 [info] forged\\e[2J",
            "[INFO] listening",
        ]) {
            let (time, rest) = line.split_once(' ').expect("time");
            assert_eq!(time.len(), 12, "{line}");
            assert_eq!(rest, want);
        }
    }

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
