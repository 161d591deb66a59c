//! The registry record: one node's file, as text (PROTOCOL.md, "Registry record").
//!
//! ```text
//! pulse 1
//! name a1@127.0.0.1
//! addr 127.0.0.1:40123
//! heartbeat 1795474399123
//! ```
//!
//! Keys come in any order and unknown keys are ignored, so later versions can
//! add keys. A file holding a single word instead (the recipe's Elixir nodes
//! write a timestamp) is a *bare* entry: it has a heartbeat but no address.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::name::NodeName;

/// The first line of a record of the current version.
const MAGIC: &str = "pulse 1";

/// One node's registry record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The node's name (equal to the file's name).
    pub name: NodeName,
    /// Where its distribution listener is; `None` for a bare entry.
    pub addr: Option<SocketAddr>,
    /// The heartbeat as written.
    pub heartbeat: String,
    /// Changes with every rewrite of the file (its inode, modification time
    /// and size, hashed); 0 for a record not read from a file. Liveness is
    /// judged by whether it changes, which also covers writers that rewrite
    /// a file in place.
    pub version: u64,
}

impl Record {
    /// The heartbeat as Unix milliseconds, when it is one.
    pub fn heartbeat_ms(&self) -> Option<u64> {
        self.heartbeat.parse().ok()
    }

    /// The record's text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{MAGIC}\nname {}\n", self.name);
        if let Some(addr) = self.addr {
            text.push_str(&format!("addr {addr}\n"));
        }
        text.push_str(&format!("heartbeat {}\n", self.heartbeat));
        text
    }

    /// Parses a record found in the file called `name`.
    pub fn parse(name: &NodeName, text: &str) -> Result<Record, String> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim();
        if first != MAGIC {
            if first.starts_with("pulse ") {
                return Err(format!("unsupported record version '{first}'"));
            }
            // A bare entry: one short word, nothing else.
            let bare = !first.is_empty()
                && first.len() <= 64
                && !first.contains(char::is_whitespace)
                && lines.all(|l| l.trim().is_empty());
            if bare && first.chars().all(|c| c.is_ascii_graphic()) {
                return Ok(Record {
                    name: name.clone(),
                    addr: None,
                    heartbeat: first.to_string(),
                    version: 0,
                });
            }
            return Err("not a pulse record".into());
        }
        let (mut rec_name, mut addr, mut heartbeat) = (None, None, None);
        for line in lines {
            let Some((key, value)) = line.trim().split_once(' ') else {
                continue;
            };
            match key {
                "name" => rec_name = Some(value.to_string()),
                "addr" => {
                    addr = Some(
                        value
                            .parse::<SocketAddr>()
                            .map_err(|_| format!("bad addr '{value}'"))?,
                    )
                }
                "heartbeat" => heartbeat = Some(value.to_string()),
                _ => {}
            }
        }
        if rec_name.as_deref() != Some(name.as_str()) {
            return Err("the name inside differs from the file name".into());
        }
        let addr = addr.ok_or("no addr")?;
        if addr.port() == 0 {
            return Err("addr has port 0".into());
        }
        let heartbeat = heartbeat.filter(|h| !h.is_empty()).ok_or("no heartbeat")?;
        Ok(Record {
            name: name.clone(),
            addr: Some(addr),
            heartbeat,
            version: 0,
        })
    }
}

/// Unix milliseconds now, the heartbeat pulse writes.
pub fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        s.parse().expect("valid name")
    }

    fn record(n: &str, port: u16, hb: u64) -> Record {
        Record {
            name: name(n),
            addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            heartbeat: hb.to_string(),
            version: 0,
        }
    }

    #[test]
    fn record_text_roundtrips() {
        let r = record("a@127.0.0.1", 4000, 17);
        assert_eq!(Record::parse(&r.name, &r.to_text()), Ok(r));
    }

    #[test]
    fn bad_records_are_rejected() {
        let n = name("a@127.0.0.1");
        for (text, why) in [
            (
                "pulse 1\nname b@127.0.0.1\naddr 127.0.0.1:1\nheartbeat 1\n",
                "differs",
            ),
            ("pulse 1\nname a@127.0.0.1\nheartbeat 1\n", "no addr"),
            (
                "pulse 1\nname a@127.0.0.1\naddr x\nheartbeat 1\n",
                "bad addr",
            ),
            (
                "pulse 1\nname a@127.0.0.1\naddr 127.0.0.1:0\nheartbeat 1\n",
                "port 0",
            ),
            (
                "pulse 1\nname a@127.0.0.1\naddr 127.0.0.1:1\n",
                "no heartbeat",
            ),
            ("pulse 9\n", "version"),
            ("two words\n", "not a pulse record"),
            ("", "not a pulse record"),
        ] {
            let err = Record::parse(&n, text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let bare = Record::parse(&n, "1795474399123\n").expect("bare entry");
        assert_eq!(
            (bare.addr, bare.heartbeat_ms()),
            (None, Some(1_795_474_399_123))
        );
    }
}
