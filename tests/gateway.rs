//! The reverse-proxy gateway (`examples/gateway.rs`, included below so the
//! real stack is exercised) over real HTTP: a tiny upstream app, the gateway
//! in front of it, a hyper client talking to the gateway.
//!
//! The session test needs the real Prosody (`BOSH_PREBIND_TEST_BOSH_URL`, set
//! by `scripts/test.sh`): skipped locally without it, failing under `CI=true`.
//! The others use a counting fake CM that refuses every request.
#![cfg(feature = "client")]

mod common;

#[allow(dead_code)] // `main` and what only it uses
#[path = "../examples/gateway.rs"]
mod gateway;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use bosh_prebind::bosh::{BoshResponse, IqType};
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header, response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use common::{json_field, prosody};

const PAGE: &str =
    "<!doctype html><html><head><title>app</title></head><body><h1>Upstream app</h1></body></html>";
const ROBOTS: &str = "User-agent: *\nDisallow: /private/\n";
const SNIPPET: &str = "<script type=\"application/json\" id=\"xmpp-prebind\">";

async fn spawn(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// The app behind the gateway: an HTML page with `Content-Length` and
/// `ETag`, a text file, and `/echo`, which answers the request head it got
/// (and hop-by-hop fields of its own that must not reach the client).
async fn upstream() -> SocketAddr {
    let router = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                        (header::CONTENT_LENGTH, PAGE.len().to_string()),
                        (header::ETAG, "\"page-v1\"".to_owned()),
                    ],
                    PAGE,
                )
            }),
        )
        .route(
            "/robots.txt",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/plain"),
                        (header::ETAG, "\"robots-v1\""),
                    ],
                    ROBOTS,
                )
            }),
        )
        .route(
            "/echo",
            get(|uri: Uri, headers: HeaderMap| async move {
                let mut text = format!("uri: {uri}\n");
                for (name, value) in &headers {
                    text += &format!("{name}: {}\n", value.to_str().unwrap());
                }
                (
                    [
                        (header::CONNECTION, "x-upstream-hop"),
                        (http::HeaderName::from_static("x-upstream-hop"), "1"),
                        (http::HeaderName::from_static("keep-alive"), "timeout=5"),
                    ],
                    text,
                )
            }),
        );
    spawn(router).await
}

/// A CM that refuses everything and counts the requests it got.
async fn refusing_cm() -> (Uri, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let router = Router::new().route(
        "/http-bind",
        post(move || async move {
            seen.fetch_add(1, Ordering::SeqCst);
            StatusCode::SERVICE_UNAVAILABLE
        }),
    );
    let address = spawn(router).await;
    (
        format!("http://{address}/http-bind").parse().unwrap(),
        count,
    )
}

/// Starts the gateway as its command line would configure it.
async fn start_gateway(args: &[&str]) -> SocketAddr {
    let args = args.iter().map(|a| (*a).to_owned());
    let options = gateway::parse_options(args, |_| None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(gateway::serve(listener, options, std::future::pending()));
    address
}

/// Sends a request to the gateway; returns the head and the whole body.
async fn send(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (response::Parts, Bytes) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(15), client.request(request))
            .await
            .expect("the gateway answers within 15 s")
            .unwrap();
    let (head, body) = response.into_parts();
    (head, body.collect().await.unwrap().to_bytes())
}

fn gunzip(bytes: &[u8]) -> String {
    let mut page = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut page)
        .expect("a gzip body");
    page
}

/// The JSON of the injected snippet.
fn snippet(page: &str) -> &str {
    let start = page
        .find(SNIPPET)
        .unwrap_or_else(|| panic!("no snippet in {page}"))
        + SNIPPET.len();
    &page[start..start + page[start..].find("</script>").unwrap()]
}

