//! Against a real Prosody (started by `scripts/prosody.sh`, which
//! `scripts/test.sh` runs): prebind through the layer, then attach from a
//! *separate* HTTP client with the returned credentials and ping (XEP-0199).
//!
//! The server's URL comes from `BOSH_PREBIND_TEST_BOSH_URL`. These tests are
//! `#[ignore]`d, so a plain `cargo test` reports them as ignored instead of
//! passing them; `scripts/test.sh` starts Prosody and runs them with
//! `--include-ignored`, where a missing server fails them.
#![cfg(feature = "rustls")]

mod common;

use std::convert::Infallible;

use bosh_prebind::bosh::BoshResponse;
use bosh_prebind::{Credentials, Mechanism, PrebindLayer};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use common::{
    alice, attach_and_ping, get, injected_session_json, json_field, ping_answered, post, prosody,
};

/// Prebinds through the layer (inner app never reached) and returns the
/// answer's status, content type and body.
async fn prebind(
    url: &Uri,
    credentials: Credentials,
    request: Request<Full<Bytes>>,
) -> (StatusCode, String, String) {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(credentials)
        .layer(app);
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "no-store",
        "a session must never be cached"
    );
    let status = response.status();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// What a classic XML answer carries.
struct XmlAnswer {
    jid: String,
    sid: String,
    rid: u64,
}

fn attribute(xml: &str, name: &str) -> String {
    let root = bosh_prebind_test_attr(xml, name);
    root.unwrap_or_else(|| panic!("no {name} in {xml}"))
}

