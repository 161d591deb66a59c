//! The floor under a pulse ping: the least a ping can cost with std threads
//! and loopback TCP, measured by the benchmark beside pulse.
//!
//! K kept TCP connections in one process, in the shape of a pulse node: one
//! pinger thread that, once per interval, writes one small length-prefixed
//! request on every connection and then reads every reply (as pulse's round
//! thread does), and one answerer thread per connection (as pulse's inbound
//! links have). That is a pulse ping stripped of everything but the
//! transport: no Erlang framing, no registry, no log. With K = N the process
//! does what one node of an N-node cluster does per round (N pings sent, N
//! answered), so its CPU per interval and per ping compare directly with a
//! pulse node's. `--interval 0` runs the rounds back to back instead, for
//! the per-message cost without timer wake-ups.
//!
//! Driven over stdin/stdout so the benchmark can read counts exactly at the
//! edges of its CPU window:
//!
//! ```text
//! floor --links K --interval MS     prints "ready links=K" once every connection is up
//! stdin "count"                     prints "pings=P failed=F"
//! stdin EOF or "stop"               stops and joins every thread, prints "stopped pings=P failed=F"
//! ```
//!
//! Only loopback (127.0.0.1) is ever used.

use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: floor [--links K] [--interval MS] [--request-bytes B] [--reply-bytes B] [--timeout MS]";

/// What the flags asked for.
struct Opts {
    links: usize,
    interval: Duration,
    request_bytes: usize,
    reply_bytes: usize,
    timeout: Duration,
}

/// Counters shared by every thread.
#[derive(Default)]
struct Counts {
    pings: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "pings={} failed={}",
            self.pings.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        links: 1,
        interval: Duration::from_millis(1000),
        request_bytes: 128,
        reply_bytes: 64,
        timeout: Duration::from_millis(500),
    };
    while let Some(flag) = args.next() {
        let mut value = |what: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{flag}: missing {what}"))?;
            v.parse()
                .map_err(|_| format!("{flag}: expected {what}, got '{v}'"))
        };
        match flag.as_str() {
            "--links" => o.links = value("a count")? as usize,
            "--interval" => o.interval = Duration::from_millis(value("milliseconds")?),
            "--request-bytes" => o.request_bytes = value("bytes")? as usize,
            "--reply-bytes" => o.reply_bytes = value("bytes")? as usize,
            "--timeout" => o.timeout = Duration::from_millis(value("milliseconds")?),
            "-h" | "--help" => return Err("help".into()),
            _ => return Err(format!("unknown flag '{flag}'")),
        }
    }
    if !(1..=2000).contains(&o.links) {
        return Err("--links: between 1 and 2000".into());
    }
    if !(5..=65536).contains(&o.request_bytes) || !(5..=65536).contains(&o.reply_bytes) {
        return Err("message sizes: between 5 and 65536 bytes (4 of them the length)".into());
    }
    if o.timeout.is_zero() {
        return Err("--timeout: at least 1 ms".into());
    }
    Ok(o)
}

/// The running links and threads.
struct Floor {
    counts: Arc<Counts>,
    stopping: Arc<AtomicBool>,
    /// Dropping it is the pinger's stop signal; it also wakes the pinger
    /// while it waits for its next round.
    stop_tx: mpsc::Sender<()>,
    pinger: JoinHandle<()>,
    answerers: Vec<JoinHandle<()>>,
}

