//! [`BoshUrl`]: the connection manager's URL as the built-in transport can
//! reach it. Checked when it is parsed, so a URL the transport cannot serve
//! (`https://` without the `rustls` feature) is refused when the layer is
//! built, never as `502`s at run time.

use std::fmt;
use std::str::FromStr;

use http::Uri;

/// An `http://` or `https://` URL of a BOSH connection manager, e.g.
/// `http://127.0.0.1:5280/http-bind` (Prosody) or `https://xmpp.example.org/bosh`.
///
/// ```
/// use bosh_prebind::transport::BoshUrl;
///
/// let url: BoshUrl = "http://127.0.0.1:5280/http-bind".parse().unwrap();
/// assert_eq!(url.as_uri().path(), "/http-bind");
/// assert!("ftp://example.org/".parse::<BoshUrl>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BoshUrl(Uri);

/// Why a string is not a usable [`BoshUrl`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoshUrlError {
    /// Not a URI at all.
    #[error("not a valid URL: {0}")]
    Invalid(#[from] http::uri::InvalidUri),
    /// Neither `http` nor `https`, or no host.
    #[error("a BOSH URL needs http:// or https:// and a host")]
    NotHttp,
    /// `user:password@` in the URL: the transport never sends it (RFC 9110
    /// §4.2.4 deprecates it), and it would end up in logs and in the
    /// `bosh_service_url` handed to browsers.
    #[error(
        "a BOSH URL must not carry user-info (user:password@): it is not sent to the connection \
         manager and would leak into logs and pages"
    )]
    UserInfo,
    /// `https://` while the crate was built without TLS.
    #[error(
        "https:// needs the `rustls` feature of bosh-prebind (on by default; \
         enable it, or bring a TLS client with PrebindLayer::with_transport)"
    )]
    HttpsNeedsTls,
}

impl BoshUrl {
    /// The URL as an `http::Uri`.
    pub fn as_uri(&self) -> &Uri {
        &self.0
    }

    /// True for `https://`.
    pub fn is_https(&self) -> bool {
        self.0.scheme_str() == Some("https")
    }
}

impl TryFrom<Uri> for BoshUrl {
    type Error = BoshUrlError;

    fn try_from(uri: Uri) -> Result<Self, BoshUrlError> {
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(BoshUrlError::NotHttp),
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(BoshUrlError::NotHttp);
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(BoshUrlError::UserInfo);
        }
        if https && !cfg!(feature = "rustls") {
            return Err(BoshUrlError::HttpsNeedsTls);
        }
        Ok(BoshUrl(uri))
    }
}

impl FromStr for BoshUrl {
    type Err = BoshUrlError;

    fn from_str(s: &str) -> Result<Self, BoshUrlError> {
        BoshUrl::try_from(s.parse::<Uri>()?)
    }
}

impl From<BoshUrl> for Uri {
    fn from(url: BoshUrl) -> Uri {
        url.0
    }
}

impl fmt::Display for BoshUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `Debug` is for logs: without the query, which may hold a secret.
impl fmt::Debug for BoshUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", UriForLogs(&self.0))
    }
}

/// Displays a URL for server-side logs: scheme, host, port and path, never
/// a user-info part or a query (either may hold a secret).
pub(crate) struct UriForLogs<'a>(pub(crate) &'a Uri);

impl fmt::Display for UriForLogs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(host) = uri.host() {
            f.write_str(host)?;
        }
        if let Some(port) = uri.port_u16() {
            write!(f, ":{port}")?;
        }
        f.write_str(uri.path())
    }
}

/// `uri` as a string without its user-info part (for URLs handed to
/// browsers; the query stays, the CM may need it).
pub(crate) fn without_user_info(uri: &Uri) -> String {
    match uri.authority().map(http::uri::Authority::as_str) {
        Some(authority) if authority.contains('@') => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            let scheme = uri
                .scheme_str()
                .map(|s| format!("{s}://"))
                .unwrap_or_default();
            let rest = uri.path_and_query().map_or("", |p| p.as_str());
            format!("{scheme}{host}{rest}")
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        assert!("http://127.0.0.1:5280/http-bind".parse::<BoshUrl>().is_ok());
        for bad in ["/http-bind", "ftp://x/", "127.0.0.1:5280", "http:///x", ""] {
            assert!(bad.parse::<BoshUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn user_info_is_refused_and_never_shown() {
        let error = "http://admin:secret@127.0.0.1:5280/http-bind"
            .parse::<BoshUrl>()
            .unwrap_err();
        assert!(matches!(error, BoshUrlError::UserInfo), "{error}");
        assert!(!error.to_string().contains("secret"));

        let uri: Uri = "https://u:secret@cm.example.org:5281/bosh?key=hidden"
            .parse()
            .unwrap();
        let logged = UriForLogs(&uri).to_string();
        assert_eq!(logged, "https://cm.example.org:5281/bosh");
        assert_eq!(
            without_user_info(&uri),
            "https://cm.example.org:5281/bosh?key=hidden"
        );
        let plain: Uri = "http://127.0.0.1:5280/http-bind".parse().unwrap();
        assert_eq!(without_user_info(&plain), "http://127.0.0.1:5280/http-bind");

        let url: BoshUrl = "http://127.0.0.1:5280/http-bind?key=hidden"
            .parse()
            .unwrap();
        assert_eq!(format!("{url:?}"), "\"http://127.0.0.1:5280/http-bind\"");
    }

    #[test]
    fn https_depends_on_the_tls_feature() {
        let parsed = "https://xmpp.example.org/bosh".parse::<BoshUrl>();
        if cfg!(feature = "rustls") {
            assert!(parsed.unwrap().is_https());
        } else {
            let error = parsed.unwrap_err();
            assert!(error.to_string().contains("`rustls` feature"), "{error}");
        }
    }
}
