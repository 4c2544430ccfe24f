//! Injection throughput (docs/design.md §5: ≥ 2 GB/s per core on a 1 MiB page in
//! 8 KiB chunks).
//!
//! - `scanner/*`: [`HtmlScanner`] alone, fed every chunk, the snippet pushed at
//!   the insertion point, as `PrebindBody` does.
//! - `layer/*`: the whole layer end to end on a current-thread runtime: an
//!   app streaming the page, the in-memory fake CM (`bosh_prebind::test_util`)
//!   answering an anonymous login at once, the response body drained frame by frame.
//! - `no_layer/baseline`: the same app and body drain without the layer.
//!
//! `early` has `</head>` about 2 KiB in; `late` has neither `<head>` nor
//! `<body>`, so the whole page is scanned and the snippet goes at the end.
//!
//! ```text
//! cargo bench --bench inject
//! DUMP_PAGE=1 cargo bench --bench inject -- --list   # writes /tmp/page-{early,late}.html
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bosh_prebind::inject::{HtmlScanner, Scan};
use bosh_prebind::test_util::FakeCm;
use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use http::{Request, Response, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use std::hint::black_box;
use tower::{Layer, Service, ServiceExt, service_fn};

mod support;
use support::{Chunks, page};

const PAGE_LEN: usize = 1 << 20;
const CHUNK: usize = 8 << 10;
const MARKER: &[u8] = b"<!--xmpp-prebind-->";

// ---------------------------------------------------------------------------
// The page: see support/mod.rs.

fn chunks(page: &[u8]) -> Arc<[Bytes]> {
    let page = Bytes::copy_from_slice(page);
    (0..page.len())
        .step_by(CHUNK)
        .map(|at| page.slice(at..(at + CHUNK).min(page.len())))
        .collect()
}

// ---------------------------------------------------------------------------
// The scanner alone.

/// Streams `chunks` through a scanner as `PrebindBody` does; returns the
/// bytes sent and the offset of the snippet among them.
fn scan(chunks: &[Bytes], snippet: &Bytes) -> (usize, usize) {
    let mut scanner = HtmlScanner::new(MARKER, false);
    let mut out = Vec::with_capacity(8);
    let mut sent = 0;
    let mut at = None;
    let mut rest = chunks.iter();
    for chunk in rest.by_ref() {
        let found = scanner.feed(chunk.clone(), &mut out);
        sent += out.drain(..).map(|b| black_box(b).len()).sum::<usize>();
        if let Scan::Found { held, rest } = found {
            at = Some(sent);
            sent += snippet.len() + held.len() + rest.len();
            break;
        }
    }
    // Past the insertion point the chunks pass through unscanned.
    sent += rest.map(|b| black_box(b.clone()).len()).sum::<usize>();
    if at.is_none() {
        scanner.finish(&mut out);
        sent += out.drain(..).map(|b| b.len()).sum::<usize>();
        at = Some(sent);
        sent += snippet.len();
    }
    (sent, at.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// The layer end to end.

/// An app answering every request with the page, streamed.
fn app(
    chunks: Arc<[Bytes]>,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Chunks>, Error = Infallible> + Clone {
    service_fn(move |_: Request<Full<Bytes>>| {
        let chunks = Arc::clone(&chunks);
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

/// The layer in front of the shared fake CM (`bosh_prebind::test_util`),
/// which answers an anonymous login at once and keeps no records.
fn layer() -> PrebindLayer<FakeCm> {
    FakeCm::builder()
        .keep_requests(false)
        .build()
        .layer()
        .credentials(Credentials::anonymous("anon.localhost"))
        .inject_path("/")
}

/// One GET `/` through `service`; drains the body frame by frame, counting.
async fn get<S, B>(service: S) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes, Error: std::fmt::Debug>,
{
    let request = Request::get("/").body(Full::default()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let mut sent = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            sent += black_box(data).len();
        }
    }
    sent
}

// ---------------------------------------------------------------------------

fn bench(c: &mut Criterion) {
    let snippet = Bytes::from_static(b"<script type=\"application/json\" id=\"xmpp-prebind\">{\"jid\":\"guest@anon.localhost/r1\",\"sid\":\"s1\",\"rid\":\"42\"}</script>");
    let cases = [("early", true), ("late", false)].map(|(name, early)| {
        let page = page(PAGE_LEN, early);
        let tags = memchr::memchr_iter(b'<', &page).count();
        eprintln!(
            "{name}: {} bytes, {} tags (one per {:.0} bytes), {} chunks",
            page.len(),
            tags,
            page.len() as f64 / tags as f64,
            page.len().div_ceil(CHUNK)
        );
        if std::env::var_os("DUMP_PAGE").is_some() {
            std::fs::write(format!("/tmp/page-{name}.html"), &page).unwrap();
        }
        (name, early, chunks(&page))
    });

    let mut group = c.benchmark_group("scanner");
    group
        .throughput(Throughput::Bytes(PAGE_LEN as u64))
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for (name, early, chunks) in &cases {
        let (sent, at) = scan(chunks, &snippet);
        assert_eq!(sent, PAGE_LEN + snippet.len());
        if *early {
            assert!((2000..4096).contains(&at), "early insertion at {at}");
        } else {
            assert_eq!(at, PAGE_LEN, "late insertion at the end");
        }
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| scan(chunks, &snippet))
        });
    }
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("layer");
    group
        .throughput(Throughput::Bytes(PAGE_LEN as u64))
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for (name, _, chunks) in &cases {
        let service = layer().layer(app(Arc::clone(chunks)));
        let sent = runtime.block_on(get(service.clone()));
        assert!(sent > PAGE_LEN, "the snippet was injected ({sent} bytes)");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| runtime.block_on(get(service.clone())))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("no_layer");
    group
        .throughput(Throughput::Bytes(PAGE_LEN as u64))
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    let service = app(Arc::clone(&cases[0].2));
    assert_eq!(runtime.block_on(get(service.clone())), PAGE_LEN);
    group.bench_function("baseline", |b| {
        b.iter(|| runtime.block_on(get(service.clone())))
    });
    group.finish();
}

// `criterion_group!` would make an undocumented `pub fn`; this is what it
// and `criterion_main!` expand to.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
