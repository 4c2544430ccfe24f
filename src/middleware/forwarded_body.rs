//! [`ForwardedBody`]: a connection manager's answer on the same-origin BOSH
//! path, streamed to the browser as it arrives (never buffered whole), with
//! its own limits: an optional byte cap and an idle timeout between chunks,
//! so a CM that stalls mid-body cannot hold the request forever.
//!
//! A failure mid-body is an error of the body: the server aborts the
//! response, and the browser re-sends the same RID, which the CM answers
//! again from its cache (XEP-0124 §14.3).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::transport::BoxError;

pin_project! {
    /// The body of a forwarded BOSH answer.
    #[project = ForwardedBodyProj]
    pub(crate) enum ForwardedBody {
        // An answer made here (a terminate body).
        Made { #[pin] body: Full<Bytes> },
        // The CM's body, streamed.
        Streaming {
            #[pin] body: UnsyncBoxBody<Bytes, BoxError>,
            // Boxed so the body stays `Unpin` (this path allocates anyway).
            idle: Pin<Box<Sleep>>,
            idle_timeout: Duration,
            // When the last frame came. The timer is not re-armed per frame
            // (a timer-wheel update each time); when it fires early it is
            // moved to `last_frame + idle_timeout` instead.
            last_frame: Instant,
            remaining: Option<u64>,
        },
    }
}

/// Why a forwarded body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("the connection manager's answer exceeds the pass-through limit")]
    TooLarge,
    #[error("the connection manager stalled mid-answer for {0:?}")]
    Stalled(Duration),
}

impl ForwardedBody {
    pub(crate) fn made(body: Full<Bytes>) -> Self {
        ForwardedBody::Made { body }
    }

    pub(crate) fn streaming(
        body: UnsyncBoxBody<Bytes, BoxError>,
        idle_timeout: Duration,
        limit: Option<u64>,
    ) -> Self {
        ForwardedBody::Streaming {
            body,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            last_frame: Instant::now(),
            remaining: limit,
        }
    }
}

impl Body for ForwardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ForwardedBodyProj::Made { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            ForwardedBodyProj::Streaming {
                body,
                idle,
                idle_timeout,
                last_frame,
                remaining,
            } => {
                let Poll::Ready(frame) = body.poll_frame(cx) else {
                    loop {
                        ready!(idle.as_mut().poll(cx));
                        let deadline = crate::driver::deadline_after(*last_frame, *idle_timeout);
                        if deadline <= Instant::now() {
                            return Poll::Ready(Some(Err(
                                ForwardError::Stalled(*idle_timeout).into()
                            )));
                        }
                        // Frames came since the timer was armed.
                        idle.as_mut().reset(deadline);
                    }
                };
                if let Some(Ok(frame)) = &frame {
                    if let Some(data) = frame.data_ref() {
                        crate::telemetry::passthrough_bytes(
                            crate::telemetry::Direction::FromCm,
                            data.len(),
                        );
                    }
                    if let (Some(data), Some(left)) = (frame.data_ref(), remaining.as_mut()) {
                        let len = data.len() as u64;
                        if len > *left {
                            return Poll::Ready(Some(Err(ForwardError::TooLarge.into())));
                        }
                        *left -= len;
                    }
                    *last_frame = Instant::now();
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardedBody::Made { body } => body.is_end_stream(),
            ForwardedBody::Streaming { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardedBody::Made { body } => body.size_hint(),
            ForwardedBody::Streaming { body, .. } => body.size_hint(),
        }
    }
}
