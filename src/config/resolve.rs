//! The second stage: the side effects that make a [`Config`] of [`Args`]
//! (the host's address, its name, the cookie file).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Args, Command, Config, DEFAULT_LOG_FILE, DEFAULT_SYNC_DIR};
use crate::name::{self, NodeName};
use crate::s3;

/// How long a node may wait at startup for its name's host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Args {
    /// Does the side effects: finds the address, the name and the cookie.
    ///
    /// A node listens where its name's host resolves, as an Erlang node
    /// does: `--sname` takes the short host name, which must resolve; a
    /// `--name` host that does not resolve falls back to the first
    /// non-loopback IPv4.
    pub fn resolve(&self) -> Result<Config, String> {
        let host = match (&self.name, &self.sname) {
            (Some(n), _) => n.split_once('@').map(|(_, h)| h.to_string()),
            (None, Some(_)) => Some(name::short_host_name()?),
            (None, None) => None,
        };
        let ip = match (self.ip, &host) {
            (Some(ip), _) => ip,
            (None, Some(h)) => match crate::dns::resolve_host(h, RESOLVE_TIMEOUT) {
                Ok(ip) => ip,
                Err(e) if self.sname.is_some() => {
                    return Err(format!("--sname: {e}; give --ip or --name"));
                }
                Err(_) => name::detect_ipv4(),
            },
            (None, None) => name::detect_ipv4(),
        };
        let name_text = match (&self.name, &self.sname, host) {
            (Some(n), _, _) => n.clone(),
            (None, Some(s), Some(h)) => format!("{s}@{h}"),
            _ => format!("{}@{ip}", name::recipe_alive()),
        };
        let name = name_text.parse::<NodeName>().map_err(|e| e.to_string())?;
        let interval = Duration::from_millis(self.interval_ms());
        let (cookie, cookie_file) = self.cookie()?;
        // The AWS variables are read only for an S3 registry.
        let s3 = match &self.s3 {
            Some(at) => Some((at.clone(), s3::Settings::from_env().map_err(|e| e.0)?)),
            None => None,
        };
        Ok(Config {
            name,
            ip,
            port: self.port.unwrap_or(0),
            cookie,
            cookie_file,
            sync_dir: self
                .sync_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_SYNC_DIR.into()),
            dns: self.dns.clone(),
            dns_server: self.dns_server,
            s3,
            registry_period: Duration::from_millis(self.registry_period_ms()),
            log_file: self
                .log_file
                .clone()
                .unwrap_or_else(|| DEFAULT_LOG_FILE.into()),
            interval,
            timeout: self.timeout_ms.map_or(interval / 2, Duration::from_millis),
            ttl: Duration::from_millis(self.ttl_ms()),
            epmd: self.epmd.unwrap_or_default(),
            epmd_port: self.epmd_port.unwrap_or(crate::erlang::epmd::DEFAULT_PORT),
        })
    }

    /// The cookie: given, read from the given file, or Erlang's own file in
    /// the home directory (created with a random cookie when missing), with
    /// the file it came from. `status` and `health` never create it: a new
    /// random cookie would match no node.
    fn cookie(&self) -> Result<(String, Option<PathBuf>), String> {
        let (cookie, file) = if let Some(c) = &self.cookie {
            (c.clone(), None)
        } else if let Some(path) = &self.cookie_file {
            (read_cookie(path)?, Some(path.clone()))
        } else if let Some(home) = &self.home {
            let path = home.join(".erlang.cookie");
            let cookie = if matches!(self.command(), Command::Status | Command::Health) {
                if !path.exists() {
                    return Err(format!(
                        "no cookie: {} does not exist (a new random one would match no node); \
                         give the cluster's cookie with --cookie or PULSE_COOKIE",
                        path.display()
                    ));
                }
                read_cookie(&path)?
            } else {
                erlang_cookie(&path)?
            };
            (cookie, Some(path))
        } else {
            return Err("no cookie: give --cookie or --cookie-file, or set HOME so $HOME/.erlang.cookie can be used".into());
        };
        if let Err(why) = super::check_cookie(&cookie) {
            return Err(match &file {
                Some(path) => why.said_of(&format!("the cookie in {}", path.display())),
                None => why.to_string(),
            });
        }
        Ok((cookie, file))
    }
}

/// Reads a cookie file. As Erlang does, a file that others may read or
/// write is refused: the cookie is the cluster's only secret.
fn read_cookie(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let unusable = |why: &dyn std::fmt::Display| {
        format!(
            "cookie file {}: {why}; give a readable file with --cookie-file, or the cookie \
             itself with --cookie",
            path.display()
        )
    };
    let meta = fs::metadata(path).map_err(|e| unusable(&e))?;
    if !meta.is_file() {
        return Err(unusable(&"not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "cookie file {} must be accessible by owner only (its mode is {mode:o}; chmod 400 it)",
            path.display()
        ));
    }
    let text = fs::read_to_string(path).map_err(|e| unusable(&e))?;
    Ok(text.trim().to_string())
}

/// Reads `$HOME/.erlang.cookie`, creating it as Erlang does (20 random
/// capital letters, mode 0400) when it does not exist.
fn erlang_cookie(path: &Path) -> Result<String, String> {
    if path.exists() {
        return read_cookie(path);
    }
    let cookie: String = (0..20)
        .map(|_| char::from(b'A' + (crate::erlang::random_u32() % 26) as u8))
        .collect();
    let create = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(path)?;
        f.write_all(cookie.as_bytes())
    };
    match create() {
        Ok(()) => Ok(cookie),
        // Another node created it at the same moment: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_cookie(path),
        Err(e) => Err(format!(
            "cannot create cookie file {}: {e}; give the cookie with --cookie or --cookie-file",
            path.display()
        )),
    }
}
