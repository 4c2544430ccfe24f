//! The XEP-0124 / XEP-0206 wire format: building the `<body/>` requests of a
//! login and reading the connection manager's `<body/>` responses.
//!
//! Parsing is namespace-aware (never by string matching), so a server that
//! uses prefixes, other attribute orders or extra namespaces reads the same.

use std::borrow::Cow;
use std::fmt::Write as _;

pub use crate::protocol::xml::XmlError;
use crate::protocol::xml::{self, Element};

/// `http://jabber.org/protocol/httpbind`, the namespace of `<body/>` (XEP-0124 §4).
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// `urn:xmpp:xbosh`, the namespace of `xmpp:version` and `xmpp:restart` (XEP-0206 §5).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";
pub(crate) const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub(crate) const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub(crate) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub(crate) const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub(crate) const NS_CLIENT: &str = "jabber:client";
pub(crate) const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// `urn:xmpp:sasl:2`, Extensible SASL Profile (XEP-0388).
pub(crate) const NS_SASL2: &str = "urn:xmpp:sasl:2";
/// `urn:xmpp:bind:0`, Bind 2 (XEP-0386).
pub(crate) const NS_BIND2: &str = "urn:xmpp:bind:0";
/// `urn:xmpp:fast:0`, FAST (XEP-0484).
pub(crate) const NS_FAST: &str = "urn:xmpp:fast:0";

/// Escapes a value for an XML attribute or text node. Besides the five
/// markup characters, tab, newline and carriage return become character
/// references: a parser normalizes them to spaces in attribute values (XML
/// 1.0 §3.3.3), so a sid holding one would otherwise come back changed.
pub(crate) fn escape(value: &str) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '&' | '<' | '>' | '\'' | '"' | '\t' | '\n' | '\r');
    if !value.contains(special) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The session-creation request (XEP-0124 §7.1, XEP-0206 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCreation<'a> {
    /// The XMPP domain (`to`).
    pub to: &'a str,
    /// The request's RID, the first of the session.
    pub rid: u64,
    /// Longest time in seconds the CM may hold a request.
    pub wait: u32,
    /// How many requests the CM may hold at once.
    pub hold: u32,
    /// `xml:lang` of the stream.
    pub lang: &'a str,
    /// Optional `route` (`xmpp:host:port`) for CMs that serve several servers.
    pub route: Option<&'a str>,
}

impl SessionCreation<'_> {
    /// The `<body/>` that creates the session. No `ack` and no key sequence:
    /// we run one request at a time and hand over (XEP-0124 §9, §15).
    pub fn to_xml(&self) -> String {
        self.to_xml_from(None)
    }

    /// The same `<body/>` with a `from` attribute (XEP-0124 §7.1): the
    /// account's bare JID. Prosody 13 offers FAST (XEP-0484) only when it
    /// is there (`docs/protocol/prosody-13-sasl2.md`, quirk 5).
    pub fn to_xml_from(&self, from: Option<&str>) -> String {
        let mut out = String::with_capacity(320);
        let _ = write!(
            out,
            "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' content='text/xml; charset=utf-8' \
             rid='{}' to='{}' ver='1.6' wait='{}' hold='{}' xml:lang='{}' xmpp:version='1.0'",
            self.rid,
            escape(self.to),
            self.wait,
            self.hold,
            escape(self.lang),
        );
        if let Some(route) = self.route {
            let _ = write!(out, " route='{}'", escape(route));
        }
        if let Some(from) = from {
            let _ = write!(out, " from='{}'", escape(from));
        }
        out.push_str("/>");
        out
    }
}

/// A `<body/>` carrying `payload` (already serialized, trusted XML).
pub fn payload(rid: u64, sid: &str, payload: &str) -> String {
    format!(
        "<body xmlns='{NS_HTTPBIND}' rid='{rid}' sid='{}'>{payload}</body>",
        escape(sid)
    )
}

