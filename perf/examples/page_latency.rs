//! Page latency with a distant connection manager (docs/design.md §5: the layer adds
//! < 1 ms to an HTML page's time to first byte, the CM at 20 ms RTT).
//!
//! An app serves a ~100 KiB HTML page in 8 KiB chunks with `</head>` about
//! 2 KiB in, over real HTTP/1.1 on loopback, twice: bare, and behind the
//! layer injecting an anonymous session into it. The layer's BOSH transport
//! reaches the CM through the latency proxy of `perf::latency_proxy`
//! (run in this process) adding `--delay-ms` (default 10) each way. A hyper
//! client on one keep-alive connection per server sends `-n` (default 50)
//! requests to each, alternating, after 3 warm-ups each, and records the
//! response head, the first body byte and the last body byte.
//!
//! ```text
//! scripts/prosody.sh start
//! cargo run --release -p perf --example page_latency -- --bosh-url http://127.0.0.1:5280/http-bind
//! ```
//!
//! Expected shape: the head waits for the app only; bytes before `</head>`
//! stream at once; the last byte waits for the handshake (4 round trips to
//! the CM for ANONYMOUS, ≈ 80 ms at 20 ms RTT).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
#[path = "../../benches/support/mod.rs"]
mod support;
use support::Chunks;
use tower::{Layer, Service, service_fn};

const PAGE_LEN: usize = 100 << 10;
const CHUNK: usize = 8 << 10;
const WARM_UP: usize = 3;

// ---------------------------------------------------------------------------
// The app: a page in chunks.

/// A ~100 KiB page: `</head>` after about 2 KiB, then paragraphs.
fn page() -> Vec<u8> {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>page latency</title>\n",
    );
    let mut n = 0;
    while page.len() < 2000 {
        page.push_str(&format!(
            "<meta name=\"x-build-{n}\" content=\"lorem ipsum dolor sit amet\">\n"
        ));
        n += 1;
    }
    page.push_str("</head>\n<body>\n");
    let tail = "</body>\n</html>\n";
    while page.len() + tail.len() < PAGE_LEN {
        page.push_str(&format!(
            "<p class=\"para\" id=\"p{n}\">Lorem ipsum dolor sit amet, consectetur <a href=\"/x/{n}\">adipiscing</a> elit, sed do eiusmod tempor.</p>\n"
        ));
        n += 1;
    }
    page.push_str(tail);
    page.into_bytes()
}

fn app(
    chunks: Arc<[Bytes]>,
) -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<Chunks>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |_: Request<hyper::body::Incoming>| {
        let chunks = chunks.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .body(Chunks { chunks, next: 0 })
                    .unwrap(),
            )
        }
    })
}

/// Serves `service` on a fresh loopback port; returns the address.
async fn spawn_server<S, B>(service: S) -> SocketAddr
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
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
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

// ---------------------------------------------------------------------------
// The client.

/// One keep-alive HTTP/1.1 connection.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Client {
    async fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Client { sender }
    }

    /// GET / and the page's timings (from just before the request is sent).
    async fn get(&mut self) -> Timing {
        self.sender.ready().await.unwrap();
        let request = Request::get("/")
            .header(header::HOST, "127.0.0.1")
            .body(Empty::new())
            .unwrap();
        let started = Instant::now();
        let response = self.sender.send_request(request).await.unwrap();
        let head = started.elapsed();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let (mut first, mut bytes) = (None, Vec::with_capacity(PAGE_LEN + 512));
        let mut first_len = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                first.get_or_insert_with(|| {
                    first_len = data.len();
                    started.elapsed()
                });
                bytes.extend_from_slice(&data);
            }
        }
        let last = started.elapsed();
        let text = String::from_utf8_lossy(&bytes);
        let injected =
            text.contains("<script type=\"application/json\" id=\"xmpp-prebind\">{\"jid\"");
        let error = text.contains("id=\"xmpp-prebind\">{\"error\"");
        Timing {
            head,
            first: first.unwrap_or(last),
            last,
            first_len,
            len: bytes.len(),
            injected,
            error,
        }
    }
}

/// Picks one of a page's times.
type Metric = fn(&Timing) -> Duration;

#[derive(Clone, Copy)]
struct Timing {
    head: Duration,
    first: Duration,
    last: Duration,
    /// Bytes in the first body frame the client read.
    first_len: usize,
    len: usize,
    injected: bool,
    error: bool,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const USAGE: &str = "usage: page_latency [--bosh-url URL] [--delay-ms MS (one way, default 10)] [-n N (default 50)] [--json FILE]";

#[tokio::main]
async fn main() {
    let (mut bosh_url, mut delay_ms, mut runs, mut json) = (
        "http://127.0.0.1:5280/http-bind".to_owned(),
        10u64,
        50usize,
        None,
    );
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{USAGE}"));
        match flag.as_str() {
            "--bosh-url" => bosh_url = value,
            "--delay-ms" => delay_ms = value.parse().expect("--delay-ms: a number"),
            "-n" => runs = value.parse().expect("-n: a number"),
            "--json" => json = Some(value),
            _ => panic!("{USAGE}"),
        }
    }
    let cm: http::Uri = bosh_url.parse().expect("--bosh-url: a URL");
    // The CM, `delay_ms` away each way.
    let distant_cm = perf::latency_proxy::distant(&cm, Duration::from_millis(delay_ms)).await;

