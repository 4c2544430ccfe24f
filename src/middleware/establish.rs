//! Opening a session for a request: the domain check, a session of the warm
//! pool if there is one, else a permit of the handshake cap, the handshake
//! settings, and the driver run. Shared by the prebind path and injected
//! pages.

use std::sync::Arc;

use crate::driver;
use crate::error::PrebindError;
use crate::middleware::config::Config;
use crate::middleware::pool::{Recipe, Take};
use crate::middleware::prebind_request::PrebindRequest;
use crate::protocol::credentials::Credentials;
use crate::protocol::handshake::{HandshakeConfig, PrebindSession};
use crate::transport::BoshTransport;

/// Checks the credentials' domain and runs the handshake.
pub(crate) async fn establish<T: BoshTransport>(
    config: &Config,
    transport: T,
    credentials: Credentials,
    to: Option<String>,
    asked: &PrebindRequest,
) -> Result<PrebindSession, PrebindError> {
    let domain = credentials.domain();
    if !config.is_allowed(domain) || to.as_deref().is_some_and(|to| to != domain) {
        return Err(PrebindError::DomainNotAllowed(
            to.unwrap_or_else(|| domain.to_owned()),
        ));
    }
    if let Some(link) = &config.pool {
        let owner = std::ptr::from_ref(config) as usize;
        // The pool's sessions were made with the defaults: a request that
        // fixes its own RID, wait or hold gets its own handshake.
        if asked.rid.is_some() || asked.wait.is_some() || asked.hold.is_some() {
            link.0.bypassed(owner);
        } else if let Take::Hit(session) = link.0.take(owner) {
            return Ok(session);
        }
    }
    // Held until the handshake ends (or is dropped).
    let _permit = Arc::clone(&config.handshakes)
        .try_acquire_owned()
        .map_err(|_| PrebindError::Overloaded)?;
    let session = driver::run(
        transport,
        &config.client,
        handshake_config(config, credentials, asked),
    )
    .await?;
    if let (Some(hook), Some(token)) = (&config.on_fast_token, &session.fast_token) {
        let bare = session
            .jid
            .split_once('/')
            .map_or(&*session.jid, |(bare, _)| bare);
        hook(bare, token);
    }
    Ok(session)
}

/// Starts the warm pool's task, if the layer has a pool, on the first
/// prebind or page request inside a tokio runtime (later calls cost one
/// atomic load). Only for a fixed identity: see `PrebindLayer::pool`.
pub(crate) fn start_pool<T: BoshTransport>(config: &Arc<Config>, transport: &T) {
    let Some(link) = &config.pool else {
        return;
    };
    if link.0.is_started() {
        return;
    }
    let Some(credentials) = &config.pool_credentials else {
        if link.0.first_warning() {
            tracing::warn!(
                "the warm pool needs a fixed `Credentials` source; with a per-request source it is not used"
            );
        }
        return;
    };
    link.0
        .start(std::ptr::from_ref::<Config>(config) as usize, || Recipe {
            transport: transport.clone(),
            settings: config.client.clone(),
            handshake: handshake_config(config, credentials.clone(), &PrebindRequest::default()),
            handshakes: Arc::clone(&config.handshakes),
            max_handshakes: config.max_handshakes,
        });
}

/// The handshake for `credentials` with what the request asked for (RID,
/// `wait` and `hold` clamped) and the layer's settings; the warm pool makes
/// its sessions with the defaults through this too, so they are exactly
/// like a request's.
pub(crate) fn handshake_config(
    config: &Config,
    credentials: Credentials,
    asked: &PrebindRequest,
) -> HandshakeConfig {
    let mut handshake = HandshakeConfig::new(credentials);
    handshake.first_rid = asked.rid;
    handshake.wait = clamp(asked.wait, config.default_wait, config.max_wait);
    handshake.hold = clamp(asked.hold, 1, config.max_hold);
    handshake.lang.clone_from(&config.lang);
    handshake.route.clone_from(&config.route);
    handshake.sasl2 = config.sasl2;
    handshake
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
