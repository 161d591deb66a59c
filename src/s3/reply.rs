//! Reading the store's replies, all of them untrusted: a listing page, the
//! error code of a failure, the `Date` header and `LastModified` times.
//!
//! Nothing here panics on any input: a reply that cannot be read is
//! [`Error::Garbage`], and a time that cannot be read is `None` (an age
//! that is not known, which never makes a node stale).

use std::time::{Duration, SystemTime};

use super::config::printable;
use super::error::Error;

/// One object of a listing, under the listed prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The key without the prefix: a node's name if it is a node's object.
    pub name: String,
    /// The store's entity tag (as the store wrote it, quotes and all): it
    /// changes when the body does, so a body is fetched only then.
    pub etag: String,
    /// The body's size in bytes.
    pub size: u64,
    /// When it was last written, by the store's clock.
    pub last_modified: Option<SystemTime>,
    /// How long ago, by the store's clock: the `Date` of the reply that
    /// listed it minus `LastModified` (0 when that is in the future).
    /// `None` when either is missing or unreadable.
    pub age: Option<Duration>,
}

/// One page of a listing.
#[derive(Debug)]
pub(super) struct Page {
    pub objects: Vec<Listed>,
    /// The token for the next page; `None` on the last.
    pub next: Option<String>,
}

/// Reads one `ListObjectsV2` reply page. Keys outside `prefix` (a store that
/// ignores the prefix asked for) and the prefix itself are left out; a page
/// cut short, or marked truncated without a continuation token, is garbage,
/// so a partial listing is never taken for a whole one.
pub(super) fn list_page(
    body: &[u8],
    prefix: &str,
    date: Option<SystemTime>,
) -> Result<Page, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::Garbage("a listing that is not UTF-8".into()))?;
    // The parser takes a document cut after an element for a whole one.
    if !text.trim_end().ends_with("</ListBucketResult>") {
        return Err(Error::Garbage("a listing cut short".into()));
    }
    let parsed = rusty_s3::actions::ListObjectsV2::parse_response(text).map_err(|e| {
        Error::Garbage(format!(
            "a listing that is not S3's XML ({})",
            printable(&e.to_string())
        ))
    })?;
    let objects = parsed
        .contents
        .into_iter()
        .filter_map(|object| {
            let name = object.key.strip_prefix(prefix)?;
            if name.is_empty() {
                return None;
            }
            let last_modified = object.last_modified.as_deref().and_then(iso_time);
            Some(Listed {
                name: name.to_string(),
                etag: object.etag.unwrap_or_default(),
                size: object.size.unwrap_or(0),
                last_modified,
                age: age(date, last_modified),
            })
        })
        .collect();
    Ok(Page {
        objects,
        next: parsed.next_continuation_token,
    })
}

/// How long before `now` (the store's) `then` was; 0 when in the future.
pub(super) fn age(now: Option<SystemTime>, then: Option<SystemTime>) -> Option<Duration> {
    Some(now?.duration_since(then?).unwrap_or(Duration::ZERO))
}

