//! Why a node could not start: one type for every part [`crate::Node::start`]
//! starts (the listener, EPMD, the peer source, the round thread), so that
//! each part returns it without knowing the node that wires them.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::name::NodeName;

/// Why a node could not start.
#[derive(Debug)]
pub enum Error {
    /// The distribution port could not be bound.
    Bind(SocketAddr, io::Error),
    /// A live node holds our name (why we think so).
    Taken(NodeName, String),
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
