//! A small synchronous S3 client: list a prefix (every page), get, put,
//! create (take a name), delete; each request with a deadline.
//!
//! Requests are presigned by `rusty-s3` (SigV4, query-string signed for a
//! few minutes) and sent by `ureq` (rustls with built-in roots, as the
//! image has no certificate store). A signed URL carries the key id (and
//! any session token), so it never reaches a message: see [`Error`].
//! Redirects are not followed (a signed URL is for one host), proxies are
//! not used, a reply body has a size limit.
//!
//! Calls block: the round-side wiring runs them on a thread of its own,
//! never on the round thread.

use std::time::{Duration, Instant, SystemTime};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::config::{ConfigError, Location, Settings};
use super::error::Error;
use super::reply::{self, Listed};

/// How long a signed URL is valid: a request is sent as soon as it is
/// signed, so this is only the slack for clocks.
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// Largest listing page read; 1,000 keys of 1 KiB each, escaped, fit.
const MAX_PAGE: u64 = 8 << 20;
/// Largest object body or error reply read (a record is under 100 bytes).
const MAX_BODY: u64 = 64 << 10;
/// Keys asked for per listing page (S3's maximum).
const PAGE_KEYS: usize = 1000;
/// Most pages followed in one listing: 1,000,000 objects. A store that
/// keeps handing out tokens does not keep us forever.
const MAX_PAGES: usize = 1000;

/// An object's body, fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// Its entity tag, for the next conditional get.
    pub etag: String,
    /// How long ago it was written, by the store's clock (`Date` minus
    /// `Last-Modified`, to the second); `None` when not known.
    pub age: Option<Duration>,
}

/// What a conditional get found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Got {
    /// The body (new, or changed since the entity tag given).
    Body(Fetched),
    /// Unchanged since the entity tag given (304).
    NotModified,
    /// No such object (404 `NoSuchKey`): it vanished.
    Missing,
}

/// A write the store took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The new body's entity tag (empty if the store gave none).
    pub etag: String,
    /// The store's clock when it took it (its `Date` header).
    pub date: Option<SystemTime>,
}

/// A reply, read whole.
struct Reply {
    status: u16,
    date: Option<SystemTime>,
    etag: String,
    last_modified: Option<SystemTime>,
    body: Vec<u8>,
}

