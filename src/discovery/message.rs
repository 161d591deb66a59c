//! The few DNS messages pulse needs (RFC 1035): a query for one name and
//! type, and the A/AAAA records of its reply.
//!
//! Written here rather than taken from a DNS crate: the crates parse every
//! record type there is, and the smallest well-kept one added 130 KB to a
//! binary that must stay under 1 MB. Replies are untrusted: every length and
//! offset is checked against the message, compression pointers may only
//! point backwards (so they cannot loop), and anything malformed is an
//! error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Header flag: this is a response.
const FLAG_QR: u16 = 0x8000;
/// Header flag: the reply was truncated.
const FLAG_TC: u16 = 0x0200;
/// Header flag: recursion desired.
const FLAG_RD: u16 = 0x0100;
/// Longest name on the wire, and longest label.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Response code: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;

/// What a reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The server cut it short: ask again over TCP.
    pub truncated: bool,
    /// The response code (0: no error).
    pub rcode: u8,
    /// The A and AAAA records of the answer section, in order.
    pub addrs: Vec<IpAddr>,
}

/// A query for `name` (without a trailing dot) and `qtype`, recursion
/// desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, &'static str> {
    let mut msg = Vec::with_capacity(18 + name.len());
    for v in [id, FLAG_RD, 1, 0, 0, 0] {
        msg.extend_from_slice(&v.to_be_bytes());
    }
    if name.is_empty() || name.len() + 2 > MAX_NAME {
        return Err("the name must be 1 to 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("every label must be 1 to 63 bytes");
        }
        if !label.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a label is not printable ASCII");
        }
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(msg)
}

/// Whether `msg` looks like a response to query `id`: the cheap check made
/// before parsing.
pub fn is_response_to(msg: &[u8], id: u16) -> bool {
    let mut r = Reader { msg, pos: 0 };
    matches!((r.u16(), r.u16()), (Ok(got), Ok(flags)) if got == id && flags & FLAG_QR != 0)
}

/// Parses a reply to our query (`id`, `name`, `qtype`). A reply to another
/// question is an error.
pub fn parse_reply(msg: &[u8], id: u16, name: &str, qtype: u16) -> Result<Reply, &'static str> {
    let mut r = Reader { msg, pos: 0 };
    let (got_id, flags) = (r.u16()?, r.u16()?);
    let (qdcount, ancount) = (r.u16()?, r.u16()?);
    r.skip(4)?; // authority and additional counts: not read
    if got_id != id || flags & FLAG_QR == 0 {
        return Err("not a response to our query");
    }
    if qdcount != 1 {
        return Err("not one question in the reply");
    }
    let asked = r.name()?;
    let (got_type, got_class) = (r.u16()?, r.u16()?);
    if !asked.eq_ignore_ascii_case(name) || got_type != qtype || got_class != CLASS_IN {
        return Err("a reply to another question");
    }
    let truncated = flags & FLAG_TC != 0;
    let rcode = (flags & 0x000f) as u8;
    let mut addrs = Vec::new();
    // A truncated reply may end anywhere: its records are not read.
    if !truncated {
        for _ in 0..ancount {
            r.name()?;
            let (rtype, class) = (r.u16()?, r.u16()?);
            r.skip(4)?; // TTL
            let len = usize::from(r.u16()?);
            let data = r.take(len)?;
            match (rtype, class, data.len()) {
                (TYPE_A, CLASS_IN, 4) => {
                    let b: [u8; 4] = data.try_into().map_err(|_| "A record")?;
                    addrs.push(IpAddr::from(Ipv4Addr::from(b)));
                }
                (TYPE_AAAA, CLASS_IN, 16) => {
                    let b: [u8; 16] = data.try_into().map_err(|_| "AAAA record")?;
                    addrs.push(IpAddr::from(Ipv6Addr::from(b)));
                }
                // CNAMEs and anything else: skipped.
                _ => {}
            }
        }
    }
    Ok(Reply {
        truncated,
        rcode,
        addrs,
    })
}

