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

// What the binary, an embedder and the integration tests use.
pub mod config;
pub mod discovery;
pub mod erlang;
pub mod fds;
pub mod json;
pub mod listener;
pub mod logging;
pub mod node;
pub mod sched;
pub mod status;
pub mod watch;

// The node's inner workings.
mod acceptor;
mod deadline;
mod decimal;
mod limiter;
mod links;
mod membership;
mod name;
mod probe;
mod registration;
mod registry;
mod report;
mod rounds;
// The S3 registry's store client; wired into the rounds later, unused till then.
#[allow(dead_code, unused_imports)]
mod s3;
mod sources;

pub use config::Config;
pub use membership::{Event, Reason};
pub use name::NodeName;
pub use node::{Error, Member, Node};
