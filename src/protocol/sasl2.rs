//! SASL2 (XEP-0388) with Bind 2 (XEP-0386) and FAST (XEP-0484): the
//! `<authenticate/>` and `<response/>` elements the handshake sends. The
//! mechanisms themselves are those of `sasl` (rsasl) and `fast`.

use std::fmt::Write as _;

use rand::Rng;

use crate::protocol::bosh::{NS_BIND2, NS_FAST, NS_SASL2, escape};
use crate::protocol::fast::HT_SHA_256_NONE;

/// What goes into one `<authenticate/>`.
pub(crate) struct Authenticate<'a> {
    pub(crate) mechanism: &'a str,
    /// Base64; omitted when empty (ANONYMOUS: Prosody wants none, as
    /// measured in `docs/protocol/prosody-13-sasl2.md`).
    pub(crate) initial_response: &'a str,
    /// XEP-0388 §2.3 `<user-agent id=…>`.
    pub(crate) user_agent_id: &'a str,
    /// `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`
    /// (XEP-0484 §3.2).
    pub(crate) request_token: bool,
    /// `Some(invalidate)`: this is a FAST login, `<fast xmlns='urn:xmpp:fast:0'/>`
    /// (XEP-0484 §3.4), with `invalidate='true'` (§3.5) when set.
    pub(crate) fast: Option<bool>,
    /// The Bind 2 `<tag>` (XEP-0386 §3), if any: the server then derives the
    /// resource from it and the user-agent id.
    pub(crate) tag: Option<&'a str>,
}

impl Authenticate<'_> {
    pub(crate) fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256 + self.initial_response.len());
        let _ = write!(
            out,
            "<authenticate xmlns='{NS_SASL2}' mechanism='{}'>",
            escape(self.mechanism)
        );
        if !self.initial_response.is_empty() {
            let _ = write!(
                out,
                "<initial-response>{}</initial-response>",
                self.initial_response
            );
        }
        let _ = write!(
            out,
            "<user-agent id='{}'><software>bosh-prebind</software></user-agent>",
            escape(self.user_agent_id)
        );
        if self.request_token {
            let _ = write!(
                out,
                "<request-token xmlns='{NS_FAST}' mechanism='{HT_SHA_256_NONE}'/>"
            );
        }
        match self.fast {
            Some(true) => {
                let _ = write!(out, "<fast xmlns='{NS_FAST}' invalidate='true'/>");
            }
            Some(false) => {
                let _ = write!(out, "<fast xmlns='{NS_FAST}'/>");
            }
            None => {}
        }
        match self.tag {
            Some(tag) => {
                let _ = write!(
                    out,
                    "<bind xmlns='{NS_BIND2}'><tag>{}</tag></bind>",
                    escape(tag)
                );
            }
            // XEP-0386 §3: no tag, the server picks the whole resource.
            None => {
                let _ = write!(out, "<bind xmlns='{NS_BIND2}'/>");
            }
        }
        out.push_str("</authenticate>");
        out
    }
}

/// The answer to a SASL2 `<challenge/>` (XEP-0388 §2.5).
pub(crate) fn response(data: &str) -> String {
    format!("<response xmlns='{NS_SASL2}'>{data}</response>")
}

/// A random UUID v4 (RFC 9562 §5.4) in its text form: the per-session
/// user-agent id. XEP-0386 §3 derives the resource from the Bind 2 tag and
/// this id (Prosody: `tag~base64(sha1(id))[:12]`), so two sessions of one
/// user must not share it, or the second one replaces the first.
pub(crate) fn random_uuid() -> String {
    let mut bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A short random suffix that makes a Bind 2 tag unique per session when the
/// user-agent id is fixed (FAST): otherwise the same tag and id give the same
/// resource, and the second session kicks the first
/// (`docs/protocol/prosody-13-sasl2.md`, quirk 3).
pub(crate) fn random_tag_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::xml;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn authenticate_carries_everything_in_xep_order() {
        let xml = Authenticate {
            mechanism: "PLAIN",
            initial_response: "AGFsaWNlAHNlY3JldC1hbGljZQ==",
            user_agent_id: "ua'1",
            request_token: true,
            fast: None,
            tag: Some("web"),
        }
        .to_xml();
        let element = xml::parse(xml.as_bytes()).unwrap();
        assert!(element.is(NS_SASL2, "authenticate"));
        let names: Vec<&str> = element.children.iter().map(|c| &*c.name).collect();
        assert_eq!(
            names,
            ["initial-response", "user-agent", "request-token", "bind"]
        );
        assert_eq!(
            element.child(NS_SASL2, "user-agent").unwrap().attr("id"),
            Some("ua'1")
        );
        let bind = element.child(NS_BIND2, "bind").unwrap();
        assert_eq!(bind.child(NS_BIND2, "tag").unwrap().text, "web");

        let anonymous = Authenticate {
            mechanism: "ANONYMOUS",
            initial_response: "",
            user_agent_id: "u",
            request_token: false,
            fast: Some(true),
            tag: None,
        }
        .to_xml();
        let element = xml::parse(anonymous.as_bytes()).unwrap();
        assert!(element.child(NS_SASL2, "initial-response").is_none());
        assert_eq!(
            element.child(NS_FAST, "fast").unwrap().attr("invalidate"),
            Some("true")
        );
        assert!(element.child(NS_BIND2, "bind").unwrap().children.is_empty());
    }
}
