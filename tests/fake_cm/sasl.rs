//! SASL: each mechanism proven against a real server side, the choice of
//! mechanism, and the ways authentication fails.

use bosh_prebind::test_util::FakeCm;
use bosh_prebind::{Credentials, Mechanism};
use http::StatusCode;

use crate::common::get;
use crate::harness::*;

/// A GET prebind as alice against a fake offering `mechanisms`.
async fn alice_prebind(mechanisms: &[&str]) -> (Answer, FakeCm) {
    let cm = alice_cm(mechanisms).build();
    (prebind_as(&cm, alice()).await, cm)
}

#[tokio::test]
async fn plain_sends_nul_user_nul_password_in_four_round_trips() {
    let (answer, cm) = alice_prebind(&["PLAIN"]).await;

    answer.assert_json_success();
    assert!(answer.session.is_some(), "PrebindSession in the extensions");
    assert_eq!(cm.mechanism().as_deref(), Some("PLAIN"));
    assert_eq!(cm.requests().len(), 4);
    assert_eq!(answer.json_str("jid"), ALICE_JID);
    assert_eq!(answer.json_num("rid"), cm.rids()[3] + 1);
}

#[tokio::test]
async fn scram_sha_1_proves_the_password_in_five_round_trips() {
    let (answer, cm) = alice_prebind(&["SCRAM-SHA-1"]).await;

    answer.assert_json_success();
    assert_eq!(cm.mechanism().as_deref(), Some("SCRAM-SHA-1"));
    assert_eq!(cm.requests().len(), 5);
    assert_eq!(answer.json_str("jid"), ALICE_JID);
    assert_eq!(answer.json_num("rid"), cm.rids()[4] + 1);
}

#[tokio::test]
async fn scram_sha_256_proves_the_password_in_five_round_trips() {
    let (answer, cm) = alice_prebind(&["SCRAM-SHA-256"]).await;

    answer.assert_json_success();
    assert_eq!(cm.mechanism().as_deref(), Some("SCRAM-SHA-256"));
    assert_eq!(cm.requests().len(), 5);
    assert_eq!(answer.json_str("jid"), ALICE_JID);
    assert_eq!(answer.json_num("rid"), cm.rids()[4] + 1);
}

#[tokio::test]
async fn the_strongest_offered_mechanism_is_chosen() {
    for (offered, expected) in [
        (
            &["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"][..],
            "SCRAM-SHA-256",
        ),
        (&["SCRAM-SHA-1", "PLAIN"], "SCRAM-SHA-1"), // Prosody's offer
        (&["PLAIN", "ANONYMOUS"], "PLAIN"),
    ] {
        let (answer, cm) = alice_prebind(offered).await;
        answer.assert_json_success();
        assert_eq!(cm.mechanism().as_deref(), Some(expected), "{offered:?}");
    }
}

#[tokio::test]
async fn a_scram_server_final_in_a_challenge_is_accepted() {
    let cm = alice_cm(&["SCRAM-SHA-1"])
        .server_final_in_challenge()
        .build();
    let answer = prebind_as(&cm, alice()).await;

    answer.assert_json_success();
    // create, auth, response, empty response, restart, bind
    assert_eq!(cm.requests().len(), 6);
    assert_eq!(answer.json_num("rid"), cm.rids()[5] + 1);
}

#[tokio::test]
async fn anonymous_credentials_use_anonymous_even_when_plain_is_offered() {
    let cm = anonymous_cm()
        .mechanisms(["SCRAM-SHA-1", "PLAIN", "ANONYMOUS"])
        .build();
    let answer = send(&anonymous_layer(&cm), get()).await;

    answer.assert_json_success();
    assert_eq!(cm.mechanism().as_deref(), Some("ANONYMOUS"));
}

#[tokio::test]
async fn credentials_restricted_to_scram_never_fall_back_to_plain() {
    let client = alice().with_mechanisms([Mechanism::ScramSha256, Mechanism::ScramSha1]);
    for (_, cm) in assert_fault(
        alice_cm(&["PLAIN"]),
        client,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "policy-violation",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 1, "no <auth/> sent");
        assert_eq!(cm.mechanism(), None);
    }
}

#[tokio::test]
async fn no_usable_mechanism_is_502_policy_violation() {
    for (_, cm) in assert_fault(
        alice_cm(&["ANONYMOUS", "X-OAUTH2"]),
        alice(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "policy-violation",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 1, "nothing sent after the creation");
    }
}

#[tokio::test]
async fn a_plain_failure_is_502_not_authorized() {
    let client = Credentials::account(ALICE, "wrong").unwrap();
    for (_, cm) in assert_fault(
        alice_cm(&["PLAIN"]),
        client,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "not-authorized",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 2, "no restart after a failure");
    }
}

#[tokio::test]
async fn scram_with_a_wrong_password_is_refused_by_the_server() {
    let client = Credentials::account(ALICE, "not-her-password").unwrap();
    for (_, cm) in assert_fault(
        alice_cm(&["SCRAM-SHA-256"]),
        client,
        unchanged,
        StatusCode::BAD_GATEWAY,
        "not-authorized",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 3, "create, auth, response; no restart");
    }
}

#[tokio::test]
async fn scram_server_signature_is_verified() {
    for (_, cm) in assert_fault(
        alice_cm(&["SCRAM-SHA-1"]).tamper_server_signature(),
        alice(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        assert_eq!(
            cm.requests().len(),
            3,
            "a server that cannot prove the password gets no restart"
        );
    }
}
