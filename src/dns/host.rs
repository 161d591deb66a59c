//! Host names to addresses, as Erlang's distribution finds them: an
//! address literal as it is, else the hosts file, else DNS through the
//! name servers of `/etc/resolv.conf`, within one deadline.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::{ResolvConf, resolve};

/// The hosts file, read before any resolver is asked.
const HOSTS_FILE: &str = "/etc/hosts";
/// Where the name servers are listed.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Largest hosts file read; the rest is ignored.
const MAX_HOSTS_FILE: u64 = 1 << 20;

/// The IPv4 address a host name stands for, as Erlang's distribution finds
/// it: an address literal as it is, else the hosts file, else DNS through
/// the name servers of `/etc/resolv.conf`, all within `timeout`. DNS is
/// asked by pulse's own client, which keeps the deadline (the C library's
/// resolver has no timeout of its own).
pub(crate) fn resolve_host(host: &str, timeout: Duration) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let deadline = Instant::now() + timeout;
    if let Some(ip) = read_small(HOSTS_FILE).and_then(|text| hosts_lookup(&text, host)) {
        return Ok(IpAddr::V4(ip));
    }
    let conf = ResolvConf::parse(&read_small(RESOLV_CONF).unwrap_or_default());
    let ips =
        resolve(&conf, host, deadline).map_err(|e| format!("'{host}' does not resolve: {e}"))?;
    ips.into_iter()
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| format!("'{host}' has no IPv4 address"))
}

/// The text of a small system file, at most [`MAX_HOSTS_FILE`] bytes of it.
fn read_small(path: &str) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_HOSTS_FILE).read_to_string(&mut text))
        .ok()?;
    Some(text)
}

/// The first IPv4 address a hosts file's text gives `host` (names compare
/// without regard to case).
fn hosts_lookup(text: &str, host: &str) -> Option<Ipv4Addr> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let ip = fields.next()?.parse::<Ipv4Addr>().ok()?;
        fields.any(|n| n.eq_ignore_ascii_case(host)).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines_are_read_as_the_resolver_reads_them() {
        let text = "# comment 10.0.0.9 vm\n\
                    ::1 localhost ip6-localhost vm6\n\
                    127.0.1.1\tVM.example vm # the host\n\
                    10.1.2.3 other vm\n\
                    garbage line\n";
        let at = |h| hosts_lookup(text, h);
        assert_eq!(at("vm"), Some(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(at("vm.EXAMPLE"), Some(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(at("other"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(at("vm6"), None, "IPv6 entries are skipped");
        assert_eq!(at("comment"), None);
        assert_eq!(at("the"), None);
        assert_eq!(at("line"), None);
    }

    #[test]
    fn literals_and_our_own_host_name_resolve_without_dns() {
        let quick = Duration::from_secs(5);
        assert_eq!(
            resolve_host("10.0.0.1", quick),
            Ok(IpAddr::from([10, 0, 0, 1]))
        );
        // The hosts file maps localhost to loopback on every machine
        // these tests run on.
        let ip = resolve_host("localhost", quick).expect("localhost resolves");
        assert!(ip.is_loopback(), "{ip}");
        let short = crate::name::short_host_name().expect("host name");
        assert!(!short.is_empty() && !short.contains('.'), "{short}");
    }
}
