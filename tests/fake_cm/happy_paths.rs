//! Happy paths: both answer formats and their RID conventions, and the
//! protocol variations a CM may show (late features, the session IQ, an XML
//! declaration, clamped wait/hold, requested resources).

use bosh_prebind::Credentials;
use bosh_prebind::handshake::HandshakeConfig;
use bosh_prebind::test_util::{SessionFeature, StreamFeatures};

use crate::common::{get, post};
use crate::harness::*;

// ---------------------------------------------------------------------------
// The two answer formats and their RID conventions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn post_returns_xml_with_the_last_used_rid_and_the_bound_jid() {
    let cm = anonymous_cm().build();
    let answer = send(
        &anonymous_layer(&cm),
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}' to='{ANON}' rid='1000' wait='60' hold='1'/>"
        )),
    )
    .await;

    let body = answer.assert_xml_success();
    assert_eq!(cm.rids(), [1000, 1001, 1002, 1003]);
    assert_eq!(body.attr("rid"), Some("1003"), "the last RID the CM saw");
    assert_eq!(body.attr("jid"), Some(ANON_JID));
    assert_eq!(body.attr("sid"), Some(SID));
    assert_eq!(body.attr("inactivity"), Some("60"));
    assert_eq!(
        body.find("jid").map(|j| j.text.as_str()),
        Some(ANON_JID),
        "the bind result is carried"
    );
    assert_eq!(cm.mechanism().as_deref(), Some("ANONYMOUS"));
}

#[tokio::test]
async fn get_returns_json_with_the_next_rid() {
    let cm = anonymous_cm().build();
    let answer = send(&anonymous_layer(&cm), get()).await;

    answer.assert_json_success();
    let keys: Vec<String> = answer.json().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["jid", "sid", "rid", "wait", "hold", "bosh_service_url"]
    );
    let rids = cm.rids();
    assert_eq!(rids.len(), 4);
    assert_eq!(answer.json_num("rid"), rids[3] + 1, "the next RID to send");
    assert!(
        rids[0] < 1 << 32,
        "a random first RID below 2^32, like Strophe"
    );
    assert_eq!(answer.json_str("jid"), ANON_JID);
    assert_eq!(answer.json_str("sid"), SID);
    assert_eq!(answer.json_num("wait"), 59);
    assert_eq!(answer.json_num("hold"), 1);
    assert_eq!(answer.json_str("bosh_service_url"), CM_URL);
}

#[tokio::test]
async fn the_largest_allowed_first_rid_keeps_the_next_rid_within_2_pow_53() {
    let first = HandshakeConfig::max_first_rid();
    let cm = anonymous_cm().build();
    let answer = send(
        &anonymous_layer(&cm),
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='{first}'/>")),
    )
    .await;

    let body = answer.assert_xml_success();
    assert_eq!(cm.rids(), [first, first + 1, first + 2, first + 3]);
    assert_eq!(body.attr("rid"), Some((first + 3).to_string().as_str()));
    assert!(first + 4 < 1 << 53);
}

// ---------------------------------------------------------------------------
// Protocol variations
// ---------------------------------------------------------------------------

#[tokio::test]
async fn late_features_are_fetched_with_empty_bodies_and_rids_stay_exact() {
    let cm = anonymous_cm().stream_features(StreamFeatures::Late).build();
    let answer = send(
        &anonymous_layer(&cm),
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='500'/>")),
    )
    .await;

    let body = answer.assert_xml_success();
    // create, poll, auth, restart, poll, bind
    assert_eq!(cm.rids(), [500, 501, 502, 503, 504, 505]);
    for poll in [1, 4] {
        let request = cm.request(poll);
        assert!(request.children.is_empty(), "{request:?}");
        assert_eq!(request.attr("sid"), Some(SID));
    }
    assert_eq!(body.attr("rid"), Some("505"));
    assert_eq!(body.attr("jid"), Some(ANON_JID));
}

#[tokio::test]
async fn session_iq_is_sent_when_session_is_required() {
    let cm = anonymous_cm()
        .session_feature(SessionFeature::Required)
        .build();
    let answer = send(
        &anonymous_layer(&cm),
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='1000'/>")),
    )
    .await;

    let body = answer.assert_xml_success();
    assert!(cm.sessions()[0].session_iq);
    assert_eq!(cm.rids(), [1000, 1001, 1002, 1003, 1004]);
    assert_eq!(body.attr("rid"), Some("1004"));
}

#[tokio::test]
async fn session_iq_is_not_sent_when_optional_or_absent() {
    for session in [SessionFeature::Optional, SessionFeature::Absent] {
        let cm = anonymous_cm().session_feature(session).build();
        let answer = send(&anonymous_layer(&cm), get()).await;

        answer.assert_json_success();
        assert!(!cm.sessions()[0].session_iq, "{session:?}");
        assert_eq!(cm.requests().len(), 4, "{session:?}");
    }
}

