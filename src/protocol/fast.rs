//! FAST (XEP-0484) with the Hashed Token mechanism `HT-SHA-256-NONE`
//! (draft-schmaus-kitten-sasl-ht): the token a server issues inside a SASL2
//! `<success>`, and the one-message exchange that logs in with it.
//!
//! Only the `-NONE` channel-binding variant is possible here: the login runs
//! over BOSH, an HTTP transport that gives no access to the TLS channel
//! (`-ENDP`, `-UNIQ` and `-EXPR` need the TLS exporter or the server's
//! certificate of *this* connection), and Prosody advertises only `-NONE`
//! on plain HTTP anyway (`docs/protocol/prosody-13-sasl2.md`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::sasl::SaslError;

/// The only FAST mechanism this crate uses (see the module docs).
pub(crate) const HT_SHA_256_NONE: &str = "HT-SHA-256-NONE";

/// A FAST token the server issued (XEP-0484 §3.3): store it and log in with
/// [`Credentials::fast_token`](crate::Credentials::fast_token) next time.
///
/// A server may issue a new token at any login, asked for or not (Prosody
/// rotates tokens older than `sasl2_fast_token_min_ttl`, and a new token
/// replaces an unused earlier one): always keep **the newest**.
///
/// `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FastToken {
    /// The token itself (Prosody: `secret-token:fast-…`), a password
    /// equivalent for this user and user-agent id.
    pub token: String,
    /// When it expires, as the server wrote it (XEP-0082 date-time, possibly
    /// with fractional seconds: `2026-12-22T01:38:23.035212Z`).
    pub expiry: Option<String>,
    /// The user-agent id the token is bound to (XEP-0388 §2.3): a login with
    /// the token must send the same one.
    pub user_agent_id: String,
}

impl FastToken {
    /// A token as read back from the application's storage.
    pub fn new(
        token: impl Into<String>,
        expiry: Option<String>,
        user_agent_id: impl Into<String>,
    ) -> Self {
        Self {
            token: token.into(),
            expiry,
            user_agent_id: user_agent_id.into(),
        }
    }
}

impl fmt::Debug for FastToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastToken")
            .field("token", &"<redacted>")
            .field("expiry", &self.expiry)
            .field("user_agent_id", &self.user_agent_id)
            .finish()
    }
}

/// A login with a FAST token: one message each way.
pub(crate) struct HtExchange {
    token: String,
}

impl fmt::Debug for HtExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HtExchange").finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256 keyed with the token over `label` followed by the channel
/// binding data, which is empty for `-NONE` (draft-schmaus-kitten-sasl-ht
/// §3.1: `HMAC(token, "Initiator" || cb-data)`, and `"Responder"` for the
/// server's answer).
fn hashed_token(token: &str, label: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = match HmacSha256::new_from_slice(token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

impl HtExchange {
    /// Starts a login as `username` (the localpart) with `token`; returns the
    /// exchange and the base64 initial response: `username NUL
    /// initiator-hashed-token` (draft-schmaus-kitten-sasl-ht §3.1; Prosody
    /// `mod_sasl2_fast` checks exactly this).
    pub(crate) fn start(username: &str, token: &str) -> (Self, String) {
        let mut message = Vec::with_capacity(username.len() + 33);
        message.extend_from_slice(username.as_bytes());
        message.push(0);
        message.extend_from_slice(&hashed_token(token, b"Initiator"));
        (
            HtExchange {
                token: token.to_owned(),
            },
            B64.encode(message),
        )
    }

    /// Checks the server's `<additional-data>` of a `<success>`: the
    /// responder hashed token proves the server knows the token too (mutual
    /// authentication). A server that sends none is accepted (XEP-0484 does
    /// not require it), one that sends a wrong value is not.
    pub(crate) fn success(&self, additional_data: Option<&str>) -> Result<(), SaslError> {
        let Some(data) = additional_data.map(str::trim).filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        let received = B64.decode(data).map_err(|_| {
            SaslError::Exchange("malformed HT-SHA-256-NONE data from the server".to_owned())
        })?;
        let mut mac = HmacSha256::new_from_slice(self.token.as_bytes())
            .map_err(|e| SaslError::Exchange(e.to_string()))?;
        mac.update(b"Responder");
        mac.verify_slice(&received).map_err(|_| {
            SaslError::Exchange(
                "the server's HT-SHA-256-NONE answer does not match the token".to_owned(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_response_is_username_nul_hmac_of_initiator() {
        let (_, initial) = HtExchange::start("alice", "secret-token:fast-x");
        let decoded = B64.decode(&initial).unwrap();
        assert_eq!(&decoded[..6], b"alice\0");
        let mut mac = HmacSha256::new_from_slice(b"secret-token:fast-x").unwrap();
        mac.update(b"Initiator");
        assert_eq!(&decoded[6..], &mac.finalize().into_bytes()[..]);
        // Every transcript's initial response for alice starts like this
        // (docs/protocol/prosody-13-sasl2.md: `YWxpY2UA…`).
        assert!(initial.starts_with("YWxpY2UA"), "{initial}");
    }

    #[test]
    fn the_responder_value_is_checked() {
        let (exchange, _) = HtExchange::start("alice", "t");
        let good = B64.encode(hashed_token("t", b"Responder"));
        assert_eq!(exchange.success(Some(&good)), Ok(()));
        assert_eq!(exchange.success(None), Ok(()));
        let bad = B64.encode(hashed_token("other", b"Responder"));
        assert!(exchange.success(Some(&bad)).is_err());
        assert!(exchange.success(Some("%%%")).is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let token = FastToken::new("secret-token:fast-abc", None, "ua");
        assert!(!format!("{token:?}").contains("fast-abc"));
    }
}
