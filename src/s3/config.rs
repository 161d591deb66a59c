//! Where the registry is (`s3://BUCKET/PREFIX`) and how to reach the store,
//! from the environment as the AWS tools read it.
//!
//! Two stages, as the rest of the configuration: [`Location::parse`] and
//! [`Settings::from_vars`] only look at strings (unit-tested from lists),
//! [`Settings::from_env`] is the one place the variables are read, and
//! [`super::Client::new`] does the side effects (reading the CA bundle).
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | the key; both required |
//! | `AWS_SESSION_TOKEN` | with temporary credentials |
//! | `AWS_REGION`, else `AWS_DEFAULT_REGION` | default `us-east-1` |
//! | `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` | an S3-compatible store; path-style addressing there |
//! | `AWS_CA_BUNDLE` | a PEM file of the roots to trust instead of the built-in ones, as the AWS CLI does |
//!
//! Credentials come from the environment only: no profile files, no
//! instance metadata. A secret never reaches a message: it is held in a
//! [`Secret`], whose `Debug` prints `<redacted>` and which has no `Display`.

use std::fmt;
use std::path::PathBuf;

/// The variables read, in the order they are looked at.
pub(crate) const VARIABLES: [&str; 8] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_CA_BUNDLE",
];

/// The region when none is set, as the AWS tools have it.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// A bad `--registry s3://…` or AWS variable: a one-line message naming
/// what to fix, never holding a secret. A usage error (exit 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn error(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// A credential: printed by `Debug` as `<redacted>`, never by `Display`
/// (it has none); the text is reached through [`Secret::expose`] only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub(crate) fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The credential itself, for signing and nothing else.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the registry's objects are: `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    /// The bucket's name.
    pub bucket: String,
    /// Every node's object is `PREFIX` + its name; `PREFIX` ends with `/`
    /// (or is empty: the bucket's top).
    pub prefix: String,
}