/// An empty `<body/>`: asks the CM for whatever it has queued, for example
/// stream features that did not come with the previous response (XEP-0124 §7.1).
pub fn empty(rid: u64, sid: &str) -> String {
    format!(
        "<body xmlns='{NS_HTTPBIND}' rid='{rid}' sid='{}'/>",
        escape(sid)
    )
}

/// The stream restart after SASL success (XEP-0206 §5).
pub fn restart(rid: u64, sid: &str, to: &str, lang: &str) -> String {
    format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' rid='{rid}' sid='{}' to='{}' \
         xml:lang='{}' xmpp:restart='true'/>",
        escape(sid),
        escape(to),
        escape(lang)
    )
}

/// Ends a session (XEP-0124 §12).
pub fn terminate(rid: u64, sid: &str) -> String {
    format!(
        "<body xmlns='{NS_HTTPBIND}' rid='{rid}' sid='{}' type='terminate'>\
         <presence xmlns='{NS_CLIENT}' type='unavailable'/></body>",
        escape(sid)
    )
}

/// What kind of `<body/>` the CM answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyType {
    /// An ordinary response.
    Normal,
    /// `type='terminate'`: the session is over (XEP-0124 §17.2).
    Terminate {
        /// The `condition` attribute, if any.
        condition: Option<String>,
        /// The condition of a `<stream:error>` child (`remote-stream-error`,
        /// XEP-0206 §6), if any.
        stream_error: Option<String>,
    },
    /// `type='error'`: a recoverable binding error (XEP-0124 §17.3).
    Error,
}

/// The session parameters a CM announces in its session-creation response
/// (XEP-0124 §7.1). Absent attributes stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionAttributes {
    /// Longest time in seconds the CM will hold a request.
    pub wait: Option<u32>,
    /// How many requests the CM will hold at once.
    pub hold: Option<u32>,
    /// How many simultaneous requests the client may make.
    pub requests: Option<u32>,
    /// Longest time in seconds the CM allows with no request pending.
    pub inactivity: Option<u32>,
    /// Shortest allowed interval in seconds between empty requests.
    pub polling: Option<u32>,
    /// Longest allowed pause in seconds (XEP-0124 §10).
    pub maxpause: Option<u32>,
    /// Highest protocol version the CM supports.
    pub ver: Option<String>,
}

/// The stream features a response carried (RFC 6120 §4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamFeatures {
    /// SASL mechanisms offered, in the server's order.
    pub mechanisms: Vec<String>,
    /// Resource binding offered (RFC 6120 §7).
    pub bind: bool,
    /// The legacy session feature (RFC 3921 §3): `Some(true)` when marked
    /// `<optional/>` (RFC 6121 Appendix E), `Some(false)` when required.
    pub session_optional: Option<bool>,
    /// The SASL2 `<authentication xmlns='urn:xmpp:sasl:2'>` feature
    /// (XEP-0388 §2.1), if offered.
    pub sasl2: Option<Sasl2Features>,
}

/// What a SASL2 `<authentication/>` feature offers (XEP-0388 §2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sasl2Features {
    /// SASL mechanisms offered, in the server's order (unordered on Prosody:
    /// choose by preference, never "first offered").
    pub mechanisms: Vec<String>,
    /// Bind 2 offered inline (`<inline><bind xmlns='urn:xmpp:bind:0'/>`,
    /// XEP-0386 §3): the session is bound in the same exchange.
    pub bind2: bool,
    /// FAST mechanisms offered inline (`<inline><fast xmlns='urn:xmpp:fast:0'>`,
    /// XEP-0484 §3.1); Prosody offers them only when the creation `<body/>`
    /// has `from='user@domain'`.
    pub fast_mechanisms: Vec<String>,
}

/// A SASL2 element from the server (XEP-0388 §2.5-2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sasl2Message {
    /// `<challenge/>` with its base64 payload.
    Challenge(String),
    /// `<success/>`.
    Success(Sasl2Success),
    /// `<failure/>` with its condition element and optional text.
    Failure {
        /// The condition (`not-authorized`, `credentials-expired`, …).
        condition: String,
        /// Human-readable text from the server, if any.
        text: Option<String>,
    },
    /// `<continue/>`: the server wants more tasks (XEP-0388 §2.7), such as a
    /// password change or a second factor.
    Continue {
        /// The tasks it names.
        tasks: Vec<String>,
    },
}

