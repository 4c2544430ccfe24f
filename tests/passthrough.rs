//! Same-origin BOSH pass-through (DESIGN §3.5) against a recording fake CM:
//! byte for byte to the one configured CM, only POST on the exact path,
//! bounded, and answered with a BOSH terminate body when the CM fails.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosh_prebind::PrebindLayer;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

const CM: &str = "http://cm.invalid:5280/http-bind";

#[derive(Clone, Copy)]
enum Mode {
    Echo,
    Refused,
    Silent,
}

/// Records (uri, content type, body) of each request; echoes the body back
/// wrapped in a marker so the test can tell it went through the CM.
#[derive(Clone)]
struct FakeCm {
    mode: Mode,
    seen: Arc<Mutex<Vec<(Uri, String, Bytes)>>>,
}

impl FakeCm {
    fn new(mode: Mode) -> Self {
        FakeCm {
            mode,
            seen: Arc::default(),
        }
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = std::io::Error,
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
                let content_type = parts.headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .to_owned();
                cm.seen
                    .lock()
                    .unwrap()
                    .push((parts.uri, content_type, body.clone()));
                match cm.mode {
                    Mode::Refused => Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "no",
                    )),
                    Mode::Silent => std::future::pending().await,
                    Mode::Echo => {
                        let mut answer = b"echo:".to_vec();
                        answer.extend_from_slice(&body);
                        Ok(Response::builder()
                            .status(StatusCode::OK)
                            .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
                            .header("x-internal", "secret")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap())
                    }
                }
            }
        })
    }
}

fn app()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    })
}

fn layered(
    cm: &FakeCm,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    PrebindLayer::with_transport(CM.parse().unwrap(), cm.service())
        .bosh_passthrough("/http-bind")
        .max_wait(30)
        .request_timeout(Duration::from_secs(5))
        .bosh_passthrough_max_request_body(1024)
        .layer(app())
}

fn bosh(path: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

async fn send(
    service: impl Service<
        Request<Full<Bytes>>,
        Response = Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
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

const PING: &[u8] = b"<body rid='42' sid='s' xmlns='http://jabber.org/protocol/httpbind'><iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq></body>";

#[tokio::test]
async fn posts_to_the_path_reach_the_cm_byte_for_byte() {
    let cm = FakeCm::new(Mode::Echo);
    let (status, headers, body) = send(layered(&cm), bosh("/http-bind", PING)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_bytes(), [&b"echo:"[..], PING].concat());
    assert_eq!(headers[header::CONTENT_TYPE], "text/xml; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        !headers.contains_key("x-internal"),
        "only the content type is passed back"
    );
    let seen = cm.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].0,
        CM.parse::<Uri>().unwrap(),
        "the configured CM, nothing else"
    );
    assert_eq!(seen[0].1, "text/xml; charset=utf-8");
    assert_eq!(seen[0].2, PING);
}

#[tokio::test]
async fn nothing_else_is_forwarded() {
    let cm = FakeCm::new(Mode::Echo);
    let service = layered(&cm);
    // Other paths go to the app.
    for path in ["/http-bind/", "/http-bind/../admin", "/http-binding", "/"] {
        let (_, _, body) = send(service.clone(), bosh(path, PING)).await;
        assert_eq!(body, "app", "{path}");
    }
    // Absolute-form targets name other hosts: the path decides, the host never does.
    let (_, _, body) = send(service.clone(), bosh("http://evil.example/http-bind", PING)).await;
    assert!(body.starts_with("echo:"));
    assert_eq!(
        cm.seen.lock().unwrap().last().unwrap().0,
        CM.parse::<Uri>().unwrap()
    );
    // Only POST.
    let get = Request::get("/http-bind").body(Full::default()).unwrap();
    let (status, headers, _) = send(service.clone(), get).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    assert_eq!(
        cm.seen.lock().unwrap().len(),
        1,
        "GET and other paths never reached the CM"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_the_cm() {
    let cm = FakeCm::new(Mode::Echo);
    let big: &'static [u8] = Box::leak(vec![b'x'; 4096].into_boxed_slice());
    let (status, _, body) = send(layered(&cm), bosh("/http-bind", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("type='terminate'"), "{body}");
    assert!(cm.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_connection_is_a_502_terminate() {
    let cm = FakeCm::new(Mode::Refused);
    let (status, _, body) = send(layered(&cm), bosh("/http-bind", PING)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("condition='remote-connection-failed'"),
        "{body}"
    );
    assert!(!body.contains("cm.invalid"));
}

#[tokio::test(start_paused = true)]
async fn a_held_request_may_last_max_wait_plus_the_request_timeout() {
    let cm = FakeCm::new(Mode::Silent);
    let started = tokio::time::Instant::now();
    let (status, _, body) = send(layered(&cm), bosh("/http-bind", PING)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("type='terminate'"));
    assert_eq!(started.elapsed(), Duration::from_secs(30 + 5));
}