/// S3's error code in an error reply (`<Error><Code>NoSuchBucket</Code>…`),
/// or empty. Only the code is kept, and only its letters and digits: the
/// rest of the reply may echo what we signed.
pub(super) fn error_code(body: &[u8]) -> String {
    let Some(start) = find(body, b"<Code>") else {
        return String::new();
    };
    let rest = &body[start + b"<Code>".len()..];
    let end = find(rest, b"</Code>").unwrap_or(0);
    rest[..end]
        .iter()
        .take(64)
        .filter(|b| b.is_ascii_alphanumeric() || **b == b'.')
        .map(|&b| char::from(b))
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An HTTP `Date` (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(super) fn http_date(text: &str) -> Option<SystemTime> {
    if text.len() > 64 {
        return None;
    }
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text.trim())
        .ok()
        .map(SystemTime::from)
}

/// An S3 `LastModified` (`2026-12-07T02:29:48.123Z`).
pub(super) fn iso_time(text: &str) -> Option<SystemTime> {
    if text.len() > 64 {
        return None;
    }
    text.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

    fn page(contents: &str, tail: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <ListBucketResult xmlns=\"{NS}\"><Name>b</Name><Prefix>sync_dir/</Prefix>\
             <KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>\
             {tail}{contents}</ListBucketResult>"
        )
    }

    fn object(key: &str, modified: &str) -> String {
        format!(
            "<Contents><Key>{key}</Key><LastModified>{modified}</LastModified>\
             <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>63</Size>\
             <StorageClass>STANDARD</StorageClass></Contents>"
        )
    }

    fn at(s: &str) -> SystemTime {
        iso_time(s).expect("time")
    }

    #[test]
    fn a_page_is_read_with_ages_by_the_stores_clock() {
        let body = page(
            &(object("sync_dir/a%40127.0.0.1", "2026-12-07T02:29:40.500Z")
                + &object("sync_dir/b%40h", "2026-12-07T02:29:50.000Z")
                + &object("elsewhere/c%40h", "2026-12-07T02:29:50.000Z")
                + &object("sync_dir/", "2026-12-07T02:29:50.000Z")),
            "<IsTruncated>true</IsTruncated><NextContinuationToken>tok/+=</NextContinuationToken>",
        );
        let date = http_date("Mon, 07 Dec 2026 02:29:48 GMT");
        assert_eq!(date, Some(at("2026-12-07T02:29:48Z")));
        let p = list_page(body.as_bytes(), "sync_dir/", date).expect("page");
        assert_eq!(p.next.as_deref(), Some("tok/+="));
        let names: Vec<_> = p.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a@127.0.0.1", "b@h"]);
        let a = &p.objects[0];
        assert_eq!(a.etag, "\"d41d8cd98f00b204e9800998ecf8427e\"");
        assert_eq!(a.size, 63);
        assert_eq!(a.age, Some(Duration::from_millis(7500)));
        // Written "after" the reply's Date: age 0, never negative.
        assert_eq!(p.objects[1].age, Some(Duration::ZERO));
        // Without the store's Date the age is unknown.
        let p = list_page(body.as_bytes(), "sync_dir/", None).expect("page");
        assert_eq!(p.objects[0].age, None);
        assert!(p.objects[0].last_modified.is_some());
    }

    #[test]
    fn the_last_page_has_no_token_and_an_empty_listing_is_fine() {
        let p = list_page(
            page("", "<IsTruncated>false</IsTruncated>").as_bytes(),
            "sync_dir/",
            None,
        )
        .expect("page");
        assert!(p.objects.is_empty());
        assert_eq!(p.next, None);
    }

    #[test]
    fn garbage_and_partial_listings_are_errors_not_panics() {
        let whole = page(
            &object("sync_dir/a%40h", "2026-12-07T02:29:40Z"),
            "<IsTruncated>false</IsTruncated>",
        );
        let mut bodies: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"<html>502 Bad Gateway</html>".to_vec(),
            vec![0xff, 0xfe, 0x00, 0x3c],
            b"<ListBucketResult>".to_vec(),
            b"<!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><x>&b;</x>".to_vec(),
            // Truncated without a token: a partial listing.
            page("", "<IsTruncated>true</IsTruncated>").into_bytes(),
            page("<Contents><Key>sync_dir/a</Key>", "").into_bytes(),
        ];
        // Every prefix of a good page, as a connection cut mid-reply leaves.
        bodies.extend((0..whole.len() - 1).map(|i| whole.as_bytes()[..i].to_vec()));
        for body in bodies {
            match list_page(&body, "sync_dir/", None) {
                Err(Error::Garbage(why)) => assert!(!why.contains('\n'), "{why}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&body)),
            }
        }
    }

    #[test]
    fn bad_times_are_unknown_ages() {
        let body = page(
            &(object("sync_dir/a", "yesterday") + &object("sync_dir/b", "")),
            "<IsTruncated>false</IsTruncated>",
        );
        let date = http_date("Mon, 07 Dec 2026 02:29:48 GMT");
        let p = list_page(body.as_bytes(), "sync_dir/", date).expect("page");
        assert!(
            p.objects
                .iter()
                .all(|o| o.age.is_none() && o.last_modified.is_none())
        );
        for bad in [
            "",
            "Mon",
            "Mon, 99 Dec 2026 02:29:48 GMT",
            &"x".repeat(10_000),
        ] {
            assert_eq!(http_date(bad), None, "{bad}");
            assert_eq!(iso_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_huge_page_is_read() {
        let contents: String = (0..5000)
            .map(|i| object(&format!("sync_dir/n{i}%40h"), "2026-12-07T02:29:40Z"))
            .collect();
        let body = page(&contents, "<IsTruncated>false</IsTruncated>");
        let p = list_page(body.as_bytes(), "sync_dir/", None).expect("page");
        assert_eq!(p.objects.len(), 5000);
        // A deeply nested hostile reply is refused, not a stack overflow.
        let deep = "<a>".repeat(100_000);
        assert!(list_page(deep.as_bytes(), "sync_dir/", None).is_err());
        let deep = page(
            &format!("{}{}", "<x>".repeat(100_000), "</x>".repeat(100_000)),
            "<IsTruncated>false</IsTruncated>",
        );
        let _ = list_page(deep.as_bytes(), "sync_dir/", None);
    }

    #[test]
    fn only_the_error_code_is_kept() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match</Message>\
            <StringToSign>AWS4-HMAC-SHA256 AKIDEXAMPLE</StringToSign></Error>";
        assert_eq!(error_code(body), "SignatureDoesNotMatch");
        assert_eq!(
            error_code(b"<Error><Code>No\nSuch<b>Bucket</Code>"),
            "NoSuchbBucket"
        );
        assert_eq!(error_code(b"<Error><Code>NoSuchBucket"), "");
        assert_eq!(error_code(b""), "");
        assert_eq!(error_code(b"<Code>"), "");
        let long = format!("<Code>{}</Code>", "A".repeat(1000));
        assert_eq!(error_code(long.as_bytes()).len(), 64);
    }
}
