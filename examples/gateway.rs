//! A reverse proxy that gives any web app (PHP, Django, Rails, a static
//! site...) XMPP pre-binding without a code change: its HTML pages come out
//! with a session injected, and `/prebind` and `/http-bind` work on its origin.
//!
//! ```text
//! scripts/prosody.sh start
//! python3 -m http.server 8000 --directory /tmp/site &
//! cargo run --example gateway -- --upstream http://127.0.0.1:8000
//! curl -s --compressed http://127.0.0.1:3080/      # the page, with a session in it
//! ```
//!
//! ```text
//! client ─► TraceLayer            logs each request and response
//!            └─► TimeoutLayer       504 if no response head within 75 s
//!                 └─► CompressionLayer  gzip when the client accepts it
//!                      └─► PrebindLayer   /prebind, /http-bind ─► XMPP server (BOSH)
//!                           │             HTML pages: session injected as they stream
//!                           └─► upstream   everything else ─► --upstream app
//! ```
//!
//! Compression must stay *outside* the prebind layer. The injector rewrites
//! plain HTML only: on the pages it injects into it removes `Accept-Encoding`,
//! so the app answers in clear, and the gzip layer outside compresses the
//! page *with* its session. Put inside, the gzip layer would never see the
//! client's `Accept-Encoding` on those pages (HTML would go out unzipped),
//! and what it did compress would be gzip bytes the injector must leave
//! alone. The timeout is longer than a held BOSH request (`wait` 59 s plus
//! 5 s), which also crosses the stack on its way to `/http-bind`.
//!
//! The proxy speaks HTTP/1.1 on both sides. It forwards path and query to
//! the upstream's address and keeps the client's `Host` (as nginx does with
//! `proxy_set_header Host $host`), so the app builds redirects and absolute
//! URLs for the public name; it appends the client to `X-Forwarded-For`, sets
//! `X-Forwarded-Proto: http` and `X-Forwarded-Host`, and drops hop-by-hop
//! fields both ways (RFC 9110 §7.6.1), so WebSocket upgrades do not pass. An
//! unreachable upstream is a plain-text 502. The app's own `/prebind` and
//! `/http-bind`, if any, are shadowed. On startup the gateway prints
//! `gateway listening on http://ADDR` (alone on stdout; logs go to stderr);
//! on Ctrl-C or SIGTERM it stops accepting and lets requests finish (10 s).
//!
//! Pages: `GET`s under an `--inject-prefix` that are page loads
//! (`Sec-Fetch-Dest: document` or `iframe` when the client says, else a path
//! not ending in a static-asset extension) and that the app answers with
//! 200 `text/html`. The filter spares the XMPP server a session opened and
//! dropped for each image, stylesheet and script.
//!
//! Flags (each also read from the environment variable in brackets):
//! `--listen ADDR` [`BOSH_PREBIND_LISTEN`, default `127.0.0.1:3080`],
//! `--upstream URL` [`BOSH_PREBIND_UPSTREAM`, required, `http://host:port`],
//! `--bosh-url URL` [`BOSH_PREBIND_BOSH_URL`, default `http://127.0.0.1:5280/http-bind`],
//! `--domain DOMAIN` [`BOSH_PREBIND_DOMAIN`, anonymous sessions, default `anon.localhost`],
//! `--jid JID --password PASSWORD` [`BOSH_PREBIND_JID`, `BOSH_PREBIND_PASSWORD`]: an account instead,
//! `--inject-prefix PREFIX` [`BOSH_PREBIND_INJECT_PREFIX`, comma-separated; repeatable, default `/`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bosh_prebind::{BoxError, Credentials, PrebindLayer};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{compression::CompressionLayer, timeout::TimeoutLayer, trace::TraceLayer};

/// Response body of the gateway.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;
/// The whole stack, type-erased.
pub(crate) type Gateway = BoxCloneService<Request<Incoming>, Response<Body>, Infallible>;

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(75);

/// What the flags say.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) listen: SocketAddr,
    /// `http://host:port/`: only the scheme and authority are used.
    pub(crate) upstream: Uri,
    pub(crate) bosh_url: Uri,
    pub(crate) credentials: Credentials,
    pub(crate) inject_prefixes: Vec<String>,
}

