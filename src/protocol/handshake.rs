//! The login as a sans-IO state machine: session creation → SASL (one or two
//! steps) → stream restart → resource bind → session IQ (only when required).
//!
//! Where the session-creation features offer SASL2 (XEP-0388) with Bind 2
//! inline (XEP-0386), the login is instead session creation → `<authenticate>`
//! (carrying the Bind 2 `<bind/>`) → SASL2 `<success>` with the bound full
//! JID: 2 round trips (ANONYMOUS, PLAIN, FAST), 3 with SCRAM, against 4 / 4 / 5.
//! No restart and no bind IQ. SASL2 is never sent blind: a server without it
//! kills the session (`docs/protocol/prosody-13-sasl2.md`, quirk 1).
//!
//! It never touches a socket or a timer: [`Handshake::start`] gives the first
//! `<body/>` to POST, and [`Handshake::receive`] takes each response body and
//! gives the next `<body/>` to POST, the finished [`PrebindSession`], or a
//! typed [`HandshakeError`]. The driver (`client`) owns I/O and timeouts.
//!
//! SCRAM's key derivation (PBKDF2, up to [`MAX_SCRAM_ITERATIONS`]) is the one
//! CPU-heavy step: it is handed out as [`Step::Derive`], and the caller runs
//! it where blocking is fine and continues with [`Handshake::derived`].
//!
//! RIDs increase by exactly one per request (XEP-0124 §14.1). One request is
//! in flight at a time, and the handshake ends with none held at the CM, so
//! the browser can take over at [`PrebindSession::next_rid`].

use std::fmt;

use rand::Rng;

use crate::protocol::bosh::{
    self, BodyType, BoshParseError, BoshResponse, IqType, NS_BIND, NS_CLIENT, NS_SESSION,
    Sasl2Features, Sasl2Message, Sasl2Success, SaslMessage, SessionCreation, StreamFeatures,
};
use crate::protocol::credentials::Credentials;
use crate::protocol::fast::{FastToken, HT_SHA_256_NONE, HtExchange};
use crate::protocol::sasl::{SaslError, SaslExchange};
use crate::protocol::sasl2::{self, Authenticate};

pub use crate::protocol::sasl::MAX_SCRAM_ITERATIONS;
pub use crate::protocol::scram_cache::DeriveRequest;

/// The largest RID a client may use: JavaScript clients keep it in a double
/// (XEP-0124 §14.1 allows up to 2^53 - 1).
pub const MAX_RID: u64 = (1 << 53) - 1;

/// How many RIDs a handshake may use at most, on its longest path: create,
/// auth, SCRAM client-final, an empty `<response/>` to a server-final sent
/// as a `<challenge/>` (RFC 6120 §6.4.3 allows it), restart, bind, session,
/// plus the empty polls below (SASL2 uses fewer).
const MAX_REQUESTS: u64 = 7 + MAX_EMPTY_POLLS as u64;

/// RIDs kept free above the largest first RID a client may choose: the
/// handshake and then the whole browser session (one RID per request, so
/// 2^32 is over a century of one request a second) stay below [`MAX_RID`]
/// (XEP-0124 §14.1: the client must keep RIDs far below the limit).
pub const SESSION_RID_HEADROOM: u64 = 1 << 32;
const _: () = assert!(MAX_REQUESTS < SESSION_RID_HEADROOM);

/// How many empty `<body/>`s may be sent to fetch features or results that
/// did not come with the previous response, before giving up.
const MAX_EMPTY_POLLS: u32 = 4;

const BIND_ID: &str = "bind_1";
const SESSION_ID: &str = "sess_1";

/// What a handshake needs to know before it starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// Who logs in, and on which domain.
    pub credentials: Credentials,
    /// The first RID, or `None` for a random one below 2^32 (like Strophe.js).
    /// At most [`HandshakeConfig::max_first_rid`] (2^53 − 2^32).
    pub first_rid: Option<u64>,
    /// `wait` asked for at session creation (the CM may lower it).
    pub wait: u32,
    /// `hold` asked for at session creation.
    pub hold: u32,
    /// `xml:lang` of the stream.
    pub lang: String,
    /// Optional `route` attribute (XEP-0124 §7.1).
    pub route: Option<String>,
    /// Log in with SASL2 + Bind 2 (XEP-0388, XEP-0386) when the server offers
    /// them (default `true`); `false` keeps to the classic login ("classic
    /// only", for servers whose SASL2 misbehaves). FAST tokens need SASL2.
    pub sasl2: bool,
}

impl HandshakeConfig {
    /// A configuration with `wait = 59` (Converse.js attaches with 59),
    /// `hold = 1`, `xml:lang = en` and a random first RID.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            first_rid: None,
            wait: 59,
            hold: 1,
            lang: "en".to_owned(),
            route: None,
            sasl2: true,
        }
    }

    /// The largest first RID a client may choose: 2^53 − 2^32, which leaves
    /// the handshake and the whole session that follows it
    /// ([`SESSION_RID_HEADROOM`] RIDs) below [`MAX_RID`].
    pub const fn max_first_rid() -> u64 {
        MAX_RID + 1 - SESSION_RID_HEADROOM
    }
}

/// A live, authenticated, bound BOSH session, ready to be handed to a browser.
///
/// `Debug` hides the `sid`: with the RID it is all it takes to take over the
/// session.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrebindSession {
    /// The full JID the server bound (from the bind result, RFC 6120 §7.6.1).
    pub jid: String,
    /// The BOSH session id.
    pub sid: String,
    /// The RID of the handshake's last request. Classic prebind APIs return
    /// this and the page calls `attach(jid, sid, rid + 1)`.
    pub last_rid: u64,
    /// `wait` in force for the session (the CM's answer, else what we asked).
    pub wait: u32,
    /// `hold` in force for the session.
    pub hold: u32,
    /// `requests` announced by the CM.
    pub requests: Option<u32>,
    /// `inactivity` announced by the CM: the browser must attach within this
    /// many seconds.
    pub inactivity: Option<u32>,
    /// `polling` announced by the CM.
    pub polling: Option<u32>,
    /// `maxpause` announced by the CM.
    pub maxpause: Option<u32>,
    /// How many HTTP requests the handshake made.
    pub round_trips: u32,
    /// The SASL mechanism used.
    pub mechanism: &'static str,
    /// A FAST token the server issued in this login (XEP-0484 §3.3), asked
    /// for or not (a server rotates old tokens unasked): store it in place of
    /// the one you had, it is the newest.
    pub fast_token: Option<FastToken>,
}

impl PrebindSession {
    /// The RID the browser's next request must carry: `last_rid + 1`. This is
    /// what Strophe.js `attach()` and Converse.js `prebind_url` expect.
    pub fn next_rid(&self) -> u64 {
        self.last_rid + 1
    }
}

impl fmt::Debug for PrebindSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrebindSession")
            .field("jid", &self.jid)
            .field("sid", &"<redacted>")
            .field("last_rid", &self.last_rid)
            .field("wait", &self.wait)
            .field("hold", &self.hold)
            .field("inactivity", &self.inactivity)
            .field("round_trips", &self.round_trips)
            .field("mechanism", &self.mechanism)
            .field("fast_token", &self.fast_token)
            .finish_non_exhaustive()
    }
}

/// What to do after a response. `Debug` shows a request's size, not its
/// body (a PLAIN `<auth/>` carries the password, base64 only).
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// POST this `<body/>` next.
    Send(String),
    /// Run this SCRAM key derivation ([`DeriveRequest::derive`], or a cached
    /// result), then call [`Handshake::derived`] with the salted password.
    /// Nothing is in flight at the CM meanwhile.
    Derive(DeriveRequest),
    /// The session is ready.
    Done(PrebindSession),
}

