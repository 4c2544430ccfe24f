//! [`Prebind`]: the middleware service. It classifies each request: the
//! prebind path is answered here, everything else goes to the inner service
//! untouched (no allocation, no body wrapping beyond an enum variant).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::PrebindBody;
use crate::client::{BoshTransport, BoxError};
use crate::endpoint;
use crate::future::ResponseFuture;
use crate::layer::Config;

/// The service [`PrebindLayer`](crate::PrebindLayer) produces.
#[derive(Clone, Debug)]
pub struct Prebind<S, T> {
    inner: S,
    config: Arc<Config>,
    transport: T,
}

impl<S, T> Prebind<S, T> {
    pub(crate) fn new(inner: S, config: Arc<Config>, transport: T) -> Self {
        Prebind {
            inner,
            config,
            transport,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for Prebind<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
    T: BoshTransport,
{
    type Response = Response<PrebindBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.uri().path() != self.config.prebind_path {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        let config = Arc::clone(&self.config);
        let transport = self.transport.clone();
        ResponseFuture::answered(Box::pin(endpoint::answer(config, transport, request)))
    }
}
