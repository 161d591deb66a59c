//! How often rejected handshakes are warned about.
//!
//! A client that knows no cookie can try again as fast as it likes, under a
//! new name each time, so warnings are limited by what the client cannot
//! choose freely: its address, and the whole node's rate. Each source gets
//! at most one warning a minute, the node at most [`MAX_PER_WINDOW`]; the
//! rest are counted and summed up in one line ("N more rejected handshakes
//! in the last minute"), written when the next rejection comes after the
//! minute or, at the latest, with the next round's status line. Only warned
//! sources are remembered, for one window, so the table holds at most twice
//! [`MAX_PER_WINDOW`] entries whatever the number of sources.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use log::warn;

use crate::logging::text::field;

/// The window of the limits.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Most warnings the node gives in one window, whatever the sources.
pub(crate) const MAX_PER_WINDOW: u32 = 10;

/// Whether to warn about one rejected handshake.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Warn about this one.
    pub warn: bool,
    /// The handshakes not warned about in the window that just ended, and
    /// how long that window ran.
    pub summary: Option<(u64, Duration)>,
}

struct State {
    /// When each source was last warned about, within the last window.
    warned: HashMap<IpAddr, Instant>,
    window_start: Instant,
    warned_in_window: u32,
    /// Rejections not warned about in this window.
    quiet: u64,
}

/// The limits, shared by the reader threads behind a lock.
pub(crate) struct Limiter(Mutex<State>);

/// The node's wrong-cookie limits: the listener's readers decide with them,
/// the round thread writes the summary of a minute that ended quietly.
pub(crate) fn wrong_cookies() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(|| Limiter::new(Instant::now()))
}

impl Limiter {
    /// A limiter whose first window starts at `now`.
    pub(crate) fn new(now: Instant) -> Limiter {
        Limiter(Mutex::new(State {
            warned: HashMap::new(),
            window_start: now,
            warned_in_window: 0,
            quiet: 0,
        }))
    }

    /// Decides on one rejected handshake from `source` at `now`.
    pub(crate) fn allow(&self, source: IpAddr, now: Instant) -> Decision {
        let Ok(mut s) = self.0.lock() else {
            return Decision {
                warn: false,
                summary: None,
            };
        };
        let summary = s.roll(now);
        let recently = s
            .warned
            .get(&source)
            .is_some_and(|at| now.saturating_duration_since(*at) < WINDOW);
        let warn = !recently && s.warned_in_window < MAX_PER_WINDOW;
        if warn {
            s.warned.insert(source, now);
            s.warned_in_window += 1;
        } else {
            s.quiet += 1;
        }
        Decision { warn, summary }
    }

    /// Ends the window if it is over at `now`: what it did not warn about.
    pub(crate) fn due(&self, now: Instant) -> Option<(u64, Duration)> {
        self.0.lock().ok()?.roll(now)
    }

    /// Ends the window at `now` (the node stops): what was not warned about.
    pub(crate) fn finish(&self, now: Instant) -> Option<(u64, Duration)> {
        let mut s = self.0.lock().ok()?;
        let span = now.saturating_duration_since(s.window_start);
        let quiet = std::mem::take(&mut s.quiet);
        (quiet > 0).then_some((quiet, span))
    }

    /// How many sources it remembers.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.0.lock().map(|s| s.warned.len()).unwrap_or(0)
    }

    /// Logs a handshake from `addr` under the name `peer` rejected for a
    /// wrong cookie, within the limits.
    pub(crate) fn wrong_cookie(&self, peer: &str, addr: SocketAddr) {
        let decision = self.allow(addr.ip(), Instant::now());
        if let Some(summary) = decision.summary {
            warn_summary(summary);
        }
        if decision.warn {
            warn!("rejected {} from {addr}: wrong cookie", field(peer));
        }
    }

    /// Logs what the limits held back in a window that is over.
    pub(crate) fn log_due(&self) {
        if let Some(summary) = self.due(Instant::now()) {
            warn_summary(summary);
        }
    }

    /// Logs what the limits held back, when the node stops.
    pub(crate) fn log_finish(&self) {
        if let Some(summary) = self.finish(Instant::now()) {
            warn_summary(summary);
        }
    }
}

impl State {
    /// Starts a new window if the current one is over; returns the summary
    /// of the one that ended.
    fn roll(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let span = now.saturating_duration_since(self.window_start);
        if span < WINDOW {
            return None;
        }
        self.window_start = now;
        self.warned_in_window = 0;
        self.warned
            .retain(|_, at| now.saturating_duration_since(*at) < WINDOW);
        let quiet = std::mem::take(&mut self.quiet);
        (quiet > 0).then_some((quiet, span))
    }
}

fn warn_summary((quiet, span): (u64, Duration)) {
    let minutes = span.as_secs().div_ceil(60);
    if minutes <= 1 {
        warn!("{quiet} more rejected handshakes in the last minute");
    } else {
        warn!("{quiet} more rejected handshakes in the last {minutes} minutes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n))
    }

    #[test]
    fn one_warning_per_source_per_window() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        assert!(l.allow(ip(1), t0).warn);
        for i in 1..100 {
            assert!(!l.allow(ip(1), t0 + Duration::from_millis(i)).warn);
        }
        assert!(l.allow(ip(2), t0).warn);
        let later = t0 + WINDOW + Duration::from_secs(1);
        let d = l.allow(ip(1), later);
        assert!(d.warn);
        assert_eq!(d.summary, Some((99, WINDOW + Duration::from_secs(1))));
        assert_eq!(l.finish(later), None);
        // A quiet end of a window is summed up by whoever asks first.
        assert!(!l.allow(ip(1), later).warn);
        assert_eq!(l.due(later + Duration::from_secs(1)), None);
        let end = later + WINDOW;
        assert_eq!(l.due(end), Some((1, WINDOW)));
        assert_eq!(l.due(end), None);
    }

    #[test]
    fn many_sources_get_few_warnings_and_a_small_table() {
        let t0 = Instant::now();
        let l = Limiter::new(t0);
        let mut warned = 0;
        let mut summed = 0;
        // 10,000 rejections from 10,000 sources over five minutes.
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 30);
            let d = l.allow(ip(i), now);
            warned += u64::from(d.warn);
            summed += d.summary.map_or(0, |(n, _)| n);
            assert!(l.sources() <= 2 * MAX_PER_WINDOW as usize);
        }
        summed += l
            .finish(t0 + Duration::from_secs(301))
            .map_or(0, |(n, _)| n);
        assert!(warned <= 5 * u64::from(MAX_PER_WINDOW), "{warned}");
        assert_eq!(warned + summed, 10_000);
    }
}
