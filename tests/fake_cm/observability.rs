//! Observability: the outcome hook, the metrics (feature `metrics`), the
//! rate-limited failure warnings.

use std::sync::{Arc, Mutex};

use bosh_prebind::test_util::Fault;
use bosh_prebind::{Outcome, PathKind, PrebindLayer};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::{get, post};
use crate::harness::*;
use crate::secrets::capture_logs;

/// What the hook saw: path, the JID or the condition.
type Seen = Arc<Mutex<Vec<(PathKind, Result<String, String>)>>>;

fn recording<T>(layer: PrebindLayer<T>) -> (PrebindLayer<T>, Seen) {
    let seen = Seen::default();
    let hook_seen = Arc::clone(&seen);
    let layer = layer.on_outcome(move |outcome: &Outcome<'_>| {
        let result = outcome
            .result
            .map(|session| session.jid.clone())
            .map_err(|error| error.condition().to_owned());
        hook_seen.lock().unwrap().push((outcome.path, result));
    });
    (layer, seen)
}

fn page() -> Request<Full<Bytes>> {
    Request::get(PAGE_PATH).body(Full::default()).unwrap()
}

#[tokio::test]
async fn the_outcome_hook_fires_for_get_post_and_pages_success_or_not() {
    let cm = anonymous_cm().build();
    let (layer, seen) = recording(anonymous_layer(&cm).inject_path(PAGE_PATH));
    send(&layer, get()).await.assert_json_success();
    send(&layer, post(&format!("<body xmlns='{NS_HTTPBIND}'/>")))
        .await
        .assert_xml_success();
    let served = send(&layer, page()).await;
    assert!(served.body.contains(ANON_JID), "{}", served.body);
    let refused = send(
        &layer,
        Request::put("/prebind").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);

    let down = anonymous_cm().fault_always(Fault::Refused).build();
    let (down_layer, down_seen) = recording(anonymous_layer(&down).inject_path(PAGE_PATH));
    let failed_page = send(&down_layer, page()).await;
    assert!(failed_page.body.contains("remote-connection-failed"));

    let ok = || Ok(ANON_JID.to_owned());
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (PathKind::Get, ok()),
            (PathKind::Post, ok()),
            (PathKind::Page, ok()),
            (PathKind::Get, Err("bad-request".to_owned())),
        ]
    );
    assert_eq!(
        *down_seen.lock().unwrap(),
        vec![(PathKind::Page, Err("remote-connection-failed".to_owned()))]
    );
}

/// Metrics go to the recorder of the current thread (a current-thread
/// runtime keeps every task on it).
#[tokio::test(flavor = "current_thread")]
async fn counters_and_the_duration_histogram_reach_the_recorder() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let cm = alice_cm(&["SCRAM-SHA-1"]).build();
    let layer = cm.layer().credentials(alice()).derive_inline(true);
    send(&layer, get()).await.assert_json_success();
    send(&layer, get()).await.assert_json_success();
    let down = anonymous_cm().fault_always(Fault::Refused).build();
    send(&anonymous_layer(&down), get()).await;
    let full = anonymous_layer(&cm).max_concurrent_handshakes(0);
    assert_eq!(
        send(&full, get()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let passthrough = anonymous_cm().build();
    let forwarding = anonymous_layer(&passthrough).bosh_passthrough("/http-bind");
    let forwarded = send(
        &forwarding,
        Request::post("/http-bind")
            .header(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(Full::new(Bytes::from(format!(
                "<body xmlns='{NS_HTTPBIND}' content='text/xml; charset=utf-8' rid='1' to='{ANON}' wait='60' hold='1' xml:lang='en' ver='1.6' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
            ))))
            .unwrap(),
    )
    .await;
    assert_eq!(forwarded.status, StatusCode::OK, "{}", forwarded.body);

    let scrape = handle.render();
    for line in [
        r#"bosh_prebind_handshakes_total{path="get",outcome="ok",condition="none"} 2"#,
        r#"bosh_prebind_handshakes_total{path="get",outcome="error",condition="remote-connection-failed"} 1"#,
        r#"bosh_prebind_handshakes_total{path="get",outcome="error",condition="policy-violation"} 1"#,
        r#"bosh_prebind_overloaded_total{path="get"} 1"#,
        "bosh_prebind_scram_cache_misses_total 1",
        "bosh_prebind_scram_cache_hits_total 1",
        r#"bosh_prebind_handshake_duration_seconds_count{path="get",outcome="ok"} 2"#,
    ] {
        assert!(scrape.contains(line), "{line} missing from\n{scrape}");
    }
    for direction in ["to_cm", "from_cm"] {
        let prefix = format!("bosh_prebind_passthrough_bytes_total{{direction=\"{direction}\"}} ");
        let bytes: u64 = scrape
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing from\n{scrape}"))
            .parse()
            .unwrap();
        assert!(bytes > 100, "{direction}: {bytes}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cm_outage_is_warned_about_once_per_interval_not_per_page_view() {
    let captured = capture_logs();
    let down = anonymous_cm().fault_always(Fault::Refused).build();
    let layer = anonymous_layer(&down).inject_path(PAGE_PATH);
    for _ in 0..5 {
        send(&layer, page()).await;
    }
    let logs = captured.text();
    let warnings = logs
        .lines()
        .filter(|line| line.contains(" WARN ") && line.contains("prebind failed"))
        .count();
    let debugs = logs
        .lines()
        .filter(|line| line.contains("warning rate-limited"))
        .count();
    assert_eq!((warnings, debugs), (1, 4), "{logs}");

    // With an interval of zero, each is a WARN counting those left out before.
    let captured = capture_logs();
    let layer = anonymous_layer(&down).failure_warn_interval(std::time::Duration::ZERO);
    send(&layer, get()).await;
    send(&layer, get()).await;
    let logs = captured.text();
    assert_eq!(logs.matches("suppressed=0").count(), 2, "{logs}");
}
