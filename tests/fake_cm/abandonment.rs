//! Abandoned handshakes: a half-made session is terminated at the CM, best
//! effort, on a bounded task; finished or CM-ended sessions are not.

use bosh_prebind::test_util::{Fault, Termination};
use http::StatusCode;

use crate::common::get;
use crate::harness::*;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn a_client_gone_mid_handshake_terminates_the_half_made_session() {
    let cm = anonymous_cm().fault_at(1, Fault::NoAnswer).build();
    let layer = anonymous_layer(&cm);
    let mut answer = Box::pin(send(&layer, get()));
    tokio::select! {
        _ = &mut answer => panic!("the auth request never gets an answer"),
        () = cm.wait_received(2) => {}
    }
    // The browser goes away: the answer future is dropped mid-handshake.
    drop(answer);
    cm.wait_received(3).await;
    let terminate = Termination {
        sid: SID.to_owned(),
        rid: cm.rids()[1] + 1,
    };
    assert_eq!(cm.terminations(), [terminate]);
    assert_eq!(cm.requests().len(), 2, "nothing else was sent");
    // The terminate task finishes once the CM answered.
    until(|| alive_tasks() == 0).await;
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_handshake_failed_on_our_side_terminates_its_session() {
    let cm = anonymous_cm()
        .fault_at(1, Fault::body("<html>garbage</html>"))
        .build();
    let answer = send(&anonymous_layer(&cm), get()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    cm.wait_received(3).await;
    let terminate = Termination {
        sid: SID.to_owned(),
        rid: cm.rids()[1] + 1,
    };
    assert_eq!(cm.terminations(), [terminate]);
    assert!(cm.sessions()[0].terminated);
    assert_eq!(cm.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn successful_or_cm_terminated_sessions_are_not_terminated_again() {
    let cm = anonymous_cm().build();
    let answer = send(&anonymous_layer(&cm), get()).await;
    answer.assert_json_success();
    assert_eq!(
        alive_tasks(),
        0,
        "no terminate task for a handed-over session"
    );

    let cm = anonymous_cm()
        .fault_at(1, Fault::terminate("system-shutdown"))
        .build();
    let answer = send(&anonymous_layer(&cm), get()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(alive_tasks(), 0, "the CM already ended it");
    assert!(cm.terminations().is_empty());
}
