//! Configuration in two stages: [`parse()`] turns exactly what the user typed
//! and set in the environment into [`Args`] (no system calls, so it is tested
//! from lists of strings), and [`Args::resolve`] does the side effects (the
//! host's address, its name, the cookie file) to make a [`Config`].

mod parse;
mod resolve;

pub use parse::{Args, Command, USAGE, parse};
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::name::{NameError, NodeName};
use crate::s3;

/// Default registry directory, as in the recipe.
pub(crate) const DEFAULT_SYNC_DIR: &str = "/tmp/sync_dir/";
/// Default shared log file, as in the recipe.
pub const DEFAULT_LOG_FILE: &str = "/tmp/log/cluster.log";
/// The S3 registry's default period: each period costs a PUT and a LIST
/// per node (about $0.005 per 1,000), so it is listed less often than the
/// nodes are pinged.
pub(crate) const DEFAULT_S3_PERIOD_MS: u64 = 10_000;
/// The prefix of `s3://BUCKET` without one: the default sync dir's name.
pub(crate) const DEFAULT_S3_PREFIX: &str = "sync_dir/";
/// Longest interval: a link silent for longer would miss Erlang's 15 s tick.
pub(crate) const MAX_INTERVAL_MS: u64 = 15_000;
/// Shortest interval.
pub(crate) const MIN_INTERVAL_MS: u64 = 10;

/// How a node deals with EPMD, Erlang's port mapper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EpmdMode {
    /// Register with the host's EPMD when one answers.
    #[default]
    Auto,
    /// Be the EPMD for our own name.
    Serve,
    /// Neither.
    Off,
}

impl std::str::FromStr for EpmdMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(EpmdMode::Auto),
            "serve" => Ok(EpmdMode::Serve),
            "off" => Ok(EpmdMode::Off),
            _ => Err(format!("expected auto, serve or off, got '{s}'")),
        }
    }
}

/// The `dns:NAME[:PORT]` form of `--registry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsName {
    /// The name whose A/AAAA records are the candidates.
    pub name: String,
    /// The distribution port every node listens on, when fixed.
    pub port: Option<u16>,
}

impl std::fmt::Display for DnsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "dns:{}:{port}", self.name),
            None => write!(f, "dns:{}", self.name),
        }
    }
}

impl std::str::FromStr for DnsName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, port) = match s.rsplit_once(':') {
            Some((name, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("bad port '{port}' in 'dns:{s}'"))?;
                (name, Some(port))
            }
            None => (s, None),
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
        if name.is_empty() || name.len() > 253 || !name.chars().all(plain) {
            return Err(format!("'dns:{s}': expected dns:NAME or dns:NAME:PORT"));
        }
        Ok(DnsName {
            name: name.to_string(),
            port,
        })
    }
}

/// The resolved configuration of a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our node name.
    pub name: NodeName,
    /// The address we listen on and publish.
    pub ip: IpAddr,
    /// The port to listen on (0: any).
    pub port: u16,
    /// The shared secret.
    pub cookie: String,
    /// The file the cookie was read from (`None`: given as such), so that a
    /// cookie every node refuses can be traced to its file.
    pub cookie_file: Option<PathBuf>,
    /// The registry directory (unused in DNS mode).
    pub sync_dir: PathBuf,
    /// Peers from DNS instead of the directory.
    pub dns: Option<DnsName>,
    /// The name server to ask instead of those in `/etc/resolv.conf`.
    pub dns_server: Option<SocketAddr>,
    /// Peers from S3 instead of the directory: where, and the AWS
    /// settings read from the environment.
    pub(crate) s3: Option<(s3::Location, s3::Settings)>,
    /// How often the registry is listed and our entry written (S3); the
    /// interval for the directory and DNS.
    pub registry_period: Duration,
    /// The shared log file.
    pub log_file: PathBuf,
    /// Heartbeat and ping interval.
    pub interval: Duration,
    /// How long a ping may take.
    pub timeout: Duration,
    /// How long an entry's heartbeat may stand still before it expires.
    pub ttl: Duration,
    /// How to deal with EPMD.
    pub epmd: EpmdMode,
    /// EPMD's port.
    pub epmd_port: u16,
}

impl Config {
    /// The configuration `pulse --name NAME --cookie COOKIE` runs with, for
    /// a node started from code: every other field has the command's
    /// default and may be changed before [`crate::Node::start`]. The
    /// environment is not read.
    pub fn for_node(name: &str, cookie: &str) -> Result<Config, ConfigError> {
        if let Err(why) = name.parse::<NodeName>() {
            return Err(ConfigError::Name(name.to_string(), why));
        }
        check_cookie(cookie).map_err(ConfigError::Cookie)?;
        // A good name and cookie leave the command nothing to refuse: the
        // host falls back to the first address when it does not resolve.
        let args = ["--name", name, "--cookie", cookie].map(OsString::from);
        Ok(parse(args, |_| None)
            .and_then(|args| args.resolve())
            .expect("a valid name and cookie make a configuration"))
    }
}

/// Why [`Config::for_node`] refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The node name is not an Erlang `alive@host` name (the name, and why).
    Name(String, NameError),
    /// The cookie cannot be used: empty, too long or not printable (why).
    Cookie(CookieError),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Name(name, why) => write!(f, "bad node name {name:?}: {why}"),
            ConfigError::Cookie(why) => write!(f, "bad cookie: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a cookie cannot be used: it must be 1 to 255 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieError {
    /// It is empty.
    Empty,
    /// It is longer than 255 bytes (how many it has).
    TooLong(usize),
    /// It holds a control character (a newline, say).
    ControlCharacter,
}

impl CookieError {
    /// The message for the cookie called `cookie` ("the cookie", or "the
    /// cookie in FILE").
    pub(crate) fn said_of(&self, cookie: &str) -> String {
        let problem = match self {
            CookieError::Empty => "it is empty".to_string(),
            CookieError::TooLong(bytes) => format!("it has {bytes} bytes"),
            CookieError::ControlCharacter => "it holds a control character".to_string(),
        };
        format!("{cookie} must be 1 to 255 printable characters, but {problem}")
    }
}

impl std::fmt::Display for CookieError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.said_of("the cookie"))
    }
}

impl std::error::Error for CookieError {}

/// Whether a cookie can be used: 1 to 255 bytes, no control character.
pub(crate) fn check_cookie(cookie: &str) -> Result<(), CookieError> {
    if cookie.is_empty() {
        Err(CookieError::Empty)
    } else if cookie.len() > 255 {
        Err(CookieError::TooLong(cookie.len()))
    } else if cookie.chars().any(char::is_control) {
        Err(CookieError::ControlCharacter)
    } else {
        Ok(())
    }
}
