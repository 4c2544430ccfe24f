//! Large CM answers through the same-origin BOSH pass-through
//! (`PrebindLayer::bosh_passthrough("/http-bind")`): bytes per second, and
//! peak heap to show that the answer is streamed, not buffered.
//!
//! A fake CM answers every POST with `SIZE` bytes (1, 8 and 64 MiB by default)
//! in 16 KiB chunks, side by side in one run:
//!
//! - **in process** (no sockets, no hyper server): the layered service
//!   `PrebindLayer::with_transport(url, fake_cm).bosh_passthrough("/http-bind").layer(app)`
//!   called with `oneshot`, the response body drained frame by frame, against
//!   the fake CM's own response body drained the same way (no layer: the
//!   baseline). A counting global allocator is reset just before each request
//!   (the request is built after the reset), so its peak is the most heap the
//!   request held at once above what was live before it. Two kinds of chunks:
//!   `shared`, every chunk a `Bytes` of one static 16 KiB buffer (the CM
//!   allocates nothing per chunk: the throughput figures), and `fresh`, every
//!   chunk copied into a new allocation that only its receiver owns (so a
//!   layer holding on to chunks would show as heap growing with the answer).
//!   A control row collects the CM's answer whole (`collect().to_bytes()`),
//!   as a buffering layer would: its peak is the answer's size.
//! - **over loopback TCP**: a hyper client (hyper-util's pooled client,
//!   keep-alive) POSTs to a hyper server running the layered app, whose
//!   default transport POSTs to a second hyper server acting as the CM
//!   (shared chunks, `Content-Length` set); the baseline is the same client
//!   talking to the CM server directly, and a third side goes through a bare
//!   streaming hyper proxy without the layer (what any extra hop costs). All
//!   in this process, on a 2-thread runtime; the peak heap there is the whole
//!   process's (client and servers), for information.
//!
//! Every repetition runs each side once, the order rotating; warm-up runs
//! come first and are not counted. Bytes/s are reported as the median and as
//! the rate of the 90th-percentile time (90 % of runs were at least as fast).
//!
//! ```text
//! cargo run --release -p perf --example passthrough_stream
//! cargo run --release -p perf --example passthrough_stream -- --sizes 1,8 --runs 100 --tcp-runs 30   # quicker
//! ```

use std::convert::Infallible;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bosh_prebind::{BoshUrl, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt, service_fn};

// The crate forbids `unsafe_code`, so the `GlobalAlloc` impl comes from a
// small dependency: `System` behind two atomics (live bytes since the last
// reset, and their maximum).
#[global_allocator]
static HEAP: PeakMemAlloc<std::alloc::System> = PeakMemAlloc::system();

const CHUNK: usize = 16 << 10;
const MIB: usize = 1 << 20;
const PATH: &str = "/http-bind";
/// Never resolved: the in-process transport is the fake CM itself.
const CM_URL: &str = "http://cm.invalid/http-bind";
const BOSH_REQUEST: &str =
    "<body rid='1001' sid='bench' xmlns='http://jabber.org/protocol/httpbind'/>";

// ---------------------------------------------------------------------------
// The fake CM.

/// How the fake CM makes its chunks.
#[derive(Clone, Copy, PartialEq)]
enum Chunks {
    /// `Bytes` of one static buffer: no allocation per chunk.
    Shared,
    /// A new 16 KiB allocation per chunk, owned by whoever receives it.
    Fresh,
}

/// 16 KiB of stanza-like XML, made once and leaked (`Bytes::from_static`
/// clones cost no allocation and no reference count).
fn chunk() -> Bytes {
    static CHUNK_BYTES: OnceLock<&'static [u8]> = OnceLock::new();
    let bytes = CHUNK_BYTES.get_or_init(|| {
        let stanza = "<message from='a@localhost/r' to='b@localhost' type='chat' xmlns='jabber:client'><body>0123456789abcdef</body></message>";
        let mut text = stanza.repeat(CHUNK / stanza.len() + 1).into_bytes();
        text.truncate(CHUNK);
        text.leak()
    });
    Bytes::from_static(bytes)
}

/// The CM's answer: `left` more bytes, 16 KiB at a time.
struct Answer {
    chunk: Bytes,
    left: usize,
    chunks: Chunks,
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let take = self.left.min(CHUNK);
        self.left -= take;
        let data = match self.chunks {
            Chunks::Shared => self.chunk.slice(..take),
            Chunks::Fresh => Bytes::copy_from_slice(&self.chunk[..take]),
        };
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left as u64)
    }
}

