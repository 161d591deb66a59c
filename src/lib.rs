//! pulse: a small cluster node.
//!
//! Every interval a node writes its heartbeat record into a shared registry
//! directory, pings every registered node (itself included) over the Erlang
//! distribution protocol, and logs one status line. See `node` for the
//! threads and how they talk.

pub mod acceptor;
pub mod config;
pub mod decimal;
pub mod discovery;
pub mod erlang;
pub mod fds;
pub mod json;
pub mod limiter;
pub mod links;
pub mod listener;
pub mod logging;
pub mod membership;
pub mod name;
pub mod node;
pub mod probe;
pub mod registration;
pub mod registry;
pub mod report;
pub mod rounds;
pub mod status;
pub mod watch;
