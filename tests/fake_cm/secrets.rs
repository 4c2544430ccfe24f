//! Secrets never reach logs, error messages or `Debug` output: passwords,
//! SASL data, session ids.

use std::sync::{Arc, Mutex};

use bosh_prebind::Credentials;
use bosh_prebind::test_util::Recorded;
use http::StatusCode;

use crate::common::get;
use crate::harness::*;

/// What tracing wrote on one thread, at every level.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything captured so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Routes the global subscriber's output to the calling thread's capture.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(captured) = &*capture.borrow() {
                captured.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's tracing output, span closings (with every field)
/// included. A global subscriber at TRACE (installed once) rather than a
/// scoped one: tests on other threads then cannot leave a callsite's
/// interest cached as "never".
pub(crate) fn capture_logs() -> Captured {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| ThreadCapture)
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    let captured = Captured::default();
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(captured.clone()));
    captured
}

/// The base64 payloads of every `<auth/>` and `<response/>` the layer sent.
fn sasl_payloads(requests: &[Recorded]) -> Vec<String> {
    let mut payloads = Vec::new();
    for request in requests.iter().map(Recorded::text) {
        for element in ["auth", "response"] {
            if let Some(start) = request.find(&format!("<{element} ")) {
                let open_end = start + request[start..].find('>').unwrap() + 1;
                let close = open_end + request[open_end..].find('<').unwrap();
                payloads.push(request[open_end..close].to_owned());
            }
        }
    }
    payloads
}

#[tokio::test(flavor = "current_thread")]
async fn scram_handshakes_log_no_password_sasl_data_or_sid() {
    let captured = capture_logs();

    let cm = alice_cm(&["SCRAM-SHA-256"]).build();
    let answer = prebind_as(&cm, alice()).await;
    answer.assert_json_success();
    let mut payloads = sasl_payloads(&cm.requests());
    let failed_cm = alice_cm(&["SCRAM-SHA-1"]).build();
    let wrong = Credentials::account(ALICE, "not-her-password").unwrap();
    let failed = send(&failed_cm.layer().credentials(wrong), get()).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    payloads.extend(sasl_payloads(&failed_cm.requests()));
    assert_eq!(payloads.len(), 4, "two SCRAM exchanges, two messages each");

    let logs = captured.text();
    assert!(
        logs.contains("prebind handshake done"),
        "the success was logged: {logs}"
    );
    // The span (closed with all its fields) and the step events are there,
    // and are what is checked below.
    for event in [
        "prebind{",
        "outcome=\"ok\"",
        "outcome=\"error\" condition=\"not-authorized\"",
        "mechanism=\"SCRAM-SHA-256\"",
        "kind=\"sasl-auth\"",
        "kind=\"sasl-challenge\"",
        "kind=\"sasl-response\"",
        "deriving the SCRAM salted password",
        "salted password ready",
    ] {
        assert!(logs.contains(event), "{event} not logged: {logs}");
    }
    assert!(
        logs.contains("not-authorized"),
        "the failure was logged: {logs}"
    );
    for secret in [ALICE_PASSWORD, "not-her-password", SID]
        .into_iter()
        .map(str::to_owned)
        .chain(payloads)
    {
        assert!(
            !logs.contains(&secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
        assert!(
            !failed.body.contains(&secret),
            "{secret:?} leaked into the answer"
        );
    }
    let debug = format!("{:?} {:?}", answer.session, alice());
    assert!(
        !debug.contains(SID) && !debug.contains(ALICE_PASSWORD),
        "{debug}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_prebind_logs_the_cm_url_and_the_cause_but_answers_neither() {
    let captured = capture_logs();
    let cm = anonymous_cm()
        .fault_always(bosh_prebind::test_util::Fault::Refused)
        .build();
    let answer = send(&anonymous_layer(&cm), get()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);

    let logs = captured.text();
    assert!(
        logs.contains(&format!("cm={CM_URL}")),
        "the CM URL is logged: {logs}"
    );
    assert!(
        logs.contains("connection manager unreachable:"),
        "with its cause: {logs}"
    );
    assert!(!answer.body.contains(CM_HOST), "{}", answer.body);
}
