//! [`ResponseFuture`] of the [`Prebind`](crate::Prebind) service: one
//! variant per path (inner future untouched, an answer made here, a page
//! being injected, `HEAD` on a page).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::html::scanner::HtmlScanner;
use crate::middleware::body::PrebindBody;
use crate::middleware::forwarded_body::ForwardedBody;
use crate::middleware::page_policy::{is_injectable, make_uncacheable};
use crate::middleware::page_session::PendingSnippet;

/// A boxed answer made by the middleware itself.
pub(crate) type AnswerFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// A boxed answer of the CM, forwarded on the same-origin BOSH path.
pub(crate) type ForwardFuture = Pin<Box<dyn Future<Output = Response<ForwardedBody>> + Send>>;

pin_project! {
    /// Response future of [`Prebind`](crate::Prebind).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        // The inner service's future, untouched.
        Passthrough { #[pin] future: F },
        // The prebind path, answered by the middleware (the only boxed path
        // besides the snippet: both do I/O anyway).
        Answered { future: AnswerFuture },
        // Same-origin BOSH: the CM's answer, streamed.
        Forwarding { future: ForwardFuture },
        // An HTML route: the inner service and the handshake run together.
        Injecting {
            #[pin] future: F,
            snippet: Option<PendingSnippet>,
            scanner: Option<HtmlScanner>,
        },
        // HEAD on an HTML route: no handshake, but the headers GET would get.
        Head { #[pin] future: F },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn passthrough(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Passthrough { future },
        }
    }

    pub(crate) fn answered(future: AnswerFuture) -> Self {
        ResponseFuture {
            kind: Kind::Answered { future },
        }
    }

    pub(crate) fn forwarding(future: ForwardFuture) -> Self {
        ResponseFuture {
            kind: Kind::Forwarding { future },
        }
    }

    pub(crate) fn injecting(future: F, snippet: PendingSnippet, scanner: HtmlScanner) -> Self {
        ResponseFuture {
            kind: Kind::Injecting {
                future,
                snippet: Some(snippet),
                scanner: Some(scanner),
            },
        }
    }

    pub(crate) fn head(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Head { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<PrebindBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(PrebindBody::inner)))
            }
            KindProj::Answered { future } => {
                let response = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(response.map(PrebindBody::full)))
            }
            KindProj::Forwarding { future } => {
                let response = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(response.map(PrebindBody::forwarded)))
            }
            KindProj::Injecting {
                future,
                snippet,
                scanner,
            } => {
                // Drive the handshake while the inner service works.
                if let Some(snippet) = snippet.as_mut() {
                    snippet.progress(cx);
                }
                let mut response = ready!(future.poll(cx))?;
                match (snippet.take(), scanner.take()) {
                    (Some(snippet), Some(scanner)) if is_injectable(&response) => {
                        make_uncacheable(response.headers_mut());
                        Poll::Ready(Ok(
                            response.map(|body| PrebindBody::injecting(body, scanner, snippet))
                        ))
                    }
                    // Not a page we can write into: dropping the snippet
                    // cancels its handshake (see the crate docs).
                    _ => Poll::Ready(Ok(response.map(PrebindBody::inner))),
                }
            }
            KindProj::Head { future } => {
                let mut response = ready!(future.poll(cx))?;
                if is_injectable(&response) {
                    make_uncacheable(response.headers_mut());
                }
                Poll::Ready(Ok(response.map(PrebindBody::inner)))
            }
        }
    }
}