#[tokio::test]
async fn wait_and_hold_are_clamped_before_session_creation() {
    let cm = anonymous_cm().build();
    let answer = send(
        &anonymous_layer(&cm),
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}' wait='3600' hold='5'/>"
        )),
    )
    .await;

    let body = answer.assert_xml_success();
    let creation = cm.request(0);
    let wait: u32 = creation.attr("wait").unwrap().parse().unwrap();
    assert!(wait <= 59, "wait {wait}");
    assert_eq!(creation.attr("hold"), Some("1"));
    assert_eq!(body.attr("wait"), Some(wait.to_string().as_str()));
    assert_eq!(body.attr("hold"), Some("1"));
}

#[tokio::test]
async fn a_requested_resource_is_bound_and_the_servers_jid_is_handed_out() {
    let cm = alice_cm(&["PLAIN"]).build();
    let answer = prebind_as(&cm, alice().with_resource("tab-7")).await;

    answer.assert_json_success();
    let bind = cm.request(3);
    assert_eq!(
        bind.find("resource").map(|r| r.text.as_str()),
        Some("tab-7")
    );
    assert_eq!(answer.json_str("jid"), "alice@localhost/tab-7");
}

#[tokio::test]
async fn credentials_from_extensions_are_used_for_an_allowed_domain() {
    let cm = anonymous_cm().build();
    let layer = cm.layer().credentials_from_extensions().allow_domain(ANON);
    let mut request = get();
    request
        .extensions_mut()
        .insert(Credentials::anonymous(ANON));
    let answer = send(&layer, request).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), ANON_JID);
    assert_eq!(cm.requests().len(), 4);
}

#[tokio::test]
async fn an_xml_declaration_before_the_cm_body_is_accepted() {
    let cm = anonymous_cm().xml_declaration().build();
    let answer = send(&anonymous_layer(&cm), get()).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), ANON_JID);
}

#[tokio::test]
async fn a_resource_with_markup_characters_is_escaped_in_both_formats() {
    let resource = "tab'<7>&\"x";
    let jid = format!("alice@localhost/{resource}");
    for format in [Format::Xml, Format::Json] {
        let cm = alice_cm(&["PLAIN"]).build();
        let layer = cm.layer().credentials(alice().with_resource(resource));
        let answer = send(&layer, format.request()).await;

        match format {
            Format::Xml => {
                let body = answer.assert_xml_success();
                assert_eq!(body.attr("jid"), Some(jid.as_str()));
                assert_eq!(body.find("jid").map(|j| j.text.as_str()), Some(&*jid));
            }
            Format::Json => {
                answer.assert_json_success();
                assert_eq!(answer.json_str("jid"), jid);
                for raw in ['<', '>', '&'] {
                    assert!(!answer.body.contains(raw), "{raw:?} in {}", answer.body);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_bound_resource_with_a_space_is_handed_out() {
    let cm = alice_cm(&["PLAIN"]).build();
    let answer = prebind_as(&cm, alice().with_resource("foo bar")).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), "alice@localhost/foo bar");
}

#[tokio::test]
async fn payloads_in_the_prebind_request_are_not_forwarded() {
    let cm = anonymous_cm().build();
    let answer = send(
        &anonymous_layer(&cm),
        post(&format!(
            "<body xmlns='{NS_HTTPBIND}'><message xmlns='jabber:client' \
             to='victim@localhost'><body>spam</body></message></body>"
        )),
    )
    .await;

    answer.assert_xml_success();
    let requests = cm.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests.iter().all(|r| !r.text().contains("spam")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn guests_fall_back_to_anonymous_and_its_domain_is_allowed_by_itself() {
    let cm = anonymous_cm().build();
    // No allow_domain: the fallback's domain is allowed by the source.
    let layer = cm.layer().credentials_from_extensions_or_anonymous(ANON);
    let answer = send(&layer, get()).await;

    answer.assert_json_success();
    assert_eq!(answer.json_str("jid"), ANON_JID);
    assert_eq!(cm.requests().len(), 4);
}

#[tokio::test]
async fn with_an_anonymous_fallback_the_users_domain_still_needs_allowing() {
    let cm = alice_cm(&["PLAIN"]).build();
    let layer = cm.layer().credentials_from_extensions_or_anonymous(ANON);
    let mut request = get();
    request.extensions_mut().insert(alice());
    let answer = send(&layer, request).await;

    answer.assert_failure(Format::Json, http::StatusCode::FORBIDDEN, "host-unknown");
    assert_eq!(cm.requests().len(), 0, "refused before the CM");

    let layer = layer.allow_domain(HOST);
    let mut request = get();
    request.extensions_mut().insert(alice());
    let answer = send(&layer, request).await;
    answer.assert_json_success();
    assert_eq!(
        answer.json_str("jid"),
        ALICE_JID,
        "the user's own credentials, not the fallback"
    );
}
