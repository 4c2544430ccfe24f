//! Faults of the CM: the documented status and condition, no-store, in both
//! answer formats and on an HTML route (see `harness::assert_fault`).

use std::time::Duration;

use bosh_prebind::PrebindError;
use bosh_prebind::test_util::{Fault, StreamFeatures};
use http::StatusCode;

use crate::harness::*;

#[tokio::test]
async fn refused_connection_is_502_and_does_not_leak_the_cm_host() {
    let runs = assert_fault(
        anonymous_cm().fault_at(0, Fault::Refused),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert!(!answer.body.contains(CM_HOST), "{}", answer.body);
        assert!(!answer.body.contains("5280"), "{}", answer.body);
        assert_eq!(cm.requests().len(), 1);
    }
}

#[tokio::test]
async fn http_500_from_the_cm_is_502() {
    let runs = assert_fault(
        anonymous_cm().fault_at(1, Fault::Status(StatusCode::INTERNAL_SERVER_ERROR)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(
            answer.error,
            Some(PrebindError::HttpStatus(StatusCode::INTERNAL_SERVER_ERROR))
        );
        assert_eq!(cm.requests().len(), 2, "no request after the failure");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cm_that_never_answers_is_504_at_the_request_timeout() {
    let runs = assert_fault(
        anonymous_cm().fault_at(2, Fault::NoAnswer),
        anonymous(),
        |layer| layer.request_timeout(Duration::from_secs(2)),
        StatusCode::GATEWAY_TIMEOUT,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(cm.in_flight(), 0, "the pending request was dropped");
        assert_eq!(
            answer.error,
            Some(PrebindError::Timeout("request timed out"))
        );
        assert!(
            answer.elapsed >= Duration::from_secs(2)
                && answer.elapsed < Duration::from_millis(2100),
            "{:?}",
            answer.elapsed
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_body_that_never_ends_is_504_at_the_request_timeout() {
    let runs = assert_fault(
        anonymous_cm().fault_at(0, Fault::BodyNeverEnds),
        anonymous(),
        |layer| layer.request_timeout(Duration::from_secs(3)),
        StatusCode::GATEWAY_TIMEOUT,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(cm.in_flight(), 0, "the endless body was dropped");
        assert!(
            answer.elapsed >= Duration::from_secs(3)
                && answer.elapsed < Duration::from_millis(3100),
            "{:?}",
            answer.elapsed
        );
    }
}

#[tokio::test(start_paused = true)]
async fn slow_but_in_time_answers_hit_the_handshake_deadline_as_504() {
    let runs = assert_fault(
        anonymous_cm().delay(Duration::from_millis(400)),
        anonymous(),
        |layer| {
            layer
                .request_timeout(Duration::from_secs(5))
                .handshake_timeout(Duration::from_secs(1))
        },
        StatusCode::GATEWAY_TIMEOUT,
        "remote-connection-failed",
    )
    .await;
    for (answer, cm) in runs {
        assert_eq!(
            answer.error,
            Some(PrebindError::Timeout("handshake deadline exceeded"))
        );
        // Requests start at 0, 0.4 and 0.8 s; the deadline cuts the third.
        assert_eq!(cm.requests().len(), 3);
        assert!(
            answer.elapsed >= Duration::from_secs(1)
                && answer.elapsed < Duration::from_millis(1100),
            "{:?}",
            answer.elapsed
        );
    }
}

#[tokio::test]
async fn garbage_from_the_cm_is_502() {
    assert_fault(
        anonymous_cm().fault_at(0, Fault::Malformed),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
}

#[tokio::test]
async fn truncated_xml_from_the_cm_is_502() {
    // The creation answer cut in half: inside the mechanisms.
    assert_fault(
        anonymous_cm().fault_at(0, Fault::Truncated),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
    // A document whose start tags are all complete, cut inside a text.
    let truncated = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>\
         <stream:features xmlns='jabber:client'><mechanisms xmlns='{NS_SASL}'><mechanism>ANONY"
    );
    assert_fault(
        anonymous_cm().fault_at(0, Fault::body(truncated)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
    // And a restart answer cut in half.
    assert_fault(
        anonymous_cm().fault_at(2, Fault::Truncated),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_response_with_content_length_is_502() {
    let runs = assert_fault(
        anonymous_cm().fault_at(0, Fault::Oversize { declared: true }),
        anonymous(),
        |layer| layer.max_response_body(4096),
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, _) in runs {
        assert_eq!(answer.error, Some(PrebindError::ResponseTooLarge(4096)));
    }
}

#[tokio::test]
async fn an_oversized_streamed_response_is_502() {
    let runs = assert_fault(
        anonymous_cm().fault_at(0, Fault::Oversize { declared: false }),
        anonymous(),
        |layer| layer.max_response_body(4096),
        StatusCode::BAD_GATEWAY,
        "remote-connection-failed",
    )
    .await;
    for (answer, _) in runs {
        assert_eq!(answer.error, Some(PrebindError::ResponseTooLarge(4096)));
    }
}

#[tokio::test]
async fn a_terminate_condition_is_passed_on_in_both_formats() {
    // XEP-0124 §17.2, at each step of the handshake in turn.
    for (step, condition) in [
        "host-unknown",
        "improper-addressing",
        "item-not-found",
        "policy-violation",
        "system-shutdown",
        "see-other-uri",
        "other-request",
        "internal-server-error",
        "host-gone",
        "bad-request",
    ]
    .into_iter()
    .enumerate()
    {
        let step = step % 4;
        for (_, cm) in assert_fault(
            anonymous_cm().fault_at(step, Fault::terminate(condition)),
            anonymous(),
            unchanged,
            StatusCode::BAD_GATEWAY,
            condition,
        )
        .await
        {
            assert_eq!(cm.requests().len(), step + 1, "{condition}");
        }
    }
}

#[tokio::test]
async fn a_sasl_failure_from_the_server_is_passed_on_with_its_condition() {
    for (_, cm) in assert_fault(
        anonymous_cm().fault_at(1, Fault::sasl_failure("temporary-auth-failure")),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "temporary-auth-failure",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 2, "no restart after a failure");
        assert!(!cm.sessions()[0].authenticated);
    }
}

#[tokio::test]
async fn a_remote_stream_error_is_passed_on_with_its_stream_condition() {
    let stream_error = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}' \
         type='terminate' condition='remote-stream-error'><stream:error>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by new connection</text>\
         </stream:error></body>"
    );
    let runs = assert_fault(
        anonymous_cm().fault_at(1, Fault::body(stream_error)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-stream-error",
    )
    .await;
    let (json, _) = &runs[1];
    assert!(json.json_str("error").contains("conflict"), "{}", json.body);
}

#[tokio::test]
async fn a_stream_error_without_terminate_is_a_remote_stream_error() {
    let stream_error = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>\
         <stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         </stream:error></body>"
    );
    let runs = assert_fault(
        anonymous_cm().fault_at(2, Fault::body(stream_error)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "remote-stream-error",
    )
    .await;
    let (json, cm) = &runs[1];
    assert!(
        json.json_str("error").contains("policy-violation"),
        "{}",
        json.body
    );
    assert_eq!(cm.requests().len(), 3, "no bind after a stream error");
}

#[tokio::test]
async fn a_cm_that_never_sends_features_is_502_after_bounded_polls() {
    for (_, cm) in assert_fault(
        anonymous_cm().stream_features(StreamFeatures::Never),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        let rids = cm.rids();
        assert_eq!(rids.len(), 5, "creation and four empty polls");
        assert!(rids.windows(2).all(|w| w[1] == w[0] + 1), "{rids:?}");
    }
}

#[tokio::test]
async fn a_bind_error_is_502_with_its_condition() {
    let bind_error = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{SID}'>\
         <iq id='bind_1' xmlns='jabber:client' type='error'><error type='cancel'>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq></body>"
    );
    assert_fault(
        anonymous_cm().fault_at(3, Fault::body(bind_error)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_recoverable_binding_error_body_is_502() {
    let error = format!("<body xmlns='{NS_HTTPBIND}' sid='{SID}' type='error'/>");
    assert_fault(
        anonymous_cm().fault_at(1, Fault::body(error)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await;
}

#[tokio::test]
async fn a_creation_response_without_sid_is_502() {
    for (answer, cm) in assert_fault(
        anonymous_cm().without_sid(),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        assert!(answer.error.unwrap().to_string().contains("sid"));
        assert_eq!(cm.requests().len(), 1);
    }
}

#[tokio::test]
async fn an_answer_for_another_session_is_502() {
    let other = format!(
        "<body xmlns='{NS_HTTPBIND}' sid='00000000-dead-beef-0000-000000000000'>\
         <success xmlns='{NS_SASL}'/></body>"
    );
    for (_, cm) in assert_fault(
        anonymous_cm().fault_at(1, Fault::body(other)),
        anonymous(),
        unchanged,
        StatusCode::BAD_GATEWAY,
        "undefined-condition",
    )
    .await
    {
        assert_eq!(cm.requests().len(), 2, "no restart on another session");
    }
}
