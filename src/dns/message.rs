//! The few DNS messages pulse needs (RFC 1035): a query for one name and
//! type, and the A/AAAA records of its reply, through `simple-dns`.
//!
//! Replies are untrusted. The crate checks every length and offset against
//! the message and lets compression pointers point only backwards (so they
//! cannot loop); this module first checks that the header's counts fit the
//! message (so a reply claiming 65,535 records allocates nothing for them)
//! and hands the crate only the sections pulse reads: the question and,
//! unless the reply is truncated (it may end anywhere), the answers.
//! Anything malformed is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{
    CLASS, Label, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE, header_buffer,
};

/// Longest name on the wire, and longest label.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// The header's length.
const HEADER: usize = 12;
/// The fewest bytes a question (root name, type, class) and a resource
/// record (root name, type, class, TTL, length) take.
const MIN_QUESTION: usize = 5;
const MIN_RECORD: usize = 11;

/// What a reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    /// The server cut it short: ask again over TCP.
    pub truncated: bool,
    /// The response code.
    pub rcode: RCODE,
    /// The A and AAAA records of the answer section, in order.
    pub addrs: Vec<IpAddr>,
}

/// A query for `name` (without a trailing dot) and `qtype` (A or AAAA),
/// recursion desired.
pub(super) fn query(id: u16, name: &str, qtype: TYPE) -> Result<Vec<u8>, &'static str> {
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet.questions.push(Question::new(
        Name::new_with_labels(&labels(name)?),
        QTYPE::TYPE(qtype),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet
        .build_bytes_vec()
        .map_err(|_| "a query the encoder refuses")
}

/// The labels of `name`, split at every dot (no escapes: a name pulse is
/// given is a host name).
fn labels(name: &str) -> Result<Vec<Label<'_>>, &'static str> {
    if name.is_empty() || name.len() + 2 > MAX_NAME {
        return Err("the name must be 1 to 253 bytes");
    }
    name.split('.')
        .map(|label| {
            if label.is_empty() || label.len() > MAX_LABEL {
                return Err("every label must be 1 to 63 bytes");
            }
            if !label.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("a label is not printable ASCII");
            }
            Label::new(label.as_bytes()).map_err(|_| "a label the encoder refuses")
        })
        .collect()
}

/// Whether `msg` looks like a response to query `id`: the cheap check made
/// before parsing.
pub(super) fn is_response_to(msg: &[u8], id: u16) -> bool {
    header_buffer::id(msg).is_ok_and(|got| got == id)
        && header_buffer::has_flags(msg, PacketFlag::RESPONSE).unwrap_or(false)
}