/// A SASL2 `<success/>` (XEP-0388 §2.6). `Debug` never shows a token.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sasl2Success {
    /// The base64 `<additional-data>` (SCRAM's server-final message), if any.
    pub additional_data: Option<String>,
    /// `<authorization-identifier>`: with Bind 2, the bound full JID.
    pub authorization_identifier: Option<String>,
    /// `<bound xmlns='urn:xmpp:bind:0'/>` was there (XEP-0386 §4).
    pub bound: bool,
    /// A FAST `<token xmlns='urn:xmpp:fast:0' token=…/>` (XEP-0484 §3.3).
    pub token: Option<String>,
    /// Its `expiry` attribute.
    pub token_expiry: Option<String>,
}

impl std::fmt::Debug for Sasl2Success {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl2Success")
            .field("additional_data", &self.additional_data)
            .field("authorization_identifier", &self.authorization_identifier)
            .field("bound", &self.bound)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_expiry", &self.token_expiry)
            .finish()
    }
}

/// A SASL element from the server (RFC 6120 §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslMessage {
    /// `<challenge/>` with its base64 payload.
    Challenge(String),
    /// `<success/>` with its base64 additional data (may be empty).
    Success(String),
    /// `<failure/>` with its condition element and optional text.
    Failure {
        /// The condition (`not-authorized`, `account-disabled`, …).
        condition: String,
        /// Human-readable text from the server, if any.
        text: Option<String>,
    },
}

/// The type of an `<iq/>` (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    /// `type='result'`.
    Result,
    /// `type='error'`.
    Error,
    /// `get`, `set` or anything else.
    Other,
}

/// An `<iq/>` from the server, reduced to what a login needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    /// The `id` attribute.
    pub id: Option<String>,
    /// The `type` attribute.
    pub kind: IqType,
    /// The `<bind><jid/></bind>` text of a bind result.
    pub bound_jid: Option<String>,
    /// The defined condition of an `<error/>` (RFC 6120 §8.3.3).
    pub error_condition: Option<String>,
}

/// One parsed `<body/>` response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoshResponse {
    /// Normal, terminate or error.
    pub body_type: BodyType,
    /// The `sid` attribute (required on the creation response only).
    pub sid: Option<String>,
    /// Session parameters (meaningful on the creation response).
    pub attributes: SessionAttributes,
    /// `<stream:features/>`, if present.
    pub features: Option<StreamFeatures>,
    /// The SASL element, if present.
    pub sasl: Option<SaslMessage>,
    /// The SASL2 element (XEP-0388), if present.
    pub sasl2: Option<Sasl2Message>,
    /// `<iq/>` stanzas, in order.
    pub iqs: Vec<Iq>,
}

