//! A real S3 server for tests: Garage (crates.io `garage`, built once by
//! `scripts/install-deps.sh`), one per test, on 127.0.0.1 free ports (or,
//! with [`Garage::start_in`], on an address of a network namespace of the
//! test's own), with its own temp dirs, killed on drop.
//!
//! Each [`Garage`] is a single node (replication factor 1, SQLite
//! metadata) whose layout, bucket and key are made by Garage's own CLI
//! (`garage -c CONFIG layout assign|apply`, `bucket create`, `key create`,
//! `bucket allow`), as its quick start does.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Node, TempDir, free_port, run_within, skip};

/// The region Garage's S3 API signs for (its `s3_region`).
pub(crate) const REGION: &str = "garage";

/// A running Garage server and the bucket and key made on it.
pub(crate) struct Garage {
    /// The server process, killed on drop; its output is in dumps.
    pub server: Node,
    /// `http://ADDR:PORT`, the S3 API.
    pub endpoint: String,
    /// The bucket made at start.
    pub bucket: String,
    /// The key allowed to read and write it: (id, secret).
    pub key: (String, String),
    bin: PathBuf,
    config: PathBuf,
    /// The network namespace the server and its CLI run in, if not the
    /// test's own.
    netns: Option<String>,
    // Last, so the dirs go after the server is killed.
    _dir: TempDir,
}