/// A client for one bucket and prefix.
pub(crate) struct Client {
    agent: ureq::Agent,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `location`, signing with `settings`. Reads the CA
    /// bundle, if one is set; sends nothing.
    pub(crate) fn new(location: &Location, settings: &Settings) -> Result<Client, ConfigError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &settings.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError(format!(
                    "AWS_CA_BUNDLE: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(ConfigError(format!(
                    "AWS_CA_BUNDLE: no PEM certificate in {}; give a file of CA certificates",
                    path.display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("pulse/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(4)
            .max_idle_connections_per_host(4)
            .tls_config(tls.build())
            .build()
            .new_agent();
        let endpoint = url::Url::parse(&settings.base_url()).map_err(|e| {
            ConfigError(format!(
                "the store's URL cannot be built ({e}); check AWS_REGION"
            ))
        })?;
        // Virtual-hosted on AWS, unless the name cannot be a host name
        // (dots break the certificate's wildcard): then path-style, as
        // on every other store.
        let style = if settings.path_style() || location.bucket.contains('.') {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            location.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| ConfigError(format!("--registry: bucket '{}': {e}", location.bucket)))?;
        let credentials = match &settings.session_token {
            Some(token) => Credentials::new_with_token(
                settings.access_key_id.expose(),
                settings.secret_access_key.expose(),
                token.expose(),
            ),
            None => Credentials::new(
                settings.access_key_id.expose(),
                settings.secret_access_key.expose(),
            ),
        };
        Ok(Client {
            agent,
            bucket,
            credentials,
            prefix: location.prefix.clone(),
        })
    }

    /// Whether the bucket is there and the key may list it: one small
    /// listing. At start, an error here [`Error::is_configuration`] is a
    /// reason to stop.
    pub(crate) fn check(&self, deadline: Instant) -> Result<(), Error> {
        self.list_page(None, 1, deadline).map(drop)
    }

    /// Every object under the prefix, following every page. A page that
    /// fails fails the whole listing: a partial one is never returned.
    pub(crate) fn list(&self, deadline: Instant) -> Result<Vec<Listed>, Error> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self.list_page(token.as_deref(), PAGE_KEYS, deadline)?;
            all.extend(page.objects);
            match page.next {
                None => return Ok(all),
                // A token handed out twice would list forever.
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(Error::Garbage("a listing that repeats its page".into()));
                }
                next => token = next,
            }
        }
        Err(Error::Garbage(format!(
            "a listing of more than {MAX_PAGES} pages"
        )))
    }

    fn list_page(
        &self,
        token: Option<&str>,
        keys: usize,
        deadline: Instant,
    ) -> Result<reply::Page, Error> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_prefix(self.prefix.as_str());
        action.with_delimiter("/");
        action.with_max_keys(keys);
        if let Some(token) = token {
            action.with_continuation_token(token);
        }
        let url = action.sign(SIGNED_FOR);
        let reply = self.send(self.agent.get(url.as_str()), deadline, MAX_PAGE)?;
        match reply.status {
            200 => reply::list_page(&reply.body, &self.prefix, reply.date),
            status => Err(Error::from_status(status, &reply::error_code(&reply.body))),
        }
    }

    /// Gets the object `name`; with `etag` (from a listing or an earlier
    /// get), only if it changed since.
    pub(crate) fn get(
        &self,
        name: &str,
        etag: Option<&str>,
        deadline: Instant,
    ) -> Result<Got, Error> {
        let key = self.key(name)?;
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let mut request = self.agent.get(url.as_str());
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let reply = self.send(request, deadline, MAX_BODY)?;
        match reply.status {
            200 => Ok(Got::Body(Fetched {
                age: reply::age(reply.date, reply.last_modified),
                etag: reply.etag,
                bytes: reply.body,
            })),
            304 => Ok(Got::NotModified),
            404 => match reply::error_code(&reply.body).as_str() {
                "NoSuchBucket" => Err(Error::NoSuchBucket),
                _ => Ok(Got::Missing),
            },
            status => Err(Error::from_status(status, &reply::error_code(&reply.body))),
        }
    }

    /// Writes `body` as the object `name`, whatever is there.
    pub(crate) fn put(&self, name: &str, body: &[u8], deadline: Instant) -> Result<Written, Error> {
        self.put_object(name, body, false, deadline)
    }

    /// Writes `body` as the object `name` only if there is none: the
    /// object is ours once this returns `Ok`, and
    /// [`Error::PreconditionFailed`] means someone else holds the name.
    ///
    /// Three requests, because not every store honours a conditional
    /// write (Garage 2.5 ignores `If-None-Match` on `PutObject` and
    /// overwrites): a get that must find nothing, a put with
    /// `If-None-Match: *` (refused with 412 where supported, so two
    /// creators never both win there), and a get that must read our body
    /// back. On a store without conditional writes two creators whose
    /// puts and read-backs interleave exactly can both win; a later get
    /// with the entity tag of our write finds it changed (the heartbeat's
    /// check).
    pub(crate) fn create(
        &self,
        name: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Written, Error> {
        match self.get(name, None, deadline)? {
            Got::Missing => {}
            Got::Body(_) | Got::NotModified => return Err(Error::PreconditionFailed),
        }
        let written = self.put_object(name, body, true, deadline)?;
        match self.get(name, None, deadline)? {
            Got::Body(read) if read.bytes == body => Ok(written),
            _ => Err(Error::PreconditionFailed),
        }
    }

    fn put_object(
        &self,
        name: &str,
        body: &[u8],
        only_if_absent: bool,
        deadline: Instant,
    ) -> Result<Written, Error> {
        let key = self.key(name)?;
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let mut request = self
            .agent
            .put(url.as_str())
            .header("Content-Type", "text/plain; charset=utf-8");
        if only_if_absent {
            request = request.header("If-None-Match", "*");
        }
        let reply = self.send_body(request, body, deadline)?;
        match reply.status {
            200 | 201 | 204 => Ok(Written {
                etag: reply.etag,
                date: reply.date,
            }),
            status => Err(Error::from_status(status, &reply::error_code(&reply.body))),
        }
    }

    /// Deletes the object `name`; one already gone is no error.
    pub(crate) fn delete(&self, name: &str, deadline: Instant) -> Result<(), Error> {
        let key = self.key(name)?;
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let reply = self.send(self.agent.delete(url.as_str()), deadline, MAX_BODY)?;
        match (reply.status, reply::error_code(&reply.body).as_str()) {
            (200 | 204, _) | (404, "NoSuchKey" | "") => Ok(()),
            (status, code) => Err(Error::from_status(status, code)),
        }
    }

    /// The object key of `name`: the prefix and the name, which must be
    /// one path segment.
    fn key(&self, name: &str) -> Result<String, Error> {
        if name.is_empty() || name.contains('/') || name.len() > 512 {
            return Err(Error::Transport(format!(
                "'{}' cannot be an object name",
                super::config::printable(name)
            )));
        }
        Ok(format!("{}{name}", self.prefix))
    }

    fn send_body(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithBody>,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Reply, Error> {
        let left = time_left(deadline)?;
        let request = request.config().timeout_global(Some(left)).build();
        read_reply(request.send(body), MAX_BODY)
    }

    fn send(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        deadline: Instant,
        limit: u64,
    ) -> Result<Reply, Error> {
        let left = time_left(deadline)?;
        let request = request.config().timeout_global(Some(left)).build();
        read_reply(request.call(), limit)
    }
}

/// The time left until `deadline`; a timeout once it has passed.
fn time_left(deadline: Instant) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout("deadline"));
    }
    Ok(left)
}

