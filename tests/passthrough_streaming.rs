//! Same-origin BOSH with real chat traffic: the CM's answers are streamed
//! (never buffered whole), whatever their size, with their own limits; the
//! browser's bodies have their own cap; `X-Forwarded-For` tells the CM who the
//! browser is. The CM here is a `service_fn` whose answer body the test feeds
//! chunk by chunk, so it can check that bytes reach the browser before the CM
//! has finished.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosh_prebind::PrebindLayer;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

const CM: &str = "http://cm.invalid:5280/http-bind";

/// A CM whose next answer's body is fed through the returned sender; the
/// request heads and bodies it received are kept.
#[derive(Clone, Default)]
struct StreamingCm {
    answers: Arc<Mutex<Vec<Channel<Bytes, Infallible>>>>,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl StreamingCm {
    /// Prepares the next answer; the test writes its body.
    fn next_answer(&self) -> Sender<Bytes, Infallible> {
        let (sender, body) = Channel::new(4);
        self.answers.lock().unwrap().push(body);
        sender
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Channel<Bytes, Infallible>>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        let cm = self.clone();
        service_fn(move |request: Request<Full<Bytes>>| {
            let cm = cm.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                cm.seen.lock().unwrap().push((parts.headers, body));
                let answer = cm.answers.lock().unwrap().remove(0);
                let mut response = Response::new(answer);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    "text/xml; charset=utf-8".parse().unwrap(),
                );
                Ok(response)
            }
        })
    }
}

fn app()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone {
    service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    })
}

fn bosh(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/http-bind")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(body.into()))
        .unwrap()
}

fn layer(cm: &StreamingCm) -> PrebindLayer<impl bosh_prebind::BoshTransport> {
    PrebindLayer::with_transport(CM.parse().unwrap(), cm.service())
        .bosh_passthrough("/http-bind")
        .request_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_large_answer_streams_to_the_browser_before_the_cm_has_finished() {
    let cm = StreamingCm::default();
    let mut answer = cm.next_answer();
    let service = layer(&cm).layer(app());
    let response = service
        .oneshot(bosh("<body rid='2' sid='s'/>"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let mut body = response.into_body();

    // 1 MiB in 16 KiB chunks: each chunk is out before the next is written.
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    let mut received = 0;
    for _ in 0..64 {
        answer.send_data(chunk.clone()).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        received += frame.into_data().unwrap().len();
    }
    drop(answer); // the CM's answer ends
    assert!(body.frame().await.is_none());
    assert_eq!(
        received,
        1024 * 1024,
        "every byte, far above the 64 KiB handshake cap"
    );
}

#[tokio::test]
async fn the_optional_response_cap_aborts_a_larger_answer() {
    let cm = StreamingCm::default();
    let mut answer = cm.next_answer();
    let service = layer(&cm)
        .bosh_passthrough_max_response_body(Some(1000))
        .layer(app());
    let response = service.oneshot(bosh("<body/>")).await.unwrap();
    let feed = tokio::spawn(async move {
        for _ in 0..3 {
            if answer
                .send_data(Bytes::from(vec![b'y'; 600]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let error = response.into_body().collect().await.unwrap_err();
    assert!(error.to_string().contains("limit"), "{error}");
    feed.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cm_stalling_mid_answer_is_cut_after_the_idle_timeout() {
    let cm = StreamingCm::default();
    let mut answer = cm.next_answer();
    let service = layer(&cm).layer(app());
    let response = service.oneshot(bosh("<body/>")).await.unwrap();
    answer
        .send_data(Bytes::from_static(b"<body>"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "<body>");
    // Nothing more comes (the sender is kept alive): the body fails after
    // the request timeout, it does not hang.
    let started = tokio::time::Instant::now();
    let error = body.frame().await.unwrap().unwrap_err();
    assert!(error.to_string().contains("stalled"), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    drop(answer);
}

/// The idle timeout runs from the last chunk, not from the start: chunks
/// every 3 s for 15 s pass (the timeout is 5 s), and the stall after them is
/// cut 5 s after the last one.
#[tokio::test(start_paused = true)]
async fn the_idle_timeout_counts_from_the_last_chunk() {
    let cm = StreamingCm::default();
    let mut answer = cm.next_answer();
    let service = layer(&cm).layer(app());
    let response = service.oneshot(bosh("<body/>")).await.unwrap();
    let mut body = response.into_body();
    for i in 0..5 {
        if i > 0 {
            tokio::time::advance(Duration::from_secs(3)).await;
        }
        answer.send_data(Bytes::from_static(b"<x/>")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "<x/>", "chunk {i}");
    }
    let last = tokio::time::Instant::now();
    let error = body.frame().await.unwrap().unwrap_err();
    assert!(error.to_string().contains("stalled"), "{error}");
    assert_eq!(last.elapsed(), Duration::from_secs(5));
    drop(answer);
}

#[tokio::test]
async fn request_bodies_far_above_the_handshake_cap_reach_the_cm_whole() {
    let cm = StreamingCm::default();
    let answer = cm.next_answer();
    drop(answer);
    // A vCard photo upload: ~300 KiB of base64 inside one <body/>.
    let photo = "A".repeat(300 * 1024);
    let upload = format!(
        "<body rid='3' sid='s'><iq type='set'><vCard><PHOTO>{photo}</PHOTO></vCard></iq></body>"
    );
    let response = layer(&cm)
        .layer(app())
        .oneshot(bosh(upload.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(cm.seen.lock().unwrap()[0].1, upload.as_bytes());

    // Above the pass-through's own cap: refused before the CM.
    let cm = StreamingCm::default();
    let response = layer(&cm)
        .bosh_passthrough_max_request_body(64 * 1024)
        .layer(app())
        .oneshot(bosh(upload))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(cm.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn forwarded_for_appends_the_browser_address_to_the_chain() {
    let cm = StreamingCm::default();
    drop(cm.next_answer());
    drop(cm.next_answer());
    let peer: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let service = layer(&cm)
        .bosh_passthrough_forwarded_for(|head| head.extensions.get::<std::net::IpAddr>().copied())
        .layer(app());

    let mut request = bosh("<body/>");
    request.extensions_mut().insert(peer);
    service.clone().oneshot(request).await.unwrap();

    let mut behind_a_proxy = bosh("<body/>");
    behind_a_proxy.extensions_mut().insert(peer);
    behind_a_proxy
        .headers_mut()
        .insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
    service.oneshot(behind_a_proxy).await.unwrap();

    let seen = cm.seen.lock().unwrap();
    assert_eq!(seen[0].0["x-forwarded-for"], "192.0.2.7");
    assert_eq!(seen[1].0["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
}

#[tokio::test]
async fn without_forwarded_for_the_cm_sees_no_client_address() {
    let cm = StreamingCm::default();
    drop(cm.next_answer());
    let mut request = bosh("<body/>");
    request
        .headers_mut()
        .insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
    layer(&cm).layer(app()).oneshot(request).await.unwrap();
    assert!(!cm.seen.lock().unwrap()[0].0.contains_key("x-forwarded-for"));
}
