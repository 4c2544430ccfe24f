//! The warm pool ([`PrebindLayer::pool`](crate::PrebindLayer::pool)):
//! sessions for a fixed identity made ahead of demand, so a request takes
//! one that is already bound and no CM round trip happens at request time
//! (docs/design.md §5: `/prebind` ≤ 5 ms with the CM 20 ms away).
//!
//! - **Who**: only a fixed [`Credentials`] source (every request logs in as
//!   the same identity); with a per-request source the pool is never
//!   started (a session made for nobody in particular can't be handed to a
//!   given user, and a pool per user would hold sessions for people who
//!   are not there).
//! - **How long**: a pooled session sits idle at the CM with no request
//!   held. XEP-0124 §7 lets the CM end it after `inactivity` seconds, so
//!   one is handed out only while younger than *half* the `inactivity` its
//!   CM announced (30 s if it announced none: ejabberd's value, the
//!   smallest in common use; Prosody says 60). Older ones are never handed
//!   out: they are terminated (XEP-0124 §12) and replaced if demand still
//!   asks for them.
//! - **How many**: a decaying count `d` of the requests that could have
//!   used the pool, with time constant τ = a quarter of `inactivity` (half
//!   the usable age): for a steady rate `r`, `d ≈ r·τ`. The pool refills
//!   toward `floor(d − ½)`, at most `n`: that many sessions are taken,
//!   oldest first, within about τ, well inside their usable age (Little's
//!   law), so a steady load wastes none. A single request makes none; when
//!   requests stop the target falls to 0, the pooled sessions age out and
//!   are terminated, not replaced: a quiet site holds nothing at the CM.
//!   Nothing is trimmed early: a session already made may still be taken
//!   before it expires.
//! - **The handshake cap**: refills take permits of
//!   `max_concurrent_handshakes` like requests do, only when one is free
//!   (never waiting in line ahead of a request), at most half the cap and
//!   at most [`MAX_PARALLEL_REFILLS`] at once: requests always keep the
//!   other half.
//! - **Tasks**: one task per pool, spawned on the first prebind or page
//!   request inside a tokio runtime; it spawns one task per refill. A
//!   failed refill backs off (1 s, doubling, at most 30 s).
//! - **The end**: [`PoolHandle::shutdown`] terminates every pooled session
//!   and waits for it; dropping the last layer or service does the same
//!   best effort.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::driver::{self, ClientSettings};
use crate::protocol::handshake::{HandshakeConfig, PrebindSession};
use crate::transport::BoshTransport;

/// `inactivity` assumed when the CM announces none: ejabberd's 30 s, the
/// smallest in common use (Prosody: 60 s).
const DEFAULT_INACTIVITY_SECS: u32 = 30;
/// Refill handshakes in flight at most (and at most half the handshake cap).
pub(crate) const MAX_PARALLEL_REFILLS: usize = 8;
/// When every permit a refill may take is in use: look again after this.
const PERMIT_RETRY: Duration = Duration::from_millis(50);
/// A failed refill waits this long before the next, doubling per failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A CM whose `inactivity` leaves less usable age than this is not pooled
/// for (each session would expire before anyone could take it).
const MIN_USABLE_AGE: Duration = Duration::from_secs(1);

/// What the pool has done so far: see [`PoolHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Sessions waiting in the pool now.
    pub size: usize,
    /// The size the pool refills toward now (follows demand, at most `n`).
    pub target: usize,
    /// Refill handshakes in flight now.
    pub refilling: usize,
    /// Sessions the pool made (successful refills).
    pub made: u64,
    /// Requests that took a pooled session (= sessions handed out).
    pub hits: u64,
    /// Requests that could have used the pool but found it empty (they ran
    /// their own handshake).
    pub misses: u64,
    /// Requests that fixed their own `rid`, `wait` or `hold` (the pool's
    /// sessions were made with the defaults), so ran their own handshake.
    pub bypassed: u64,
    /// Pooled sessions that reached their usable age unused (terminated,
    /// never handed out).
    pub expired: u64,
    /// Sessions made but never handed out: expired, or terminated at
    /// shutdown. `wasted / made` is the waste ratio.
    pub wasted: u64,
    /// Refill handshakes that failed.
    pub failed: u64,
}

