//! The first stage: exactly what the user typed and set in the environment,
//! checked and kept as [`Args`], with no system call, so it is tested from
//! lists of strings.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::{
    DEFAULT_S3_PERIOD_MS, DEFAULT_S3_PREFIX, DnsName, EpmdMode, MAX_INTERVAL_MS, MIN_INTERVAL_MS,
};
use crate::s3;

/// The usage text for `--help`.
pub const USAGE: &str = "\
Usage: pulse [run] [OPTIONS]      run a node (the default)
       pulse status [OPTIONS]     ping every registered node once, print a table
       pulse health [OPTIONS]     ping this node's own registered name (for HEALTHCHECK)
       pulse watch [OPTIONS]      draw who reaches whom, from the shared log, every interval

Output of status and watch:
  --json                  status: one JSON document; watch: one JSON object per frame
  --once                  watch: draw one frame and exit

Options (flags win over the environment):
  --name NAME@HOST        node name                                      PULSE_NAME
  --sname NAME            node name NAME@<short host name>, as erl -sname
  --ip ADDR               address to listen on and publish               PULSE_IP
                          [where the name's host resolves]
  --port PORT             distribution port, 0 = any free one [0]        PULSE_PORT
  --cookie COOKIE         shared secret                                  PULSE_COOKIE
  --cookie-file PATH      read the cookie from this file                 PULSE_COOKIE_FILE
  --registry WHERE        where peers are found [dir:/tmp/sync_dir/]:    PULSE_REGISTRY
                          dir:PATH, a shared directory; dns:NAME, the
                          A/AAAA records of NAME, each address's EPMD
                          naming its nodes; dns:NAME:PORT, the nodes on
                          that port, named by the handshake;
                          s3://BUCKET/PREFIX, an object per node in S3
                          (PREFIX [sync_dir/]; AWS_* variables as the
                          AWS CLI reads them)
  --registry-period MS    how often the registry is listed and our       PULSE_REGISTRY_PERIOD_MS
                          entry written, at least the interval
                          [s3: 10000, as each request is billed;
                          dir and dns: the interval]
  --sync-dir DIR          the same as --registry dir:DIR                 PULSE_SYNC_DIR
  --dns-server ADDR:PORT  name server for dns: [from /etc/resolv.conf]   PULSE_DNS_SERVER
  --log-file PATH         shared log file, - for stdout only             PULSE_LOG_FILE
                          [/tmp/log/cluster.log]
  --interval MS           heartbeat and ping interval [1000]             PULSE_INTERVAL_MS
  --timeout MS            ping timeout [half the interval]               PULSE_TIMEOUT_MS
  --ttl MS                expire entries silent this long [5 intervals]  PULSE_TTL_MS
                          [with s3: at least 3 registry periods]
  --epmd MODE             auto: register in the host's EPMD if one runs;    PULSE_EPMD
                          serve: answer EPMD port requests for this node
                          ourselves (hosts and containers without EPMD);
                          off: neither [auto]. EPMD's port: ERL_EPMD_PORT [4369]
  -h, --help              print this help
  -V, --version           print the version

With no name, the node is called md5(`date -Ins`)[..10]@ADDR, ADDR being
--ip or the first non-loopback IPv4 address. A name's host is looked up in
/etc/hosts, then by the system resolver. With no cookie, the cookie is
read from $HOME/.erlang.cookie, which a node creates when missing (status
and health do not: a new random cookie would match no node).

Exit codes: 0 ok; 1 runtime failure (status: some node is down;
watch --once: some link is down); 2 bad usage; 130 stopped by a second
signal.
";

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run a node.
    Run,
    /// Ping every registered node once and print a table.
    Status,
    /// Ping our own registered name once.
    Health,
    /// Draw the reachability matrix from the shared log.
    Watch,
    /// Print the usage.
    Help,
    /// Print the version.
    Version,
}

