//! The fake CM itself stays honest: a client that breaks the protocol is
//! caught, faults hit every session at the same step, and it also works
//! over real TCP.

use bosh_prebind::test_util::{FakeCm, Fault, Termination};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use tower::ServiceExt;

use crate::common::get;
use crate::harness::*;

/// A BOSH request straight to the fake, as the layer would send it.
fn to_cm(body: String) -> Request<Full<Bytes>> {
    Request::post(CM_URL)
        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn creation(rid: u64) -> String {
    format!(
        "<body xmlns='{NS_HTTPBIND}' rid='{rid}' to='{ANON}' wait='59' hold='1' \
         ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh' xml:lang='en' \
         content='text/xml; charset=utf-8'/>"
    )
}

/// Sends `body` to `cm` on a task of its own; true when the fake panicked.
async fn panics(cm: &FakeCm, body: String) -> bool {
    let call = cm.clone().oneshot(to_cm(body));
    tokio::spawn(call).await.err().is_some_and(|e| e.is_panic())
}

#[tokio::test]
async fn a_rid_that_is_not_exactly_the_next_is_a_protocol_violation() {
    let cm = anonymous_cm().build();
    assert!(!panics(&cm, creation(10)).await);
    let skipped = format!("<body xmlns='{NS_HTTPBIND}' rid='12' sid='{SID}'/>");
    assert!(
        panics(&cm, skipped).await,
        "a skipped RID must fail the test"
    );
    let replayed = format!("<body xmlns='{NS_HTTPBIND}' rid='10' sid='{SID}'/>");
    assert!(
        panics(&cm, replayed).await,
        "a repeated RID must fail the test"
    );
    let violations = cm.violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations[0].contains("exactly one"), "{violations:?}");
}

#[tokio::test]
async fn unknown_sessions_and_bad_creations_are_protocol_violations() {
    let cm = anonymous_cm().build();
    let other = format!("<body xmlns='{NS_HTTPBIND}' rid='11' sid='not-a-session'/>");
    assert!(panics(&cm, other).await);
    let wrong_domain = creation(10).replace(ANON, "elsewhere.example");
    assert!(panics(&cm, wrong_domain).await);
    let no_rid = format!("<body xmlns='{NS_HTTPBIND}' sid='{SID}'/>");
    assert!(panics(&cm, no_rid).await);
    assert_eq!(cm.violations().len(), 3);
    assert_eq!(cm.sessions_created(), 0);
}

#[tokio::test]
async fn a_terminate_must_carry_the_next_rid_of_a_live_session() {
    let cm = anonymous_cm().build();
    assert!(!panics(&cm, creation(10)).await);
    let early = format!("<body xmlns='{NS_HTTPBIND}' rid='13' sid='{SID}' type='terminate'/>");
    assert!(panics(&cm, early).await);
    let right = format!("<body xmlns='{NS_HTTPBIND}' rid='11' sid='{SID}' type='terminate'/>");
    assert!(!panics(&cm, right).await);
    assert_eq!(
        cm.terminations(),
        [Termination {
            sid: SID.to_owned(),
            rid: 11
        }]
    );
    let after = format!("<body xmlns='{NS_HTTPBIND}' rid='12' sid='{SID}'/>");
    assert!(panics(&cm, after).await, "the session is over");
    assert_eq!(cm.requests().len(), 2, "terminations are listed apart");
    assert_eq!(cm.received(), 4);
}

#[tokio::test]
async fn a_fault_hits_every_session_at_the_same_step_and_sessions_get_their_own_sid() {
    let cm = anonymous_cm()
        .fault_at(3, Fault::terminate("system-shutdown"))
        .build();
    let layer = anonymous_layer(&cm);
    for _ in 0..2 {
        let answer = send(&layer, get()).await;
        answer.assert_failure(Format::Json, StatusCode::BAD_GATEWAY, "system-shutdown");
    }
    let sessions = cm.sessions();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].sid, SID);
    assert_ne!(sessions[1].sid, SID);
    assert!(sessions.iter().all(|s| s.authenticated && s.jid.is_none()));
    assert_eq!(cm.requests().len(), 8);
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn without_kept_requests_only_the_counters_count() {
    let cm = anonymous_cm().keep_requests(false).max_sessions(1).build();
    let layer = anonymous_layer(&cm);
    for _ in 0..3 {
        send(&layer, get()).await.assert_json_success();
    }
    assert!(cm.requests().is_empty());
    assert_eq!(cm.received(), 12);
    assert_eq!(cm.sessions_created(), 3);
    assert_eq!(cm.sessions().len(), 1, "the oldest sessions were forgotten");
}

#[cfg(feature = "client")]
#[tokio::test]
async fn over_tcp_the_default_transport_prebinds_against_the_fake() {
    use bosh_prebind::PrebindLayer;

    let cm = alice_cm(&["SCRAM-SHA-1", "PLAIN"]).build();
    let url = cm.spawn_tcp().await.unwrap();
    let layer = PrebindLayer::new(url.to_string().parse().unwrap()).credentials(alice());
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
        }),
    );
    let response = service.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(cm.mechanism().as_deref(), Some("SCRAM-SHA-1"));
    assert_eq!(cm.requests().len(), 5);
    assert_eq!(cm.requests()[0].uri.path(), "/http-bind");
    assert_eq!(cm.violations(), Vec::<String>::new());
}