impl PoolStats {
    /// Sessions made but never handed out, as a fraction of those made (0
    /// when none was made).
    pub fn waste_ratio(&self) -> f64 {
        if self.made == 0 {
            0.0
        } else {
            self.wasted as f64 / self.made as f64
        }
    }
}

/// Watches and ends a layer's warm pool: see
/// [`PrebindLayer::pool_handle`](crate::PrebindLayer::pool_handle). Cheap
/// to clone; a handle of a layer without a pool reports zeros.
#[derive(Clone, Default)]
pub struct PoolHandle {
    shared: Option<Arc<PoolShared>>,
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PoolHandle {
    pub(crate) fn new(shared: Option<Arc<PoolShared>>) -> Self {
        PoolHandle { shared }
    }

    /// Counters and the current size.
    pub fn stats(&self) -> PoolStats {
        self.shared
            .as_ref()
            .map_or_else(PoolStats::default, |shared| shared.stats())
    }

    /// Stops refilling, terminates every pooled session at the CM
    /// (XEP-0124 §12) and waits until that is done, and until refills in
    /// flight have ended (their sessions terminated too). Requests after
    /// it run their own handshakes. Each termination is bounded by the
    /// request timeout, each refill by the handshake timeout.
    pub async fn shutdown(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared.close();
        loop {
            let settled = shared.settled.notified();
            let mut settled = std::pin::pin!(settled);
            settled.as_mut().enable();
            if shared.is_settled() {
                return;
            }
            settled.await;
        }
    }
}

/// The pool's state, shared by the layer's configuration, its task and
/// every [`PoolHandle`].
pub(crate) struct PoolShared {
    max: usize,
    inner: Mutex<Inner>,
    /// Wakes the pool's task: a take, a refill done, closing.
    wake: Notify,
    /// Wakes [`PoolHandle::shutdown`] when something ended.
    settled: Notify,
    started: AtomicBool,
    /// The "not a fixed source" warning was logged.
    warned: AtomicBool,
    /// The address of the configuration whose requests use the pool: a
    /// layer cloned and then configured differently shares the pool object
    /// but not its sessions.
    owner: OnceLock<usize>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    made: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    expired: AtomicU64,
    wasted: AtomicU64,
    failed: AtomicU64,
}

struct Inner {
    /// Sorted by `expires`: the front is the oldest.
    sessions: VecDeque<Pooled>,
    /// Sessions to terminate (expired at a take, or at closing).
    doomed: Vec<PrebindSession>,
    demand: Demand,
    /// The CM's last announced `inactivity`, for the demand's time constant.
    inactivity: u32,
    refilling: usize,
    terminating: usize,
    closing: bool,
    /// The pool's task is running (it drains `doomed` and the sessions).
    running: bool,
    failures: u32,
    backoff_until: Option<Instant>,
}

struct Pooled {
    session: PrebindSession,
    /// From here on it is never handed out.
    expires: Instant,
}

/// The decaying request count `d` (see the module docs).
#[derive(Default)]
struct Demand {
    count: f64,
    at: Option<Instant>,
}

impl Demand {
    fn at(&self, now: Instant, tau: Duration) -> f64 {
        match self.at {
            None => 0.0,
            Some(at) => {
                let dt = now.saturating_duration_since(at).as_secs_f64();
                self.count * (-dt / tau.as_secs_f64().max(1e-3)).exp()
            }
        }
    }