/// Reads an attribute of the root element with quick-xml.
fn bosh_prebind_test_attr(xml: &str, name: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return e.try_get_attribute(name).unwrap().map(|a| {
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned()
                });
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

fn xml_answer(body: &str) -> XmlAnswer {
    XmlAnswer {
        jid: attribute(body, "jid"),
        sid: attribute(body, "sid"),
        rid: attribute(body, "rid").parse().unwrap(),
    }
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn anonymous_post_answer_attaches_with_rid_plus_one() {
    let url = prosody();
    let (status, content_type, body) = prebind(
        &url,
        Credentials::anonymous("anon.localhost"),
        post("<body xmlns='http://jabber.org/protocol/httpbind' to='anon.localhost' rid='5000' wait='60' hold='1'/>"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "text/xml; charset=utf-8");
    let answer = xml_answer(&body);
    assert!(answer.jid.contains("@anon.localhost/"), "{}", answer.jid);
    // The client's rid was the creation rid: create, auth, restart, bind.
    assert_eq!(answer.rid, 5003, "the XML answer carries the last used rid");
    let response = attach_and_ping(&url, &answer.sid, answer.rid + 1, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn anonymous_get_answer_attaches_with_rid_as_given() {
    let url = prosody();
    let (status, content_type, body) =
        prebind(&url, Credentials::anonymous("anon.localhost"), get()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/json");
    let jid = json_field(&body, "jid");
    assert!(jid.contains("@anon.localhost/"), "{jid}");
    assert_eq!(json_field(&body, "bosh_service_url"), url.to_string());
    assert_eq!(
        json_field(&body, "wait"),
        "59",
        "Converse attaches with wait 59"
    );
    let rid: u64 = json_field(&body, "rid").parse().unwrap();
    let response = attach_and_ping(&url, json_field(&body, "sid"), rid, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn plain_account_prebinds_and_attaches() {
    let url = prosody();
    let (status, _, body) = prebind(
        &url,
        alice().with_mechanisms([Mechanism::Plain]),
        post("<body xmlns='http://jabber.org/protocol/httpbind' to='localhost'/>"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = xml_answer(&body);
    assert!(answer.jid.starts_with("alice@localhost/"), "{}", answer.jid);
    let response = attach_and_ping(&url, &answer.sid, answer.rid + 1, "localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn scram_sha1_account_prebinds_and_attaches() {
    let url = prosody();
    let (status, _, body) = prebind(
        &url,
        Credentials::account("bob@localhost", "secret-bob")
            .unwrap()
            .with_mechanisms([Mechanism::ScramSha1, Mechanism::ScramSha256]),
        get(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jid = json_field(&body, "jid");
    assert!(jid.starts_with("bob@localhost/"), "{jid}");
    let rid: u64 = json_field(&body, "rid").parse().unwrap();
    let response = attach_and_ping(&url, json_field(&body, "sid"), rid, "localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn wrong_password_is_refused_by_the_server() {
    let url = prosody();
    let (status, _, body) = prebind(
        &url,
        Credentials::account("alice@localhost", "wrong").unwrap(),
        get(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(json_field(&body, "condition"), "not-authorized");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn resending_the_last_used_rid_replays_the_bind_and_drops_the_ping() {
    // Pins the contract: the XML answer's rid is the LAST used one. A client
    // that attaches with it unchanged (instead of rid + 1) gets the cached
    // bind response back and its first stanza is silently lost.
    let url = prosody();
    let (_, _, body) = prebind(
        &url,
        Credentials::anonymous("anon.localhost"),
        post("<body xmlns='http://jabber.org/protocol/httpbind'/>"),
    )
    .await;
    let answer = xml_answer(&body);
    let replayed = attach_and_ping(&url, &answer.sid, answer.rid, "anon.localhost").await;
    assert!(!ping_answered(&replayed), "the ping must not be processed");
    assert!(
        replayed
            .iqs
            .iter()
            .any(|iq| iq.bound_jid.as_deref() == Some(answer.jid.as_str())),
        "Prosody replays the cached bind result: {replayed:?}"
    );
    // The session is still there for the right rid.
    let response = attach_and_ping(&url, &answer.sid, answer.rid + 1, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn an_unknown_domain_is_refused_without_asking_the_server() {
    let url = prosody();
    let (status, _, body) = prebind(
        &url,
        Credentials::anonymous("anon.localhost"),
        post("<body xmlns='http://jabber.org/protocol/httpbind' to='no-such-host.invalid'/>"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(attribute(&body, "condition"), "host-unknown");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn injected_page_session_attaches_and_answers_a_ping() {
    let url = prosody();
    let json = &injected_session_json(&url).await;
    let rid: u64 = json_field(json, "rid").parse().unwrap();
    let response = attach_and_ping(&url, json_field(json, "sid"), rid, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn a_session_attaches_through_the_same_origin_passthrough() {
    let url = prosody();
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url).unwrap())
        .credentials(Credentials::anonymous("anon.localhost"))
        .bosh_passthrough("/http-bind")
        .layer(app);
    let response = service.clone().oneshot(get()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(json_field(&json, "bosh_service_url"), "/http-bind");
    let rid: u64 = json_field(&json, "rid").parse().unwrap();
    let ping = format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{}'>\
         <iq xmlns='jabber:client' type='get' id='ping_attach' to='anon.localhost'>\
         <ping xmlns='urn:xmpp:ping'/></iq></body>",
        json_field(&json, "sid")
    );
    let request = Request::post("/http-bind")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(ping)))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer = BoshResponse::parse(&body).unwrap();
    assert!(ping_answered(&answer), "ping not answered: {answer:?}");
}

/// docs/design.md §6: 1000 prebinds at concurrency 64 through one layer, zero
/// failures, then 50 of the sessions, chosen at random, attached and pinged.
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_prebinds_at_concurrency_64_all_succeed_and_attach() {
    use rand::seq::SliceRandom;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    let url = prosody();
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(Credentials::anonymous("anon.localhost"))
        .layer(app);
    let concurrency = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let permit = Arc::clone(&concurrency).acquire_owned().await.unwrap();
        let service = service.clone();
        tasks.spawn(async move {
            let response = service.oneshot(get()).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            drop(permit);
            (status, String::from_utf8(body.to_vec()).unwrap())
        });
    }
    let mut sessions = Vec::new();
    let mut failures = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        if status == StatusCode::OK {
            sessions.push(body);
        } else {
            failures.push((status, body));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(sessions.len(), 1000);
    let sids: std::collections::HashSet<_> =
        sessions.iter().map(|s| json_field(s, "sid")).collect();
    assert_eq!(sids.len(), 1000, "every prebind is its own session");

    let sample: Vec<_> = sessions
        .choose_multiple(&mut rand::thread_rng(), 50)
        .collect();
    for json in sample {
        let rid: u64 = json_field(json, "rid").parse().unwrap();
        let response = attach_and_ping(&url, json_field(json, "sid"), rid, "anon.localhost").await;
        assert!(ping_answered(&response), "ping not answered: {response:?}");
    }
}

// HTTPS to the CM: `scripts/prosody.sh` also serves BOSH over TLS with a
// certificate from a throw-away CA (`BOSH_PREBIND_TEST_CA_FILE`).

fn https_url() -> Uri {
    common::server_url("BOSH_PREBIND_TEST_BOSH_HTTPS_URL")
}

fn ca_file() -> String {
    std::env::var("BOSH_PREBIND_TEST_CA_FILE")
        .expect("BOSH_PREBIND_TEST_CA_FILE is set by scripts/test.sh")
}

/// A layer over HTTPS trusting `transport`'s roots; the GET answer's parts.
async fn https_prebind(url: &Uri, transport: bosh_prebind::HttpTransport) -> (StatusCode, String) {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let service = PrebindLayer::with_transport(url.clone(), transport)
        .credentials(Credentials::anonymous("anon.localhost"))
        .handshake_timeout(std::time::Duration::from_secs(5))
        .layer(app);
    let response = service.oneshot(get()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn trusting_test_ca() -> bosh_prebind::HttpTransport {
    bosh_prebind::transport::HttpTransportBuilder::new()
        .ca_file(ca_file())
        .unwrap()
        .build()
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn https_session_is_made_attached_and_pinged() {
    let url = https_url();
    assert_eq!(url.scheme_str(), Some("https"));
    // The URL parses as a BoshUrl (the rustls feature is on) for `new` too.
    let _ = PrebindLayer::new(url.to_string().parse().unwrap());
    let (status, body) = https_prebind(&url, trusting_test_ca()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jid = json_field(&body, "jid");
    assert!(jid.contains("@anon.localhost/"), "{jid}");
    let sid = json_field(&body, "sid").to_owned();
    let rid: u64 = json_field(&body, "rid").parse().unwrap();
    // Attached over HTTPS too, by a separate client.
    let response = attach_and_ping(&url, &sid, rid, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn https_with_an_untrusted_certificate_is_a_clear_502() {
    let url = https_url();
    // The public roots only: the test CA is not among them.
    let started = std::time::Instant::now();
    let (status, body) = https_prebind(&url, bosh_prebind::http_transport()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(json_field(&body, "condition"), "remote-connection-failed");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn https_to_the_wrong_host_name_is_a_clear_502() {
    // A certificate from the trusted test CA, but for `wrong.example` while
    // the URL says `localhost` (scripts/prosody.sh serves it on its own port).
    let url = common::server_url("BOSH_PREBIND_TEST_BOSH_HTTPS_WRONG_HOST_URL");
    let started = std::time::Instant::now();
    let (status, body) = https_prebind(&url, trusting_test_ca()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(json_field(&body, "condition"), "remote-connection-failed");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn plain_http_to_the_tls_port_is_a_clear_502() {
    let https = https_url();
    let plain: Uri = format!("http://{}{}", https.authority().unwrap(), https.path())
        .parse()
        .unwrap();
    let started = std::time::Instant::now();
    let (status, body) = https_prebind(&plain, trusting_test_ca()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(json_field(&body, "condition"), "remote-connection-failed");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// The warm pool against the real server: a pooled session idles at the CM
/// with no request held (nothing polls it), so check that Prosody keeps it
/// as XEP-0124 §7 says it must until `inactivity` runs out: aged 20 s in
/// the pool (a third of Prosody's 60 s, beyond ejabberd's 30 s / 2), it is
/// handed out, attaches and answers a ping, in both answer conventions.
#[tokio::test]
#[ignore = "needs Prosody: scripts/test.sh starts it and runs this"]
async fn a_session_aged_20_s_in_the_warm_pool_attaches_and_pings() {
    use std::time::Duration;
    let url = prosody();
    for (credentials, domain) in [
        (Credentials::anonymous("anon.localhost"), "anon.localhost"),
        (alice(), "localhost"),
    ] {
        let app = service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
        });
        let layer = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
            .credentials(credentials)
            .pool(2);
        let handle = layer.pool_handle();
        let service = layer.layer(app);
        // Three requests in a row: demand for two pooled sessions.
        for _ in 0..3 {
            let response = service.clone().oneshot(get()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let filled = tokio::time::timeout(Duration::from_secs(10), async {
            while handle.stats().size < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            filled.is_ok(),
            "the pool did not fill: {:?}",
            handle.stats()
        );
        let hits_before = handle.stats().hits;
        tokio::time::sleep(Duration::from_secs(20)).await;

        // GET → JSON, the next RID.
        let response = service.clone().oneshot(get()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        let rid: u64 = json_field(&body, "rid").parse().unwrap();
        let pinged = attach_and_ping(&url, json_field(&body, "sid"), rid, domain).await;
        assert!(ping_answered(&pinged), "ping not answered: {pinged:?}");

        // POST → XML, the last used RID.
        let response = service
            .clone()
            .oneshot(post("<body xmlns='http://jabber.org/protocol/httpbind'/>"))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let answer = xml_answer(std::str::from_utf8(&body).unwrap());
        let pinged = attach_and_ping(&url, &answer.sid, answer.rid + 1, domain).await;
        assert!(ping_answered(&pinged), "ping not answered: {pinged:?}");

        let stats = handle.stats();
        assert_eq!(
            stats.hits,
            hits_before + 2,
            "both came from the pool: {stats:?}"
        );
        assert_eq!(stats.expired, 0, "{stats:?}");
        handle.shutdown().await;
    }
}
