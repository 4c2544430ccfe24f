//! The transport: any tower `Service` that POSTs a `<body/>` to the
//! connection manager ([`BoshTransport`]), and the default one
//! ([`HttpTransport`], feature `client`): a pooled hyper-util client tuned for
//! small request/response exchanges, with HTTPS through rustls (feature
//! `rustls`, on by default).

pub(crate) mod bosh_url;
#[cfg(feature = "client")]
mod hyper_client;
#[cfg(feature = "rustls")]
mod tls;

pub use bosh_url::{BoshUrl, BoshUrlError};
#[cfg(feature = "client")]
pub use hyper_client::{HttpTransport, HttpTransportBuilder, http_transport};
#[cfg(feature = "rustls")]
pub use tls::TlsError;

use std::future::Future;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

/// Boxed error type of transports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any tower `Service` that can POST a `<body/>` to the connection manager.
///
/// Implemented for every `Service<Request<Full<Bytes>>, Response =
/// Response<B>>` that is `Clone + Send + 'static` with a `Send` future; you
/// never implement it yourself. Plug in your own client (TLS, proxies,
/// metrics) with [`PrebindLayer::transport`](crate::PrebindLayer::transport).
pub trait BoshTransport: Clone + Send + 'static {
    /// The response body.
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
    /// The transport's error.
    type Error: Into<BoxError>;
    /// The response future.
    type Future: Future<Output = Result<Response<Self::ResponseBody>, Self::Error>> + Send + 'static;

    /// `Service::poll_ready`.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;
    /// `Service::call`.
    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future;
}

impl<S, B> BoshTransport for S
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type ResponseBody = B;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(self, cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        Service::call(self, request)
    }
}
