//! What can go wrong talking to the store, told apart so the caller can act:
//! back off when throttled, stop at start on access denied or a missing
//! bucket, lose a name on a failed precondition, and for anything else
//! change nothing this time and try again next period.
//!
//! No variant holds a URL (a signed URL carries the key id and, with
//! temporary credentials, the session token), a header or a reply's
//! message text (S3 echoes the canonical request, key id included, in
//! `SignatureDoesNotMatch`): only S3's short error code, cleaned.

use std::fmt;

/// One failed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The store asks us to slow down (503 `SlowDown`, any 503, or 429):
    /// back off before the next request.
    Throttled,
    /// The credentials are refused (403: `AccessDenied`,
    /// `InvalidAccessKeyId`, `SignatureDoesNotMatch`, an expired token …);
    /// the S3 code says which.
    AccessDenied {
        /// S3's error code.
        code: String,
    },
    /// The bucket does not exist (404 `NoSuchBucket`).
    NoSuchBucket,
    /// The bucket is in another region than the one we sign for (301
    /// `PermanentRedirect`, 400 `AuthorizationHeaderMalformed`).
    WrongRegion,
    /// Our clock and the store's differ by too much to sign
    /// (`RequestTimeTooSkewed`).
    ClockSkew,
    /// A conditional write found the object there (412
    /// `PreconditionFailed`, 409 `ConditionalRequestConflict`), or a
    /// create found another body than ours when it read it back.
    PreconditionFailed,
    /// The request's deadline passed; the phase it was in.
    Timeout(&'static str),
    /// The store's reply made no sense: unparsable or partial XML, a
    /// missing header, a body over the limit.
    Garbage(String),
    /// No exchange: refused, reset, unresolvable, TLS refused.
    Transport(String),
    /// Any other failing status, with S3's error code when there was one.
    Status {
        /// The HTTP status.
        status: u16,
        /// S3's error code, or empty.
        code: String,
    },
}

impl Error {
    /// Whether the next request should wait longer than usual.
    pub(crate) fn is_throttled(&self) -> bool {
        matches!(self, Error::Throttled)
    }

    /// Whether this is the configuration's fault rather than the moment's:
    /// at start, a reason to stop with a message (exit 1).
    pub(crate) fn is_configuration(&self) -> bool {
        matches!(
            self,
            Error::AccessDenied { .. }
                | Error::NoSuchBucket
                | Error::WrongRegion
                | Error::ClockSkew
        )
    }

