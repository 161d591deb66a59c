//! Node names (`alive@host`): validation, the recipe's default name, and the
//! host's address.
//!
//! A name becomes a file name in the shared registry, so it is validated
//! before it touches the file system: ASCII letters, digits, `_` and `-`
//! before the `@`; letters, digits, `.`, `-` and `_` after it, never `..`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Arc;

use time::{OffsetDateTime, UtcOffset};

/// Longest name accepted (Erlang's atom limit).
pub(crate) const MAX_LEN: usize = 255;

/// A validated node name. Names are copied into every round's targets,
/// results and members and into link events, so a copy shares the text
/// rather than allocating it again.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Arc<str>);

impl NodeName {
    /// The part before the `@`, which EPMD knows the node by.
    pub fn alive(&self) -> &str {
        self.0.split_once('@').map_or(&self.0, |(a, _)| a)
    }

    /// The part after the `@`.
    pub fn host(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, h)| h)
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_LEN {
            return Err(NameError::TooLong);
        }
        let Some((alive, host)) = s.split_once('@') else {
            return Err(NameError::NoHost(s.to_string()));
        };
        let alive_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        let host_ok = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
        if alive.is_empty() || !alive.chars().all(alive_ok) {
            return Err(NameError::BadAlive(s.to_string()));
        }
        if host.is_empty()
            || !host.chars().all(host_ok)
            || host.starts_with('.')
            || host.contains("..")
        {
            return Err(NameError::BadHost(s.to_string()));
        }
        Ok(NodeName(Arc::from(s)))
    }
}

/// Why a text is not a node name (each variant but the first holds the
/// text refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// It is longer than 255 bytes, Erlang's atom limit.
    TooLong,
    /// It has no `@`: not `name@host`.
    NoHost(String),
    /// The part before the `@` is empty or not letters, digits, `_` or `-`.
    BadAlive(String),
    /// The host after the `@` is empty, starts with `.`, holds `..`, or is
    /// not letters, digits, `.`, `_` or `-`.
    BadHost(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::TooLong => write!(f, "node name longer than {MAX_LEN} bytes"),
            NameError::NoHost(s) => write!(f, "'{s}' is not a node name (expected name@host)"),
            NameError::BadAlive(s) => write!(
                f,
                "'{s}': the part before '@' must be letters, digits, '_' or '-'"
            ),
            NameError::BadHost(s) => write!(
                f,
                "'{s}': the host after '@' must be letters, digits, '.', '_' or '-'"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// The recipe's name: the first 10 hex digits of the md5 of the current time
/// exactly as `date -Ins` prints it, newline included.
pub(crate) fn recipe_alive() -> String {
    let text = date_ins_now();
    let hex = format!("{:x}", md5::compute(text.as_bytes()));
    hex[..10].to_string()
}

/// The current time as `date -Ins` prints it in UTC, e.g.
/// `2026-11-23T22:53:19,123456789+00:00\n` (what `date` prints in a
/// container, which has no zone). Only its md5 is used, so the zone of the
/// host's own `date` does not matter, and no program is run for it.
fn date_ins_now() -> String {
    format_date_ins_utc(OffsetDateTime::now_utc())
}

/// `date -Ins` for an instant, in UTC.
fn format_date_ins_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02},{:09}+00:00\n",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// The host's first non-loopback IPv4 address, as the recipe's run.sh takes
/// it; `127.0.0.1` when there is none.
pub(crate) fn detect_ipv4() -> IpAddr {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .find_map(|i| match i.ip() {
            IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
            IpAddr::V6(_) => None,
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// This machine's short host name (up to the first `.`), the host part
/// `erl -sname` gives a node.
pub(crate) fn short_host_name() -> Result<String, String> {
    let name = hostname::get().map_err(|e| format!("cannot read the host name: {e}"))?;
    let name = name
        .into_string()
        .map_err(|_| "the host name is not valid UTF-8".to_string())?;
    Ok(name.split('.').next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        for ok in [
            "a1@127.0.0.1",
            "7c57022cc5@172.19.0.6",
            "x_y-z@host-1.example",
        ] {
            let n: NodeName = ok.parse().expect(ok);
            assert_eq!(n.as_str(), ok);
        }
        let n: NodeName = "a1@127.0.0.1".parse().expect("valid");
        assert_eq!((n.alive(), n.host()), ("a1", "127.0.0.1"));
        let long = format!("a@{}", "h".repeat(300));
        for bad in [
            "", "a1", "@h", "a@", "a/b@h", "a@h/x", "a@..", "a@.h", "a@h..x", "a b@h", "a@h@h",
            &long, "é@h",
        ] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_errors_say_why_in_the_same_words() {
        let why = |s: &str| s.parse::<NodeName>().expect_err(s);
        let long = format!("a@{}", "h".repeat(300));
        assert_eq!(why(&long), NameError::TooLong);
        assert_eq!(why(&long).to_string(), "node name longer than 255 bytes");
        assert_eq!(why("a1"), NameError::NoHost("a1".into()));
        assert_eq!(
            why("a1").to_string(),
            "'a1' is not a node name (expected name@host)"
        );
        assert_eq!(why("a/b@h"), NameError::BadAlive("a/b@h".into()));
        assert_eq!(
            why("a/b@h").to_string(),
            "'a/b@h': the part before '@' must be letters, digits, '_' or '-'"
        );
        assert_eq!(why("a@h..x"), NameError::BadHost("a@h..x".into()));
        assert_eq!(
            why("a@h..x").to_string(),
            "'a@h..x': the host after '@' must be letters, digits, '.', '_' or '-'"
        );
    }

    #[test]
    fn date_ins_format_matches_date() {
        let at = |secs: i128, nanos: i128| {
            let t = OffsetDateTime::from_unix_timestamp_nanos(secs * 1_000_000_000 + nanos)
                .expect("in range");
            format_date_ins_utc(t)
        };
        assert_eq!(
            at(1_795_474_399, 123_456_789),
            "2026-11-23T22:53:19,123456789+00:00\n"
        );
        assert_eq!(at(0, 0), "1970-01-01T00:00:00,000000000+00:00\n");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00,000000005+00:00\n");
        // Another offset is shown in UTC, as `date` in a container shows it.
        let east = OffsetDateTime::from_unix_timestamp(0)
            .expect("epoch")
            .to_offset(UtcOffset::from_hms(2, 0, 0).expect("offset"));
        assert_eq!(
            format_date_ins_utc(east),
            "1970-01-01T00:00:00,000000000+00:00\n"
        );
    }

    #[test]
    fn recipe_alive_is_ten_hex_digits() {
        let a = recipe_alive();
        assert_eq!(a.len(), 10);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
