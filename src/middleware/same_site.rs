//! Who may ask for a session: prebinds started by another site are refused
//! (docs/design.md §6), and only explicitly allowed origins get CORS headers
//! (never a wildcard).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::error::PrebindError;

/// A CORS preflight from an allowed origin (Fetch standard §3.2.2): the
/// browser asks before a `text/xml` POST.
pub(crate) fn preflight(origin: HeaderValue) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    allow_cors(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Names the one allowed origin, with credentials (it was allowed to make
/// credentialed prebinds), and varies caches by `Origin`.
pub(crate) fn allow_cors(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// Refuses prebinds started by another site (docs/design.md §6): a page elsewhere
/// must not be able to spend our handshakes or learn a session made with the
/// visitor's cookies. `Sec-Fetch-Site` is trusted when present (browsers set
/// it and pages cannot); otherwise `Origin` must match `Host`.
pub(crate) fn check_same_site(
    headers: &HeaderMap,
    host: Option<&str>,
    allowed: &[String],
) -> Result<(), PrebindError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let origin_allowed =
        || origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ if origin_allowed() => Ok(()),
            _ => Err(PrebindError::CrossSite),
        };
    }
    let Some(origin) = origin else {
        // Not a browser-initiated cross-origin request (curl, server-side).
        return Ok(());
    };
    if origin_allowed() {
        return Ok(());
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(PrebindError::CrossSite),
    }
}

/// The host the request was sent to: the `Host` header (HTTP/1.1), else the
/// URI's authority (HTTP/2 `:authority`, RFC 9113 §8.3.1).
pub(crate) fn request_host(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The `Origin` of a cross-origin request from an allowed origin, which
/// gets CORS headers naming exactly that origin (never a wildcard).
pub(crate) fn allowed_cors_origin<'a>(
    headers: &'a HeaderMap,
    allowed: &[String],
) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(text))
        .then_some(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_requests_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        let allowed = vec!["https://partner.example".to_owned()];
        assert!(check_same_site(&headers(&[]), None, &allowed).is_ok());
        assert!(
            check_same_site(
                &headers(&[("sec-fetch-site", "same-origin")]),
                None,
                &allowed
            )
            .is_ok()
        );
        assert!(
            check_same_site(
                &headers(&[("sec-fetch-site", "cross-site")]),
                None,
                &allowed
            )
            .is_err()
        );
        assert!(
            check_same_site(&headers(&[("sec-fetch-site", "same-site")]), None, &allowed).is_err()
        );
        assert!(
            check_same_site(
                &headers(&[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://partner.example")
                ]),
                None,
                &allowed
            )
            .is_ok()
        );
        assert!(
            check_same_site(
                &headers(&[("origin", "http://app.example")]),
                Some("app.example"),
                &allowed
            )
            .is_ok()
        );
        assert!(
            check_same_site(
                &headers(&[("origin", "http://evil.example")]),
                Some("app.example"),
                &allowed
            )
            .is_err()
        );
        assert!(
            check_same_site(
                &headers(&[("origin", "null")]),
                Some("app.example"),
                &allowed
            )
            .is_err()
        );
    }
}
