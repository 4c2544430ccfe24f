//! Forwarding to the upstream app: the request's path and query to the
//! upstream's address, the client's `Host` kept, `X-Forwarded-*` set,
//! hop-by-hop fields dropped both ways; 502 when the app cannot be reached.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};

use crate::server::Body;

/// File extensions of subresources, which never get a session.
const ASSETS: &[&str] = &[
    "css", "js", "mjs", "map", "json", "txt", "xml", "png", "jpg", "jpeg", "gif", "svg", "webp",
    "avif", "ico", "woff", "woff2", "ttf", "otf", "pdf", "zip", "gz", "mp3", "mp4", "webm",
];

/// True for a page load rather than a subresource: `Sec-Fetch-Dest` says
/// `document`, `iframe` or `frame`, or, when the client does not say, the
/// path does not end in a static-asset extension.
pub(crate) fn is_page_load(head: &http::request::Parts) -> bool {
    if let Some(dest) = head.headers.get("sec-fetch-dest") {
        return matches!(dest.as_bytes(), b"document" | b"iframe" | b"frame");
    }
    let file = head.uri.path().rsplit('/').next().unwrap_or_default();
    file.rsplit_once('.')
        .is_none_or(|(_, extension)| !ASSETS.contains(&extension.to_ascii_lowercase().as_str()))
}

/// The client's address, put in each request's extensions by [`serve`](crate::server::serve).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// Forwards one request to the upstream app; 502 when it cannot be reached.
pub(crate) async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    mut request: Request<Incoming>,
) -> Response<Body> {
    if request.method() == Method::CONNECT {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    // The upstream's address, the request's path and query.
    let uri = Uri::builder()
        .scheme("http")
        .authority(upstream.authority().map_or("", |a| a.as_str()))
        .path_and_query(request.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build();
    let Ok(uri) = uri else {
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request\n");
    };
    *request.uri_mut() = uri;
    // Each hop speaks its own version: HTTP/1.1 to the upstream, the
    // client's back to the client (an HTTP/1.0 upstream would otherwise
    // downgrade every answer).
    let version = std::mem::replace(request.version_mut(), Version::HTTP_11);
    let peer = request.extensions().get::<Peer>().map(|peer| peer.0);
    forwarded_headers(request.headers_mut(), peer);
    match client.request(request).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            remove_hop_by_hop(&mut head.headers);
            head.version = version;
            Response::from_parts(head, body.map_err(Into::into).boxed_unsync())
        }
        Err(error) => {
            tracing::warn!(error = ?error, "upstream request failed");
            let text = "502 Bad Gateway: the application server did not answer.\n";
            plain(StatusCode::BAD_GATEWAY, text)
        }
    }
}

/// Rewrites a request's headers for the upstream: hop-by-hop fields out,
/// `Host` kept, `X-Forwarded-For` appended to, `-Proto` and `-Host` set.
fn forwarded_headers(headers: &mut HeaderMap, peer: Option<SocketAddr>) {
    let host = headers.get(header::HOST).cloned();
    remove_hop_by_hop(headers);
    let mut chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let peer = peer.map(|peer| peer.ip().to_string());
    chain.extend(peer.as_deref());
    if let Ok(chain) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert("x-forwarded-for", chain);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.remove("x-forwarded-host");
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
        headers.insert("x-forwarded-host", host);
    }
}

/// Fields meant for one connection only (RFC 9110 §7.6.1), besides those
/// that `Connection` names.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().map(HeaderName::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let body = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {});
    let mut response = Response::new(body.boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
