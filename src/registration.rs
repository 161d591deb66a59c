//! Keeps our name registered with the host's EPMD (`--epmd auto`), so
//! Erlang nodes can find this node, on a thread of its own so the rounds
//! never wait for it. While no EPMD answers it tries again every interval
//! (on a fresh host the first `elixir --name` starts EPMD, maybe after us);
//! when EPMD closes our registration (it stopped or restarted) it registers
//! again, as an Erlang node does. Each change is logged once, with what it
//! means.

use std::io;
use std::net::SocketAddr;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use log::{info, warn};

use crate::erlang::epmd::{self, Registration};

/// How long one registration attempt may take.
pub const EPMD_TIMEOUT: Duration = Duration::from_secs(1);

/// The thread holding our registration.
pub struct Registrar {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// Tries to register once. A name EPMD already holds is an error the caller
/// decides about; any other failure is logged (once per kind, tracked in
/// `last`) and gives `None`.
fn try_register(
    at: SocketAddr,
    alive: &str,
    port: u16,
    last: &mut Option<io::ErrorKind>,
) -> io::Result<Option<Registration>> {
    match epmd::register(at, alive, port, EPMD_TIMEOUT) {
        Ok(registration) => {
            info!("registered {alive} with EPMD at {at}: Erlang nodes find this node through it");
            *last = None;
            Ok(Some(registration))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && last.is_none() => Err(e),
        Err(e) => {
            if *last != Some(e.kind()) {
                warn!(
                    "no registration with EPMD at {at} ({e}): Erlang nodes cannot find \
                     this node until it registers; trying again every interval"
                );
            }
            *last = Some(e.kind());
            Ok(None)
        }
    }
}

impl Registrar {
    /// Registers `alive` (distribution port `port`) with the EPMD at `at`
    /// and keeps it registered, checking every `interval`. Fails only when
    /// EPMD answers that the name is already taken.
    pub fn start(
        at: SocketAddr,
        alive: &str,
        port: u16,
        interval: Duration,
    ) -> io::Result<Registrar> {
        let mut last_failure = None;
        let mut registration = try_register(at, alive, port, &mut last_failure)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let alive = alive.to_string();
        let handle = thread::Builder::new()
            .name("pulse-epmd-reg".into())
            .spawn(move || {
                // A message or a dropped sender stops it.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if registration.as_ref().is_some_and(|r| !r.is_open()) {
                        warn!(
                            "EPMD at {at} closed our registration: Erlang nodes cannot find \
                             this node until it registers again"
                        );
                        registration = None;
                        last_failure = Some(io::ErrorKind::ConnectionReset);
                    }
                    if registration.is_none() {
                        // Taken meanwhile: say so once and keep trying.
                        registration = try_register(at, &alive, port, &mut last_failure)
                            .unwrap_or_else(|e| {
                                if last_failure != Some(e.kind()) {
                                    warn!("EPMD at {at}: {e}; trying again every interval");
                                }
                                last_failure = Some(e.kind());
                                None
                            });
                    }
                }
                // Dropping the registration takes our name out of EPMD.
                drop(registration);
            })?;
        Ok(Registrar { stop, handle })
    }

    /// Unregisters and joins the thread (which may finish one registration
    /// attempt first, bounded by its timeout).
    pub fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .join()
            .expect("the EPMD registration thread never panics");
    }
}