/// A response that is not a usable `<body/>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoshParseError {
    /// Not well-formed XML, or XML that XMPP forbids.
    #[error("the connection manager sent unusable XML: {0}")]
    Xml(#[from] XmlError),
    /// Well-formed, but the root is not `{http://jabber.org/protocol/httpbind}body`.
    #[error("the connection manager's response is not a BOSH <body/> (root element <{0}>)")]
    NotBody(String),
    /// A numeric attribute that is not a number.
    #[error("the connection manager sent a bad '{0}' attribute")]
    BadAttribute(&'static str),
}

impl BoshResponse {
    /// Parses a CM response body.
    pub fn parse(input: &[u8]) -> Result<Self, BoshParseError> {
        let root = xml::parse(input)?;
        if !root.is(NS_HTTPBIND, "body") {
            return Err(BoshParseError::NotBody(root.name.to_string()));
        }
        let stream_error = root.child(NS_STREAMS, "error").map(|e| {
            e.child_in(NS_STREAM_ERRORS)
                .filter(|c| &*c.name != "text")
                .map_or_else(|| "undefined-condition".to_owned(), |c| c.name.to_string())
        });
        let body_type = match root.attr("type") {
            Some("terminate") => BodyType::Terminate {
                condition: root.attr("condition").map(str::to_owned),
                stream_error,
            },
            Some("error") => BodyType::Error,
            // A stream error without type='terminate' still ends the stream
            // (RFC 6120 §4.9.1.1).
            _ if stream_error.is_some() => BodyType::Terminate {
                condition: Some("remote-stream-error".to_owned()),
                stream_error,
            },
            _ => BodyType::Normal,
        };
        let attributes = SessionAttributes {
            wait: number(&root, "wait")?,
            hold: number(&root, "hold")?,
            requests: number(&root, "requests")?,
            inactivity: number(&root, "inactivity")?,
            polling: number(&root, "polling")?,
            maxpause: number(&root, "maxpause")?,
            ver: root.attr("ver").map(str::to_owned),
        };
        let mut response = BoshResponse {
            body_type,
            sid: root.attr("sid").map(str::to_owned),
            attributes,
            features: None,
            sasl: None,
            sasl2: None,
            iqs: Vec::new(),
        };
        for child in &root.children {
            if child.is(NS_STREAMS, "features") {
                response.features = Some(features(child));
            } else if child.ns.as_deref() == Some(NS_SASL) {
                response.sasl = sasl(child).or(response.sasl);
            } else if child.ns.as_deref() == Some(NS_SASL2) {
                response.sasl2 = sasl2(child).or(response.sasl2);
            } else if child.is(NS_CLIENT, "iq") {
                response.iqs.push(iq(child));
            }
        }
        Ok(response)
    }
}

fn number(element: &Element, name: &'static str) -> Result<Option<u32>, BoshParseError> {
    element
        .attr(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| BoshParseError::BadAttribute(name))
        })
        .transpose()
}