    let page = page();
    let chunks: Arc<[Bytes]> = page
        .chunks(CHUNK)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>()
        .into();
    let head_at = page.windows(7).position(|w| w == b"</head>").unwrap();
    let bare = spawn_server(app(chunks.clone())).await;
    let layered = spawn_server(
        PrebindLayer::new(bosh_prebind::BoshUrl::try_from(distant_cm).expect("a BOSH URL"))
            .credentials(Credentials::anonymous("anon.localhost"))
            .inject_path("/")
            .layer(app(chunks.clone())),
    )
    .await;

    let mut bare_client = Client::connect(bare).await;
    let mut layered_client = Client::connect(layered).await;
    for _ in 0..WARM_UP {
        bare_client.get().await;
        let warm = layered_client.get().await;
        assert!(
            warm.injected,
            "no session injected: is Prosody up at {bosh_url}?"
        );
    }
    let (mut without, mut with) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    let mut errors = 0;
    for i in 0..runs {
        // Alternate which goes first, so neither always follows the other.
        let (a, b) = if i % 2 == 0 {
            let a = bare_client.get().await;
            (a, layered_client.get().await)
        } else {
            let b = layered_client.get().await;
            (bare_client.get().await, b)
        };
        assert_eq!(a.len, page.len());
        if !b.injected || b.error {
            errors += 1;
        }
        without.push(a);
        with.push(b);
    }

    let field = |set: &[Timing], f: Metric| -> Vec<f64> { set.iter().map(|t| ms(f(t))).collect() };
    let metrics: [(&str, Metric); 3] = [
        ("head", |t| t.head),
        ("first_byte", |t| t.first),
        ("last_byte", |t| t.last),
    ];
    println!(
        "page {} bytes in {} KiB chunks, </head> at byte {head_at}; CM {bosh_url} behind a proxy adding {delay_ms} ms each way ({} ms RTT); \
         {runs} requests each on one keep-alive connection per server, alternating, after {WARM_UP} warm-ups; {errors} errors",
        page.len(),
        CHUNK >> 10,
        2 * delay_ms
    );
    println!();
    println!(
        "| time from request to | no layer: median (p90) | layer: median (p90) | added (median of pairs) |"
    );
    println!("|---|---|---|---|");
    let mut json_rows = Vec::new();
    for (name, f) in metrics {
        let (a, b) = (field(&without, f), field(&with, f));
        let added: Vec<f64> = b.iter().zip(&a).map(|(b, a)| b - a).collect();
        let row = (
            median(a.clone()),
            quantile(a, 0.9),
            median(b.clone()),
            quantile(b, 0.9),
            median(added),
        );
        println!(
            "| {name} | {:.3} ms ({:.3}) | {:.3} ms ({:.3}) | {:+.3} ms |",
            row.0, row.1, row.2, row.3, row.4
        );
        json_rows.push(format!(
            "\"{name}\": {{\"no_layer_median_ms\": {:.4}, \"no_layer_p90_ms\": {:.4}, \"layer_median_ms\": {:.4}, \"layer_p90_ms\": {:.4}, \"added_median_ms\": {:.4}}}",
            row.0, row.1, row.2, row.3, row.4
        ));
    }
    let first_frame = |set: &[Timing]| median(set.iter().map(|t| t.first_len as f64).collect());
    let (first_bare, first_layer) = (first_frame(&without), first_frame(&with));
    println!();
    println!(
        "first body frame read by the client (median): {first_bare:.0} bytes without the layer, {first_layer:.0} bytes with it \
         (the bytes before </head> go out before the session is there)"
    );
    if let Some(path) = json {
        let text = format!(
            "{{\"page_bytes\": {}, \"chunk_bytes\": {CHUNK}, \"head_at\": {head_at}, \"delay_ms_each_way\": {delay_ms}, \"runs\": {runs}, \"errors\": {errors}, \"connection\": \"keep-alive\", \"first_frame_bytes_no_layer\": {first_bare}, \"first_frame_bytes_layer\": {first_layer}, {}}}\n",
            page.len(),
            json_rows.join(", ")
        );
        std::fs::write(&path, text).expect("--json: writable");
    }
    if errors > 0 {
        eprintln!("{errors} pages without a session");
        std::process::exit(1);
    }
}
