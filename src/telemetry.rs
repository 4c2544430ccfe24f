//! Observability, the tower way: what happened to each prebind, told three
//! ways, none of which costs anything when nobody listens.
//!
//! - **tracing**: one `prebind` span per handshake (fields `mechanism`,
//!   `first_rid`, `round_trips`, `elapsed_ms`, `outcome`, `condition`,
//!   recorded when known) with a `trace!` event per request sent and answer
//!   received (RID and kind only: never SASL data, passwords or sids), and
//!   failures logged once per [`OutageWarnings`] interval with the count of
//!   those suppressed, not once per page view.
//! - **the outcome hook**: [`PrebindLayer::on_outcome`](crate::PrebindLayer::on_outcome)
//!   is called with an [`Outcome`] for every prebind request and every page
//!   that got (or failed to get) a session.
//! - **metrics** (cargo feature `metrics`): counters and a histogram through
//!   the [`metrics`](https://docs.rs/metrics) facade, named in
//!   [`crate::metrics`]; without the feature the recording functions below
//!   are empty.
//!
//! # Counter API (crate-internal)
//!
//! Code elsewhere in the crate records through these functions, never
//! through the `metrics` macros directly, so that the names and labels stay
//! in one place and compile away without the feature:
//! [`handshake_finished`] (through [`report`]), [`overloaded`],
//! [`abandoned_terminate`], [`scram_cache`], [`passthrough_bytes`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memchr::memmem;

use crate::error::PrebindError;
use crate::protocol::handshake::PrebindSession;

/// Which path a prebind came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathKind {
    /// `POST` on the prebind path (XML answer).
    Post,
    /// `GET` (or another method) on the prebind path (JSON answer).
    Get,
    /// An HTML page with a session injected.
    Page,
}

impl PathKind {
    /// `post`, `get` or `page`: the `path` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Post => "post",
            PathKind::Get => "get",
            PathKind::Page => "page",
        }
    }
}

/// What became of one prebind, for
/// [`PrebindLayer::on_outcome`](crate::PrebindLayer::on_outcome).
///
/// `Debug` shows no secret: [`PrebindSession`]'s hides the sid.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Outcome<'a> {
    /// The prebind path (`POST`, `GET`) or an injected page.
    pub path: PathKind,
    /// The session (JID, mechanism, round trips, …) or why there is none
    /// ([`PrebindError::condition`], [`PrebindError::status`]).
    pub result: Result<&'a PrebindSession, &'a PrebindError>,
    /// From the request's arrival (prebind path) or the handshake's start
    /// (page) to the answer.
    pub elapsed: Duration,
}

