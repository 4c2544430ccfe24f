//! [`ResponseFuture`] of the [`Prebind`](crate::Prebind) service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::body::PrebindBody;

/// A boxed answer made by the middleware itself.
pub(crate) type AnswerFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

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
        // The prebind path, answered by the middleware (the only boxed path:
        // it does I/O anyway).
        Answered { future: AnswerFuture },
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
        }
    }
}
