//! Injection throughput (DESIGN §5: ≥ 2 GB/s per core on a 1 MiB page in
//! 8 KiB chunks).
//!
//! - `scanner/*`: [`HtmlScanner`] alone, fed every chunk, the snippet pushed at
//!   the insertion point, as `PrebindBody` does.
//! - `layer/*`: the whole layer end to end on a current-thread runtime: an
//!   app streaming the page, an in-memory CM answering an anonymous login at
//!   once, the response body drained frame by frame.
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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bosh_prebind::inject::{HtmlScanner, Scan};
use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, black_box};
use http::{Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

const PAGE_LEN: usize = 1 << 20;
const CHUNK: usize = 8 << 10;
const MARKER: &[u8] = b"<!--xmpp-prebind-->";
const BOSH_URL: &str = "http://cm.invalid/http-bind";

// ---------------------------------------------------------------------------
// The page.

/// A small deterministic generator (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
];

/// Between `min` and `min + spread - 1` words (exactly `min` when `spread` is 0).
fn words(rng: &mut Rng, out: &mut String, min: u32, spread: u32) {
    let n = min + if spread > 0 { rng.below(spread) } else { 0 };
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u32) as usize]);
    }
}

/// The `<head>` part: doctype, meta, link, script, style; about 2 KiB.
/// With `head_tags` false the `<html><head>` and `</head>` tags are left
/// out (the elements stay).
fn head(out: &mut String, head_tags: bool) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n");
    if head_tags {
        out.push_str("<head>\n");
    }
    out.push_str(concat!(
        "<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>Example News &mdash; Front page</title>\n",
        "<meta name=\"description\" content=\"Latest stories, comments & more\">\n",
        "<meta property=\"og:title\" content=\"Example News\">\n",
        "<link rel=\"preconnect\" href=\"https://cdn.example.com\" crossorigin>\n",
        "<link rel=\"stylesheet\" href=\"/static/css/main.3f9a1c.css\" media=\"all\">\n",
        "<link rel=\"icon\" type=\"image/png\" sizes=\"32x32\" href=\"/favicon-32.png\">\n",
        "<link rel=\"canonical\" href=\"https://news.example.com/\">\n",
        "<script async src=\"https://cdn.example.com/analytics.js\"></script>\n",
        "<script>\n",
        "  window.dataLayer = window.dataLayer || [];\n",
        "  function gtag(){dataLayer.push(arguments);}\n",
        "  if (location.hash.length > 1 && document.readyState !== 'loading') {\n",
        "    document.documentElement.className += ' js';\n",
        "  }\n",
        "  var tpl = '<div class=\"toast\"><b>' + 'Saved' + '</b></div>';\n",
        "</script>\n",
        "<style>\n",
        "  :root { --accent: #c33; --bg: #fff; }\n",
        "  body > header { position: sticky; top: 0; }\n",
        "  .card > .title a:hover { color: var(--accent); }\n",
        "  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); }\n",
        "  @media (max-width: 40rem) { .sidebar { display: none; } }\n",
        "</style>\n",
        "<script type=\"application/ld+json\">{\"@context\":\"https://schema.org\",\"@type\":\"WebSite\",\"name\":\"Example\"}</script>\n",
        "<link rel=\"alternate\" type=\"application/rss+xml\" title=\"RSS\" href=\"/feed.xml\">\n",
        "<noscript><link rel=\"stylesheet\" href=\"/static/css/nojs.css\"></noscript>\n",
    ));
    while out.len() < 2000 {
        out.push_str("<meta name=\"x-build\" content=\"");
        let mut rng = Rng(out.len() as u64);
        words(&mut rng, out, 3, 0);
        out.push_str("\">\n");
    }
    if head_tags {
        out.push_str("</head>\n<body class=\"home\" data-theme=\"light\">\n");
    }
}

