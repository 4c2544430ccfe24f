//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::Full;

/// A classic Strophe-style prebind: `POST /prebind` with an XML body.
pub(crate) fn post(body: &str) -> Request<Full<Bytes>> {
    Request::post("/prebind")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// A Converse.js-style prebind: `GET /prebind` as its XHR sends it.
pub(crate) fn get() -> Request<Full<Bytes>> {
    Request::get("/prebind")
        .header(header::ACCEPT, "application/json, text/javascript")
        .body(Full::default())
        .unwrap()
}

/// A field of a flat JSON object whose strings have no escaped quotes:
/// the string's content, or the number's digits.
pub(crate) fn json_field<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let start = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + needle.len();
    let rest = &json[start..];
    match rest.strip_prefix('"') {
        Some(rest) => &rest[..rest.find('"').unwrap()],
        None => &rest[..rest.find([',', '}']).unwrap()],
    }
}

/// The real Prosody started by `scripts/test.sh` (`BOSH_PREBIND_TEST_BOSH_URL`):
/// `None` skips the test locally; under `CI=true` a missing server fails it.
pub(crate) fn prosody() -> Option<Uri> {
    match std::env::var("BOSH_PREBIND_TEST_BOSH_URL") {
        Ok(url) => Some(url.parse().expect("BOSH_PREBIND_TEST_BOSH_URL is a URL")),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but BOSH_PREBIND_TEST_BOSH_URL is unset: run scripts/test.sh")
        }
        Err(_) => {
            eprintln!("skipped: no Prosody (run scripts/test.sh)");
            None
        }
    }
}