/// Parses a reply to our query (`id`, `name`, `qtype`). A reply to another
/// question is an error.
pub(super) fn parse_reply(
    msg: &[u8],
    id: u16,
    name: &str,
    qtype: TYPE,
) -> Result<Reply, &'static str> {
    if !is_response_to(msg, id) {
        return Err("not a response to our query");
    }
    let count = |f: fn(&[u8]) -> simple_dns::Result<u16>| {
        f(msg).map(usize::from).map_err(|_| "header cut short")
    };
    if count(header_buffer::questions)? != 1 {
        return Err("not one question in the reply");
    }
    let truncated =
        header_buffer::has_flags(msg, PacketFlag::TRUNCATION).map_err(|_| "header cut short")?;
    // A truncated reply may end anywhere: its records are not read.
    let answers = if truncated {
        0
    } else {
        count(header_buffer::answers)?
    };
    if HEADER + MIN_QUESTION + answers * MIN_RECORD > msg.len() {
        return Err("more records claimed than the reply holds");
    }
    // The authority and additional sections are not read: the crate sees
    // a copy whose header says they are empty.
    let mut read = msg.to_vec();
    read[6..8].copy_from_slice(&(answers as u16).to_be_bytes());
    read[8..HEADER].fill(0);
    let packet = Packet::parse(&read).map_err(|_| "a reply that does not parse")?;
    let asked = Name::new_with_labels(&labels(name)?);
    // Name equality ignores ASCII case, as DNS does. The crate reads the
    // class's top bit as mDNS's unicast or cache-flush flag; in unicast DNS
    // it makes another class.
    let question = packet.questions.first().ok_or("no question")?;
    if question.qname != asked
        || question.qtype != QTYPE::TYPE(qtype)
        || question.qclass != QCLASS::CLASS(CLASS::IN)
        || question.unicast_response
    {
        return Err("a reply to another question");
    }
    let addrs = packet
        .answers
        .iter()
        .filter(|rr| rr.class == CLASS::IN && !rr.cache_flush)
        .filter_map(|rr| match &rr.rdata {
            RData::A(a) => Some(IpAddr::from(Ipv4Addr::from(a.address))),
            RData::AAAA(aaaa) => Some(IpAddr::from(Ipv6Addr::from(aaaa.address))),
            // CNAMEs and anything else: skipped.
            _ => None,
        })
        .collect();
    Ok(Reply {
        truncated,
        rcode: packet.rcode(),
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header flag: this is a response.
    const QR: u16 = 0x8000;
    /// Header flag: the reply was truncated.
    const TC: u16 = 0x0200;

    /// A reply to `query(7, "a.test", A)` with these answer records (name
    /// as a pointer to the question), written byte by byte so that the
    /// tests do not trust the encoder they check.
    fn reply(flags: u16, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut msg = query(7, "a.test", TYPE::A).expect("query");
        msg[2..4].copy_from_slice(&(flags | QR).to_be_bytes());
        msg[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (rtype, data) in records {
            msg.extend_from_slice(&[0xc0, 12]);
            msg.extend_from_slice(&rtype.to_be_bytes());
            msg.extend_from_slice(&1u16.to_be_bytes());
            msg.extend_from_slice(&[0, 0, 0, 5]);
            msg.extend_from_slice(&(data.len() as u16).to_be_bytes());
            msg.extend_from_slice(data);
        }
        msg
    }

    #[test]
    fn query_bytes() {
        let q = query(0x1234, "a.bc", TYPE::AAAA).expect("query");
        assert_eq!(
            q,
            [
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 28, 0, 1
            ]
        );
        for bad in ["", "a..b", ".a", &"x".repeat(64), &"a.".repeat(127), "a b"] {
            assert!(query(1, bad, TYPE::A).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn answers_with_pointers_cnames_and_both_families() {
        let six = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let msg = reply(
            0,
            &[
                (1, &[127, 1, 0, 1]),
                (5, &[1, b'x', 0]),
                (28, &six),
                // A CNAME whose target points back at the question.
                (5, &[1, b'y', 0xc0, 12]),
            ],
        );
        let got = parse_reply(&msg, 7, "A.TEST", TYPE::A).expect("parses");
        assert_eq!(
            got.addrs,
            vec![
                IpAddr::from([127, 1, 0, 1]),
                IpAddr::from(Ipv6Addr::LOCALHOST)
            ]
        );
        assert!(!got.truncated);
        assert_eq!(got.rcode, RCODE::NoError);
        assert!(is_response_to(&msg, 7) && !is_response_to(&msg, 8));
        // An A record of three bytes is malformed: the reply is an error.
        let short = reply(0, &[(1, &[127, 1, 0, 1]), (1, &[1, 2, 3])]);
        assert!(parse_reply(&short, 7, "a.test", TYPE::A).is_err());
    }

    #[test]
    fn truncated_and_error_replies() {
        let mut msg = reply(TC, &[(1, &[1, 2, 3, 4])]);
        msg.truncate(msg.len() - 3);
        let got = parse_reply(&msg, 7, "a.test", TYPE::A).expect("parses");
        assert!(got.truncated && got.addrs.is_empty());
        let got = parse_reply(&reply(3, &[]), 7, "a.test", TYPE::A).expect("parses");
        assert_eq!(got.rcode, RCODE::NameError);
        // Authority and additional records are not read, whatever they hold.
        let mut msg = reply(0, &[(1, &[1, 2, 3, 4])]);
        msg[8..12].copy_from_slice(&[0, 1, 0xff, 0xff]);
        msg.extend_from_slice(&[0xff; 7]);
        let got = parse_reply(&msg, 7, "a.test", TYPE::A).expect("parses");
        assert_eq!(got.addrs, vec![IpAddr::from([1, 2, 3, 4])]);
    }

    #[test]
    fn hostile_replies_are_errors() {
        let good = reply(0, &[(1, &[1, 2, 3, 4])]);
        // Another id, another question, a query instead of a reply.
        assert!(parse_reply(&good, 8, "a.test", TYPE::A).is_err());
        assert!(parse_reply(&good, 7, "b.test", TYPE::A).is_err());
        assert!(parse_reply(&good, 7, "a.test", TYPE::AAAA).is_err());
        let q = query(7, "a.test", TYPE::A).expect("q");
        assert!(parse_reply(&q, 7, "a.test", TYPE::A).is_err());
        // Every cut of a good reply.
        for n in 0..good.len() {
            assert!(
                parse_reply(&good[..n], 7, "a.test", TYPE::A).is_err(),
                "{n}"
            );
        }
        // A pointer to itself, a forward pointer, a reserved label type.
        for bad_name in [[0xc0u8, 12], [0xc0, 40], [0x80, 1]] {
            let mut msg = good.clone();
            msg[12..14].copy_from_slice(&bad_name);
            assert!(parse_reply(&msg, 7, "a.test", TYPE::A).is_err());
        }
        // A pointer to itself in an answer's name (the answer starts at 24).
        let mut msg = good.clone();
        msg[24..26].copy_from_slice(&[0xc0, 24]);
        assert!(parse_reply(&msg, 7, "a.test", TYPE::A).is_err());
        // Claims 65535 answers it does not have.
        let mut msg = good.clone();
        msg[6..8].copy_from_slice(&[0xff, 0xff]);
        assert!(parse_reply(&msg, 7, "a.test", TYPE::A).is_err());
        // Bytes from a simple generator: errors or replies, never a panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let six = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let rich = reply(
            0,
            &[(1, &[1, 2, 3, 4]), (5, &[1, b'y', 0xc0, 12]), (28, &six)],
        );
        for base in [&good, &rich] {
            for _ in 0..20_000 {
                let mut msg = base.clone();
                for _ in 0..3 {
                    let r = next();
                    let at = (r % msg.len() as u64) as usize;
                    msg[at] = (r >> 32) as u8;
                }
                let cut = (next() % (msg.len() as u64 + 1)) as usize;
                let _ = parse_reply(&msg, 7, "a.test", TYPE::A);
                let _ = parse_reply(&msg[..cut], 7, "a.test", TYPE::A);
            }
        }
    }
}
