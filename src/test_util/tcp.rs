//! Serving the fake over real TCP (HTTP/1.1), for tests of transports and
//! of servers that talk to the CM themselves.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::body::ChunkedBody;
use super::fake_cm::FakeCm;

// A concrete error type: hyper's bound on a boxed one trips a compiler
// limitation (higher-ranked lifetimes) inside `tokio::spawn`.
type TcpAnswer =
    Pin<Box<dyn Future<Output = Result<Response<ChunkedBody>, std::io::Error>> + Send>>;

impl FakeCm {
    fn over_tcp(self, request: Request<Incoming>) -> TcpAnswer {
        Box::pin(async move {
            let guard = self.in_flight_guard();
            let (parts, body) = request.into_parts();
            let body: Bytes = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            self.handle(Request::from_parts(parts, body), true, guard)
                .await
                .map_err(std::io::Error::other)
        })
    }

    /// Serves this fake over HTTP/1.1 on `listener`, one task per
    /// connection, until the future is dropped. Only the path of the
    /// configured URL is checked. [`Fault::Refused`](super::Fault::Refused)
    /// closes the connection without an answer.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<Infallible> {
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let cm = self.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| cm.clone().over_tcp(request));
                // A refused or broken connection ends here; that is the point.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Binds a free port on 127.0.0.1, serves this fake there on a spawned
    /// task, and returns the URL to send to (the configured path).
    pub async fn spawn_tcp(&self) -> std::io::Result<Uri> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        tokio::spawn(self.clone().serve(listener));
        let url = format!("http://{address}{}", self.url().path());
        Ok(url.parse().expect("a valid URL"))
    }
}
