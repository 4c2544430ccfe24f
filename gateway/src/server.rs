//! The service stack and the accept loop.

use std::convert::Infallible;
use std::future::Future;

use bosh_prebind::{BoxError, PoolHandle};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{compression::CompressionLayer, timeout::TimeoutLayer, trace::TraceLayer};

use crate::cli::Config;
use crate::proxy::{Peer, forward, is_page_load, plain};

/// Response body of the gateway.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;
/// The whole stack, type-erased.
pub(crate) type Gateway = BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

/// Builds the service stack (see the picture in the crate docs), and the
/// handle of its warm pool.
pub(crate) fn gateway(config: &Config) -> (Gateway, PoolHandle) {
    let prefixes = config.inject_prefixes.clone();
    let prebind = config
        .prebind
        .clone()
        .credentials(config.credentials.clone())
        .prebind_path(config.prebind_path.clone())
        .bosh_passthrough(config.bosh_path.clone())
        .request_timeout(config.request_timeout)
        .handshake_timeout(config.handshake_timeout)
        .max_concurrent_handshakes(config.max_handshakes)
        .pool(config.pool)
        .inject_when(move |head| {
            prefixes
                .iter()
                .any(|p| head.uri.path().starts_with(p.as_str()))
                && is_page_load(head)
        });
    let prebind = match &config.reuse_cookie {
        Some(name) => prebind.reuse_cookie(name),
        None => prebind,
    };
    let pool = prebind.pool_handle();
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.upstream_connect_timeout));
    connector.set_nodelay(true);
    // Keeps a request's own Host: the client only fills it in when missing.
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    let upstream = config.upstream.clone();
    let stack = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.response_timeout,
        ))
        .layer(CompressionLayer::new().no_br().no_deflate().no_zstd())
        // tower-http's timeout needs a `Default` body, which PrebindBody is not.
        .map_response(|response: Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(prebind)
        .service_fn(move |request| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move { Ok::<_, Infallible>(forward(&client, &upstream, request).await) }
        })
        .boxed_clone();
    // The health path is answered here, before anything else: no log line
    // per probe, no session, no upstream request.
    let health_path = config.health_path.clone();
    let gateway = BoxCloneService::new(tower::service_fn(move |request: Request<Incoming>| {
        let health = (request.uri().path() == health_path).then(|| request.method().clone());
        let stack = stack.clone();
        async move {
            match health {
                Some(Method::GET | Method::HEAD) => Ok(plain(StatusCode::OK, "ok\n")),
                Some(_) => {
                    let mut response =
                        plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
                    response
                        .headers_mut()
                        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                    Ok(response)
                }
                None => stack.oneshot(request).await,
            }
        }
    }));
    (gateway, pool)
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// open connections finish their requests (`config.shutdown_timeout` at most).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) {
    let (gateway, pool) = gateway(config);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, usually: wait, do not spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // An injected page goes out in several writes: don't let Nagle hold
        // the tail until the first part is acknowledged.
        let _ = stream.set_nodelay(true);
        let service = gateway
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                request
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new()) // enables the 30 s header read timeout
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace = ?config.shutdown_timeout,
        "shutting down: no new connections, open requests may finish"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_timeout) => tracing::warn!("closing connections still open"),
    }
    // Pooled sessions are ended at the XMPP server (XEP-0124 §12), not left
    // idle there until they expire.
    let stats = pool.stats();
    match tokio::time::timeout(config.shutdown_timeout, pool.shutdown()).await {
        Ok(()) => tracing::info!(?stats, "warm pool terminated"),
        Err(_) => tracing::warn!(?stats, "warm pool sessions not all terminated in time"),
    }
}
