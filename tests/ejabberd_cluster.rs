//! Against a real two-node ejabberd 23.01 cluster (started by
//! `scripts/ejabberd-cluster.sh up`, which `scripts/test.sh` runs): a session
//! pre-bound through one node is attached and pinged (XEP-0199) through the
//! other, by a *separate* HTTP client; two "app instances" (two layers, one
//! per node, each with its own same-origin pass-through) serve each other's
//! sessions; a stopped node makes the layer pointed at it fail fast while
//! the layer pointed at the other node keeps working; and one layer given
//! both nodes (`PrebindLayer::new_cluster`) keeps pre-binding through B while
//! A is down, then uses A again once it is back.
//!
//! How ejabberd does it (docs/protocol/ejabberd.md, "Two-node cluster"): a
//! BOSH session belongs to the node that created it; the other node finds the
//! sid in its replica of the `bosh` table and forwards over Erlang
//! distribution. When the owner stops, its sessions die.
//!
//! URLs come from `BOSH_PREBIND_TEST_CLUSTER_A_URL` / `_B_URL`. The tests are
//! `#[ignore]`d (a plain `cargo test` reports them as ignored); with
//! `--include-ignored` and no cluster they fail. The node-failure test stops
//! and restarts node A with `scripts/ejabberd-cluster.sh stop-node a` /
//! `start-node a`, so it holds [`CLUSTER`] exclusively: the other tests
//! never run while A is down (as does the failover test).
#![cfg(feature = "rustls")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosh_prebind::bosh::{BodyType, BoshResponse};
use bosh_prebind::{BoshUrl, Credentials, Mechanism, PrebindError, PrebindLayer, PrebindSession};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tokio::sync::RwLock;
use tower::{Layer, ServiceExt, service_fn};

use common::{alice, attach_and_ping, get, json_field, ping_answered, ping_body};

/// Shared by the tests that need both nodes up, exclusive for the one that
/// stops a node.
static CLUSTER: RwLock<()> = RwLock::const_new(());

fn node_a() -> Uri {
    common::server_url("BOSH_PREBIND_TEST_CLUSTER_A_URL")
}

fn node_b() -> Uri {
    common::server_url("BOSH_PREBIND_TEST_CLUSTER_B_URL")
}

fn anonymous() -> Credentials {
    Credentials::anonymous("anon.localhost")
}

type App = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    Response<bosh_prebind::PrebindBody<Full<Bytes>>>,
    Infallible,
>;

/// One "app instance": the layer pointed at `url`, with `credentials`, and a
/// same-origin pass-through on `/bosh` when `passthrough` is set.
fn instance(url: &Uri, credentials: Credentials, passthrough: bool) -> App {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let mut layer = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(credentials);
    if passthrough {
        layer = layer.bosh_passthrough("/bosh");
    }
    tower::util::BoxCloneService::new(layer.layer(app))
}

/// One app instance with both nodes in its list (no load balancer in
/// front): a short back-off so the test sees A come back quickly.
fn cluster_instance(credentials: Credentials, passthrough: bool) -> App {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let urls = [node_a(), node_b()].map(|url| BoshUrl::try_from(url).unwrap());
    let mut layer = PrebindLayer::new_cluster(urls)
        .unwrap()
        .credentials(credentials)
        .node_backoff(Duration::from_secs(1), Duration::from_secs(2));
    if passthrough {
        layer = layer.bosh_passthrough("/bosh");
    }
    tower::util::BoxCloneService::new(layer.layer(app))
}

/// A `GET /prebind` answer (JSON: the RID is the next one to use).
struct Prebound {
    status: StatusCode,
    body: String,
    session: Option<PrebindSession>,
    error: Option<PrebindError>,
}

impl Prebound {
    fn jid(&self) -> &str {
        json_field(&self.body, "jid")
    }
    fn sid(&self) -> &str {
        json_field(&self.body, "sid")
    }
    fn rid(&self) -> u64 {
        json_field(&self.body, "rid").parse().unwrap()
    }
    fn domain(&self) -> &str {
        let jid = self.jid();
        let host = &jid[jid.find('@').unwrap() + 1..];
        &host[..host.find('/').unwrap()]
    }
}