/// The outcome hook, shared by every clone of the layer.
pub(crate) type OutcomeHook = dyn Fn(&Outcome<'_>) + Send + Sync;

/// Reports one prebind: the hook, the metrics, and a log line (failures:
/// WARN at most once per `warnings` interval, DEBUG otherwise).
pub(crate) fn report(
    hook: Option<&OutcomeHook>,
    warnings: &OutageWarnings,
    cm: &dyn std::fmt::Display,
    path: PathKind,
    result: Result<&PrebindSession, &PrebindError>,
    elapsed: Duration,
) {
    if let Some(hook) = hook {
        hook(&Outcome {
            path,
            result,
            elapsed,
        });
    }
    handshake_finished(path, result, elapsed);
    let Err(error) = result else { return };
    if matches!(error, PrebindError::Overloaded) {
        overloaded(path);
    }
    if error.is_client_error() {
        tracing::debug!(path = path.as_str(), %error, "prebind refused");
    } else if let Some(suppressed) = warnings.allow() {
        tracing::warn!(
            path = path.as_str(),
            %error,
            %cm,
            condition = error.condition(),
            suppressed,
            "prebind failed{}",
            if path == PathKind::Page { "; the page is served with the error object" } else { "" }
        );
    } else {
        tracing::debug!(
            path = path.as_str(),
            %error,
            %cm,
            "prebind failed (warning rate-limited)"
        );
    }
}

/// Rate limit of the WARN for failed prebinds: when the CM is down every
/// page view fails the same way; one line per interval says so, with how
/// many were left out (they are logged at DEBUG).
#[derive(Debug)]
pub(crate) struct OutageWarnings {
    origin: Instant,
    interval_ms: u64,
    /// Milliseconds after `origin` before which no WARN is written.
    quiet_until: AtomicU64,
    suppressed: AtomicU64,
}

impl OutageWarnings {
    pub(crate) fn new(interval: Duration) -> Self {
        OutageWarnings {
            origin: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            quiet_until: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last WARN)` when a WARN may be written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_until = self.quiet_until.load(Ordering::Relaxed);
        if now >= quiet_until
            && self
                .quiet_until
                .compare_exchange(
                    quiet_until,
                    now.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The kind of a `<body/>` we send, for `trace!` (never its content).
pub(crate) fn request_kind(body: &str) -> &'static str {
    let has = |needle: &str| memmem::find(body.as_bytes(), needle.as_bytes()).is_some();
    if !has(" sid=") {
        "session-creation"
    } else if has("<auth ") {
        "sasl-auth"
    } else if has("<response ") {
        "sasl-response"
    } else if has("xmpp:restart=") {
        "restart"
    } else if has("id='bind_1'") {
        "bind"
    } else if has("id='sess_1'") {
        "session"
    } else if has("type='terminate'") {
        "terminate"
    } else {
        "empty"
    }
}

/// The kind of a CM answer, for `trace!` (never its content).
pub(crate) fn response_kind(body: &[u8]) -> &'static str {
    let has = |needle: &[u8]| memmem::find(body, needle).is_some();
    if has(b"terminate") {
        "terminate"
    } else if has(b"<challenge") {
        "sasl-challenge"
    } else if has(b"<success") {
        "sasl-success"
    } else if has(b"<failure") {
        "sasl-failure"
    } else if has(b"features") {
        "stream-features"
    } else if has(b"<iq") {
        "iq"
    } else {
        "empty"
    }
}

// The metric names, re-exported as `bosh_prebind::metrics`.
pub mod names {
    //! The metrics the layer records through the [`metrics`](https://docs.rs/metrics)
    //! facade with the cargo feature `metrics`: install any recorder
    //! (`metrics-exporter-prometheus`, …) and they appear. Labels have a
    //! bounded set of values.

    /// Counter: prebinds answered, by `path` (`post`, `get`, `page`),
    /// `outcome` (`ok`, `error`) and `condition` (a XEP-0124 §17.2 or
    /// RFC 6120 condition, `none` on success, `other` for one we do not know).
    pub const HANDSHAKES: &str = "bosh_prebind_handshakes_total";
    /// Histogram: seconds from a prebind's arrival to its answer, by `path`
    /// and `outcome`.
    pub const HANDSHAKE_DURATION: &str = "bosh_prebind_handshake_duration_seconds";
    /// Counter: prebinds refused because the handshake cap was reached
    /// (`503`), by `path`.
    pub const OVERLOADED: &str = "bosh_prebind_overloaded_total";
    /// Counter: sessions abandoned half-made or finished for a page that
    /// did not carry them, ended with a `terminate` (XEP-0124 §12), by
    /// `result` (`ended`, `failed`, or `skipped`: the cap of terminates in
    /// flight was reached, the session expires at the CM).
    pub const ABANDONED_TERMINATES: &str = "bosh_prebind_abandoned_terminates_total";
    /// Counter: injected pages that got the reuse marker instead of a new
    /// session (`PrebindLayer::reuse_cookie`: the browser keeps its own).
    pub const PAGE_REUSES: &str = "bosh_prebind_page_reuses_total";
    /// Counter: SCRAM logins whose salted password was cached (or derived
    /// by a concurrent login of the same account).
    pub const SCRAM_CACHE_HITS: &str = "bosh_prebind_scram_cache_hits_total";
    /// Counter: SCRAM logins that ran PBKDF2.
    pub const SCRAM_CACHE_MISSES: &str = "bosh_prebind_scram_cache_misses_total";
    /// Counter: bytes forwarded on the same-origin BOSH path, by `direction`
    /// (`to_cm`: request bodies; `from_cm`: answer bodies as streamed).
    pub const PASSTHROUGH_BYTES: &str = "bosh_prebind_passthrough_bytes_total";
}

/// Records a finished prebind: [`names::HANDSHAKES`] and
/// [`names::HANDSHAKE_DURATION`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn handshake_finished(
    path: PathKind,
    result: Result<&PrebindSession, &PrebindError>,
    elapsed: Duration,
) {
    #[cfg(feature = "metrics")]
    {
        let (outcome, condition) = match result {
            Ok(_) => ("ok", "none"),
            Err(error) => ("error", bounded_condition(error.condition())),
        };
        metrics::counter!(names::HANDSHAKES, "path" => path.as_str(), "outcome" => outcome, "condition" => condition)
            .increment(1);
        metrics::histogram!(names::HANDSHAKE_DURATION, "path" => path.as_str(), "outcome" => outcome)
            .record(elapsed.as_secs_f64());
    }
}

/// Records a prebind refused by the handshake cap: [`names::OVERLOADED`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn overloaded(path: PathKind) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::OVERLOADED, "path" => path.as_str()).increment(1);
}

/// Records a page given the reuse marker: [`names::PAGE_REUSES`].
pub(crate) fn page_reuse() {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::PAGE_REUSES).increment(1);
}

/// What became of a session nobody will use (half-made, or finished for a
/// page that did not carry it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum TerminateResult {
    /// A `terminate` was sent and the CM answered it.
    Ended,
    /// A `terminate` was sent and failed.
    Failed,
    /// None sent (the cap of terminates in flight, or no runtime): the
    /// session expires at the CM after its `inactivity`.
    Skipped,
}

/// Records a session abandoned (`terminate` sent or skipped):
/// [`names::ABANDONED_TERMINATES`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn abandoned_terminate(result: TerminateResult) {
    #[cfg(feature = "metrics")]
    {
        let result = match result {
            TerminateResult::Ended => "ended",
            TerminateResult::Failed => "failed",
            TerminateResult::Skipped => "skipped",
        };
        metrics::counter!(names::ABANDONED_TERMINATES, "result" => result).increment(1);
    }
}

/// Records a SCRAM cache lookup: [`names::SCRAM_CACHE_HITS`] or
/// [`names::SCRAM_CACHE_MISSES`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn scram_cache(hit: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(if hit {
        names::SCRAM_CACHE_HITS
    } else {
        names::SCRAM_CACHE_MISSES
    })
    .increment(1);
}

/// Which way pass-through bytes went.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    ToCm,
    FromCm,
}

/// Records bytes forwarded on the same-origin BOSH path:
/// [`names::PASSTHROUGH_BYTES`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn passthrough_bytes(direction: Direction, bytes: usize) {
    #[cfg(feature = "metrics")]
    {
        let direction = match direction {
            Direction::ToCm => "to_cm",
            Direction::FromCm => "from_cm",
        };
        metrics::counter!(names::PASSTHROUGH_BYTES, "direction" => direction)
            .increment(bytes as u64);
    }
}

/// A condition as a label value: one of a known set, so a CM cannot blow up
/// the metrics' cardinality with conditions of its own.
#[cfg(feature = "metrics")]
fn bounded_condition(condition: &str) -> &'static str {
    // XEP-0124 §17.2, RFC 6120 §6.5 (SASL) and §8.3.3 (stanza errors).
    const KNOWN: &[&str] = &[
        "bad-request",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "item-not-found",
        "other-request",
        "policy-violation",
        "remote-connection-failed",
        "remote-stream-error",
        "see-other-uri",
        "system-shutdown",
        "undefined-condition",
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
        "conflict",
        "not-allowed",
        "resource-constraint",
        "service-unavailable",
    ];
    KNOWN
        .iter()
        .find(|known| **known == condition)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_rate_limited_with_a_count_of_the_suppressed() {
        let warnings = OutageWarnings::new(Duration::from_secs(3600));
        assert_eq!(warnings.allow(), Some(0));
        assert_eq!(warnings.allow(), None);
        assert_eq!(warnings.allow(), None);
        // An interval of zero lets every one through, and says how many were left out.
        let always = OutageWarnings::new(Duration::ZERO);
        assert_eq!(always.allow(), Some(0));
        assert_eq!(always.allow(), Some(0));
        let never = OutageWarnings::new(Duration::MAX);
        assert_eq!(never.allow(), Some(0));
        assert_eq!(never.allow(), None);
        warnings.quiet_until.store(0, Ordering::Relaxed);
        assert_eq!(warnings.allow(), Some(2), "two suppressed since the last");
    }

    #[test]
    fn kinds_name_the_step_without_content() {
        use crate::protocol::bosh;
        assert_eq!(request_kind(&bosh::empty(5, "s")), "empty");
        assert_eq!(request_kind(&bosh::terminate(5, "s")), "terminate");
        assert_eq!(request_kind(&bosh::restart(5, "s", "d", "en")), "restart");
        assert_eq!(
            response_kind(b"<body type='terminate' condition='x'/>"),
            "terminate"
        );
        assert_eq!(
            response_kind(b"<body><challenge>x</challenge></body>"),
            "sasl-challenge"
        );
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn conditions_from_the_cm_are_bounded() {
        assert_eq!(bounded_condition("not-authorized"), "not-authorized");
        assert_eq!(bounded_condition("x-made-up-by-the-cm"), "other");
    }
}
