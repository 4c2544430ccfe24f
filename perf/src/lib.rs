//! The measurement harnesses behind `BENCHMARKS.md`, as examples of this
//! unpublished crate (a package needs one library or binary target; this is it):
//!
//! ```text
//! cargo run --release -p perf --example handshake_latency -- http://127.0.0.1:5280/http-bind 50
//! cargo run --release -p perf --example page_latency -- --bosh-url http://127.0.0.1:5280/http-bind
//! cargo run --release -p perf --example pool_latency -- --bosh-url http://127.0.0.1:5280/http-bind
//! cargo run --release -p perf --example login_latency -- --bosh-url http://127.0.0.1:5290/http-bind
//! cargo run --release -p perf --example throughput -- --bosh-url http://127.0.0.1:5280/http-bind
//! cargo run --release -p perf --example inject_memory -- 64
//! cargo run --release -p perf --example latency_proxy -- --listen 127.0.0.1:3100 --target 127.0.0.1:3000 --delay-ms 50
//! ```
//!
//! `scripts/bench.sh` runs them all, with a throw-away Prosody. The page
//! generator they share with the library's criterion benches lives in
//! `benches/support/` at the workspace root, included by path.
//!
//! What the latency harnesses that serve a page over real HTTP/1.1 share
//! (`pool_latency`, `login_latency`) is below: the page, the app, a server
//! on a loopback port and a keep-alive client.

pub mod latency_proxy;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, service_fn};

/// A ~100 KiB page, `</head>` about 2 KiB in.
pub fn page() -> Bytes {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>bench</title>\n",
    );
    while page.len() < 2000 {
        page.push_str("<meta name=\"x-build\" content=\"lorem ipsum dolor sit amet\">\n");
    }
    page.push_str("</head>\n<body>\n");
    while page.len() < 100 << 10 {
        page.push_str("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.</p>\n");
    }
    page.push_str("</body>\n</html>\n");
    Bytes::from(page)
}

/// The app behind the layer, as a cloneable boxed service.
pub type AppService =
    tower::util::BoxCloneService<Request<hyper::body::Incoming>, Response<Full<Bytes>>, Infallible>;

/// The app: answers every request with `page` as `text/html`.
pub fn app(page: Bytes) -> AppService {
    tower::util::BoxCloneService::new(service_fn(move |_: Request<hyper::body::Incoming>| {
        let page = page.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .body(Full::new(page))
                    .unwrap(),
            )
        }
    }))
}

/// Serves `service` on a fresh loopback port.
pub async fn spawn_server<S, B>(service: S) -> SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Client {
    /// Connects to `address` (TCP_NODELAY, as a browser does).
    pub async fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Client { sender }
    }

    /// GET `path`: the time to the last body byte, and whether a session
    /// came with it.
    pub async fn get(&mut self, path: &str) -> (Duration, bool) {
        self.sender.ready().await.unwrap();
        let request = Request::get(path)
            .header(header::HOST, "127.0.0.1")
            .body(Empty::new())
            .unwrap();
        let started = Instant::now();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&body);
        let ok = status == StatusCode::OK && text.contains("\"sid\"");
        (elapsed, ok)
    }
}

/// The `q` quantile (nearest rank) of `values`; NaN when there are none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
