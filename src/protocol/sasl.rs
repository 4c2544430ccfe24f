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
use crate::protocol::scram_cache::{DeriveRequest, salted_len};

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
    /// Shared with the account callback: the salted password it hands to
    /// rsasl, and the iteration count it refused.
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

/// The most PBKDF2 iterations a server may ask for: 100 000.
///
/// Real servers use 4096 (ejabberd, Openfire; RFC 7677 §4 asks for at least
/// 4096) to 10 000 (Prosody). Each iteration is an HMAC on our CPU, about
/// 0.2 µs (SHA-1) to 0.3 µs (SHA-256) on a 2.6 GHz core, so the cap bounds
/// one uncached login to roughly 20-30 ms of CPU (10 times Prosody's
/// default), where a hostile or misconfigured CM could otherwise ask for
/// 2^32 - 1 iterations (about 15 minutes). A server above it is refused with
/// [`SaslError::Exchange`] naming both numbers, before any PBKDF2 runs.
pub const MAX_SCRAM_ITERATIONS: u32 = 100_000;

/// Hands the account's authentication identity and password to rsasl, and
/// for SCRAM the salted password derived outside (the handshake's
/// `Step::Derive`): rsasl is never given the chance to run PBKDF2 itself.
struct AccountCallback {
    authcid: String,
    password: Arc<str>,
    /// The salted password for the server-first message being answered.
    salted: Mutex<Option<Arc<[u8]>>>,
    /// An iteration count over the cap that the server asked for.
    refused_iterations: Mutex<Option<u32>>,
}

