//! Against a real Prosody 13 with SASL2 (XEP-0388), Bind 2 (XEP-0386) and
//! FAST (XEP-0484) from prosody-modules (started by `scripts/prosody13.sh`,
//! which `scripts/test.sh` runs): prebind through the layer, check the round
//! trips the handshake counted, then attach from a *separate* HTTP client
//! with the returned sid and rid and ping (XEP-0199).
//!
//! The server's URL comes from `BOSH_PREBIND_TEST_PROSODY13_URL`. These tests
//! are `#[ignore]`d, so a plain `cargo test` reports them as ignored;
//! `scripts/test.sh` starts Prosody 13 and runs them with `--include-ignored`,
//! where a missing server fails them. Each FAST test uses its own random
//! user-agent id: tokens are bound to (user, user-agent id), so tests and
//! other users of the shared server never see each other's tokens.
#![cfg(feature = "rustls")]

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bosh_prebind::bosh::{BoshResponse, IqType};
use bosh_prebind::handshake::HandshakeError;
use bosh_prebind::{Credentials, FastToken, Mechanism, PrebindError, PrebindLayer, PrebindSession};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use rand::Rng;
use tower::{Layer, ServiceExt, service_fn};

use common::get;

fn prosody13() -> Uri {
    common::server_url("BOSH_PREBIND_TEST_PROSODY13_URL")
}

/// What one prebind through the layer gave.
struct Outcome {
    status: StatusCode,
    session: Option<PrebindSession>,
    error: Option<PrebindError>,
    /// The tokens the `on_fast_token` hook was given, with their bare JID.
    hooked: Vec<(String, FastToken)>,
}

/// Prebinds with `GET /prebind` (the inner app never reached).
async fn prebind_with(
    url: &Uri,
    credentials: Credentials,
    configure: impl FnOnce(
        PrebindLayer<bosh_prebind::HttpTransport>,
    ) -> PrebindLayer<bosh_prebind::HttpTransport>,
) -> Outcome {
    let app = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    });
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&hooked);
    let layer = PrebindLayer::new(bosh_prebind::BoshUrl::try_from(url.clone()).unwrap())
        .credentials(credentials)
        .on_fast_token(move |jid, token| {
            sink.lock().unwrap().push((jid.to_owned(), token.clone()));
        });
    let service = configure(layer).layer(app);
    let response = service.oneshot(get()).await.unwrap();
    let status = response.status();
    let session = response.extensions().get::<PrebindSession>().cloned();
    let error = response.extensions().get::<PrebindError>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    if let Some(session) = &session {
        println!(
            "{} via {}: {} round trips{}",
            session.jid,
            session.mechanism,
            session.round_trips,
            if session.fast_token.is_some() {
                ", with a FAST token"
            } else {
                ""
            }
        );
    } else {
        println!("refused: {status} {}", String::from_utf8_lossy(&body));
    }
    let hooked = hooked.lock().unwrap().clone();
    Outcome {
        status,
        session,
        error,
        hooked,
    }
}

async fn prebind(url: &Uri, credentials: Credentials) -> Outcome {
    prebind_with(url, credentials, |layer| layer).await
}

/// The session of a successful prebind.
fn session(outcome: &Outcome) -> &PrebindSession {
    assert_eq!(outcome.status, StatusCode::OK, "{:?}", outcome.error);
    outcome
        .session
        .as_ref()
        .expect("the session in the answer's extensions")
}

/// Attaches like a browser would: a new connection, the given sid and rid,
/// an XEP-0199 ping as the first payload. Returns the parsed response.
async fn attach_and_ping(url: &Uri, session: &PrebindSession, domain: &str) -> BoshResponse {
    let client = common::test_transport();
    let body = format!(
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='{}' sid='{}'>\
         <iq xmlns='jabber:client' type='get' id='ping_attach' to='{domain}'>\
         <ping xmlns='urn:xmpp:ping'/></iq></body>",
        session.next_rid(),
        session.sid
    );
    let request = Request::post(url.clone())
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.oneshot(request))
            .await
            .expect("the CM answers the attach within 10 s")
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    BoshResponse::parse(&bytes).unwrap()
}

