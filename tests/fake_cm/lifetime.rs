//! Sessions over a site's lifetime: pages with nobody to log in are not
//! touched, sessions made for pages that could not carry them are ended
//! (bounded), pages whose script holds a live session reuse it, and pages
//! that cannot carry a UTF-8 snippet are left alone.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bosh_prebind::test_util::{FakeCm, Termination};
use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::common::json_field;
use crate::harness::*;
use crate::pages::{PAGE_TEXT, app, get, html_page, layer, snippet, text};

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until every spawned task (terminates) is done; a bound only so
/// that a failure fails instead of hanging.
async fn no_tasks_left() {
    until(|| alive_tasks() == 0).await;
}

// ---------------------------------------------------------------------------
// Nobody to log in: the page is the app's
// ---------------------------------------------------------------------------

/// A source that knows at once that there is nobody (no source, or
/// extensions without credentials) leaves the request and the response
/// alone: validators, ranges and encodings reach the app, ETag,
/// Last-Modified and Content-Length reach the browser, no `no-store`.
#[tokio::test]
async fn a_page_with_nobody_to_log_in_keeps_every_header_and_byte() {
    let sources: [fn(CmLayer) -> CmLayer; 2] = [
        |layer| layer.credentials_from_extensions(),
        |layer| layer, // no source at all: the fake's layer has none
    ];
    for source in sources {
        let cm = anonymous_cm().build();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let base = PrebindLayer::with_transport(cm.url(), cm.clone())
            .allow_domain(ANON)
            .inject_path("/");
        let service = source(base).layer(app(html_page, Arc::clone(&seen)));
        for method in [http::Method::GET, http::Method::HEAD] {
            let mut request = get("/");
            *request.method_mut() = method.clone();
            let sent = request.headers().clone();
            let response = service.clone().oneshot(request).await.unwrap();
            let expected = html_page();
            assert_eq!(
                response.headers(),
                expected.headers(),
                "{method}: response headers kept"
            );
            assert_eq!(
                text(response.into_body()).await,
                PAGE_TEXT,
                "{method}: body kept"
            );
            let seen = seen.lock().unwrap().pop().unwrap();
            assert_eq!(seen, sent, "{method}: the app saw the request as sent");
        }
        assert_eq!(cm.received(), 0, "the CM was never contacted");
    }
}

// ---------------------------------------------------------------------------
// Sessions nobody will use are terminated, within a cap
// ---------------------------------------------------------------------------

/// The layer, with a renderer that says when the page's session is
/// finished; the app waits for that before it answers.
fn finished_first(
    cm: &FakeCm,
    response: fn() -> Response<Full<Bytes>>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let done = Arc::new(Notify::new());
    let rendered = Arc::clone(&done);
    let waited = Arc::clone(&done);
    layer(cm)
        .render_snippet(move |ctx| {
            rendered.notify_one();
            ctx.json.to_owned()
        })
        .layer(service_fn(move |_: Request<Full<Bytes>>| {
            let waited = Arc::clone(&waited);
            async move {
                waited.notified().await;
                Ok::<_, Infallible>(response())
            }
        }))
}

fn not_found() -> Response<Full<Bytes>> {
    let mut response = html_page();
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

fn redirect() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/elsewhere")
        .body(Full::default())
        .unwrap()
}

fn json() -> Response<Full<Bytes>> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// XEP-0124 §12: a session finished for a response that turned out not to
/// be an injectable page (404, a redirect, JSON) is terminated at once
/// with the next RID, not left to expire as a ghost resource.
#[tokio::test]
async fn a_session_finished_for_a_page_not_injected_is_terminated() {
    for response in [not_found as fn() -> _, redirect, json] {
        let cm = anonymous_cm().build();
        let service = finished_first(&cm, response);
        let answer = service.oneshot(get("/")).await.unwrap();
        assert_eq!(answer.status(), response().status());
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert!(
            !String::from_utf8_lossy(&body).contains(SID),
            "no session in it"
        );
        no_tasks_left().await;
        let rids = cm.rids();
        assert_eq!(rids.len(), 4, "the handshake had finished");
        assert_eq!(
            cm.terminations(),
            [Termination {
                sid: SID.to_owned(),
                rid: rids[3] + 1,
            }]
        );
        assert!(cm.sessions()[0].terminated);
        assert_eq!(cm.violations(), Vec::<String>::new());
    }
}

/// An injected page keeps its session: nothing is terminated.
#[tokio::test]
async fn a_session_written_into_its_page_is_not_terminated() {
    let cm = anonymous_cm().build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));
    let page = text(service.oneshot(get("/")).await.unwrap().into_body()).await;
    assert_eq!(json_field(&snippet(&page).0, "sid"), SID);
    no_tasks_left().await;
    assert!(cm.terminations().is_empty());
}

