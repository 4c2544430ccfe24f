//! The gateway binary (`bosh-prebind-gateway`, as cargo built it for this
//! test) over real HTTP: a tiny upstream app, the gateway process in front of
//! it, a hyper client talking to the gateway.
//!
//! The session tests need the real Prosody (`BOSH_PREBIND_TEST_BOSH_URL`, and
//! for HTTPS `BOSH_PREBIND_TEST_BOSH_HTTPS_URL` and `BOSH_PREBIND_TEST_CA_FILE`,
//! set by `scripts/test.sh`): like the library's real-server tests (whose
//! `tests/common` this shares) they are `#[ignore]`d, and `scripts/test.sh`
//! runs them with `--include-ignored`, where a missing server fails them. The
//! others use a counting fake CM that refuses every request.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

const BINARY: &str = env!("CARGO_BIN_EXE_bosh-prebind-gateway");
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
/// `ETag`, a text file, `/slow` (a page after one second), and `/echo`,
/// which answers the request head it got (and hop-by-hop fields of its own
/// that must not reach the client).
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
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "slow answer"
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

/// The gateway process; killed when dropped. Its stderr (the logs) is kept
/// and printed if the test fails.
struct Gateway {
    child: Child,
    address: SocketAddr,
    logs: Arc<Mutex<String>>,
}

/// A command for the gateway binary with none of the caller's
/// `BOSH_PREBIND_*` variables (each test sets its own).
fn command() -> Command {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BOSH_PREBIND_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info,tower_http=debug");
    command
}

impl Gateway {
    /// Starts the gateway with `args` (plus `--listen 127.0.0.1:0` unless the
    /// environment says where) and waits for its `listening` line.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let mut command = command();
        if !env.iter().any(|(name, _)| *name == "BOSH_PREBIND_LISTEN") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command.args(args).envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        let reader = std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(address) = line.trim().strip_prefix("gateway listening on http://") else {
            let status = child.wait().unwrap();
            // The process is gone: its stderr ends, and the reader with it.
            let _ = reader.join();
            panic!(
                "no listening line ({status}): {line:?}\n{}",
                logs.lock().unwrap()
            );
        };
        Gateway {
            address: address.parse().unwrap(),
            child,
            logs,
        }
    }

    /// Sends SIGTERM (through kill(1): the tests forbid unsafe code).
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- gateway logs ----\n{}", self.logs.lock().unwrap());
        }
    }
}

