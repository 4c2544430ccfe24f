//! Opening a session for a request: the domain check, a permit of the
//! handshake cap, the handshake settings, and the driver run. Shared by the
//! prebind path and injected pages.

use std::sync::Arc;

use crate::driver;
use crate::error::PrebindError;
use crate::middleware::config::Config;
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
    driver::run(transport, &config.client, handshake).await
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
