//! The tower middleware, laid out as tower-http lays out one: [`layer`]
//! (`PrebindLayer`, the builder), [`config`] (everything the builder sets, in
//! one `Arc`), [`service`] (`Prebind<S>`: classifies each request),
//! [`future`] and [`body`] (one variant per path). The prebind path is
//! [`endpoint`] (+ [`prebind_request`], [`same_site`]); pages are
//! [`page_session`] and [`page_policy`]; [`passthrough`] forwards same-origin
//! BOSH. [`establish`] opens a session for either path, from the warm
//! [`pool`] when there is one.

pub(crate) mod body;
pub(crate) mod config;
pub(crate) mod credentials_source;
pub(crate) mod endpoint;
pub(crate) mod establish;
pub(crate) mod forwarded_body;
pub(crate) mod future;
pub(crate) mod layer;
pub(crate) mod page_policy;
pub(crate) mod page_session;
pub(crate) mod passthrough;
pub(crate) mod pool;
pub(crate) mod prebind_request;
pub(crate) mod same_site;
pub(crate) mod service;
