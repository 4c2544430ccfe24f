//! Sessions injected into pages: where the snippet goes, which responses
//! are left alone, the header rules, fail-open, and that the page streams
//! while the handshake runs.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosh_prebind::test_util::{FakeCm, Fault};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::common::json_field;
use crate::harness::*;

pub(crate) const PAGE_TEXT: &str =
    "<!doctype html><html><head><title>t</title></head><body>hi</body></html>";

/// The layer around `app`, anonymous on anon.localhost, injecting into `/`.
pub(crate) fn layer(cm: &FakeCm) -> CmLayer {
    anonymous_layer(cm)
        .inject_path("/")
        .request_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(3))
}

/// An app answering every request with `response`, recording request heads.
pub(crate) fn app(
    response: fn() -> Response<Full<Bytes>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    service_fn(move |request: Request<Full<Bytes>>| {
        seen.lock().unwrap().push(request.headers().clone());
        async move { Ok::<_, Infallible>(response()) }
    })
}

pub(crate) fn html_page() -> Response<Full<Bytes>> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_LENGTH, PAGE_TEXT.len())
        .header(header::ETAG, "\"v1\"")
        .header(header::LAST_MODIFIED, "Wed, 25 Nov 2026 10:00:00 GMT")
        .body(Full::new(Bytes::from_static(PAGE_TEXT.as_bytes())))
        .unwrap()
}

pub(crate) fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .header(header::RANGE, "bytes=0-10")
        .header(header::IF_NONE_MATCH, "\"v1\"")
        .header(header::IF_MODIFIED_SINCE, "Wed, 25 Nov 2026 10:00:00 GMT")
        .body(Full::default())
        .unwrap()
}

pub(crate) async fn text<B: Body<Data = Bytes, Error: std::fmt::Debug>>(body: B) -> String {
    String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The JSON inside the injected element, and the page around it.
pub(crate) fn snippet(page: &str) -> (String, String) {
    let open = "<script type=\"application/json\" id=\"xmpp-prebind\">";
    let start = page
        .find(open)
        .unwrap_or_else(|| panic!("no snippet in {page}"));
    let end = start + page[start..].find("</script>").unwrap();
    let json = page[start + open.len()..end].to_owned();
    let rest = format!("{}{}", &page[..start], &page[end + "</script>".len()..]);
    (json, rest)
}

#[tokio::test]
async fn html_page_gets_session_before_head_end_with_next_rid() {
    let cm = anonymous_cm().build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));
    let response = service.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = text(response.into_body()).await;
    let (json, rest) = snippet(&page);
    assert_eq!(rest, PAGE_TEXT, "only the snippet was added");
    assert!(
        page.contains("<title>t</title><script"),
        "placed before </head>: {page}"
    );
    assert_eq!(json_field(&json, "jid"), ANON_JID);
    assert_eq!(json_field(&json, "sid"), SID);
    // The CM's wait: the creation request's, at most 120 (Prosody's cap).
    assert_eq!(
        json_field(&json, "wait"),
        cm.request(0).attr("wait").unwrap()
    );
    assert_eq!(json_field(&json, "hold"), "1");
    assert_eq!(json_field(&json, "bosh_service_url"), CM_URL);
    // The next RID: one more than the bind request's.
    let last = *cm.rids().last().unwrap();
    assert_eq!(json_field(&json, "rid"), (last + 1).to_string());
}

#[tokio::test]
async fn injected_response_is_uncacheable_with_no_stale_validators() {
    let cm = anonymous_cm().build();
    let seen = Arc::default();
    let service = layer(&cm).layer(app(html_page, Arc::clone(&seen)));
    let response = service.oneshot(get("/")).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        !headers.contains_key(header::CONTENT_LENGTH),
        "length changes by the snippet"
    );
    assert!(!headers.contains_key(header::ETAG));
    assert!(!headers.contains_key(header::LAST_MODIFIED));
    assert_eq!(response.body().size_hint().upper(), None);
    let length = text(response.into_body()).await.len();
    assert!(length > PAGE_TEXT.len());
    // The app was asked for the whole, uncompressed, fresh page.
    let seen = seen.lock().unwrap();
    for name in [
        header::ACCEPT_ENCODING,
        header::RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
    ] {
        assert!(!seen[0].contains_key(&name), "{name} reached the app");
    }
}

