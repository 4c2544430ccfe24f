//! [`PrebindRequest`]: what a `POST` to the prebind path asks for, parsed and
//! checked before anything reaches the connection manager
//! (docs/design.md §3.1).

use crate::error::PrebindError;
use crate::protocol::bosh::NS_HTTPBIND;
use crate::protocol::credentials::normalize_domain;
use crate::protocol::handshake::HandshakeConfig;
use crate::protocol::xml;

/// What a `POST` to the prebind path asked for: every attribute of
/// `<body xmlns='http://jabber.org/protocol/httpbind' to rid wait hold/>` is
/// optional (docs/design.md §3.1). Public for custom endpoints and fuzzing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrebindRequest {
    /// The XMPP domain (`to`), as sent (checked later against the allow-list).
    pub to: Option<String>,
    /// The first RID of the handshake, already checked to be in
    /// `1..=`[`HandshakeConfig::max_first_rid`].
    pub rid: Option<u64>,
    /// The `wait` asked for (clamped later).
    pub wait: Option<u64>,
    /// The `hold` asked for (clamped later).
    pub hold: Option<u64>,
}

impl PrebindRequest {
    /// Parses a request body; an empty body asks for all defaults. Errors
    /// are [`PrebindError::BadRequest`]. Children of `<body/>` are ignored:
    /// nothing from the browser is forwarded to the server.
    pub fn parse(body: &[u8]) -> Result<Self, PrebindError> {
        parse_request(body)
    }
}

/// See [`PrebindRequest::parse`].
fn parse_request(bytes: &[u8]) -> Result<PrebindRequest, PrebindError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(PrebindRequest::default());
    }
    let root = xml::parse(bytes).map_err(|e| PrebindError::BadRequest(e.to_string()))?;
    let in_bosh_namespace = root.ns.as_deref().is_none_or(|ns| ns == NS_HTTPBIND);
    if &*root.name != "body" || !in_bosh_namespace {
        return Err(PrebindError::BadRequest(
            "expected <body xmlns='http://jabber.org/protocol/httpbind'/>".into(),
        ));
    }
    let number = |name: &'static str| -> Result<Option<u64>, PrebindError> {
        root.attr(name)
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PrebindError::BadRequest(format!(
                        "'{name}' must be a positive integer"
                    )));
                }
                v.parse::<u64>()
                    .map_err(|_| PrebindError::BadRequest(format!("'{name}' is out of range")))
            })
            .transpose()
    };
    let rid = number("rid")?;
    if let Some(rid) = rid {
        let max = HandshakeConfig::max_first_rid();
        if !(1..=max).contains(&rid) {
            return Err(PrebindError::BadRequest(format!(
                "'rid' must be between 1 and {max} (2^53 - 2^32: the session's RIDs must stay \
                 below 2^53, XEP-0124 §14.1)"
            )));
        }
    }
    Ok(PrebindRequest {
        to: root.attr("to").map(str::to_owned),
        rid,
        wait: number("wait")?,
        hold: number("hold")?,
    })
}

/// `to` must be a bare domain: no localpart, no resource, nothing odd.
pub(crate) fn check_to(to: &str) -> Result<String, PrebindError> {
    let bad = |why: &str| PrebindError::BadRequest(format!("'to' {why}"));
    if to.contains('@') || to.contains('/') {
        return Err(bad("must be a bare domain, not a JID"));
    }
    let domain = normalize_domain(to.trim());
    if domain.is_empty() || domain.len() > 1023 {
        return Err(bad("is empty or too long"));
    }
    if domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn parses_the_classic_strophe_request() {
        let request = parse_request(
            b"<body rid='3245' xmlns='http://jabber.org/protocol/httpbind' to='localhost' \
              xml:lang='en' wait='60' hold='1' content='text/xml; charset=utf-8' ver='1.6' \
              xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>",
        )
        .unwrap();
        assert_eq!(
            request,
            PrebindRequest {
                to: Some("localhost".into()),
                rid: Some(3245),
                wait: Some(60),
                hold: Some(1)
            }
        );
        assert_eq!(parse_request(b"").unwrap(), PrebindRequest::default());
        assert_eq!(
            parse_request(b"<body/>").unwrap(),
            PrebindRequest::default()
        );
    }

    #[test]
    fn refuses_bad_numbers_and_documents() {
        for bad in [
            &b"<body rid='abc'/>"[..],
            b"<body rid='-1'/>",
            b"<body rid='0'/>",
            b"<body rid='9007199254740991'/>",
            b"<body rid='99999999999999999999999'/>",
            b"<body wait='1.5'/>",
            b"<body hold=''/>",
            b"<body rid='1'",
            b"<html/>",
            b"<body xmlns='urn:other'/>",
            b"not xml",
        ] {
            let error = parse_request(bad).unwrap_err();
            assert_eq!(
                error.status(),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn to_must_be_a_bare_domain() {
        assert_eq!(check_to("LocalHost.").unwrap(), "localhost");
        assert!(check_to("alice@localhost").is_err());
        assert!(check_to("localhost/res").is_err());
        assert!(check_to("").is_err());
        assert!(check_to("local host").is_err());
    }
}
