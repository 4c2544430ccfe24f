//! SCRAM's key derivation (PBKDF2) runs off the runtime's workers, once per
//! account for concurrent cold logins, and never above the iteration cap.

use std::sync::Arc;
use std::time::Duration;

use bosh_prebind::handshake::MAX_SCRAM_ITERATIONS;
use bosh_prebind::{Credentials, ScramCache};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::common::get;
use crate::harness::*;

/// No deadline gets in the way on a loaded machine: these tests are about
/// where and how often PBKDF2 runs, not how fast.
const PATIENT: Duration = Duration::from_secs(600);

/// alice on a fake CM offering SCRAM-SHA-256 at `iterations`.
fn scram_cm(iterations: u32) -> bosh_prebind::test_util::FakeCm {
    alice_cm(&["SCRAM-SHA-256"])
        .scram(b"a-burst-salt", iterations)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_logins_of_one_account_run_pbkdf2_once() {
    let cm = scram_cm(MAX_SCRAM_ITERATIONS);
    let cache = Arc::new(ScramCache::new(16));
    let layer = cm
        .layer()
        .credentials(alice())
        .scram_cache_shared(Arc::clone(&cache))
        .handshake_timeout(PATIENT)
        .request_timeout(PATIENT);
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let layer = layer.clone();
            tokio::spawn(async move { send(&layer, get()).await })
        })
        .collect();
    for login in logins {
        login.await.unwrap().assert_json_success();
    }
    assert_eq!(cache.misses(), 1, "one derivation for 16 logins");
    assert_eq!(cache.hits(), 15);
    assert_eq!(cache.len(), 1);
    assert_eq!(cm.sessions_created(), 16);
}

/// 64 cold logins (64 passwords: 64 derivations; the fake refuses them all
/// after the proof, which is after the derivation) on a runtime with one
/// worker. A plain request to the app, queued behind all of them, is
/// answered once every derivation has started and before they have all
/// finished: the worker is free while PBKDF2 runs. With the derivation on
/// the worker (`derive_inline(true)`) each one finishes within the poll
/// that started it, so the app would see `finished == started`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_burst_of_cold_logins_does_not_stall_the_runtime() {
    const BURST: u64 = 64;
    // Prosody's count: enough work per login, a short test.
    let cm = scram_cm(10_000);
    // The fake derives its stored keys at the first login: not in the burst.
    send(&cm.layer().credentials(alice()).scram_cache(0), get())
        .await
        .assert_json_success();
    let cache = Arc::new(ScramCache::new(1024));
    let layer = |n: u64| {
        let client = Credentials::account(ALICE, format!("cold-{n}")).unwrap();
        cm.layer()
            .credentials(client)
            .scram_cache_shared(Arc::clone(&cache))
            .handshake_timeout(PATIENT)
            .request_timeout(PATIENT)
    };
    let logins: Vec<_> = (0..BURST)
        .map(|n| {
            let layer = layer(n);
            tokio::spawn(async move { send(&layer, get()).await })
        })
        .collect();
    let plain = {
        let layer = layer(BURST);
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            // Polling, not sleeping: the worker runs the logins in between.
            while cache.misses() < BURST {
                tokio::task::yield_now().await;
            }
            let request = Request::get("/plain")
                .body(Full::<Bytes>::default())
                .unwrap();
            let answer = send(&layer, request).await;
            (answer, cache.misses(), cache.len() as u64)
        })
    };
    let (answer, started, finished) = plain.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "app")
    );
    assert_eq!(started, BURST);
    assert!(
        finished < started,
        "the app answered only after all {started} derivations finished"
    );
    for login in logins {
        let answer = login.await.unwrap();
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
        assert!(answer.body.contains("not-authorized"), "{}", answer.body);
    }
    assert_eq!((cache.misses(), cache.len() as u64), (BURST, BURST));
}

#[tokio::test]
async fn a_server_over_the_iteration_cap_is_refused_before_any_pbkdf2() {
    let cm = scram_cm(MAX_SCRAM_ITERATIONS + 1);
    let cache = Arc::new(ScramCache::new(4));
    let layer = cm
        .layer()
        .credentials(alice())
        .scram_cache_shared(Arc::clone(&cache))
        .handshake_timeout(PATIENT)
        .request_timeout(PATIENT);
    let answer = send(&layer, get()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    let error = answer
        .error
        .expect("the error in the extensions")
        .to_string();
    assert!(
        error.contains("100001 PBKDF2 iterations, over the limit of 100000"),
        "{error}"
    );
    assert_eq!(cache.misses(), 0, "nothing derived");
    assert_eq!(cm.requests().len(), 2, "create, auth; no response sent");
}

#[tokio::test(flavor = "current_thread")]
async fn inline_derivation_logs_in_the_same() {
    let cm = scram_cm(4096);
    let layer = cm.layer().credentials(alice()).derive_inline(true);
    send(&layer, get()).await.assert_json_success();
    send(&layer, get()).await.assert_json_success();
}