impl SessionCallback for AccountCallback {
    fn callback(
        &self,
        _session_data: &SessionData,
        context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), rsasl::prelude::SessionError> {
        // SCRAM's key derivation asks for cached keys, then the salted
        // password, then the password, with the server's salt and iteration
        // count at hand (RFC 5802 §3). Only the salted password is given.
        if let Some(&iterations) = context.get_ref::<Iterations>() {
            if iterations > MAX_SCRAM_ITERATIONS {
                if let Ok(mut refused) = self.refused_iterations.lock() {
                    *refused = Some(iterations);
                }
                return Err(CallbackError::NoValue.into());
            }
            let salted = self.salted.lock().ok().and_then(|salted| salted.clone());
            if let (true, Some(salted), Some(_)) = (
                request.is::<SaltedPassword>(),
                salted,
                context.get_ref::<Salt>(),
            ) {
                request.satisfy::<SaltedPassword>(&salted)?;
                return Ok(());
            }
            // Not the password: rsasl would run PBKDF2 on this thread.
            return Err(CallbackError::NoValue.into());
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
    ) -> Result<(Self, String), SaslError> {
        let (exchange, initial) = Self::start_raw(credentials, offered)?;
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
    ) -> Result<(Self, String), SaslError> {
        let no_mechanism = || SaslError::NoMechanism {
            offered: offered.join(", "),
        };
        if credentials.is_fast_token() {
            // A token is not a password: only HT-* may use it (protocol/fast.rs).
            return Err(no_mechanism());
        }
        let (config, account) = config(credentials)?;
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

    /// For SCRAM's server-first message (RFC 5802 §5.1), before
    /// [`challenge`](Self::challenge) answers it: the key derivation it
    /// needs, once its salt and iteration count are parsed and the count
    /// checked against [`MAX_SCRAM_ITERATIONS`]. `None` for other messages
    /// and mechanisms, and once the salted password is there.
    pub(crate) fn derivation(&self, data: &str) -> Result<Option<DeriveRequest>, SaslError> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        let has_salted = account.salted.lock().map_or(true, |s| s.is_some());
        if !self.mechanism.starts_with("SCRAM-") || self.finished || has_salted {
            return Ok(None);
        }
        let (salt, iterations) = parse_server_first(data)?;
        if iterations > MAX_SCRAM_ITERATIONS {
            return Err(SaslError::Exchange(format!(
                "the server asks for {iterations} PBKDF2 iterations, over the limit of {MAX_SCRAM_ITERATIONS}"
            )));
        }
        Ok(Some(DeriveRequest::new(
            self.mechanism,
            Arc::clone(&account.password),
            salt,
            iterations,
        )))
    }

    /// The salted password of the pending [`derivation`](Self::derivation).
    pub(crate) fn derived(&mut self, salted_password: &[u8]) -> Result<(), SaslError> {
        if salted_password.len() != salted_len(self.mechanism) {
            return Err(SaslError::Exchange(format!(
                "a {}-byte salted password for {}",
                salted_password.len(),
                self.mechanism
            )));
        }
        if let Some(account) = &self.account {
            if let Ok(mut salted) = account.salted.lock() {
                *salted = Some(Arc::from(salted_password));
            }
        }
        Ok(())
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

/// The salt (`s=`, base64) and iteration count (`i=`) of a server-first
/// message: `[reserved-mext ","] nonce "," salt "," iteration-count
/// ["," extensions]` (RFC 5802 §7). A mandatory extension (`m=`) is
/// refused, as §5.1 requires; the nonce is checked by rsasl afterwards.
fn parse_server_first(data: &str) -> Result<(Vec<u8>, u32), SaslError> {
    use base64::Engine as _;
    let malformed =
        |what: &str| SaslError::Exchange(format!("malformed SCRAM server-first message: {what}"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let message = b64
        .decode(data.trim())
        .map_err(|_| malformed("not base64"))?;
    let message = std::str::from_utf8(&message).map_err(|_| malformed("not UTF-8"))?;
    let mut attributes = message.split(',');
    match attributes.next() {
        Some(nonce) if nonce.starts_with("r=") => {}
        Some(mext) if mext.starts_with("m=") => {
            return Err(malformed("unsupported mandatory extension"));
        }
        _ => return Err(malformed("no nonce")),
    }
    let salt = attributes
        .next()
        .and_then(|a| a.strip_prefix("s="))
        .ok_or_else(|| malformed("no salt"))?;
    let salt = b64.decode(salt).map_err(|_| malformed("salt not base64"))?;
    let iterations = attributes
        .next()
        .and_then(|a| a.strip_prefix("i="))
        .ok_or_else(|| malformed("no iteration count"))?;
    // `posit-number = %x31-39 *DIGIT`: no sign, no leading zero.
    if iterations.is_empty()
        || iterations.starts_with('0')
        || !iterations.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed("bad iteration count"));
    }
    // Digits only: too large for a u32 is over the cap anyway.
    let iterations = iterations.parse::<u32>().unwrap_or(u32::MAX);
    Ok((salt, iterations))
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

fn config(credentials: &Credentials) -> Result<SaslSetup, SaslError> {
    let built = match credentials.secret() {
        Some((authcid, password)) => {
            let callback = Arc::new(AccountCallback {
                authcid: authcid.to_owned(),
                password: password.into(),
                salted: Mutex::new(None),
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
        // From docs/protocol/prosody-0.12.md, "SASL auth PLAIN".
        assert!(
            auth.ends_with(">AGFsaWNlAHNlY3JldC1hbGljZQ==</auth>"),
            "{auth}"
        );
        assert_eq!(exchange.success(""), Ok(()));
    }

    /// The client nonce of an `<auth/>`, and a server-first message for it.
    fn server_first(auth: &str, rest: &str) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = &auth[auth.find('>').unwrap() + 1..auth.rfind('<').unwrap()];
        let client_first = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
        let nonce = client_first
            .split(',')
            .find_map(|field| field.strip_prefix("r="))
            .unwrap();
        b64.encode(format!("r={nonce}srv,{rest}"))
    }

    #[test]
    fn server_first_asks_for_a_derivation_and_the_answer_uses_its_result() {
        let bob = Credentials::account("bob@localhost", "secret-bob").unwrap();
        let (mut exchange, auth) = SaslExchange::start(&bob, &offered(&["SCRAM-SHA-1"])).unwrap();
        let first = server_first(&auth, "s=c2FsdA==,i=4096");
        let request = exchange.derivation(&first).unwrap().expect("a derivation");
        assert_eq!(
            (request.mechanism, &request.salt[..], request.iterations),
            ("SCRAM-SHA-1", &b"salt"[..], 4096)
        );
        assert!(exchange.derived(&[0; 5]).is_err(), "wrong length refused");
        // Without the salted password rsasl is not allowed to derive itself.
        let mut undrived = SaslExchange::start(&bob, &offered(&["SCRAM-SHA-1"])).unwrap();
        let first_again = server_first(&undrived.1, "s=c2FsdA==,i=4096");
        assert!(undrived.0.challenge(&first_again).is_err());
        exchange.derived(&request.derive()).unwrap();
        assert_eq!(exchange.derivation(&first).unwrap(), None, "derived once");
        let response = exchange.challenge(&first).unwrap();
        assert!(response.starts_with("<response "), "{response}");
    }

    #[test]
    fn server_first_messages_are_parsed_strictly_and_the_cap_holds() {
        let bob = Credentials::account("bob@localhost", "secret-bob").unwrap();
        let (exchange, auth) = SaslExchange::start(&bob, &offered(&["SCRAM-SHA-256"])).unwrap();
        let at_cap = format!("s=c2FsdA==,i={MAX_SCRAM_ITERATIONS}");
        assert!(
            exchange
                .derivation(&server_first(&auth, &at_cap))
                .unwrap()
                .is_some()
        );
        for (rest, expected) in [
            (
                "s=c2FsdA==,i=2000000",
                "2000000 PBKDF2 iterations, over the limit of 100000",
            ),
            ("s=c2FsdA==,i=99999999999999", "over the limit"),
            ("s=c2FsdA==,i=0", "bad iteration count"),
            ("s=c2FsdA==,i=-1", "bad iteration count"),
            ("s=c2FsdA==,i=", "bad iteration count"),
            ("s=c2FsdA==", "no iteration count"),
            ("s=!!,i=4096", "salt not base64"),
            ("i=4096,s=c2FsdA==", "no salt"),
        ] {
            let error = exchange.derivation(&server_first(&auth, rest)).unwrap_err();
            assert!(error.to_string().contains(expected), "{rest}: {error}");
        }
        use base64::Engine as _;
        let mext = base64::engine::general_purpose::STANDARD.encode("m=x,r=a,s=c2FsdA==,i=1");
        let error = exchange.derivation(&mext).unwrap_err();
        assert!(error.to_string().contains("mandatory extension"), "{error}");
        let plain = Credentials::account("bob@localhost", "x").unwrap();
        let (plain, _) = SaslExchange::start(&plain, &offered(&["PLAIN"])).unwrap();
        assert_eq!(plain.derivation("anything").unwrap(), None);
    }

    #[test]
    fn scram_success_without_server_signature_is_refused() {
        let bob = Credentials::account("bob@localhost", "secret-bob").unwrap();
        let (mut exchange, _) = SaslExchange::start(&bob, &offered(&["SCRAM-SHA-1"])).unwrap();
        assert!(exchange.success("").is_err());
    }
}
