//! `pulse watch`: the cluster at a glance, from the shared log. Every
//! interval it reads what the nodes appended, and draws an N×N matrix (one
//! row per observing node, one column per observed node), each row's age,
//! the latest events and a summary. It needs no cookie and pings nothing, so
//! it works from the host for nodes in containers too.

mod json_frame;
mod model;
mod parse;
mod render;
mod tail;

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

pub(crate) use model::Cluster;
pub(crate) use parse::parse_line;
pub(crate) use render::Style;
pub(crate) use tail::Tail;

/// A row older than this many intervals is stale.
const STALE_INTERVALS: u32 = 3;
/// A row older than this many intervals is dropped.
const FORGET_INTERVALS: u32 = 60;
/// How often the terminal's size is asked again.
const SIZE_EVERY: Duration = Duration::from_secs(1);
/// The width assumed when it cannot be known.
const DEFAULT_WIDTH: usize = 80;

/// What `pulse watch` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The shared log.
    pub log_file: PathBuf,
    /// How often to redraw; also the cluster's interval, for staleness.
    pub interval: Duration,
    /// One frame, then exit.
    pub once: bool,
    /// JSON frames, one per line, instead of text.
    pub json: bool,
    /// Whether stdout is a terminal: then frames redraw in place.
    pub terminal: bool,
    /// ANSI colours in the text.
    pub colour: bool,
    /// The width to draw for (`COLUMNS`); else the terminal's, else 80.
    pub width: Option<usize>,
}

/// Draws frames to `out` until `stop` fires (or after one, with `once`).
/// Returns whether the frame showed every link up (always true once
/// stopped), or an error when the log cannot be read for a single frame.
pub fn watch(opts: &Options, out: &mut impl Write, stop: &Receiver<()>) -> Result<bool, String> {
    let mut tail = Tail::new(&opts.log_file);
    let mut cluster = Cluster::default();
    let ms = |n: u32| (opts.interval * n).as_millis() as u64;
    let title = format!("pulse watch  {}", opts.log_file.display());
    let mut first = true;
    let mut last_trouble = None;
    let mut size = None;
    let mut size_asked: Option<Instant> = None;
    loop {
        let trouble = match tail.read() {
            Ok(lines) => {
                lines
                    .iter()
                    .filter_map(|l| parse_line(l))
                    .for_each(|l| cluster.add(l));
                None
            }
            Err(e) if opts.once => {
                return Err(format!(
                    "cannot read log file {}: {e}",
                    opts.log_file.display()
                ));
            }
            Err(e) => Some(format!("cannot read the log file: {e} (retrying)\n")),
        };
        let since_written = tail
            .modified()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .map_or(0, |d| d.as_millis() as u64);
        let frame = cluster.frame(since_written, ms(STALE_INTERVALS), ms(FORGET_INTERVALS));
        // Asked at most once a second: short intervals redraw often.
        if opts.terminal && !opts.json && size_asked.is_none_or(|t| t.elapsed() >= SIZE_EVERY) {
            size = terminal_size();
            size_asked = Some(Instant::now());
        }
        let mut body = if opts.json {
            json_frame::render(&frame)
        } else {
            let width = opts
                .width
                .or(size.map(|(_, cols)| cols))
                .unwrap_or(DEFAULT_WIDTH);
            let style = Style {
                colour: opts.colour,
                width,
            };
            // A frame redrawn in place must fit the screen, or its top
            // scrolls away.
            let max_lines = size.filter(|_| !opts.once).map(|(rows, _)| rows);
            render::text(&frame, &title, style, max_lines)
        };
        // A JSON stream stays JSON: the trouble goes to stderr, once.
        if opts.json {
            if let Some(why) = trouble.as_ref().filter(|_| trouble != last_trouble) {
                eprint!("pulse: {why}");
            }
        } else if let Some(why) = &trouble {
            body.insert_str(0, why);
        }
        last_trouble = trouble;
        let screen = placed(&body, opts, first);
        first = false;
        match out.write_all(screen.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            // Whoever read us went away (`pulse watch | head`): done.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(frame.all_up()),
            Err(e) => return Err(format!("cannot write: {e}")),
        }
        if opts.once {
            return Ok(frame.all_up());
        }
        match stop.recv_timeout(opts.interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // Stopped by the user: a normal end.
            _ => return Ok(true),
        }
    }
}

/// Where a frame goes: on a terminal, over the last one (cursor home, each
/// line's rest cleared, then the rest of the screen); elsewhere, after it.
fn placed(body: &str, opts: &Options, first: bool) -> String {
    if opts.json || opts.once {
        return body.to_string();
    }
    if !opts.terminal {
        return if first {
            body.to_string()
        } else {
            format!("\n{body}")
        };
    }
    let mut screen = String::from(if first { "\x1b[H\x1b[2J" } else { "\x1b[H" });
    screen.push_str(&body.replace('\n', "\x1b[K\n"));
    screen.push_str("\x1b[J");
    screen
}

/// The terminal's rows and columns, as the kernel knows them for our
/// stdout (`TIOCGWINSZ`); `None` when stdout is not a terminal.
#[allow(unsafe_code)]
fn terminal_size() -> Option<(usize, usize)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only fills the winsize it is given, which lives
    // for the whole call.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    let (rows, cols) = (usize::from(size.ws_row), usize::from(size.ws_col));
    (ok && rows > 0 && cols > 0).then_some((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_on_a_terminal_redraw_in_place() {
        let opts = Options {
            log_file: "x".into(),
            interval: Duration::from_secs(1),
            once: false,
            json: false,
            terminal: true,
            colour: false,
            width: None,
        };
        assert_eq!(
            placed("a\nb\n", &opts, true),
            "\x1b[H\x1b[2Ja\x1b[K\nb\x1b[K\n\x1b[J"
        );
        assert_eq!(placed("a\n", &opts, false), "\x1b[Ha\x1b[K\n\x1b[J");
        let piped = Options {
            terminal: false,
            ..opts
        };
        assert_eq!(placed("a\n", &piped, false), "\na\n");
    }
}
