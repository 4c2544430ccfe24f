//! SASL for the handshake (RFC 6120 §6), over rsasl: mechanism choice and the
//! `<auth/>` / `<response/>` elements. No hand-written SCRAM.
//!
//! Accounts use SCRAM-SHA-256 > SCRAM-SHA-1 > PLAIN, whichever is the strongest
//! the server offers; anonymous sessions use ANONYMOUS only. Channel binding is
//! not offered, so SCRAM's GS2 header says `n` (RFC 5802 §6): correct both on
//! plain HTTP and behind a TLS-terminating proxy.

use std::fmt;
use std::sync::Arc;

use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::{anonymous, plain, scram};
use rsasl::prelude::{Mechname, Registry, SASLClient, SASLConfig, Session, State};
use rsasl::property::{AuthId, Password};

use crate::bosh::NS_SASL;
use crate::credentials::{Credentials, Mechanism};

/// Preference order for accounts, strongest first.
static ACCOUNT_MECHANISMS: &[rsasl::prelude::Mechanism] =
    &[scram::SCRAM_SHA256, scram::SCRAM_SHA1, plain::PLAIN];
static ANONYMOUS_MECHANISMS: &[rsasl::prelude::Mechanism] = &[anonymous::ANONYMOUS];

/// The mechanism names this crate may use, for error messages.
pub(crate) const SUPPORTED: &str = "SCRAM-SHA-256, SCRAM-SHA-1, PLAIN (accounts), ANONYMOUS";

/// Why SASL could not go on (the server's `<failure/>` is reported by the
/// handshake, not here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The server offers no mechanism these credentials can use.
    #[error("no usable SASL mechanism: the server offers [{offered}], we support {SUPPORTED}")]
    NoMechanism {
        /// What the server offered.
        offered: String,
    },
    /// The exchange broke: bad base64 or SCRAM data from the server, or the
    /// server's SCRAM signature did not verify (it does not know the password).
    #[error("SASL exchange failed: {0}")]
    Exchange(String),
}

/// A client-side SASL exchange in progress.
pub(crate) struct SaslExchange {
    session: Session,
    mechanism: &'static str,
    finished: bool,
}

impl fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslExchange")
            .field("mechanism", &self.mechanism)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Hands the account's authentication identity and password to rsasl.
struct AccountCallback {
    authcid: String,
    password: String,
}

impl SessionCallback for AccountCallback {
    fn callback(
        &self,
        _session_data: &SessionData,
        _context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        request
            .satisfy::<AuthId>(&self.authcid)?
            .satisfy::<Password>(self.password.as_bytes())?;
        Ok(())
    }
}

/// Anonymous: no trace token (RFC 4505 §2 makes it optional).
struct AnonymousCallback;

impl SessionCallback for AnonymousCallback {
    fn callback(
        &self,
        _session_data: &SessionData,
        _context: &Context<'_>,
        _request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        Ok(())
    }
}

impl SaslExchange {
    /// Picks a mechanism among `offered` and returns the exchange with the
    /// `<auth/>` element to send.
    pub(crate) fn start(
        credentials: &Credentials,
        offered: &[String],
    ) -> Result<(Self, String), SaslError> {
        let config = config(credentials)?;
        let names: Vec<&Mechname> = offered
            .iter()
            .filter(|name| {
                [
                    Mechanism::ScramSha256,
                    Mechanism::ScramSha1,
                    Mechanism::Plain,
                    Mechanism::Anonymous,
                ]
                .into_iter()
                .any(|m| m.name() == name.as_str() && credentials.allows(m))
            })
            .filter_map(|name| Mechname::parse(name.as_bytes()).ok())
            .collect();
        let session = SASLClient::new(config)
            .start_suggested_iter(names.iter().copied())
            .map_err(|_| SaslError::NoMechanism {
                offered: offered.join(", "),
            })?;
        let mechanism = session_mechanism(&session);
        let mut exchange = SaslExchange {
            session,
            mechanism,
            finished: false,
        };
        // Every mechanism we use is client-first (RFC 6120 §6.4.2).
        let initial = exchange.step(None)?;
        // RFC 6120 §6.4.2: an empty initial response is sent as "=".
        let initial = if initial.is_empty() { "=" } else { &initial };
        let auth = format!("<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{initial}</auth>");
        Ok((exchange, auth))
    }

