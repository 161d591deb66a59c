//! Why a node could not start: one type for every part [`crate::Node::start`]
//! starts (the listener, EPMD, the peer source, the round thread), so that
//! each part returns it without knowing the node that wires them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::decimal::Fixed;
use crate::name::NodeName;
use crate::s3;

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
    S3(S3Error),
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

/// Why the S3 registry could not be used at start: what was being done,
/// in which registry, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    /// The registry, `s3://BUCKET/PREFIX`.
    pub registry: String,
    /// What was being done.
    pub step: S3Step,
    /// Why it failed.
    pub cause: S3Cause,
}

/// What a node was doing with its S3 registry when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Step {
    /// Making the store's client of the AWS settings.
    Client,
    /// Checking, before anything else, that the bucket can be used.
    CheckBucket,
    /// Taking our name: reading our object, writing it, reading it back.
    TakeName,
}

/// Why a request to the store, or the making of its client, failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3Cause {
    /// The credentials are refused (S3's error code, when it gave one).
    AccessDenied(Option<String>),
    /// The bucket does not exist.
    NoSuchBucket,
    /// The bucket is in another region than the one `AWS_REGION` names.
    WrongRegion,
    /// This host's clock differs too much from the store's to sign requests.
    ClockSkew,
    /// No exchange with the store, or none in time (what happened).
    Unreachable(String),
    /// The AWS settings cannot make a client (what to fix).
    Settings(String),
    /// Any other failure: a status, a reply that makes no sense, a request
    /// to slow down (what happened).
    Other(String),
}

impl S3Cause {
    /// The store client's own error for a cause it names (its words, and
    /// its judgement of whose fault it is), or the text of one it does not.
    fn named(&self) -> Result<s3::Error, &str> {
        match self {
            S3Cause::AccessDenied(code) => Ok(s3::Error::AccessDenied {
                code: code.clone().unwrap_or_default(),
            }),
            S3Cause::NoSuchBucket => Ok(s3::Error::NoSuchBucket),
            S3Cause::WrongRegion => Ok(s3::Error::WrongRegion),
            S3Cause::ClockSkew => Ok(s3::Error::ClockSkew),
            S3Cause::Unreachable(what) | S3Cause::Settings(what) | S3Cause::Other(what) => {
                Err(what)
            }
        }
    }

    /// Whether the configuration is at fault (the key, the bucket, the
    /// region, the clock) rather than the moment: at start, a reason to
    /// stop with what to fix.
    fn is_configuration(&self) -> bool {
        self.named().is_ok_and(|e| e.is_configuration())
    }
}

impl From<s3::Error> for S3Cause {
    fn from(e: s3::Error) -> S3Cause {
        match e {
            s3::Error::AccessDenied { code } if code.is_empty() => S3Cause::AccessDenied(None),
            s3::Error::AccessDenied { code } => S3Cause::AccessDenied(Some(code)),
            s3::Error::NoSuchBucket => S3Cause::NoSuchBucket,
            s3::Error::WrongRegion => S3Cause::WrongRegion,
            s3::Error::ClockSkew => S3Cause::ClockSkew,
            e @ (s3::Error::Transport(_) | s3::Error::Timeout(_)) => {
                S3Cause::Unreachable(e.to_string())
            }
            e @ (s3::Error::Throttled
            | s3::Error::PreconditionFailed
            | s3::Error::Garbage(_)
            | s3::Error::Status { .. }) => S3Cause::Other(e.to_string()),
        }
    }
}

impl fmt::Display for S3Cause {
    /// The store client's words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.named() {
            Ok(e) => e.fmt(f),
            Err(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for S3Cause {}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let S3Error {
            registry,
            step,
            cause,
        } = self;
        match step {
            S3Step::CheckBucket if !cause.is_configuration() => write!(
                f,
                "S3 registry {registry}: cannot reach the store: {cause}; check \
                 AWS_ENDPOINT_URL_S3 or the network"
            ),
            S3Step::Client | S3Step::CheckBucket => write!(f, "S3 registry {registry}: {cause}"),
            S3Step::TakeName => {
                write!(f, "S3 registry {registry}: cannot take our name: {cause}")
            }
        }
    }
}