/// Why a handshake failed. Each maps to a condition a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The response was not a usable `<body/>`.
    #[error(transparent)]
    Parse(#[from] BoshParseError),
    /// The CM ended the session (`type='terminate'`, XEP-0124 §17.2).
    #[error("the connection manager terminated the session: {condition}{}", stream_error.as_ref().map(|s| format!(" (stream error {s})")).unwrap_or_default())]
    Terminated {
        /// The condition (`undefined-condition` when the CM gave none).
        condition: String,
        /// The `<stream:error>` condition for `remote-stream-error`.
        stream_error: Option<String>,
    },
    /// The CM answered `type='error'` (XEP-0124 §17.3).
    #[error("the connection manager answered with a recoverable binding error")]
    BindingError,
    /// The session-creation response had no `sid`.
    #[error("the connection manager's session-creation response has no sid")]
    MissingSid,
    /// A later response carried a different `sid`.
    #[error("the connection manager answered for another session")]
    SidMismatch,
    /// SASL could not go on on our side.
    #[error(transparent)]
    Sasl(#[from] SaslError),
    /// The server refused a FAST token (XEP-0484): `not-authorized` for a
    /// wrong, rotated-out or invalidated token, `credentials-expired` for an
    /// expired one. The BOSH session is ended; log in with the password (and
    /// [`Credentials::request_fast_token`]) on a new one, and drop the token.
    #[error("the server refused the FAST token: {condition}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    FastTokenRefused {
        /// The SASL condition.
        condition: String,
        /// The server's text, if any.
        text: Option<String>,
    },
    /// FAST credentials, but the server offers no usable FAST mechanism:
    /// no SASL2 or Bind 2 (or SASL2 turned off), or no `HT-SHA-256-NONE`.
    #[error("FAST is not available: {0}")]
    FastUnavailable(&'static str),
    /// The server asked for SASL2 tasks (`<continue/>`, XEP-0388 §2.7), such
    /// as a password change or a second factor, which a pre-binder cannot do.
    #[error("the server requires SASL2 tasks a pre-binder cannot perform: [{}]", .0.join(", "))]
    Sasl2TasksRequired(Vec<String>),
    /// The server refused the login (`<failure/>`, RFC 6120 §6.5).
    #[error("the server refused the login: {condition}{}", text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    AuthFailed {
        /// The SASL condition, such as `not-authorized`.
        condition: String,
        /// The server's text, if any.
        text: Option<String>,
    },
    /// Resource binding failed (RFC 6120 §7.6.2).
    #[error("resource binding failed: {0}")]
    BindFailed(String),
    /// The session IQ failed.
    #[error("session establishment failed: {0}")]
    SessionFailed(String),
    /// The server did not offer resource binding after authentication.
    #[error("the server does not offer resource binding")]
    NoBind,
    /// The bind result is not a full JID.
    #[error("the server bound an invalid JID")]
    InvalidJid,
    /// The server sent nothing useful within the allowed empty polls.
    #[error("the connection manager sent no {0} after {MAX_EMPTY_POLLS} polls")]
    Stalled(&'static str),
    /// Something out of order: a response that fits no step.
    #[error("unexpected response from the connection manager: {0}")]
    Unexpected(&'static str),
    /// `receive` was called after the handshake ended.
    #[error("the handshake is already over")]
    Finished,
}

impl HandshakeError {
    /// The condition a client is told: the CM's own for `terminate`,
    /// the SASL one for refused logins, else a XEP-0124 §17.2 condition.
    pub fn condition(&self) -> &str {
        match self {
            HandshakeError::Terminated { condition, .. } => condition,
            HandshakeError::AuthFailed { condition, .. }
            | HandshakeError::FastTokenRefused { condition, .. } => condition,
            HandshakeError::FastUnavailable(_) | HandshakeError::Sasl2TasksRequired(_) => {
                "policy-violation"
            }
            HandshakeError::Sasl(SaslError::NoMechanism { .. }) => "policy-violation",
            HandshakeError::BindFailed(condition) | HandshakeError::SessionFailed(condition) => {
                condition
            }
            _ => "undefined-condition",
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Waiting for the creation response, or for features after it.
    Created,
    /// SASL running.
    Authenticating(SaslExchange),
    /// SASL2 (with Bind 2) running.
    Sasl2(Sasl2Auth),
    /// SCRAM's server-first message received; waiting for the salted
    /// password before answering it, in a classic `<response/>` or a SASL2
    /// one (`sasl2`).
    Deriving {
        exchange: SaslExchange,
        challenge: String,
        sasl2: bool,
    },
    /// Restart sent, waiting for the post-auth features.
    Restarted,
    /// Bind IQ sent.
    Binding,
    /// Session IQ sent.
    Session,
    /// Done or failed.
    Over,
}

/// The mechanism behind a SASL2 `<authenticate/>`.
#[derive(Debug)]
enum Sasl2Auth {
    Sasl(SaslExchange),
    Fast(HtExchange),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Send(body) => write!(f, "Send(<{} bytes>)", body.len()),
            Step::Derive(request) => f.debug_tuple("Derive").field(request).finish(),
            Step::Done(session) => f.debug_tuple("Done").field(session).finish(),
        }
    }
}

/// The login state machine. See the module docs. `Debug` hides the sid and
/// the SASL state, as [`PrebindSession`]'s does.
pub struct Handshake {
    config: HandshakeConfig,
    phase: Phase,
    /// The RID of the next request.
    next_rid: u64,
    sid: Option<String>,
    attributes: bosh::SessionAttributes,
    mechanism: &'static str,
    jid: Option<String>,
    /// The session feature was advertised without `<optional/>`.
    session_required: bool,
    round_trips: u32,
    empty_polls: u32,
    /// The XEP-0388 user-agent id sent (fixed by FAST credentials, else random).
    user_agent_id: String,
    fast_token: Option<FastToken>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("credentials", &self.config.credentials)
            .field("next_rid", &self.next_rid)
            .field("sid", &self.sid.as_ref().map(|_| "<redacted>"))
            .field("mechanism", &self.mechanism)
            .field("jid", &self.jid)
            .field("round_trips", &self.round_trips)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake; returns it with the session-creation `<body/>`.
    ///
    /// A `first_rid` of 0 or above [`HandshakeConfig::max_first_rid`] is
    /// replaced by a random one; callers validate client input before.
    pub fn start(config: HandshakeConfig) -> (Self, String) {
        let first_rid = config
            .first_rid
            .filter(|rid| (1..=HandshakeConfig::max_first_rid()).contains(rid))
            .unwrap_or_else(random_rid);
        let mut handshake = Handshake {
            config,
            phase: Phase::Created,
            next_rid: first_rid,
            sid: None,
            attributes: bosh::SessionAttributes::default(),
            mechanism: "",
            jid: None,
            session_required: false,
            round_trips: 0,
            empty_polls: 0,
            user_agent_id: String::new(),
            fast_token: None,
        };
        handshake.user_agent_id = match handshake.config.credentials.user_agent_id() {
            Some(id) => id.to_owned(),
            None => sasl2::random_uuid(),
        };
        // XEP-0124 §7.1 `from`: Prosody offers FAST only with it (quirk 5).
        let from = (handshake.config.sasl2
            && (handshake.config.credentials.is_fast_token()
                || handshake.config.credentials.requests_fast_token()))
        .then(|| handshake.config.credentials.bare_jid())
        .flatten();
        let rid = handshake.take_rid();
        let body = SessionCreation {
            to: handshake.config.credentials.domain(),
            rid,
            wait: handshake.config.wait,
            hold: handshake.config.hold,
            lang: &handshake.config.lang,
            route: handshake.config.route.as_deref(),
        }
        .to_xml_from(from.as_deref());
        (handshake, body)
    }

    /// The session id, once the CM has given one.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// The RID of the last request sent.
    pub fn last_rid(&self) -> u64 {
        self.next_rid - 1
    }

    /// Feeds the response to the last request.
    pub fn receive(&mut self, body: &[u8]) -> Result<Step, HandshakeError> {
        let phase = std::mem::replace(&mut self.phase, Phase::Over);
        if matches!(phase, Phase::Over) {
            return Err(HandshakeError::Finished);
        }
        let response = BoshResponse::parse(body)?;
        check_body_type(&response)?;
        match (&self.sid, &response.sid) {
            (None, Some(sid)) => {
                self.sid = Some(sid.clone());
                self.attributes = response.attributes.clone();
            }
            (None, None) => return Err(HandshakeError::MissingSid),
            (Some(ours), Some(theirs)) if ours != theirs => {
                return Err(HandshakeError::SidMismatch);
            }
            _ => {}
        }
        match phase {
            Phase::Created => match response.features {
                Some(features) => self.authenticate(&features),
                None => self.poll(Phase::Created, "stream features"),
            },
            Phase::Authenticating(mut exchange) => match response.sasl {
                Some(SaslMessage::Challenge(data)) => {
                    if let Some(request) = exchange.derivation(&data)? {
                        self.phase = Phase::Deriving {
                            exchange,
                            challenge: data,
                            sasl2: false,
                        };
                        return Ok(Step::Derive(request));
                    }
                    let answer = exchange.challenge(&data)?;
                    self.phase = Phase::Authenticating(exchange);
                    Ok(self.send_payload(&answer))
                }
                Some(SaslMessage::Success(data)) => {
                    exchange.success(&data)?;
                    // RFC 6120 §6.4.6 / XEP-0206 §5: restart the stream.
                    let rid = self.take_rid();
                    self.phase = Phase::Restarted;
                    Ok(Step::Send(bosh::restart(
                        rid,
                        self.sid_str(),
                        self.config.credentials.domain(),
                        &self.config.lang,
                    )))
                }
                Some(SaslMessage::Failure { condition, text }) => {
                    Err(HandshakeError::AuthFailed { condition, text })
                }
                None => self.poll(Phase::Authenticating(exchange), "SASL answer"),
            },
            Phase::Sasl2(auth) => match response.sasl2 {
                Some(message) => self.sasl2_answer(auth, message),
                None => self.poll(Phase::Sasl2(auth), "SASL2 answer"),
            },
            Phase::Restarted => match response.features {
                Some(features) if features.bind => {
                    let mut bind = String::from("<bind xmlns='");
                    bind.push_str(NS_BIND);
                    bind.push('\'');
                    match self.config.credentials.resource() {
                        Some(resource) => {
                            bind.push_str("><resource>");
                            bind.push_str(&bosh::escape(resource));
                            bind.push_str("</resource></bind>");
                        }
                        None => bind.push_str("/>"),
                    }
                    let iq =
                        format!("<iq xmlns='{NS_CLIENT}' type='set' id='{BIND_ID}'>{bind}</iq>");
                    self.session_required = features.session_optional == Some(false);
                    self.phase = Phase::Binding;
                    Ok(self.send_payload(&iq))
                }
                Some(_) => Err(HandshakeError::NoBind),
                None => self.poll(Phase::Restarted, "stream features"),
            },
            Phase::Binding => {
                let Some(iq) = response
                    .iqs
                    .iter()
                    .find(|iq| iq.id.as_deref() == Some(BIND_ID))
                else {
                    return self.poll(Phase::Binding, "bind result");
                };
                match iq.kind {
                    IqType::Result => {
                        let jid = iq.bound_jid.as_deref().ok_or(HandshakeError::InvalidJid)?;
                        if !is_full_jid(jid) {
                            return Err(HandshakeError::InvalidJid);
                        }
                        self.jid = Some(jid.to_owned());
                        if self.session_required {
                            let iq = format!(
                                "<iq xmlns='{NS_CLIENT}' type='set' id='{SESSION_ID}'>\
                                 <session xmlns='{NS_SESSION}'/></iq>"
                            );
                            self.phase = Phase::Session;
                            Ok(self.send_payload(&iq))
                        } else {
                            Ok(Step::Done(self.finish()))
                        }
                    }
                    _ => Err(HandshakeError::BindFailed(
                        iq.error_condition
                            .clone()
                            .unwrap_or_else(|| "undefined-condition".into()),
                    )),
                }
            }
            Phase::Session => {
                let Some(iq) = response
                    .iqs
                    .iter()
                    .find(|iq| iq.id.as_deref() == Some(SESSION_ID))
                else {
                    return self.poll(Phase::Session, "session result");
                };
                match iq.kind {
                    IqType::Result => Ok(Step::Done(self.finish())),
                    _ => Err(HandshakeError::SessionFailed(
                        iq.error_condition
                            .clone()
                            .unwrap_or_else(|| "undefined-condition".into()),
                    )),
                }
            }
            Phase::Deriving { .. } => Err(HandshakeError::Unexpected(
                "a response while no request was in flight",
            )),
            Phase::Over => Err(HandshakeError::Finished),
        }
    }

    /// Continues after [`Step::Derive`] with the salted password
    /// ([`DeriveRequest::derive`]'s result): answers the server-first message.
    pub fn derived(&mut self, salted_password: &[u8]) -> Result<Step, HandshakeError> {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Deriving {
                mut exchange,
                challenge,
                sasl2,
            } => {
                exchange.derived(salted_password)?;
                if sasl2 {
                    let answer = exchange.challenge_raw(&challenge)?;
                    self.phase = Phase::Sasl2(Sasl2Auth::Sasl(exchange));
                    Ok(self.send_payload(&sasl2::response(&answer)))
                } else {
                    let answer = exchange.challenge(&challenge)?;
                    self.phase = Phase::Authenticating(exchange);
                    Ok(self.send_payload(&answer))
                }
            }
            Phase::Over => Err(HandshakeError::Finished),
            other => {
                self.phase = other;
                Err(HandshakeError::Unexpected(
                    "no key derivation was asked for",
                ))
            }
        }
    }

    /// The SASL mechanism chosen, once the stream features came.
    pub fn mechanism(&self) -> Option<&'static str> {
        (!self.mechanism.is_empty()).then_some(self.mechanism)
    }

    fn authenticate(&mut self, features: &StreamFeatures) -> Result<Step, HandshakeError> {
        let sasl2 = features
            .sasl2
            .as_ref()
            .filter(|offer| self.config.sasl2 && offer.bind2);
        if let Some((localpart, token)) = self.config.credentials.fast_secret() {
            let offer = sasl2.ok_or(HandshakeError::FastUnavailable(if self.config.sasl2 {
                "the server offers no SASL2 with Bind 2"
            } else {
                "SASL2 is turned off"
            }))?;
            if !offer.fast_mechanisms.iter().any(|m| m == HT_SHA_256_NONE) {
                return Err(HandshakeError::FastUnavailable(
                    "the server offers no HT-SHA-256-NONE",
                ));
            }
            let (exchange, initial) = HtExchange::start(localpart, token);
            self.mechanism = HT_SHA_256_NONE;
            let invalidate = self.config.credentials.invalidates_fast_token();
            let auth =
                self.authenticate_element(offer, HT_SHA_256_NONE, &initial, Some(invalidate));
            self.phase = Phase::Sasl2(Sasl2Auth::Fast(exchange));
            return Ok(self.send_payload(&auth));
        }
        if let Some(offer) = sasl2 {
            match SaslExchange::start_raw(&self.config.credentials, &offer.mechanisms) {
                Ok((exchange, initial)) => {
                    self.mechanism = exchange.mechanism();
                    let auth =
                        self.authenticate_element(offer, exchange.mechanism(), &initial, None);
                    self.phase = Phase::Sasl2(Sasl2Auth::Sasl(exchange));
                    return Ok(self.send_payload(&auth));
                }
                // Nothing usable in the SASL2 list: the classic one may have it.
                Err(SaslError::NoMechanism { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        let (exchange, auth) = SaslExchange::start(&self.config.credentials, &features.mechanisms)?;
        self.mechanism = exchange.mechanism();
        self.phase = Phase::Authenticating(exchange);
        Ok(self.send_payload(&auth))
    }

    /// The SASL2 `<authenticate/>` for `mechanism` (XEP-0388 §2.4), with
    /// Bind 2's `<bind/>` (never without it: the session would not be bound,
    /// `docs/protocol/prosody-13-sasl2.md`, negative control).
    fn authenticate_element(
        &self,
        offer: &Sasl2Features,
        mechanism: &str,
        initial_response: &str,
        fast: Option<bool>,
    ) -> String {
        let credentials = &self.config.credentials;
        // A token is only issued over a stream that offers FAST.
        let request_token = credentials.requests_fast_token()
            && offer.fast_mechanisms.iter().any(|m| m == HT_SHA_256_NONE);
        // The resource derives from tag + user-agent id (XEP-0386 §3): with
        // a fixed id (FAST), the same tag would give every session of the
        // user the same resource, so it gets a random suffix.
        let tag = credentials.resource().map(|tag| {
            if credentials.user_agent_id().is_some() {
                format!("{tag}-{}", sasl2::random_tag_suffix())
            } else {
                tag.to_owned()
            }
        });
        Authenticate {
            mechanism,
            initial_response,
            user_agent_id: &self.user_agent_id,
            request_token,
            fast,
            tag: tag.as_deref(),
        }
        .to_xml()
    }

    /// Handles the answer to a SASL2 `<authenticate/>` or `<response/>`.
    fn sasl2_answer(
        &mut self,
        auth: Sasl2Auth,
        message: Sasl2Message,
    ) -> Result<Step, HandshakeError> {
        match (auth, message) {
            (Sasl2Auth::Sasl(mut exchange), Sasl2Message::Challenge(data)) => {
                // SCRAM's server-first message: the key derivation is the
                // caller's step, as in the classic exchange.
                if let Some(request) = exchange.derivation(&data)? {
                    self.phase = Phase::Deriving {
                        exchange,
                        challenge: data,
                        sasl2: true,
                    };
                    return Ok(Step::Derive(request));
                }
                let answer = exchange.challenge_raw(&data)?;
                self.phase = Phase::Sasl2(Sasl2Auth::Sasl(exchange));
                Ok(self.send_payload(&sasl2::response(&answer)))
            }
            (Sasl2Auth::Fast(_), Sasl2Message::Challenge(_)) => Err(HandshakeError::Unexpected(
                "a SASL2 challenge to a FAST login",
            )),
            (auth, Sasl2Message::Success(success)) => {
                match auth {
                    Sasl2Auth::Sasl(mut exchange) => {
                        exchange.success(success.additional_data.as_deref().unwrap_or_default())?;
                    }
                    Sasl2Auth::Fast(exchange) => {
                        exchange.success(success.additional_data.as_deref())?;
                    }
                }
                self.sasl2_success(success)
            }
            (Sasl2Auth::Fast(_), Sasl2Message::Failure { condition, text }) => {
                Err(HandshakeError::FastTokenRefused { condition, text })
            }
            (Sasl2Auth::Sasl(_), Sasl2Message::Failure { condition, text }) => {
                Err(HandshakeError::AuthFailed { condition, text })
            }
            (_, Sasl2Message::Continue { tasks }) => Err(HandshakeError::Sasl2TasksRequired(tasks)),
        }
    }

    /// XEP-0388 §2.6 / XEP-0386 §4: the `<authorization-identifier>` of the
    /// `<success>` is the bound full JID. The stream features that follow it
    /// (no bind there on Prosody 13, quirk 2) are ignored: no restart.
    fn sasl2_success(&mut self, success: Sasl2Success) -> Result<Step, HandshakeError> {
        let jid = success
            .authorization_identifier
            .as_deref()
            .ok_or(HandshakeError::NoBind)?;
        if !is_full_jid(jid) {
            // A bare JID: the server did not bind (Bind 2 ignored).
            return Err(if jid.contains('/') {
                HandshakeError::InvalidJid
            } else {
                HandshakeError::NoBind
            });
        }
        self.jid = Some(jid.to_owned());
        // XEP-0484 §3.3: keep whatever token came, asked for or not.
        if let Some(token) = success.token.filter(|t| !t.is_empty()) {
            self.fast_token = Some(FastToken {
                token,
                expiry: success.token_expiry,
                user_agent_id: self.user_agent_id.clone(),
            });
        }
        Ok(Step::Done(self.finish()))
    }

    /// Sends an empty `<body/>` to fetch what the CM has not sent yet
    /// (XEP-0206 §5 allows features to come in a later response).
    fn poll(&mut self, phase: Phase, what: &'static str) -> Result<Step, HandshakeError> {
        self.empty_polls += 1;
        if self.empty_polls > MAX_EMPTY_POLLS {
            return Err(HandshakeError::Stalled(what));
        }
        self.phase = phase;
        let rid = self.take_rid();
        Ok(Step::Send(bosh::empty(rid, self.sid_str())))
    }

    fn send_payload(&mut self, payload: &str) -> Step {
        let rid = self.take_rid();
        Step::Send(bosh::payload(rid, self.sid_str(), payload))
    }

    fn take_rid(&mut self) -> u64 {
        let rid = self.next_rid;
        self.next_rid += 1;
        self.round_trips += 1;
        rid
    }

    fn sid_str(&self) -> &str {
        self.sid.as_deref().unwrap_or_default()
    }

    fn finish(&mut self) -> PrebindSession {
        PrebindSession {
            jid: self.jid.take().unwrap_or_default(),
            sid: self.sid.clone().unwrap_or_default(),
            last_rid: self.last_rid(),
            wait: self.attributes.wait.unwrap_or(self.config.wait),
            hold: self.attributes.hold.unwrap_or(self.config.hold),
            requests: self.attributes.requests,
            inactivity: self.attributes.inactivity,
            polling: self.attributes.polling,
            maxpause: self.attributes.maxpause,
            round_trips: self.round_trips,
            mechanism: self.mechanism,
            fast_token: self.fast_token.take(),
        }
    }
}

fn check_body_type(response: &BoshResponse) -> Result<(), HandshakeError> {
    match &response.body_type {
        BodyType::Normal => Ok(()),
        BodyType::Terminate {
            condition,
            stream_error,
        } => Err(HandshakeError::Terminated {
            condition: condition
                .clone()
                .unwrap_or_else(|| "undefined-condition".to_owned()),
            stream_error: stream_error.clone(),
        }),
        BodyType::Error => Err(HandshakeError::BindingError),
    }
}

/// A bind result must be `[local@]domain/resource` (RFC 7622 §3): no
/// control characters anywhere, no whitespace in the bare JID (the resource
/// may contain spaces, RFC 7622 §3.4). The server, not us, is the authority
/// on the rest.
fn is_full_jid(jid: &str) -> bool {
    let Some((bare, resource)) = jid.split_once('/') else {
        return false;
    };
    let domain = bare.rsplit_once('@').map_or(bare, |(_, d)| d);
    !domain.is_empty()
        && !resource.is_empty()
        && jid.len() <= 3071
        && !bare.chars().any(char::is_whitespace)
        && !jid.chars().any(char::is_control)
}

fn random_rid() -> u64 {
    // Strophe.js picks a random RID below 2^32; a random start makes RIDs
    // unguessable (XEP-0124 §14.1).
    rand::thread_rng().gen_range(1..(1u64 << 32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::credentials::Mechanism;
    use crate::protocol::xml;

    // Responses verbatim from docs/protocol/prosody-0.12.md (Prosody 0.12.3).
    const ANON_CREATED: &str = "<body hold='1' authid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' secure='true' xmpp:version='1.0' ver='1.6' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' from='anon.localhost' requests='2' polling='5' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' inactivity='60' wait='60'><stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>";
    const ANON_SUCCESS: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>";
    const ANON_RESTARTED: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><stream:features xmlns='jabber:client'><c hash='sha-1' xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/></stream:features></body>";
    const ANON_BOUND: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><iq id='bind_1' xmlns='jabber:client' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5</jid></bind></iq></body>";
    const SID: &str = "7d0aa91d-ded8-4d91-89b3-b4c918168c50";

    const PLAIN_CREATED: &str = "<body hold='1' authid='1877db62-ce88-4547-9117-b407d3e6d4df' secure='true' xmpp:version='1.0' ver='1.6' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' from='localhost' requests='2' polling='5' sid='1877db62-ce88-4547-9117-b407d3e6d4df' inactivity='60' wait='60'><stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features></body>";
    const PLAIN_SUCCESS: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='1877db62-ce88-4547-9117-b407d3e6d4df'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>";
    const PLAIN_RESTARTED: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='1877db62-ce88-4547-9117-b407d3e6d4df'><stream:features xmlns='jabber:client'><sub xmlns='urn:xmpp:features:pre-approval'/><ver xmlns='urn:xmpp:features:rosterver'/><c hash='sha-1' xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features></body>";
    const PLAIN_BOUND: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='1877db62-ce88-4547-9117-b407d3e6d4df'><iq id='bind_1' xmlns='jabber:client' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/mpZIduEk0fTx</jid></bind></iq></body>";

    fn anonymous(first_rid: u64) -> (Handshake, String) {
        let mut config = HandshakeConfig::new(Credentials::anonymous("anon.localhost"));
        config.first_rid = Some(first_rid);
        config.wait = 60;
        Handshake::start(config)
    }

    fn send(step: Result<Step, HandshakeError>) -> xml::Element {
        match step {
            Ok(Step::Send(body)) => xml::parse(body.as_bytes()).unwrap(),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// Runs a [`Step::Derive`] the way the driver does, then expects a
    /// request; any other step must already be a request.
    fn derive_then_send(
        handshake: &mut Handshake,
        step: Result<Step, HandshakeError>,
    ) -> xml::Element {
        match step {
            Ok(Step::Derive(request)) => send(handshake.derived(&request.derive())),
            other => send(other),
        }
    }

    fn rid(body: &xml::Element) -> u64 {
        body.attr("rid").unwrap().parse().unwrap()
    }

    #[test]
    fn anonymous_transcript_gives_bound_session_in_four_round_trips() {
        let (mut handshake, creation) = anonymous(1062715484561);
        let creation = xml::parse(creation.as_bytes()).unwrap();
        assert_eq!(rid(&creation), 1062715484561);
        assert_eq!(creation.attr("to"), Some("anon.localhost"));
        assert_eq!(creation.attr("hold"), Some("1"));
        assert_eq!(creation.attr("wait"), Some("60"));
        assert_eq!(creation.attr("sid"), None);

        let auth = send(handshake.receive(ANON_CREATED.as_bytes()));
        assert_eq!(rid(&auth), 1062715484562);
        assert_eq!(auth.attr("sid"), Some(SID));
        let mechanism = auth.child(crate::protocol::bosh::NS_SASL, "auth").unwrap();
        assert_eq!(mechanism.attr("mechanism"), Some("ANONYMOUS"));
        assert_eq!(mechanism.text, "=");

        let restart = send(handshake.receive(ANON_SUCCESS.as_bytes()));
        assert_eq!(rid(&restart), 1062715484563);
        assert_eq!(
            restart.attr_ns(crate::protocol::bosh::NS_XBOSH, "restart"),
            Some("true")
        );
        assert_eq!(restart.attr("to"), Some("anon.localhost"));

        let bind = send(handshake.receive(ANON_RESTARTED.as_bytes()));
        assert_eq!(rid(&bind), 1062715484564);
        let iq = bind.child(NS_CLIENT, "iq").unwrap();
        assert_eq!(iq.attr("type"), Some("set"));
        assert!(iq.child(NS_BIND, "bind").unwrap().children.is_empty());

        let Ok(Step::Done(session)) = handshake.receive(ANON_BOUND.as_bytes()) else {
            panic!("not done");
        };
        assert_eq!(
            session.jid,
            "eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5"
        );
        assert_eq!(session.sid, SID);
        assert_eq!(session.last_rid, 1062715484564);
        assert_eq!(session.next_rid(), 1062715484565);
        assert_eq!(
            (session.wait, session.hold, session.inactivity),
            (60, 1, Some(60))
        );
        assert_eq!((session.requests, session.polling), (Some(2), Some(5)));
        assert_eq!(session.round_trips, 4);
        assert_eq!(session.mechanism, "ANONYMOUS");
        assert_eq!(
            handshake.receive(ANON_BOUND.as_bytes()),
            Err(HandshakeError::Finished)
        );
    }

    #[test]
    fn plain_transcript_sends_prosodys_exact_initial_response() {
        let mut config =
            HandshakeConfig::new(Credentials::account("alice@localhost", "secret-alice").unwrap());
        config.first_rid = Some(613066136849);
        let (mut handshake, _) = Handshake::start(config);
        let auth = send(handshake.receive(PLAIN_CREATED.as_bytes()));
        let auth = auth.child(crate::protocol::bosh::NS_SASL, "auth").unwrap();
        assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
        assert_eq!(auth.text, "AGFsaWNlAHNlY3JldC1hbGljZQ==");
        send(handshake.receive(PLAIN_SUCCESS.as_bytes()));
        send(handshake.receive(PLAIN_RESTARTED.as_bytes()));
        let Ok(Step::Done(session)) = handshake.receive(PLAIN_BOUND.as_bytes()) else {
            panic!("not done");
        };
        assert_eq!(session.jid, "alice@localhost/mpZIduEk0fTx");
        assert_eq!(session.last_rid, 613066136852);
        assert_eq!(session.mechanism, "PLAIN");
    }

    #[test]
    fn late_features_are_fetched_with_an_empty_body() {
        let (mut handshake, _) = anonymous(10);
        let created_without_features = format!(
            "<body xmlns='http://jabber.org/protocol/httpbind' sid='{SID}' wait='60' hold='1'/>"
        );
        let poll = send(handshake.receive(created_without_features.as_bytes()));
        assert_eq!(rid(&poll), 11);
        assert!(poll.children.is_empty());
        assert_eq!(poll.attr("sid"), Some(SID));
        let auth = send(handshake.receive(ANON_CREATED.as_bytes()));
        assert_eq!(rid(&auth), 12);
        assert!(auth.child(crate::protocol::bosh::NS_SASL, "auth").is_some());
    }

    #[test]
    fn a_cm_that_never_sends_features_is_given_up_on() {
        let (mut handshake, _) = anonymous(10);
        let empty = format!("<body xmlns='http://jabber.org/protocol/httpbind' sid='{SID}'/>");
        for _ in 0..MAX_EMPTY_POLLS {
            send(handshake.receive(empty.as_bytes()));
        }
        assert_eq!(
            handshake.receive(empty.as_bytes()),
            Err(HandshakeError::Stalled("stream features"))
        );
    }

    #[test]
    fn required_session_is_established_and_optional_is_skipped() {
        let required = ANON_RESTARTED.replace("<optional/>", "");
        let (mut handshake, _) = anonymous(1);
        send(handshake.receive(ANON_CREATED.as_bytes()));
        send(handshake.receive(ANON_SUCCESS.as_bytes()));
        send(handshake.receive(required.as_bytes()));
        let session_iq = send(handshake.receive(ANON_BOUND.as_bytes()));
        assert_eq!(rid(&session_iq), 5);
        let iq = session_iq.child(NS_CLIENT, "iq").unwrap();
        assert!(iq.child(NS_SESSION, "session").is_some());
        let result = format!(
            "<body xmlns='http://jabber.org/protocol/httpbind'><iq xmlns='jabber:client' type='result' id='{}'/></body>",
            iq.attr("id").unwrap()
        );
        let Ok(Step::Done(session)) = handshake.receive(result.as_bytes()) else {
            panic!("not done");
        };
        assert_eq!(session.last_rid, 5);
        assert_eq!(session.round_trips, 5);
    }

    #[test]
    fn terminate_sasl_failure_and_bind_errors_are_typed() {
        let (mut handshake, _) = anonymous(1);
        assert_eq!(
            handshake.receive(b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='host-unknown'/>"),
            Err(HandshakeError::Terminated { condition: "host-unknown".into(), stream_error: None })
        );

        let (mut handshake, _) = anonymous(1);
        send(handshake.receive(ANON_CREATED.as_bytes()));
        let failure = handshake
            .receive(b"<body xmlns='http://jabber.org/protocol/httpbind'><failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure></body>")
            .unwrap_err();
        assert_eq!(failure.condition(), "not-authorized");

        let (mut handshake, _) = anonymous(1);
        send(handshake.receive(ANON_CREATED.as_bytes()));
        send(handshake.receive(ANON_SUCCESS.as_bytes()));
        send(handshake.receive(ANON_RESTARTED.as_bytes()));
        let bind_error = handshake
            .receive(b"<body xmlns='http://jabber.org/protocol/httpbind'><iq xmlns='jabber:client' type='error' id='bind_1'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq></body>")
            .unwrap_err();
        assert_eq!(bind_error, HandshakeError::BindFailed("conflict".into()));
    }

    #[test]
    fn missing_or_changed_sid_and_bad_jids_are_refused() {
        let (mut handshake, _) = anonymous(1);
        assert_eq!(
            handshake.receive(b"<body xmlns='http://jabber.org/protocol/httpbind'/>"),
            Err(HandshakeError::MissingSid)
        );
        let (mut handshake, _) = anonymous(1);
        send(handshake.receive(ANON_CREATED.as_bytes()));
        assert_eq!(
            handshake.receive(ANON_SUCCESS.replace(SID, "other").as_bytes()),
            Err(HandshakeError::SidMismatch)
        );
        let (mut handshake, _) = anonymous(1);
        send(handshake.receive(ANON_CREATED.as_bytes()));
        send(handshake.receive(ANON_SUCCESS.as_bytes()));
        send(handshake.receive(ANON_RESTARTED.as_bytes()));
        assert_eq!(
            handshake.receive(ANON_BOUND.replace("/GtONlPbg6nB5", "").as_bytes()),
            Err(HandshakeError::InvalidJid)
        );
    }

    #[test]
    fn rids_start_random_below_2_pow_32_unless_given_and_in_range() {
        for _ in 0..100 {
            let (handshake, _) =
                Handshake::start(HandshakeConfig::new(Credentials::anonymous("d")));
            assert!((1..1 << 32).contains(&handshake.last_rid()));
        }
        let (handshake, _) = anonymous(HandshakeConfig::max_first_rid());
        assert_eq!(handshake.last_rid(), HandshakeConfig::max_first_rid());
        let mut config = HandshakeConfig::new(Credentials::anonymous("d"));
        config.first_rid = Some(MAX_RID);
        let (handshake, _) = Handshake::start(config);
        assert!(handshake.last_rid() < 1 << 32);
    }

    #[test]
    fn debug_hides_the_sid() {
        let (mut handshake, _) = anonymous(1);
        send(handshake.receive(ANON_CREATED.as_bytes()));
        send(handshake.receive(ANON_SUCCESS.as_bytes()));
        send(handshake.receive(ANON_RESTARTED.as_bytes()));
        let Ok(Step::Done(session)) = handshake.receive(ANON_BOUND.as_bytes()) else {
            panic!("not done");
        };
        assert!(!format!("{session:?}").contains(SID));
    }

    // Prosody 13.0.1 + mod_sasl2/_bind2/_fast, from
    // docs/protocol/prosody-13-sasl2.md (q1); the parts shortened there with
    // "…" are filled in with what Prosody sends.
    const P13_SID: &str = "dbdf1a67-9b4e-4d43-9b07-3c5f0e8e6f15";
    const P13_CREATED: &str = "<body hold='1' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' sid='dbdf1a67-9b4e-4d43-9b07-3c5f0e8e6f15' ver='1.6' secure='true' polling='5' inactivity='60' requests='2' wait='10' xmpp:version='1.0' from='localhost'><stream:features xmlns='jabber:client'><authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-1</mechanism><mechanism>OAUTHBEARER</mechanism><mechanism>PLAIN</mechanism><inline><bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/><feature var='urn:xmpp:sm:3'/></inline></bind><sm xmlns='urn:xmpp:sm:3'/></inline></authentication><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>OAUTHBEARER</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features></body>";
    const P13_ANON_CREATED: &str = "<body hold='1' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' sid='dbdf1a67-9b4e-4d43-9b07-3c5f0e8e6f15' ver='1.6' secure='true' polling='5' inactivity='60' requests='2' wait='10' xmpp:version='1.0' from='anon.localhost'><stream:features xmlns='jabber:client'><authentication xmlns='urn:xmpp:sasl:2'><mechanism>ANONYMOUS</mechanism><inline><bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/><feature var='urn:xmpp:sm:3'/></inline></bind><sm xmlns='urn:xmpp:sm:3'/></inline></authentication><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>";
    /// With `from='alice@localhost'` on the creation body: FAST is offered.
    const P13_FAST_CREATED: &str = "<body hold='1' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' sid='dbdf1a67-9b4e-4d43-9b07-3c5f0e8e6f15' ver='1.6' secure='true' polling='5' inactivity='60' requests='2' wait='10' xmpp:version='1.0' from='localhost'><stream:features xmlns='jabber:client'><authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-1</mechanism><mechanism>OAUTHBEARER</mechanism><mechanism>PLAIN</mechanism><inline><bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/><feature var='urn:xmpp:sm:3'/></inline></bind><fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism></fast><sm xmlns='urn:xmpp:sm:3'/></inline></authentication><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>OAUTHBEARER</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features></body>";
    /// What follows a SASL2 `<success>` in the same body (no bind feature).
    const P13_POST_FEATURES: &str = "<stream:features xmlns='jabber:client'><sub xmlns='urn:xmpp:features:pre-approval'/><c hash='sha-1' xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' ver='x'/><ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:2'><optional/></sm><sm xmlns='urn:xmpp:sm:3'><optional/></sm></stream:features>";
    const TOKEN: &str = "secret-token:fast-QZJcpgSVneGZMOh4IQ4HOYvu6-J0jgWC8oZ4";

    fn p13_body(inner: &str) -> String {
        format!(
            "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='{P13_SID}'>{inner}</body>"
        )
    }

    fn sasl2_success(jid: &str, extra: &str) -> String {
        p13_body(&format!(
            "<success xmlns='urn:xmpp:sasl:2'>{extra}<bound xmlns='urn:xmpp:bind:0'/><authorization-identifier>{jid}</authorization-identifier></success>{P13_POST_FEATURES}"
        ))
    }

    fn start(credentials: Credentials, first_rid: u64) -> (Handshake, xml::Element) {
        let mut config = HandshakeConfig::new(credentials);
        config.first_rid = Some(first_rid);
        let (handshake, creation) = Handshake::start(config);
        (handshake, xml::parse(creation.as_bytes()).unwrap())
    }

    fn authenticate(body: &xml::Element) -> &xml::Element {
        body.child(bosh::NS_SASL2, "authenticate")
            .expect("a SASL2 <authenticate/>")
    }

    fn done(step: Result<Step, HandshakeError>) -> PrebindSession {
        match step {
            Ok(Step::Done(session)) => session,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    fn b64() -> base64::engine::GeneralPurpose {
        base64::engine::general_purpose::STANDARD
    }

    #[test]
    fn sasl2_anonymous_binds_in_two_round_trips() {
        let (mut handshake, creation) =
            start(Credentials::anonymous("anon.localhost"), 524179820915);
        assert_eq!(creation.attr("from"), None, "no from without FAST");
        let body = send(handshake.receive(P13_ANON_CREATED.as_bytes()));
        assert_eq!(rid(&body), 524179820916);
        let auth = authenticate(&body);
        assert_eq!(auth.attr("mechanism"), Some("ANONYMOUS"));
        assert!(auth.child(bosh::NS_SASL2, "initial-response").is_none());
        let user_agent = auth.child(bosh::NS_SASL2, "user-agent").unwrap();
        assert_eq!(user_agent.attr("id").unwrap().len(), 36, "a UUID");
        let bind = auth.child(bosh::NS_BIND2, "bind").expect("Bind 2 always");
        assert!(bind.children.is_empty(), "no tag: server-chosen resource");
        assert!(body.child(bosh::NS_SASL, "auth").is_none());
        let session = done(handshake.receive(
            sasl2_success("l0gcrcfkv0fb_ztauu1utbzh@anon.localhost/5axm7rCq-2An", "").as_bytes(),
        ));
        assert_eq!(
            session.jid,
            "l0gcrcfkv0fb_ztauu1utbzh@anon.localhost/5axm7rCq-2An"
        );
        assert_eq!(session.round_trips, 2);
        assert_eq!(session.last_rid, 524179820916);
        assert_eq!(session.mechanism, "ANONYMOUS");
        assert_eq!(session.inactivity, Some(60));
        assert_eq!(session.fast_token, None);
    }

    #[test]
    fn sasl2_plain_sends_prosodys_exact_initial_response() {
        let (mut handshake, _) = start(
            Credentials::account("alice@localhost", "secret-alice")
                .unwrap()
                .with_mechanisms([Mechanism::Plain]),
            239718490466,
        );
        let body = send(handshake.receive(P13_CREATED.as_bytes()));
        let auth = authenticate(&body);
        assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
        assert_eq!(
            auth.child(bosh::NS_SASL2, "initial-response").unwrap().text,
            "AGFsaWNlAHNlY3JldC1hbGljZQ=="
        );
        assert!(auth.child(bosh::NS_FAST, "request-token").is_none());
        let session =
            done(handshake.receive(sasl2_success("alice@localhost/iQQSCA4_7LGJ", "").as_bytes()));
        assert_eq!(session.jid, "alice@localhost/iQQSCA4_7LGJ");
        assert_eq!(session.round_trips, 2);
        assert_eq!(session.mechanism, "PLAIN");
    }

    /// The server side of SCRAM-SHA-1 (RFC 5802 §3) for `secret-alice`.
    struct ScramServer {
        client_first_bare: String,
        server_first: String,
    }

    fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    impl ScramServer {
        fn first(initial_response: &str) -> (Self, String) {
            use base64::Engine as _;
            let client_first = String::from_utf8(b64().decode(initial_response).unwrap()).unwrap();
            let bare = client_first.strip_prefix("n,,").unwrap().to_owned();
            let nonce = bare.split(',').find_map(|f| f.strip_prefix("r=")).unwrap();
            let server_first = format!("r={nonce}srvnonce,s={},i=4096", b64().encode("salt"));
            let challenge = b64().encode(&server_first);
            (
                ScramServer {
                    client_first_bare: bare,
                    server_first,
                },
                challenge,
            )
        }

        /// Checks the client proof; returns the base64 server-final message.
        fn last(&self, response: &str) -> String {
            use base64::Engine as _;
            use sha1::Digest as _;
            let client_final = String::from_utf8(b64().decode(response).unwrap()).unwrap();
            let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();
            let auth_message = format!(
                "{},{},{without_proof}",
                self.client_first_bare, self.server_first
            );
            let salted = crate::protocol::scram_cache::salt_password(
                "SCRAM-SHA-1",
                b"secret-alice",
                b"salt",
                4096,
            );
            let client_key = hmac_sha1(&salted, b"Client Key");
            let stored_key = sha1::Sha1::digest(&client_key);
            let signature = hmac_sha1(&stored_key, auth_message.as_bytes());
            let expected: Vec<u8> = client_key
                .iter()
                .zip(&signature)
                .map(|(a, b)| a ^ b)
                .collect();
            assert_eq!(b64().decode(proof).unwrap(), expected, "client proof");
            let server_key = hmac_sha1(&salted, b"Server Key");
            let verifier = hmac_sha1(&server_key, auth_message.as_bytes());
            b64().encode(format!("v={}", b64().encode(verifier)))
        }
    }

    #[test]
    fn debug_shows_neither_the_sid_nor_a_request_body() {
        let step = Step::Send("<auth mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>".into());
        assert_eq!(format!("{step:?}"), "Send(<51 bytes>)");
        let (mut handshake, _) = start(
            Credentials::account("alice@localhost", "secret-alice").unwrap(),
            1078640859110,
        );
        send(handshake.receive(P13_CREATED.as_bytes()));
        let shown = format!("{handshake:?}");
        assert!(shown.contains("sid: Some(\"<redacted>\")"), "{shown}");
        assert!(!shown.contains("dbdf1a67"), "{shown}");
        assert!(!shown.contains("secret-alice"), "{shown}");
    }

    #[test]
    fn sasl2_scram_sha1_binds_in_three_round_trips() {
        let (mut handshake, _) = start(
            Credentials::account("alice@localhost", "secret-alice").unwrap(),
            1078640859110,
        );
        let body = send(handshake.receive(P13_CREATED.as_bytes()));
        let auth = authenticate(&body);
        assert_eq!(auth.attr("mechanism"), Some("SCRAM-SHA-1"));
        let initial = &auth.child(bosh::NS_SASL2, "initial-response").unwrap().text;
        assert!(initial.starts_with("biwsbj1hbGljZSxy"), "{initial}");
        let (server, challenge) = ScramServer::first(initial);
        let step = handshake.receive(
            p13_body(&format!(
                "<challenge xmlns='urn:xmpp:sasl:2'>{challenge}</challenge>"
            ))
            .as_bytes(),
        );
        // SASL2's SCRAM hands the PBKDF2 run to the caller as well.
        assert!(matches!(step, Ok(Step::Derive(_))), "{step:?}");
        let body = derive_then_send(&mut handshake, step);
        assert_eq!(rid(&body), 1078640859112);
        let response = body.child(bosh::NS_SASL2, "response").unwrap();
        let server_final = server.last(&response.text);
        let session = done(
            handshake.receive(
                sasl2_success(
                    "alice@localhost/JLeDTiQhlrUq",
                    &format!("<additional-data>{server_final}</additional-data>"),
                )
                .as_bytes(),
            ),
        );
        assert_eq!(session.round_trips, 3);
        assert_eq!(session.mechanism, "SCRAM-SHA-1");
        assert_eq!(session.jid, "alice@localhost/JLeDTiQhlrUq");

        // A server that does not know the password cannot fake success.
        let (mut handshake, _) = start(
            Credentials::account("alice@localhost", "secret-alice").unwrap(),
            1,
        );
        let body = send(handshake.receive(P13_CREATED.as_bytes()));
        let initial = &authenticate(&body)
            .child(bosh::NS_SASL2, "initial-response")
            .unwrap()
            .text;
        let (_, challenge) = ScramServer::first(initial);
        let step = handshake.receive(
            p13_body(&format!(
                "<challenge xmlns='urn:xmpp:sasl:2'>{challenge}</challenge>"
            ))
            .as_bytes(),
        );
        derive_then_send(&mut handshake, step);
        let forged = "<additional-data>dj1BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE9</additional-data>";
        assert!(matches!(
            handshake.receive(sasl2_success("alice@localhost/x", forged).as_bytes()),
            Err(HandshakeError::Sasl(_))
        ));
    }

    #[test]
    fn a_token_is_requested_during_a_password_login_and_surfaced() {
        let (mut handshake, creation) = start(
            Credentials::account("alice@localhost", "secret-alice")
                .unwrap()
                .with_mechanisms([Mechanism::Plain])
                .request_fast_token("6bb4cf6c-1f93-4a0e-9cde-74afc7f6ead4"),
            1,
        );
        assert_eq!(creation.attr("from"), Some("alice@localhost"));
        let body = send(handshake.receive(P13_FAST_CREATED.as_bytes()));
        let auth = authenticate(&body);
        assert_eq!(
            auth.child(bosh::NS_SASL2, "user-agent").unwrap().attr("id"),
            Some("6bb4cf6c-1f93-4a0e-9cde-74afc7f6ead4")
        );
        assert_eq!(
            auth.child(bosh::NS_FAST, "request-token")
                .unwrap()
                .attr("mechanism"),
            Some("HT-SHA-256-NONE")
        );
        assert!(auth.child(bosh::NS_FAST, "fast").is_none());
        let token = format!(
            "<token xmlns='urn:xmpp:fast:0' expiry='2026-12-22T01:38:23.035212Z' token='{TOKEN}'/>"
        );
        let session = done(
            handshake
                .receive(sasl2_success("alice@localhost/webapp~SF2OAu43unoa", &token).as_bytes()),
        );
        assert_eq!(session.round_trips, 2);
        let token = session.fast_token.expect("the token");
        assert_eq!(token.token, TOKEN);
        assert_eq!(token.expiry.as_deref(), Some("2026-12-22T01:38:23.035212Z"));
        assert_eq!(token.user_agent_id, "6bb4cf6c-1f93-4a0e-9cde-74afc7f6ead4");

        // A stream without FAST on offer: the login goes on, nothing asked.
        let (mut handshake, _) = start(
            Credentials::account("alice@localhost", "secret-alice")
                .unwrap()
                .request_fast_token("ua"),
            1,
        );
        let body = send(handshake.receive(P13_CREATED.as_bytes()));
        assert!(
            authenticate(&body)
                .child(bosh::NS_FAST, "request-token")
                .is_none()
        );
    }

    fn fast_alice() -> Credentials {
        Credentials::fast_token(
            "alice@localhost",
            TOKEN,
            "6bb4cf6c-1f93-4a0e-9cde-74afc7f6ead4",
        )
        .unwrap()
    }

    fn responder(token: &str) -> String {
        use base64::Engine as _;
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(b"Responder");
        b64().encode(mac.finalize().into_bytes())
    }

    #[test]
    fn fast_login_takes_two_round_trips_and_keeps_a_rotated_token() {
        let (mut handshake, creation) = start(fast_alice(), 119903663653);
        assert_eq!(creation.attr("from"), Some("alice@localhost"));
        let body = send(handshake.receive(P13_FAST_CREATED.as_bytes()));
        assert_eq!(rid(&body), 119903663654);
        let auth = authenticate(&body);
        assert_eq!(auth.attr("mechanism"), Some("HT-SHA-256-NONE"));
        let initial = &auth.child(bosh::NS_SASL2, "initial-response").unwrap().text;
        assert!(initial.starts_with("YWxpY2UA"), "{initial}");
        let fast = auth.child(bosh::NS_FAST, "fast").unwrap();
        assert_eq!(fast.attr("invalidate"), None);
        assert_eq!(
            auth.child(bosh::NS_SASL2, "user-agent").unwrap().attr("id"),
            Some("6bb4cf6c-1f93-4a0e-9cde-74afc7f6ead4")
        );
        // An unrequested new token (rotation) comes with the success.
        let extra = format!(
            "<additional-data>{}</additional-data><token xmlns='urn:xmpp:fast:0' expiry='2026-12-23T00:00:00Z' token='secret-token:fast-new'/>",
            responder(TOKEN)
        );
        let session = done(
            handshake.receive(sasl2_success("alice@localhost/bdZJID8E6asO", &extra).as_bytes()),
        );
        assert_eq!(session.round_trips, 2);
        assert_eq!(session.mechanism, "HT-SHA-256-NONE");
        assert_eq!(session.jid, "alice@localhost/bdZJID8E6asO");
        assert_eq!(
            session.fast_token.as_ref().map(|t| t.token.as_str()),
            Some("secret-token:fast-new")
        );
        assert!(!format!("{session:?}").contains("fast-new"));

        // A wrong responder value: the server does not know the token.
        let (mut handshake, _) = start(fast_alice(), 1);
        send(handshake.receive(P13_FAST_CREATED.as_bytes()));
        let extra = format!("<additional-data>{}</additional-data>", responder("other"));
        assert!(matches!(
            handshake.receive(sasl2_success("alice@localhost/x", &extra).as_bytes()),
            Err(HandshakeError::Sasl(_))
        ));
    }

    #[test]
    fn fast_invalidation_and_refusals_are_distinct_errors() {
        let (mut handshake, _) = start(fast_alice().invalidate_fast_token(), 1);
        let body = send(handshake.receive(P13_FAST_CREATED.as_bytes()));
        assert_eq!(
            authenticate(&body)
                .child(bosh::NS_FAST, "fast")
                .unwrap()
                .attr("invalidate"),
            Some("true")
        );

        for (failure, condition) in [
            (
                "<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>",
                "not-authorized",
            ),
            (
                "<failure xmlns='urn:xmpp:sasl:2'><credentials-expired xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>",
                "credentials-expired",
            ),
            // Prosody's malformed-request is in the SASL2 namespace (quirk 6).
            (
                "<failure xmlns='urn:xmpp:sasl:2'><malformed-request/><text>FAST is not available on this stream</text></failure>",
                "malformed-request",
            ),
        ] {
            let (mut handshake, _) = start(fast_alice(), 1);
            send(handshake.receive(P13_FAST_CREATED.as_bytes()));
            let error = handshake.receive(p13_body(failure).as_bytes()).unwrap_err();
            assert!(
                matches!(&error, HandshakeError::FastTokenRefused { .. }),
                "{error:?}"
            );
            assert_eq!(error.condition(), condition);
        }

        // No FAST on offer (no from= honoured, or no SASL2 at all).
        let (mut handshake, _) = start(fast_alice(), 1);
        assert!(matches!(
            handshake.receive(P13_CREATED.as_bytes()),
            Err(HandshakeError::FastUnavailable(_))
        ));
        let (mut handshake, _) = start(fast_alice(), 1);
        assert!(matches!(
            handshake.receive(PLAIN_CREATED.as_bytes()),
            Err(HandshakeError::FastUnavailable(_))
        ));
    }

    #[test]
    fn sasl2_password_failure_and_tasks_are_typed() {
        let (mut handshake, _) = start(
            Credentials::account("alice@localhost", "wrong")
                .unwrap()
                .with_mechanisms([Mechanism::Plain]),
            1,
        );
        send(handshake.receive(P13_CREATED.as_bytes()));
        let error = handshake
            .receive(p13_body("<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>Unable to authorize you with the authentication credentials you've sent.</text></failure>").as_bytes())
            .unwrap_err();
        assert!(matches!(
            &error,
            HandshakeError::AuthFailed { condition, text: Some(_) } if condition == "not-authorized"
        ));

        let (mut handshake, _) = start(Credentials::anonymous("anon.localhost"), 1);
        send(handshake.receive(P13_ANON_CREATED.as_bytes()));
        let error = handshake
            .receive(p13_body("<continue xmlns='urn:xmpp:sasl:2'><additional-data>SSdtIGJvcmVkIG5vdy4=</additional-data><tasks><task>HOTP-EXAMPLE</task></tasks></continue>").as_bytes())
            .unwrap_err();
        assert_eq!(
            error,
            HandshakeError::Sasl2TasksRequired(vec!["HOTP-EXAMPLE".into()])
        );
        assert_eq!(error.condition(), "policy-violation");

        // A success without a bound full JID: Bind 2 did not happen.
        let (mut handshake, _) = start(Credentials::anonymous("anon.localhost"), 1);
        send(handshake.receive(P13_ANON_CREATED.as_bytes()));
        assert_eq!(
            handshake.receive(sasl2_success("x@anon.localhost", "").as_bytes()),
            Err(HandshakeError::NoBind)
        );
    }

    #[test]
    fn no_sasl2_or_no_bind2_or_classic_only_means_a_classic_login() {
        // Prosody 0.12: no SASL2 offered.
        let (mut handshake, _) = start(Credentials::anonymous("anon.localhost"), 1);
        let body = send(handshake.receive(ANON_CREATED.as_bytes()));
        assert!(body.child(bosh::NS_SASL, "auth").is_some());
        // SASL2 without Bind 2 inline.
        let no_bind2 = P13_ANON_CREATED.replace(
            "<bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/><feature var='urn:xmpp:sm:3'/></inline></bind>",
            "",
        );
        let (mut handshake, _) = start(Credentials::anonymous("anon.localhost"), 1);
        let body = send(handshake.receive(no_bind2.as_bytes()));
        assert!(body.child(bosh::NS_SASL, "auth").is_some());
        // Classic only on a server that offers SASL2: 4 round trips as before.
        let mut config = HandshakeConfig::new(Credentials::anonymous("anon.localhost"));
        config.sasl2 = false;
        config.first_rid = Some(1);
        let (mut handshake, _) = Handshake::start(config);
        let body = send(handshake.receive(P13_ANON_CREATED.as_bytes()));
        assert!(body.child(bosh::NS_SASL, "auth").is_some());
        let success = ANON_SUCCESS.replace(SID, P13_SID);
        send(handshake.receive(success.as_bytes()));
        send(handshake.receive(ANON_RESTARTED.replace(SID, P13_SID).as_bytes()));
        let session = done(handshake.receive(ANON_BOUND.replace(SID, P13_SID).as_bytes()));
        assert_eq!(session.round_trips, 4);
        // FAST credentials with classic only: a clear error.
        let mut config = HandshakeConfig::new(fast_alice());
        config.sasl2 = false;
        let (mut handshake, creation) = Handshake::start(config);
        assert!(!creation.contains("from="));
        assert_eq!(
            handshake.receive(P13_FAST_CREATED.as_bytes()),
            Err(HandshakeError::FastUnavailable("SASL2 is turned off"))
        );
    }

    #[test]
    fn two_sessions_of_one_user_never_share_a_user_agent_or_a_tag() {
        let ids: Vec<String> = (0..2)
            .map(|_| {
                let (mut handshake, _) = start(
                    Credentials::account("alice@localhost", "secret-alice").unwrap(),
                    1,
                );
                let body = send(handshake.receive(P13_CREATED.as_bytes()));
                authenticate(&body)
                    .child(bosh::NS_SASL2, "user-agent")
                    .unwrap()
                    .attr("id")
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_ne!(ids[0], ids[1]);
        // FAST fixes the user-agent id: a requested resource becomes a tag
        // with a random suffix per session.
        let tags: Vec<String> = (0..2)
            .map(|_| {
                let (mut handshake, _) = start(fast_alice().with_resource("web"), 1);
                let body = send(handshake.receive(P13_FAST_CREATED.as_bytes()));
                let bind = authenticate(&body).child(bosh::NS_BIND2, "bind").unwrap();
                bind.child(bosh::NS_BIND2, "tag").unwrap().text.clone()
            })
            .collect();
        assert!(tags.iter().all(|t| t.starts_with("web-")), "{tags:?}");
        assert_ne!(tags[0], tags[1]);
    }
}