/// Responses that must pass through untouched; the handshake is cancelled.
#[tokio::test]
async fn non_html_non_200_compressed_and_partial_responses_are_untouched() {
    fn not_found() -> Response<Full<Bytes>> {
        let mut response = html_page();
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    }
    fn plain_text() -> Response<Full<Bytes>> {
        let mut response = html_page();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
    }
    fn gzipped() -> Response<Full<Bytes>> {
        let mut response = html_page();
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    }
    fn partial() -> Response<Full<Bytes>> {
        let mut response = html_page();
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-72/73"),
        );
        response
    }
    for make in [not_found as fn() -> _, plain_text, gzipped, partial] {
        let cm = anonymous_cm().build();
        let service = layer(&cm).layer(app(make, Arc::default()));
        let response = service.oneshot(get("/")).await.unwrap();
        let expected = make();
        assert_eq!(response.status(), expected.status());
        assert_eq!(response.headers(), expected.headers(), "headers untouched");
        assert_eq!(
            text(response.into_body()).await,
            PAGE_TEXT,
            "body untouched"
        );
    }
}

#[tokio::test]
async fn head_post_and_other_paths_start_no_handshake() {
    let cm = anonymous_cm().build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));

    let head = Request::head("/").body(Full::default()).unwrap();
    let response = service.clone().oneshot(head).await.unwrap();
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "no-store",
        "HEAD gets GET's headers"
    );
    assert!(!response.headers().contains_key(header::ETAG));

    let post = Request::post("/").body(Full::default()).unwrap();
    let response = service.clone().oneshot(post).await.unwrap();
    assert_eq!(response.headers()[header::ETAG], "\"v1\"");
    assert_eq!(text(response.into_body()).await, PAGE_TEXT);

    let response = service.clone().oneshot(get("/other")).await.unwrap();
    assert_eq!(text(response.into_body()).await, PAGE_TEXT);

    assert_eq!(cm.requests().len(), 0, "the CM was never contacted");
}

#[tokio::test(flavor = "current_thread")]
async fn a_page_without_credentials_says_so_in_the_debug_log() {
    let captured = crate::secrets::capture_logs();
    let cm = anonymous_cm().build();
    let service = layer(&cm)
        .credentials_from_extensions()
        .layer(app(html_page, Arc::default()));
    let response = service.oneshot(get("/")).await.unwrap();
    assert_eq!(text(response.into_body()).await, PAGE_TEXT);
    let logs = captured.text();
    assert!(
        logs.contains("DEBUG") && logs.contains("no credentials for this page request"),
        "{logs}"
    );
}

#[tokio::test]
async fn page_without_credentials_is_served_without_snippet() {
    let cm = anonymous_cm().build();
    let service = layer(&cm)
        .credentials_from_extensions()
        .layer(app(html_page, Arc::default()));
    let response = service.oneshot(get("/")).await.unwrap();
    assert_eq!(text(response.into_body()).await, PAGE_TEXT);
    assert_eq!(cm.requests().len(), 0);
}

#[tokio::test]
async fn cm_down_still_serves_the_page_with_the_error_object() {
    let cm = anonymous_cm().fault_always(Fault::Refused).build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));
    let response = service.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (json, rest) = snippet(&text(response.into_body()).await);
    assert_eq!(rest, PAGE_TEXT);
    assert_eq!(json_field(&json, "condition"), "remote-connection-failed");
    assert!(!json.contains(CM_HOST), "no internal address leaks: {json}");
    assert!(!json.contains("\"sid\""));
}

