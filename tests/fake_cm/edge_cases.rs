//! Settings and inputs at their extremes: nothing panics, nothing is
//! injected where it cannot be read, and every refusal says how to succeed.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

use crate::common::get;
use crate::harness::*;

/// `Duration::MAX` means "no timeout", not an `Instant` overflow: on the
/// prebind path, on a page and on the same-origin BOSH path (whose held
/// requests may take `max_wait` + the request timeout).
#[tokio::test]
async fn duration_max_timeouts_do_not_panic() {
    let cm = anonymous_cm().build();
    let layer = anonymous_layer(&cm)
        .request_timeout(Duration::MAX)
        .handshake_timeout(Duration::MAX)
        .inject_path(PAGE_PATH)
        .bosh_passthrough("/http-bind");
    let answer = send(&layer, get()).await;
    answer.assert_json_success();
    let (sid, rid) = (answer.json_str("sid"), answer.json_num("rid"));

    let page = send(
        &layer,
        Request::get(PAGE_PATH).body(Full::default()).unwrap(),
    )
    .await;
    assert!(page.body.contains("\"sid\""), "{}", page.body);

    let ping = format!(
        "<body rid='{rid}' sid='{sid}' xmlns='{NS_HTTPBIND}'><iq type='get' id='p' \
         xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq></body>"
    );
    let service = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    }));
    let forwarded = service
        .oneshot(
            Request::post("/http-bind")
                .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(Full::new(Bytes::from(ping)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(forwarded.status(), StatusCode::OK);
    let body = forwarded.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("<iq"),
        "the ping's result came back through the pass-through"
    );
    assert_eq!(cm.violations(), Vec::<String>::new());
}

/// The longest handshake (SCRAM whose server-final comes as a
/// `<challenge/>`, a required session IQ, features fetched by empty polls)
/// from the largest first RID a client may choose still leaves 2^32 RIDs
/// for the session below 2^53 (XEP-0124 §14.1); one more is refused, and
/// the message says the limit.
#[tokio::test]
async fn the_longest_handshake_from_the_largest_first_rid_leaves_the_session_room() {
    use bosh_prebind::handshake::HandshakeConfig;
    use bosh_prebind::test_util::{SessionFeature, StreamFeatures};

    let first = HandshakeConfig::max_first_rid();
    assert_eq!(first, (1 << 53) - (1 << 32));
    let cm = alice_cm(&["SCRAM-SHA-1"])
        .server_final_in_challenge()
        .session_feature(SessionFeature::Required)
        .stream_features(StreamFeatures::Late)
        .build();
    let layer = cm.layer().credentials(alice());
    let answer = send(
        &layer,
        crate::common::post(&format!("<body xmlns='{NS_HTTPBIND}' rid='{first}'/>")),
    )
    .await;
    let body = answer.assert_xml_success();
    let rids = cm.rids();
    // create, poll, auth, client-final, empty response, restart, poll,
    // bind, session.
    assert_eq!(rids.len(), 9, "{rids:?}");
    assert!(rids.windows(2).all(|w| w[1] == w[0] + 1));
    let last: u64 = body.attr("rid").unwrap().parse().unwrap();
    assert_eq!(last, first + 8);
    assert!(last + (1 << 32) - 9 < 1 << 53, "room for the session");
    assert_eq!(cm.violations(), Vec::<String>::new());

    let too_large = first + 1;
    let refused = send(
        &layer,
        crate::common::post(&format!("<body xmlns='{NS_HTTPBIND}' rid='{too_large}'/>")),
    )
    .await;
    refused.assert_failure(Format::Xml, StatusCode::BAD_REQUEST, "bad-request");
    let message = refused.error.unwrap().to_string();
    assert!(
        message.contains(&first.to_string()) && message.contains("2^53 - 2^32"),
        "{message}"
    );
}

/// `max_concurrent_derivations` at its extremes: 0 means 1, and anything
/// above tokio's semaphore limit is clamped (it panicked there); a SCRAM
/// login still derives its keys and succeeds.
#[tokio::test]
async fn extreme_derivation_limits_do_not_panic() {
    for limit in [0, usize::MAX] {
        let cm = alice_cm(&["SCRAM-SHA-1"]).build();
        let layer = cm
            .layer()
            .credentials(alice())
            .scram_cache(0)
            .max_concurrent_derivations(limit);
        send(&layer, get()).await.assert_json_success();
        assert_eq!(cm.violations(), Vec::<String>::new(), "{limit}");
    }
}