    /// The error for a failing status with S3's `code` (possibly empty).
    pub(super) fn from_status(status: u16, code: &str) -> Error {
        match (status, code) {
            (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded")
            | (503 | 429, _) => Error::Throttled,
            (_, "NoSuchBucket") => Error::NoSuchBucket,
            (_, "PreconditionFailed" | "ConditionalRequestConflict") | (412, _) => {
                Error::PreconditionFailed
            }
            (_, "RequestTimeTooSkewed") => Error::ClockSkew,
            (
                _,
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException",
            )
            | (301, _) => Error::WrongRegion,
            (403, _) => Error::AccessDenied {
                code: code.to_string(),
            },
            _ => Error::Status {
                status,
                code: code.to_string(),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Throttled => write!(f, "the store asks to slow down"),
            Error::AccessDenied { code } if code.is_empty() => write!(
                f,
                "access denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
                 (and AWS_SESSION_TOKEN) and the key's rights on the bucket"
            ),
            Error::AccessDenied { code } => write!(
                f,
                "access denied ({code}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
                 (and AWS_SESSION_TOKEN) and the key's rights on the bucket"
            ),
            Error::NoSuchBucket => write!(
                f,
                "no such bucket: create it, or fix the bucket in --registry s3://BUCKET/PREFIX"
            ),
            Error::WrongRegion => write!(
                f,
                "the bucket is in another region: set AWS_REGION to the bucket's region"
            ),
            Error::ClockSkew => write!(
                f,
                "this host's clock differs too much from the store's to sign requests: set the clock"
            ),
            Error::PreconditionFailed => write!(f, "the object exists already"),
            Error::Timeout(phase) => write!(f, "timeout ({phase})"),
            Error::Garbage(what) => write!(f, "the store's reply makes no sense: {what}"),
            Error::Transport(what) => write!(f, "{what}"),
            Error::Status { status, code } if code.is_empty() => {
                write!(f, "the store answered {status}")
            }
            Error::Status { status, code } => write!(f, "the store answered {status} {code}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ureq::Error> for Error {
    /// Only fixed words and I/O errors are kept: ureq's own text may hold
    /// the URL, and ours is signed.
    fn from(e: ureq::Error) -> Error {
        use ureq::Timeout as T;
        match e {
            ureq::Error::Timeout(t) => Error::Timeout(match t {
                T::Resolve => "resolve",
                T::Connect => "connect",
                T::SendRequest | T::SendBody | T::PerWrite => "request",
                T::RecvResponse => "reply",
                T::RecvBody | T::PerRead => "reply body",
                _ => "deadline",
            }),
            // A timed-out read is `WouldBlock` on Unix.
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                Error::Timeout("deadline")
            }
            ureq::Error::Io(io) => Error::Transport(io.to_string()),
            ureq::Error::HostNotFound => Error::Transport("host not found".into()),
            ureq::Error::ConnectionFailed => Error::Transport("connection failed".into()),
            ureq::Error::BodyExceedsLimit(limit) => {
                Error::Garbage(format!("a reply over {limit} bytes"))
            }
            ureq::Error::Protocol(_) => Error::Garbage("not HTTP/1.1".into()),
            ureq::Error::Tls(what) => Error::Transport(format!("TLS: {what}")),
            ureq::Error::Rustls(e) => Error::Transport(format!("TLS: {e}")),
            ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
                Error::Garbage("a redirect".into())
            }
            _ => Error::Transport("the HTTP client refused the request".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_are_told_apart() {
        assert_eq!(Error::from_status(503, "SlowDown"), Error::Throttled);
        assert_eq!(Error::from_status(503, ""), Error::Throttled);
        assert_eq!(Error::from_status(429, ""), Error::Throttled);
        assert_eq!(Error::from_status(404, "NoSuchBucket"), Error::NoSuchBucket);
        assert_eq!(
            Error::from_status(412, "PreconditionFailed"),
            Error::PreconditionFailed
        );
        assert_eq!(
            Error::from_status(409, "ConditionalRequestConflict"),
            Error::PreconditionFailed
        );
        assert_eq!(
            Error::from_status(403, "InvalidAccessKeyId"),
            Error::AccessDenied {
                code: "InvalidAccessKeyId".into()
            }
        );
        assert_eq!(
            Error::from_status(403, "RequestTimeTooSkewed"),
            Error::ClockSkew
        );
        assert_eq!(Error::from_status(301, ""), Error::WrongRegion);
        assert_eq!(
            Error::from_status(500, "InternalError"),
            Error::Status {
                status: 500,
                code: "InternalError".into()
            }
        );
        assert!(Error::from_status(403, "").is_configuration());
        assert!(!Error::from_status(500, "").is_configuration());
        assert!(Error::from_status(503, "SlowDown").is_throttled());
    }

    #[test]
    fn messages_are_one_line_and_name_what_to_fix() {
        let denied = Error::AccessDenied {
            code: "SignatureDoesNotMatch".into(),
        }
        .to_string();
        assert!(denied.contains("AWS_SECRET_ACCESS_KEY"), "{denied}");
        assert!(Error::NoSuchBucket.to_string().contains("s3://BUCKET"));
        assert!(Error::WrongRegion.to_string().contains("AWS_REGION"));
        for e in [
            Error::Throttled,
            Error::NoSuchBucket,
            Error::Timeout("connect"),
            Error::Garbage("x".into()),
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }
}