    fn record(&mut self, now: Instant, tau: Duration) {
        self.count = self.at(now, tau) + 1.0;
        self.at = Some(now);
    }
}

/// The usable age of a session: half the `inactivity` its CM announced.
fn usable_age(inactivity: Option<u32>) -> Duration {
    Duration::from_millis(u64::from(inactivity.unwrap_or(DEFAULT_INACTIVITY_SECS)) * 500)
}

/// Demand's time constant: half the usable age.
fn tau(inactivity: u32) -> Duration {
    usable_age(Some(inactivity)) / 2
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The configuration's link to its pool: when the last configuration
/// holding it goes (every layer and service dropped), the pool closes.
pub(crate) struct PoolLink(pub(crate) Arc<PoolShared>);

impl Drop for PoolLink {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What a take found.
pub(crate) enum Take {
    /// A pooled session, bound and younger than its usable age.
    Hit(PrebindSession),
    /// None: run a handshake (counted as a miss).
    Miss,
    /// The pool is not for this request (not started for this
    /// configuration, or closing): nothing counted.
    NotPooled,
}

impl PoolShared {
    pub(crate) fn new(max: usize) -> Self {
        PoolShared {
            max,
            inner: Mutex::new(Inner {
                sessions: VecDeque::new(),
                doomed: Vec::new(),
                demand: Demand::default(),
                inactivity: DEFAULT_INACTIVITY_SECS,
                refilling: 0,
                terminating: 0,
                closing: false,
                running: false,
                failures: 0,
                backoff_until: None,
            }),
            wake: Notify::new(),
            settled: Notify::new(),
            started: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            owner: OnceLock::new(),
            counters: Counters::default(),
        }
    }

    /// The pool's largest size, `n`.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn is_owner(&self, owner: usize) -> bool {
        self.owner.get().copied() == Some(owner)
    }

    /// For a request with the pool's defaults, from the configuration at
    /// address `owner`: the oldest usable session.
    pub(crate) fn take(&self, owner: usize) -> Take {
        if !self.is_owner(owner) {
            return Take::NotPooled;
        }
        let now = Instant::now();
        let taken = {
            let mut inner = lock(&self.inner);
            if inner.closing {
                return Take::NotPooled;
            }
            let tau = tau(inner.inactivity);
            inner.demand.record(now, tau);
            let mut taken = None;
            while let Some(pooled) = inner.sessions.pop_front() {
                if pooled.expires > now {
                    taken = Some(pooled.session);
                    break;
                }
                // Never handed out past its usable age: ended instead.
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                self.counters.wasted.fetch_add(1, Ordering::Relaxed);
                inner.doomed.push(pooled.session);
            }
            taken
        };
        self.wake.notify_one();
        match taken {
            Some(session) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Take::Hit(session)
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                Take::Miss
            }
        }
    }

    /// A request that fixed its own `rid`, `wait` or `hold`.
    pub(crate) fn bypassed(&self, owner: usize) {
        if self.is_owner(owner) {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn close(&self) {
        lock(&self.inner).closing = true;
        self.wake.notify_one();
        self.settled.notify_waiters();
    }

    fn is_settled(&self) -> bool {
        let inner = lock(&self.inner);
        // Without its task nothing was made, or nothing can be ended.
        !inner.running
            || (inner.sessions.is_empty()
                && inner.doomed.is_empty()
                && inner.refilling == 0
                && inner.terminating == 0)
    }

    fn target(&self, inner: &Inner, now: Instant) -> usize {
        let d = inner.demand.at(now, tau(inner.inactivity));
        // `as` saturates: a huge count is capped by `max` anyway.
        ((d - 0.5).floor().max(0.0) as usize).min(self.max)
    }

    fn stats(&self) -> PoolStats {
        let (size, target, refilling) = {
            let inner = lock(&self.inner);
            let target = if inner.closing {
                0
            } else {
                self.target(&inner, Instant::now())
            };
            (inner.sessions.len(), target, inner.refilling)
        };
        let c = &self.counters;
        PoolStats {
            size,
            target,
            refilling,
            made: c.made.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            bypassed: c.bypassed.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            wasted: c.wasted.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

/// What the pool's task is given when it starts: the transport and the
/// handshake settings of the configuration that started it (no reference to
/// the configuration itself, so that dropping every layer and service closes
/// the pool).
pub(crate) struct Recipe<T> {
    pub(crate) transport: T,
    pub(crate) settings: ClientSettings,
    /// The handshake of a request with all the defaults.
    pub(crate) handshake: HandshakeConfig,
    pub(crate) handshakes: Arc<Semaphore>,
    pub(crate) max_handshakes: usize,
}

impl PoolShared {
    /// True once the task was started (or the pool found unusable).
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// True the first time only: for a warning logged once.
    pub(crate) fn first_warning(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }

    /// Starts the pool's task (once) inside the current tokio runtime, for
    /// the requests of the configuration at address `owner`; `recipe` is
    /// called only then.
    pub(crate) fn start<T: BoshTransport>(
        self: &Arc<Self>,
        owner: usize,
        recipe: impl FnOnce() -> Recipe<T>,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self
            .started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let recipe = recipe();
        let max_refills = MAX_PARALLEL_REFILLS.min(recipe.max_handshakes / 2);
        if self.max == 0 || max_refills == 0 {
            tracing::warn!(
                max_concurrent_handshakes = recipe.max_handshakes,
                "the warm pool needs max_concurrent_handshakes >= 2 (refills take at most half); it is not used"
            );
            return;
        }
        let _ = self.owner.set(owner);
        lock(&self.inner).running = true;
        let refill = Refill {
            shared: Arc::clone(self),
            transport: Mutex::new(recipe.transport),
            settings: recipe.settings,
            handshake: recipe.handshake,
            handshakes: recipe.handshakes,
            max_refills,
        };
        runtime.spawn(refill.run());
    }
}

/// The pool's task and its refills.
struct Refill<T> {
    shared: Arc<PoolShared>,
    /// In a mutex only to be `Sync` (a transport need only be `Send`):
    /// each request clones it.
    transport: Mutex<T>,
    settings: ClientSettings,
    handshake: HandshakeConfig,
    handshakes: Arc<Semaphore>,
    max_refills: usize,
}

impl<T: BoshTransport> Refill<T> {
    fn transport(&self) -> T {
        lock(&self.transport).clone()
    }

    async fn run(self) {
        let this = Arc::new(self);
        loop {
            let wake = this.shared.wake.notified();
            let mut wake = std::pin::pin!(wake);
            wake.as_mut().enable();
            let Some(next) = this.step() else {
                break;
            };
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, wake).await;
                }
                None => wake.await,
            }
        }
        // Closing: wait for the refills and terminations in flight, so the
        // transport lives as long as they need it (they hold their own
        // clones anyway).
        this.shared.settled.notify_waiters();
    }

    /// One look at the pool: ends what must end, starts refills. `None`
    /// when closing (everything pooled is being terminated), else when to
    /// look again at the latest (`None` inside: when woken).
    fn step(self: &Arc<Self>) -> Option<Option<Instant>> {
        let now = Instant::now();
        let shared = &self.shared;
        let mut inner = lock(&shared.inner);
        // Expired ones leave from the front (sorted by expiry).
        while inner.sessions.front().is_some_and(|p| p.expires <= now) {
            if let Some(pooled) = inner.sessions.pop_front() {
                shared.counters.expired.fetch_add(1, Ordering::Relaxed);
                shared.counters.wasted.fetch_add(1, Ordering::Relaxed);
                inner.doomed.push(pooled.session);
            }
        }
        if inner.closing {
            let drained: Vec<_> = inner.sessions.drain(..).collect();
            shared
                .counters
                .wasted
                .fetch_add(drained.len() as u64, Ordering::Relaxed);
            inner.doomed.extend(drained.into_iter().map(|p| p.session));
        }
        for session in std::mem::take(&mut inner.doomed) {
            inner.terminating += 1;
            tokio::spawn(Arc::clone(self).end(session));
        }
        if inner.closing {
            return None;
        }
        let mut next = inner.sessions.front().map(|p| p.expires);
        let backing_off = inner.backoff_until.is_some_and(|until| until > now);
        if backing_off {
            next = earliest(next, inner.backoff_until);
        } else {
            let target = shared.target(&inner, now);
            let mut missing = target.saturating_sub(inner.sessions.len() + inner.refilling);
            while missing > 0 {
                if inner.refilling >= self.max_refills {
                    // The refills in flight wake us when they end.
                    break;
                }
                let Ok(permit) = Arc::clone(&self.handshakes).try_acquire_owned() else {
                    // Every permit is taken: requests first; look again soon.
                    next = earliest(next, Some(now + PERMIT_RETRY));
                    break;
                };
                inner.refilling += 1;
                missing -= 1;
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let started = Instant::now();
                    let made =
                        driver::run(this.transport(), &this.settings, this.handshake.clone()).await;
                    drop(permit);
                    this.refilled(started, made).await;
                });
            }
        }
        Some(next)
    }

    /// A refill ended: pool its session (or end it when closing).
    async fn refilled(
        self: Arc<Self>,
        started: Instant,
        made: Result<PrebindSession, crate::PrebindError>,
    ) {
        let shared = &self.shared;
        let to_end = {
            let mut inner = lock(&shared.inner);
            inner.refilling -= 1;
            match made {
                Ok(session) => {
                    shared.counters.made.fetch_add(1, Ordering::Relaxed);
                    // Counted from the handshake's start: on the safe side.
                    let age = usable_age(session.inactivity);
                    if let Some(inactivity) = session.inactivity {
                        inner.inactivity = inactivity;
                    }
                    if inner.closing || age < MIN_USABLE_AGE {
                        if age < MIN_USABLE_AGE {
                            tracing::warn!(
                                inactivity = session.inactivity,
                                "the CM's inactivity is too short to pool sessions; backing off"
                            );
                            back_off(&mut inner, Instant::now());
                        }
                        shared.counters.wasted.fetch_add(1, Ordering::Relaxed);
                        inner.terminating += 1;
                        Some(session)
                    } else {
                        inner.failures = 0;
                        inner.backoff_until = None;
                        let expires = started + age;
                        let at = inner.sessions.partition_point(|p| p.expires <= expires);
                        inner.sessions.insert(at, Pooled { session, expires });
                        None
                    }
                }
                Err(error) => {
                    shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "warm pool refill failed; backing off");
                    back_off(&mut inner, Instant::now());
                    None
                }
            }
        };
        shared.wake.notify_one();
        match to_end {
            Some(session) => self.end(session).await,
            None => shared.settled.notify_waiters(),
        }
    }

