//! Several connection managers in one layer (`PrebindLayer::new_cluster`),
//! against in-memory nodes: one `tower::service_fn` routes each request by
//! its URI's authority to a fake node that answers Prosody's recorded
//! anonymous login (docs/protocol/prosody-0.12.md), refuses connections as a
//! stopped node does, or dies after the session-creation request.
//!
//! The exact behaviour: a down node is skipped; a prebind whose node fails
//! before a sid exists is made at another node; never once a sid exists;
//! the back-off expires (paused tokio clock, no sleeps) and brings the node
//! back; sessions name their node; the pass-through forwards to the owner.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosh_prebind::{BoshNode, ClusterError, Credentials, PrebindError, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

mod common;
use common::{get, json_field};

const A: &str = "http://node-a.internal:5280/http-bind";
const B: &str = "http://node-b.internal:5280/http-bind";
const C: &str = "http://node-c.internal:5280/http-bind";
const NS: &str =
    "xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams'";

/// What a fake node does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Answers like Prosody 0.12.
    Up,
    /// Every connection refused (a stopped node).
    Refused,
    /// Answers the session creation, then refuses (dies mid-handshake).
    DiesAfterCreation,
    /// Takes the connection and never answers (a hung node).
    Hangs,
}

/// The fake nodes, by host: their mode, and every request body they got.
#[derive(Clone, Default)]
struct Nodes {
    modes: Arc<Mutex<HashMap<String, Mode>>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Nodes {
    fn new(modes: &[(&str, Mode)]) -> Self {
        let nodes = Nodes::default();
        for (url, mode) in modes {
            nodes.set(url, *mode);
        }
        nodes
    }

    fn set(&self, url: &str, mode: Mode) {
        let host = url.parse::<Uri>().unwrap().host().unwrap().to_owned();
        self.modes.lock().unwrap().insert(host, mode);
    }

    /// Requests received by the node at `url` (refused ones included: the
    /// attempt is what counts).
    fn requests(&self, url: &str) -> Vec<String> {
        let host = url.parse::<Uri>().unwrap().host().unwrap().to_owned();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Session-creation requests (no sid) sent to the node at `url`.
    fn creations(&self, url: &str) -> usize {
        self.requests(url)
            .iter()
            .filter(|body| !body.contains(" sid="))
            .count()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// The transport: routes by the request URI's authority.
    fn transport(
        &self,
    ) -> impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = std::io::Error,
        Future: Send,
    >
    + Clone
    + Send
    + 'static
    + use<> {
        let nodes = self.clone();
        service_fn(move |request: Request<Full<Bytes>>| {
            let nodes = nodes.clone();
            async move {
                let host = request.uri().host().unwrap_or_default().to_owned();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8(body.to_vec()).unwrap();
                nodes
                    .seen
                    .lock()
                    .unwrap()
                    .push((host.clone(), body.clone()));
                let mode = nodes.modes.lock().unwrap().get(&host).copied();
                let creating = !body.contains(" sid=");
                match mode {
                    None | Some(Mode::Refused) => return Err(refused()),
                    Some(Mode::DiesAfterCreation) if !creating => return Err(refused()),
                    Some(Mode::Hangs) => std::future::pending::<()>().await,
                    _ => {}
                }
                Ok(Response::new(Full::new(Bytes::from(answer(&host, &body)))))
            }
        })
    }
}

fn refused() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "tcp connect error: Connection refused (os error 111)",
    )
}

/// Prosody 0.12's anonymous login, with the node's host in the sid and JID
/// so that a session says where it was made.
fn answer(host: &str, body: &str) -> String {
    let node = host.split('.').next().unwrap();
    let sid = format!("sid-{node}");
    if !body.contains(" sid=") {
        format!(
            "<body hold='1' authid='{sid}' xmpp:version='1.0' ver='1.6' {NS} xmlns:xmpp='urn:xmpp:xbosh' \
             from='anon.localhost' requests='2' polling='5' sid='{sid}' inactivity='60' wait='60'>\
             <stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>"
        )
    } else if body.contains("<auth") {
        format!("<body {NS} sid='{sid}'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>")
    } else if body.contains("xmpp:restart") {
        format!(
            "<body {NS} sid='{sid}'><stream:features xmlns='jabber:client'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind></stream:features></body>"
        )
    } else if body.contains("<bind") {
        format!(
            "<body {NS} sid='{sid}'><iq id='bind_1' xmlns='jabber:client' type='result'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>user@anon.localhost/{node}</jid></bind></iq></body>"
        )
    } else {
        // A pass-through request: echo where it landed.
        format!("<body {NS}><message xmlns='jabber:client' from='{node}'/></body>")
    }
}

type App = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
    Infallible,
>;

fn app(layer: PrebindLayer<impl bosh_prebind::BoshTransport>) -> App {
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    tower::util::BoxCloneService::new(layer.layer(inner))
}

fn cluster_layer(
    nodes: &Nodes,
    urls: &[&str],
) -> PrebindLayer<impl bosh_prebind::BoshTransport + use<>> {
    PrebindLayer::cluster_with_transport(
        urls.iter().map(|url| url.parse::<Uri>().unwrap()),
        nodes.transport(),
    )
    .unwrap()
    .credentials(Credentials::anonymous("anon.localhost"))
}

struct Answer {
    status: StatusCode,
    body: String,
    error: Option<PrebindError>,
}

async fn prebind(app: &App) -> Answer {
    let response = app.clone().oneshot(get()).await.unwrap();
    let status = response.status();
    let error = response.extensions().get::<PrebindError>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        error,
    }
}

