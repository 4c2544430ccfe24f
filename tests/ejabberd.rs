//! Against a real ejabberd 23.01 (one node, started by `scripts/ejabberd.sh`,
//! which `scripts/test.sh` runs): the same prebind → attach → ping checks as
//! `tests/prosody.rs`, so the crate is shown to work with both servers. The
//! attach is made from a *separate* HTTP client with the returned
//! credentials, and the first payload is an XEP-0199 ping.
//!
//! ejabberd's differences from Prosody that these tests meet
//! (docs/protocol/ejabberd.md): `sid` is not repeated on later responses,
//! accounts offer PLAIN and SCRAM-SHA-1, a wrong password is a SASL
//! `<failure><not-authorized/>` without `terminate`, anonymous JIDs are numeric.
//!
//! The server's URL comes from `BOSH_PREBIND_TEST_EJABBERD_URL`. These tests
//! are `#[ignore]`d, so a plain `cargo test` reports them as ignored instead
//! of passing them; `scripts/test.sh` starts ejabberd and runs them with
//! `--include-ignored`, where a missing server fails them.
#![cfg(feature = "rustls")]

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bosh_prebind::bosh::{BodyType, BoshResponse};
use bosh_prebind::handshake::HandshakeError;
use bosh_prebind::{Credentials, Mechanism, PrebindError, PrebindLayer, PrebindSession};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use common::{
    alice, attach_and_ping, get, injected_session_json, json_field, ping_answered, ping_body, post,
};

/// `mod_bosh` `max_inactivity` as `scripts/ejabberd.sh` configures it
/// (`EJABBERD_BOSH_INACTIVITY`, default 60; ejabberd's own default is 30).
fn configured_inactivity() -> u32 {
    std::env::var("EJABBERD_BOSH_INACTIVITY")
        .map(|v| v.parse().expect("EJABBERD_BOSH_INACTIVITY is a number"))
        .unwrap_or(60)
}

fn ejabberd() -> Uri {
    common::server_url("BOSH_PREBIND_TEST_EJABBERD_URL")
}

/// A prebind answer: what the client sees, plus what the layer put into the
/// response extensions for outer middleware.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
    session: Option<PrebindSession>,
    error: Option<PrebindError>,
}

fn app() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    })
}

/// Prebinds through a fresh layer (inner app never reached).
async fn prebind(url: &Uri, credentials: Credentials, request: Request<Full<Bytes>>) -> Answer {
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(credentials)
        .layer(app());
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
    let session = response.extensions().get::<PrebindSession>().cloned();
    let error = response.extensions().get::<PrebindError>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
        session,
        error,
    }
}