const USAGE: &str = "usage: gateway --upstream URL [--listen ADDR] [--bosh-url URL] [--domain DOMAIN] \
                     [--jid JID --password PASSWORD] [--inject-prefix PREFIX]...";
const FLAGS: [(&str, &str); 7] = [
    ("listen", "BOSH_PREBIND_LISTEN"),
    ("upstream", "BOSH_PREBIND_UPSTREAM"),
    ("bosh-url", "BOSH_PREBIND_BOSH_URL"),
    ("domain", "BOSH_PREBIND_DOMAIN"),
    ("jid", "BOSH_PREBIND_JID"),
    ("password", "BOSH_PREBIND_PASSWORD"),
    ("inject-prefix", "BOSH_PREBIND_INJECT_PREFIX"),
];

/// Parses `args` (without the program name), falling back on `env`. Flags
/// given on the command line replace the environment's value.
pub(crate) fn parse_options(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Options, String> {
    let mut values: HashMap<&str, Vec<String>> = HashMap::new();
    for (flag, var) in FLAGS {
        if let Some(value) = env(var) {
            let value = match flag {
                "inject-prefix" => value.split(',').map(str::to_owned).collect(),
                _ => vec![value],
            };
            values.insert(flag, value);
        }
    }
    let mut from_command_line = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(USAGE.to_owned());
        }
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {arg:?}\n{USAGE}"))?;
        let (name, inline) = match name.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (name, None),
        };
        let (flag, _) = FLAGS
            .into_iter()
            .find(|(flag, _)| *flag == name)
            .ok_or_else(|| format!("unknown flag --{name}\n{USAGE}"))?;
        let value = match inline.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("--{flag} needs a value\n{USAGE}")),
        };
        let list = values.entry(flag).or_default();
        if !from_command_line.contains(&flag) {
            from_command_line.push(flag);
            list.clear();
        }
        list.push(value);
    }
    let get = |flag: &str| values.get(flag).and_then(|v| v.last()).map(String::as_str);

    let listen = get("listen").unwrap_or("127.0.0.1:3080");
    let listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    let upstream = get("upstream").ok_or_else(|| {
        format!("--upstream URL is required (the web app, e.g. http://127.0.0.1:8000)\n{USAGE}")
    })?;
    let upstream = http_url("--upstream", upstream)?;
    if upstream.path() != "/" || upstream.query().is_some() {
        return Err(format!(
            "--upstream {upstream}: give only http://host:port (paths are forwarded as they come)"
        ));
    }
    let bosh_url = http_url(
        "--bosh-url",
        get("bosh-url").unwrap_or("http://127.0.0.1:5280/http-bind"),
    )?;
    let credentials = match (get("jid"), get("password")) {
        (Some(jid), Some(password)) => {
            Credentials::account(jid, password).map_err(|e| format!("--jid: {e}"))?
        }
        (None, None) => match get("domain").unwrap_or("anon.localhost") {
            "" => return Err("--domain: empty".to_owned()),
            domain => Credentials::anonymous(domain),
        },
        _ => return Err(format!("--jid and --password go together\n{USAGE}")),
    };
    let inject_prefixes = values
        .remove("inject-prefix")
        .unwrap_or_else(|| vec!["/".to_owned()]);
    if let Some(bad) = inject_prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("--inject-prefix {bad:?}: must start with '/'"));
    }
    Ok(Options {
        listen,
        upstream,
        bosh_url,
        credentials,
        inject_prefixes,
    })
}

/// An absolute `http://` URL (the built-in clients speak plain HTTP).
fn http_url(flag: &str, url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{flag} {url:?}: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(uri),
        _ => Err(format!("{flag} {url:?}: expected http://host[:port]/...")),
    }
}

/// Builds the service stack; see the picture at the top.
pub(crate) fn gateway(options: &Options) -> Gateway {
    let prefixes = options.inject_prefixes.clone();
    let prebind = PrebindLayer::new(options.bosh_url.clone())
        .credentials(options.credentials.clone())
        .bosh_passthrough("/http-bind")
        .inject_when(move |head| {
            prefixes
                .iter()
                .any(|p| head.uri.path().starts_with(p.as_str()))
                && is_page_load(head)
        });
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    // Keeps a request's own Host: the client only fills it in when missing.
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    let upstream = options.upstream.clone();
    ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            RESPONSE_TIMEOUT,
        ))
        .layer(CompressionLayer::new().no_br().no_deflate().no_zstd())
        // tower-http's timeout needs a `Default` body, which PrebindBody is not.
        .map_response(|response: Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(prebind)
        .service_fn(move |request| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move { Ok::<_, Infallible>(forward(&client, &upstream, request).await) }
        })
        .boxed_clone()
}

