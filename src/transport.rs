//! The transport: any tower `Service` that POSTs a `<body/>` to the
//! connection manager, and the default one, a pooled hyper-util client
//! (feature `client`) tuned for small request/response exchanges.

use std::future::Future;
use std::task::{Context, Poll};
#[cfg(feature = "client")]
use std::time::Duration;

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

/// The default transport: hyper-util's pooled HTTP/1.1 client over plain TCP.
#[cfg(feature = "client")]
pub type HttpTransport = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// Builds the default transport: keep-alive pool, `TCP_NODELAY` (every
/// handshake step is a small request waiting for a small answer), 5 s
/// connect timeout.
#[cfg(feature = "client")]
pub fn http_transport() -> HttpTransport {
    use hyper_util::client::legacy::{Client, connect::HttpConnector};
    use hyper_util::rt::TokioExecutor;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}
