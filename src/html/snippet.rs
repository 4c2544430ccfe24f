//! The markup injected into HTML pages: by default a non-executable
//! `<script type="application/json" id="xmpp-prebind">` element (no CSP nonce
//! needed) holding the session as JSON escaped for a script context, or
//! `{"error", "condition"}` when the handshake failed.

use crate::error::PrebindError;
use crate::protocol::handshake::PrebindSession;

/// What a custom snippet renderer gets (see
/// [`PrebindLayer::render_snippet`](crate::PrebindLayer::render_snippet)).
#[derive(Debug)]
#[non_exhaustive]
pub struct SnippetContext<'a> {
    /// The session, or why there is none.
    pub outcome: Result<&'a PrebindSession, &'a PrebindError>,
    /// The default JSON payload (session or error object), already safe to
    /// place inside a `<script>` element.
    pub json: &'a str,
    /// The BOSH URL the browser should attach to.
    pub bosh_service_url: &'a str,
}

/// Renders the snippet.
pub(crate) type Renderer = dyn Fn(SnippetContext<'_>) -> String + Send + Sync;

/// The default snippet: `<script type="application/json" id="ID">JSON</script>`.
pub(crate) fn default_snippet(element_id: &str, json: &str) -> String {
    format!("<script type=\"application/json\" id=\"{element_id}\">{json}</script>")
}

/// An element id is used verbatim in an attribute: keep it to characters
/// that need no escaping.
pub(crate) fn valid_element_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}
