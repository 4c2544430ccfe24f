//! Shared by the benchmarks and the measurement examples: a deterministic,
//! realistic HTML page generator and a streamed page body. The connection
//! manager is the shared fake of `bosh_prebind::test_util`.
#![allow(dead_code)] // each user takes what it needs

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bosh_prebind::BoxError;
use bosh_prebind::test_util::{ChunkedBody, FakeCm};
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tower::Service;

/// A small deterministic generator (64-bit LCG, high bits).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    pub(crate) fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

pub(crate) const WORDS: &[&str] = &[
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
pub(crate) fn words(rng: &mut Rng, out: &mut String, min: u32, spread: u32) {
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
pub(crate) fn head(out: &mut String, head_tags: bool) {
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
pub(crate) fn block(rng: &mut Rng, n: u64, out: &mut String) {
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
pub(crate) fn page(len: usize, early: bool) -> Vec<u8> {
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

/// The shared fake CM (`bosh_prebind::test_util`, feature `test-util`) as a
/// function, answering an anonymous login at once and keeping no records:
/// for `perf/examples/inject_memory.rs`, which includes this file by path.
/// New code uses `FakeCm` directly.
pub(crate) fn fake_cm(
    request: Request<Full<Bytes>>,
) -> impl Future<Output = Result<Response<ChunkedBody>, BoxError>> + Send {
    static CM: OnceLock<FakeCm> = OnceLock::new();
    let mut cm = CM
        .get_or_init(|| FakeCm::builder().keep_requests(false).build())
        .clone();
    // Always ready: no need to poll first.
    cm.call(request)
}

/// A response body streaming prebuilt chunks (each `Bytes` clone is a
/// reference count).
pub(crate) struct Chunks {
    pub(crate) chunks: Arc<[Bytes]>,
    pub(crate) next: usize,
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