    /// The mechanism in use.
    pub(crate) fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// Answers a `<challenge/>` with the `<response/>` to send.
    pub(crate) fn challenge(&mut self, data: &str) -> Result<String, SaslError> {
        if self.finished {
            return Err(SaslError::Exchange(format!(
                "{} sent a challenge after the exchange finished",
                self.mechanism
            )));
        }
        let response = self.step(Some(data))?;
        Ok(format!("<response xmlns='{NS_SASL}'>{response}</response>"))
    }

    /// Checks a `<success/>`: its additional data must complete the exchange
    /// (for SCRAM, the server signature proves the server knows the password:
    /// RFC 5802 §3, RFC 6120 §6.3.10).
    pub(crate) fn success(&mut self, data: &str) -> Result<(), SaslError> {
        if !data.is_empty() && data != "=" {
            self.step(Some(data))?;
        }
        if self.finished {
            Ok(())
        } else {
            Err(SaslError::Exchange(format!(
                "server reported success before {} completed",
                self.mechanism
            )))
        }
    }

    fn step(&mut self, input: Option<&str>) -> Result<String, SaslError> {
        let mut out = Vec::new();
        let state = self
            .session
            .step64(input.map(str::as_bytes), &mut out)
            .map_err(|e| SaslError::Exchange(e.to_string()))?;
        self.finished = matches!(state, State::Finished(_));
        // base64 output is ASCII.
        String::from_utf8(out).map_err(|e| SaslError::Exchange(e.to_string()))
    }
}

fn config(credentials: &Credentials) -> Result<Arc<SASLConfig>, SaslError> {
    let built = match credentials.secret() {
        Some((authcid, password)) => SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(ACCOUNT_MECHANISMS))
            .with_callback(AccountCallback {
                authcid: authcid.to_owned(),
                password: password.to_owned(),
            }),
        None => SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(ANONYMOUS_MECHANISMS))
            .with_callback(AnonymousCallback),
    };
    built.map_err(|e| SaslError::Exchange(e.to_string()))
}

fn session_mechanism(session: &Session) -> &'static str {
    let name = session.get_mechname().as_str();
    ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "ANONYMOUS"]
        .into_iter()
        .find(|m| *m == name)
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accounts_prefer_the_strongest_offered_mechanism() {
        let alice = Credentials::account("alice@localhost", "secret-alice").unwrap();
        let pick = |names: &[&str]| {
            SaslExchange::start(&alice, &offered(names)).map(|(e, _)| e.mechanism())
        };
        assert_eq!(
            pick(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]),
            Ok("SCRAM-SHA-256")
        );
        assert_eq!(pick(&["SCRAM-SHA-1", "PLAIN"]), Ok("SCRAM-SHA-1"));
        assert_eq!(pick(&["PLAIN"]), Ok("PLAIN"));
        assert!(matches!(
            pick(&["ANONYMOUS", "X-OAUTH2"]),
            Err(SaslError::NoMechanism { .. })
        ));
    }

    #[test]
    fn anonymous_uses_anonymous_only_and_sends_equals_for_empty() {
        let anon = Credentials::anonymous("anon.localhost");
        let (exchange, auth) =
            SaslExchange::start(&anon, &offered(&["ANONYMOUS", "PLAIN"])).unwrap();
        assert_eq!(exchange.mechanism(), "ANONYMOUS");
        assert_eq!(
            auth,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>"
        );
        assert!(SaslExchange::start(&anon, &offered(&["PLAIN"])).is_err());
    }

    #[test]
    fn plain_initial_response_matches_prosody_transcript() {
        let alice = Credentials::account("alice@localhost", "secret-alice").unwrap();
        let (mut exchange, auth) = SaslExchange::start(&alice, &offered(&["PLAIN"])).unwrap();
        // From ../shared/protocol/prosody.md, "SASL auth PLAIN".
        assert!(
            auth.ends_with(">AGFsaWNlAHNlY3JldC1hbGljZQ==</auth>"),
            "{auth}"
        );
        assert_eq!(exchange.success(""), Ok(()));
    }

    #[test]
    fn scram_success_without_server_signature_is_refused() {
        let bob = Credentials::account("bob@localhost", "secret-bob").unwrap();
        let (mut exchange, _) = SaslExchange::start(&bob, &offered(&["SCRAM-SHA-1"])).unwrap();
        assert!(exchange.success("").is_err());
    }
}
