//! The JSON objects a browser gets: the session (`GET /prebind` and injected
//! pages alike) or `{"error", "condition"}` when there is none. Safe inside a
//! `<script>` element (see [`json`](super::json)).

use crate::error::PrebindError;
use crate::html::json::JsonObject;
use crate::protocol::handshake::PrebindSession;

/// `{"jid","sid","rid","wait","hold","bosh_service_url"}`: `rid` is the
/// **next** RID, passed as-is to Strophe.js `attach` (docs/protocol/clients.md).
pub(crate) fn session_json(session: &PrebindSession, bosh_service_url: &str) -> String {
    JsonObject::new()
        .string("jid", &session.jid)
        .string("sid", &session.sid)
        .number("rid", session.next_rid())
        .number("wait", session.wait.into())
        .number("hold", session.hold.into())
        .string("bosh_service_url", bosh_service_url)
        .finish()
}

/// `{"error": …, "condition": …}`, the same object on the prebind path and
/// in pages.
pub(crate) fn error_json(error: &PrebindError) -> String {
    JsonObject::new()
        .string("error", &error.public_message())
        .string("condition", error.condition())
        .finish()
}