impl Location {
    /// Parses `s3://BUCKET[/PREFIX]` as given to `--registry` (or
    /// `PULSE_REGISTRY`). Without a prefix it is `default_prefix` (the sync
    /// dir's last name and a slash, `sync_dir/`); a prefix gets a final `/`
    /// when it lacks one. `s3://BUCKET//` is the bucket's top.
    pub(crate) fn parse(text: &str, default_prefix: &str) -> Result<Location, ConfigError> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| {
            error(format!(
                "--registry: expected s3://BUCKET/PREFIX, got '{}'",
                printable(text)
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        let prefix = match prefix {
            "" => default_prefix.to_string(),
            "/" => String::new(),
            p if p.ends_with('/') => p.to_string(),
            p => format!("{p}/"),
        };
        if prefix.starts_with('/') || prefix.contains("//") {
            return Err(error(format!(
                "--registry: the prefix '{}' has an empty path segment; write s3://{bucket}/PREFIX",
                printable(&prefix)
            )));
        }
        if prefix.len() > 512 || prefix.chars().any(char::is_control) {
            return Err(error(
                "--registry: the prefix must be at most 512 bytes without control characters",
            ));
        }
        Ok(Location {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

/// The bucket name rules S3 has for new buckets (3 to 63 of `a-z`, `0-9`,
/// `.`, `-`, starting and ending with a letter or digit), with `_` and
/// capitals allowed for old buckets and other stores.
fn check_bucket(name: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && name.chars().all(ok_char) && ends_ok {
        return Ok(());
    }
    Err(error(format!(
        "--registry: '{}' is not a bucket name (3 to 63 letters, digits, '.' or '-'); \
         expected s3://BUCKET/PREFIX",
        printable(name)
    )))
}

/// An S3-compatible store's endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port][/path]`, without user info, query or fragment.
    pub url: String,
    /// The variable it came from, for messages.
    pub from: &'static str,
}

/// How to reach and sign for the store: the AWS variables, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `AWS_ACCESS_KEY_ID`. Not a secret by AWS's account, but kept out
    /// of messages all the same.
    pub access_key_id: Secret,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Secret>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else [`DEFAULT_REGION`].
    pub region: String,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: a store other than
    /// AWS, addressed path-style (`endpoint/bucket/key`). `None`: AWS,
    /// virtual-hosted (`bucket.s3.region.amazonaws.com`).
    pub endpoint: Option<Endpoint>,
    /// `AWS_CA_BUNDLE`: a PEM file of the roots to trust instead of the
    /// built-in ones (read when the client is made).
    pub ca_bundle: Option<PathBuf>,
}

impl Settings {
    /// Reads the [`VARIABLES`] from this process's environment: the one
    /// place they are read.
    pub(crate) fn from_env() -> Result<Settings, ConfigError> {
        let vars: Vec<(&str, String)> = VARIABLES
            .iter()
            .filter_map(|&k| Some((k, std::env::var_os(k)?.into_string().ok()?)))
            .collect();
        // A variable that is set but not UTF-8 is named, not ignored.
        if let Some(k) = VARIABLES
            .iter()
            .find(|&&k| std::env::var_os(k).is_some() && !vars.iter().any(|(v, _)| v == &k))
        {
            return Err(error(format!("{k}: not valid UTF-8")));
        }
        Settings::from_vars(&vars)
    }

    /// Checks the AWS variables given as `(name, value)` pairs; an empty
    /// value counts as unset, as the AWS tools have it.
    pub(crate) fn from_vars(vars: &[(&str, String)]) -> Result<Settings, ConfigError> {
        let get = |key: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let (key_id, secret) = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => (id, secret),
            (None, None) => {
                return Err(error(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (pulse reads them from the environment only)",
                ));
            }
            (None, Some(_)) => {
                return Err(error(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set it",
                ));
            }
            (Some(_), None) => {
                return Err(error(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set it",
                ));
            }
        };
        // Only printable ASCII can be signed into a header or a URL; the
        // message names the variable, not the value.
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", Some(key_id)),
            ("AWS_SECRET_ACCESS_KEY", Some(secret)),
            ("AWS_SESSION_TOKEN", get("AWS_SESSION_TOKEN")),
        ] {
            if value.is_some_and(|v| !v.bytes().all(|b| b.is_ascii_graphic())) {
                return Err(error(format!(
                    "{name}: contains spaces or characters other than printable ASCII; set it again"
                )));
            }
        }
        let (region, region_from) = match (get("AWS_REGION"), get("AWS_DEFAULT_REGION")) {
            (Some(r), _) => (r, "AWS_REGION"),
            (None, Some(r)) => (r, "AWS_DEFAULT_REGION"),
            (None, None) => (DEFAULT_REGION, "AWS_REGION"),
        };
        let region_ok = region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !region_ok {
            return Err(error(format!(
                "{region_from}: '{}' is not a region (such as us-east-1)",
                printable(region)
            )));
        }
        let endpoint = match (get("AWS_ENDPOINT_URL_S3"), get("AWS_ENDPOINT_URL")) {
            (Some(url), _) => Some(check_endpoint(url, "AWS_ENDPOINT_URL_S3")?),
            (None, Some(url)) => Some(check_endpoint(url, "AWS_ENDPOINT_URL")?),
            (None, None) => None,
        };
        Ok(Settings {
            access_key_id: Secret::new(key_id),
            secret_access_key: Secret::new(secret),
            session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
            region: region.to_string(),
            endpoint,
            ca_bundle: get("AWS_CA_BUNDLE").map(PathBuf::from),
        })
    }

    /// The URL the requests go to (before the bucket is added): the
    /// endpoint, or AWS's regional one. Builds a string; resolves nothing.
    pub(crate) fn base_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.url.clone(),
            None if self.region.starts_with("cn-") => {
                format!("https://s3.{}.amazonaws.com.cn", self.region)
            }
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }

    /// Whether requests name the bucket in the path (an endpoint) rather
    /// than in the host name (AWS).
    pub(crate) fn path_style(&self) -> bool {
        self.endpoint.is_some()
    }
}

/// Checks an endpoint URL: `http` or `https`, a host, no user info (it
/// would end up in messages), no query or fragment.
fn check_endpoint(text: &str, from: &'static str) -> Result<Endpoint, ConfigError> {
    let url = url::Url::parse(text).map_err(|e| {
        // The text is not echoed: a malformed URL may hold a password.
        error(format!(
            "{from}: not a URL ({e}); expected http(s)://HOST[:PORT]"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(error(format!(
            "{from}: a user name or password in the URL is not supported; remove it \
             (credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )));
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(error(format!(
            "{from}: '{}' is not an http(s)://HOST[:PORT] URL",
            printable(text)
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(error(format!(
            "{from}: '{}' has a query or fragment; give only http(s)://HOST[:PORT][/PATH]",
            printable(text)
        )));
    }
    Ok(Endpoint {
        url: url.as_str().trim_end_matches('/').to_string(),
        from,
    })
}

/// `text` for a message: at most 100 characters, control characters
/// escaped, so a hostile value cannot forge log lines.
pub(super) fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(100)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > 100 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    const KEY: (&str, &str) = ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    const SECRET: (&str, &str) = (
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );

    #[test]
    fn location_parses_bucket_and_prefix() {
        let at = |t| Location::parse(t, "sync_dir/");
        let loc = |b: &str, p: &str| {
            Ok(Location {
                bucket: b.into(),
                prefix: p.into(),
            })
        };
        assert_eq!(at("s3://my-bucket"), loc("my-bucket", "sync_dir/"));
        assert_eq!(at("s3://my-bucket/"), loc("my-bucket", "sync_dir/"));
        assert_eq!(at("s3://my-bucket//"), loc("my-bucket", ""));
        assert_eq!(at("s3://my-bucket/nodes"), loc("my-bucket", "nodes/"));
        assert_eq!(at("s3://my.bucket/a/b/"), loc("my.bucket", "a/b/"));
        for (bad, why) in [
            ("my-bucket", "expected s3://"),
            ("file:///tmp", "expected s3://"),
            ("s3://", "not a bucket name"),
            ("s3://ab", "not a bucket name"),
            ("s3://-bucket", "not a bucket name"),
            ("s3://bu cket/x", "not a bucket name"),
            ("s3://bucket/a//b", "empty path segment"),
            ("s3://bucket/a\nb", "control characters"),
        ] {
            let e = at(bad).expect_err(bad);
            assert!(e.0.contains(why), "{bad:?}: {e}");
            assert!(e.0.starts_with("--registry: "), "{e}");
            assert!(!e.0.contains('\n'), "{e}");
        }
    }

    #[test]
    fn settings_defaults_and_precedence() {
        let s = Settings::from_vars(&vars(&[KEY, SECRET])).expect("settings");
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint, None);
        assert!(!s.path_style());
        assert_eq!(s.base_url(), "https://s3.us-east-1.amazonaws.com");
        assert_eq!(s.session_token, None);

        let s = Settings::from_vars(&vars(&[
            KEY,
            SECRET,
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900/"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_CA_BUNDLE", "/etc/ca.pem"),
        ]))
        .expect("settings");
        assert_eq!(s.region, "eu-west-3");
        assert!(s.path_style());
        assert_eq!(s.base_url(), "http://127.0.0.1:3900");
        assert_eq!(s.session_token, Some(Secret::new("token")));
        assert_eq!(s.ca_bundle, Some(PathBuf::from("/etc/ca.pem")));

        let s = Settings::from_vars(&vars(&[
            KEY,
            SECRET,
            ("AWS_REGION", "cn-north-1"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
        ]))
        .expect("settings");
        assert_eq!(s.base_url(), "https://s3.cn-north-1.amazonaws.com.cn");

        let s = Settings::from_vars(&vars(&[
            KEY,
            SECRET,
            ("AWS_ENDPOINT_URL", "http://a.example:1"),
            ("AWS_ENDPOINT_URL_S3", "https://s3.example:9000"),
            ("AWS_REGION", ""),
        ]))
        .expect("settings");
        assert_eq!(s.base_url(), "https://s3.example:9000");
        assert_eq!(s.region, "us-east-1", "an empty variable counts as unset");
    }

    #[test]
    fn settings_errors_name_the_variable_and_never_the_secret() {
        for (given, want) in [
            (vars(&[]), "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            (vars(&[KEY]), "AWS_SECRET_ACCESS_KEY is not: set it"),
            (vars(&[SECRET]), "AWS_ACCESS_KEY_ID is not: set it"),
            (
                vars(&[KEY, ("AWS_SECRET_ACCESS_KEY", "sec ret\u{7}")]),
                "AWS_SECRET_ACCESS_KEY: contains",
            ),
            (
                vars(&[KEY, SECRET, ("AWS_REGION", "us east")]),
                "AWS_REGION: 'us east' is not a region",
            ),
            (
                vars(&[KEY, SECRET, ("AWS_ENDPOINT_URL", "ftp://h")]),
                "AWS_ENDPOINT_URL: 'ftp://h' is not",
            ),
            (
                vars(&[KEY, SECRET, ("AWS_ENDPOINT_URL_S3", "127.0.0.1:9000")]),
                "AWS_ENDPOINT_URL_S3: not a URL",
            ),
            (
                vars(&[
                    KEY,
                    SECRET,
                    ("AWS_ENDPOINT_URL_S3", "http://me:hunter2@store:9000"),
                ]),
                "AWS_ENDPOINT_URL_S3: a user name or password",
            ),
            (
                vars(&[KEY, SECRET, ("AWS_ENDPOINT_URL", "http://h/?x=1")]),
                "has a query",
            ),
        ] {
            let e = Settings::from_vars(&given).expect_err(want);
            assert!(e.0.contains(want), "{given:?}: {e}");
            for secret in [SECRET.1, "hunter2", "sec ret"] {
                assert!(!e.0.contains(secret), "{e}");
            }
            assert!(!e.0.contains('\n'), "{e}");
        }
    }

    #[test]
    fn debug_redacts_every_credential() {
        let s = Settings::from_vars(&vars(&[
            KEY,
            SECRET,
            ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN"),
        ]))
        .expect("settings");
        let shown = format!("{s:?} {s:#?}");
        for secret in [KEY.1, SECRET.1, "FwoGZXIvYXdzEXAMPLETOKEN"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
