//! Who a session logs in as: an anonymous session on a domain, or an
//! account with its password. Pure data: choosing credentials per request is
//! the middleware's job (`middleware::credentials_source`).

use std::fmt;
use std::sync::Arc;

/// What to log in with: an anonymous session on a domain (SASL ANONYMOUS),
/// an account (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, strongest offered first),
/// or an account's FAST token (XEP-0484, `HT-SHA-256-NONE`).
///
/// `Debug` never shows the password or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    kind: Kind,
    resource: Option<Arc<str>>,
    /// Bit set of allowed [`Mechanism`]s; all when empty.
    mechanisms: u8,
    /// The fixed XEP-0388 user-agent id (a FAST token is bound to it), else
    /// a random one per session.
    user_agent_id: Option<Arc<str>>,
    /// Ask for a FAST token in this login (XEP-0484 §3.2).
    request_fast_token: bool,
    /// Invalidate the FAST token this login uses (XEP-0484 §3.5).
    invalidate_fast_token: bool,
}

/// A SASL mechanism this crate can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// PLAIN (RFC 4616): the password crosses the wire, so only over TLS or
    /// a trusted link.
    Plain,
    /// ANONYMOUS (RFC 4505).
    Anonymous,
    /// HT-SHA-256-NONE: a FAST token (XEP-0484), without channel binding.
    HtSha256None,
}

impl Mechanism {
    /// The IANA name of the mechanism.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
            Mechanism::Anonymous => "ANONYMOUS",
            Mechanism::HtSha256None => "HT-SHA-256-NONE",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Anonymous {
        domain: Arc<str>,
    },
    Account {
        localpart: Arc<str>,
        domain: Arc<str>,
        password: Arc<str>,
    },
    FastToken {
        localpart: Arc<str>,
        domain: Arc<str>,
        token: Arc<str>,
    },
}

/// A JID that cannot name an account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid account JID {jid:?}: {reason}")]
pub struct InvalidJid {
    jid: String,
    reason: &'static str,
}

impl Credentials {
    /// An anonymous session (SASL ANONYMOUS, RFC 4505) on `domain`.
    pub fn anonymous(domain: impl AsRef<str>) -> Self {
        Self {
            kind: Kind::Anonymous {
                domain: normalize_domain(domain.as_ref()).into(),
            },
            resource: None,
            mechanisms: 0,
            user_agent_id: None,
            request_fast_token: false,
            invalidate_fast_token: false,
        }
    }

    /// An account, given its bare JID (`user@example.org`) and password.
    pub fn account(jid: impl AsRef<str>, password: impl AsRef<str>) -> Result<Self, InvalidJid> {
        let (localpart, domain) = split_bare_jid(jid.as_ref())?;
        Ok(Self::with_kind(Kind::Account {
            localpart,
            domain,
            password: password.as_ref().into(),
        }))
    }

    /// An account logging in with a FAST token (XEP-0484) instead of its
    /// password: 2 round trips, on a server offering SASL2, Bind 2 and FAST
    /// (Prosody 13 with `mod_sasl2_fast`). `user_agent_id` must be the one
    /// the token was issued to (a token is bound to the user and that id).
    ///
    /// A refused token fails the login with
    /// [`HandshakeError::FastTokenRefused`](crate::handshake::HandshakeError::FastTokenRefused)
    /// and ends that BOSH session; log in again with the password (and
    /// [`request_fast_token`](Self::request_fast_token)) on a new one.
    pub fn fast_token(
        jid: impl AsRef<str>,
        token: impl AsRef<str>,
        user_agent_id: impl AsRef<str>,
    ) -> Result<Self, InvalidJid> {
        let (localpart, domain) = split_bare_jid(jid.as_ref())?;
        let mut credentials = Self::with_kind(Kind::FastToken {
            localpart,
            domain,
            token: token.as_ref().into(),
        });
        credentials.user_agent_id = Some(user_agent_id.as_ref().into());
        Ok(credentials)
    }

