//! What the fake received, for exact assertions.

use bytes::Bytes;
use http::Uri;

use super::element::Element;

/// One request the fake received, as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request target (absolute for the in-memory transport, the path
    /// over TCP).
    pub uri: Uri,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body, byte for byte.
    pub body: Bytes,
}

impl Recorded {
    /// The body as text.
    ///
    /// # Panics
    ///
    /// When it is not UTF-8 (the fake refuses such requests anyway).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 request body")
    }

    /// The body parsed.
    ///
    /// # Panics
    ///
    /// When it is not one well-formed XML document.
    pub fn element(&self) -> Element {
        Element::parse(self.text())
    }

    /// The `rid` attribute.
    ///
    /// # Panics
    ///
    /// When there is none, or it is not a number.
    pub fn rid(&self) -> u64 {
        self.element()
            .attr("rid")
            .and_then(|r| r.parse().ok())
            .expect("a numeric rid")
    }
}

/// One `type='terminate'` request: the session it ended and its RID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The session's `sid`.
    pub sid: String,
    /// The request's `rid`.
    pub rid: u64,
}

/// What the fake knows about one session it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its `sid`.
    pub sid: String,
    /// The last RID received in it.
    pub last_rid: u64,
    /// The SASL mechanism the client chose, once it sent `<auth/>`.
    pub mechanism: Option<String>,
    /// SASL succeeded.
    pub authenticated: bool,
    /// The full JID bound, once bound.
    pub jid: Option<String>,
    /// The legacy session IQ was sent.
    pub session_iq: bool,
    /// A `type='terminate'` request ended it.
    pub terminated: bool,
}
