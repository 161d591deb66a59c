//! File descriptors: a node needs one per link direction (two for an
//! inbound link, whose socket is also kept where `stop` can shut it), plus a
//! few for the registry, the log and EPMD.
//!
//! The common soft limit of 1,024 would run out at about 500 links, after
//! which the node could no longer read its registry. So at start the soft
//! limit is raised to the hard one, inbound links are capped to what the
//! limit leaves after a reserve, and `accept` backs off when descriptors run
//! out anyway instead of spinning and warning many times a second.

use std::io;
use std::time::Duration;

use log::warn;

/// Descriptors kept for everything but links: stdio, the log, the registry
/// scan, EPMD, the listening sockets, dialers mid-connect.
pub(crate) const RESERVE: u64 = 64;
/// Descriptors one peer costs when it links both ways: two for its inbound
/// link, one for ours to it.
const PER_PEER: u64 = 3;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit in force afterwards.
// std offers no setrlimit: two libc calls on a struct we own.
#[allow(unsafe_code)]
pub fn raise_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit the kernel reads or fills; no other
    // memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above; setrlimit only reads `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    Ok(u64::from(limit.rlim_cur))
}

/// At start: raises the limit, and says so when it still leaves room for
/// fewer than `max_links` inbound links.
pub fn raise_for(max_links: usize) {
    match raise_limit() {
        Ok(limit) => {
            let cap = link_cap(limit, max_links);
            if cap < max_links {
                warn!("descriptor limit {limit}: at most {cap} inbound links");
            }
        }
        Err(e) => warn!("cannot read the descriptor limit: {e}"),
    }
}

/// The soft descriptor limit in force (u64::MAX when unknown or unlimited).
// std offers no getrlimit: one libc call on a struct we own.
#[allow(unsafe_code)]
pub(crate) fn limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit the kernel fills.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return u64::MAX;
    }
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux, not everywhere
    u64::from(limit.rlim_cur)
}

/// Most inbound links a node with descriptor limit `limit` can hold while
/// keeping its reserve and a link of its own to each peer, at most `max`.
pub(crate) fn link_cap(limit: u64, max: usize) -> usize {
    let fit = limit.saturating_sub(RESERVE) / PER_PEER;
    usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, max)
}

/// Whether an error means the process or the system is out of descriptors.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Pauses between failed `accept`s, longer while they keep failing, and
/// warns once per streak of failures.
#[derive(Default)]
pub(crate) struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// Shortest and longest pause.
    const FIRST: Duration = Duration::from_millis(20);
    const LONGEST: Duration = Duration::from_secs(1);

    /// An `accept` failed: warns if this starts a streak, and says how long
    /// to pause before the next.
    pub(crate) fn failed(&mut self, what: &str, e: &io::Error) -> Duration {
        if self.failures == 0 {
            if is_out_of_descriptors(e) {
                warn!(
                    "{what}: out of file descriptors (limit {}): new connections wait until some close",
                    limit()
                );
            } else {
                warn!("{what}: accept failed: {e}");
            }
        }
        self.failures = self.failures.saturating_add(1);
        let doubled = Self::FIRST.saturating_mul(1 << self.failures.min(6));
        doubled.min(Self::LONGEST)
    }

    /// An `accept` succeeded: the streak is over.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_the_reserve_and_a_link_back_to_each_peer() {
        assert_eq!(link_cap(1024, 2048), 320);
        assert_eq!(link_cap(1_048_576, 2048), 2048);
        assert_eq!(link_cap(10, 2048), 1);
        assert_eq!(link_cap(u64::MAX, 2048), 2048);
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let soft = raise_limit().expect("getrlimit");
        assert_eq!(soft, limit());
        assert!(soft >= 64);
    }

    #[test]
    fn backoff_grows_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(is_out_of_descriptors(&emfile));
        let first = b.failed("test", &emfile);
        let mut last = first;
        for _ in 0..20 {
            last = b.failed("test", &emfile);
        }
        assert!(
            first < last && last == Duration::from_secs(1),
            "{first:?} {last:?}"
        );
        b.succeeded();
        assert_eq!(b.failed("test", &emfile), first);
    }
}