/// A prebind that must succeed; gives the node that made it (from the JID).
async fn made_at(app: &App) -> String {
    let answer = prebind(app).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let jid = json_field(&answer.body, "jid");
    jid[jid.find('/').unwrap() + 1..].to_owned()
}

#[tokio::test(start_paused = true)]
async fn prebinds_go_round_robin_and_a_refusing_node_is_retried_elsewhere_then_skipped() {
    let nodes = Nodes::new(&[(A, Mode::Refused), (B, Mode::Up), (C, Mode::Up)]);
    let app = app(cluster_layer(&nodes, &[A, B, C]));
    // First prebind starts at A: refused at the creation request, made at B.
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(nodes.creations(A), 1);
    // A is down now: the next prebinds go B, C, B, C… and never touch A.
    let mut made = Vec::new();
    for _ in 0..6 {
        made.push(made_at(&app).await);
    }
    assert_eq!(nodes.creations(A), 1, "a down node is skipped");
    assert!(made.contains(&"node-b".to_owned()) && made.contains(&"node-c".to_owned()));
    assert!(!made.contains(&"node-a".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn the_back_off_expires_and_brings_the_node_back_and_doubles_while_it_fails() {
    let nodes = Nodes::new(&[(A, Mode::Refused), (B, Mode::Up)]);
    let app = app(cluster_layer(&nodes, &[A, B])
        .node_backoff(Duration::from_secs(5), Duration::from_secs(60)));
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(nodes.creations(A), 1);

    // 4.9 s later A is still skipped.
    tokio::time::advance(Duration::from_millis(4900)).await;
    for _ in 0..4 {
        assert_eq!(made_at(&app).await, "node-b");
    }
    assert_eq!(nodes.creations(A), 1);

    // At 5 s one prebind probes it; it still refuses: made at B, and A is
    // now skipped for 10 s.
    tokio::time::advance(Duration::from_millis(100)).await;
    for _ in 0..2 {
        assert_eq!(made_at(&app).await, "node-b");
    }
    assert_eq!(nodes.creations(A), 2, "probed once when the back-off ended");
    tokio::time::advance(Duration::from_millis(9900)).await;
    for _ in 0..4 {
        assert_eq!(made_at(&app).await, "node-b");
    }
    assert_eq!(nodes.creations(A), 2, "the back-off doubled to 10 s");

    // A comes back; after the back-off it is probed, and used again.
    nodes.set(A, Mode::Up);
    tokio::time::advance(Duration::from_millis(100)).await;
    let made = [made_at(&app).await, made_at(&app).await];
    assert!(made.contains(&"node-a".to_owned()), "{made:?}");
    let made = [made_at(&app).await, made_at(&app).await];
    assert!(
        made.contains(&"node-a".to_owned()) && made.contains(&"node-b".to_owned()),
        "round-robin again: {made:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_once_the_sid_exists_is_an_error_not_a_retry() {
    let nodes = Nodes::new(&[(A, Mode::DiesAfterCreation), (B, Mode::Up)]);
    let app = app(cluster_layer(&nodes, &[A, B]));
    // Starts at A: the session exists there (sid-node-a), then A dies.
    let answer = prebind(&app).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert!(
        matches!(answer.error, Some(PrebindError::Unreachable(_))),
        "{:?}",
        answer.error
    );
    // (The layer then sends A a best-effort terminate for the half-made
    // session, XEP-0124 §12: not a retry.)
    let handshake_requests = nodes
        .requests(A)
        .iter()
        .filter(|body| !body.contains("type='terminate'"))
        .count();
    assert_eq!(handshake_requests, 2, "creation, then the failed auth");
    assert!(nodes.requests(B).is_empty(), "nothing was tried elsewhere");
    // And A is not marked down by it (only a failed creation does that):
    // the next prebind starts at B, the one after at A again.
    nodes.clear();
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(prebind(&app).await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(nodes.creations(A), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_node_costs_one_request_timeout_then_the_prebind_is_made_elsewhere() {
    let nodes = Nodes::new(&[(A, Mode::Hangs), (B, Mode::Up)]);
    let app = app(cluster_layer(&nodes, &[A, B])
        .request_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(10)));
    let started = tokio::time::Instant::now();
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // Skipped now: no more waiting.
    let started = tokio::time::Instant::now();
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn no_time_left_for_another_node_gives_the_error() {
    let nodes = Nodes::new(&[(A, Mode::Hangs), (B, Mode::Up)]);
    let app = app(cluster_layer(&nodes, &[A, B])
        .request_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(5)));
    let answer = prebind(&app).await;
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.body
    );
    assert!(nodes.requests(B).is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_node_down_is_tried_anyway_and_all_refusing_gives_502() {
    let nodes = Nodes::new(&[(A, Mode::Refused), (B, Mode::Refused)]);
    let app = app(cluster_layer(&nodes, &[A, B]));
    let answer = prebind(&app).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        json_field(&answer.body, "condition"),
        "remote-connection-failed"
    );
    assert_eq!((nodes.creations(A), nodes.creations(B)), (1, 1));
    // Both marked down; a node that is back is found at once (both are
    // tried as a last resort rather than refusing without trying).
    nodes.set(B, Mode::Up);
    assert_eq!(made_at(&app).await, "node-b");
    assert_eq!(made_at(&app).await, "node-b");
}

#[tokio::test]
async fn sessions_name_their_node_and_the_passthrough_forwards_to_the_owner() {
    let nodes = Nodes::new(&[(A, Mode::Up), (B, Mode::Up)]);
    let app = app(cluster_layer(&nodes, &[A, B]).bosh_passthrough("/http-bind"));
    for _ in 0..4 {
        let answer = prebind(&app).await;
        let jid = json_field(&answer.body, "jid");
        let node = &jid[jid.find('/').unwrap() + 1..];
        let url = json_field(&answer.body, "bosh_service_url");
        let expected = if node == "node-a" {
            "/http-bind/0"
        } else {
            "/http-bind/1"
        };
        assert_eq!(url, expected, "{}", answer.body);

        // The browser's next request through that URL lands on its node.
        let request = Request::post(url)
            .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(Full::new(Bytes::from(format!(
                "<body xmlns='http://jabber.org/protocol/httpbind' rid='9' sid='{}'/>",
                json_field(&answer.body, "sid")
            ))))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains(&format!("from='{node}'")), "{url}: {body}");
    }
    // The base path forwards to the first node that is up; paths of nodes
    // that do not exist are not forwarded (the app answers them).
    for (path, landed) in [
        ("/http-bind", Some("node-a")),
        ("/http-bind/2", None),
        ("/http-bind/01", None),
    ] {
        let request = Request::post(path)
            .body(Full::new(Bytes::from_static(b"<body/>")))
            .unwrap();
        let body = app
            .clone()
            .oneshot(request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        match landed {
            Some(node) => assert!(String::from_utf8_lossy(&body).contains(node), "{path}"),
            None => assert_eq!(&body[..], b"app", "{path}"),
        }
    }
}

#[tokio::test]
async fn public_urls_per_node_and_one_for_all() {
    let nodes = Nodes::new(&[(A, Mode::Up), (B, Mode::Up)]);
    let layer = PrebindLayer::cluster_with_transport(
        [
            BoshNode::new(A.parse::<Uri>().unwrap()).public_url("https://xmpp-a.example.org/bosh"),
            BoshNode::new(B.parse::<Uri>().unwrap()),
        ],
        nodes.transport(),
    )
    .unwrap()
    .credentials(Credentials::anonymous("anon.localhost"));
    let direct = app(layer.clone());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let answer = prebind(&direct).await;
        seen.push(json_field(&answer.body, "bosh_service_url").to_owned());
    }
    seen.sort();
    // A's own public URL; B has none, so its internal URL (no pass-through).
    assert_eq!(seen, [B, "https://xmpp-a.example.org/bosh"]);

    // One public URL for all (a load balancer in front of the nodes for
    // browsers): every session gets it, except a node's own.
    let behind_one = app(layer.public_bosh_url("https://xmpp.example.org/bosh"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let answer = prebind(&behind_one).await;
        seen.push(json_field(&answer.body, "bosh_service_url").to_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "https://xmpp-a.example.org/bosh",
            "https://xmpp.example.org/bosh"
        ]
    );
}

#[tokio::test]
async fn injected_pages_name_their_node_too() {
    let nodes = Nodes::new(&[(A, Mode::Refused), (B, Mode::Up)]);
    let layer = cluster_layer(&nodes, &[A, B])
        .bosh_passthrough("/bosh")
        .inject_path("/");
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"<html><head></head><body></body></html>",
        )));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
        Ok::<_, Infallible>(response)
    });
    let service = layer.layer(inner);
    let request = Request::get("/").body(Full::default()).unwrap();
    let page = service
        .oneshot(request)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(page.contains("\"bosh_service_url\":\"/bosh/1\""), "{page}");
}

#[tokio::test(start_paused = true)]
async fn a_page_session_never_written_is_terminated_at_its_own_node() {
    // A refuses: the page's session is made at B. The app then answers 404
    // (not injectable), after the handshake finished: the session is ended
    // at B, where it lives, not at A (the first node) nor anywhere else.
    let nodes = Nodes::new(&[(A, Mode::Refused), (B, Mode::Up)]);
    let layer = cluster_layer(&nodes, &[A, B]).inject_path("/");
    let inner = service_fn(|_: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut response = Response::new(Full::new(Bytes::from_static(b"gone")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        Ok::<_, Infallible>(response)
    });
    let response = layer
        .layer(inner)
        .oneshot(Request::get("/").body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    drop(response.into_body().collect().await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let terminations = |url: &str| {
        nodes
            .requests(url)
            .into_iter()
            .filter(|body| body.contains("type='terminate'"))
            .collect::<Vec<_>>()
    };
    let at_b = terminations(B);
    assert_eq!(at_b.len(), 1, "{:?}", nodes.requests(B));
    assert!(at_b[0].contains("sid='sid-node-b'"), "{}", at_b[0]);
    assert!(terminations(A).is_empty(), "{:?}", nodes.requests(A));
}

#[test]
fn bad_lists_are_refused_with_a_clear_error() {
    let nodes = Nodes::default();
    let error =
        PrebindLayer::cluster_with_transport(Vec::<Uri>::new(), nodes.transport()).unwrap_err();
    assert_eq!(error, ClusterError::NoNode);
    let error = PrebindLayer::cluster_with_transport(
        [A.parse::<Uri>().unwrap(), A.parse().unwrap()],
        nodes.transport(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("listed twice"), "{error}");
    let error =
        PrebindLayer::cluster_with_transport([Uri::from_static("/http-bind")], nodes.transport())
            .unwrap_err();
    assert!(error.to_string().contains("not absolute"), "{error}");
}

#[cfg(feature = "client")]
#[test]
fn new_cluster_takes_bosh_urls() {
    let urls: Vec<bosh_prebind::BoshUrl> = vec![A.parse().unwrap(), B.parse().unwrap()];
    assert!(PrebindLayer::new_cluster(urls).is_ok());
}

// The warm pool with several nodes.

/// Lets the pool's task and its refills run (the fake nodes answer at once).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A prebind that must succeed: the node that made it (from the JID) and
/// the `bosh_service_url` it was handed out with.
async fn made_at_with_url(app: &App) -> (String, String) {
    let answer = prebind(app).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let jid = json_field(&answer.body, "jid");
    (
        jid[jid.find('/').unwrap() + 1..].to_owned(),
        json_field(&answer.body, "bosh_service_url").to_owned(),
    )
}

/// The pass-through path of each fake node, as the layer numbers them.
fn path_of(node: &str) -> &'static str {
    match node {
        "node-a" => "/http-bind/0",
        "node-b" => "/http-bind/1",
        other => panic!("unexpected node {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_warm_pool_makes_sessions_at_healthy_nodes_and_each_names_its_node() {
    let nodes = Nodes::new(&[(A, Mode::Up), (B, Mode::Up)]);
    let layer = cluster_layer(&nodes, &[A, B])
        .bosh_passthrough("/http-bind")
        .pool(4);
    let pool = layer.pool_handle();
    let app = app(layer);

    // Demand: requests back to back fill the pool in the background, the
    // refills round-robin over both nodes like requests do.
    for _ in 0..8 {
        made_at_with_url(&app).await;
        settle().await;
    }
    let stats = pool.stats();
    assert!(stats.size >= 2, "{stats:?}");
    assert!(nodes.creations(A) >= 3 && nodes.creations(B) >= 3);

    // Hits: each pooled session is handed out with its own node's path.
    let hits = pool.stats().hits;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (node, url) = made_at_with_url(&app).await;
        assert_eq!(url, path_of(&node), "a pooled session names its node");
        seen.push(node);
        settle().await;
    }
    assert_eq!(pool.stats().hits - hits, 4, "{:?}", pool.stats());
    assert!(pool.stats().size >= 2, "refilled: {:?}", pool.stats());
    assert!(
        seen.contains(&"node-a".to_owned()) && seen.contains(&"node-b".to_owned()),
        "pooled sessions from both nodes: {seen:?}"
    );
    // Node A stops. Sessions pooled from it expire (30 s: half the
    // inactivity of 60 s) and are terminated at A, where they live, never
    // at B; the next refill that tries A fails over to B, A is skipped
    // after that, and every hit from then on is B's.
    nodes.set(A, Mode::Refused);
    nodes.clear();
    tokio::time::advance(Duration::from_secs(31)).await;
    settle().await;
    let stats = pool.stats();
    assert!(stats.expired >= 2, "{stats:?}");
    let terminations = |url: &str, sid: &str| {
        nodes
            .requests(url)
            .iter()
            .filter(|body| body.contains("type='terminate'") && body.contains(sid))
            .count()
    };
    assert!(
        terminations(A, "sid-node-a") > 0,
        "A's expired sessions terminated at A: {:?}",
        nodes.requests(A)
    );
    assert_eq!(terminations(B, "sid-node-a"), 0, "never at B");
    assert_eq!(terminations(A, "sid-node-b"), 0, "B's never at A");

    for _ in 0..8 {
        let (node, url) = made_at_with_url(&app).await;
        assert_eq!((node.as_str(), url.as_str()), ("node-b", "/http-bind/1"));
        settle().await;
    }
    let stats = pool.stats();
    assert!(stats.hits > 4, "the pool kept serving: {stats:?}");
    assert_eq!(stats.failed, 0, "refills failed over to B: {stats:?}");
    assert_eq!(nodes.creations(A), 1, "A tried once, then skipped");
    pool.shutdown().await;
}