impl Floor {
    /// Opens every link and starts the answerers and the pinger.
    fn start(opts: &Opts) -> io::Result<Floor> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let mut answerers = Vec::with_capacity(opts.links);
        let mut links = Vec::with_capacity(opts.links);
        for i in 0..opts.links {
            let out = TcpStream::connect_timeout(&addr, opts.timeout)?;
            // Connected to our own listener: the backlog already holds it.
            let (inc, _) = listener.accept()?;
            for s in [&out, &inc] {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(opts.timeout))?;
            }
            out.set_read_timeout(Some(opts.timeout))?;
            // An answerer waits a whole interval between requests; the
            // timeout only bounds how long it can miss the stop flag.
            inc.set_read_timeout(Some(opts.interval.max(opts.timeout) * 2))?;
            links.push(out);
            let (counts, stopping, reply) = (counts.clone(), stopping.clone(), opts.reply_bytes);
            let answer = move || answerer(inc, reply, &counts, &stopping);
            answerers.push(spawn(format!("floor-answer-{i}"), answer)?);
        }
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (c, interval) = (counts.clone(), opts.interval);
        let (request, reply) = (opts.request_bytes, opts.reply_bytes);
        let ping = move || pinger(links, interval, request, reply, &c, &stop_rx);
        let pinger = spawn("floor-ping".into(), ping)?;
        Ok(Floor {
            counts,
            stopping,
            stop_tx,
            pinger,
            answerers,
        })
    }

    /// Stops the pinger first (its links close, so every answerer reads
    /// EOF), then the answerers. In the other order an answerer could hang
    /// up while the pinger's last round is in flight, and that round would
    /// count a reset link as a failure.
    fn stop(self) -> Arc<Counts> {
        const NEVER_PANICS: &str = "floor threads never panic: every error is counted";
        drop(self.stop_tx);
        self.pinger.join().expect(NEVER_PANICS);
        self.stopping.store(true, Ordering::Relaxed);
        for t in self.answerers {
            t.join().expect(NEVER_PANICS);
        }
        self.counts
    }
}

fn run(opts: &Opts) -> io::Result<()> {
    let floor = Floor::start(opts)?;
    println!("ready links={}", opts.links);
    io::stdout().flush()?;
    // The parent closing stdin (or dying) is the shutdown path.
    for line in io::stdin().lock().lines() {
        match line?.trim() {
            "count" => println!("{}", floor.counts.line()),
            "stop" => break,
            other => println!("error: unknown command '{other}' (count, stop)"),
        }
        io::stdout().flush()?;
    }
    let counts = floor.stop();
    println!("stopped {}", counts.line());
    Ok(())
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(name)
        .stack_size(64 * 1024)
        .spawn(f)
}

/// Once per interval (or back to back with a zero interval), a round: one
/// request written on every link, then every reply read. A link that fails
/// is counted and dropped.
fn pinger(
    mut links: Vec<TcpStream>,
    interval: Duration,
    request_bytes: usize,
    reply_bytes: usize,
    counts: &Counts,
    stop: &mpsc::Receiver<()>,
) {
    let request = frame(request_bytes, b'q');
    let mut reply = vec![0u8; reply_bytes];
    let mut next = Instant::now();
    let mut outcome: Vec<io::Result<()>> = Vec::with_capacity(links.len());
    while !links.is_empty() {
        let go = if interval.is_zero() {
            matches!(stop.try_recv(), Err(TryRecvError::Empty))
        } else {
            let wait = next.saturating_duration_since(Instant::now());
            matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
        };
        if !go {
            return;
        }
        // A late round goes out at once; missed ticks are not made up for.
        next = (next + interval).max(Instant::now());
        outcome.clear();
        outcome.extend(links.iter_mut().map(|s| s.write_all(&request)));
        for (s, r) in links.iter_mut().zip(outcome.iter_mut()) {
            if r.is_ok() {
                *r = s.read_exact(&mut reply);
            }
        }
        let mut results = outcome.iter();
        links.retain(|_| match results.next() {
            Some(Ok(())) => {
                counts.pings.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(Err(e)) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("floor: link dropped: {e}");
                false
            }
            None => true,
        });
    }
    eprintln!("floor: every link failed");
}