/// A CM answering every request with `len` bytes.
fn fake_cm<B>(
    len: usize,
    chunks: Chunks,
) -> impl Service<Request<B>, Response = Response<Answer>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    service_fn(move |_: Request<B>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(Answer {
                    chunk: chunk(),
                    left: len,
                    chunks,
                })
                .unwrap(),
        )
    })
}

// ---------------------------------------------------------------------------
// Statistics.

/// The timings and peaks of one side at one size.
#[derive(Default)]
struct Samples {
    secs: Vec<f64>,
    peaks: Vec<usize>,
}

impl Samples {
    fn push(&mut self, elapsed: Duration, peak: usize) {
        self.secs.push(elapsed.as_secs_f64());
        self.peaks.push(peak);
    }

    fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.secs.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    /// Bytes/s of the median run and of the 90th-percentile (slow) run.
    fn rates(&self, len: usize) -> (f64, f64) {
        (
            len as f64 / self.quantile(0.5),
            len as f64 / self.quantile(0.9),
        )
    }

    fn max_peak(&self) -> usize {
        self.peaks.iter().copied().max().unwrap_or(0)
    }
}

fn gb(rate: f64) -> String {
    format!("{:.2}", rate / 1e9)
}

fn kib(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{:.2} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

// ---------------------------------------------------------------------------
// In process.

fn bosh_request(uri: Uri) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from_static(BOSH_REQUEST.as_bytes())))
        .unwrap()
}

/// Drains a response body frame by frame: the data bytes seen.
async fn drain<B>(body: B) -> usize
where
    B: Body<Data = Bytes, Error: Debug>,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes += data.len();
        }
    }
    bytes
}

