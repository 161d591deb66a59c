//! Keeps our name registered with the host's EPMD (`--epmd auto`), so
//! Erlang nodes can find this node, on a thread of its own so the rounds
//! never wait for it. While no EPMD answers it tries again every interval
//! (on a fresh host the first `elixir --name` starts EPMD, maybe after us);
//! when EPMD closes our registration (it stopped or restarted) it registers
//! again, as an Erlang node does. Each change is logged once, with what it
//! means.

use std::net::SocketAddr;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use log::{info, warn};

use crate::erlang::epmd::{self, RegisterError, Registration};

/// How long one registration attempt may take.
pub const EPMD_TIMEOUT: Duration = Duration::from_secs(1);

/// The thread holding our registration.
pub struct Registrar {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

/// What the log last said about our registration, so each change is said
/// once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Said {
    Nothing,
    Registered,
    /// No EPMD answers (or it closed our registration).
    Unregistered,
    /// EPMD gives our name to another node.
    Taken,
}

/// Takes the outcome of one registration attempt, saying what changed.
fn note(
    at: SocketAddr,
    alive: &str,
    outcome: Result<Registration, RegisterError>,
    said: &mut Said,
) -> Option<Registration> {
    let (now, registration) = match outcome {
        Ok(registration) => (Said::Registered, Some(registration)),
        Err(RegisterError::NameTaken(_)) => (Said::Taken, None),
        Err(RegisterError::Io(e)) => {
            if *said != Said::Unregistered {
                warn!(
                    "no EPMD at {at} ({e}): Erlang nodes cannot find this node until it \
                     registers; trying again every interval"
                );
            }
            (Said::Unregistered, None)
        }
    };
    if now != *said {
        match now {
            Said::Registered => info!(
                "registered {alive} with EPMD at {at}: Erlang nodes find this node through it"
            ),
            Said::Taken => warn!(
                "EPMD at {at} gives the name {alive} to another node: Erlang nodes cannot \
                 find this node; trying again every interval"
            ),
            Said::Nothing | Said::Unregistered => {}
        }
    }
    *said = now;
    registration
}

impl Registrar {
    /// Registers `alive` (distribution port `port`) with the EPMD at `at`
    /// and keeps it registered, checking every `interval`. Fails only when
    /// EPMD answers at once that the name is already taken (or the thread
    /// cannot be started).
    pub fn start(
        at: SocketAddr,
        alive: &str,
        port: u16,
        interval: Duration,
    ) -> Result<Registrar, RegisterError> {
        let first = match epmd::register(at, alive, port, EPMD_TIMEOUT) {
            Err(e @ RegisterError::NameTaken(_)) => return Err(e),
            other => other,
        };
        let mut said = Said::Nothing;
        let mut registration = note(at, alive, first, &mut said);
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
                        said = Said::Unregistered;
                    }
                    if registration.is_none() {
                        let outcome = epmd::register(at, &alive, port, EPMD_TIMEOUT);
                        registration = note(at, &alive, outcome, &mut said);
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