/// Exactly what was given on the command line and in the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The subcommand.
    pub command: Option<Command>,
    /// `--name`.
    pub name: Option<String>,
    /// `--sname`.
    pub sname: Option<String>,
    /// `--ip`.
    pub ip: Option<IpAddr>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--cookie`.
    pub cookie: Option<String>,
    /// `--cookie-file`.
    pub cookie_file: Option<PathBuf>,
    /// `--sync-dir`, or `--registry dir:PATH`.
    pub sync_dir: Option<PathBuf>,
    /// `--registry dns:...`.
    pub dns: Option<DnsName>,
    /// `--registry s3://...`.
    pub(crate) s3: Option<s3::Location>,
    /// `--dns-server`.
    pub dns_server: Option<SocketAddr>,
    /// `--registry-period`, in ms.
    pub registry_period_ms: Option<u64>,
    /// `--log-file`.
    pub log_file: Option<PathBuf>,
    /// `--interval`, in ms.
    pub interval_ms: Option<u64>,
    /// `--timeout`, in ms.
    pub timeout_ms: Option<u64>,
    /// `--ttl`, in ms.
    pub ttl_ms: Option<u64>,
    /// `--epmd`.
    pub epmd: Option<EpmdMode>,
    /// `ERL_EPMD_PORT`.
    pub epmd_port: Option<u16>,
    /// `$HOME`, for the default cookie file.
    pub home: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
    /// `--once`.
    pub once: bool,
    /// `NO_COLOR` set and not empty: no colours, ever.
    pub no_color: bool,
    /// `COLUMNS`: the terminal's width, when the shell exports it.
    pub columns: Option<usize>,
}

