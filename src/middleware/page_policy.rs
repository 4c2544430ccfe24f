//! The HTTP rules for pages that get a session (docs/design.md §3.4): which
//! responses can be written into, what the request loses so the page comes
//! back whole and fresh, and what the response loses so no cache keeps it.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

/// Before the inner service sees a page request: the page must come back
/// whole, uncompressed and fresh.
pub(crate) fn strip_request_validators(headers: &mut HeaderMap) {
    // The page must come back whole and uncompressed to be written into
    // (put compression outside this layer), and fresh: a 304 or a range
    // cannot carry a new session.
    for name in [
        header::ACCEPT_ENCODING,
        header::RANGE,
        header::IF_RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ] {
        headers.remove(name);
    }
}

/// A complete, uncompressed HTML document in an ASCII-compatible charset
/// (the snippet is UTF-8: a UTF-16 page would show it as garbage and lose
/// it; a page whose body starts with a UTF-16 byte order mark is caught by
/// the body).
pub(crate) fn is_injectable<B>(response: &Response<B>) -> bool {
    let headers = response.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut params = content_type.split(';');
    let html = params
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/html"));
    let utf16 = params.any(|param| {
        param.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("charset")
                && value
                    .trim()
                    .trim_matches('"')
                    .get(..6)
                    .is_some_and(|v| v.eq_ignore_ascii_case("utf-16"))
        })
    });
    let identity = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
    response.status() == StatusCode::OK
        && html
        && !utf16
        && identity
        && !headers.contains_key(header::CONTENT_RANGE)
}

/// An injected page carries a session: it must not be stored or revalidated
/// (a cache would hand one visitor's session to another), and its length
/// changes by a snippet not known when the head goes out.
pub(crate) fn make_uncacheable(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ETAG);
    headers.remove(header::LAST_MODIFIED);
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