/// One POST through `service`: its time and the heap peak above the level
/// before it. `collect` reads the body whole instead of frame by frame.
async fn in_process<S, B>(service: &S, len: usize, collect: bool) -> (Duration, usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error: Debug> + Clone,
    B: Body<Data = Bytes, Error: Debug>,
{
    let service = service.clone();
    HEAP.reset_peak_memory();
    let started = Instant::now();
    let response = service
        .oneshot(bosh_request(Uri::from_static(PATH)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = if collect {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len()
    } else {
        drain(response.into_body()).await
    };
    let elapsed = started.elapsed();
    let peak = HEAP.get_peak_memory();
    assert_eq!(bytes, len, "the whole answer arrived");
    (elapsed, peak)
}

/// The app behind the layer (never reached on the pass-through path).
async fn app<B>(_: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::default()))
}

#[derive(Default)]
struct InProcess {
    layer_shared: Samples,
    direct_shared: Samples,
    layer_fresh: Samples,
    direct_fresh: Samples,
    collected: Samples,
}

async fn measure_in_process(len: usize, warmup: usize, runs: usize) -> InProcess {
    let layered = |chunks| {
        PrebindLayer::with_transport(CM_URL.parse().unwrap(), fake_cm::<Full<Bytes>>(len, chunks))
            .bosh_passthrough(PATH)
            .layer(service_fn(app::<Full<Bytes>>))
    };
    let (layer_shared, layer_fresh) = (layered(Chunks::Shared), layered(Chunks::Fresh));
    let direct_shared = fake_cm::<Full<Bytes>>(len, Chunks::Shared);
    let direct_fresh = fake_cm::<Full<Bytes>>(len, Chunks::Fresh);
    let mut result = InProcess::default();
    for i in 0..warmup + runs {
        let count = i >= warmup;
        // Four sides per repetition; the order rotates.
        for k in 0..4 {
            match (i + k) % 4 {
                0 => {
                    let (t, peak) = in_process(&layer_shared, len, false).await;
                    if count {
                        result.layer_shared.push(t, peak);
                    }
                }
                1 => {
                    let (t, peak) = in_process(&direct_shared, len, false).await;
                    if count {
                        result.direct_shared.push(t, peak);
                    }
                }
                2 => {
                    let (t, peak) = in_process(&layer_fresh, len, false).await;
                    if count {
                        result.layer_fresh.push(t, peak);
                    }
                }
                _ => {
                    let (t, peak) = in_process(&direct_fresh, len, false).await;
                    if count {
                        result.direct_fresh.push(t, peak);
                    }
                }
            }
        }
    }
    // The control: what holding the whole answer looks like to the counter.
    for _ in 0..(runs / 10).max(5) {
        let (t, peak) = in_process(&direct_shared, len, true).await;
        result.collected.push(t, peak);
    }
    result
}

// ---------------------------------------------------------------------------
// Over loopback TCP.

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

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One POST to `url` over TCP: its time and the process's heap peak.
async fn over_tcp(client: &HttpClient, url: &Uri, len: usize) -> (Duration, usize) {
    HEAP.reset_peak_memory();
    let started = Instant::now();
    let response = client.request(bosh_request(url.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = drain(response.into_body()).await;
    let elapsed = started.elapsed();
    let peak = HEAP.get_peak_memory();
    assert_eq!(bytes, len, "the whole answer arrived");
    (elapsed, peak)
}

#[derive(Default)]
struct Tcp {
    layer: Samples,
    proxy: Samples,
    direct: Samples,
}

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn measure_tcp(len: usize, warmup: usize, runs: usize) -> Tcp {
    let cm = spawn_server(fake_cm::<hyper::body::Incoming>(len, Chunks::Shared)).await;
    let cm_url: Uri = format!("http://{cm}{PATH}").parse().unwrap();
    let layered = PrebindLayer::new(BoshUrl::try_from(cm_url.clone()).unwrap())
        .bosh_passthrough(PATH)
        .layer(service_fn(app::<hyper::body::Incoming>));
    let app_address = spawn_server(layered).await;
    let app_url: Uri = format!("http://{app_address}{PATH}").parse().unwrap();
    // The cost of any extra hop: a minimal streaming proxy, no layer (reads
    // the request whole, forwards it with its own pooled client, answers
    // with the CM's `Incoming` body as it is).
    let (proxy_client, target) = (http_client(), cm_url.clone());
    let proxy = spawn_server(service_fn(
        move |request: Request<hyper::body::Incoming>| {
            let (client, target) = (proxy_client.clone(), target.clone());
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let mut outgoing = bosh_request(target);
                *outgoing.body_mut() = Full::new(body);
                Ok::<_, Infallible>(client.request(outgoing).await.unwrap())
            }
        },
    ))
    .await;
    let proxy_url: Uri = format!("http://{proxy}{PATH}").parse().unwrap();
    let client = http_client();
    let mut result = Tcp::default();
    for i in 0..warmup + runs {
        let count = i >= warmup;
        // Three sides per repetition; the order rotates.
        for k in 0..3 {
            let (url, samples) = match (i + k) % 3 {
                0 => (&app_url, &mut result.layer),
                1 => (&proxy_url, &mut result.proxy),
                _ => (&cm_url, &mut result.direct),
            };
            let (t, peak) = over_tcp(&client, url, len).await;
            if count {
                samples.push(t, peak);
            }
        }
    }
    result
}

// ---------------------------------------------------------------------------

const USAGE: &str = "usage: passthrough_stream [--sizes 1,8,64 (MiB)] [--runs N (300, in process)] [--tcp-runs N (100)] [--warmup N (20)]";

fn main() {
    let (mut sizes, mut runs, mut tcp_runs, mut warmup) = (vec![1usize, 8, 64], 300usize, 100, 20);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{USAGE}"));
        let number = |v: &str| v.parse::<usize>().unwrap_or_else(|_| panic!("{USAGE}"));
        match flag.as_str() {
            "--sizes" => sizes = value.split(',').map(number).collect(),
            "--runs" => runs = number(&value),
            "--tcp-runs" => tcp_runs = number(&value),
            "--warmup" => warmup = number(&value),
            _ => panic!("{USAGE}"),
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "CM answers of {} MiB in {} KiB chunks; {runs} runs per side in process, {tcp_runs} over TCP, after {warmup} warm-up runs each; {cores} CPUs",
        sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        CHUNK >> 10
    );

    // In process, on one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut in_process_results = Vec::new();
    for &mib in &sizes {
        eprintln!("in process, {mib} MiB ...");
        in_process_results.push(runtime.block_on(measure_in_process(mib * MIB, warmup, runs)));
    }
    drop(runtime);

    println!();
    println!("In process (tower `oneshot`, no sockets):");
    println!();
    println!(
        "| answer | path | GB/s median | GB/s at p90 time | time per 16 KiB frame (median) | peak heap, shared chunks (max) | peak heap, fresh chunks (max) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (&mib, r) in sizes.iter().zip(&in_process_results) {
        let len = mib * MIB;
        let frames = len.div_ceil(CHUNK) as f64;
        let row = |name: &str, shared: &Samples, fresh: Option<&Samples>| {
            let (median, p90) = shared.rates(len);
            println!(
                "| {mib} MiB | {name} | {} | {} | {:.0} ns | {} | {} |",
                gb(median),
                gb(p90),
                shared.quantile(0.5) / frames * 1e9,
                kib(shared.max_peak()),
                fresh.map_or("–".to_owned(), |f| kib(f.max_peak())),
            );
        };
        row(
            "no layer (CM body drained)",
            &r.direct_shared,
            Some(&r.direct_fresh),
        );
        row(
            "**through the layer**",
            &r.layer_shared,
            Some(&r.layer_fresh),
        );
        row("control: CM body collected whole", &r.collected, None);
    }
    println!();
    for (&mib, r) in sizes.iter().zip(&in_process_results) {
        let len = mib * MIB;
        let frames = len.div_ceil(CHUNK) as f64;
        println!(
            "{mib} MiB: the layer adds {:.0} ns per 16 KiB frame (median time {:.1} µs vs {:.1} µs; rate {:.1} % of no layer); its heap above no layer: {} (shared), {} (fresh)",
            (r.layer_shared.quantile(0.5) - r.direct_shared.quantile(0.5)) / frames * 1e9,
            r.layer_shared.quantile(0.5) * 1e6,
            r.direct_shared.quantile(0.5) * 1e6,
            r.direct_shared.quantile(0.5) / r.layer_shared.quantile(0.5) * 100.0,
            kib(r
                .layer_shared
                .max_peak()
                .saturating_sub(r.direct_shared.max_peak())),
            kib(r
                .layer_fresh
                .max_peak()
                .saturating_sub(r.direct_fresh.max_peak())),
        );
    }
    if let Some(first) = in_process_results.first() {
        for (&mib, r) in sizes.iter().zip(&in_process_results).skip(1) {
            let grew = |a: &Samples, b: &Samples| b.max_peak() as i64 - a.max_peak() as i64;
            let fresh = grew(&first.layer_fresh, &r.layer_fresh);
            println!(
                "peak through the layer, {mib} MiB minus {} MiB: {:+} bytes (shared chunks), {fresh:+} bytes (fresh chunks) = {:+.2} chunks; buffering the answer would add {}",
                sizes[0],
                grew(&first.layer_shared, &r.layer_shared),
                fresh as f64 / CHUNK as f64,
                kib((mib - sizes[0]) * MIB),
            );
        }
    }

    // Over loopback TCP, client and both servers on a 2-thread runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut tcp_results = Vec::new();
    for &mib in &sizes {
        eprintln!("over TCP, {mib} MiB ...");
        tcp_results.push(runtime.block_on(measure_tcp(mib * MIB, warmup.min(10), tcp_runs)));
    }
    println!();
    println!("Over loopback TCP (hyper-util client; the CM a hyper server):");
    println!();
    println!(
        "| answer | path | GB/s median | GB/s at p90 time | median time | process peak heap, median / max (client + servers) |"
    );
    println!("|---|---|---|---|---|---|");
    for (&mib, r) in sizes.iter().zip(&tcp_results) {
        let len = mib * MIB;
        for (name, samples) in [
            ("no layer: client → CM", &r.direct),
            ("bare hyper proxy (no layer): client → proxy → CM", &r.proxy),
            (
                "**through the layer**: client → app with the layer → CM",
                &r.layer,
            ),
        ] {
            let (median, p90) = samples.rates(len);
            let mut peaks = samples.peaks.clone();
            peaks.sort_unstable();
            println!(
                "| {mib} MiB | {name} | {} | {} | {:.2} ms | {} / {} |",
                gb(median),
                gb(p90),
                samples.quantile(0.5) * 1e3,
                kib(peaks[peaks.len() / 2]),
                kib(samples.max_peak()),
            );
        }
    }
    println!();
    for (&mib, r) in sizes.iter().zip(&tcp_results) {
        println!(
            "{mib} MiB over TCP, medians: through the layer at {:.1} % of the direct rate and {:.1} % of the bare proxy's",
            r.direct.quantile(0.5) / r.layer.quantile(0.5) * 100.0,
            r.proxy.quantile(0.5) / r.layer.quantile(0.5) * 100.0,
        );
    }
}
