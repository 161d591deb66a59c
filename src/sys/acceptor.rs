//! A thread that blocks in `accept` yet can be stopped: a close flag, then a
//! connection to itself wakes the `accept` so the thread sees the flag.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::warn;

/// How long the waking connection may take.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// A running accept thread; stopped and joined by [`AcceptThread::stop`] or
/// on drop.
#[derive(Debug)]
pub(crate) struct AcceptThread {
    addr: SocketAddr,
    closing: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl AcceptThread {
    /// Runs `body` on a thread called `name`. The body accepts on the
    /// listener and returns once the flag it is given is set (it checks it
    /// after every `accept`).
    pub(crate) fn spawn<F>(name: &str, listener: TcpListener, body: F) -> io::Result<AcceptThread>
    where
        F: FnOnce(TcpListener, Arc<AtomicBool>) + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || body(listener, flag))?;
        Ok(AcceptThread {
            addr,
            closing,
            handle: Some(handle),
        })
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the flag, wakes the `accept` and joins the thread.
    pub(crate) fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        self.closing.store(true, Ordering::SeqCst);
        let wake = wake_addr(self.addr);
        match TcpStream::connect_timeout(&wake, WAKE_TIMEOUT) {
            Ok(_) => handle.join().expect("an accept thread never panics"),
            // Joining now could block forever in accept(): the thread is left
            // behind, deliberately, rather than hang the caller.
            Err(e) => warn!("cannot wake the listener at {wake} to stop it: {e}"),
        }
    }
}

impl Drop for AcceptThread {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Where to connect to reach a listener: an unspecified bind address
/// (0.0.0.0 or ::) is reached on loopback.
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let mut addr = local;
    if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
            SocketAddr::V6(_) => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_address_of_an_unspecified_bind_is_loopback() {
        let lo = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(
            wake_addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7))),
            lo(7)
        );
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 7));
        assert_eq!(wake_addr(v6), SocketAddr::from((Ipv6Addr::LOCALHOST, 7)));
        assert_eq!(wake_addr(lo(9)), lo(9));
    }

    #[test]
    fn stop_joins_a_thread_blocked_in_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let accepted = Arc::new(AtomicBool::new(false));
        let seen = accepted.clone();
        let t = AcceptThread::spawn("test-accept", listener, move |l, closing| {
            for _ in l.incoming() {
                if closing.load(Ordering::SeqCst) {
                    break;
                }
                seen.store(true, Ordering::SeqCst);
            }
        })
        .expect("spawn");
        t.stop();
        // The only connection it saw was the wake-up, after the flag.
        assert!(!accepted.load(Ordering::SeqCst));
    }
}
