//! Keeps our name registered with the host's EPMD (`--epmd auto`), so
//! Erlang nodes can find this node, on a thread of its own so the pings
//! never wait for it. While nothing listens on EPMD's port it looks again
//! every [`LOOK_EVERY`] (on a fresh host the first `elixir --name` starts
//! EPMD, maybe after us, and may ping us at once) and registers as soon as
//! something does; when EPMD closes our registration (it stopped or
//! restarted) it registers again, as an Erlang node does. Each change is
//! logged once, with what it means.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};
use log::{info, warn};

use crate::erlang::epmd::{self, RegisterError, Registration};

/// How long one registration attempt may take.
pub(crate) const EPMD_TIMEOUT: Duration = Duration::from_secs(1);

/// How often to look for an EPMD while nothing listens on its port. A
/// script that starts EPMD and pings at once (`elixir --name x -e
/// 'Node.ping(...)'`) takes longer than this to boot, so it finds us
/// registered; a refused connect on our own address costs microseconds.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(50);

/// The thread holding our registration: stopped (unregistering) and joined
/// when dropped.
pub(crate) struct Registrar {
    stop: Sender<()>,
    handle: Option<JoinHandle<()>>,
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

/// Whether an attempt found nothing listening on EPMD's port (rather than
/// an EPMD that misbehaved), so that looking again soon is cheap.
fn nothing_listens(outcome: &Result<Registration, RegisterError>) -> bool {
    matches!(outcome, Err(RegisterError::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused)
}

/// Takes the outcome of one registration attempt, saying what changed.
/// `meanwhile` says how peers reach this node while it is not registered,
/// when they can.
fn note(
    at: SocketAddr,
    alive: &str,
    meanwhile: Option<&str>,
    outcome: Result<Registration, RegisterError>,
    said: &mut Said,
) -> Option<Registration> {
    let absent = nothing_listens(&outcome);
    let (now, registration) = match outcome {
        Ok(registration) => (Said::Registered, Some(registration)),
        Err(RegisterError::NameTaken(_)) => (Said::Taken, None),
        Err(RegisterError::Io(e)) => {
            if *said != Said::Unregistered {
                match meanwhile {
                    // The usual start on a host where no Erlang node ran yet.
                    Some(meanwhile) if absent => info!(
                        "no EPMD at {at} yet: Erlang nodes cannot find this node until it \
                         registers there, which it does as soon as one starts (any `erl` or \
                         `elixir --name` starts one); {meanwhile} meanwhile"
                    ),
                    None if absent => warn!(
                        "no EPMD at {at} yet: neither Erlang nor pulse nodes can find this \
                         node until it registers there, which it does as soon as one starts \
                         (any `erl` or `elixir --name` starts one; or run with --epmd serve)"
                    ),
                    _ => warn!(
                        "no EPMD at {at} ({e}): Erlang nodes cannot find this node until it \
                         registers; trying again every interval"
                    ),
                }
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

/// Whether something accepts connections on EPMD's port now: one connect,
/// closed at once.
fn listens(at: SocketAddr) -> bool {
    TcpStream::connect_timeout(&at, LOOK_EVERY).is_ok()
}

impl Registrar {
    /// Registers `alive` (distribution port `port`) with the EPMD at `at`
    /// and keeps it registered, checking every `interval`. `meanwhile`
    /// says how peers reach this node while it is not registered (`None`:
    /// they cannot). Fails only when EPMD answers at once that the name is
    /// already taken (or the thread cannot be started).
    pub(crate) fn start(
        at: SocketAddr,
        alive: &str,
        port: u16,
        interval: Duration,
        meanwhile: Option<&'static str>,
    ) -> Result<Registrar, RegisterError> {
        let first = match epmd::register(at, alive, port, EPMD_TIMEOUT) {
            Err(e @ RegisterError::NameTaken(_)) => return Err(e),
            other => other,
        };
        let mut absent = nothing_listens(&first);
        let mut said = Said::Nothing;
        let mut registration = note(at, alive, meanwhile, first, &mut said);
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let alive = alive.to_string();
        let handle = thread::Builder::new()
            .name("pulse-epmd-reg".into())
            .spawn(move || {
                // A message or a dropped sender stops it.
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(if absent { LOOK_EVERY } else { interval })
                {
                    if registration.as_ref().is_some_and(|r| !r.is_open()) {
                        warn!(
                            "EPMD at {at} closed our registration: Erlang nodes cannot find \
                             this node until it registers again"
                        );
                        registration = None;
                        said = Said::Unregistered;
                    }
                    // While nothing listens, a connect is all a look costs.
                    if registration.is_none() && (!absent || listens(at)) {
                        let outcome = epmd::register(at, &alive, port, EPMD_TIMEOUT);
                        absent = nothing_listens(&outcome);
                        registration = note(at, &alive, meanwhile, outcome, &mut said);
                    }
                }
                // Dropping the registration takes our name out of EPMD.
                drop(registration);
            })?;
        Ok(Registrar {
            stop,
            handle: Some(handle),
        })
    }
}

/// Unregisters and joins the thread (which may finish one registration
/// attempt first, bounded by its timeout).
impl Drop for Registrar {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let _ = self.stop.send(());
        handle
            .join()
            .expect("the EPMD registration thread never panics");
    }
}
