//! Who a pre-bound session logs in as, chosen per request.
//!
//! The layer asks a [`CredentialsSource`] for every prebind (and, with HTML
//! injection, every matching page request). Built-in sources cover the common
//! cases: [`Credentials`] itself (a fixed anonymous domain or a fixed account),
//! [`FromExtensions`] (the idiomatic path: the application's own auth middleware
//! inserts a [`Credentials`] value into the request extensions), and
//! [`CredentialsFn`] for anything else (an async lookup given the request head).
//!
//! A source answering `None` means "nobody to log in for this request": the
//! prebind path answers `401`.

use std::fmt;
use std::future::{Future, ready};
use std::pin::Pin;

use http::request::Parts;

use crate::protocol::credentials::Credentials;

/// The future a [`CredentialsSource`] returns.
pub type CredentialsFuture = Pin<Box<dyn Future<Output = Option<Credentials>> + Send + 'static>>;

/// What a [`CredentialsSource`] can tell at once, without awaiting anything
/// ([`CredentialsSource::credentials_now`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsNow {
    /// These credentials.
    Found(Credentials),
    /// Nobody to log in: a page is then passed through untouched, request
    /// and response alike.
    Nobody,
    /// Only the async [`CredentialsSource::credentials`] can tell.
    Later,
}

/// Decides, per request, who the pre-bound session logs in as.
pub trait CredentialsSource: Send + Sync + 'static {
    /// The credentials for this request, or `None` when there is nobody to log
    /// in (the prebind path then answers `401`). Takes the request head only;
    /// the returned future must own what it needs.
    fn credentials(&self, request: &Parts) -> CredentialsFuture;

    /// The answer, when the source knows it without awaiting anything (the
    /// default: [`CredentialsNow::Later`]). On an injected route the layer
    /// asks this first: a page with nobody to log in is then not touched at
    /// all (every request and response header and byte kept), and a known
    /// identity skips a boxed future. A source answering `Later` gets its
    /// pages prepared for injection (validators stripped from the request)
    /// before it has answered; with nobody, such a page is served as the
    /// app made it, minus what the request lost.
    fn credentials_now(&self, request: &Parts) -> CredentialsNow {
        let _ = request;
        CredentialsNow::Later
    }

    /// The domains this source can produce without looking at a request, added
    /// to the allow-list automatically.
    fn static_domains(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A fixed identity: every request logs in with the same credentials.
impl CredentialsSource for Credentials {
    fn credentials(&self, _request: &Parts) -> CredentialsFuture {
        Box::pin(ready(Some(self.clone())))
    }

    fn credentials_now(&self, _request: &Parts) -> CredentialsNow {
        CredentialsNow::Found(self.clone())
    }

    fn static_domains(&self) -> Vec<String> {
        vec![self.domain().to_owned()]
    }
}

/// Reads a [`Credentials`] value that earlier middleware put into the request
/// extensions; `None` when there is none.
///
/// The domains such credentials may use must be allowed explicitly with
/// [`PrebindLayer::allow_domain`](crate::PrebindLayer::allow_domain).
#[derive(Debug, Clone, Copy, Default)]
pub struct FromExtensions;

impl CredentialsSource for FromExtensions {
    fn credentials(&self, request: &Parts) -> CredentialsFuture {
        Box::pin(ready(request.extensions.get::<Credentials>().cloned()))
    }

    fn credentials_now(&self, request: &Parts) -> CredentialsNow {
        match request.extensions.get::<Credentials>() {
            Some(credentials) => CredentialsNow::Found(credentials.clone()),
            None => CredentialsNow::Nobody,
        }
    }
}

impl FromExtensions {
    /// The credentials in the request extensions, else `fallback`: a
    /// per-user site whose guests get a session too. `fallback`'s domain is
    /// allowed automatically.
    pub fn or(self, fallback: Credentials) -> FromExtensionsOr {
        FromExtensionsOr { fallback }
    }

    /// The credentials in the request extensions, else an anonymous session
    /// on `domain` (guests): `FromExtensions.or(Credentials::anonymous(domain))`.
    pub fn or_anonymous(self, domain: impl AsRef<str>) -> FromExtensionsOr {
        self.or(Credentials::anonymous(domain))
    }
}

/// [`FromExtensions`] with a fallback for requests without credentials:
/// see [`FromExtensions::or`].
#[derive(Debug, Clone)]
pub struct FromExtensionsOr {
    fallback: Credentials,
}

impl CredentialsSource for FromExtensionsOr {
    fn credentials(&self, request: &Parts) -> CredentialsFuture {
        let credentials = request
            .extensions
            .get::<Credentials>()
            .unwrap_or(&self.fallback);
        Box::pin(ready(Some(credentials.clone())))
    }

    fn credentials_now(&self, request: &Parts) -> CredentialsNow {
        let credentials = request
            .extensions
            .get::<Credentials>()
            .unwrap_or(&self.fallback);
        CredentialsNow::Found(credentials.clone())
    }

    fn static_domains(&self) -> Vec<String> {
        self.fallback.static_domains()
    }
}

/// A closure given the request head, returning a future of the credentials:
/// see [`PrebindLayer::credentials_fn`](crate::PrebindLayer::credentials_fn).
#[derive(Clone)]
pub struct CredentialsFn<F>(pub(crate) F);

impl<F> fmt::Debug for CredentialsFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialsFn")
    }
}

impl<F, Fut> CredentialsSource for CredentialsFn<F>
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Credentials>> + Send + 'static,
{
    fn credentials(&self, request: &Parts) -> CredentialsFuture {
        Box::pin((self.0)(request))
    }
}

/// No source configured: nobody is logged in, every prebind answers `401`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoCredentials;

impl CredentialsSource for NoCredentials {
    fn credentials(&self, _request: &Parts) -> CredentialsFuture {
        Box::pin(ready(None))
    }

    fn credentials_now(&self, _request: &Parts) -> CredentialsNow {
        CredentialsNow::Nobody
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn from_extensions_reads_what_middleware_inserted() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert_eq!(FromExtensions.credentials(&parts).await, None);
        parts
            .extensions
            .insert(Credentials::anonymous("anon.localhost"));
        assert_eq!(
            FromExtensions.credentials(&parts).await,
            Some(Credentials::anonymous("anon.localhost"))
        );
    }

    #[tokio::test]
    async fn or_anonymous_falls_back_for_guests_only() {
        let source = FromExtensions.or_anonymous("Anon.Localhost");
        assert_eq!(source.static_domains(), ["anon.localhost"]);
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert_eq!(
            source.credentials(&parts).await,
            Some(Credentials::anonymous("anon.localhost"))
        );
        let alice = Credentials::account("alice@localhost", "secret-alice").unwrap();
        parts.extensions.insert(alice.clone());
        assert_eq!(source.credentials(&parts).await, Some(alice));
    }
}
