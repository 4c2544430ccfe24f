//! An axum app with XMPP pre-binding.
//!
//! ```text
//! scripts/demo.sh                       # starts Prosody, then this demo
//! cargo run --example demo -- --bosh-url http://127.0.0.1:5280/http-bind
//! curl -s http://127.0.0.1:3000/prebind
//! curl -s http://127.0.0.1:3000/metrics       # Prometheus text format
//! curl -s -H 'Content-Type: text/xml' -d "<body xmlns='http://jabber.org/protocol/httpbind' rid='1000'/>" \
//!      http://127.0.0.1:3000/prebind
//! ```
//!
//! Flags (each also read from the environment variable in brackets):
//! `--listen ADDR` [`BOSH_PREBIND_LISTEN`, default `127.0.0.1:3000`],
//! `--bosh-url URL` [`BOSH_PREBIND_BOSH_URL`, default `http://127.0.0.1:5280/http-bind`;
//! `https://` works, certificates verified against the public roots; repeat
//! the flag (the variable: comma-separated) for each node of a cluster with no
//! load balancer in front, e.g. `--bosh-url http://127.0.0.1:5381/bosh
//! --bosh-url http://127.0.0.1:5382/bosh` for `scripts/ejabberd-cluster.sh`:
//! logins go round-robin to the nodes that answer and pages attach through
//! `/http-bind/0`, `/http-bind/1`, … to the node that made their session],
//! `--ca-file PEM` [`BOSH_PREBIND_CA_FILE`]: also trust this CA (a CM with a
//! private certificate),
//! `--domain DOMAIN` [`BOSH_PREBIND_DOMAIN`, anonymous domain, default `anon.localhost`],
//! `--jid JID --password PASSWORD` [`BOSH_PREBIND_JID`, `BOSH_PREBIND_PASSWORD`]:
//! log in as this account instead of anonymously,
//! `--static-dir DIR` [`BOSH_PREBIND_STATIC_DIR`]: serve DIR at `/`, injecting a
//! session into its `.html` pages (and directory indexes) instead of the
//! built-in pages,
//! `--strophe PATH` [`BOSH_PREBIND_STROPHE`, default the npm package's
//! `browser/node_modules/strophe.js/dist/strophe.umd.min.js`, installed by
//! `npm ci --prefix browser`]: the Strophe.js the built-in pages load,
//! `--converse DIR` [`BOSH_PREBIND_CONVERSE`, default the npm package's
//! `browser/node_modules/converse.js/dist`]: the Converse.js 14 `dist`
//! directory `/converse.html` loads (served at `/vendor/converse/`).
//! `--pool N` [`BOSH_PREBIND_POOL`, default 0: none]: keep up to N sessions
//! bound ahead of demand (the warm pool, README); Ctrl-C terminates them.
//! `--reuse-cookie NAME` [`BOSH_PREBIND_REUSE_COOKIE`, default `xmpp-prebind-live`;
//! empty: off]: session reuse across page views (README "Sessions across page
//! views"): `/` keeps its session in sessionStorage and sets this cookie when
//! the tab navigates, and the next page gets no new session but re-attaches.
//!
//! Observability: `RUST_LOG=bosh_prebind=trace` shows the `prebind` span and
//! each BOSH step; `/metrics` serves the layer's counters and handshake
//! durations (feature `metrics`, on for examples) in the Prometheus format,
//! and each outcome is logged at INFO through `PrebindLayer::on_outcome`.
//!
//! Built-in pages (`examples/demo/`): `/` gets a session injected and attaches
//! Strophe.js to it (zero round trips); `/classic.html` is not injected and
//! POSTs to `/prebind` first (one round trip). Both send an XEP-0199 ping in
//! their first request and show the result; a failed pre-bind falls back to a
//! normal anonymous login on `--domain`. `/converse.html` gets a session
//! injected and hands it to Converse.js 14 (`converse-prebind.js`: a `blob:`
//! `prebind_url`, zero round trips). Browsers reach the CM through
//! `/http-bind` on this origin. `GET /stats` answers `{"handshakes":N}`: the
//! sessions this demo's requests created at the CM (session creation requests
//! sent, whatever sent them: a page, `/prebind`, the warm pool, or a browser's
//! own login through `/http-bind`), for the browser tests.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use axum::serve::ListenerExt;
use bosh_prebind::transport::HttpTransportBuilder;
use bosh_prebind::{Credentials, Outcome, PrebindLayer};
use bytes::Bytes;
use http::header;
use http_body::Body;
use http_body_util::Full;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

