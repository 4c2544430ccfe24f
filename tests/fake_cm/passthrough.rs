//! Pass-through: requests the layer does not handle reach the inner app
//! untouched, and same-origin BOSH requests on the pass-through path reach
//! the one configured CM byte for byte, bounded, answered with a BOSH
//! terminate body when the CM fails. The browser's requests go to a session
//! prebound through the same layer, as in real use.

use std::convert::Infallible;
use std::time::Duration;

use bosh_prebind::test_util::{FakeCm, FakeCmBuilder, Fault};
use bosh_prebind::{PrebindBody, PrebindLayer};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::common::{get, json_field};
use crate::harness::*;

// ---------------------------------------------------------------------------
// Everything else is the inner app's
// ---------------------------------------------------------------------------

#[tokio::test]
async fn other_paths_reach_the_inner_app_untouched() {
    let cm = anonymous_cm().build();
    let layer = anonymous_layer(&cm);
    for request in [
        Request::get("/").body(Full::new(Bytes::new())).unwrap(),
        Request::post("/prebind/x")
            .header(header::CONTENT_TYPE, "text/xml")
            .body(Full::new(Bytes::from(format!(
                "<body xmlns='{NS_HTTPBIND}'/>"
            ))))
            .unwrap(),
    ] {
        let answer = send(&layer, request).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "app");
        assert_eq!(answer.header(header::CACHE_CONTROL), None);
        assert_eq!(answer.error, None);
    }
    assert_eq!(cm.received(), 0);
}

// ---------------------------------------------------------------------------
// Same-origin BOSH
// ---------------------------------------------------------------------------

/// The pass-through request of a prebound session: its index in the
/// session (creation, auth, restart, bind come first).
const FORWARDED: usize = 4;

fn app()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    })
}

/// A CM answering with a header of its own the browser must not see.
fn cm() -> FakeCmBuilder {
    anonymous_cm().response_header(
        header::HeaderName::from_static("x-internal"),
        HeaderValue::from_static("secret"),
    )
}

fn layered(
    cm: &FakeCm,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<PrebindBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let layer: PrebindLayer<FakeCm> = anonymous_layer(cm);
    layer
        .bosh_passthrough("/http-bind")
        .max_wait(30)
        .request_timeout(Duration::from_secs(5))
        .bosh_passthrough_max_request_body(1024)
        .layer(app())
}

fn bosh(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn send_to(
    service: impl Service<
        Request<Full<Bytes>>,
        Response = Response<PrebindBody<Full<Bytes>>>,
        Error = Infallible,
    >,
    request: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, String) {
    let response = service.oneshot(request).await.unwrap();
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        head.status,
        head.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// Prebinds through `service` (GET /prebind) and returns the browser's
/// first request for the session: a ping with the next RID.
async fn prebind_then_ping(
    service: impl Service<
        Request<Full<Bytes>>,
        Response = Response<PrebindBody<Full<Bytes>>>,
        Error = Infallible,
    >,
) -> String {
    let (status, _, json) = send_to(service, get()).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (sid, rid) = (json_field(&json, "sid"), json_field(&json, "rid"));
    format!(
        "<body rid='{rid}' sid='{sid}' xmlns='{NS_HTTPBIND}'><iq type='get' id='p' \
         xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq></body>"
    )
}

#[tokio::test]
async fn posts_to_the_path_reach_the_cm_byte_for_byte() {
    let cm = cm().build();
    let service = layered(&cm);
    let ping = prebind_then_ping(service.clone()).await;
    let (status, headers, body) = send_to(service, bosh("/http-bind", ping.clone())).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    // The CM's answer: the ping's result, in the session.
    let answer = bosh_prebind::test_util::Element::parse(&body);
    assert_eq!(answer.attr("sid"), Some(SID));
    let result = answer.find("iq").expect("the ping's result");
    assert_eq!(
        (result.attr("id"), result.attr("type")),
        (Some("p"), Some("result"))
    );
    assert_eq!(headers[header::CONTENT_TYPE], "text/xml; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        !headers.contains_key("x-internal"),
        "only the content type is passed back"
    );
    let seen = cm.requests();
    assert_eq!(seen.len(), FORWARDED + 1);
    let forwarded = &seen[FORWARDED];
    assert_eq!(
        forwarded.uri,
        CM_URL.parse::<Uri>().unwrap(),
        "the configured CM, nothing else"
    );
    assert_eq!(forwarded.content_type, "text/xml; charset=utf-8");
    assert_eq!(forwarded.body, ping.as_bytes(), "byte for byte");
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn nothing_else_is_forwarded() {
    let cm = cm().build();
    let service = layered(&cm);
    let ping = prebind_then_ping(service.clone()).await;
    // Other paths go to the app.
    for path in ["/http-bind/", "/http-bind/../admin", "/http-binding", "/"] {
        let (_, _, body) = send_to(service.clone(), bosh(path, ping.clone())).await;
        assert_eq!(body, "app", "{path}");
    }
    assert_eq!(cm.requests().len(), FORWARDED);
    // Absolute-form targets name other hosts: the path decides, the host never does.
    let (status, _, body) = send_to(
        service.clone(),
        bosh("http://evil.example/http-bind", ping.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("id='p'"), "the CM answered the ping: {body}");
    assert_eq!(
        cm.requests().last().unwrap().uri,
        CM_URL.parse::<Uri>().unwrap()
    );
    // Only POST.
    let get = Request::get("/http-bind").body(Full::default()).unwrap();
    let (status, headers, _) = send_to(service.clone(), get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    assert_eq!(
        cm.requests().len(),
        FORWARDED + 1,
        "GET and other paths never reached the CM"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_the_cm() {
    let cm = cm().build();
    let (status, _, body) = send_to(layered(&cm), bosh("/http-bind", vec![b'x'; 4096])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("type='terminate'"), "{body}");
    assert_eq!(cm.received(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_a_502_terminate() {
    let cm = cm().fault_at(FORWARDED, Fault::Refused).build();
    let service = layered(&cm);
    let ping = prebind_then_ping(service.clone()).await;
    let (status, _, body) = send_to(service, bosh("/http-bind", ping)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("condition='remote-connection-failed'"),
        "{body}"
    );
    assert!(!body.contains(CM_HOST));
    assert_eq!(cm.requests().len(), FORWARDED + 1, "it did reach the CM");
}

#[tokio::test(start_paused = true)]
async fn a_held_request_may_last_max_wait_plus_the_request_timeout() {
    let cm = cm().fault_at(FORWARDED, Fault::NoAnswer).build();
    let service = layered(&cm);
    let ping = prebind_then_ping(service.clone()).await;
    let started = tokio::time::Instant::now();
    let (status, _, body) = send_to(service, bosh("/http-bind", ping)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("type='terminate'"));
    assert_eq!(started.elapsed(), Duration::from_secs(30 + 5));
}
