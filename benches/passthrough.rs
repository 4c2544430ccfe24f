//! Pass-through overhead (docs/design.md §5: within noise of no layer): a request
//! the layer does not handle, through the inner service alone and through
//! the layer, with no routes and with routes and a predicate configured.
//! Zero extra allocations is asserted by `tests/passthrough_allocations.rs`.
//!
//! ```text
//! cargo bench --bench passthrough
//! ```

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use bosh_prebind::{Credentials, PrebindLayer};
use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::hint::black_box;
use tower::{Layer, Service, ServiceExt, service_fn};

fn app()
-> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    })
}

fn run<S, B>(runtime: &tokio::runtime::Runtime, service: &S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes, Error: std::fmt::Debug>,
{
    runtime.block_on(async {
        let request = Request::get("/assets/app.css")
            .body(Full::default())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        black_box(response.into_body().collect().await.unwrap());
    });
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url: bosh_prebind::BoshUrl = "http://127.0.0.1:5280/http-bind".parse().unwrap();
    let mut group = c.benchmark_group("passthrough");
    let inner = app();
    group.bench_function("no_layer", |b| b.iter(|| run(&runtime, &inner)));
    let plain = PrebindLayer::new(url.clone())
        .credentials(Credentials::anonymous("anon.localhost"))
        .layer(app());
    group.bench_function("layer", |b| b.iter(|| run(&runtime, &plain)));
    let routed = PrebindLayer::new(url)
        .credentials(Credentials::anonymous("anon.localhost"))
        .inject_path("/")
        .inject_prefix("/chat/")
        .inject_when(|head| head.uri.query() == Some("chat"))
        .bosh_passthrough("/http-bind")
        .layer(app());
    group.bench_function("layer_with_routes", |b| b.iter(|| run(&runtime, &routed)));
    group.finish();
}

criterion::criterion_group! {
    name = passthrough;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion::criterion_main!(passthrough);