/// Reads requests as they come (usually one read each) and answers every
/// complete one with one write, until the pinger hangs up or we stop.
fn answerer(mut s: TcpStream, reply_bytes: usize, counts: &Counts, stopping: &AtomicBool) {
    let reply = frame(reply_bytes, b'r');
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    while !stopping.load(Ordering::Relaxed) {
        let n = match s.read(&mut buf[have..]) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        have += n;
        // Answer every whole frame in the buffer; keep a partial one.
        let mut used = 0;
        while let Some(len) = frame_len(&buf[used..have]) {
            if len > buf.len() {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("floor: request of {len} bytes is larger than the buffer");
                return;
            }
            if have - used < len {
                break;
            }
            used += len;
            if s.write_all(&reply).is_err() {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        buf.copy_within(used..have, 0);
        have -= used;
    }
}

/// A message of `bytes` bytes in all: a 4-byte big-endian length, then filler.
fn frame(bytes: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; bytes];
    let body = u32::try_from(bytes - 4).unwrap_or(u32::MAX);
    f[..4].copy_from_slice(&body.to_be_bytes());
    f
}

/// The whole length of the frame starting `buf`, once its header is in.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Opts, String> {
        parse(args.iter().map(|a| a.to_string()))
    }

    /// Polls `cond` until it holds or `secs` pass; says what it saw last.
    fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> (bool, String)) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (ok, seen) = cond();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within {secs} s; saw {seen}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = opts(&["--interval", "abc"]).err().unwrap_or_default();
        assert_eq!(e, "--interval: expected milliseconds, got 'abc'");
        let e = opts(&["--links", "0"]).err().unwrap_or_default();
        assert!(e.starts_with("--links:"), "{e}");
        let e = opts(&["--links"]).err().unwrap_or_default();
        assert_eq!(e, "--links: missing a count");
        let e = opts(&["--request-bytes", "4"]).err().unwrap_or_default();
        assert!(e.starts_with("message sizes"), "{e}");
        let o = opts(&["--links", "7", "--interval", "0"]).expect("valid flags");
        assert_eq!((o.links, o.interval), (7, Duration::ZERO));
    }

    #[test]
    fn frames_carry_their_length() {
        let f = frame(128, b'q');
        assert_eq!(f.len(), 128);
        assert_eq!(frame_len(&f), Some(128));
        assert_eq!(frame_len(&f[..3]), None);
    }

    #[test]
    fn answerer_replies_to_every_request_even_when_they_arrive_together() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
        let mut out = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (inc, _) = listener.accept().expect("accept");
        out.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        inc.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let counts = Arc::new(Counts::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let (c, st) = (counts.clone(), stopping.clone());
        let t = spawn("test-answer".into(), move || answerer(inc, 10, &c, &st)).expect("spawn");
        // Two requests in one write, a third split across two writes.
        let mut two = frame(20, b'q');
        two.extend(frame(20, b'q'));
        out.write_all(&two).expect("write");
        let third = frame(30, b'q');
        out.write_all(&third[..7]).expect("write");
        out.write_all(&third[7..]).expect("write");
        let mut replies = [0u8; 30];
        out.read_exact(&mut replies)
            .expect("three replies of 10 bytes");
        assert!(replies.chunks(10).all(|r| r == frame(10, b'r')));
        drop(out);
        t.join().expect("answerer ends when the pinger hangs up");
        assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn tight_loop_counts_pings_and_stops_cleanly() {
        let o = opts(&["--links", "3", "--interval", "0"]).expect("valid flags");
        let floor = Floor::start(&o).expect("floor starts on loopback");
        let counts = floor.counts.clone();
        wait_until(30, "300 pings", || {
            (counts.pings.load(Ordering::Relaxed) >= 300, counts.line())
        });
        let counts = floor.stop();
        assert_eq!(
            counts.failed.load(Ordering::Relaxed),
            0,
            "{}",
            counts.line()
        );
    }

    #[test]
    fn paced_rounds_ping_every_link_once_per_interval() {
        let o = opts(&["--links", "4", "--interval", "50"]).expect("valid flags");
        let start = Instant::now();
        let floor = Floor::start(&o).expect("floor starts on loopback");
        let counts = floor.counts.clone();
        wait_until(30, "3 rounds of 4 pings", || {
            (counts.pings.load(Ordering::Relaxed) >= 12, counts.line())
        });
        // Three rounds take at least two intervals: the pinger is paced.
        assert!(start.elapsed() >= Duration::from_millis(100));
        let counts = floor.stop();
        let pings = counts.pings.load(Ordering::Relaxed);
        assert_eq!(pings % 4, 0, "whole rounds only: {}", counts.line());
        assert_eq!(
            counts.failed.load(Ordering::Relaxed),
            0,
            "{}",
            counts.line()
        );
    }
}