    /// Asks the server for a FAST token in this login (XEP-0484 §3.2),
    /// bound to `user_agent_id`: a stable id of your choice per user (a UUID
    /// is customary), which every later login with the token must send. The
    /// token comes back in [`PrebindSession::fast_token`](crate::PrebindSession::fast_token)
    /// and [`PrebindLayer::on_fast_token`](crate::PrebindLayer::on_fast_token).
    ///
    /// Only on a server that offers FAST (the login goes on without a token
    /// otherwise); ignored for anonymous sessions (their JID changes every
    /// login). With [`fast_token`](Self::fast_token) credentials, give the
    /// token's own id: the server then issues a replacement.
    pub fn request_fast_token(mut self, user_agent_id: impl AsRef<str>) -> Self {
        if !self.is_anonymous() {
            self.user_agent_id = Some(user_agent_id.as_ref().into());
            self.request_fast_token = true;
        }
        self
    }

    /// With [`fast_token`](Self::fast_token) credentials: log in and
    /// invalidate the token in the same step (`<fast invalidate='true'/>`,
    /// XEP-0484 §3.5), e.g. when the user logs out for good. Ignored for
    /// other credentials.
    pub fn invalidate_fast_token(mut self) -> Self {
        self.invalidate_fast_token = self.is_fast_token();
        self
    }

    /// True for [`fast_token`](Self::fast_token) credentials.
    pub fn is_fast_token(&self) -> bool {
        matches!(self.kind, Kind::FastToken { .. })
    }

    /// The fixed XEP-0388 user-agent id, if these credentials have one
    /// (FAST); otherwise each SASL2 login sends a fresh random one.
    pub fn user_agent_id(&self) -> Option<&str> {
        self.user_agent_id.as_deref()
    }

    /// True when this login asks for a FAST token.
    pub(crate) fn requests_fast_token(&self) -> bool {
        self.request_fast_token
    }

    /// True when this login invalidates its FAST token.
    pub(crate) fn invalidates_fast_token(&self) -> bool {
        self.invalidate_fast_token
    }

    /// The localpart and the FAST token of [`fast_token`](Self::fast_token)
    /// credentials.
    pub(crate) fn fast_secret(&self) -> Option<(&str, &str)> {
        match &self.kind {
            Kind::FastToken {
                localpart, token, ..
            } => Some((localpart, token)),
            _ => None,
        }
    }

    fn with_kind(kind: Kind) -> Self {
        Self {
            kind,
            resource: None,
            mechanisms: 0,
            user_agent_id: None,
            request_fast_token: false,
            invalidate_fast_token: false,
        }
    }
}

/// Splits and checks a bare account JID.
fn split_bare_jid(jid: &str) -> Result<(Arc<str>, Arc<str>), InvalidJid> {
    {
        let invalid = |reason| InvalidJid {
            jid: jid.to_owned(),
            reason,
        };
        let (localpart, domain) = jid.split_once('@').ok_or_else(|| invalid("no '@'"))?;
        if localpart.is_empty() {
            return Err(invalid("empty localpart"));
        }
        if domain.contains('/') {
            return Err(invalid(
                "give a bare JID; set a resource with with_resource",
            ));
        }
        let domain = normalize_domain(domain);
        if domain.is_empty() || domain.contains('@') {
            return Err(invalid("bad domain"));
        }
        Ok((localpart.into(), domain.into()))
    }
}

impl Credentials {
    /// Restricts the SASL mechanisms these credentials may use, for example
    /// `[ScramSha256, ScramSha1]` to never send a password in PLAIN. The
    /// strongest allowed mechanism the server offers is still preferred.
    pub fn with_mechanisms(mut self, mechanisms: impl IntoIterator<Item = Mechanism>) -> Self {
        self.mechanisms = mechanisms.into_iter().fold(0, |set, m| set | m.bit());
        self
    }

    /// True when `mechanism` may be used with these credentials.
    pub fn allows(&self, mechanism: Mechanism) -> bool {
        self.mechanisms == 0 || self.mechanisms & mechanism.bit() != 0
    }

    /// Asks the server for this resource instead of letting it pick one.
    ///
    /// Careful: binding a resource that is already bound ends the earlier
    /// session on Prosody and ejabberd (RFC 6120 §7.7.2.2), so two tabs of one
    /// user must not share a fixed resource. Leave it unset unless each
    /// request gets a unique one.
    pub fn with_resource(mut self, resource: impl AsRef<str>) -> Self {
        self.resource = Some(resource.as_ref().into());
        self
    }

    /// The XMPP domain the session is opened on (lower-cased, no trailing dot).
    pub fn domain(&self) -> &str {
        match &self.kind {
            Kind::Anonymous { domain }
            | Kind::Account { domain, .. }
            | Kind::FastToken { domain, .. } => domain,
        }
    }

