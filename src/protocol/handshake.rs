//! The login as a sans-IO state machine: session creation → SASL (one or two
//! steps) → stream restart → resource bind → session IQ (only when required).
//!
//! It never touches a socket or a timer: [`Handshake::start`] gives the first
//! `<body/>` to POST, and [`Handshake::receive`] takes each response body and
//! gives the next `<body/>` to POST, the finished [`PrebindSession`], or a
//! typed [`HandshakeError`]. The driver (`client`) owns I/O and timeouts.
//!
//! RIDs increase by exactly one per request (XEP-0124 §14.1). One request is
//! in flight at a time, and the handshake ends with none held at the CM, so
//! the browser can take over at [`PrebindSession::next_rid`].

use std::fmt;
use std::sync::Arc;

use rand::Rng;

use crate::protocol::bosh::{
    self, BodyType, BoshParseError, BoshResponse, IqType, NS_BIND, NS_CLIENT, NS_SESSION,
    SaslMessage, SessionCreation, StreamFeatures,
};
use crate::protocol::credentials::Credentials;
use crate::protocol::sasl::{SaslError, SaslExchange};
use crate::protocol::scram_cache::ScramCache;

/// The largest RID a client may use: JavaScript clients keep it in a double
/// (XEP-0124 §14.1 allows up to 2^53 - 1).
pub const MAX_RID: u64 = (1 << 53) - 1;

/// How many RIDs a handshake may use at most, on its longest path: create,
/// auth, SCRAM client-final, an empty `<response/>` to a server-final sent
/// as a `<challenge/>` (RFC 6120 §6.4.3 allows it), restart, bind, session,
/// plus the empty polls below.
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
    /// Where SCRAM salted passwords are cached across handshakes, if anywhere.
    pub scram_cache: Option<Arc<ScramCache>>,
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
            scram_cache: None,
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
            .finish_non_exhaustive()
    }
}

/// What to do after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// POST this `<body/>` next.
    Send(String),
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
            HandshakeError::AuthFailed { condition, .. } => condition,
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
    /// Restart sent, waiting for the post-auth features.
    Restarted,
    /// Bind IQ sent.
    Binding,
    /// Session IQ sent.
    Session,
    /// Done or failed.
    Over,
}

/// The login state machine. See the module docs.
#[derive(Debug)]
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
        };
        let rid = handshake.take_rid();
        let body = SessionCreation {
            to: handshake.config.credentials.domain(),
            rid,
            wait: handshake.config.wait,
            hold: handshake.config.hold,
            lang: &handshake.config.lang,
            route: handshake.config.route.as_deref(),
        }
        .to_xml();
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
            Phase::Over => Err(HandshakeError::Finished),
        }
    }

    fn authenticate(&mut self, features: &StreamFeatures) -> Result<Step, HandshakeError> {
        let (exchange, auth) = SaslExchange::start(
            &self.config.credentials,
            &features.mechanisms,
            self.config.scram_cache.as_ref(),
        )?;
        self.mechanism = exchange.mechanism();
        self.phase = Phase::Authenticating(exchange);
        Ok(self.send_payload(&auth))
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
}