async fn prebind(service: &App) -> Prebound {
    let response = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let status = response.status();
    let session = response.extensions().get::<PrebindSession>().cloned();
    let error = response.extensions().get::<PrebindError>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Prebound {
        status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        session,
        error,
    }
}

/// Prebinds and checks it worked.
async fn prebind_ok(service: &App) -> Prebound {
    let answer = prebind(service).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.session.is_some(), "the session is in the extensions");
    answer
}

/// Attaches through an app instance's same-origin pass-through (`/bosh`).
async fn attach_and_ping_through(service: &App, sid: &str, rid: u64, domain: &str) -> BoshResponse {
    attach_and_ping_at(service, "/bosh", sid, rid, domain).await
}

/// Attaches through an app instance's pass-through path `path`.
async fn attach_and_ping_at(
    service: &App,
    path: &str,
    sid: &str,
    rid: u64,
    domain: &str,
) -> BoshResponse {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(ping_body(sid, rid, domain))))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), service.clone().oneshot(request))
        .await
        .expect("the pass-through answers within 10 s")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    BoshResponse::parse(&bytes).unwrap()
}

/// Prebinds through the layer pointed at `owner`, attaches and pings through
/// `other`'s URL, then pings again at the next RID through `owner`'s: the
/// session is the same whichever node fronts it.
async fn prebind_on_one_node_attach_on_the_other(owner: &Uri, other: &Uri) {
    for credentials in [
        anonymous(),
        alice().with_mechanisms([Mechanism::ScramSha1]),
        alice().with_mechanisms([Mechanism::Plain]),
    ] {
        let answer = prebind_ok(&instance(owner, credentials, false)).await;
        let mechanism = answer.session.as_ref().unwrap().mechanism;
        let (sid, rid, domain) = (answer.sid(), answer.rid(), answer.domain());
        let started = Instant::now();
        let response = attach_and_ping(other, sid, rid, domain).await;
        eprintln!(
            "{mechanism} session made through {owner}, pinged through {other} in {:?}",
            started.elapsed()
        );
        assert!(
            ping_answered(&response),
            "{mechanism}: ping through the other node not answered: {response:?}"
        );
        let response = attach_and_ping(owner, sid, rid + 1, domain).await;
        assert!(
            ping_answered(&response),
            "{mechanism}: ping through the owner not answered: {response:?}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn a_session_prebound_through_a_is_attached_through_b() {
    let (a, b) = (node_a(), node_b());
    let _cluster = CLUSTER.read().await;
    prebind_on_one_node_attach_on_the_other(&a, &b).await;
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn a_session_prebound_through_b_is_attached_through_a() {
    let (a, b) = (node_a(), node_b());
    let _cluster = CLUSTER.read().await;
    prebind_on_one_node_attach_on_the_other(&b, &a).await;
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn two_app_instances_serve_each_others_sessions_through_their_passthrough() {
    // Two instances of one web app behind a load balancer, each with the
    // layer pointed at its own node and the same-origin `/bosh`: the page
    // may get its session from one and send its next request to the other.
    let (a, b) = (node_a(), node_b());
    let _cluster = CLUSTER.read().await;
    let for_a = instance(&a, anonymous(), true);
    let for_b = instance(&b, alice(), true);
    for (name, maker, other) in [("A", &for_a, &for_b), ("B", &for_b, &for_a)] {
        let answer = prebind_ok(maker).await;
        assert_eq!(
            json_field(&answer.body, "bosh_service_url"),
            "/bosh",
            "the page is sent to the same-origin path"
        );
        let (sid, rid, domain) = (answer.sid(), answer.rid(), answer.domain());
        let response = attach_and_ping_through(other, sid, rid, domain).await;
        assert!(
            ping_answered(&response),
            "session of instance {name} through the other instance: {response:?}"
        );
        // And back through the instance that made it.
        let response = attach_and_ping_through(maker, sid, rid + 1, domain).await;
        assert!(
            ping_answered(&response),
            "session of instance {name} through its own instance: {response:?}"
        );
    }
}

// Node failure.

/// `scripts/ejabberd-cluster.sh ARGS…`; panics with its output on failure.
async fn cluster_script(args: &[&str]) -> Duration {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ejabberd-cluster.sh");
    let started = Instant::now();
    let output = tokio::process::Command::new(script)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        output.status.success(),
        "{script} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn socket_addr(url: &Uri) -> SocketAddr {
    let authority = url.authority().unwrap();
    format!("{}:{}", authority.host(), authority.port_u16().unwrap())
        .parse()
        .expect("the cluster listens on an IP address")
}

/// Polls (bounded) until connecting to `url`'s port gives `refused`
/// (`up == false`) or succeeds (`up == true`). Returns how long it took.
async fn wait_for_port(url: &Uri, up: bool) -> Duration {
    let addr = socket_addr(url);
    let started = Instant::now();
    loop {
        let connected = tokio::net::TcpStream::connect(addr).await.is_ok();
        if connected == up {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{addr} still {} after 60 s",
            if up { "refuses" } else { "accepts" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Brings node A back if the test fails while it is down, so a failure here
/// does not turn into failures of every later cluster test.
struct RestartOnPanic(bool);

impl Drop for RestartOnPanic {
    fn drop(&mut self) {
        if self.0 && std::thread::panicking() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ejabberd-cluster.sh");
            let _ = std::process::Command::new(script)
                .args(["start-node", "a"])
                .status();
        }
    }
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn a_stopped_node_fails_fast_and_the_other_keeps_serving() {
    let (a, b) = (node_a(), node_b());
    let _cluster = CLUSTER.write().await;
    // The two app instances live through the whole failure, like a web
    // server would: their pools saw node A before it went away.
    let via_a = instance(&a, anonymous(), false);
    let via_b = instance(&b, alice(), false);
    let before = prebind_ok(&via_a).await;
    prebind_ok(&via_b).await;

    let mut guard = RestartOnPanic(true);
    let took = cluster_script(&["stop-node", "a"]).await;
    let refused_after = wait_for_port(&a, false).await;
    eprintln!("node A stopped in {took:?}; port refused {refused_after:?} later");

    // New prebinds through A: a clear 502, at once (not the 10 s deadline).
    for attempt in 1..=3 {
        let started = Instant::now();
        let answer = prebind(&via_a).await;
        let elapsed = started.elapsed();
        eprintln!(
            "prebind through stopped node A (attempt {attempt}): HTTP {} in {elapsed:?}",
            answer.status
        );
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
        assert_eq!(
            json_field(&answer.body, "condition"),
            "remote-connection-failed"
        );
        assert!(
            matches!(answer.error, Some(PrebindError::Unreachable(_))),
            "{:?}",
            answer.error
        );
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    // B keeps working: prebind, attach and ping.
    let started = Instant::now();
    let answer = prebind_ok(&via_b).await;
    eprintln!(
        "prebind through node B while A is down: {:?}",
        started.elapsed()
    );
    let response = attach_and_ping(&b, answer.sid(), answer.rid(), answer.domain()).await;
    assert!(
        ping_answered(&response),
        "ping through B not answered: {response:?}"
    );

    // The session A owned is gone: through B, a terminate (item-not-found,
    // or remote-stream-error / internal-server-error while A went down).
    let response = attach_and_ping(&b, before.sid(), before.rid(), before.domain()).await;
    assert!(
        matches!(
            &response.body_type,
            BodyType::Terminate { condition: Some(c), .. }
                if ["item-not-found", "remote-stream-error", "internal-server-error"].contains(&c.as_str())
        ),
        "A's session through B after A stopped: {response:?}"
    );

    let took = cluster_script(&["start-node", "a"]).await;
    let answered_after = wait_for_port(&a, true).await;
    guard.0 = false;
    eprintln!("node A restarted and rejoined in {took:?}; port answered {answered_after:?} later");

    // The same layer pointed at A works again, and its new session is usable
    // through both nodes.
    let started = Instant::now();
    let answer = prebind_ok(&via_a).await;
    eprintln!(
        "first prebind through restarted node A: {:?}",
        started.elapsed()
    );
    let (sid, rid, domain) = (answer.sid(), answer.rid(), answer.domain());
    let response = attach_and_ping(&a, sid, rid, domain).await;
    assert!(
        ping_answered(&response),
        "ping through A not answered: {response:?}"
    );
    let response = attach_and_ping(&b, sid, rid + 1, domain).await;
    assert!(
        ping_answered(&response),
        "ping through B not answered: {response:?}"
    );
}

// One layer, both nodes.

/// Attaches to a session through the URL the layer handed out: the node's
/// own URL, or the instance's pass-through path for it.
async fn attach_as_told(service: &App, answer: &Prebound) -> BoshResponse {
    let url = json_field(&answer.body, "bosh_service_url");
    let (sid, rid, domain) = (answer.sid(), answer.rid(), answer.domain());
    if url.starts_with('/') {
        attach_and_ping_at(service, url, sid, rid, domain).await
    } else {
        attach_and_ping(&url.parse().unwrap(), sid, rid, domain).await
    }
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn one_layer_with_both_nodes_spreads_prebinds_and_each_session_attaches_where_told() {
    let (a, b) = (node_a(), node_b());
    let _cluster = CLUSTER.read().await;
    for passthrough in [false, true] {
        let service = cluster_instance(anonymous(), passthrough);
        let mut told = Vec::new();
        for _ in 0..4 {
            let answer = prebind_ok(&service).await;
            let url = json_field(&answer.body, "bosh_service_url").to_owned();
            let response = attach_as_told(&service, &answer).await;
            assert!(ping_answered(&response), "through {url}: {response:?}");
            told.push(url);
        }
        told.sort();
        told.dedup();
        let expected = if passthrough {
            vec!["/bosh/0".to_owned(), "/bosh/1".to_owned()]
        } else {
            vec![a.to_string(), b.to_string()]
        };
        assert_eq!(told, expected, "round-robin over both nodes");
    }
}

#[tokio::test]
#[ignore = "needs the ejabberd cluster: scripts/test.sh starts it and runs this"]
async fn one_layer_with_both_nodes_keeps_prebinding_through_b_while_a_is_down() {
    let (a, b) = (node_a(), node_b());
    let _cluster = CLUSTER.write().await;
    let service = cluster_instance(anonymous(), true);
    for _ in 0..2 {
        prebind_ok(&service).await;
    }

    let mut guard = RestartOnPanic(true);
    let took = cluster_script(&["stop-node", "a"]).await;
    let refused_after = wait_for_port(&a, false).await;
    eprintln!("node A stopped in {took:?}; port refused {refused_after:?} later");

    // Every prebind succeeds, at B, well within the deadline; the first one
    // that meets A's refusal is made at B at once.
    let mut slowest = Duration::ZERO;
    for attempt in 0..20 {
        let started = Instant::now();
        let answer = prebind(&service).await;
        let elapsed = started.elapsed();
        slowest = slowest.max(elapsed);
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "prebind {attempt} while A is down: {}",
            answer.body
        );
        assert_eq!(json_field(&answer.body, "bosh_service_url"), "/bosh/1");
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
        if attempt % 5 == 0 {
            let response = attach_as_told(&service, &answer).await;
            assert!(ping_answered(&response), "{response:?}");
        }
    }
    eprintln!("20 prebinds while A was down: all through B, slowest {slowest:?}");

    let took = cluster_script(&["start-node", "a"]).await;
    let answered_after = wait_for_port(&a, true).await;
    guard.0 = false;
    eprintln!("node A restarted and rejoined in {took:?}; port answered {answered_after:?} later");

    // Once its back-off (1 s, at most 2 s here) is over, A is probed and
    // used again; its sessions attach through the path handed out.
    let started = Instant::now();
    let mut made_at_a = 0;
    while made_at_a < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "A not used again within 15 s of its restart"
        );
        let answer = prebind_ok(&service).await;
        if json_field(&answer.body, "bosh_service_url") == "/bosh/0" {
            made_at_a += 1;
            let response = attach_as_told(&service, &answer).await;
            assert!(ping_answered(&response), "A's new session: {response:?}");
            // And through B's URL too: the cluster forwards to the owner.
            let response =
                attach_and_ping(&b, answer.sid(), answer.rid() + 1, answer.domain()).await;
            assert!(
                ping_answered(&response),
                "A's new session via B: {response:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "A used again {:?} after its port answered",
        started.elapsed()
    );
}
