//! Refusals: bad input, the domain allow-list, cross-site requests and the
//! handshake cap. Refused requests are answered at once, and the CM
//! receives nothing (see `harness::assert_refused`).

use std::sync::Arc;
use std::time::Duration;

use bosh_prebind::Credentials;
use bosh_prebind::handshake::HandshakeConfig;
use bosh_prebind::test_util::ChunkedBody;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};

use crate::common::{get, json_field, post};
use crate::harness::*;
use crate::pages;
use crate::pages::{PAGE_TEXT, app, html_page, layer, snippet, text};

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_xml_is_400() {
    assert_refused(
        anonymous_layer,
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='1'")),
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn a_request_body_over_the_cap_with_content_length_is_413() {
    let body = format!("<body xmlns='{NS_HTTPBIND}'>{}</body>", " ".repeat(3000));
    let mut request = post(&body);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, body.len().into());
    assert_refused(
        anonymous_layer,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad-request",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_content_length_over_the_cap_is_refused_without_reading_the_body() {
    // The body never ends: reading it would hang until `send` gives up.
    let request = Request::post("/prebind")
        .header(header::CONTENT_TYPE, "text/xml")
        .header(header::CONTENT_LENGTH, "1000000")
        .body(ChunkedBody::hanging([format!(
            "<body xmlns='{NS_HTTPBIND}'>"
        )]))
        .unwrap();
    let answer = assert_refused(
        anonymous_layer,
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad-request",
    )
    .await;
    assert_eq!(answer.elapsed, Duration::ZERO);
}

#[tokio::test]
async fn a_streamed_request_body_over_the_cap_is_413() {
    let mut chunks = vec![format!("<body xmlns='{NS_HTTPBIND}'>")];
    chunks.extend(std::iter::repeat_n(" ".repeat(500), 6));
    chunks.push("</body>".into());
    let request = Request::post("/prebind")
        .header(header::CONTENT_TYPE, "text/xml")
        .body(ChunkedBody::new(chunks))
        .unwrap();
    assert_refused(
        |cm| anonymous_layer(cm).max_request_body(2048),
        request,
        StatusCode::PAYLOAD_TOO_LARGE,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn a_json_content_type_is_415() {
    let request = Request::post("/prebind")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"to\":\"anon.localhost\"}",
        )))
        .unwrap();
    assert_refused(
        anonymous_layer,
        request,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn a_domain_not_allowed_is_403_host_unknown() {
    assert_refused(
        anonymous_layer,
        post(&format!("<body xmlns='{NS_HTTPBIND}' to='evil.example'/>")),
        StatusCode::FORBIDDEN,
        "host-unknown",
    )
    .await;
}

#[tokio::test]
async fn a_jid_in_to_is_400() {
    assert_refused(
        anonymous_layer,
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}' to='alice@anon.localhost'/>"
        )),
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn rids_that_are_not_numbers_or_out_of_range_are_400() {
    let above_max = (HandshakeConfig::max_first_rid() + 1).to_string();
    for rid in ["abc", "0", "9007199254740991", "-1", "1e3", &above_max] {
        assert_refused(
            anonymous_layer,
            post(&format!("<body xmlns='{NS_HTTPBIND}' rid='{rid}'/>")),
            StatusCode::BAD_REQUEST,
            "bad-request",
        )
        .await;
    }
}

#[tokio::test]
async fn a_negative_wait_is_400() {
    assert_refused(
        anonymous_layer,
        post(&format!("<body xmlns='{NS_HTTPBIND}' wait='-5'/>")),
        StatusCode::BAD_REQUEST,
        "bad-request",
    )
    .await;
}

#[tokio::test]
async fn put_is_405_with_an_allow_header() {
    let request = Request::put("/prebind")
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Full::new(Bytes::from(format!(
            "<body xmlns='{NS_HTTPBIND}'/>"
        ))))
        .unwrap();
    let answer = assert_refused(
        anonymous_layer,
        request,
        StatusCode::METHOD_NOT_ALLOWED,
        "bad-request",
    )
    .await;
    assert_eq!(answer.header(header::ALLOW), Some("GET, POST"));
}

#[tokio::test]
async fn a_cross_site_fetch_is_403() {
    let mut request = get();
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_refused(
        anonymous_layer,
        request,
        StatusCode::FORBIDDEN,
        "policy-violation",
    )
    .await;
}

#[tokio::test]
async fn a_foreign_origin_is_403() {
    let mut request = post(&format!("<body xmlns='{NS_HTTPBIND}'/>"));
    let headers = request.headers_mut();
    headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    headers.insert(header::HOST, "app.example".parse().unwrap());
    assert_refused(
        anonymous_layer,
        request,
        StatusCode::FORBIDDEN,
        "policy-violation",
    )
    .await;
}

#[tokio::test]
async fn no_credentials_for_the_request_is_401_with_a_challenge() {
    let answer = assert_refused(
        |cm| cm.layer().credentials_from_extensions().allow_domain(ANON),
        get(),
        StatusCode::UNAUTHORIZED,
        "not-authorized",
    )
    .await;
    // RFC 9110 §11.6.1: a 401 must carry WWW-Authenticate.
    assert_eq!(
        answer.header(header::WWW_AUTHENTICATE),
        Some("XMPP-Prebind realm=\"xmpp-prebind\"")
    );
}

#[tokio::test]
async fn credentials_for_a_domain_not_allowed_are_403() {
    let mut request = get();
    request
        .extensions_mut()
        .insert(Credentials::anonymous("other.example"));
    assert_refused(
        |cm| cm.layer().credentials_from_extensions().allow_domain(ANON),
        request,
        StatusCode::FORBIDDEN,
        "host-unknown",
    )
    .await;
}

// ---------------------------------------------------------------------------
// The domain allow-list and cross-site rules
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_same_origin_post_with_matching_origin_and_host_is_accepted() {
    let cm = anonymous_cm().build();
    let mut request = post(&format!("<body xmlns='{NS_HTTPBIND}'/>"));
    let headers = request.headers_mut();
    headers.insert(header::ORIGIN, "http://app.example".parse().unwrap());
    headers.insert(header::HOST, "app.example".parse().unwrap());
    let answer = send(&anonymous_layer(&cm), request).await;

    answer.assert_xml_success();
    assert_eq!(cm.requests().len(), 4);
}

#[tokio::test]
async fn a_same_origin_post_over_http2_without_host_header_is_accepted() {
    // HTTP/2 carries the host in `:authority`, which hyper puts in the URI;
    // there is no Host header. An older browser sends Origin but no
    // Sec-Fetch-Site.
    let cm = anonymous_cm().build();
    let mut request = Request::post("https://app.example/prebind")
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "text/xml")
        .header(header::ORIGIN, "https://app.example")
        .body(Full::new(Bytes::from(format!(
            "<body xmlns='{NS_HTTPBIND}'/>"
        ))))
        .unwrap();
    assert!(request.headers_mut().get(header::HOST).is_none());
    let answer = send(&anonymous_layer(&cm), request).await;

    answer.assert_xml_success();
    assert_eq!(cm.requests().len(), 4);
}
#[tokio::test]
async fn the_allow_list_ignores_case_and_a_trailing_dot() {
    for to in ["ANON.LocalHost", "anon.localhost.", " anon.localhost "] {
        let cm = anonymous_cm().build();
        let answer = send(
            &anonymous_layer(&cm),
            post(&format!("<body xmlns='{NS_HTTPBIND}' to='{to}'/>")),
        )
        .await;
        answer.assert_xml_success();
        assert_eq!(
            cm.request(0).attr("to"),
            Some(ANON),
            "normalized before use: {to:?}"
        );
    }
}