#[tokio::test]
async fn a_page_gets_a_gzipped_session_that_attaches_through_the_gateway() {
    let Some(cm) = prosody() else { return };
    let app = upstream().await;
    let gateway = start_gateway(&[
        "--upstream",
        &format!("http://{app}"),
        "--bosh-url",
        &cm.to_string(),
        "--domain",
        "anon.localhost",
    ])
    .await;

    let (head, body) = send(
        gateway,
        "GET",
        "/",
        &[("accept-encoding", "gzip"), ("accept", "text/html")],
        "",
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers[header::CONTENT_ENCODING],
        "gzip",
        "compressed after the injection"
    );
    assert_eq!(head.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        !head.headers.contains_key(header::ETAG),
        "{:?}",
        head.headers
    );
    assert_ne!(
        head.headers
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap()),
        Some(PAGE.len().to_string().as_str()),
        "the upstream's Content-Length must not survive the injection"
    );
    let page = gunzip(&body);
    assert!(
        page.ends_with("</script></head><body><h1>Upstream app</h1></body></html>"),
        "{page}"
    );
    let json = snippet(&page);
    assert!(
        json_field(json, "jid").contains("@anon.localhost/"),
        "{json}"
    );
    assert_eq!(json_field(json, "bosh_service_url"), "/http-bind");

    // Attach like the page would: same origin, the injected (next) rid.
    let rid: u64 = json_field(json, "rid").parse().unwrap();
    let ping = format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{}'>\
         <iq xmlns='jabber:client' type='get' id='ping_attach' to='anon.localhost'>\
         <ping xmlns='urn:xmpp:ping'/></iq></body>",
        json_field(json, "sid")
    );
    let (head, body) = send(
        gateway,
        "POST",
        "/http-bind",
        &[("content-type", "text/xml; charset=utf-8")],
        &ping,
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    let answer = BoshResponse::parse(&body).unwrap();
    assert!(
        answer
            .iqs
            .iter()
            .any(|iq| iq.id.as_deref() == Some("ping_attach") && iq.kind == IqType::Result),
        "ping not answered: {answer:?}"
    );

    // Without gzip: the same page in clear, with a session of its own.
    let (head, body) = send(gateway, "GET", "/", &[], "").await;
    assert!(!head.headers.contains_key(header::CONTENT_ENCODING));
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert_ne!(json_field(snippet(&page), "sid"), json_field(json, "sid"));
}

