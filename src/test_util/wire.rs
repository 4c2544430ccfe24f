//! The fixed parts of what the fake sends: namespaces and the `<body/>`
//! envelope, in the shapes Prosody 0.12 uses (docs/protocol/).

use quick_xml::escape::escape;

pub(super) const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub(super) const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub(super) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub(super) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub(super) const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// A response after the creation one, as Prosody sends it (`sid` repeated).
pub(super) fn envelope(sid: &str, inner: &str) -> String {
    format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' sid='{}'>{inner}</body>",
        escape(sid)
    )
}

/// `<success/>`, with base64 additional data when there is some.
pub(super) fn sasl_success(data: &str) -> String {
    if data.is_empty() {
        format!("<success xmlns='{NS_SASL}'/>")
    } else {
        format!("<success xmlns='{NS_SASL}'>{data}</success>")
    }
}

/// `<failure><condition/></failure>`.
pub(super) fn sasl_failure(condition: &str) -> String {
    format!("<failure xmlns='{NS_SASL}'><{condition}/></failure>")
}

/// `<challenge/>` with base64 data.
pub(super) fn sasl_challenge(data: &str) -> String {
    format!("<challenge xmlns='{NS_SASL}'>{data}</challenge>")
}

/// A terminate body with a condition (XEP-0124 §17.2).
pub(super) fn terminate(condition: &str) -> String {
    format!(
        "<body condition='{condition}' xmlns='{NS_HTTPBIND}' xmlns:stream='{NS_STREAMS}' type='terminate'/>"
    )
}