/// A transport in front of the fake that holds every `terminate` until the
/// test lets them go, counting them.
#[derive(Clone)]
struct HeldTerminates {
    cm: FakeCm,
    held: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Service<Request<Full<Bytes>>> for HeldTerminates {
    type Response = <FakeCm as Service<Request<Full<Bytes>>>>::Response;
    type Error = <FakeCm as Service<Request<Full<Bytes>>>>::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            if String::from_utf8_lossy(&bytes).contains("type='terminate'") {
                this.held.fetch_add(1, Ordering::SeqCst);
                let _ = this.release.acquire().await.unwrap();
            }
            this.cm
                .clone()
                .oneshot(Request::from_parts(parts, Full::new(bytes)))
                .await
        })
    }
}

/// At most 32 terminates are in flight; beyond the cap a session is left
/// to the CM's inactivity timeout (no task, no request), and once they
/// are done the next one goes out again. Each is counted in
/// `bosh_prebind_abandoned_terminates_total`, the skipped ones too.
#[tokio::test(flavor = "current_thread")]
async fn terminates_in_flight_are_capped() {
    // The recorder of this thread (a current-thread runtime keeps every
    // task on it).
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let cm = anonymous_cm().build();
    let transport = HeldTerminates {
        cm: cm.clone(),
        held: Arc::default(),
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    // Each page is answered 404 once its session is finished (the renderer
    // says so), so that every one has a session to end.
    let finished = Arc::new(Notify::new());
    let rendered = Arc::clone(&finished);
    let layer = PrebindLayer::with_transport(cm.url(), transport.clone())
        .credentials(anonymous())
        .inject_path("/")
        .render_snippet(move |ctx| {
            rendered.notify_one();
            ctx.json.to_owned()
        });
    let service = layer.layer(service_fn(move |_: Request<Full<Bytes>>| {
        let finished = Arc::clone(&finished);
        async move {
            finished.notified().await;
            Ok::<_, Infallible>(not_found())
        }
    }));
    // 40 pages whose finished sessions are ended.
    for _ in 0..40 {
        let answer = service.clone().oneshot(get("/")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    }
    let sessions = cm.sessions().len();
    assert_eq!(sessions, 40, "each page opened a session");
    until(|| transport.held.load(Ordering::SeqCst) >= 32).await;
    assert_eq!(alive_tasks(), 32, "32 terminate tasks, no more");
    transport.release.add_permits(usize::MAX >> 4);
    no_tasks_left().await;
    assert_eq!(transport.held.load(Ordering::SeqCst), 32);
    assert_eq!(cm.terminations().len(), 32, "the other 8 expire at the CM");

    // The cap is free again.
    let answer = service.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    no_tasks_left().await;
    assert_eq!(cm.terminations().len(), 33);
    assert_eq!(cm.violations(), Vec::<String>::new());
    let scrape = metrics.render();
    for line in [
        r#"bosh_prebind_abandoned_terminates_total{result="ended"} 33"#,
        r#"bosh_prebind_abandoned_terminates_total{result="skipped"} 8"#,
    ] {
        assert!(scrape.contains(line), "{line} missing from\n{scrape}");
    }
}

// ---------------------------------------------------------------------------
// Pages that cannot carry a UTF-8 snippet
// ---------------------------------------------------------------------------

/// A UTF-16 page, declared (`charset=utf-16`) or sniffed (a byte order
/// mark, even split across chunks), is served as the app made it; its
/// session is ended.
#[tokio::test]
async fn utf16_pages_are_not_injected() {
    fn utf16(bytes: &'static [u8], content_type: &'static str) -> Response<Full<Bytes>> {
        Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from_static(bytes)))
            .unwrap()
    }
    // "<head></head>" in UTF-16LE with a BOM, and in UTF-16BE.
    const LE: &[u8] = b"\xFF\xFE<\0h\0e\0a\0d\0>\0<\0/\0h\0e\0a\0d\0>\0";
    const BE: &[u8] = b"\xFE\xFF\0<\0h\0e\0a\0d\0>\0<\0/\0h\0e\0a\0d\0>";
    let declared = || utf16(&LE[2..], "text/html; charset=UTF-16LE");
    let quoted = || utf16(&LE[2..], "text/html;charset=\"utf-16\"");
    let le_bom = || utf16(LE, "text/html");
    let be_bom = || utf16(BE, "text/html; charset=utf-8");
    for (make, whole) in [
        (declared as fn() -> _, &LE[2..]),
        (quoted, &LE[2..]),
        (le_bom, LE),
        (be_bom, BE),
    ] {
        let cm = anonymous_cm().build();
        let service = finished_first(&cm, make);
        let response = service.oneshot(get("/")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], whole, "served byte for byte");
        no_tasks_left().await;
        assert_eq!(cm.terminations().len(), 1, "its session was ended");
    }

    // A BOM split across the first two chunks is still seen.
    let cm = anonymous_cm().build();
    let service = layer(&cm).layer(service_fn(|_: Request<Full<Bytes>>| async {
        let body = bosh_prebind::test_util::ChunkedBody::new([
            Bytes::from_static(&LE[..1]),
            Bytes::from_static(&LE[1..5]),
            Bytes::from_static(&LE[5..]),
        ]);
        Ok::<_, Infallible>(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html")
                .body(body)
                .unwrap(),
        )
    }));
    let response = service.oneshot(get("/")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], LE);

    // A UTF-8 BOM is fine: the page is injected.
    let cm = anonymous_cm().build();
    let service = layer(&cm).layer(service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html")
                .body(Full::new(Bytes::from_static(b"\xEF\xBB\xBF<head></head>")))
                .unwrap(),
        )
    }));
    let page = text(service.oneshot(get("/")).await.unwrap().into_body()).await;
    assert_eq!(json_field(&snippet(&page).0, "sid"), SID);
}

