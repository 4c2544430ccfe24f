//! Peak heap while a page streams through the injecting layer (docs/design.md §5:
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
//! cargo run --release -p perf --example inject_memory -- 1
//! cargo run --release -p perf --example inject_memory -- 64
//! ```

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait};
#[path = "../../benches/support/mod.rs"]
mod support;
use support::{Rng, block, fake_cm, head};
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