/// A cursor over an untrusted message.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.msg.len());
        let end = end.ok_or("message cut short")?;
        let bytes = &self.msg[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), &'static str> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a name, following compression pointers, which must point
    /// before the label that holds them.
    fn name(&mut self) -> Result<String, &'static str> {
        let mut name = String::new();
        let mut at = self.pos;
        let mut resume = None;
        loop {
            let len = *self.msg.get(at).ok_or("name runs past the message")?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    at += 1;
                    break;
                }
                0x00 => {
                    let label = self
                        .msg
                        .get(at + 1..at + 1 + usize::from(len))
                        .ok_or("label runs past the message")?;
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.extend(label.iter().map(|&b| char::from(b)));
                    if name.len() > MAX_NAME {
                        return Err("name longer than 255 bytes");
                    }
                    at += 1 + usize::from(len);
                }
                0xc0 => {
                    let low = *self.msg.get(at + 1).ok_or("pointer cut short")?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                    if target >= at {
                        return Err("compression pointer points forward");
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err("unknown label type"),
            }
        }
        self.pos = resume.unwrap_or(at);
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `query(7, "a.test", A)` with these answer records
    /// (name as a pointer to the question).
    fn reply(flags: u16, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut msg = query(7, "a.test", TYPE_A).expect("query");
        msg[2..4].copy_from_slice(&(flags | FLAG_QR).to_be_bytes());
        msg[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (rtype, data) in records {
            msg.extend_from_slice(&[0xc0, 12]);
            msg.extend_from_slice(&rtype.to_be_bytes());
            msg.extend_from_slice(&CLASS_IN.to_be_bytes());
            msg.extend_from_slice(&[0, 0, 0, 5]);
            msg.extend_from_slice(&(data.len() as u16).to_be_bytes());
            msg.extend_from_slice(data);
        }
        msg
    }

    #[test]
    fn query_bytes() {
        let q = query(0x1234, "a.bc", TYPE_AAAA).expect("query");
        assert_eq!(
            q,
            [
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 28, 0, 1
            ]
        );
        for bad in ["", "a..b", ".a", &"x".repeat(64), &"a.".repeat(127), "a b"] {
            assert!(query(1, bad, TYPE_A).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_with_pointers_cnames_and_both_families() {
        let six = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let msg = reply(
            0,
            &[
                (TYPE_A, &[127, 1, 0, 1]),
                (5, &[1, b'x', 0]),
                (TYPE_AAAA, &six),
                (TYPE_A, &[1, 2, 3]),
            ],
        );
        let got = parse_reply(&msg, 7, "A.TEST", TYPE_A).expect("parses");
        assert_eq!(
            got.addrs,
            vec![
                IpAddr::from([127, 1, 0, 1]),
                IpAddr::from(Ipv6Addr::LOCALHOST)
            ]
        );
        assert!(!got.truncated);
        assert!(is_response_to(&msg, 7) && !is_response_to(&msg, 8));
    }

    #[test]
    fn truncated_and_error_replies() {
        let mut msg = reply(FLAG_TC, &[(TYPE_A, &[1, 2, 3, 4])]);
        msg.truncate(msg.len() - 3);
        let got = parse_reply(&msg, 7, "a.test", TYPE_A).expect("parses");
        assert!(got.truncated && got.addrs.is_empty());
        let got = parse_reply(&reply(3, &[]), 7, "a.test", TYPE_A).expect("parses");
        assert_eq!(got.rcode, RCODE_NXDOMAIN);
    }

    #[test]
    fn hostile_replies_are_errors() {
        let good = reply(0, &[(TYPE_A, &[1, 2, 3, 4])]);
        // Another id, another question, a query instead of a reply.
        assert!(parse_reply(&good, 8, "a.test", TYPE_A).is_err());
        assert!(parse_reply(&good, 7, "b.test", TYPE_A).is_err());
        assert!(parse_reply(&good, 7, "a.test", TYPE_AAAA).is_err());
        assert!(parse_reply(&query(7, "a.test", TYPE_A).expect("q"), 7, "a.test", TYPE_A).is_err());
        // Every cut of a good reply.
        for n in 0..good.len() {
            assert!(parse_reply(&good[..n], 7, "a.test", TYPE_A).is_err(), "{n}");
        }
        // A pointer to itself, a forward pointer, a reserved label type.
        for bad_name in [[0xc0u8, 12], [0xc0, 40], [0x80, 1]] {
            let mut msg = good.clone();
            msg[12..14].copy_from_slice(&bad_name);
            assert!(parse_reply(&msg, 7, "a.test", TYPE_A).is_err());
        }
        // Claims 65535 answers it does not have.
        let mut msg = good.clone();
        msg[6..8].copy_from_slice(&[0xff, 0xff]);
        assert!(parse_reply(&msg, 7, "a.test", TYPE_A).is_err());
        // Bytes from a simple generator: errors or replies, never a panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut msg = good.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % msg.len() as u64) as usize;
                msg[at] = (seed >> 32) as u8;
            }
            let _ = parse_reply(&msg, 7, "a.test", TYPE_A);
        }
    }
}