#[derive(Debug)]
struct Options {
    listen: SocketAddr,
    /// One, or the nodes of a cluster.
    bosh_urls: Vec<bosh_prebind::BoshUrl>,
    ca_file: Option<std::path::PathBuf>,
    credentials: Credentials,
    /// The domain sessions are opened on (the account's, or the anonymous one).
    session_domain: String,
    /// The anonymous domain (`--domain`), for the pages' fallback login.
    anonymous_domain: String,
    static_dir: Option<std::path::PathBuf>,
    strophe: std::path::PathBuf,
    converse: std::path::PathBuf,
    pool: usize,
    /// The reuse cookie (`PrebindLayer::reuse_cookie`), `None`: off.
    reuse_cookie: Option<String>,
}

const USAGE: &str = "usage: demo [--listen ADDR] [--bosh-url URL]... [--ca-file PEM] [--domain DOMAIN] [--jid JID --password PASSWORD] [--static-dir DIR] [--strophe PATH] [--converse DIR] [--pool N] [--reuse-cookie NAME]";
const FLAGS: [&str; 11] = [
    "listen",
    "bosh-url",
    "ca-file",
    "domain",
    "jid",
    "password",
    "static-dir",
    "strophe",
    "converse",
    "pool",
    "reuse-cookie",
];
/// The Strophe.js of the npm package `browser/` installs.
const DEFAULT_STROPHE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/browser/node_modules/strophe.js/dist/strophe.umd.min.js"
);
/// The Converse.js `dist` directory of the npm package `browser/` installs.
const DEFAULT_CONVERSE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/browser/node_modules/converse.js/dist"
);

fn options() -> Result<Options, String> {
    let mut values = std::collections::HashMap::new();
    for (flag, var) in [
        ("listen", "BOSH_PREBIND_LISTEN"),
        ("bosh-url", "BOSH_PREBIND_BOSH_URL"),
        ("ca-file", "BOSH_PREBIND_CA_FILE"),
        ("domain", "BOSH_PREBIND_DOMAIN"),
        ("jid", "BOSH_PREBIND_JID"),
        ("password", "BOSH_PREBIND_PASSWORD"),
        ("static-dir", "BOSH_PREBIND_STATIC_DIR"),
        ("strophe", "BOSH_PREBIND_STROPHE"),
        ("converse", "BOSH_PREBIND_CONVERSE"),
        ("pool", "BOSH_PREBIND_POOL"),
        ("reuse-cookie", "BOSH_PREBIND_REUSE_COOKIE"),
    ] {
        if let Ok(value) = std::env::var(var) {
            values.insert(flag.to_owned(), value);
        }
    }
    // Repeatable: the flags, if any, replace the variable's list.
    let mut bosh_urls: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(USAGE.to_owned());
        }
        let (flag, value) = match arg.strip_prefix("--").and_then(|a| a.split_once('=')) {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None => {
                let flag = arg
                    .strip_prefix("--")
                    .ok_or_else(|| format!("unexpected argument {arg:?}\n{USAGE}"))?;
                let value = args
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value\n{USAGE}"))?;
                (flag.to_owned(), value)
            }
        };
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown flag --{flag}\n{USAGE}"));
        }
        if flag == "bosh-url" {
            bosh_urls.push(value);
            continue;
        }
        values.insert(flag, value);
    }
    let get = |flag: &str, default: &str| {
        values
            .get(flag)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let listen = get("listen", "127.0.0.1:3000")
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    if bosh_urls.is_empty() {
        bosh_urls = get("bosh-url", "http://127.0.0.1:5280/http-bind")
            .split(',')
            .map(str::to_owned)
            .collect();
    }
    let bosh_urls = bosh_urls
        .iter()
        .map(|url| url.parse().map_err(|e| format!("--bosh-url {url:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let anonymous_domain = get("domain", "anon.localhost");
    let (credentials, session_domain) = match (values.get("jid"), values.get("password")) {
        (Some(jid), Some(password)) => {
            let credentials =
                Credentials::account(jid, password).map_err(|e| format!("--jid: {e}"))?;
            // Checked by `Credentials::account`: `local@domain[/resource]`.
            let domain = jid.split_once('@').map_or(jid.as_str(), |(_, rest)| rest);
            let domain = domain.split_once('/').map_or(domain, |(domain, _)| domain);
            (credentials, domain.to_owned())
        }
        (None, None) => (
            Credentials::anonymous(&anonymous_domain),
            anonymous_domain.clone(),
        ),
        _ => return Err(format!("--jid and --password go together\n{USAGE}")),
    };
    let static_dir = values.get("static-dir").map(std::path::PathBuf::from);
    if let Some(dir) = &static_dir {
        if !dir.is_dir() {
            return Err(format!(
                "--static-dir: {} is not a directory",
                dir.display()
            ));
        }
    }
    let strophe = std::path::PathBuf::from(get("strophe", DEFAULT_STROPHE));
    let converse = std::path::PathBuf::from(get("converse", DEFAULT_CONVERSE));
    let pool = get("pool", "0")
        .parse()
        .map_err(|e| format!("--pool: {e}"))?;
    let reuse_cookie =
        Some(get("reuse-cookie", "xmpp-prebind-live")).filter(|name| !name.is_empty());
    if let Some(name) = &reuse_cookie {
        // RFC 6265 §4.1.1: a token; the page writes it into document.cookie.
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "--reuse-cookie: {name:?} is not a plain cookie name"
            ));
        }
    }
    Ok(Options {
        listen,
        bosh_urls,
        ca_file: values.get("ca-file").map(std::path::PathBuf::from),
        credentials,
        session_domain,
        anonymous_domain,
        static_dir,
        strophe,
        converse,
        pool,
        reuse_cookie,
    })
}

