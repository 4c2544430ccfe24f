//! SASL for the handshake (RFC 6120 §6), over rsasl: mechanism choice and the
//! `<auth/>` / `<response/>` elements. No hand-written SCRAM.
//!
//! Accounts use SCRAM-SHA-256 > SCRAM-SHA-1 > PLAIN, whichever is the strongest
//! the server offers; anonymous sessions use ANONYMOUS only. Channel binding is
//! not offered, so SCRAM's GS2 header says `n` (RFC 5802 §6): correct both on
//! plain HTTP and behind a TLS-terminating proxy.

use std::fmt;
use std::sync::{Arc, Mutex};

use rsasl::callback::CallbackError;
use rsasl::mechanisms::scram::properties::{Iterations, Salt, SaltedPassword};

use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::{anonymous, plain, scram};
use rsasl::prelude::{Mechname, Registry, SASLClient, SASLConfig, Session, State};
use rsasl::property::{AuthId, Password};

use crate::protocol::bosh::NS_SASL;
use crate::protocol::credentials::{Credentials, Mechanism};
use crate::protocol::scram_cache::{ScramCache, salt_password};

/// Preference order for accounts, strongest first.
static ACCOUNT_MECHANISMS: &[rsasl::prelude::Mechanism] =
    &[scram::SCRAM_SHA256, scram::SCRAM_SHA1, plain::PLAIN];
static ANONYMOUS_MECHANISMS: &[rsasl::prelude::Mechanism] = &[anonymous::ANONYMOUS];

/// The mechanism names this crate may use, for error messages.
pub(crate) const SUPPORTED: &str = "SCRAM-SHA-256, SCRAM-SHA-1, PLAIN (accounts), ANONYMOUS";

/// Why SASL could not go on (the server's `<failure/>` is reported by the
/// handshake, not here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// Shared with the account callback: set when the server asked for too
    /// many PBKDF2 iterations.
    account: Option<Arc<AccountCallback>>,
}

impl fmt::Debug for SaslExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslExchange")
            .field("mechanism", &self.mechanism)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// The most PBKDF2 iterations a server may ask for. Real servers use 4096
/// (ejabberd, Openfire) to 10 000 (Prosody); the cap keeps a hostile or
/// misconfigured CM from making each login burn seconds of our CPU.
pub(crate) const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// Hands the account's authentication identity and password to rsasl, and
/// the salted password for SCRAM (computed here, to cap the iteration count
/// and use the cache).
struct AccountCallback {
    authcid: String,
    password: String,
    cache: Option<Arc<ScramCache>>,
    /// An iteration count over the cap that the server asked for.
    refused_iterations: Mutex<Option<u32>>,
}

impl SessionCallback for AccountCallback {
    fn callback(
        &self,
        session_data: &SessionData,
        context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        // SCRAM's key derivation asks for the salted password, else the
        // password, with the server's salt and iteration count at hand.
        if let Some(&iterations) = context.get_ref::<Iterations>() {
            if iterations > MAX_SCRAM_ITERATIONS {
                if let Ok(mut refused) = self.refused_iterations.lock() {
                    *refused = Some(iterations);
                }
                // Neither the salted password nor the password: rsasl stops.
                return Err(CallbackError::NoValue.into());
            }
            if request.is::<SaltedPassword>() {
                let Some(salt) = context.get_ref::<Salt>() else {
                    return Ok(());
                };
                let mechanism = session_data.mechanism().mechanism.as_str();
                let password = self.password.as_bytes();
                let salted = match &self.cache {
                    Some(cache) => cache.salted_password(mechanism, password, salt, iterations),
                    None => salt_password(mechanism, password, salt, iterations),
                };
                request.satisfy::<SaltedPassword>(&salted)?;
                return Ok(());
            }
        }
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
        cache: Option<&Arc<ScramCache>>,
    ) -> Result<(Self, String), SaslError> {
        let (exchange, initial) = Self::start_raw(credentials, offered, cache)?;
        // RFC 6120 §6.4.2: an empty initial response is sent as "=".
        let initial = if initial.is_empty() { "=" } else { &initial };
        let auth = format!(
            "<auth xmlns='{NS_SASL}' mechanism='{}'>{initial}</auth>",
            exchange.mechanism
        );
        Ok((exchange, auth))
    }

