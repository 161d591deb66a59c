//! Taking our name at start: the object under it must be missing or
//! stale, and hold our record once we wrote it.
//!
//! A store that honours `If-None-Match: *` refuses a second creator, but
//! one that ignores it (Garage) lets two nodes that found the name free
//! at the same moment both write, and so does the overwrite of a stale
//! object on any store. So the claim reads the object back [`SETTLE`]
//! after writing it: a node that found the name free when we did has
//! written by then, and whoever's body is not there has lost (the last
//! writer wins; the others exit, deleting nothing). Two nodes both win
//! only if one of them took longer than [`SETTLE`] between finding the
//! name free and writing.

use std::thread;
use std::time::{Duration, Instant};

use super::START_DEADLINE;
use crate::config::Config;
use crate::error::{Error, S3Error, S3Step, Taken};
use crate::s3::{self, Client, Got};

/// How long after writing our object it is read back.
const SETTLE: Duration = Duration::from_secs(1);

/// Writes `body` under our name unless a fresh object holds it, and
/// returns its entity tag; `registry` (`s3://BUCKET/PREFIX`) names the
/// registry in messages.
pub(super) fn claim(
    client: &Client,
    config: &Config,
    registry: &str,
    body: &[u8],
) -> Result<String, Error> {
    let name = config.name.as_str();
    let deadline = || Instant::now() + START_DEADLINE;
    let failed = |e: s3::Error| {
        Error::S3(S3Error {
            registry: registry.to_string(),
            step: S3Step::TakeName,
            cause: e.into(),
        })
    };
    let taken = |why: Taken| Error::Taken(config.name.clone(), why);
    let same_moment = || {
        taken(Taken::SameMoment {
            registry: registry.to_string(),
        })
    };
    let written = match client.get(name, None, deadline()).map_err(failed)? {
        Got::Body(held) if held.age.is_none_or(|age| age < config.ttl) => {
            return Err(taken(Taken::FreshObject {
                registry: registry.to_string(),
                age: held.age,
            }));
        }
        // Stale: a node that stopped without leaving.
        Got::Body(_) | Got::NotModified => client.put(name, body, deadline()),
        Got::Missing => client.create(name, body, deadline()),
    };
    let written = written.map_err(|e| match e {
        s3::Error::PreconditionFailed => same_moment(),
        e => failed(e),
    })?;
    thread::sleep(SETTLE);
    match client.get(name, None, deadline()).map_err(failed)? {
        Got::Body(read) if read.bytes == body => Ok(written.etag),
        Got::Body(_) | Got::NotModified | Got::Missing => Err(same_moment()),
    }
}