/// An attribute of the root element, read with quick-xml.
fn attribute(xml: &str, name: &str) -> String {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return e
                    .try_get_attribute(name)
                    .unwrap()
                    .map(|a| {
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .into_owned()
                    })
                    .unwrap_or_else(|| panic!("no {name} in {xml}"));
            }
            quick_xml::events::Event::Eof => panic!("no root element in {xml}"),
            _ => {}
        }
    }
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn anonymous_post_answer_attaches_with_rid_plus_one() {
    let url = ejabberd();
    let answer = prebind(
        &url,
        Credentials::anonymous("anon.localhost"),
        post("<body xmlns='http://jabber.org/protocol/httpbind' to='anon.localhost' rid='5000' wait='60' hold='1'/>"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.content_type, "text/xml; charset=utf-8");
    let jid = attribute(&answer.body, "jid");
    assert!(jid.contains("@anon.localhost/"), "{jid}");
    // The client's rid was the creation rid: create, auth, restart, bind.
    let rid: u64 = attribute(&answer.body, "rid").parse().unwrap();
    assert_eq!(rid, 5003, "the XML answer carries the last used rid");
    assert_eq!(
        attribute(&answer.body, "inactivity"),
        configured_inactivity().to_string(),
        "the CM's inactivity is passed on"
    );
    let session = answer.session.expect("the session is in the extensions");
    assert_eq!(session.mechanism, "ANONYMOUS");
    assert_eq!(session.round_trips, 4);
    let sid = attribute(&answer.body, "sid");
    let response = attach_and_ping(&url, &sid, rid + 1, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn anonymous_get_answer_attaches_with_rid_as_given() {
    let url = ejabberd();
    let answer = prebind(&url, Credentials::anonymous("anon.localhost"), get()).await;
    let body = &answer.body;
    assert_eq!(answer.status, StatusCode::OK, "{body}");
    assert_eq!(answer.content_type, "application/json");
    let jid = json_field(body, "jid");
    assert!(jid.contains("@anon.localhost/"), "{jid}");
    assert_eq!(json_field(body, "bosh_service_url"), url.to_string());
    assert_eq!(
        json_field(body, "wait"),
        "59",
        "Converse attaches with wait 59"
    );
    let rid: u64 = json_field(body, "rid").parse().unwrap();
    let session = answer.session.expect("the session is in the extensions");
    assert_eq!(
        rid,
        session.last_rid + 1,
        "the JSON answer carries the next rid"
    );
    let response = attach_and_ping(&url, json_field(body, "sid"), rid, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn scram_sha1_account_prebinds_and_attaches() {
    // No mechanism forced: ejabberd offers PLAIN and SCRAM-SHA-1 and the
    // crate prefers SCRAM.
    let url = ejabberd();
    let answer = prebind(&url, alice(), get()).await;
    let body = &answer.body;
    assert_eq!(answer.status, StatusCode::OK, "{body}");
    let jid = json_field(body, "jid");
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
    let session = answer.session.expect("the session is in the extensions");
    assert_eq!(session.mechanism, "SCRAM-SHA-1");
    assert_eq!(
        session.round_trips, 5,
        "create, auth, response, restart, bind"
    );
    let rid: u64 = json_field(body, "rid").parse().unwrap();
    let response = attach_and_ping(&url, json_field(body, "sid"), rid, "localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn plain_account_prebinds_and_attaches() {
    let url = ejabberd();
    let answer = prebind(
        &url,
        Credentials::account("bob@localhost", "secret-bob")
            .unwrap()
            .with_mechanisms([Mechanism::Plain]),
        post("<body xmlns='http://jabber.org/protocol/httpbind' to='localhost'/>"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let jid = attribute(&answer.body, "jid");
    assert!(jid.starts_with("bob@localhost/"), "{jid}");
    let session = answer.session.expect("the session is in the extensions");
    assert_eq!(session.mechanism, "PLAIN");
    assert_eq!(session.round_trips, 4);
    let rid: u64 = attribute(&answer.body, "rid").parse().unwrap();
    let sid = attribute(&answer.body, "sid");
    let response = attach_and_ping(&url, &sid, rid + 1, "localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn wrong_password_is_a_prompt_not_authorized_502() {
    // ejabberd answers `<failure><not-authorized/></failure>` and leaves the
    // session open (no terminate): the crate must refuse at once, not wait
    // for more.
    let url = ejabberd();
    for mechanism in [Mechanism::ScramSha1, Mechanism::Plain] {
        let started = Instant::now();
        let answer = prebind(
            &url,
            Credentials::account("alice@localhost", "wrong")
                .unwrap()
                .with_mechanisms([mechanism]),
            get(),
        )
        .await;
        let elapsed = started.elapsed();
        eprintln!(
            "wrong password ({}): refused in {elapsed:?}",
            mechanism.name()
        );
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
        assert_eq!(answer.content_type, "application/json");
        assert_eq!(json_field(&answer.body, "condition"), "not-authorized");
        assert!(
            matches!(
                &answer.error,
                Some(PrebindError::Handshake(HandshakeError::AuthFailed { condition, .. }))
                    if condition == "not-authorized"
            ),
            "{:?}",
            answer.error
        );
        assert!(answer.session.is_none());
        // The handshake deadline is 10 s; a SASL failure is an answer, not a wait.
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }
    // XML clients get the same condition in a terminate body.
    let answer = prebind(
        &url,
        Credentials::account("alice@localhost", "wrong").unwrap(),
        post("<body xmlns='http://jabber.org/protocol/httpbind'/>"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert_eq!(attribute(&answer.body, "type"), "terminate");
    assert_eq!(attribute(&answer.body, "condition"), "not-authorized");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn a_wrong_sid_is_terminated_by_ejabberd() {
    // Pins the shape a browser meets when its session is gone: HTTP 200 and
    // `terminate` / `item-not-found`, parsed as such.
    let url = ejabberd();
    let response = attach_and_ping(&url, "no-such-sid", 1000, "anon.localhost").await;
    assert!(
        matches!(
            &response.body_type,
            BodyType::Terminate { condition: Some(condition), .. } if condition == "item-not-found"
        ),
        "{response:?}"
    );
    assert!(!ping_answered(&response));
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn injected_page_session_attaches_and_answers_a_ping() {
    let url = ejabberd();
    let json = &injected_session_json(&url).await;
    let jid = json_field(json, "jid");
    assert!(jid.contains("@anon.localhost/"), "{jid}");
    let rid: u64 = json_field(json, "rid").parse().unwrap();
    let response = attach_and_ping(&url, json_field(json, "sid"), rid, "anon.localhost").await;
    assert!(ping_answered(&response), "ping not answered: {response:?}");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn a_session_attaches_through_the_same_origin_passthrough() {
    let url = ejabberd();
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url).unwrap())
        .credentials(Credentials::anonymous("anon.localhost"))
        .bosh_passthrough("/bosh")
        .layer(app());
    let response = service.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(json_field(&json, "bosh_service_url"), "/bosh");
    let rid: u64 = json_field(&json, "rid").parse().unwrap();
    let request = Request::post("/bosh")
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(ping_body(
            json_field(&json, "sid"),
            rid,
            "anon.localhost",
        ))))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer = BoshResponse::parse(&body).unwrap();
    assert!(ping_answered(&answer), "ping not answered: {answer:?}");
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn two_concurrent_sessions_of_one_account_get_different_resources() {
    // No resource asked for: ejabberd makes one per session, so two tabs of
    // the same user do not kick each other (binding a bound resource would).
    let url = ejabberd();
    let service = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(alice())
        .layer(app());
    let (first, second) = tokio::join!(service.clone().oneshot(get()), service.oneshot(get()));
    let mut sessions = Vec::new();
    for response in [first.unwrap(), second.unwrap()] {
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        sessions.push(String::from_utf8(body.to_vec()).unwrap());
    }
    let (a, b) = (&sessions[0], &sessions[1]);
    assert!(json_field(a, "jid").starts_with("alice@localhost/"), "{a}");
    assert!(json_field(b, "jid").starts_with("alice@localhost/"), "{b}");
    assert_ne!(
        json_field(a, "jid"),
        json_field(b, "jid"),
        "different resources"
    );
    assert_ne!(json_field(a, "sid"), json_field(b, "sid"));
    // Both made before either is used: both must still be alive.
    for json in [a, b] {
        let rid: u64 = json_field(json, "rid").parse().unwrap();
        let response = attach_and_ping(&url, json_field(json, "sid"), rid, "localhost").await;
        assert!(
            ping_answered(&response),
            "ping not answered for {json}: {response:?}"
        );
    }
}

/// Every request body the layer sent to the CM, with the CM's answer.
type Exchanges = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// The default transport, recording each exchange; requests that are
/// `type='terminate'` are not forwarded when `drop_terminate` is set.
fn recording_transport(
    exchanges: Exchanges,
    drop_terminate: bool,
) -> impl bosh_prebind::BoshTransport {
    let inner = common::test_transport();
    service_fn(move |request: Request<Full<Bytes>>| {
        let (inner, exchanges) = (inner.clone(), exchanges.clone());
        async move {
            let (parts, body) = request.into_parts();
            let sent = body.collect().await.unwrap().to_bytes();
            let text = String::from_utf8(sent.to_vec()).unwrap();
            if drop_terminate && text.contains("type='terminate'") {
                exchanges.lock().unwrap().push((text, String::new()));
                return Err::<Response<Full<Bytes>>, bosh_prebind::BoxError>("dropped".into());
            }
            let response = inner
                .oneshot(Request::from_parts(parts, Full::new(sent)))
                .await?;
            let (parts, body) = response.into_parts();
            let received = body.collect().await?.to_bytes();
            exchanges
                .lock()
                .unwrap()
                .push((text, String::from_utf8_lossy(&received).into_owned()));
            Ok(Response::from_parts(parts, Full::new(received)))
        }
    })
}

/// A wrong-password prebind through a recording transport; returns the sid
/// of the session ejabberd made and the exchanges once the layer's
/// best-effort `terminate` went out (or was dropped).
async fn failed_login(url: &Uri, drop_terminate: bool) -> (String, Vec<(String, String)>) {
    let exchanges = Exchanges::default();
    let service = PrebindLayer::with_transport(
        url.clone(),
        recording_transport(exchanges.clone(), drop_terminate),
    )
    .credentials(Credentials::account("alice@localhost", "wrong").unwrap())
    .layer(app());
    let response = service.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // The terminate is sent on a spawned task: wait for it (bounded).
    let started = Instant::now();
    let exchanges = loop {
        let done = exchanges
            .lock()
            .unwrap()
            .iter()
            .any(|(sent, _)| sent.contains("type='terminate'"));
        if done {
            break exchanges.lock().unwrap().clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no terminate sent for the half-made session: {:?}",
            exchanges.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let sid = attribute(&exchanges[0].1, "sid");
    (sid, exchanges)
}

#[tokio::test]
#[ignore = "needs ejabberd: scripts/test.sh starts it and runs this"]
async fn a_refused_login_leaves_no_session_behind() {
    // ejabberd keeps the session open after a SASL <failure/> (it does not
    // terminate, unlike a stream error): the layer must end it itself
    // (XEP-0124 §12) instead of leaving it until `inactivity` runs out.
    let url = ejabberd();
    let (sid, exchanges) = failed_login(&url, false).await;
    let (terminate, answer) = exchanges.last().unwrap();
    assert!(terminate.contains(&format!("sid='{sid}'")), "{terminate}");
    assert!(!answer.is_empty(), "ejabberd answered the terminate");
    let rid: u64 = attribute(terminate, "rid").parse().unwrap();
    let probe = attach_and_ping(&url, &sid, rid + 1, "localhost").await;
    assert!(
        matches!(
            &probe.body_type,
            BodyType::Terminate { condition: Some(c), .. } if c == "item-not-found"
        ),
        "the session is gone: {probe:?}"
    );

    // Control: with the terminate dropped, the probe meets the live,
    // unauthenticated session, so the check above can tell the difference.
    let (sid, exchanges) = failed_login(&url, true).await;
    let rid: u64 = attribute(&exchanges.last().unwrap().0, "rid")
        .parse()
        .unwrap();
    let probe = attach_and_ping(&url, &sid, rid, "localhost").await;
    // ejabberd's answer to a stanza before authentication on a live session.
    assert!(
        matches!(
            &probe.body_type,
            BodyType::Terminate { condition: Some(c), stream_error: Some(e) }
                if c == "remote-stream-error" && e == "not-authorized"
        ),
        "without the terminate the session is still there: {probe:?}"
    );
}