// The message holds the cause's, so it is not given again as a source.
impl std::error::Error for S3Error {}

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

    #[test]
    fn s3_errors_say_what_failed_where_and_why_in_the_same_words() {
        let store = |e: s3::Error| (S3Cause::from(e.clone()), e.to_string());
        let denied = "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) \
                      and the key's rights on the bucket";
        for ((cause, said), want, configuration) in [
            (
                store(s3::Error::AccessDenied {
                    code: String::new(),
                }),
                S3Cause::AccessDenied(None),
                true,
            ),
            (
                store(s3::Error::AccessDenied {
                    code: "InvalidAccessKeyId".into(),
                }),
                S3Cause::AccessDenied(Some("InvalidAccessKeyId".into())),
                true,
            ),
            (store(s3::Error::NoSuchBucket), S3Cause::NoSuchBucket, true),
            (store(s3::Error::WrongRegion), S3Cause::WrongRegion, true),
            (store(s3::Error::ClockSkew), S3Cause::ClockSkew, true),
            (
                store(s3::Error::Transport("connection failed".into())),
                S3Cause::Unreachable("connection failed".into()),
                false,
            ),
            (
                store(s3::Error::Timeout("connect")),
                S3Cause::Unreachable("timeout (connect)".into()),
                false,
            ),
            (
                store(s3::Error::Throttled),
                S3Cause::Other("the store asks to slow down".into()),
                false,
            ),
            (
                store(s3::Error::PreconditionFailed),
                S3Cause::Other("the object exists already".into()),
                false,
            ),
            (
                store(s3::Error::Garbage("a redirect".into())),
                S3Cause::Other("the store's reply makes no sense: a redirect".into()),
                false,
            ),
            (
                store(s3::Error::Status {
                    status: 500,
                    code: "InternalError".into(),
                }),
                S3Cause::Other("the store answered 500 InternalError".into()),
                false,
            ),
        ] {
            assert_eq!(cause, want);
            assert_eq!(cause.to_string(), said);
            assert_eq!(cause.is_configuration(), configuration, "{cause:?}");
        }
        assert_eq!(
            S3Cause::AccessDenied(None).to_string(),
            format!("access denied: {denied}")
        );
        assert_eq!(
            S3Cause::AccessDenied(Some("SignatureDoesNotMatch".into())).to_string(),
            format!("access denied (SignatureDoesNotMatch): {denied}")
        );
        assert_eq!(
            S3Cause::NoSuchBucket.to_string(),
            "no such bucket: create it, or fix the bucket in --registry s3://BUCKET/PREFIX"
        );
        assert_eq!(
            S3Cause::WrongRegion.to_string(),
            "the bucket is in another region: set AWS_REGION to the bucket's region"
        );
        assert_eq!(
            S3Cause::ClockSkew.to_string(),
            "this host's clock differs too much from the store's to sign requests: set the clock"
        );
        let at = |step, cause| {
            Error::S3(S3Error {
                registry: "s3://b/sync_dir/".into(),
                step,
                cause,
            })
            .to_string()
        };
        let settings = "AWS_CA_BUNDLE: no PEM certificate in /x; give a file of CA certificates";
        assert_eq!(
            at(S3Step::Client, S3Cause::Settings(settings.into())),
            format!("S3 registry s3://b/sync_dir/: {settings}")
        );
        assert_eq!(
            at(S3Step::CheckBucket, S3Cause::NoSuchBucket),
            "S3 registry s3://b/sync_dir/: no such bucket: create it, or fix the bucket in \
             --registry s3://BUCKET/PREFIX"
        );
        assert_eq!(
            at(
                S3Step::CheckBucket,
                S3Cause::Unreachable("connection failed".into())
            ),
            "S3 registry s3://b/sync_dir/: cannot reach the store: connection failed; check \
             AWS_ENDPOINT_URL_S3 or the network"
        );
        assert_eq!(
            at(
                S3Step::TakeName,
                S3Cause::Other("the store answered 500".into())
            ),
            "S3 registry s3://b/sync_dir/: cannot take our name: the store answered 500"
        );
    }
}
