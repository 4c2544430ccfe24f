//! Where a session is made: the driver run at the only node, or at the
//! next node of the [`Cluster`] that works (round-robin over the healthy
//! ones, a node failing its session-creation request skipped for a back-off
//! and the same handshake started at another within the deadline; never once
//! a sid exists). Used by [`establish`](crate::middleware::establish) for
//! requests and by the warm [`pool`](crate::middleware::pool) for its
//! refills, so pooled sessions are spread and fail over the same way.

use tokio::time::Instant;

use crate::driver::{self, ClientSettings, Failure};
use crate::error::PrebindError;
use crate::middleware::cluster::Cluster;
use crate::protocol::handshake::{HandshakeConfig, PrebindSession};
use crate::transport::BoshTransport;
use crate::transport::bosh_url::UriForLogs;

/// Runs the handshake at a node; gives the session and the node's index.
pub(crate) async fn open<T: BoshTransport>(
    cluster: &Cluster,
    settings: &ClientSettings,
    transport: T,
    handshake: HandshakeConfig,
) -> Result<(PrebindSession, usize), PrebindError> {
    let deadline = driver::deadline_after(Instant::now(), settings.handshake_timeout);
    if cluster.len() == 1 {
        let url = &cluster.node(0).url;
        return driver::run(transport, settings, url, handshake, deadline)
            .await
            .map(|session| (session, 0))
            .map_err(Failure::into_error);
    }
    // First the nodes that are up (or due for a probe), round-robin; then,
    // if all of those failed, the ones that were already down when this
    // prebind started. Each node at most once, all within the deadline.
    let ring = cluster.ring();
    let mut last_error = None;
    for last_resort in [false, true] {
        for node in ring.indexes() {
            let eligible = if last_resort {
                cluster.last_resort(node, &ring)
            } else {
                cluster.claim(node)
            };
            if !eligible {
                continue;
            }
            let url = &cluster.node(node).url;
            let attempt = driver::run(
                transport.clone(),
                settings,
                url,
                handshake.clone(),
                deadline,
            )
            .await;
            match attempt {
                Ok(session) => {
                    cluster.answered(node);
                    return Ok((session, node));
                }
                // Only the session-creation request failed: no session
                // exists for us there (XEP-0124 §7: a session is bound to
                // the CM that created it, so once a sid exists nothing is
                // made elsewhere).
                Err(Failure::NodeFailed(error)) => {
                    let backoff = cluster.failed(node);
                    tracing::warn!(
                        bosh_url = %UriForLogs(url),
                        %error,
                        ?backoff,
                        "connection manager failed before a session existed: skipped for the back-off, trying another"
                    );
                    if Instant::now() >= deadline {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
                Err(Failure::Failed(error)) => {
                    // It answered: it is up, whatever went wrong.
                    if !matches!(error, PrebindError::Timeout(_)) {
                        cluster.answered(node);
                    }
                    return Err(error);
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        PrebindError::Unreachable("every connection manager failed moments ago".to_owned())
    }))
}