/// One block of body markup: divs with attributes (quoted values containing
/// `>`), paragraphs, links, comments, images, inline scripts, lists.
fn block(rng: &mut Rng, n: u32, out: &mut String) {
    use std::fmt::Write;
    match rng.below(8) {
        0 | 1 => {
            let _ = write!(
                out,
                "<div class=\"card card-{}\" data-id=\"{n}\" data-tooltip=\"score > {}\">\n  <h2 class=\"title\"><a href=\"/story/{n}?ref=home&amp;pos={}\">",
                rng.below(4),
                rng.below(100),
                rng.below(30),
            );
            words(rng, out, 3, 4);
            out.push_str("</a></h2>\n  <p>");
            words(rng, out, 10, 14);
            out.push_str(" <em>");
            words(rng, out, 1, 2);
            out.push_str("</em> ");
            words(rng, out, 8, 12);
            let _ = writeln!(
                out,
                ".</p>\n  <span class='meta' title='1 > 0'>{} points</span> <a class=\"comments\" href=\"/c/{n}\">{} comments</a>\n</div>",
                rng.below(500),
                rng.below(90),
            );
        }
        2 => {
            out.push_str("<p>");
            words(rng, out, 16, 20);
            let _ = write!(
                out,
                " <a href=\"https://example.org/{n}\" rel=\"nofollow\">"
            );
            words(rng, out, 2, 0);
            out.push_str("</a> ");
            words(rng, out, 12, 16);
            out.push_str(" <strong>");
            words(rng, out, 1, 0);
            out.push_str("</strong>.</p>\n");
        }
        3 => {
            let _ = write!(out, "<!-- story {n}: ");
            words(rng, out, 2, 3);
            out.push_str(" -->\n");
        }
        4 => {
            let _ = write!(
                out,
                "<figure><img src=\"/img/{n}.jpg\" alt=\"Photo {n}\" width=\"320\" height=\"{}\" loading=\"lazy\"><figcaption>",
                180 + rng.below(60),
            );
            words(rng, out, 6, 8);
            out.push_str("</figcaption></figure>\n");
        }
        5 => {
            let _ = writeln!(
                out,
                "<script>window.__story_{n} = {{\"id\": {n}, \"html\": \"<span class=\\\"new\\\">new</span>\", \"hot\": {} > 50}};</script>",
                rng.below(100),
            );
        }
        6 => {
            out.push_str("<ul class=\"tags\">");
            for _ in 0..2 + rng.below(3) {
                let word = WORDS[rng.below(WORDS.len() as u32) as usize];
                let _ = write!(out, "<li><a href=\"/t/{word}\">{word}</a></li>");
            }
            out.push_str("</ul>\n");
        }
        _ => {
            let _ = writeln!(
                out,
                "<form action=\"/vote\" method=\"post\"><input type=\"hidden\" name=\"id\" value=\"{n}\"><button type=\"submit\" onclick=\"return n > 0\">&#9650;</button></form>",
            );
        }
    }
}

/// A `len`-byte page (padded with a final comment). `early`: `</head>`
/// about 2 KiB in; else no `<head>`/`<body>` at all (insertion at the end).
fn page(len: usize, early: bool) -> Vec<u8> {
    let mut out = String::with_capacity(len + 1024);
    head(&mut out, early);
    let tail = if early {
        "</body>\n</html>\n"
    } else {
        "</html>\n"
    };
    let mut rng = Rng(0x5eed);
    let mut n = 0;
    let mut next = String::new();
    loop {
        next.clear();
        block(&mut rng, n, &mut next);
        n += 1;
        if out.len() + next.len() + tail.len() + 16 > len {
            break;
        }
        out.push_str(&next);
    }
    let pad = len - out.len() - tail.len();
    out.push_str("<!--");
    out.push_str(&"-".repeat(pad.saturating_sub(7)));
    out.push_str("-->");
    out.push_str(tail);
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    assert_eq!(bytes.len(), len);
    bytes
}

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

/// A response body streaming prebuilt chunks (each `Bytes` clone is a
/// reference count).
struct Chunks {
    chunks: Arc<[Bytes]>,
    next: usize,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.chunks.get(self.next).cloned();
        self.next += 1;
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        let left = self.chunks.get(self.next..).unwrap_or_default();
        SizeHint::with_exact(left.iter().map(|c| c.len() as u64).sum())
    }
}

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

/// An in-memory CM answering an anonymous login at once (as in
/// tests/inject.rs).
async fn fake_cm(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body = std::str::from_utf8(&body).unwrap();
    let head = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='s1'";
    let xml = if !body.contains("sid=") {
        format!(
            "{head} wait='60' hold='1' inactivity='60'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>"
        )
    } else if body.contains("<auth") {
        format!("{head}><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>")
    } else if body.contains("restart='true'") {
        format!(
            "{head}><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features></body>"
        )
    } else {
        format!(
            "{head}><iq xmlns='jabber:client' type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>guest@anon.localhost/r1</jid></bind></iq></body>"
        )
    };
    Ok(Response::new(Full::new(Bytes::from(xml))))
}

fn layer() -> PrebindLayer<
    impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static,
> {
    PrebindLayer::with_transport(BOSH_URL.parse().unwrap(), service_fn(fake_cm))
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
