//! The warm pool (`PrebindLayer::pool`): sessions made ahead for a fixed
//! identity, handed out with no CM round trip, never past half the CM's
//! `inactivity`, terminated when they expire or at shutdown. Clock paused:
//! the fake announces `inactivity='60'`, so a pooled session is usable for
//! 30 s and demand decays with τ = 15 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bosh_prebind::test_util::FakeCm;
use bosh_prebind::{Credentials, PoolStats};
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::{get, json_field, post};
use crate::harness::*;

/// Lets the pool's task and its refills run (the fake answers at once).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn pooled(cm: &FakeCm, n: usize) -> CmLayer {
    anonymous_layer(cm).pool(n)
}

/// `k` GETs back to back, each a success; then lets refills land.
async fn demand(layer: &CmLayer, k: usize) {
    for _ in 0..k {
        send(layer, get()).await.assert_json_success();
    }
    settle().await;
}

fn stats(layer: &CmLayer) -> PoolStats {
    layer.pool_handle().stats()
}

/// Sids the fake made and did not see terminated.
fn live_sids(cm: &FakeCm) -> Vec<String> {
    cm.sessions()
        .into_iter()
        .filter(|s| !s.terminated)
        .map(|s| s.sid)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_hit_takes_a_bound_session_without_asking_the_cm() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 4);
    // One request alone asks for no pooled session: a single visitor
    // must not leave a session idling at the CM.
    demand(&layer, 1).await;
    assert_eq!(cm.sessions_created(), 1);
    let s = stats(&layer);
    assert_eq!((s.misses, s.hits, s.made, s.size), (1, 0, 0, 0), "{s:?}");
    // A second one soon after: demand for one session, made in background.
    demand(&layer, 1).await;
    let s = stats(&layer);
    assert_eq!((s.misses, s.made, s.size), (2, 1, 1), "{s:?}");
    assert_eq!(cm.sessions_created(), 3);
    let pooled_sid = cm.sessions()[2].sid.clone();

    let before = cm.received();
    let answer = send(&layer, get()).await;
    answer.assert_json_success();
    assert_eq!(cm.received(), before, "a hit sends nothing to the CM");
    assert_eq!(answer.json_str("sid"), pooled_sid);
    assert_eq!(stats(&layer).hits, 1);
    assert!(cm.terminations().is_empty());
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn pooled_sessions_answer_with_the_same_rid_conventions_as_fresh_ones() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 2);
    demand(&layer, 3).await;
    assert_eq!(stats(&layer).size, 2);
    let last_rid_of = |sid: &str| {
        cm.sessions()
            .into_iter()
            .find(|s| s.sid == sid)
            .expect("a session the fake made")
            .last_rid
    };

    // GET → JSON: the *next* RID.
    let json = send(&layer, get()).await;
    json.assert_json_success();
    let sid = json.json_str("sid");
    assert_eq!(json.json_num("rid"), last_rid_of(&sid) + 1);
    assert_eq!(json.json_num("wait"), 59);
    assert_eq!(json.json_str("jid"), ANON_JID);

    // POST with no rid/wait/hold → XML: the *last used* RID.
    let xml = send(&layer, post(&format!("<body xmlns='{NS_HTTPBIND}'/>"))).await;
    let body = xml.assert_xml_success();
    let sid = body.attr("sid").unwrap().to_owned();
    assert_eq!(
        body.attr("rid").unwrap().parse::<u64>().unwrap(),
        last_rid_of(&sid)
    );
    assert_eq!(stats(&layer).hits, 2, "both came from the pool");

    // A fresh one's answer has the same shape (only sid and rid differ).
    let fresh_cm = anonymous_cm().build();
    let fresh = send(
        &anonymous_layer(&fresh_cm),
        post(&format!("<body xmlns='{NS_HTTPBIND}'/>")),
    )
    .await;
    let fresh = fresh.assert_xml_success();
    let shape = |e: &bosh_prebind::test_util::Element| {
        let mut attrs: Vec<_> = e
            .attrs
            .iter()
            .filter(|(k, _)| k != "sid" && k != "rid")
            .cloned()
            .collect();
        attrs.sort();
        (attrs, e.children.len())
    };
    assert_eq!(shape(&body), shape(&fresh));
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_is_terminated_never_handed_out_and_replaced_while_demand_lasts() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 2);
    demand(&layer, 20).await;
    assert_eq!(stats(&layer).size, 2);
    let old = live_sids(&cm);
    let old: Vec<_> = old[old.len() - 2..].to_vec();

    // Past half of inactity='60': both expire. Demand (20 requests 31 s
    // ago, τ = 15 s: ≈ 2.5) still asks for 2, so 2 new ones are made.
    tokio::time::sleep(Duration::from_secs(31)).await;
    settle().await;
    let s = stats(&layer);
    assert_eq!((s.expired, s.wasted, s.size, s.made), (2, 2, 2, 4), "{s:?}");
    let ended: Vec<_> = cm.terminations().into_iter().map(|t| t.sid).collect();
    assert_eq!(
        ended, old,
        "the expired ones were terminated (XEP-0124 §12)"
    );
    // (The fake checks each carried exactly the session's next RID.)
    let answer = send(&layer, get()).await;
    answer.assert_json_success();
    assert!(
        !old.contains(&answer.json_str("sid")),
        "an expired one was handed out"
    );
    assert_eq!(stats(&layer).hits, 1);
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_request_at_the_usable_age_never_gets_the_old_session() {
    // The request arrives exactly when the pooled session reaches its
    // usable age, before the pool's own sweep: it is checked at the take.
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 1);
    demand(&layer, 2).await;
    assert_eq!(stats(&layer).size, 1);
    let old = live_sids(&cm).pop().unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    let answer = send(&layer, get()).await;
    answer.assert_json_success();
    assert_ne!(answer.json_str("sid"), old);
    settle().await;
    assert_eq!(stats(&layer).expired, 1);
    assert!(cm.terminations().iter().any(|t| t.sid == old));
}