/// File extensions of subresources, which never get a session.
const ASSETS: &[&str] = &[
    "css", "js", "mjs", "map", "json", "txt", "xml", "png", "jpg", "jpeg", "gif", "svg", "webp",
    "avif", "ico", "woff", "woff2", "ttf", "otf", "pdf", "zip", "gz", "mp3", "mp4", "webm",
];

/// True for a page load rather than a subresource (see the module docs).
fn is_page_load(head: &http::request::Parts) -> bool {
    if let Some(dest) = head.headers.get("sec-fetch-dest") {
        return matches!(dest.as_bytes(), b"document" | b"iframe" | b"frame");
    }
    let file = head.uri.path().rsplit('/').next().unwrap_or_default();
    file.rsplit_once('.')
        .is_none_or(|(_, extension)| !ASSETS.contains(&extension.to_ascii_lowercase().as_str()))
}

/// The client's address, put in each request's extensions by [`serve`].
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// Forwards one request to the upstream app; 502 when it cannot be reached.
async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &Uri,
    mut request: Request<Incoming>,
) -> Response<Body> {
    if request.method() == Method::CONNECT {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    // The upstream's address, the request's path and query.
    let uri = Uri::builder()
        .scheme("http")
        .authority(upstream.authority().map_or("", |a| a.as_str()))
        .path_and_query(request.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build();
    let Ok(uri) = uri else {
        return plain(StatusCode::BAD_REQUEST, "400 Bad Request\n");
    };
    *request.uri_mut() = uri;
    // Each hop speaks its own version: HTTP/1.1 to the upstream, the
    // client's back to the client (an HTTP/1.0 upstream would otherwise
    // downgrade every answer).
    let version = std::mem::replace(request.version_mut(), Version::HTTP_11);
    let peer = request.extensions().get::<Peer>().map(|peer| peer.0);
    forwarded_headers(request.headers_mut(), peer);
    match client.request(request).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            remove_hop_by_hop(&mut head.headers);
            head.version = version;
            Response::from_parts(head, body.map_err(Into::into).boxed_unsync())
        }
        Err(error) => {
            tracing::warn!(error = ?error, "upstream request failed");
            let text = "502 Bad Gateway: the application server did not answer.\n";
            plain(StatusCode::BAD_GATEWAY, text)
        }
    }
}

/// Rewrites a request's headers for the upstream: hop-by-hop fields out,
/// `Host` kept, `X-Forwarded-For` appended to, `-Proto` and `-Host` set.
fn forwarded_headers(headers: &mut HeaderMap, peer: Option<SocketAddr>) {
    let host = headers.get(header::HOST).cloned();
    remove_hop_by_hop(headers);
    let mut chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let peer = peer.map(|peer| peer.ip().to_string());
    chain.extend(peer.as_deref());
    if let Ok(chain) = HeaderValue::from_str(&chain.join(", ")) {
        headers.insert("x-forwarded-for", chain);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.remove("x-forwarded-host");
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
        headers.insert("x-forwarded-host", host);
    }
}

/// Fields meant for one connection only (RFC 9110 §7.6.1), besides those
/// that `Connection` names.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().map(HeaderName::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let body = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {});
    let mut response = Response::new(body.boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets
/// open connections finish their requests (10 s at most).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()>,
) {
    let gateway = gateway(&options);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, usually: wait, do not spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("closing connections still open"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr) // stdout has only the listening line
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=debug".into()),
        )
        .init();
    let options = match parse_options(std::env::args().skip(1), |var| std::env::var(var).ok()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    let address = listener.local_addr().unwrap_or(options.listen);
    println!("gateway listening on http://{address}");
    tracing::info!(
        upstream = %options.upstream,
        cm = %options.bosh_url,
        credentials = ?options.credentials,
        inject_prefixes = ?options.inject_prefixes,
        "proxying"
    );
    serve(listener, options, shutdown_signal()).await;
    ExitCode::SUCCESS
}
