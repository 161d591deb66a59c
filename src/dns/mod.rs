//! pulse's own DNS client: a lookup of a name's A and AAAA records straight
//! to a name server, every wait by one deadline, for the `pulse-dns`
//! thread, the one-shot checks of `status`, and host names that the hosts
//! file does not know.

mod host;
mod lookup;
mod message;

pub(crate) use host::resolve_host;
pub(crate) use lookup::ResolvConf;
pub use lookup::{LookupError, lookup};

use std::net::IpAddr;
use std::time::Instant;

/// Looks `name` up on each server for each search-domain form, until one
/// gives addresses.
pub(crate) fn resolve(
    resolv: &ResolvConf,
    name: &str,
    deadline: Instant,
) -> Result<Vec<IpAddr>, LookupError> {
    let mut last = LookupError::Server("no name server".into());
    for candidate in resolv.candidates(name) {
        for server in &resolv.servers {
            match lookup(*server, &candidate, deadline) {
                Ok(ips) if !ips.is_empty() => return Ok(ips),
                Ok(_) => last = LookupError::NotFound,
                Err(LookupError::NotFound) => {
                    last = LookupError::NotFound;
                    // Every server knows the same names: try the next form.
                    break;
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
        }
    }
    Err(last)
}