    /// The account's bare JID (`alice@example.org`), `None` for an anonymous
    /// session (whose JID the server picks). What a page hands Converse.js as
    /// its `jid` option: the account's bare JID, else [`domain`](Self::domain).
    ///
    /// ```
    /// use bosh_prebind::Credentials;
    ///
    /// let alice = Credentials::account("alice@Example.org", "secret").unwrap();
    /// assert_eq!(alice.bare_jid().as_deref(), Some("alice@example.org"));
    /// assert_eq!(Credentials::anonymous("anon.example.org").bare_jid(), None);
    /// ```
    pub fn bare_jid(&self) -> Option<String> {
        match &self.kind {
            Kind::Anonymous { .. } => None,
            Kind::Account {
                localpart, domain, ..
            }
            | Kind::FastToken {
                localpart, domain, ..
            } => Some(format!("{localpart}@{domain}")),
        }
    }

    /// True for an anonymous session.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.kind, Kind::Anonymous { .. })
    }

    /// The requested resource, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The SASL authentication identity and password (RFC 6120 §6.3.8: the
    /// simple user name is the localpart), `None` for anonymous sessions.
    pub(crate) fn secret(&self) -> Option<(&str, &str)> {
        match &self.kind {
            Kind::Anonymous { .. } | Kind::FastToken { .. } => None,
            Kind::Account {
                localpart,
                password,
                ..
            } => Some((localpart, password)),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Anonymous { domain } => f
                .debug_struct("Credentials::Anonymous")
                .field("domain", domain)
                .field("resource", &self.resource)
                .finish(),
            Kind::Account {
                localpart, domain, ..
            } => f
                .debug_struct("Credentials::Account")
                .field("jid", &format_args!("{localpart}@{domain}"))
                .field("password", &"<redacted>")
                .field("resource", &self.resource)
                .field("request_fast_token", &self.request_fast_token)
                .field("user_agent_id", &self.user_agent_id)
                .finish(),
            Kind::FastToken {
                localpart, domain, ..
            } => f
                .debug_struct("Credentials::FastToken")
                .field("jid", &format_args!("{localpart}@{domain}"))
                .field("token", &"<redacted>")
                .field("user_agent_id", &self.user_agent_id)
                .field("resource", &self.resource)
                .field("request_fast_token", &self.request_fast_token)
                .field("invalidate_fast_token", &self.invalidate_fast_token)
                .finish(),
        }
    }
}

/// Lower-cases an ASCII domain and drops one trailing dot (a fully qualified
/// `example.org.` names the same host, RFC 7622 §3.2).
pub(crate) fn normalize_domain(domain: &str) -> String {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials::account("alice@Example.org.", "hunter2").unwrap();
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice@example.org"), "{shown}");
    }

    #[test]
    fn debug_never_shows_a_fast_token() {
        let credentials =
            Credentials::fast_token("alice@localhost", "secret-token:fast-xyz", "ua-1").unwrap();
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("fast-xyz"), "{shown}");
        assert!(shown.contains("ua-1"), "{shown}");
        assert!(credentials.is_fast_token());
        assert_eq!(credentials.secret(), None, "a token is not a password");
        assert!(Credentials::fast_token("localhost", "t", "u").is_err());
        let anon = Credentials::anonymous("anon.localhost").request_fast_token("u");
        assert!(!anon.requests_fast_token(), "anonymous tokens never work");
    }

    #[test]
    fn bare_jid_is_the_accounts_and_none_for_anonymous() {
        let bob = Credentials::account("bob@LOCALHOST.", "x")
            .unwrap()
            .with_resource("tab-1");
        assert_eq!(bob.bare_jid().as_deref(), Some("bob@localhost"));
        assert_eq!(Credentials::anonymous("anon.localhost").bare_jid(), None);
    }

    #[test]
    fn account_jids_are_checked_and_domains_normalized() {
        assert_eq!(
            Credentials::account("bob@LOCALHOST.", "x")
                .unwrap()
                .domain(),
            "localhost"
        );
        assert!(Credentials::account("localhost", "x").is_err());
        assert!(Credentials::account("@localhost", "x").is_err());
        assert!(Credentials::account("bob@localhost/res", "x").is_err());
        assert!(Credentials::account("bob@", "x").is_err());
        assert!(Credentials::account("a@b@c", "x").is_err());
        assert_eq!(
            Credentials::anonymous("Anon.Localhost").domain(),
            "anon.localhost"
        );
    }
}