    /// Terminates a session that will never be handed out (XEP-0124 §12).
    /// `terminating` was counted up for it.
    async fn end(self: Arc<Self>, session: PrebindSession) {
        let mut transport = self.transport();
        let ended = driver::terminate(
            &mut transport,
            &self.settings,
            &session.sid,
            session.next_rid(),
        )
        .await;
        tracing::debug!(ended, "terminated a pooled session");
        lock(&self.shared.inner).terminating -= 1;
        self.shared.settled.notify_waiters();
    }
}

fn back_off(inner: &mut Inner, now: Instant) {
    inner.failures = inner.failures.saturating_add(1);
    let delay = FIRST_BACKOFF
        .saturating_mul(1u32 << inner.failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    inner.backoff_until = Some(now + delay);
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_follows_a_steady_rate_and_decays_to_nothing() {
        let tau = Duration::from_secs(15);
        let start = Instant::now();
        let mut demand = Demand::default();
        // 5 requests a second for a minute: d ≈ r·τ = 75.
        for i in 0..300u64 {
            demand.record(start + Duration::from_millis(200 * i), tau);
        }
        let end = start + Duration::from_secs(60);
        let d = demand.at(end, tau);
        assert!((70.0..=80.0).contains(&d), "{d}");
        // Idle for 4 minutes: nothing left to pool for.
        assert!(demand.at(end + Duration::from_secs(240), tau) < 0.5);
    }

    #[test]
    fn a_single_request_asks_for_no_session_and_n_caps_the_target() {
        let shared = PoolShared::new(3);
        let now = Instant::now();
        {
            let mut inner = lock(&shared.inner);
            inner.demand.record(now, tau(60));
            assert_eq!(shared.target(&inner, now), 0);
            inner.demand.record(now, tau(60));
            assert_eq!(shared.target(&inner, now), 1);
            for _ in 0..100 {
                inner.demand.record(now, tau(60));
            }
            assert_eq!(shared.target(&inner, now), 3);
        }
        let huge = PoolShared::new(usize::MAX);
        let mut inner = lock(&huge.inner);
        inner.demand.count = f64::MAX;
        inner.demand.at = Some(now);
        assert_eq!(huge.target(&inner, now), usize::MAX);
    }

    #[test]
    fn usable_age_is_half_the_announced_inactivity_else_15_s() {
        assert_eq!(usable_age(Some(60)), Duration::from_secs(30));
        assert_eq!(usable_age(None), Duration::from_secs(15));
        assert_eq!(usable_age(Some(0)), Duration::ZERO);
        assert_eq!(
            usable_age(Some(u32::MAX)),
            Duration::from_millis(u64::from(u32::MAX) * 500)
        );
    }

    #[test]
    fn backoff_doubles_up_to_30_s() {
        let shared = PoolShared::new(1);
        let mut inner = lock(&shared.inner);
        let now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..40 {
            back_off(&mut inner, now);
            delays.push(inner.backoff_until.unwrap() - now);
        }
        assert_eq!(delays[0], Duration::from_secs(1));
        assert_eq!(delays[1], Duration::from_secs(2));
        assert_eq!(delays[39], MAX_BACKOFF);
    }
}