#[tokio::test]
async fn non_pages_pass_through_unchanged_without_asking_the_cm() {
    let app = upstream().await;
    let (cm, cm_requests) = refusing_cm().await;
    let gateway = start_gateway(&[
        "--upstream",
        &format!("http://{app}"),
        "--bosh-url",
        &cm.to_string(),
    ])
    .await;

    let (head, body) = send(gateway, "GET", "/robots.txt", &[], "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, ROBOTS.as_bytes());
    assert_eq!(head.headers[header::CONTENT_TYPE], "text/plain");
    assert_eq!(head.headers[header::ETAG], "\"robots-v1\"");
    assert_eq!(
        head.headers[header::CONTENT_LENGTH],
        ROBOTS.len().to_string().as_str()
    );
    assert!(!head.headers.contains_key(header::CACHE_CONTROL));
    // A browser's subresource request, whatever its path looks like.
    let (head, body) = send(gateway, "GET", "/", &[("sec-fetch-dest", "script")], "").await;
    assert_eq!(head.headers[header::ETAG], "\"page-v1\"");
    assert_eq!(body, PAGE.as_bytes());
    assert_eq!(
        cm_requests.load(Ordering::SeqCst),
        0,
        "no session opened for non-pages"
    );
}

#[tokio::test]
async fn a_page_is_still_served_when_the_cm_refuses() {
    let app = upstream().await;
    let (cm, cm_requests) = refusing_cm().await;
    let gateway = start_gateway(&[
        "--upstream",
        &format!("http://{app}"),
        "--bosh-url",
        &cm.to_string(),
    ])
    .await;
    let (head, body) = send(
        gateway,
        "GET",
        "/",
        &[("sec-fetch-dest", "document"), ("accept-encoding", "gzip")],
        "",
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    let page = gunzip(&body);
    let json = snippet(&page);
    assert!(json.contains("\"error\""), "{json}");
    assert!(page.contains("<h1>Upstream app</h1>"), "{page}");
    assert_eq!(cm_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn requests_are_forwarded_with_proxy_headers_and_without_hop_by_hop_fields() {
    let app = upstream().await;
    let (cm, _) = refusing_cm().await;
    let gateway = start_gateway(&[
        "--upstream",
        &format!("http://{app}"),
        "--bosh-url",
        &cm.to_string(),
    ])
    .await;
    let (head, body) = send(
        gateway,
        "GET",
        "/echo?a=1&b=%20",
        &[
            ("connection", "x-client-hop"),
            ("x-client-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ],
        "",
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    let seen = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert!(
        lines.contains(&"uri: /echo?a=1&b=%20"),
        "path and query kept: {seen}"
    );
    assert!(
        lines.contains(&format!("host: {gateway}").as_str()),
        "the client's Host kept: {seen}"
    );
    assert!(
        lines.contains(&format!("x-forwarded-host: {gateway}").as_str()),
        "{seen}"
    );
    assert!(
        lines.contains(&"x-forwarded-for: 203.0.113.7, 127.0.0.1"),
        "{seen}"
    );
    assert!(lines.contains(&"x-forwarded-proto: http"), "{seen}");
    assert!(
        !seen.contains("x-client-hop") && !seen.contains("keep-alive"),
        "hop-by-hop forwarded: {seen}"
    );
    assert!(
        !head.headers.contains_key("x-upstream-hop"),
        "{:?}",
        head.headers
    );
    assert!(
        !head.headers.contains_key("keep-alive"),
        "{:?}",
        head.headers
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (cm, _) = refusing_cm().await;
    let gateway = start_gateway(&[
        "--upstream",
        &format!("http://{closed}"),
        "--bosh-url",
        &cm.to_string(),
    ])
    .await;
    for path in ["/", "/robots.txt"] {
        let (head, body) = send(gateway, "GET", path, &[], "").await;
        assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{path}");
        assert_eq!(
            head.headers[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with("502 Bad Gateway"), "{text}");
        assert!(
            !text.contains(&closed.to_string()),
            "the upstream's address is not shown: {text}"
        );
    }
}

#[test]
fn command_line() {
    let parse = |args: &[&str], env: &[(&str, &str)]| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        gateway::parse_options(args.iter().map(|a| (*a).to_owned()), move |var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })
    };
    let options = parse(&["--upstream", "http://127.0.0.1:8000"], &[]).unwrap();
    assert_eq!(options.listen, "127.0.0.1:3080".parse().unwrap());
    assert_eq!(options.bosh_url, "http://127.0.0.1:5280/http-bind");
    assert_eq!(options.inject_prefixes, ["/"]);
    assert!(options.credentials.is_anonymous());
    assert_eq!(options.credentials.domain(), "anon.localhost");

    let options = parse(
        &[
            "--inject-prefix",
            "/chat/",
            "--inject-prefix=/app/",
            "--jid",
            "alice@localhost",
        ],
        &[
            ("BOSH_PREBIND_UPSTREAM", "http://app.internal:8080"),
            ("BOSH_PREBIND_INJECT_PREFIX", "/ignored/"),
            ("BOSH_PREBIND_PASSWORD", "secret"),
        ],
    )
    .unwrap();
    assert_eq!(options.upstream, "http://app.internal:8080/");
    assert_eq!(options.inject_prefixes, ["/chat/", "/app/"]);
    assert_eq!(options.credentials.domain(), "localhost");
    let options = parse(
        &[],
        &[
            ("BOSH_PREBIND_UPSTREAM", "http://a:1"),
            ("BOSH_PREBIND_INJECT_PREFIX", "/a/,/b/"),
        ],
    )
    .unwrap();
    assert_eq!(options.inject_prefixes, ["/a/", "/b/"]);

    for (args, error) in [
        (&[][..], "--upstream URL is required"),
        (&["--upstream", "https://app:443"], "expected http://"),
        (&["--upstream", "127.0.0.1:8000"], "expected http://"),
        (
            &["--upstream", "http://app/base"],
            "give only http://host:port",
        ),
        (
            &["--upstream", "http://app", "--bosh-url", "not a url"],
            "--bosh-url",
        ),
        (
            &["--upstream", "http://app", "--jid", "alice@localhost"],
            "go together",
        ),
        (
            &["--upstream", "http://app", "--jid", "@", "--password", "x"],
            "--jid",
        ),
        (
            &["--upstream", "http://app", "--inject-prefix", "chat"],
            "must start with '/'",
        ),
        (
            &["--upstream", "http://app", "--listen", "localhost"],
            "--listen",
        ),
        (
            &["--upstream", "http://app", "--frobnicate", "1"],
            "unknown flag --frobnicate",
        ),
        (&["--upstream"], "--upstream needs a value"),
        (&["--frobnicate"], "unknown flag --frobnicate"),
        (&["http://app"], "unexpected argument"),
    ] {
        let message = parse(args, &[]).unwrap_err();
        assert!(message.contains(error), "{args:?}: {message}");
    }
}