fn features(element: &Element) -> StreamFeatures {
    let mechanisms = element
        .child(NS_SASL, "mechanisms")
        .map(|m| {
            m.children
                .iter()
                .filter(|c| c.is(NS_SASL, "mechanism"))
                .map(|c| c.text.trim().to_owned())
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    StreamFeatures {
        mechanisms,
        bind: element.child(NS_BIND, "bind").is_some(),
        session_optional: element
            .child(NS_SESSION, "session")
            .map(|s| s.child(NS_SESSION, "optional").is_some()),
        sasl2: element
            .child(NS_SASL2, "authentication")
            .map(sasl2_features),
    }
}

fn mechanism_names(element: &Element, ns: &str) -> Vec<String> {
    element
        .children
        .iter()
        .filter(|c| c.is(ns, "mechanism"))
        .map(|c| c.text.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

fn sasl2_features(element: &Element) -> Sasl2Features {
    let inline = element.child(NS_SASL2, "inline");
    Sasl2Features {
        mechanisms: mechanism_names(element, NS_SASL2),
        bind2: inline.is_some_and(|i| i.child(NS_BIND2, "bind").is_some()),
        fast_mechanisms: inline
            .and_then(|i| i.child(NS_FAST, "fast"))
            .map(|f| mechanism_names(f, NS_FAST))
            .unwrap_or_default(),
    }
}

/// A SASL2 failure's condition is a RFC 6120 §6.5 element in the SASL
/// namespace (XEP-0388 §2.8), but Prosody's `malformed-request` comes in the
/// SASL2 namespace: any child but `<text>` is taken.
fn sasl2(element: &Element) -> Option<Sasl2Message> {
    let text = |name: &str| {
        element
            .child(NS_SASL2, name)
            .map(|t| t.text.trim().to_owned())
    };
    match &*element.name {
        "challenge" => Some(Sasl2Message::Challenge(element.text.trim().to_owned())),
        "success" => {
            let token = element.child(NS_FAST, "token");
            Some(Sasl2Message::Success(Sasl2Success {
                additional_data: text("additional-data"),
                authorization_identifier: text("authorization-identifier"),
                bound: element.child(NS_BIND2, "bound").is_some(),
                token: token.and_then(|t| t.attr("token")).map(str::to_owned),
                token_expiry: token.and_then(|t| t.attr("expiry")).map(str::to_owned),
            }))
        }
        "failure" => Some(Sasl2Message::Failure {
            condition: element
                .children
                .iter()
                .find(|c| matches!(c.ns.as_deref(), Some(NS_SASL | NS_SASL2)) && &*c.name != "text")
                .map_or_else(|| "undefined-condition".to_owned(), |c| c.name.to_string()),
            text: text("text").or_else(|| {
                element
                    .child(NS_SASL, "text")
                    .map(|t| t.text.trim().to_owned())
            }),
        }),
        "continue" => Some(Sasl2Message::Continue {
            tasks: element
                .child(NS_SASL2, "tasks")
                .map(|t| {
                    t.children
                        .iter()
                        .filter(|c| c.is(NS_SASL2, "task"))
                        .map(|c| c.text.trim().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
        }),
        _ => None,
    }
}

fn sasl(element: &Element) -> Option<SaslMessage> {
    match &*element.name {
        "challenge" => Some(SaslMessage::Challenge(element.text.trim().to_owned())),
        "success" => Some(SaslMessage::Success(element.text.trim().to_owned())),
        "failure" => Some(SaslMessage::Failure {
            condition: element
                .children
                .iter()
                .find(|c| c.ns.as_deref() == Some(NS_SASL) && &*c.name != "text")
                .map_or_else(|| "undefined-condition".to_owned(), |c| c.name.to_string()),
            text: element
                .child(NS_SASL, "text")
                .map(|t| t.text.trim().to_owned()),
        }),
        _ => None,
    }
}

fn iq(element: &Element) -> Iq {
    let kind = match element.attr("type") {
        Some("result") => IqType::Result,
        Some("error") => IqType::Error,
        _ => IqType::Other,
    };
    Iq {
        id: element.attr("id").map(str::to_owned),
        kind,
        bound_jid: element
            .child(NS_BIND, "bind")
            .and_then(|b| b.child(NS_BIND, "jid"))
            // Not trimmed: a resource may begin or end with a space.
            .map(|j| j.text.clone()),
        error_condition: element.child(NS_CLIENT, "error").map(|e| {
            e.child_in(NS_STANZAS)
                .filter(|c| &*c.name != "text")
                .map_or_else(|| "undefined-condition".to_owned(), |c| c.name.to_string())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verbatim from docs/protocol/prosody-0.12.md (Prosody 0.12.3).
    const CREATED_ANON: &str = "<body hold='1' authid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' secure='true' xmpp:version='1.0' ver='1.6' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind' from='anon.localhost' requests='2' polling='5' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50' inactivity='60' wait='60'><stream:features xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>";
    const RESTARTED: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><stream:features xmlns='jabber:client'><c hash='sha-1' xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/></stream:features></body>";
    const BOUND: &str = "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='7d0aa91d-ded8-4d91-89b3-b4c918168c50'><iq id='bind_1' xmlns='jabber:client' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5</jid></bind></iq></body>";

    #[test]
    fn reads_prosody_session_creation_response() {
        let response = BoshResponse::parse(CREATED_ANON.as_bytes()).unwrap();
        assert_eq!(response.body_type, BodyType::Normal);
        assert_eq!(
            response.sid.as_deref(),
            Some("7d0aa91d-ded8-4d91-89b3-b4c918168c50")
        );
        assert_eq!(
            response.attributes,
            SessionAttributes {
                wait: Some(60),
                hold: Some(1),
                requests: Some(2),
                inactivity: Some(60),
                polling: Some(5),
                maxpause: None,
                ver: Some("1.6".into()),
            }
        );
        let features = response.features.unwrap();
        assert_eq!(features.mechanisms, ["ANONYMOUS"]);
        assert!(!features.bind);
    }

    #[test]
    fn reads_bind_and_optional_session_features() {
        let features = BoshResponse::parse(RESTARTED.as_bytes())
            .unwrap()
            .features
            .unwrap();
        assert!(features.bind);
        assert_eq!(features.session_optional, Some(true));
        assert!(features.mechanisms.is_empty());
    }

    #[test]
    fn reads_bind_result_jid() {
        let response = BoshResponse::parse(BOUND.as_bytes()).unwrap();
        assert_eq!(
            response.iqs,
            [Iq {
                id: Some("bind_1".into()),
                kind: IqType::Result,
                bound_jid: Some("eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5".into()),
                error_condition: None,
            }]
        );
    }

    #[test]
    fn reads_prefixed_namespaces_like_any_server_may_send() {
        // Same meaning as Prosody's, spelled with prefixes everywhere.
        let response = BoshResponse::parse(
            b"<b:body xmlns:b='http://jabber.org/protocol/httpbind' sid='s1' wait='30' \
              xmlns:s='http://etherx.jabber.org/streams'><s:features>\
              <m:mechanisms xmlns:m='urn:ietf:params:xml:ns:xmpp-sasl'><m:mechanism>PLAIN</m:mechanism>\
              <m:mechanism> SCRAM-SHA-1 </m:mechanism></m:mechanisms></s:features></b:body>",
        )
        .unwrap();
        assert_eq!(response.sid.as_deref(), Some("s1"));
        assert_eq!(response.attributes.wait, Some(30));
        assert_eq!(
            response.features.unwrap().mechanisms,
            ["PLAIN", "SCRAM-SHA-1"]
        );
    }

    #[test]
    fn a_mechanism_element_in_the_wrong_namespace_is_not_a_mechanism() {
        let response = BoshResponse::parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' sid='s'>\
              <stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
              <mechanisms xmlns='urn:example:other'><mechanism>PLAIN</mechanism></mechanisms>\
              </stream:features></body>",
        )
        .unwrap();
        assert!(response.features.unwrap().mechanisms.is_empty());
    }

    #[test]
    fn reads_sasl_challenge_success_and_failure() {
        let challenge = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind'><challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1h</challenge></body>").unwrap();
        assert_eq!(challenge.sasl, Some(SaslMessage::Challenge("cj1h".into())));
        let success = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>").unwrap();
        assert_eq!(success.sasl, Some(SaslMessage::Success(String::new())));
        let failure = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind'><failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text xml:lang='en'>Unable to authorize you</text></failure></body>").unwrap();
        assert_eq!(
            failure.sasl,
            Some(SaslMessage::Failure {
                condition: "not-authorized".into(),
                text: Some("Unable to authorize you".into())
            })
        );
    }

    #[test]
    fn reads_terminate_conditions_and_stream_errors() {
        let terminate = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind' condition='item-not-found' type='terminate'/>").unwrap();
        assert_eq!(
            terminate.body_type,
            BodyType::Terminate {
                condition: Some("item-not-found".into()),
                stream_error: None
            }
        );
        let stream_error = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='remote-stream-error' xmlns:stream='http://etherx.jabber.org/streams'><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced</text></stream:error></body>").unwrap();
        assert_eq!(
            stream_error.body_type,
            BodyType::Terminate {
                condition: Some("remote-stream-error".into()),
                stream_error: Some("conflict".into())
            }
        );
        let error = BoshResponse::parse(
            b"<body xmlns='http://jabber.org/protocol/httpbind' type='error'/>",
        )
        .unwrap();
        assert_eq!(error.body_type, BodyType::Error);
    }

    #[test]
    fn refuses_non_body_and_bad_numbers() {
        assert!(matches!(
            BoshResponse::parse(b"<html><body/></html>"),
            Err(BoshParseError::NotBody(_))
        ));
        assert!(matches!(
            BoshResponse::parse(b"<body/>"),
            Err(BoshParseError::NotBody(_))
        ));
        assert_eq!(
            BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind' wait='-1'/>"),
            Err(BoshParseError::BadAttribute("wait"))
        );
        assert!(matches!(
            BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind'"),
            Err(BoshParseError::Xml(_))
        ));
    }

    #[test]
    fn builds_requests_with_escaped_attributes() {
        let creation = SessionCreation {
            to: "anon.localhost",
            rid: 42,
            wait: 59,
            hold: 1,
            lang: "en",
            route: None,
        }
        .to_xml();
        let parsed = xml::parse(creation.as_bytes()).unwrap();
        assert!(parsed.is(NS_HTTPBIND, "body"));
        assert_eq!(parsed.attr("rid"), Some("42"));
        assert_eq!(parsed.attr("to"), Some("anon.localhost"));
        assert_eq!(parsed.attr("wait"), Some("59"));
        assert_eq!(parsed.attr("hold"), Some("1"));
        assert_eq!(parsed.attr("ver"), Some("1.6"));
        assert_eq!(parsed.attr_ns(NS_XBOSH, "version"), Some("1.0"));
        assert_eq!(
            parsed.attr_ns("http://www.w3.org/XML/1998/namespace", "lang"),
            Some("en")
        );

        let hostile = restart(7, "x' evil='1", "d", "en");
        let parsed = xml::parse(hostile.as_bytes()).unwrap();
        assert_eq!(parsed.attr("sid"), Some("x' evil='1"));
        assert_eq!(parsed.attr("evil"), None);
        assert_eq!(parsed.attr_ns(NS_XBOSH, "restart"), Some("true"));
    }

    #[test]
    fn reads_sasl2_bind2_and_fast_features_and_answers() {
        // docs/protocol/prosody-13-sasl2.md, FAST login creation response.
        let response = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind' sid='s' xmlns:stream='http://etherx.jabber.org/streams'><stream:features xmlns='jabber:client'><authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism><inline><bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:csi:0'/></inline></bind><fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism></fast><sm xmlns='urn:xmpp:sm:3'/></inline></authentication><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features></body>").unwrap();
        let features = response.features.unwrap();
        assert_eq!(features.mechanisms, ["PLAIN"]);
        let sasl2 = features.sasl2.unwrap();
        assert_eq!(sasl2.mechanisms, ["SCRAM-SHA-1", "PLAIN"]);
        assert!(sasl2.bind2);
        assert_eq!(sasl2.fast_mechanisms, ["HT-SHA-256-NONE"]);

        let success = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams'><success xmlns='urn:xmpp:sasl:2'><additional-data>dj1T</additional-data><bound xmlns='urn:xmpp:bind:0'/><token xmlns='urn:xmpp:fast:0' expiry='2026-12-22T01:38:23.035212Z' token='secret-token:fast-Q'/><authorization-identifier>alice@localhost/webapp~SF2OAu43unoa</authorization-identifier></success><stream:features xmlns='jabber:client'/></body>").unwrap();
        let Some(Sasl2Message::Success(success)) = success.sasl2 else {
            panic!("no success");
        };
        assert_eq!(success.additional_data.as_deref(), Some("dj1T"));
        assert!(success.bound);
        assert_eq!(
            success.authorization_identifier.as_deref(),
            Some("alice@localhost/webapp~SF2OAu43unoa")
        );
        assert_eq!(success.token.as_deref(), Some("secret-token:fast-Q"));
        assert!(!format!("{success:?}").contains("fast-Q"), "token redacted");

        let failure = BoshResponse::parse(b"<body xmlns='http://jabber.org/protocol/httpbind'><failure xmlns='urn:xmpp:sasl:2'><malformed-request/><text>FAST is not available on this stream</text></failure></body>").unwrap();
        assert_eq!(
            failure.sasl2,
            Some(Sasl2Message::Failure {
                condition: "malformed-request".into(),
                text: Some("FAST is not available on this stream".into())
            })
        );
        assert_eq!(failure.sasl, None, "SASL2 is not classic SASL");
    }
}