async fn assert_attaches(url: &Uri, session: &PrebindSession, domain: &str) {
    let response = attach_and_ping(url, session, domain).await;
    assert!(
        response
            .iqs
            .iter()
            .any(|iq| iq.id.as_deref() == Some("ping_attach") && iq.kind == IqType::Result),
        "ping not answered for {}: {response:?}",
        session.jid
    );
}

fn alice() -> Credentials {
    Credentials::account("alice@localhost", "secret-alice").unwrap()
}

fn bob() -> Credentials {
    Credentials::account("bob@localhost", "secret-bob").unwrap()
}

/// A user-agent id of this test's own (UUID v4 form).
fn user_agent_id() -> String {
    let n: u128 = rand::thread_rng().r#gen();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..]
    )
}

/// The FAST refusal of a failed prebind, as the app sees it.
fn fast_refusal(outcome: &Outcome) -> (String, StatusCode) {
    match &outcome.error {
        Some(PrebindError::Handshake(HandshakeError::FastTokenRefused { condition, .. })) => {
            (condition.clone(), outcome.status)
        }
        other => panic!("expected a refused FAST token, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn sasl2_anonymous_binds_in_two_round_trips_and_attaches() {
    let url = prosody13();
    let outcome = prebind(&url, Credentials::anonymous("anon.localhost")).await;
    let session = session(&outcome);
    assert_eq!(session.mechanism, "ANONYMOUS");
    assert_eq!(session.round_trips, 2);
    assert!(session.jid.contains("@anon.localhost/"), "{}", session.jid);
    assert_attaches(&url, session, "anon.localhost").await;
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn sasl2_plain_binds_in_two_round_trips_and_attaches() {
    let url = prosody13();
    let outcome = prebind(&url, alice().with_mechanisms([Mechanism::Plain])).await;
    let session = session(&outcome);
    assert_eq!(session.mechanism, "PLAIN");
    assert_eq!(session.round_trips, 2);
    assert!(
        session.jid.starts_with("alice@localhost/"),
        "{}",
        session.jid
    );
    assert_attaches(&url, session, "localhost").await;
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn sasl2_scram_sha1_binds_in_three_round_trips_and_attaches() {
    let url = prosody13();
    let outcome = prebind(&url, bob()).await;
    let session = session(&outcome);
    assert_eq!(session.mechanism, "SCRAM-SHA-1");
    assert_eq!(session.round_trips, 3);
    assert!(session.jid.starts_with("bob@localhost/"), "{}", session.jid);
    assert_attaches(&url, session, "localhost").await;
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn classic_only_keeps_four_four_and_five_round_trips_on_the_same_server() {
    let url = prosody13();
    for (credentials, mechanism, round_trips, domain) in [
        (
            Credentials::anonymous("anon.localhost"),
            "ANONYMOUS",
            4,
            "anon.localhost",
        ),
        (
            alice().with_mechanisms([Mechanism::Plain]),
            "PLAIN",
            4,
            "localhost",
        ),
        (bob(), "SCRAM-SHA-1", 5, "localhost"),
    ] {
        let outcome = prebind_with(&url, credentials, |layer| layer.sasl2(false)).await;
        let session = session(&outcome);
        assert_eq!(session.mechanism, mechanism);
        assert_eq!(session.round_trips, round_trips, "{mechanism}");
        assert_attaches(&url, session, domain).await;
    }
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn a_fast_token_requested_with_the_password_logs_in_in_two_round_trips() {
    let url = prosody13();
    let ua = user_agent_id();
    // PLAIN + request-token: still 2 round trips.
    let outcome = prebind(
        &url,
        alice()
            .with_mechanisms([Mechanism::Plain])
            .request_fast_token(&ua),
    )
    .await;
    let first = session(&outcome);
    assert_eq!(first.round_trips, 2);
    let token = first.fast_token.clone().expect("a token was issued");
    assert!(token.token.starts_with("secret-token:"), "Prosody's format");
    assert!(token.expiry.is_some());
    assert_eq!(token.user_agent_id, ua);
    assert_eq!(
        outcome.hooked,
        [("alice@localhost".to_owned(), token.clone())],
        "the hook got the same token"
    );
    assert_attaches(&url, first, "localhost").await;

    // The token instead of the password.
    let outcome = prebind(
        &url,
        Credentials::fast_token("alice@localhost", &token.token, &token.user_agent_id).unwrap(),
    )
    .await;
    let fast = session(&outcome);
    assert_eq!(fast.mechanism, "HT-SHA-256-NONE");
    assert_eq!(fast.round_trips, 2);
    assert!(fast.jid.starts_with("alice@localhost/"), "{}", fast.jid);
    assert_attaches(&url, fast, "localhost").await;
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn a_rotated_token_is_surfaced_and_the_newest_one_works() {
    let url = prosody13();
    let ua = user_agent_id();
    // SCRAM + request-token: 3 round trips.
    let outcome = prebind(&url, alice().request_fast_token(&ua)).await;
    let login = session(&outcome);
    assert_eq!((login.mechanism, login.round_trips), ("SCRAM-SHA-1", 3));
    let t1 = login.fast_token.clone().expect("T1");

    // A FAST login asking for a new token: the server rotates.
    let outcome = prebind(
        &url,
        Credentials::fast_token("alice@localhost", &t1.token, &ua)
            .unwrap()
            .request_fast_token(&ua),
    )
    .await;
    let rotated = session(&outcome);
    assert_eq!(rotated.round_trips, 2);
    let t2 = rotated.fast_token.clone().expect("T2");
    assert_ne!(t2.token, t1.token);
    assert_eq!(outcome.hooked.len(), 1, "the hook is told of the rotation");
    assert_attaches(&url, rotated, "localhost").await;

    // The newest works, and using it retires the older one.
    let outcome = prebind(
        &url,
        Credentials::fast_token("alice@localhost", &t2.token, &ua).unwrap(),
    )
    .await;
    assert_eq!(session(&outcome).round_trips, 2);
    assert_attaches(&url, session(&outcome), "localhost").await;
    let outcome = prebind(
        &url,
        Credentials::fast_token("alice@localhost", &t1.token, &ua).unwrap(),
    )
    .await;
    assert_eq!(
        fast_refusal(&outcome),
        ("not-authorized".to_owned(), StatusCode::BAD_GATEWAY)
    );
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn an_invalidated_token_is_refused_with_a_distinct_error() {
    let url = prosody13();
    let ua = user_agent_id();
    let outcome = prebind(
        &url,
        bob()
            .with_mechanisms([Mechanism::Plain])
            .request_fast_token(&ua),
    )
    .await;
    let token = session(&outcome).fast_token.clone().expect("a token");
    let fast = || Credentials::fast_token("bob@localhost", &token.token, &ua).unwrap();

    // Log in one last time and invalidate the token in the same step.
    let outcome = prebind(&url, fast().invalidate_fast_token()).await;
    assert_eq!(session(&outcome).round_trips, 2);
    assert_attaches(&url, session(&outcome), "localhost").await;

    let outcome = prebind(&url, fast()).await;
    assert_eq!(
        fast_refusal(&outcome),
        ("not-authorized".to_owned(), StatusCode::BAD_GATEWAY)
    );
    assert!(outcome.hooked.is_empty());
    // Another user-agent id never matches a token either.
    let outcome = prebind(
        &url,
        Credentials::fast_token("bob@localhost", &token.token, user_agent_id()).unwrap(),
    )
    .await;
    assert_eq!(fast_refusal(&outcome).0, "not-authorized");
}

#[tokio::test]
#[ignore = "needs Prosody 13: scripts/test.sh starts it and runs this"]
async fn two_concurrent_sessions_of_one_account_both_stay_alive() {
    let url = prosody13();
    let ua = user_agent_id();
    let outcome = prebind(
        &url,
        alice()
            .with_mechanisms([Mechanism::Plain])
            .request_fast_token(&ua),
    )
    .await;
    let token = session(&outcome).fast_token.clone().expect("a token");
    let fast = || Credentials::fast_token("alice@localhost", &token.token, &ua).unwrap();

    // Same token, same (fixed) user-agent id; with and without a resource
    // asked for; and password logins asking for the same resource.
    for (a, b) in [
        (fast(), fast()),
        (fast().with_resource("web"), fast().with_resource("web")),
        (alice().with_resource("web"), alice().with_resource("web")),
    ] {
        let (first, second) = tokio::join!(prebind(&url, a), prebind(&url, b));
        let (first, second) = (session(&first), session(&second));
        assert_ne!(first.jid, second.jid, "two sessions, two resources");
        // Both attach once both exist: neither replaced the other.
        assert_attaches(&url, first, "localhost").await;
        assert_attaches(&url, second, "localhost").await;
    }
}
