//! One DNS lookup of a name's A and AAAA records, straight to a name server.
//!
//! `getaddrinfo` is not used: musl's returns at most 48 addresses and blocks
//! for seconds on a dead server, and a cluster behind one name can be larger
//! than that. The messages are in [`super::message`]; this module sends
//! queries and waits for replies. UDP first; a truncated reply is asked
//! again over TCP. Replies are untrusted: one from another
//! address, with another id or question, or that does not parse is ignored,
//! and every wait has a deadline.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

use simple_dns::{RCODE, TYPE};

use crate::sys::deadline::{self, Deadlined, is_timeout};

use super::message;

/// The DNS port.
pub(crate) const PORT: u16 = 53;
/// Largest UDP reply read. Without EDNS a server sends at most 512 bytes;
/// the rest is room for servers that send more anyway.
const MAX_UDP: usize = 4096;

/// Why a lookup gave no answer.
#[derive(Debug)]
pub enum LookupError {
    /// The name cannot be put in a query.
    BadName(String),
    /// The server does not know the name.
    NotFound,
    /// The server answered with an error code.
    Server(String),
    /// No usable reply by the deadline.
    Timeout,
    /// A socket failed.
    Io(io::Error),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::BadName(why) => write!(f, "bad name: {why}"),
            LookupError::NotFound => write!(f, "no such name"),
            LookupError::Server(code) => write!(f, "server error ({code})"),
            LookupError::Timeout => write!(f, "timeout"),
            LookupError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The addresses `name` has at `server`: its A and AAAA records, deduplicated
/// and sorted. Both queries are in flight at once; the whole lookup ends by
/// `deadline`. An answer for one type is enough; with none, the first error.
pub fn lookup(
    server: SocketAddr,
    name: &str,
    deadline: Instant,
) -> Result<Vec<IpAddr>, LookupError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let base = query_id();
    let queries = [(base, TYPE::A), (base.wrapping_add(1), TYPE::AAAA)].map(|(id, qtype)| Query {
        id,
        name,
        qtype,
    });
    let bound: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bound).map_err(LookupError::Io)?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(server).map_err(LookupError::Io)?;
    for q in &queries {
        socket.send(&q.bytes()?).map_err(LookupError::Io)?;
    }
    let mut answers: [Option<Result<Vec<IpAddr>, LookupError>>; 2] = [None, None];
    let mut buf = vec![0; MAX_UDP];
    while answers.iter().any(Option::is_none) {
        let n = match deadline::recv(&socket, &mut buf, deadline) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => break,
            // An ICMP "port unreachable" shows as refused: nobody serves there.
            Err(e) => return Err(LookupError::Io(e)),
        };
        let reply = &buf[..n];
        for (i, q) in queries.iter().enumerate() {
            if answers[i].is_none() && q.matches_header(reply) {
                answers[i] = if q.truncated(reply) {
                    Some(q.over_tcp(server, deadline))
                } else {
                    q.read(reply)
                };
            }
        }
    }
    let mut found = Vec::new();
    let mut answered = false;
    let mut error = None;
    for answer in answers.into_iter().flatten() {
        match answer {
            Ok(ips) => {
                answered = true;
                found.extend(ips);
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    if !answered {
        return Err(error.unwrap_or(LookupError::Timeout));
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// One question in flight.
struct Query<'a> {
    id: u16,
    name: &'a str,
    qtype: TYPE,
}

impl Query<'_> {
    fn bytes(&self) -> Result<Vec<u8>, LookupError> {
        message::query(self.id, self.name, self.qtype).map_err(|e| LookupError::BadName(e.into()))
    }

    /// Whether `reply` is a response with our id (cheap, before parsing).
    fn matches_header(&self, reply: &[u8]) -> bool {
        message::is_response_to(reply, self.id)
    }

    /// Whether the reply says to ask again over TCP; false for one that
    /// does not parse.
    fn truncated(&self, reply: &[u8]) -> bool {
        message::parse_reply(reply, self.id, self.name, self.qtype).is_ok_and(|r| r.truncated)
    }

    /// The addresses in a reply to this query; `None` when the reply is not
    /// one (it does not parse or asks another question), so the wait goes on.
    fn read(&self, reply: &[u8]) -> Option<Result<Vec<IpAddr>, LookupError>> {
        let reply = message::parse_reply(reply, self.id, self.name, self.qtype).ok()?;
        Some(match reply.rcode {
            RCODE::NoError => Ok(reply.addrs),
            RCODE::NameError => Err(LookupError::NotFound),
            code => Err(LookupError::Server(format!("response code {code:?}"))),
        })
    }

    /// Asks again over TCP, as a truncated UDP reply says to.
    fn over_tcp(&self, server: SocketAddr, deadline: Instant) -> Result<Vec<IpAddr>, LookupError> {
        let stream = deadline::connect(server, deadline).map_err(timeout_or_io)?;
        let query = self.bytes()?;
        let mut framed = u16::try_from(query.len())
            .map_err(|_| LookupError::BadName("query too long".into()))?
            .to_be_bytes()
            .to_vec();
        framed.extend_from_slice(&query);
        let mut stream = Deadlined::new(&stream, deadline);
        stream.write_all(&framed).map_err(timeout_or_io)?;
        let mut len = [0; 2];
        stream.read_exact(&mut len).map_err(timeout_or_io)?;
        let mut reply = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).map_err(timeout_or_io)?;
        if !self.matches_header(&reply) {
            return Err(LookupError::Server("a TCP reply to another query".into()));
        }
        self.read(&reply).unwrap_or_else(|| {
            Err(LookupError::Server(
                "a TCP reply that does not parse".into(),
            ))
        })
    }
}

fn timeout_or_io(e: io::Error) -> LookupError {
    match e.kind() {
        _ if is_timeout(&e) => LookupError::Timeout,
        io::ErrorKind::UnexpectedEof => LookupError::Server("TCP reply cut short".into()),
        _ => LookupError::Io(e),
    }
}

/// A query id nobody on the path can guess from the previous one.
fn query_id() -> u16 {
    (crate::erlang::random_u32() & 0xffff) as u16
}

/// What `/etc/resolv.conf` says: the name servers, the search domains and
/// how many dots make a name absolute enough to try as given first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    /// `nameserver` lines, in order.
    pub servers: Vec<SocketAddr>,
    /// The `search` (or `domain`) line.
    pub search: Vec<String>,
    /// `options ndots:N` (1 by default).
    pub ndots: usize,
}

