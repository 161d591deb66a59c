//! The registry in an S3 bucket (`--registry s3://BUCKET/PREFIX`): the
//! store client the registry's loop runs on objects.
//!
//! One object per node under the prefix, named after the node, holding the
//! same record as the directory (PROTOCOL.md, "Registry record"). This
//! module only talks to the store; what to do with what it says (S3
//! proposes, pings decide) is the caller's:
//!
//! - [`Settings`] and [`Location`]: the AWS variables and `s3://…`,
//!   checked, with [`ConfigError`]s naming what to fix (exit 2);
//! - [`Client`]: [`Client::check`] at start (a missing bucket or a refused
//!   key is an [`Error::is_configuration`]: exit 1), then per registry
//!   period [`Client::list`] (every page, each object's age by the store's
//!   clock), [`Client::get`] only for a new or changed entity tag,
//!   [`Client::put`] for our heartbeat, [`Client::create`] to take a name,
//!   [`Client::delete`] for a graceful leave or an expired entry;
//! - [`Error`]: throttling (back off), access denied, no such bucket,
//!   precondition failed, timeouts, garbage, told apart.
//!
//! Every call blocks until its reply or its deadline, whichever is first:
//! the caller runs them on a thread of its own, never on the round thread.
//! No credential ever appears in a message or a `Debug` print.
//!
//! It imports nothing from the rest of the crate, so the integration tests
//! (`tests/s3.rs`) compile it as it is and run it against a real store.

mod client;
mod config;
mod error;
mod reply;

pub(super) use client::{Client, Got};
pub(super) use config::{Location, Settings};
pub(super) use error::Error;
pub(super) use reply::Listed;