// ---------------------------------------------------------------------------
// Session reuse across page views
// ---------------------------------------------------------------------------

fn with_cookie(cookie: &'static str) -> Request<Full<Bytes>> {
    let mut request = get("/");
    request
        .headers_mut()
        .insert(header::COOKIE, HeaderValue::from_static(cookie));
    request
}

/// With `reuse_cookie`, a page view carrying the cookie costs no session:
/// the snippet says `reuse` and who the kept session must belong to; the
/// page is still uncacheable. Without the cookie (or with another one, or
/// an empty value), a session as always. Reuses are counted.
#[tokio::test(flavor = "current_thread")]
async fn a_page_holding_a_live_session_gets_no_new_one() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let cm = anonymous_cm().build();
    let seen = Arc::new(Mutex::new(Vec::<HeaderMap>::new()));
    let service = layer(&cm)
        .bosh_passthrough("/http-bind")
        .reuse_cookie("xmpp-prebind-live")
        .layer(app(html_page, Arc::clone(&seen)));
    for cookie in ["xmpp-prebind-live=1", "a=b; xmpp-prebind-live=1; c=d"] {
        let response = service.clone().oneshot(with_cookie(cookie)).await.unwrap();
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let page = text(response.into_body()).await;
        let (json, rest) = snippet(&page);
        assert_eq!(
            json,
            r#"{"reuse":true,"jid":"anon.localhost","bosh_service_url":"/http-bind"}"#
        );
        assert_eq!(rest, PAGE_TEXT);
    }
    assert_eq!(cm.received(), 0, "no handshake");
    assert!(
        metrics
            .render()
            .contains("bosh_prebind_page_reuses_total 2"),
        "{}",
        metrics.render()
    );
    for cookie in ["xmpp-prebind-live=", "other=1", "xmpp-prebind-live2=1"] {
        let page = text(
            service
                .clone()
                .oneshot(with_cookie(cookie))
                .await
                .unwrap()
                .into_body(),
        )
        .await;
        assert!(
            json_field(&snippet(&page).0, "sid").starts_with(SID),
            "{cookie}"
        );
    }

    // An account: the bare JID, as Strophe.js `restore(jid)` compares it.
    let cm = alice_cm(&["PLAIN"]).build();
    let service = cm
        .layer()
        .credentials(Credentials::account(ALICE, ALICE_PASSWORD).unwrap())
        .inject_path("/")
        .reuse_cookie("live")
        .layer(app(html_page, Arc::default()));
    let page = text(
        service
            .oneshot(with_cookie("live=1"))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    assert_eq!(json_field(&snippet(&page).0, "jid"), ALICE);
    assert_eq!(cm.received(), 0);
}

/// Off by default: the cookie means nothing.
#[tokio::test]
async fn without_reuse_cookie_the_cookie_is_ignored() {
    let cm = anonymous_cm().build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));
    let page = text(
        service
            .oneshot(with_cookie("xmpp-prebind-live=1"))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    assert_eq!(json_field(&snippet(&page).0, "sid"), SID);
}

/// The cookie does not make a page with nobody to log in say `reuse`.
#[tokio::test]
async fn reuse_needs_someone_to_log_in() {
    let cm = anonymous_cm().build();
    let service = PrebindLayer::with_transport(cm.url(), cm.clone())
        .credentials_from_extensions()
        .allow_domain(ANON)
        .inject_path("/")
        .reuse_cookie("live")
        .layer(app(html_page, Arc::default()));
    let response = service.oneshot(with_cookie("live=1")).await.unwrap();
    assert_eq!(response.headers(), html_page().headers());
    assert_eq!(text(response.into_body()).await, PAGE_TEXT);
}