/// Parses the command line (without the program name) and the environment,
/// given as a lookup function. Flags win over the environment.
pub fn parse<I, E>(args: I, env: E) -> Result<Args, String>
where
    I: IntoIterator<Item = OsString>,
    E: Fn(&str) -> Option<String>,
{
    let mut out = Args::default();
    let mut args = args.into_iter().peekable();
    while let Some(raw) = args.next() {
        let arg = raw
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            match args.next().map(OsString::into_string) {
                Some(Ok(v)) => Ok(v),
                Some(Err(v)) => Err(format!("{flag}: value {v:?} is not valid UTF-8")),
                None => Err(format!("{flag}: missing value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => out.command = Some(Command::Help),
            "-V" | "--version" => out.command = Some(Command::Version),
            "--name" => out.name = Some(value()?),
            "--sname" => out.sname = Some(value()?),
            "--ip" => out.ip = Some(ip_value(&flag, &value()?)?),
            "--port" => out.port = Some(port_value(&flag, &value()?)?),
            "--cookie" => out.cookie = Some(value()?),
            "--cookie-file" => out.cookie_file = Some(value()?.into()),
            "--sync-dir" => out.set_registry(Registry::Dir(value()?.into())),
            "--registry" => out.set_registry(registry_value(&flag, &value()?)?),
            "--dns-server" => out.dns_server = Some(server_value(&flag, &value()?)?),
            "--registry-period" => out.registry_period_ms = Some(millis(&flag, &value()?)?),
            "--log-file" => out.log_file = Some(value()?.into()),
            "--interval" => out.interval_ms = Some(millis(&flag, &value()?)?),
            "--timeout" => out.timeout_ms = Some(millis(&flag, &value()?)?),
            "--ttl" => out.ttl_ms = Some(millis(&flag, &value()?)?),
            "--epmd" => out.epmd = Some(value()?.parse().map_err(|e| format!("{flag}: {e}"))?),
            "--json" => out.json = true,
            "--once" => out.once = true,
            "run" | "status" | "health" | "watch"
                if out.command.is_none() && out == Args::default() =>
            {
                out.command = Some(match flag.as_str() {
                    "run" => Command::Run,
                    "status" => Command::Status,
                    "watch" => Command::Watch,
                    _ => Command::Health,
                });
            }
            other if other.starts_with('-') => return Err(format!("unknown option '{other}'")),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    // Each variable is read here and nowhere else; a flag given wins.
    let text = |_: &str, v: &str| Ok(v.to_string());
    let path = |_: &str, v: &str| Ok(PathBuf::from(v));
    let mode = |var: &str, v: &str| v.parse().map_err(|e| format!("{var}: {e}"));
    if out.name.is_none() && out.sname.is_none() {
        out.name = env_value(&env, "PULSE_NAME", text)?;
    }
    if out.ip.is_none() {
        out.ip = env_value(&env, "PULSE_IP", ip_value)?;
    }
    if out.port.is_none() {
        out.port = env_value(&env, "PULSE_PORT", port_value)?;
    }
    if out.cookie.is_none() && out.cookie_file.is_none() {
        out.cookie = env_value(&env, "PULSE_COOKIE", text)?;
        if out.cookie.is_none() {
            out.cookie_file = env_value(&env, "PULSE_COOKIE_FILE", path)?;
        }
    }
    if out.sync_dir.is_none() && out.dns.is_none() && out.s3.is_none() {
        if let Some(registry) = env_value(&env, "PULSE_REGISTRY", registry_value)? {
            out.set_registry(registry);
        } else {
            out.sync_dir = env_value(&env, "PULSE_SYNC_DIR", path)?;
        }
    }
    if out.dns_server.is_none() {
        out.dns_server = env_value(&env, "PULSE_DNS_SERVER", server_value)?;
    }
    if out.log_file.is_none() {
        out.log_file = env_value(&env, "PULSE_LOG_FILE", path)?;
    }
    if out.interval_ms.is_none() {
        out.interval_ms = env_value(&env, "PULSE_INTERVAL_MS", millis)?;
    }
    if out.registry_period_ms.is_none() {
        out.registry_period_ms = env_value(&env, "PULSE_REGISTRY_PERIOD_MS", millis)?;
    }
    if out.timeout_ms.is_none() {
        out.timeout_ms = env_value(&env, "PULSE_TIMEOUT_MS", millis)?;
    }
    if out.ttl_ms.is_none() {
        out.ttl_ms = env_value(&env, "PULSE_TTL_MS", millis)?;
    }
    if out.epmd.is_none() {
        out.epmd = env_value(&env, "PULSE_EPMD", mode)?;
    }
    out.epmd_port = env_value(&env, "ERL_EPMD_PORT", port_value)?;
    out.home = env_value(&env, "HOME", path)?;
    out.no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
    // A malformed width is no reason to refuse: the terminal's is used.
    out.columns = env("COLUMNS").and_then(|v| v.trim().parse().ok());
    let command = out.command();
    if out.json && !matches!(command, Command::Status | Command::Watch) {
        return Err("--json: only for status and watch".into());
    }
    if out.once && command != Command::Watch {
        return Err("--once: only for watch".into());
    }
    if out.name.is_some() && out.sname.is_some() {
        return Err("--name and --sname exclude each other".into());
    }
    out.check_numbers()?;
    Ok(out)
}

/// A variable's value read with `read`, when it is set and not empty; an
/// error names the variable.
fn env_value<T>(
    env: &impl Fn(&str) -> Option<String>,
    var: &str,
    read: impl Fn(&str, &str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    env(var)
        .filter(|v| !v.is_empty())
        .map(|v| read(var, &v))
        .transpose()
}

/// A TCP port. The message gives the range: "a whole number" would not
/// say what is wrong with 99999.
fn port_value(flag: &str, v: &str) -> Result<u16, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: expected a port number from 0 to 65535, got '{v}'"))
}

/// A duration in whole milliseconds; the ranges are checked later, where
/// the interval is known.
fn millis(flag: &str, v: &str) -> Result<u64, String> {
    let digits = v.trim();
    digits.parse().map_err(|_| {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            format!("{flag}: {digits} ms is out of range")
        } else {
            format!("{flag}: expected milliseconds as a whole number, got '{v}'")
        }
    })
}

/// Where peers are found, as `--registry` gives it.
enum Registry {
    Dir(PathBuf),
    Dns(DnsName),
    S3(s3::Location),
}

fn registry_value(flag: &str, v: &str) -> Result<Registry, String> {
    if let Some(path) = v.strip_prefix("dir:").filter(|p| !p.is_empty()) {
        Ok(Registry::Dir(path.into()))
    } else if let Some(name) = v.strip_prefix("dns:") {
        Ok(Registry::Dns(
            name.parse().map_err(|e| format!("{flag}: {e}"))?,
        ))
    } else if v.starts_with("s3://") {
        s3::Location::parse(v, DEFAULT_S3_PREFIX)
            .map(Registry::S3)
            .map_err(|e| e.0)
    } else {
        Err(format!(
            "{flag}: expected dir:PATH, dns:NAME, dns:NAME:PORT or s3://BUCKET/PREFIX, got '{v}'"
        ))
    }
}

fn server_value(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.trim()
        .parse()
        .or_else(|_| v.trim().parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{flag}: expected ADDR:PORT or ADDR, got '{v}'"))
}

fn ip_value(flag: &str, v: &str) -> Result<IpAddr, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{flag}: expected an IP address, got '{v}'"))
}

impl Args {
    /// The command to run (`run` when none was given).
    pub fn command(&self) -> Command {
        self.command.unwrap_or(Command::Run)
    }

    /// The last of `--registry` and `--sync-dir` wins.
    fn set_registry(&mut self, registry: Registry) {
        match registry {
            Registry::Dir(dir) => (self.sync_dir, self.dns, self.s3) = (Some(dir), None, None),
            Registry::Dns(name) => (self.sync_dir, self.dns, self.s3) = (None, Some(name), None),
            Registry::S3(at) => (self.sync_dir, self.dns, self.s3) = (None, None, Some(at)),
        }
    }

    /// The interval, given or the default.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.unwrap_or(1000)
    }

    /// The registry's period, given or the default: S3's (or the interval
    /// if longer), the interval for the other registries.
    pub fn registry_period_ms(&self) -> u64 {
        let interval = self.interval_ms();
        match (self.registry_period_ms, &self.s3) {
            (Some(period), _) => period,
            (None, Some(_)) => DEFAULT_S3_PERIOD_MS.max(interval),
            (None, None) => interval,
        }
    }

    /// The TTL, given or the default: five intervals, and at least three
    /// registry periods (a heartbeat only moves once a period).
    pub(super) fn ttl_ms(&self) -> u64 {
        self.ttl_ms
            .unwrap_or_else(|| (5 * self.interval_ms()).max(3 * self.registry_period_ms()))
    }

    pub(super) fn check_numbers(&self) -> Result<(), String> {
        let interval = self.interval_ms();
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval) {
            return Err(format!(
                "interval: must be {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS} ms, got {interval}"
            ));
        }
        if let Some(t) = self.timeout_ms {
            if t == 0 || t > interval {
                return Err(format!(
                    "timeout: must be 1 ms up to the interval ({interval} ms), got {t}"
                ));
            }
        }
        let period = self.registry_period_ms();
        if !(interval..=3_600_000).contains(&period) {
            return Err(format!(
                "registry period: must be the interval ({interval} ms) up to 3600000 ms, got {period}"
            ));
        }
        if let Some(ttl) = self.ttl_ms {
            if ttl < 2 * interval {
                return Err(format!(
                    "ttl: must be at least two intervals ({} ms), got {ttl}",
                    2 * interval
                ));
            }
            if ttl < 2 * period {
                return Err(format!(
                    "ttl: must be at least two registry periods ({} ms), got {ttl}",
                    2 * period
                ));
            }
        }
        Ok(())
    }
}