#[tokio::test(start_paused = true)]
async fn a_request_fixing_its_own_rid_wait_or_hold_bypasses_the_pool() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 2);
    demand(&layer, 3).await;
    assert_eq!(stats(&layer).size, 2);
    let pooled_sids = live_sids(&cm).split_off(3);
    assert_eq!(pooled_sids.len(), 2);
    for (i, attrs) in ["rid='5000'", "wait='30'", "hold='1'"].iter().enumerate() {
        let answer = send(
            &layer,
            post(&format!("<body xmlns='{NS_HTTPBIND}' {attrs}/>")),
        )
        .await;
        let body = answer.assert_xml_success();
        let sid = body.attr("sid").unwrap();
        assert!(
            !pooled_sids.iter().any(|p| p == sid),
            "{attrs}: a pooled one"
        );
        let s = stats(&layer);
        assert_eq!(
            (s.bypassed, s.hits, s.size),
            (i as u64 + 1, 0, 2),
            "{attrs}"
        );
    }
    assert_eq!(live_sids(&cm)[3..5], pooled_sids[..], "still pooled, alive");
    let answer = send(
        &layer,
        post(&format!("<body xmlns='{NS_HTTPBIND}' rid='5000'/>")),
    )
    .await;
    assert_eq!(
        answer.xml().attr("rid"),
        Some("5003"),
        "the client's RID is honoured"
    );
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn refills_take_at_most_half_the_permits_and_never_starve_requests() {
    // Cap 2: refills may hold one permit, requests always have the other.
    let cm = anonymous_cm().delay(Duration::from_millis(100)).build();
    let layer = pooled(&cm, 8).max_concurrent_handshakes(2);
    let watching = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (handle, watching, peak) = (layer.pool_handle(), watching.clone(), peak.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::SeqCst) == 0 {
                peak.fetch_max(handle.stats().refilling, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Requests one after another: each misses or hits while a refill runs.
    let mut served = 0;
    for _ in 0..12 {
        let answer = send(&layer, get()).await;
        assert_eq!(answer.status, StatusCode::OK, "starved: {}", answer.body);
        served += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    watching.store(1, Ordering::SeqCst);
    watcher.await.unwrap();
    let s = stats(&layer);
    assert_eq!(served, 12);
    assert_eq!(peak.load(Ordering::SeqCst), 1, "{s:?}");
    assert!(s.made >= 2 && s.hits >= 1, "{s:?}");
    assert!(s.size <= 8);

    // Cap 1: no room for refills at all; the pool stays unused.
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 8).max_concurrent_handshakes(1);
    demand(&layer, 5).await;
    let s = stats(&layer);
    assert_eq!((s.made, s.hits, s.size), (0, 0, 0), "{s:?}");
    assert_eq!(cm.sessions_created(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_pool_never_grows_beyond_n_and_shrinks_to_nothing_when_idle() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 3);
    demand(&layer, 50).await;
    let s = stats(&layer);
    assert_eq!((s.size, s.target), (3, 3), "{s:?}");
    // Idle: demand decays, sessions age out and are not replaced.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let s = stats(&layer);
    assert_eq!((s.size, s.target, s.refilling), (0, 0, 0), "{s:?}");
    assert_eq!(s.wasted, s.made - s.hits, "{s:?}");
    assert_eq!(s.expired, s.wasted);
    assert!(
        live_sids(&cm).len() <= 50,
        "only the requests' own sessions live"
    );
    let made = cm.sessions_created();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(cm.sessions_created(), made, "nothing made while quiet");
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn shutdown_terminates_every_pooled_session() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 3);
    let handle = layer.pool_handle();
    demand(&layer, 10).await;
    assert_eq!(handle.stats().size, 3);
    let pooled_sids: Vec<_> = live_sids(&cm).split_off(10);
    assert_eq!(pooled_sids.len(), 3);
    handle.shutdown().await;
    let ended: Vec<_> = cm.terminations().into_iter().map(|t| t.sid).collect();
    assert_eq!(ended.len(), 3);
    for sid in &pooled_sids {
        assert!(ended.contains(sid), "{sid} not terminated");
    }
    let s = handle.stats();
    assert_eq!((s.size, s.wasted, s.target), (0, 3, 0), "{s:?}");
    // Afterwards requests run their own handshakes, uncounted.
    send(&layer, get()).await.assert_json_success();
    settle().await;
    assert_eq!(handle.stats().misses, 10);
    assert_eq!(handle.stats().made, 3);
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_layer_and_its_services_terminates_the_pool() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 2);
    let handle = layer.pool_handle();
    demand(&layer, 5).await;
    assert_eq!(handle.stats().size, 2);
    drop(layer);
    settle().await;
    assert_eq!(cm.terminations().len(), 2);
    assert_eq!(handle.stats().size, 0);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_page_takes_a_pooled_session_with_the_next_rid() {
    let cm = anonymous_cm().build();
    let layer = pooled(&cm, 1).inject_path(PAGE_PATH);
    demand(&layer, 2).await;
    assert_eq!(stats(&layer).size, 1);
    let sid = live_sids(&cm).pop().unwrap();
    let last_rid = cm.sessions().last().unwrap().last_rid;
    let before = cm.received();
    let page = send(
        &layer,
        Request::get(PAGE_PATH).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        cm.received(),
        before,
        "the page waited for no CM round trip"
    );
    assert_eq!(json_field(&page.body, "sid"), sid);
    assert_eq!(json_field(&page.body, "rid"), (last_rid + 1).to_string());
    assert_eq!(stats(&layer).hits, 1);
}

#[tokio::test(start_paused = true)]
async fn a_per_request_source_is_never_pooled() {
    let cm = anonymous_cm().build();
    let layer = cm
        .layer()
        .allow_domain(ANON)
        .credentials_fn(|_: &http::request::Parts| async { Some(Credentials::anonymous(ANON)) })
        .pool(4);
    demand(&layer, 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stats(&layer), PoolStats::default());
    assert_eq!(cm.sessions_created(), 10, "one per request, none ahead");
    // A fixed source set after a per-request one is pooled again.
    let layer = layer.credentials(anonymous());
    demand(&layer, 3).await;
    assert!(stats(&layer).size > 0);
}

#[tokio::test(start_paused = true)]
async fn extreme_sizes_and_caps_do_not_panic() {
    for (n, cap) in [(0, 256), (usize::MAX, usize::MAX), (usize::MAX, 0), (1, 2)] {
        let cm = anonymous_cm().build();
        let layer = pooled(&cm, n).max_concurrent_handshakes(cap);
        for _ in 0..3 {
            let answer = send(&layer, get()).await;
            if cap == 0 {
                assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            } else {
                answer.assert_json_success();
            }
        }
        settle().await;
        let s = stats(&layer);
        // Three requests teach a demand of at most 3: never more pooled.
        assert!(s.size <= n.min(3), "{n} {cap}: {s:?}");
        layer.pool_handle().shutdown().await;
        assert_eq!(stats(&layer).size, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_cm_backs_off_instead_of_hammering_it() {
    let cm = anonymous_cm()
        .fault_always(bosh_prebind::test_util::Fault::Refused)
        .build();
    let layer = pooled(&cm, 4);
    for _ in 0..3 {
        let answer = send(&layer, get()).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = stats(&layer);
    // 1 s, 2 s, 4 s between tries: a handful in 10 s, not thousands.
    assert!((1..=5).contains(&s.failed), "{s:?}");
    assert_eq!(s.made, 0);
}
