//! [`PrebindBody`], the response body of the [`Prebind`](crate::Prebind)
//! service: the inner service's body untouched, an answer made here, or an
//! HTML page streamed through the injector.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::html::scanner::{HtmlScanner, Scan};
use crate::middleware::forwarded_body::ForwardedBody;
use crate::middleware::page_session::PendingSnippet;
use crate::transport::BoxError;

pin_project! {
    /// Response body of [`Prebind`](crate::Prebind).
    pub struct PrebindBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { #[pin] body: Full<Bytes> },
        Forwarded { #[pin] body: ForwardedBody },
        Injecting { #[pin] body: B, injector: Injector },
    }
}

/// Streams a page, holding only the insertion point until the snippet is
/// ready: bytes before it go out as they arrive.
#[derive(Debug)]
struct Injector {
    scanner: HtmlScanner,
    snippet: PendingSnippet,
    /// Frames ready to go out, in order.
    queue: VecDeque<Bytes>,
    phase: Phase,
    trailers: Option<HeaderMap>,
    /// Scratch space for the scanner's output.
    out: Vec<Bytes>,
    /// Whether the page's first bytes were checked for a UTF-16 byte order
    /// mark.
    bom: Bom,
}

/// The byte order mark check of a page's first two bytes: a page that
/// starts with `FF FE` or `FE FF` is UTF-16 whatever its header says
/// (WHATWG Encoding, "BOM sniff"), and a UTF-8 snippet in it would be
/// garbage; it is served as is and its handshake dropped.
#[derive(Debug)]
enum Bom {
    Unchecked,
    /// The first chunk had one byte.
    Pending(u8),
    Checked,
}

enum Sniffed {
    /// Not enough bytes yet.
    Wait,
    Utf16(Bytes),
    Text(Bytes),
}

impl Bom {
    fn sniff(&mut self, data: Bytes) -> Sniffed {
        let data = match std::mem::replace(self, Bom::Checked) {
            Bom::Checked => return Sniffed::Text(data),
            Bom::Unchecked => data,
            Bom::Pending(first) => {
                let mut joined = Vec::with_capacity(data.len() + 1);
                joined.push(first);
                joined.extend_from_slice(&data);
                Bytes::from(joined)
            }
        };
        match *data {
            [] => {
                *self = Bom::Unchecked;
                Sniffed::Wait
            }
            [first] => {
                *self = Bom::Pending(first);
                Sniffed::Wait
            }
            [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => Sniffed::Utf16(data),
            _ => Sniffed::Text(data),
        }
    }

    /// The byte held back when the page ended after it.
    fn take_pending(&mut self) -> Option<Bytes> {
        match std::mem::replace(self, Bom::Checked) {
            Bom::Pending(byte) => Some(Bytes::copy_from_slice(&[byte])),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Looking for the insertion point.
    Scanning,
    /// At the insertion point: `after` follows the snippet; `inner_done`
    /// when the page has no more bytes.
    AwaitSnippet { after: [Bytes; 2], inner_done: bool },
    /// Snippet written: the rest of the page passes through.
    Passthrough,
    /// The inner body ended.
    Finished,
}

impl<B> PrebindBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        PrebindBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(body: Full<Bytes>) -> Self {
        PrebindBody {
            kind: Kind::Full { body },
        }
    }

    pub(crate) fn forwarded(body: ForwardedBody) -> Self {
        PrebindBody {
            kind: Kind::Forwarded { body },
        }
    }

    pub(crate) fn injecting(body: B, scanner: HtmlScanner, snippet: PendingSnippet) -> Self {
        PrebindBody {
            kind: Kind::Injecting {
                body,
                injector: Injector {
                    scanner,
                    snippet,
                    queue: VecDeque::new(),
                    phase: Phase::Scanning,
                    trailers: None,
                    out: Vec::new(),
                    bom: Bom::Unchecked,
                },
            },
        }
    }
}

/// An empty body, for middleware that needs to make one (tower-http's
/// `TimeoutLayer` outside this layer).
impl<B> Default for PrebindBody<B> {
    fn default() -> Self {
        PrebindBody::full(Full::default())
    }
}

/// Errors are boxed: a forwarded CM answer can fail mid-body too (the
/// server then aborts the response).
impl<B> Body for PrebindBody<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(Into::into))),
            KindProj::Full { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            KindProj::Forwarded { body } => body.poll_frame(cx),
            KindProj::Injecting { mut body, injector } => loop {
                // Keep the handshake moving whatever else waits.
                injector.snippet.progress(cx);
                if let Some(bytes) = injector.queue.pop_front() {
                    if bytes.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                match &mut injector.phase {
                    Phase::AwaitSnippet { after, inner_done } => {
                        let snippet = ready!(injector.snippet.poll_take(cx));
                        injector.queue.extend(snippet);
                        injector.queue.extend(after.iter_mut().map(std::mem::take));
                        injector.phase = if *inner_done {
                            Phase::Finished
                        } else {
                            Phase::Passthrough
                        };
                    }
                    Phase::Finished => {
                        return Poll::Ready(
                            injector.trailers.take().map(|t| Ok(Frame::trailers(t))),
                        );
                    }
                    Phase::Passthrough => {
                        // Data and trailers alike, untouched.
                        let frame = ready!(body.as_mut().poll_frame(cx));
                        if frame.is_none() {
                            injector.phase = Phase::Finished;
                        }
                        return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
                    }
                    Phase::Scanning => match ready!(body.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                let data = match injector.bom.sniff(data) {
                                    Sniffed::Wait => continue,
                                    Sniffed::Text(data) => data,
                                    Sniffed::Utf16(data) => {
                                        // Served as is; dropping the snippet
                                        // cancels (or ends) its session.
                                        injector.snippet = PendingSnippet::Taken;
                                        injector.queue.push_back(data);
                                        injector.phase = Phase::Passthrough;
                                        continue;
                                    }
                                };
                                let scan = injector.scanner.feed(data, &mut injector.out);
                                injector.queue.extend(injector.out.drain(..));
                                if let Scan::Found { held, rest } = scan {
                                    injector.phase = Phase::AwaitSnippet {
                                        after: [held, rest],
                                        inner_done: false,
                                    };
                                }
                            }
                            Err(frame) => {
                                // Trailers end the body: the page had no
                                // insertion point, so the snippet goes last,
                                // then the trailers.
                                injector.trailers = frame.into_trailers().ok();
                                end_of_page(injector);
                            }
                        },
                        Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                        None => end_of_page(injector),
                    },
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
            Kind::Forwarded { body } => body.is_end_stream(),
            Kind::Injecting { injector, .. } => {
                matches!(injector.phase, Phase::Finished)
                    && injector.queue.is_empty()
                    && injector.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { body } => body.size_hint(),
            Kind::Forwarded { body } => body.size_hint(),
            Kind::Injecting { body, injector } => {
                let queued: u64 = injector.queue.iter().map(|b| b.len() as u64).sum();
                let inner = match injector.phase {
                    Phase::Finished => SizeHint::with_exact(0),
                    _ => body.size_hint(),
                };
                let mut hint = SizeHint::new();
                match &injector.phase {
                    Phase::Scanning | Phase::AwaitSnippet { .. } => {
                        let after: u64 = match &injector.phase {
                            Phase::AwaitSnippet { after, .. } => {
                                after.iter().map(|b| b.len() as u64).sum()
                            }
                            _ => 0,
                        };
                        // The snippet's length is unknown until it is made.
                        hint.set_lower(inner.lower() + queued + after);
                    }
                    Phase::Passthrough | Phase::Finished => {
                        hint.set_lower(inner.lower() + queued);
                        if let Some(upper) = inner.upper() {
                            hint.set_upper(upper + queued);
                        }
                    }
                }
                hint
            }
        }
    }
}

/// The page ended without an insertion point: the snippet goes at the end.
fn end_of_page(injector: &mut Injector) {
    if let Some(byte) = injector.bom.take_pending() {
        // A one-byte page: no insertion point in it, the snippet goes after.
        let _ = injector.scanner.feed(byte, &mut injector.out);
    }
    injector.scanner.finish(&mut injector.out);
    injector.queue.extend(injector.out.drain(..));
    injector.phase = Phase::AwaitSnippet {
        after: [Bytes::new(), Bytes::new()],
        inner_done: true,
    };
}