impl ResolvConf {
    /// Parses the file's text; lines it does not know are ignored.
    pub(crate) fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // An IPv6 address may carry a zone ("%eth0"); those are skipped.
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        conf.servers.push(SocketAddr::new(ip, PORT));
                    }
                }
                Some("search" | "domain") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
                }
                Some("options") => {
                    for w in words {
                        if let Some(n) = w.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            conf.ndots = n;
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// The names to try for `name`, in order, as the C library would: as
    /// given first when it has enough dots (or ends with a dot), else after
    /// the search domains.
    pub(crate) fn candidates(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') || self.search.is_empty() {
            return vec![name.trim_end_matches('.').to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_string())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn resolv_conf_of_docker_and_kubernetes() {
        let docker = ResolvConf::parse("nameserver 127.0.0.11\noptions ndots:0\n");
        assert_eq!(
            docker.servers,
            vec![SocketAddr::from(([127, 0, 0, 11], 53))]
        );
        assert_eq!(docker.candidates("tasks.pulse"), vec!["tasks.pulse"]);
        let k8s = ResolvConf::parse(
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n# x\nnameserver fe80::1%eth0\noptions ndots:5\n",
        );
        assert_eq!(k8s.servers.len(), 1);
        assert_eq!(
            k8s.candidates("pulse"),
            vec![
                "pulse.default.svc.cluster.local",
                "pulse.svc.cluster.local",
                "pulse"
            ]
        );
        assert_eq!(
            k8s.candidates("pulse.x.svc.cluster.local."),
            vec!["pulse.x.svc.cluster.local"]
        );
    }

    #[test]
    fn bad_names_are_refused_before_sending() {
        let server = SocketAddr::from(([127, 0, 0, 1], 9));
        let soon = Instant::now() + Duration::from_millis(100);
        let long = "a".repeat(64);
        assert!(matches!(
            lookup(server, &long, soon),
            Err(LookupError::BadName(_))
        ));
        assert!(matches!(
            lookup(server, "", soon),
            Err(LookupError::BadName(_))
        ));
    }
}
