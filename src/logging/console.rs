//! The console: stdout for the status and event lines, stderr for the
//! node's diagnostics, fed by one thread so that a console nobody reads
//! never holds up the node.
//!
//! A paused terminal or a full pipe blocks `write` for as long as it likes.
//! Lines are queued to the `pulse-console` thread without waiting; while
//! the queue is full they are dropped and counted, and once the console
//! takes lines again it is told how many it missed (the log file has them).
//! [`Lines`] puts a `Write` in front of the queue, for a logger that writes
//! a line in pieces.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Lines the console may fall behind by before lines are dropped.
const QUEUE: usize = 256;

/// Which console stream a line is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Status and event lines.
    Stdout,
    /// Diagnostics, and problems with the log itself.
    Stderr,
}

enum Item {
    Line(Stream, String),
    /// Answered once everything queued before it is written.
    Drained(Sender<()>),
}

/// The sending side; the thread is detached on purpose, since it may be
/// blocked in `write` for good, and the process must still be able to exit.
#[derive(Clone)]
pub(crate) struct Console {
    tx: Sender<Item>,
    dropped: Arc<AtomicU64>,
}

impl Console {
    /// Starts the console thread, writing to stdout and stderr.
    pub(crate) fn start() -> io::Result<Console> {
        Console::start_with(io::stdout(), io::stderr())
    }

    /// Starts the console thread on the given writers.
    pub(crate) fn start_with<O, E>(stdout: O, stderr: E) -> io::Result<Console>
    where
        O: Write + Send + 'static,
        E: Write + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        thread::Builder::new()
            .name("pulse-console".into())
            .spawn(move || write_lines(rx, &counter, stdout, stderr))?;
        Ok(Console { tx, dropped })
    }

    /// Queues a whole line (with its newline) without ever waiting.
    pub(crate) fn offer(&self, stream: Stream, line: String) {
        match self.tx.try_send(Item::Line(stream, line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The thread is gone (it never is while the process runs).
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits up to `timeout` for every queued line to be written; false if
    /// the console did not take them in time.
    pub(crate) fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send_deadline(Item::Drained(tx), deadline).is_err() {
            return false;
        }
        rx.recv_deadline(deadline).is_ok()
    }
}

/// A `Write` that queues each whole line to one console stream, never
/// waiting: what a logger writes in pieces reaches the console as one
/// line, or (the queue full) not at all.
pub(crate) struct Lines {
    console: Console,
    stream: Stream,
    /// The line written so far, not yet ended.
    line: Vec<u8>,
}

impl Lines {
    /// Lines for `stream` of `console`.
    pub(crate) fn new(console: Console, stream: Stream) -> Lines {
        Lines {
            console,
            stream,
            line: Vec::new(),
        }
    }
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for piece in buf.split_inclusive(|&b| b == b'\n') {
            self.line.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                self.console.offer(self.stream, line);
            }
        }
        Ok(buf.len())
    }

    /// A line is queued when it ends, not before.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_lines<O: Write, E: Write>(
    rx: Receiver<Item>,
    dropped: &AtomicU64,
    mut stdout: O,
    mut stderr: E,
) {
    for item in rx {
        match item {
            Item::Line(Stream::Stdout, line) => {
                // A closed stdout (`pulse | head`) is not worth a word.
                let _ = stdout
                    .write_all(line.as_bytes())
                    .and_then(|()| stdout.flush());
            }
            Item::Line(Stream::Stderr, line) => {
                let _ = stderr
                    .write_all(line.as_bytes())
                    .and_then(|()| stderr.flush());
            }
            Item::Drained(done) => {
                let _ = done.send(());
            }
        }
        let missed = dropped.swap(0, Ordering::Relaxed);
        if missed > 0 {
            let note = super::format_line(
                log::Level::Warn,
                &format!(
                    "the console was blocked: {missed} lines were not shown here (the log file has them)"
                ),
            );
            let _ = stdout
                .write_all(note.as_bytes())
                .and_then(|()| stdout.flush());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer that blocks while the gate is held, and records what it got.
    #[derive(Clone, Default)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().expect("gate");
            self.got.lock().expect("got").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_written_in_pieces_reach_the_console_whole() {
        let err = Gated::default();
        let console = Console::start_with(io::sink(), err.clone()).expect("start");
        let mut lines = Lines::new(console.clone(), Stream::Stderr);
        for piece in ["12:00:00.000 ", "[WARN] ", "one\ntwo", "\n", "three"] {
            lines.write_all(piece.as_bytes()).expect("write");
        }
        assert!(console.drain(Duration::from_secs(10)));
        let got = String::from_utf8(err.got.lock().expect("got").clone()).expect("utf8");
        assert_eq!(got, "12:00:00.000 [WARN] one\ntwo\n");
    }

    #[test]
    fn a_blocked_console_never_blocks_the_sender_and_is_told_what_it_missed() {
        let out = Gated::default();
        let console = Console::start_with(out.clone(), io::sink()).expect("start");
        let closed = out.gate.lock().expect("close the gate");
        let started = Instant::now();
        for i in 0..QUEUE + 500 {
            console.offer(Stream::Stdout, format!("line {i}\n"));
        }
        // 1,524 lines queued or dropped against a console that takes none.
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!console.drain(Duration::from_millis(50)));
        drop(closed);
        assert!(console.drain(Duration::from_secs(10)));
        let got = String::from_utf8(out.got.lock().expect("got").clone()).expect("utf8");
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.first(), Some(&"line 0"));
        // The first line may have been taken before the gate closed.
        let missed = lines
            .iter()
            .find(|l| l.contains("the console was blocked"))
            .expect("note");
        let n: usize = missed
            .split("blocked: ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("count");
        let shown = lines.iter().filter(|l| l.starts_with("line ")).count();
        assert_eq!(shown + n, QUEUE + 500, "{got}");
    }
}