#[tokio::test]
async fn tricky_domains_are_refused_without_contacting_the_cm() {
    for (to, status, condition) in [
        (
            "anon.localhost/resource",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        (
            "guest@anon.localhost",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
        ("", StatusCode::BAD_REQUEST, "bad-request"),
        ("anon.localhost..", StatusCode::FORBIDDEN, "host-unknown"),
        ("anön.localhost", StatusCode::FORBIDDEN, "host-unknown"),
        (
            "anon.localhost.evil.example",
            StatusCode::FORBIDDEN,
            "host-unknown",
        ),
        (
            "evil.example#anon.localhost",
            StatusCode::FORBIDDEN,
            "host-unknown",
        ),
        ("localhost", StatusCode::FORBIDDEN, "host-unknown"),
        (
            "anon.localhost\u{0}",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ] {
        let to = quick_xml::escape::escape(to);
        assert_refused(
            anonymous_layer,
            post(&format!("<body xmlns='{NS_HTTPBIND}' to='{to}'/>")),
            status,
            condition,
        )
        .await;
    }
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_for_itself_alone() {
    let cm = anonymous_cm().build();
    let layer = anonymous_layer(&cm).allow_origin("https://partner.example");
    let preflight = Request::options("/prebind")
        .header(header::ORIGIN, "https://partner.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Full::default())
        .unwrap();
    let answer = send(&layer, preflight).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://partner.example")
    );
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        Some("GET, POST")
    );
    assert!(cm.requests().is_empty());

    let mut request = get();
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://partner.example".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let answer = send(&layer, request).await;
    answer.assert_json_success();
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://partner.example")
    );
    assert_eq!(
        answer.header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        Some("true")
    );
    assert_eq!(answer.header(header::VARY), Some("Origin"));

    // Anyone else: no CORS headers, no wildcard, and refused.
    let mut request = get();
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    request
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let answer = assert_refused(
        |cm| anonymous_layer(cm).allow_origin("https://partner.example"),
        request,
        StatusCode::FORBIDDEN,
        "policy-violation",
    )
    .await;
    assert_eq!(answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    let preflight = Request::options("/prebind")
        .header(header::ORIGIN, "https://evil.example")
        .body(Full::default())
        .unwrap();
    let answer = send(&layer, preflight).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
}

// ---------------------------------------------------------------------------
// The handshake cap
// ---------------------------------------------------------------------------

#[tokio::test]
async fn beyond_the_handshake_cap_pages_get_the_error_and_prebinds_503() {
    let cm = anonymous_cm().hold_answers().build();
    let service = layer(&cm)
        .max_concurrent_handshakes(1)
        .layer(app(html_page, Arc::default()));
    // The first page's handshake is held at the CM.
    let mut first = Box::pin(service.clone().oneshot(pages::get("/")));
    let mut first_body = loop {
        tokio::select! {
            response = &mut first => break response.unwrap().into_body(),
            () = tokio::task::yield_now() => {}
        }
    };
    let head = first_body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(head.starts_with(b"<!doctype html>"));
    assert_eq!(cm.requests().len(), 1);

    let page = text(
        service
            .clone()
            .oneshot(pages::get("/"))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    let (json, rest) = snippet(&page);
    assert_eq!(rest, PAGE_TEXT, "the page is still served");
    assert_eq!(json_field(&json, "condition"), "policy-violation");
    let prebind = Request::get("/prebind").body(Full::default()).unwrap();
    let response = service.clone().oneshot(prebind).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_eq!(
        cm.requests().len(),
        1,
        "refused handshakes never reach the CM"
    );

    // Once the first handshake ends, its permit is free again.
    cm.release();
    let (first_json, _) = snippet(&text(first_body).await);
    assert_eq!(json_field(&first_json, "jid"), ANON_JID);
    let page = text(service.oneshot(pages::get("/")).await.unwrap().into_body()).await;
    assert_eq!(json_field(&snippet(&page).0, "jid"), ANON_JID);
}
