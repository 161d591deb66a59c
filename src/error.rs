//! Why a node could not start: one type for every part [`crate::Node::start`]
//! starts (the listener, EPMD, the peer source, the round thread), so that
//! each part returns it without knowing the node that wires them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::decimal::Fixed;
use crate::name::NodeName;

/// Why a node could not start.
#[derive(Debug)]
pub enum Error {
    /// The distribution port could not be bound.
    Bind(SocketAddr, io::Error),
    /// A live node holds our name (why we think so).
    Taken(NodeName, Taken),
    /// Our entry could not be written.
    Registry(io::Error),
    /// A thread could not be started.
    Thread(io::Error),
    /// EPMD already knows our name, or cannot be served.
    Epmd(EpmdError),
    /// No name server to ask.
    Dns(DnsError),
    /// The S3 registry cannot be used as configured (what to fix).
    S3(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Error::Taken(name, why) => write!(f, "the name {name} is taken: {why}"),
            Error::Registry(e) => write!(f, "cannot write to the registry: {e}"),
            Error::Thread(e) => write!(f, "cannot start a thread: {e}"),
            Error::Epmd(why) => write!(f, "epmd: {why}"),
            Error::Dns(why) => write!(f, "dns: {why}"),
            Error::S3(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why we think a live node holds our name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// A running (maybe frozen) pulse node holds the lock of its registry
    /// entry.
    Locked,
    /// A node answers under the name at the address its entry gives.
    Answers(SocketAddr),
    /// A node that is not pulse wrote its entry less than the TTL ago (how
    /// long ago).
    ForeignEntry(Duration),
    /// EPMD on the name's host knows the name.
    EpmdKnows {
        /// Where that EPMD listens.
        at: SocketAddr,
        /// The port it gives for the name.
        port: u16,
    },
    /// A node that takes no lock (the recipe's) wrote its entry while we
    /// were taking the name.
    WrittenMeanwhile,
    /// The name's object in the S3 registry was written less than the TTL
    /// ago.
    FreshObject {
        /// The registry, `s3://BUCKET/PREFIX`.
        registry: String,
        /// How long ago, by the store's clock; `None` when it does not say.
        age: Option<Duration>,
    },
    /// Another node took the name in the S3 registry at the same moment as
    /// we did, and its object is the one left.
    SameMoment {
        /// The registry, `s3://BUCKET/PREFIX`.
        registry: String,
    },
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = |age: &Duration| Fixed::seconds(age.as_millis());
        match self {
            Taken::Locked => f.write_str("a running pulse node holds its registry entry"),
            Taken::Answers(addr) => write!(f, "a live node answers under it at {addr}"),
            Taken::ForeignEntry(age) => write!(
                f,
                "its registry entry was written {} s ago by a node that is not pulse",
                seconds(age)
            ),
            Taken::EpmdKnows { at, port } => write!(f, "EPMD at {at} knows it (port {port})"),
            Taken::WrittenMeanwhile => f.write_str("another node wrote its entry meanwhile"),
            Taken::FreshObject {
                registry,
                age: Some(age),
            } => write!(
                f,
                "its object in S3 registry {registry} was written {} s ago, less than the TTL",
                seconds(age)
            ),
            Taken::FreshObject {
                registry,
                age: None,
            } => write!(
                f,
                "its object in S3 registry {registry} was written at a time the store does \
                 not say, less than the TTL"
            ),
            Taken::SameMoment { registry } => write!(
                f,
                "another node took it in S3 registry {registry} at the same moment"
            ),
        }
    }
}

impl std::error::Error for Taken {}

/// Why EPMD could not be used, as configured by `--epmd`.
#[derive(Debug)]
pub enum EpmdError {
    /// `serve`: EPMD's port could not be taken (where, and why).
    Serve(SocketAddr, io::Error),
    /// `auto`: EPMD kept refusing our name, which another node holds there
    /// (what was refused, where, and how often).
    NameTaken(String),
}

impl fmt::Display for EpmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EpmdError::Serve(at, e) => write!(f, "cannot serve on {at}: {e}"),
            EpmdError::NameTaken(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for EpmdError {}

/// Why DNS mode has no name server to ask.
#[derive(Debug)]
pub enum DnsError {
    /// `--dns-server`: nothing can answer at that address (a wildcard or
    /// broadcast address, say).
    Unreachable(SocketAddr),
    /// `/etc/resolv.conf` could not be read.
    ResolvConf(io::Error),
    /// `/etc/resolv.conf` lists no name server.
    NoNameServer,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::Unreachable(server) => write!(
                f,
                "--dns-server {server}: no name server can answer at that address"
            ),
            DnsError::ResolvConf(e) => {
                write!(f, "cannot read /etc/resolv.conf: {e} (give --dns-server)")
            }
            DnsError::NoNameServer => {
                f.write_str("no nameserver in /etc/resolv.conf (give --dns-server)")
            }
        }
    }
}

impl std::error::Error for DnsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_says_why_in_the_same_words() {
        let name: NodeName = "t1@127.0.0.1".parse().expect("name");
        let at = SocketAddr::from(([127, 0, 0, 1], 4369));
        let registry = "s3://b/sync_dir/".to_string();
        for (why, said) in [
            (
                Taken::Locked,
                "a running pulse node holds its registry entry",
            ),
            (
                Taken::Answers(SocketAddr::from(([127, 0, 0, 1], 4001))),
                "a live node answers under it at 127.0.0.1:4001",
            ),
            (
                Taken::ForeignEntry(Duration::from_millis(2_345)),
                "its registry entry was written 2.3 s ago by a node that is not pulse",
            ),
            (
                Taken::EpmdKnows { at, port: 4001 },
                "EPMD at 127.0.0.1:4369 knows it (port 4001)",
            ),
            (
                Taken::WrittenMeanwhile,
                "another node wrote its entry meanwhile",
            ),
            (
                Taken::FreshObject {
                    registry: registry.clone(),
                    age: Some(Duration::from_millis(1_250)),
                },
                "its object in S3 registry s3://b/sync_dir/ was written 1.3 s ago, less than the TTL",
            ),
            (
                Taken::FreshObject {
                    registry: registry.clone(),
                    age: None,
                },
                "its object in S3 registry s3://b/sync_dir/ was written at a time the store \
                 does not say, less than the TTL",
            ),
            (
                Taken::SameMoment { registry },
                "another node took it in S3 registry s3://b/sync_dir/ at the same moment",
            ),
        ] {
            assert_eq!(why.to_string(), said);
            assert_eq!(
                Error::Taken(name.clone(), why).to_string(),
                format!("the name t1@127.0.0.1 is taken: {said}")
            );
        }
    }
}
