//! [`Prebind`]: the middleware service. It classifies each request: the
//! prebind path is answered here, everything else goes to the inner service
//! untouched (no allocation, no body wrapping beyond an enum variant).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::html::scanner::HtmlScanner;
use crate::middleware::body::PrebindBody;
use crate::middleware::config::Config;
use crate::middleware::credentials_source::CredentialsNow;
use crate::middleware::endpoint;
use crate::middleware::establish;
use crate::middleware::future::ResponseFuture;
use crate::middleware::page_policy::strip_request_validators;
use crate::middleware::page_session::{self, PageCredentials, PendingSnippet, page_snippet};
use crate::middleware::passthrough;
use crate::transport::{BoshTransport, BoxError};

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
        let path = request.uri().path();
        if path == self.config.prebind_path {
            establish::start_pool(&self.config, &self.transport);
            let config = Arc::clone(&self.config);
            let transport = self.transport.clone();
            return ResponseFuture::answered(Box::pin(endpoint::answer(
                config, transport, request,
            )));
        }
        if let Some(node) = self.config.passthrough_target(path) {
            let config = Arc::clone(&self.config);
            let transport = self.transport.clone();
            return ResponseFuture::forwarding(Box::pin(async move {
                passthrough::forward(&config, transport, node, request).await
            }));
        }
        let pages = &self.config.pages;
        let method = request.method();
        if pages.is_empty() || (method != Method::GET && method != Method::HEAD) {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        let by_path = pages.matches_path(path);
        let (mut parts, body) = request.into_parts();
        let matched = by_path || pages.predicate.as_ref().is_some_and(|p| p(&parts));
        if !matched {
            return ResponseFuture::passthrough(self.inner.call(Request::from_parts(parts, body)));
        }
        // Who logs in is decided before the request is touched: with nobody,
        // the page is the app's, every header and byte of it.
        let now = self.config.credentials.credentials_now(&parts);
        if now == CredentialsNow::Nobody {
            page_session::log_no_credentials();
            return ResponseFuture::passthrough(self.inner.call(Request::from_parts(parts, body)));
        }
        strip_request_validators(&mut parts.headers);
        if parts.method == Method::HEAD {
            return ResponseFuture::head(self.inner.call(Request::from_parts(parts, body)));
        }
        let credentials = match now {
            CredentialsNow::Found(credentials) => PageCredentials::Known(credentials),
            _ => PageCredentials::Later(self.config.credentials.credentials(&parts)),
        };
        establish::start_pool(&self.config, &self.transport);
        // Start the handshake now, before the inner service runs.
        let reuse = pages.asks_reuse(&parts.headers);
        let snippet = page_snippet(
            Arc::clone(&self.config),
            self.transport.clone(),
            credentials,
            reuse,
        );
        let scanner = HtmlScanner::new(&pages.marker, pages.marker_only);
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::injecting(future, PendingSnippet::Running(snippet), scanner)
    }
}
