//! A body delivered in chunks, optionally never ending: the fake's response
//! body, and a request body for tests of the layer's own limits.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::counters::InFlight;

/// An [`http_body::Body`] of prepared chunks.
///
/// ```
/// use bosh_prebind::test_util::ChunkedBody;
/// use http_body::Body;
///
/// let body = ChunkedBody::new(["<body ", "xmlns='http://jabber.org/protocol/httpbind'/>"]);
/// assert_eq!(body.size_hint().upper(), None, "no length announced");
/// // `ChunkedBody::hanging` sends its chunks, then never ends.
/// ```
#[derive(Debug)]
pub struct ChunkedBody {
    chunks: VecDeque<Bytes>,
    hang: bool,
    exact: Option<u64>,
    guard: Option<InFlight>,
}

impl ChunkedBody {
    /// These chunks, then the end; no size hint.
    pub fn new<C: Into<Bytes>>(chunks: impl IntoIterator<Item = C>) -> Self {
        ChunkedBody {
            chunks: chunks.into_iter().map(Into::into).collect(),
            hang: false,
            exact: None,
            guard: None,
        }
    }

    /// These chunks, then nothing more, ever (the body stays pending).
    pub fn hanging<C: Into<Bytes>>(chunks: impl IntoIterator<Item = C>) -> Self {
        ChunkedBody {
            hang: true,
            ..ChunkedBody::new(chunks)
        }
    }

    /// One chunk with an exact size hint, like `Full`.
    pub(super) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ChunkedBody {
            exact: Some(bytes.len() as u64),
            ..ChunkedBody::new([bytes])
        }
    }

    /// Counted in the fake's in-flight counter while alive.
    pub(super) fn guarded(mut self, guard: InFlight) -> Self {
        self.guard = Some(guard);
        self
    }
}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.chunks.pop_front() {
            Some(chunk) => {
                if let Some(exact) = &mut this.exact {
                    *exact -= chunk.len() as u64;
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            // Nothing wakes this task again: the body never ends.
            None if this.hang => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.hang && self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(exact) => SizeHint::with_exact(exact),
            None => SizeHint::default(),
        }
    }
}
