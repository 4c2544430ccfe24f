//! Peak heap while a page streams through the injecting layer (DESIGN §5:
//! memory independent of page size).
//!
//! The app streams a generated page of `MIB` MiB in 8 KiB chunks made on the
//! fly (the page is never whole in memory); an in-memory CM answers an
//! anonymous login at once; the response body is drained frame by frame and
//! dropped. A counting global allocator (wrapping `System`; live and peak
//! bytes in atomics) is reset just before each request, so the peak printed
//! is the most heap the request held at once above what was live before it.
//! Two placements: `early` (`</head>` about 2 KiB in) and `late` (no head or
//! body tag: the whole page is scanned and the snippet goes at the end).
//! `--collect` keeps every frame instead, as a check that the counter sees a
//! page-sized peak when the page is held.
//!
//! ```text
//! cargo run --release --example inject_memory -- 1
//! cargo run --release --example inject_memory -- 64
//! ```

use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait};
use tower::{Layer, ServiceExt, service_fn};

// The crate forbids `unsafe_code`, so the `GlobalAlloc` impl comes from a
// small dependency: `System` behind two atomics (live bytes since the last
// reset, and their maximum).
#[global_allocator]
static HEAP: PeakMemAlloc<std::alloc::System> = PeakMemAlloc::system();

const CHUNK: usize = 8 << 10;
const BOSH_URL: &str = "http://cm.invalid/http-bind";

// ---------------------------------------------------------------------------
// The page, made chunk by chunk (the same markup as benches/inject.rs).

/// A small deterministic generator (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as u32) % n
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

fn words(rng: &mut Rng, out: &mut String, min: u32, spread: u32) {
    let n = min + if spread > 0 { rng.below(spread) } else { 0 };
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u32) as usize]);
    }
}

fn head(out: &mut String, head_tags: bool) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n");
    if head_tags {
        out.push_str("<head>\n");
    }
    out.push_str(concat!(
        "<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>Example News &mdash; Front page</title>\n",
        "<link rel=\"stylesheet\" href=\"/static/css/main.3f9a1c.css\" media=\"all\">\n",
        "<script async src=\"https://cdn.example.com/analytics.js\"></script>\n",
        "<script>\n  if (location.hash.length > 1) { var t = '<b>' + 'x' + '</b>'; }\n</script>\n",
        "<style>\n  body > header { position: sticky; top: 0; }\n</style>\n",
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

fn block(rng: &mut Rng, n: u64, out: &mut String) {
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

/// A response body making a `len`-byte page 8 KiB at a time: only the
/// markup not yet sent (under a chunk plus one block) is held.
struct LazyPage {
    rng: Rng,
    blocks: u64,
    /// Bytes handed out so far.
    sent: usize,
    len: usize,
    early: bool,
    /// Made, not yet sent.
    pending: String,
    /// Scratch space for the next block.
    next: String,
    done: bool,
}

impl LazyPage {
    fn new(len: usize, early: bool) -> Self {
        let mut pending = String::with_capacity(2 * CHUNK);
        head(&mut pending, early);
        LazyPage {
            rng: Rng(0x5eed),
            blocks: 0,
            sent: 0,
            len,
            early,
            pending,
            next: String::new(),
            done: false,
        }
    }

    /// Appends the next block, or the padding and the end tags.
    fn grow(&mut self) {
        let tail = if self.early {
            "</body>\n</html>\n"
        } else {
            "</html>\n"
        };
        let made = self.sent + self.pending.len();
        self.next.clear();
        block(&mut self.rng, self.blocks, &mut self.next);
        self.blocks += 1;
        if made + self.next.len() + tail.len() + 16 <= self.len {
            self.pending.push_str(&self.next);
            return;
        }
        let pad = self.len.saturating_sub(made + tail.len() + 7);
        self.pending.push_str("<!--");
        self.pending.extend(std::iter::repeat_n('-', pad));
        self.pending.push_str("-->");
        self.pending.push_str(tail);
        self.done = true;
    }
}

impl Body for LazyPage {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        while !self.done && self.pending.len() < CHUNK {
            self.grow();
        }
        if self.pending.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.pending.len().min(CHUNK);
        let chunk = Bytes::copy_from_slice(&self.pending.as_bytes()[..take]);
        self.pending.drain(..take);
        self.sent += take;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

// ---------------------------------------------------------------------------
// The layer.

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

/// What one request did.
struct Run {
    /// Body bytes received.
    bytes: usize,
    frames: usize,
    /// Most heap live at once during the request, above the level before it.
    peak: usize,
}

/// GET `/` through the layer around an app streaming a `len`-byte page.
async fn run(len: usize, early: bool, collect: bool) -> Run {
    let app = service_fn(move |_: Request<Full<Bytes>>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .body(LazyPage::new(len, early))
                .unwrap(),
        )
    });
    let service = PrebindLayer::with_transport(BOSH_URL.parse().unwrap(), service_fn(fake_cm))
        .credentials(Credentials::anonymous("anon.localhost"))
        .inject_path("/")
        .layer(app);
    let request = Request::get("/").body(Full::default()).unwrap();
    let mut kept = Vec::new();
    HEAP.reset_peak_memory();
    let response = service.oneshot(request).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let (mut bytes, mut frames) = (0, 0);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes += data.len();
            frames += 1;
            if collect {
                kept.push(data);
            }
        }
    }
    let peak = HEAP.get_peak_memory();
    drop(kept);
    Run {
        bytes,
        frames,
        peak,
    }
}

fn main() {
    let mut mib: usize = 1;
    let mut collect = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--collect" => collect = true,
            n => mib = n.parse().expect("usage: inject_memory [MIB] [--collect]"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let len = mib << 20;
    // Warm up (lazy statics, the runtime's timer wheel) outside the count.
    runtime.block_on(run(CHUNK * 4, true, false));
    runtime.block_on(run(CHUNK * 4, false, false));
    println!(
        "page {mib} MiB ({len} bytes) in {} KiB chunks{}",
        CHUNK >> 10,
        if collect { ", frames kept" } else { "" }
    );
    for (name, early) in [("early", true), ("late", false)] {
        let run = runtime.block_on(run(len, early, collect));
        assert!(run.bytes > len, "the snippet was injected");
        println!(
            "{name:>5}: {} bytes seen in {} frames ({} snippet bytes); peak live heap during the request: {} bytes ({:.1} KiB)",
            run.bytes,
            run.frames,
            run.bytes - len,
            run.peak,
            run.peak as f64 / 1024.0,
        );
    }
}