const INDEX_PAGE: &str = include_str!("demo/index.html");
const CLASSIC_PAGE: &str = include_str!("demo/classic.html");
const CONVERSE_PAGE: &str = include_str!("demo/converse.html");
const CONVERSE_SCRIPT: &str = include_str!("demo/converse-prebind.js");
const SCRIPT: &str = include_str!("demo/demo.js");
const STYLE: &str = include_str!("demo/demo.css");

/// The pages name their XMPP domains in `<meta>` tags whose defaults (kept by a
/// plain copy of the files) suit the test server; fill in this demo's.
fn page(template: &str, options: &Options) -> String {
    let page = fill_meta(
        template,
        &[
            ("xmpp-domain", &options.session_domain),
            ("xmpp-anonymous-domain", &options.anonymous_domain),
        ],
    );
    reuse_meta(page, options)
}

/// The Converse page names the JID it is for, from the same credentials as
/// the injected session: an account's bare JID, else the anonymous domain.
fn converse_page(options: &Options) -> String {
    let jid = options
        .credentials
        .bare_jid()
        .unwrap_or_else(|| options.credentials.domain().to_owned());
    reuse_meta(fill_meta(CONVERSE_PAGE, &[("xmpp-jid", &jid)]), options)
}

/// The reuse cookie's name in the pages that have its `<meta>`, the same as
/// the layer's (empty: reuse off, the page's script sets no cookie).
fn reuse_meta(page: String, options: &Options) -> String {
    let default = r#"<meta name="xmpp-reuse-cookie" content="xmpp-prebind-live">"#;
    let name = options.reuse_cookie.as_deref().unwrap_or_default();
    page.replace(
        default,
        &format!(r#"<meta name="xmpp-reuse-cookie" content="{name}">"#),
    )
}

fn fill_meta(template: &str, metas: &[(&str, &String)]) -> String {
    let mut page = template.to_owned();
    for &(name, domain) in metas {
        let default = format!(r#"<meta name="{name}" content="anon.localhost">"#);
        assert!(
            page.contains(&default),
            "the demo pages must keep {default}"
        );
        let escaped = domain
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;");
        page = page.replace(
            &default,
            &format!(r#"<meta name="{name}" content="{escaped}">"#),
        );
    }
    page
}

/// The demo's transport, counting the session creation requests (a `<body/>`
/// without `sid`, XEP-0124 §7.1) it sends to the CM, for `GET /stats`: every
/// session this demo made, whoever asked for it.
#[derive(Clone)]
struct CountSessions<T> {
    inner: T,
    created: Arc<AtomicU64>,
}

impl<T> tower::Service<http::Request<Full<Bytes>>> for CountSessions<T>
where
    T: tower::Service<http::Request<Full<Bytes>>>,
{
    type Response = T::Response;
    type Error = T::Error;
    type Future = T::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Full<Bytes>>) -> Self::Future {
        let (parts, mut body) = request.into_parts();
        // A `Full` body is ready at once.
        let bytes = match Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        };
        let text = String::from_utf8_lossy(&bytes);
        if text.trim_start().starts_with("<body") && !text.contains("sid=") {
            self.created.fetch_add(1, Ordering::Relaxed);
        }
        self.inner
            .call(http::Request::from_parts(parts, Full::new(bytes)))
    }
}

fn stats_body(handshakes: u64) -> std::collections::BTreeMap<&'static str, u64> {
    std::collections::BTreeMap::from([("handshakes", handshakes)])
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,bosh_prebind=debug".into()),
        )
        // The `prebind` span's fields (outcome, round trips, …) when it closes.
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };

    // The layer's metrics (feature `metrics`), rendered at /metrics.
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .and_then(|builder| builder.install_recorder())
    {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("metrics recorder: {error}");
            return ExitCode::FAILURE;
        }
    };

    // Browsers attach at /http-bind on this origin: no CORS set-up needed.
    let mut transport = HttpTransportBuilder::new();
    if let Some(ca_file) = &options.ca_file {
        transport = match transport.ca_file(ca_file) {
            Ok(transport) => transport,
            Err(error) => {
                eprintln!("--ca-file: {error}");
                return ExitCode::from(2);
            }
        };
    }
    let handshakes = Arc::new(AtomicU64::new(0));
    let transport = CountSessions {
        inner: transport.build(),
        created: handshakes.clone(),
    };
    // With several nodes, each session attaches at /http-bind/{node}.
    let prebind =
        match PrebindLayer::cluster_with_transport(options.bosh_urls.iter().cloned(), transport) {
            Ok(prebind) => prebind,
            Err(error) => {
                eprintln!("--bosh-url: {error}");
                return ExitCode::from(2);
            }
        };
    let mut prebind = prebind
        .bosh_passthrough("/http-bind")
        .on_outcome(|outcome: &Outcome<'_>| match outcome.result {
            Ok(session) => tracing::info!(
                path = outcome.path.as_str(),
                jid = %session.jid,
                mechanism = session.mechanism,
                round_trips = session.round_trips,
                elapsed_ms = outcome.elapsed.as_secs_f64() * 1e3,
                "prebind outcome"
            ),
            Err(error) => tracing::info!(
                path = outcome.path.as_str(),
                condition = error.condition(),
                status = error.status().as_u16(),
                elapsed_ms = outcome.elapsed.as_secs_f64() * 1e3,
                "prebind outcome"
            ),
        });
    if let Some(name) = &options.reuse_cookie {
        prebind = prebind.reuse_cookie(name);
    }
    let prebind = prebind.credentials(options.credentials.clone());
    let prebind = if options.pool > 0 {
        prebind.pool(options.pool)
    } else {
        prebind
    };
    let stats = get(move || async move {
        (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(stats_body(handshakes.load(Ordering::Relaxed))),
        )
    });
    let pool = prebind.pool_handle();
    let app = match &options.static_dir {
        // Pages of the directory, and its indexes, get a session.
        Some(dir) => Router::new()
            .route("/stats", stats)
            .fallback_service(ServeDir::new(dir))
            .layer(prebind.inject_when(|head| {
                let path = head.uri.path();
                path.ends_with(".html") || path.ends_with(".htm") || path.ends_with('/')
            })),
        // `/` gets a session, `/classic.html` asks for one with POST /prebind.
        None => {
            if !options.strophe.is_file() {
                tracing::warn!(
                    "Strophe.js not found at {}: run `npm ci --prefix browser` (or pass --strophe PATH); \
                     the pages say so until then",
                    options.strophe.display()
                );
            }
            if !options.converse.join("converse.min.js").is_file() {
                tracing::warn!(
                    "Converse.js not found in {}: run `npm ci --prefix browser` (or pass --converse DIR); \
                     /converse.html stays empty until then",
                    options.converse.display()
                );
            }
            let index = page(INDEX_PAGE, &options);
            let classic = page(CLASSIC_PAGE, &options);
            let converse = converse_page(&options);
            Router::new()
                .route("/stats", stats)
                .route("/", get(|| async { Html(index) }))
                .route("/classic.html", get(|| async { Html(classic) }))
                .route("/converse.html", get(|| async { Html(converse) }))
                .route(
                    "/converse-prebind.js",
                    get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CONVERSE_SCRIPT) }),
                )
                .nest_service("/vendor/converse", ServeDir::new(&options.converse))
                .route(
                    "/demo.js",
                    get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }),
                )
                .route(
                    "/demo.css",
                    get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
                )
                // Read at each request: installing it needs no restart.
                .route_service("/vendor/strophe.js", ServeFile::new(&options.strophe))
                .layer(prebind.inject_path("/").inject_path("/converse.html"))
        }
    }
    .route("/metrics", get(move || std::future::ready(metrics.render())))
    .layer(TraceLayer::new_for_http());

    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    // The bound address, so that `--listen 127.0.0.1:0` tells its port.
    let address = listener.local_addr().unwrap_or(options.listen);
    tracing::info!(
        "demo on http://{} (CM {}, logging in as {:?})",
        address,
        options
            .bosh_urls
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        options.credentials
    );
    // An injected page goes out in several writes: don't let Nagle hold the
    // tail until the first part is acknowledged.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // Pooled sessions are ended at the CM, not left to expire there.
    let stats = pool.stats();
    if tokio::time::timeout(std::time::Duration::from_secs(10), pool.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the warm pool's sessions were not all terminated in 10 s");
    }
    tracing::info!(?stats, "warm pool at shutdown");
    if let Err(error) = served {
        eprintln!("server error: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