    /// Picks a mechanism among `offered` and returns the exchange with its
    /// base64 initial response (empty when the mechanism has none to give),
    /// for classic SASL and SASL2 (XEP-0388 §2.4) alike.
    pub(crate) fn start_raw(
        credentials: &Credentials,
        offered: &[String],
        cache: Option<&Arc<ScramCache>>,
    ) -> Result<(Self, String), SaslError> {
        let no_mechanism = || SaslError::NoMechanism {
            offered: offered.join(", "),
        };
        if credentials.is_fast_token() {
            // A token is not a password: only HT-* may use it (protocol/fast.rs).
            return Err(no_mechanism());
        }
        let (config, account) = config(credentials, cache)?;
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
            .map_err(|_| no_mechanism())?;
        let mechanism = session_mechanism(&session);
        let mut exchange = SaslExchange {
            session,
            mechanism,
            finished: false,
            account,
        };
        // Every mechanism we use is client-first (RFC 6120 §6.4.2).
        let initial = exchange.step(None)?;
        Ok((exchange, initial))
    }

    /// The mechanism in use.
    pub(crate) fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    /// Answers a `<challenge/>` with the `<response/>` to send.
    pub(crate) fn challenge(&mut self, data: &str) -> Result<String, SaslError> {
        let response = self.challenge_raw(data)?;
        Ok(format!("<response xmlns='{NS_SASL}'>{response}</response>"))
    }

    /// Answers a challenge's base64 data with the base64 response.
    pub(crate) fn challenge_raw(&mut self, data: &str) -> Result<String, SaslError> {
        if self.finished {
            return Err(SaslError::Exchange(format!(
                "{} sent a challenge after the exchange finished",
                self.mechanism
            )));
        }
        self.step(Some(data))
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
        if let Some(data) = input {
            if self.mechanism.starts_with("SCRAM-") {
                check_scram_message(data)?;
            }
        }
        let mut out = Vec::new();
        let state = self
            .session
            .step64(input.map(str::as_bytes), &mut out)
            .map_err(|e| {
                let refused = self
                    .account
                    .as_ref()
                    .and_then(|callback| *callback.refused_iterations.lock().ok()?);
                match refused {
                    Some(n) => SaslError::Exchange(format!(
                        "the server asks for {n} PBKDF2 iterations, over the limit of {MAX_SCRAM_ITERATIONS}"
                    )),
                    None => SaslError::Exchange(e.to_string()),
                }
            })?;
        self.finished = matches!(state, State::Finished(_));
        // base64 output is ASCII.
        String::from_utf8(out).map_err(|e| SaslError::Exchange(e.to_string()))
    }
}

/// rsasl 2.3 slices the first two bytes of each of the first three
/// attributes of a server-first message, and of the first attribute of a
/// server-final one, without checking their length: `r=a,` or `v` from a
/// CM would panic the handshake. Refuse such messages before rsasl parses
/// them (RFC 5802 §7: every attribute is `name=value`).
fn check_scram_message(data: &str) -> Result<(), SaslError> {
    use base64::Engine as _;
    let malformed = || SaslError::Exchange("malformed SCRAM message from the server".to_owned());
    let message = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| malformed())?;
    if message
        .split(|&b| b == b',')
        .take(3)
        .any(|attribute| attribute.len() < 2 || attribute[1] != b'=')
    {
        return Err(malformed());
    }
    Ok(())
}

type SaslSetup = (Arc<SASLConfig>, Option<Arc<AccountCallback>>);