/// Starts the gateway in front of `app` with the CM at `cm`.
fn start_gateway(app: SocketAddr, cm: &Uri, extra: &[&str]) -> Gateway {
    let upstream = format!("http://{app}");
    let cm = cm.to_string();
    let mut args = vec!["--upstream", &upstream, "--bosh-url", &cm];
    args.extend_from_slice(extra);
    Gateway::start(&args, &[])
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
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn a_page_gets_a_gzipped_session_that_attaches_through_the_gateway() {
    let cm = prosody();
    let app = upstream().await;
    let process = start_gateway(app, &cm, &["--domain", "anon.localhost"]);
    let gateway = process.address;

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
    let process = start_gateway(app, &cm, &[]);
    let gateway = process.address;

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
    let process = start_gateway(app, &cm, &[]);
    let gateway = process.address;
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
async fn with_several_bosh_urls_every_node_is_tried_before_the_page_gets_the_error() {
    let app = upstream().await;
    let (cm_a, requests_a) = refusing_cm().await;
    let (cm_b, requests_b) = refusing_cm().await;
    let cm_b = cm_b.to_string();
    let process = start_gateway(app, &cm_a, &["--bosh-url", &cm_b]);
    let (head, body) = send(process.address, "GET", "/prebind", &[], "").await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("remote-connection-failed"));
    assert_eq!(
        (
            requests_a.load(Ordering::SeqCst),
            requests_b.load(Ordering::SeqCst)
        ),
        (1, 1),
        "each node asked once (HTTP 503 to the session creation: node down)"
    );
}

/// Shared by the tests that need both ejabberd cluster nodes up, exclusive
/// for the one that stops a node (the tests of one binary run in parallel).
static CLUSTER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn with_both_cluster_nodes_sessions_attach_through_their_node_path() {
    let _cluster = CLUSTER.read().await;
    let a = common::server_url("BOSH_PREBIND_TEST_CLUSTER_A_URL");
    let b = common::server_url("BOSH_PREBIND_TEST_CLUSTER_B_URL").to_string();
    let app = upstream().await;
    let process = start_gateway(app, &a, &["--bosh-url", &b, "--domain", "anon.localhost"]);
    let mut paths = Vec::new();
    for _ in 0..2 {
        let (head, body) = send(process.address, "GET", "/prebind", &[], "").await;
        assert_eq!(head.status, StatusCode::OK);
        let json = String::from_utf8(body.to_vec()).unwrap();
        let path = json_field(&json, "bosh_service_url").to_owned();
        let ping = format!(
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='{}' sid='{}'>\
             <iq xmlns='jabber:client' type='get' id='ping_attach' to='anon.localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq></body>",
            json_field(&json, "rid"),
            json_field(&json, "sid")
        );
        let (head, body) = send(
            process.address,
            "POST",
            &path,
            &[("content-type", "text/xml; charset=utf-8")],
            &ping,
        )
        .await;
        assert_eq!(head.status, StatusCode::OK, "{path}");
        let answer = BoshResponse::parse(&body).unwrap();
        assert!(
            answer
                .iqs
                .iter()
                .any(|iq| iq.id.as_deref() == Some("ping_attach") && iq.kind == IqType::Result),
            "ping through {path} not answered: {answer:?}"
        );
        paths.push(path);
    }
    paths.sort();
    assert_eq!(paths, ["/http-bind/0", "/http-bind/1"], "round-robin");
}

#[tokio::test]
async fn requests_are_forwarded_with_proxy_headers_and_without_hop_by_hop_fields() {
    let app = upstream().await;
    let (cm, _) = refusing_cm().await;
    let process = start_gateway(app, &cm, &[]);
    let gateway = process.address;
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
    let process = start_gateway(closed, &cm, &[]);
    let gateway = process.address;
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

#[tokio::test]
async fn the_health_path_answers_without_the_upstream_or_the_cm() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (cm, cm_requests) = refusing_cm().await;
    let process = start_gateway(closed, &cm, &[]);
    let (head, body) = send(
        process.address,
        "GET",
        "/healthz",
        &[("sec-fetch-dest", "document")],
        "",
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, "ok\n");
    assert_eq!(head.headers[header::CACHE_CONTROL], "no-store");
    let (head, body) = send(process.address, "HEAD", "/healthz", &[], "").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(body.is_empty());
    let (head, _) = send(process.address, "POST", "/healthz", &[], "").await;
    assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.headers[header::ALLOW], "GET, HEAD");
    assert_eq!(
        cm_requests.load(Ordering::SeqCst),
        0,
        "no session for a probe"
    );
    // Only that exact path: the app (down here) answers everything else.
    let (head, _) = send(process.address, "GET", "/healthz/x", &[], "").await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn every_setting_comes_from_the_environment_too() {
    let app = upstream().await;
    let (cm, cm_requests) = refusing_cm().await;
    let upstream = format!("http://{app}");
    let cm = cm.to_string();
    let process = Gateway::start(
        &[],
        &[
            ("BOSH_PREBIND_LISTEN", "127.0.0.1:0"),
            ("BOSH_PREBIND_UPSTREAM", &upstream),
            ("BOSH_PREBIND_BOSH_URL", &cm),
            ("BOSH_PREBIND_INJECT_PREFIX", "/chat/,/"),
            ("BOSH_PREBIND_PREBIND_PATH", "/session"),
            ("BOSH_PREBIND_BOSH_PATH", "/bosh"),
            ("BOSH_PREBIND_HEALTH_PATH", "/alive"),
        ],
    );
    let (head, body) = send(process.address, "GET", "/alive", &[], "").await;
    assert_eq!((head.status, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (head, body) = send(process.address, "GET", "/session", &[], "").await;
    assert_eq!(
        head.status,
        StatusCode::BAD_GATEWAY,
        "the CM refuses: {body:?}"
    );
    let (_, body) = send(
        process.address,
        "GET",
        "/",
        &[("sec-fetch-dest", "document")],
        "",
    )
    .await;
    let page = String::from_utf8(body.to_vec()).unwrap();
    assert!(snippet(&page).contains("\"error\""), "{page}");
    assert_eq!(cm_requests.load(Ordering::SeqCst), 2);
    // The browser is told the pass-through path of this origin.
    let (head, _) = send(
        process.address,
        "POST",
        "/bosh",
        &[("content-type", "text/xml")],
        "<body/>",
    )
    .await;
    assert_ne!(head.status, StatusCode::NOT_FOUND);
}

#[test]
fn a_bad_configuration_exits_2_and_says_why() {
    for (args, env, error) in [
        (&[][..], &[][..], "--upstream <URL>"),
        (
            &["--upstream", "http://app/base"],
            &[],
            "give only http://host:port",
        ),
        (
            &["--upstream", "http://app", "--jid", "a@b"],
            &[],
            "--jid needs --password",
        ),
        (
            &[],
            &[
                ("BOSH_PREBIND_UPSTREAM", "http://app"),
                ("BOSH_PREBIND_BOSH_URL", "ftp://x/"),
            ][..],
            "--bosh-url",
        ),
        // A flag wins over its variable.
        (
            &["--upstream", "http://app:1/x"],
            &[("BOSH_PREBIND_UPSTREAM", "http://app")],
            "give only",
        ),
    ] {
        let output = command()
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(error), "{args:?} {env:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing on stdout: {args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    // An app whose `/slow` says when the request has reached it (through
    // the gateway), then answers a second later.
    let (entered, mut reached) = tokio::sync::mpsc::unbounded_channel::<()>();
    let app = spawn(Router::new().route(
        "/slow",
        get(move || {
            let _ = entered.send(());
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "slow answer"
            }
        }),
    ))
    .await;
    let (cm, _) = refusing_cm().await;
    let mut process = start_gateway(app, &cm, &[]);
    let address = process.address;
    let slow = tokio::spawn(async move { send(address, "GET", "/slow", &[], "").await });
    // The request is in flight at the app: now stop the gateway.
    reached.recv().await.expect("the request reached the app");
    process.terminate();
    let (head, body) = slow.await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, "slow answer");
    let status = tokio::task::block_in_place(|| process.wait(Duration::from_secs(5)));
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "no longer listening"
    );
}

/// A page through the gateway with the CM at `cm` (and `extra` flags): the
/// injected snippet's JSON.
async fn injected(cm: &Uri, extra: &[&str]) -> String {
    let app = upstream().await;
    let process = start_gateway(app, cm, extra);
    let (head, body) = send(
        process.address,
        "GET",
        "/",
        &[("sec-fetch-dest", "document")],
        "",
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    let page = String::from_utf8(body.to_vec()).unwrap();
    snippet(&page).to_owned()
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn https_to_the_cm_with_a_private_ca_from_ca_file() {
    let cm = common::server_url("BOSH_PREBIND_TEST_BOSH_HTTPS_URL");
    assert_eq!(cm.scheme_str(), Some("https"));
    let ca = std::env::var("BOSH_PREBIND_TEST_CA_FILE")
        .expect("BOSH_PREBIND_TEST_CA_FILE is set by scripts/test.sh");
    let json = injected(&cm, &["--ca-file", &ca]).await;
    assert!(
        json_field(&json, "jid").contains("@anon.localhost/"),
        "{json}"
    );
    assert_eq!(json_field(&json, "bosh_service_url"), "/http-bind");
    // Without the CA the certificate is refused: the page gets the error object.
    let json = injected(&cm, &[]).await;
    assert!(json.contains("\"error\""), "{json}");
}

// Two gateway processes, one per ejabberd cluster node.

/// `GET /prebind` through a gateway: status, time taken, and the JSON.
async fn gateway_prebind(gateway: &Gateway) -> (StatusCode, Duration, String) {
    let started = Instant::now();
    let (head, body) = send(gateway.address, "GET", "/prebind", &[], "").await;
    (
        head.status,
        started.elapsed(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// A ping on the session of `json` (a `GET /prebind` answer) at `rid`,
/// POSTed to `gateway`'s same-origin pass-through: the HTTP status and, on
/// 200, the CM's answer.
async fn ping_through(
    gateway: &Gateway,
    json: &str,
    rid: u64,
) -> (StatusCode, Option<BoshResponse>) {
    let ping = format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{}'>\
         <iq xmlns='jabber:client' type='get' id='ping_attach' to='anon.localhost'>\
         <ping xmlns='urn:xmpp:ping'/></iq></body>",
        json_field(json, "sid")
    );
    let (head, body) = send(
        gateway.address,
        "POST",
        json_field(json, "bosh_service_url"),
        &[("content-type", "text/xml; charset=utf-8")],
        &ping,
    )
    .await;
    let answer = (head.status == StatusCode::OK).then(|| BoshResponse::parse(&body).unwrap());
    (head.status, answer)
}

fn pong(answer: &Option<BoshResponse>) -> bool {
    answer.as_ref().is_some_and(|answer| {
        answer
            .iqs
            .iter()
            .any(|iq| iq.id.as_deref() == Some("ping_attach") && iq.kind == IqType::Result)
    })
}

fn rid_of(json: &str) -> u64 {
    json_field(json, "rid").parse().unwrap()
}

const CLUSTER_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/ejabberd-cluster.sh"
);

/// `scripts/ejabberd-cluster.sh ARGS…`; panics with its output on failure.
fn cluster_script(args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(CLUSTER_SCRIPT).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ejabberd-cluster.sh {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// Until connecting to `url`'s port fails (`up == false`) or works.
fn wait_for_port(url: &Uri, up: bool) -> Duration {
    let authority = url.authority().unwrap();
    let addr: SocketAddr = format!("{}:{}", authority.host(), authority.port_u16().unwrap())
        .parse()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() != up {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{addr}: not {up} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Restarts node A if the test fails while it is down.
struct RestartOnPanic(bool);

impl Drop for RestartOnPanic {
    fn drop(&mut self) {
        if self.0 && std::thread::panicking() {
            let _ = Command::new(CLUSTER_SCRIPT)
                .args(["start-node", "a"])
                .status();
        }
    }
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn two_gateways_one_per_node_share_sessions_and_a_stopped_node_fails_fast_at_its_gateway() {
    let _cluster = CLUSTER.write().await;
    let a = common::server_url("BOSH_PREBIND_TEST_CLUSTER_A_URL");
    let b = common::server_url("BOSH_PREBIND_TEST_CLUSTER_B_URL");
    // Two instances of one site (behind a load balancer in real life), each
    // gateway process pointed at its own node, same-origin /http-bind.
    let app = upstream().await;
    let for_a = start_gateway(app, &a, &["--domain", "anon.localhost"]);
    let for_b = start_gateway(app, &b, &["--domain", "anon.localhost"]);

    // A session from either gateway attaches through either pass-through.
    let mut from_a = None;
    for (name, maker, other) in [("A", &for_a, &for_b), ("B", &for_b, &for_a)] {
        let (status, took, json) = gateway_prebind(maker).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json_field(&json, "bosh_service_url"), "/http-bind");
        let rid = rid_of(&json);
        let (status, answer) = ping_through(other, &json, rid).await;
        assert!(pong(&answer), "{status} {answer:?}");
        let (status, answer) = ping_through(maker, &json, rid + 1).await;
        assert!(pong(&answer), "{status} {answer:?}");
        eprintln!(
            "session prebound through gateway {name} ({took:?}): ping answered through the other gateway, then through its own"
        );
        if name == "A" {
            from_a = Some((json, rid + 2));
        }
    }
    let (from_a, from_a_rid) = from_a.unwrap();

    let mut guard = RestartOnPanic(true);
    let took = cluster_script(&["stop-node", "a"]);
    let refused = wait_for_port(&a, false);
    eprintln!("node A stopped in {took:?} (port refused {refused:?} later)");

    // New prebinds through gateway A: a clear 502, at once.
    for attempt in 1..=3 {
        let (status, took, json) = gateway_prebind(&for_a).await;
        eprintln!(
            "gateway A, node A stopped, prebind {attempt}: HTTP {status} in {took:?}: {json}"
        );
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
        assert_eq!(json_field(&json, "condition"), "remote-connection-failed");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // Gateway B keeps working: prebind and attach through its pass-through.
    let (status, took, json) = gateway_prebind(&for_b).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (_, answer) = ping_through(&for_b, &json, rid_of(&json)).await;
    assert!(pong(&answer), "{answer:?}");
    eprintln!("gateway B while node A is down: prebind {took:?}, ping answered through gateway B");
    // Through gateway A's pass-through (its node is down) the browser gets
    // a 502 for it too: a load balancer in front of the two gateways must
    // take gateway A out (or gateway A list both nodes).
    let (status, _) = ping_through(&for_a, &json, rid_of(&json) + 1).await;
    eprintln!("the same session through gateway A's pass-through: HTTP {status}");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // The session node A owned died with it.
    let (status, answer) = ping_through(&for_b, &from_a, from_a_rid).await;
    let condition = answer.as_ref().and_then(|answer| match &answer.body_type {
        bosh_prebind::bosh::BodyType::Terminate { condition, .. } => condition.clone(),
        _ => None,
    });
    eprintln!(
        "node A's session through gateway B: HTTP {status}, terminate condition {condition:?}"
    );
    assert!(
        matches!(
            condition.as_deref(),
            Some("item-not-found" | "remote-stream-error" | "internal-server-error")
        ),
        "{status} {answer:?}"
    );

    let took = cluster_script(&["start-node", "a"]);
    wait_for_port(&a, true);
    guard.0 = false;
    // Gateway A works again (same process), and its session attaches
    // through gateway B.
    let (status, took_prebind, json) = gateway_prebind(&for_a).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (_, answer) = ping_through(&for_b, &json, rid_of(&json)).await;
    assert!(pong(&answer), "{answer:?}");
    eprintln!(
        "node A restarted in {took:?}; gateway A prebinds again ({took_prebind:?}), its session answered through gateway B"
    );
}