/// Reads a reply's status, the headers we use and its body (up to `limit`
/// bytes, within the request's deadline).
fn read_reply(
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    limit: u64,
) -> Result<Reply, Error> {
    let mut response = sent?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let date = header("date").as_deref().and_then(reply::http_date);
    let last_modified = header("last-modified")
        .as_deref()
        .and_then(reply::http_date);
    let etag = header("etag").unwrap_or_default();
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()?;
    Ok(Reply {
        status,
        date,
        etag,
        last_modified,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(vars: &[(&'static str, &str)], registry: &str) -> Client {
        let vars: Vec<_> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let settings = Settings::from_vars(&vars).expect("settings");
        let location = Location::parse(registry, "sync_dir/").expect("location");
        Client::new(&location, &settings).expect("client")
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];

    /// URLs are built and signed without resolving any name.
    #[test]
    fn urls_are_virtual_hosted_on_aws_and_path_style_on_an_endpoint() {
        let aws = client(&KEYS, "s3://my-bucket/nodes");
        let url = aws
            .bucket
            .get_object(Some(&aws.credentials), "nodes/a@127.0.0.1")
            .sign(SIGNED_FOR);
        assert_eq!(url.host_str(), Some("my-bucket.s3.us-east-1.amazonaws.com"));
        assert_eq!(url.path(), "/nodes/a%40127.0.0.1");
        assert!(url.query().unwrap_or("").contains("X-Amz-Signature="));

        let dotted = client(&KEYS, "s3://my.bucket");
        let url = dotted.bucket.object_url("sync_dir/a");
        assert_eq!(url.host_str(), Some("s3.us-east-1.amazonaws.com"));
        assert_eq!(url.path(), "/my.bucket/sync_dir/a");

        let mut vars = KEYS.to_vec();
        vars.push(("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3900"));
        vars.push(("AWS_REGION", "garage"));
        let garage = client(&vars, "s3://pulse");
        let url = garage.bucket.object_url("sync_dir/a@h");
        assert_eq!(url.as_str(), "http://127.0.0.1:3900/pulse/sync_dir/a%40h");
        assert_eq!(garage.prefix, "sync_dir/");
        let shown = format!("{garage:?}");
        assert!(
            !shown.contains("AKIDEXAMPLE") && !shown.contains("wJalr"),
            "{shown}"
        );
    }

    #[test]
    fn names_must_be_one_segment() {
        let c = client(&KEYS, "s3://my-bucket");
        assert_eq!(c.key("a@h"), Ok("sync_dir/a@h".to_string()));
        for bad in ["", "a/b", "../x"] {
            assert!(c.key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_passed_deadline_sends_nothing() {
        // Nothing is sent: not even to loopback's discard port.
        let mut vars = KEYS.to_vec();
        vars.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
        let c = client(&vars, "s3://my-bucket");
        let past = Instant::now() - Duration::from_secs(1);
        assert_eq!(c.list(past), Err(Error::Timeout("deadline")));
        assert_eq!(c.delete("a", past), Err(Error::Timeout("deadline")));
    }

    #[test]
    fn a_bad_ca_bundle_is_a_configuration_error() {
        let dir = std::env::temp_dir().join(format!("pulse-s3-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        for (path, want) in [
            (junk.to_str().expect("utf-8"), "no PEM certificate"),
            ("/nonexistent/ca.pem", "cannot read /nonexistent/ca.pem"),
        ] {
            let mut vars: Vec<_> = KEYS.iter().map(|(k, v)| (*k, v.to_string())).collect();
            vars.push(("AWS_CA_BUNDLE", path.to_string()));
            let settings = Settings::from_vars(&vars).expect("settings");
            let location = Location::parse("s3://bucket", "sync_dir/").expect("location");
            let e = Client::new(&location, &settings).expect_err(path);
            assert!(
                e.0.starts_with("AWS_CA_BUNDLE: ") && e.0.contains(want),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
