//! pulse: a small cluster node.
//!
//! Every interval a node writes its heartbeat record into a shared registry
//! directory, pings every other registered node over the Erlang
//! distribution protocol (its own entry it answers itself, as an Erlang node
//! does), and logs one status line. See `node` for the
//! threads and how they talk.
//!
//! Embedding: build a [`Config`] in code ([`Config::for_node`]), start a
//! [`Node`], read its membership [`Event`]s and [`Node::members`], and
//! [`Node::shutdown`] it; `examples/embed.rs` shows it whole.

// Every module is private to the crate: the public surface is the embedding
// API re-exported below, and the hidden `internals` for the binary and the
// integration tests. `unreachable_pub` (Cargo.toml) keeps it that way.
mod cli;
mod config;
mod decimal;
mod discovery;
mod dns;
mod erlang;
mod error;
mod logging;
mod membership;
mod name;
mod node;
mod peers;
mod registry;
mod s3;
mod sources;
mod sys;

// The embedding API.
pub use config::{Config, ConfigError, DnsName, EpmdMode};
pub use error::{DnsError, EpmdError, Error};
pub use membership::{Event, Reason};
pub use name::NodeName;
pub use node::Node;
pub use node::rounds::Member;

// The typed reasons its errors carry, with `EpmdError` and `DnsError`.
/// What [`ConfigError::Cookie`] carries.
pub use config::CookieError;
/// What an [`S3Error`] says went wrong.
pub use error::S3Cause;
/// What [`Error::S3`] carries.
pub use error::S3Error;
/// What an [`S3Error`] says was being done.
pub use error::S3Step;
/// What [`Error::Taken`] carries.
pub use error::Taken;
/// What [`ConfigError::Name`] carries, and the error of parsing a
/// [`NodeName`].
pub use name::NameError;

/// For the `pulse` binary and the integration tests, not a stable API: what
/// they need of the crate's insides, in one place.
#[doc(hidden)]
pub mod internals {
    // main.rs: the command line, its help text and the default log file.
    pub use crate::config::{Args, Command, DEFAULT_LOG_FILE, USAGE, parse};
    // tests/dns.rs: the resolver against real name servers.
    pub use crate::dns::{LookupError, lookup};
    // tests/embed.rs and tests/epmd.rs: EPMD's client and responder.
    pub use crate::erlang::epmd::{RegisterError, Responder, port_please, register};
    // main.rs (`raise_for`) and tests/halfopen.rs (`raise_limit`).
    pub use crate::sys::fds::{raise_for, raise_limit};
    // tests/watch.rs: the JSON string escaping.
    pub use crate::cli::json::string as json_string;
    // main.rs: how many inbound links the descriptor limit must allow.
    pub use crate::peers::listener::MAX_INBOUND;
    // main.rs: the log backend, started and drained.
    pub use crate::logging::{LogError, finish as finish_logging, init as init_logging};
    // main.rs: SCHED_BATCH for the node's threads.
    pub use crate::sys::sched::batch;
    // main.rs: `pulse status` and `pulse health`.
    pub use crate::cli::status::{health, status};
    // main.rs: `pulse watch`.
    pub use crate::cli::watch::{Options as WatchOptions, watch};
}
