//! The pass-through hot path (docs/design.md §5): a request the layer does not
//! handle costs no allocation beyond what the inner service makes. Counted
//! per thread by `allocation-counter`, so other tests cannot interfere.

use std::convert::Infallible;

use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

fn app()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    })
}

fn request(path: &'static str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from_static(b"")));
    *request.uri_mut() = http::Uri::from_static(path);
    request
}

/// Allocations made by one request through `service`, body included.
fn allocations<S, B>(runtime: &tokio::runtime::Runtime, service: S, path: &'static str) -> u64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes, Error: std::fmt::Debug>,
{
    let request = request(path);
    let info = allocation_counter::measure(|| {
        runtime.block_on(async {
            let response = service.oneshot(request).await.unwrap();
            let mut body = std::pin::pin!(response.into_body());
            while let Some(frame) = body.frame().await {
                std::hint::black_box(frame.unwrap());
            }
        });
    });
    info.count_total
}

#[test]
fn requests_the_layer_does_not_handle_allocate_nothing_extra() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url: bosh_prebind::BoshUrl = "http://127.0.0.1:5280/http-bind".parse().unwrap();
    // Warm up lazily initialized statics (tracing callsites, runtime).
    allocations(&runtime, app(), "/");

    let baseline = allocations(&runtime, app(), "/page");
    let plain = PrebindLayer::new(url.clone())
        .credentials(Credentials::anonymous("anon.localhost"))
        .layer(app());
    allocations(&runtime, plain.clone(), "/page");
    assert_eq!(
        allocations(&runtime, plain, "/page"),
        baseline,
        "no routes configured"
    );

    let with_routes = PrebindLayer::new(url)
        .credentials(Credentials::anonymous("anon.localhost"))
        .inject_path("/")
        .inject_prefix("/chat/")
        .inject_when(|head| head.uri.query() == Some("chat"))
        .bosh_passthrough("/http-bind")
        .layer(app());
    allocations(&runtime, with_routes.clone(), "/page");
    assert_eq!(
        allocations(&runtime, with_routes, "/page"),
        baseline,
        "routes and a predicate configured, none matching"
    );

    // Several nodes, each with its own pass-through path: still nothing.
    let cluster = PrebindLayer::new_cluster([
        "http://127.0.0.1:5381/bosh"
            .parse::<bosh_prebind::BoshUrl>()
            .unwrap(),
        "http://127.0.0.1:5382/bosh".parse().unwrap(),
    ])
    .unwrap()
    .credentials(Credentials::anonymous("anon.localhost"))
    .inject_prefix("/chat/")
    .bosh_passthrough("/http-bind")
    .layer(app());
    allocations(&runtime, cluster.clone(), "/http-bind-not/1");
    assert_eq!(
        allocations(&runtime, cluster, "/http-bind-not/1"),
        baseline,
        "a cluster with per-node pass-through paths, none matching"
    );

    // The counter does see the layer's own work: a request it answers
    // (here 401, no network involved) allocates.
    let answering = PrebindLayer::new("http://127.0.0.1:5280/http-bind".parse().unwrap())
        .credentials_from_extensions()
        .layer(app());
    assert!(allocations(&runtime, answering, "/prebind") > baseline);
}
