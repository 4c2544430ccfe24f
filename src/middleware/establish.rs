//! Opening a session for a request: the domain check, a permit of the
//! handshake cap, the handshake settings, and the driver run at a node of
//! the cluster (the next one that works). Shared by the prebind path and
//! injected pages.

use std::sync::Arc;

use tokio::time::Instant;

use crate::driver::{self, Failure};
use crate::error::PrebindError;
use crate::middleware::config::Config;
use crate::middleware::prebind_request::PrebindRequest;
use crate::protocol::credentials::Credentials;
use crate::protocol::handshake::{HandshakeConfig, PrebindSession};
use crate::transport::BoshTransport;

/// Checks the credentials' domain and runs the handshake; gives the session
/// and the index of the node that made it.
pub(crate) async fn establish<T: BoshTransport>(
    config: &Config,
    transport: T,
    credentials: Credentials,
    to: Option<String>,
    asked: &PrebindRequest,
) -> Result<(PrebindSession, usize), PrebindError> {
    let domain = credentials.domain();
    if !config.is_allowed(domain) || to.as_deref().is_some_and(|to| to != domain) {
        return Err(PrebindError::DomainNotAllowed(
            to.unwrap_or_else(|| domain.to_owned()),
        ));
    }
    // Held until the handshake ends (or is dropped).
    let _permit = Arc::clone(&config.handshakes)
        .try_acquire_owned()
        .map_err(|_| PrebindError::Overloaded)?;
    let mut handshake = HandshakeConfig::new(credentials);
    handshake.first_rid = asked.rid;
    handshake.wait = clamp(asked.wait, config.default_wait, config.max_wait);
    handshake.hold = clamp(asked.hold, 1, config.max_hold);
    handshake.lang.clone_from(&config.lang);
    handshake.route.clone_from(&config.route);
    handshake.scram_cache.clone_from(&config.scram_cache);
    handshake.sasl2 = config.sasl2;
    let (session, node) = open(config, transport, handshake).await?;
    if let (Some(hook), Some(token)) = (&config.on_fast_token, &session.fast_token) {
        let bare = session
            .jid
            .split_once('/')
            .map_or(&*session.jid, |(bare, _)| bare);
        hook(bare, token);
    }
    Ok((session, node))
}

/// Runs the handshake at a node: the only one, or the next one that works.
async fn open<T: BoshTransport>(
    config: &Config,
    transport: T,
    handshake: HandshakeConfig,
) -> Result<(PrebindSession, usize), PrebindError> {
    let deadline = Instant::now() + config.client.handshake_timeout;
    let cluster = &config.cluster;
    if cluster.len() == 1 {
        let url = &cluster.node(0).url;
        return driver::run(transport, &config.client, url, handshake, deadline)
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
                &config.client,
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
                        bosh_url = %url,
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

/// A client's value clamped to `1..=max`, or the default.
fn clamp(value: Option<u64>, default: u32, max: u32) -> u32 {
    value
        .map_or(default, |v| v.clamp(1, u64::from(max)) as u32)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_wait_and_hold() {
        assert_eq!(clamp(None, 59, 60), 59);
        assert_eq!(clamp(Some(3600), 59, 60), 60);
        assert_eq!(clamp(Some(0), 59, 60), 1);
        assert_eq!(clamp(Some(30), 59, 60), 30);
    }
}