/// The `garage` program: `$PULSE_GARAGE/bin/garage` (an install root, as
/// `scripts/install-deps.sh` makes with `cargo install --root`), else
/// install-deps' default `/opt/garage/bin/garage`, else `garage` on PATH.
/// `None` (the test skipped loudly, a failure under
/// `PULSE_REQUIRE_EXTERNAL=1`) when none runs.
pub(crate) fn find(test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("PULSE_GARAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/garage"));
    let candidates = [root.join("bin").join("garage"), PathBuf::from("garage")];
    let found = candidates.into_iter().find(|bin| {
        let present = if bin.is_absolute() {
            bin.is_file()
        } else {
            Command::new("sh")
                .arg("-c")
                .arg("command -v garage")
                .stdout(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !present {
            return false;
        }
        let mut cmd = Command::new(bin);
        cmd.arg("--version");
        let (out, finished) = run_within(cmd, Duration::from_secs(10));
        finished && out.status.success()
    });
    if found.is_none() {
        skip(
            "garage not installed: scripts/install-deps.sh builds it into /opt/garage \
             (or set PULSE_GARAGE to a `cargo install --root` directory holding bin/garage)",
            test,
        );
    }
    found
}

impl Garage {
    /// Starts Garage with a layout, a bucket `bucket` and a key allowed on
    /// it; `None` (skipped loudly) when Garage is not installed.
    pub(crate) fn start(test: &str, bucket: &str) -> Option<Garage> {
        let ports = (free_port(), free_port(), free_port());
        Garage::launch(test, bucket, None, IpAddr::V4(Ipv4Addr::LOCALHOST), ports)
    }

    /// The same, run with `ip netns exec NETNS` and bound to `addr`, an
    /// address of that namespace, on Garage's usual ports (3900 S3, 3901
    /// RPC, 3903 admin: the namespace is the test's own, so they are free).
    /// Its CLI runs there too, as it talks to the server's RPC address.
    pub(crate) fn start_in(test: &str, bucket: &str, netns: &str, addr: IpAddr) -> Option<Garage> {
        Garage::launch(test, bucket, Some(netns), addr, (3900, 3901, 3903))
    }

    fn launch(
        test: &str,
        bucket: &str,
        netns: Option<&str>,
        ip: IpAddr,
        (s3, rpc, admin): (u16, u16, u16),
    ) -> Option<Garage> {
        let bin = find(test)?;
        let dir = TempDir::new("garage");
        let netns = netns.map(str::to_string);
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let config = dir.path().join("garage.toml");
        let toml = format!(
            r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "{host}:{rpc}"
rpc_public_addr = "{host}:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "{host}:{s3}"

[admin]
api_bind_addr = "{host}:{admin}"
"#,
            dir = dir.path().display(),
            secret = random_hex(32),
        );
        std::fs::write(&config, toml).expect("write garage.toml");
        let server = Node::spawn(
            &format!("garage (s3 on {host}:{s3})"),
            serve(&bin, &config, netns.as_deref()),
        );
        let mut garage = Garage {
            server,
            endpoint: format!("http://{host}:{s3}"),
            bucket: bucket.to_string(),
            key: (String::new(), String::new()),
            bin,
            config,
            netns,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        garage.until(deadline, &["status"]);
        let id = garage.until(deadline, &["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or("").to_string();
        assert!(!id.is_empty(), "no node id{}", garage.dump());
        garage.until(
            deadline,
            &["layout", "assign", "-z", "dc1", "-c", "1G", &id],
        );
        garage.until(deadline, &["layout", "apply", "--version", "1"]);
        garage.until(deadline, &["bucket", "create", bucket]);
        let made = garage.until(deadline, &["key", "create", "pulse-test"]);
        let field = |label: &str| {
            made.lines()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.split_whitespace().last())
                .map(str::to_string)
        };
        let (Some(id), Some(secret)) = (field("Key ID:"), field("Secret key:")) else {
            panic!(
                "no key in `garage key create`'s output:\n{made}{}",
                garage.dump()
            );
        };
        garage.until(
            deadline,
            &[
                "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", &id,
            ],
        );
        garage.key = (id, secret);
        Some(garage)
    }

    /// Runs `garage -c CONFIG ARGS…` until it succeeds (the node takes a
    /// moment to start, and the layout to apply) or `deadline`; its stdout.
    pub(crate) fn until(&self, deadline: Instant, args: &[&str]) -> String {
        let last = loop {
            let (out, finished) = run_within(self.cli(args), Duration::from_secs(20));
            if finished && out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if Instant::now() >= deadline || !self.server.is_running() {
                break format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        panic!("garage {} failed: {last}{}", args.join(" "), self.dump());
    }

    /// Kills the server (kill -9); its data stays.
    pub(crate) fn kill(&mut self) {
        self.server.signal("KILL");
        assert!(
            self.server.wait_exit(Duration::from_secs(10)).is_some(),
            "garage did not exit{}",
            self.dump()
        );
    }

    /// Starts the server again on the same ports and data, and waits
    /// until it answers.
    pub(crate) fn restart(&mut self) {
        let name = self.server.name.clone();
        self.server = Node::spawn(&name, serve(&self.bin, &self.config, self.netns.as_deref()));
        self.until(Instant::now() + Duration::from_secs(60), &["status"]);
    }

    /// `garage -c CONFIG ARGS…`, not run.
    pub(crate) fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = garage(&self.bin, self.netns.as_deref());
        cmd.arg("-c").arg(&self.config).args(args);
        cmd
    }

    /// The AWS variables for this server and key, as a user would set them.
    pub(crate) fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key.0.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.key.1.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT_URL_S3", self.endpoint.clone()),
        ]
    }

    /// The server's output, for failure messages.
    pub(crate) fn dump(&self) -> String {
        format!("\n{}", self.server.dump())
    }
}

/// `garage`, or `ip netns exec NETNS garage` (which execs it: the process
/// is Garage's own, so killing it kills the server).
fn garage(bin: &Path, netns: Option<&str>) -> Command {
    match netns {
        None => Command::new(bin),
        Some(netns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", netns]).arg(bin);
            cmd
        }
    }
}

/// `garage -c CONFIG server`, not run.
fn serve(bin: &Path, config: &Path, netns: Option<&str>) -> Command {
    let mut cmd = garage(bin, netns);
    cmd.arg("-c")
        .arg(config)
        .arg("server")
        .env("RUST_LOG", "garage=warn")
        .env_remove("GARAGE_RPC_SECRET")
        .env_remove("GARAGE_ADMIN_TOKEN");
    cmd
}

/// `n` random bytes from the kernel, in hex.
fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
