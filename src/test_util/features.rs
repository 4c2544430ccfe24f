//! Stream features: what the fake offers before SASL and after the restart,
//! and when it sends them.

use super::wire::{NS_BIND, NS_SASL, NS_SESSION};

/// When the fake sends stream features (XEP-0206 §5, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFeatures {
    /// In the session creation response and in the restart response, as
    /// Prosody does.
    #[default]
    InResponse,
    /// On the next empty poll after each of them: a CM that is allowed to
    /// answer before the XMPP server has spoken.
    Late,
    /// Never, whatever is polled.
    Never,
}

/// How the fake advertises the legacy session IQ (RFC 3921 §3) after the
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionFeature {
    /// Not advertised: no session IQ may be sent.
    Absent,
    /// `<session><optional/></session>`, as Prosody does: none is needed.
    #[default]
    Optional,
    /// `<session/>`: the client must send the session IQ after bind.
    Required,
}

/// The SASL mechanisms on offer.
pub(super) fn mechanisms(offered: &[String]) -> String {
    let mechanisms: String = offered
        .iter()
        .map(|m| format!("<mechanism>{m}</mechanism>"))
        .collect();
    format!(
        "<stream:features xmlns='jabber:client'><mechanisms xmlns='{NS_SASL}'>\
         {mechanisms}</mechanisms></stream:features>"
    )
}

/// Bind (required), the session feature, and Prosody's extras.
pub(super) fn bind(session: SessionFeature) -> String {
    let session = match session {
        SessionFeature::Absent => String::new(),
        SessionFeature::Optional => format!("<session xmlns='{NS_SESSION}'><optional/></session>"),
        SessionFeature::Required => format!("<session xmlns='{NS_SESSION}'/>"),
    };
    format!(
        "<stream:features xmlns='jabber:client'><c hash='sha-1' \
         xmlns='http://jabber.org/protocol/caps' node='http://prosody.im' \
         ver='g6v15bTJOfWXNUu1mm4Hlk5EAd0='/><bind xmlns='{NS_BIND}'><required/></bind>\
         {session}<ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
    )
}
