//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

use std::convert::Infallible;

use bosh_prebind::bosh::{BoshResponse, IqType};
use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

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

/// A real server's URL from the environment (set by `scripts/test.sh`). The
/// tests that call this are `#[ignore]`d, so a plain `cargo test` reports
/// them as ignored; run with `--include-ignored` and no server, they fail.
pub(crate) fn server_url(var: &str) -> Uri {
    let url = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is unset: run scripts/test.sh, which starts the servers")
    });
    url.parse()
        .unwrap_or_else(|e| panic!("{var}={url:?} is not a URL: {e}"))
}

/// The real Prosody 0.12 started by `scripts/prosody.sh`.
pub(crate) fn prosody() -> Uri {
    server_url("BOSH_PREBIND_TEST_BOSH_URL")
}

/// A fresh default transport trusting the test CA of `scripts/prosody.sh`
/// (when it is there), for clients that attach like a browser would.
#[cfg(feature = "rustls")]
pub(crate) fn test_transport() -> bosh_prebind::HttpTransport {
    let builder = bosh_prebind::transport::HttpTransportBuilder::new();
    match std::env::var("BOSH_PREBIND_TEST_CA_FILE") {
        Ok(ca) => builder
            .ca_file(ca)
            .expect("the test CA is a PEM file")
            .build(),
        Err(_) => builder.build(),
    }
}

/// An anonymous session injected into a small page by a layer in front of
/// the CM at `url`: checks the page (200, `no-store`, the snippet right
/// before `</head>`) and returns the snippet's JSON.
pub(crate) async fn injected_session_json(url: &Uri) -> String {
    let page_app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .body(Full::new(Bytes::from_static(
                    b"<!doctype html><html><head><title>chat</title></head><body></body></html>",
                )))
                .unwrap(),
        )
    });
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(Credentials::anonymous("anon.localhost"))
        .inject_path("/")
        .layer(page_app);
    let request = Request::get("/").body(Full::default()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let page = response.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8(page.to_vec()).unwrap();
    let open = "<script type=\"application/json\" id=\"xmpp-prebind\">";
    let start = page.find(open).expect("snippet injected") + open.len();
    assert!(
        page.ends_with("</script></head><body></body></html>"),
        "{page}"
    );
    page[start..start + page[start..].find("</script>").unwrap()].to_owned()
}

/// alice on the test servers (Prosody 0.12 and 13, ejabberd).
pub(crate) fn alice() -> Credentials {
    Credentials::account("alice@localhost", "secret-alice").unwrap()
}

/// A browser's first request after attaching: the given sid and rid, an
/// XEP-0199 ping to `domain` as its payload.
pub(crate) fn ping_body(sid: &str, rid: u64, domain: &str) -> String {
    format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{sid}'>\
         <iq xmlns='jabber:client' type='get' id='ping_attach' to='{domain}'>\
         <ping xmlns='urn:xmpp:ping'/></iq></body>"
    )
}

/// Attaches like a browser would, directly to the CM at `url`: a fresh
/// client (nothing shared with the layer's pooled connections), the given
/// sid and rid, a ping as the first payload.
pub(crate) async fn attach_and_ping(url: &Uri, sid: &str, rid: u64, domain: &str) -> BoshResponse {
    let request = Request::post(url.clone())
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(ping_body(sid, rid, domain))))
        .unwrap();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        test_transport().oneshot(request),
    )
    .await
    .expect("the CM answers the attach within 10 s")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    BoshResponse::parse(&bytes).unwrap()
}

/// The answer carries the result of [`ping_body`]'s ping.
pub(crate) fn ping_answered(response: &BoshResponse) -> bool {
    response
        .iqs
        .iter()
        .any(|iq| iq.id.as_deref() == Some("ping_attach") && iq.kind == IqType::Result)
}