#[tokio::test(start_paused = true)]
async fn cm_too_slow_still_serves_the_page_within_the_deadline() {
    let cm = anonymous_cm().fault_always(Fault::NoAnswer).build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));
    let started = tokio::time::Instant::now();
    let response = service.oneshot(get("/")).await.unwrap();
    let (json, rest) = snippet(&text(response.into_body()).await);
    assert_eq!(rest, PAGE_TEXT);
    assert_eq!(json_field(&json, "condition"), "remote-connection-failed");
    assert!(json_field(&json, "error").contains("too slow"), "{json}");
    // The paused clock advanced exactly to the request timeout (2 s).
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn page_streams_before_the_handshake_finishes() {
    let cm = anonymous_cm().hold_answers().build();
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(4);
    let body = Arc::new(Mutex::new(Some(body)));
    let app = service_fn(move |_: Request<Full<Bytes>>| {
        let body = body.lock().unwrap().take().unwrap();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let service = layer(&cm).layer(app);
    let response = service.oneshot(get("/")).await.unwrap();
    let mut body = response.into_body();

    sender
        .send_data(Bytes::from_static(b"<html><head><title>t</title>"))
        .await
        .unwrap();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first, "<html><head><title>t</title>",
        "sent before the CM answered"
    );
    assert_eq!(
        cm.requests().len(),
        1,
        "the handshake had started and is waiting on the CM"
    );

    // Now the CM answers; the rest of the page follows the snippet.
    cm.release();
    sender
        .send_data(Bytes::from_static(b"</head><body></body></html>"))
        .await
        .unwrap();
    drop(sender);
    let rest = text(body).await;
    let (json, after) = snippet(&rest);
    assert_eq!(json_field(&json, "jid"), ANON_JID);
    assert_eq!(after, "</head><body></body></html>");
}

#[tokio::test]
async fn trailers_are_forwarded_after_the_snippet() {
    let cm = anonymous_cm().build();
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(4);
    let body = Arc::new(Mutex::new(Some(body)));
    let app = service_fn(move |_: Request<Full<Bytes>>| {
        let body = body.lock().unwrap().take().unwrap();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let response = layer(&cm).layer(app).oneshot(get("/")).await.unwrap();
    tokio::spawn(async move {
        sender
            .send_data(Bytes::from_static(b"<p>no head</p>"))
            .await
            .unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc"));
        sender.send_trailers(trailers).await.unwrap();
    });
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
    let page = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
    assert!(page.starts_with("<p>no head</p><script"), "{page}");
}

#[tokio::test]
async fn hostile_jid_cannot_break_out_of_the_snippet() {
    let cm = anonymous_cm()
        .jid("x@anon.localhost/</script><script>alert(1)</script><!--\u{2028}")
        .build();
    let service = layer(&cm).layer(app(html_page, Arc::default()));
    let page = text(service.oneshot(get("/")).await.unwrap().into_body()).await;
    assert_eq!(
        page.matches("</script>").count(),
        1,
        "only the snippet's own end tag: {page}"
    );
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains('\u{2028}'));
    assert!(page.contains("\\u003c/script\\u003e"));
}

#[tokio::test]
async fn marker_prefix_predicate_id_and_renderer_are_configurable() {
    fn marked() -> Response<Full<Bytes>> {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/html")
            .body(Full::new(Bytes::from_static(
                b"<head></head><body><!--chat--></body>",
            )))
            .unwrap()
    }
    let cm = anonymous_cm().build();
    let service = layer(&cm)
        .inject_prefix("/rooms/")
        .inject_when(|head| head.uri.query() == Some("chat"))
        .marker("chat")
        .marker_only(true)
        .render_snippet(|context| {
            format!(
                "<meta name=\"xmpp\" data-ok=\"{}\">",
                context.outcome.is_ok()
            )
        })
        .layer(app(marked, Arc::default()));
    for path in ["/rooms/1", "/anything?chat"] {
        let page = text(
            service
                .clone()
                .oneshot(get(path))
                .await
                .unwrap()
                .into_body(),
        )
        .await;
        assert_eq!(
            page, "<head></head><body><meta name=\"xmpp\" data-ok=\"true\"><!--chat--></body>",
            "{path}"
        );
    }
    let service = layer(&cm)
        .snippet_id("chat-session")
        .layer(app(html_page, Arc::default()));
    let page = text(service.oneshot(get("/")).await.unwrap().into_body()).await;
    assert!(
        page.contains("<script type=\"application/json\" id=\"chat-session\">{"),
        "{page}"
    );
}