fn config(
    credentials: &Credentials,
    cache: Option<&Arc<ScramCache>>,
) -> Result<SaslSetup, SaslError> {
    let built = match credentials.secret() {
        Some((authcid, password)) => {
            let callback = Arc::new(AccountCallback {
                authcid: authcid.to_owned(),
                password: password.to_owned(),
                cache: cache.cloned(),
                refused_iterations: Mutex::new(None),
            });
            SASLConfig::builder()
                .with_registry(Registry::with_mechanisms(ACCOUNT_MECHANISMS))
                .with_callback(SharedCallback(Arc::clone(&callback)))
                .map(|config| (config, Some(callback)))
        }
        None => SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(ANONYMOUS_MECHANISMS))
            .with_callback(AnonymousCallback)
            .map(|config| (config, None)),
    };
    built.map_err(|e| SaslError::Exchange(e.to_string()))
}

/// rsasl owns its callback; the exchange keeps a handle to read what it saw.
struct SharedCallback(Arc<AccountCallback>);

impl SessionCallback for SharedCallback {
    fn callback(
        &self,
        session_data: &SessionData,
        context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        self.0.callback(session_data, context, request)
    }
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
            SaslExchange::start(&alice, &offered(names), None).map(|(e, _)| e.mechanism())
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
            SaslExchange::start(&anon, &offered(&["ANONYMOUS", "PLAIN"]), None).unwrap();
        assert_eq!(exchange.mechanism(), "ANONYMOUS");
        assert_eq!(
            auth,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>=</auth>"
        );
        assert!(SaslExchange::start(&anon, &offered(&["PLAIN"]), None).is_err());
    }

    #[test]
    fn plain_initial_response_matches_prosody_transcript() {
        let alice = Credentials::account("alice@localhost", "secret-alice").unwrap();
        let (mut exchange, auth) = SaslExchange::start(&alice, &offered(&["PLAIN"]), None).unwrap();
        // From docs/protocol/prosody-0.12.md, "SASL auth PLAIN".
        assert!(
            auth.ends_with(">AGFsaWNlAHNlY3JldC1hbGljZQ==</auth>"),
            "{auth}"
        );
        assert_eq!(exchange.success(""), Ok(()));
    }

    #[test]
    fn the_scram_cache_returns_the_same_salted_password_without_recomputing() {
        let cache = ScramCache::new(2);
        let first = cache.salted_password("SCRAM-SHA-1", b"pw", b"salt", 4096);
        let again = cache.salted_password("SCRAM-SHA-1", b"pw", b"salt", 4096);
        assert!(
            Arc::ptr_eq(&first, &again),
            "a hit returns the cached value"
        );
        // RFC 6070 test vector: PBKDF2-HMAC-SHA1("password", "salt", 4096).
        let vector = cache.salted_password("SCRAM-SHA-1", b"password", b"salt", 4096);
        assert_eq!(
            vector
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "4b007901b765489abead49d926f721d065a429c1"
        );
        assert_eq!(
            cache
                .salted_password("SCRAM-SHA-256", b"pw", b"salt", 4096)
                .len(),
            32
        );
        assert!(cache.len() <= 2, "bounded");
        let other = cache.salted_password("SCRAM-SHA-1", b"pw2", b"salt", 4096);
        assert_ne!(&*other, &*first);
    }

    #[test]
    fn a_server_asking_for_too_many_iterations_is_refused() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let bob = Credentials::account("bob@localhost", "secret-bob").unwrap();
        let (mut exchange, auth) =
            SaslExchange::start(&bob, &offered(&["SCRAM-SHA-1"]), None).unwrap();
        let payload = &auth[auth.find('>').unwrap() + 1..auth.rfind('<').unwrap()];
        let client_first = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
        let nonce = client_first
            .split(',')
            .find_map(|field| field.strip_prefix("r="))
            .unwrap();
        let server_first = format!("r={nonce}srv,s={},i=2000000", b64.encode("salt"));
        let error = exchange.challenge(&b64.encode(server_first)).unwrap_err();
        assert!(
            error.to_string().contains("2000000 PBKDF2 iterations"),
            "{error}"
        );
    }

    #[test]
    fn scram_success_without_server_signature_is_refused() {
        let bob = Credentials::account("bob@localhost", "secret-bob").unwrap();
        let (mut exchange, _) =
            SaslExchange::start(&bob, &offered(&["SCRAM-SHA-1"]), None).unwrap();
        assert!(exchange.success("").is_err());
    }
}
