//! SCRAM's key derivation as a value ([`DeriveRequest`]: the handshake hands
//! it out, the driver decides where it runs) and [`ScramCache`], the salted
//! passwords of recent logins, so a returning user costs two HMACs instead of
//! a PBKDF2 run (RFC 5802 §5.1).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `SaltedPassword := Hi(password, salt, i)` of RFC 5802 §3 (PBKDF2 with the
/// mechanism's HMAC, §2.2): the one CPU-heavy step of a SCRAM login, handed
/// out by the handshake as [`Step::Derive`](crate::handshake::Step::Derive)
/// so that the caller chooses where it runs (the middleware's driver: a
/// blocking thread, `tokio::task::spawn_blocking`).
///
/// The iteration count was checked against
/// [`MAX_SCRAM_ITERATIONS`](crate::handshake::MAX_SCRAM_ITERATIONS) before the
/// request was made. It holds the password: `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeriveRequest {
    /// `SCRAM-SHA-1` or `SCRAM-SHA-256`.
    pub mechanism: &'static str,
    /// The salt of the server-first message (`s=`, base64-decoded).
    pub salt: Arc<[u8]>,
    /// The iteration count of the server-first message (`i=`).
    pub iterations: u32,
    password: Arc<str>,
}

impl DeriveRequest {
    pub(crate) fn new(
        mechanism: &'static str,
        password: Arc<str>,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Self {
        DeriveRequest {
            mechanism,
            salt: salt.into(),
            iterations,
            password,
        }
    }

    /// Runs PBKDF2: `iterations` HMACs, about 0.2 µs each for SHA-1 on a
    /// 2.6 GHz core (2 ms for Prosody's 10 000). Call it where blocking is
    /// fine, and feed the result to
    /// [`Handshake::derived`](crate::handshake::Handshake::derived).
    pub fn derive(&self) -> Arc<[u8]> {
        salt_password(
            self.mechanism,
            self.password.as_bytes(),
            &self.salt,
            self.iterations,
        )
    }

    /// The cache key: a hash of (mechanism, password, salt, iterations), so
    /// the cache keeps no password.
    fn key(&self) -> [u8; 32] {
        let mut key = Sha256::new();
        for part in [
            self.mechanism.as_bytes(),
            self.password.as_bytes(),
            &self.salt,
        ] {
            key.update((part.len() as u64).to_be_bytes());
            key.update(part);
        }
        key.update(self.iterations.to_be_bytes());
        key.finalize().into()
    }
}

impl fmt::Debug for DeriveRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeriveRequest")
            .field("mechanism", &self.mechanism)
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Salted passwords of recent SCRAM logins, keyed by a hash of
/// (mechanism, password, salt, iteration count), so a user who logs in
/// again (another tab, a reload) costs two HMACs instead of a PBKDF2 run
/// (RFC 5802 §5.1 allows the client to cache it).
///
/// Bounded: when full, the least useful entry goes (quick_cache's
/// CLOCK-Pro-like policy: recency and frequency), never the whole cache.
/// Single-flight: concurrent cold logins of one account wait for one PBKDF2
/// run instead of each running their own.
///
/// The values are password equivalents held in memory, like the passwords
/// the credentials already hold; the cache keeps no password. Share one
/// cache between layers with
/// [`PrebindLayer::scram_cache_shared`](crate::PrebindLayer::scram_cache_shared).
pub struct ScramCache {
    entries: Option<quick_cache::sync::Cache<[u8; 32], Arc<[u8]>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ScramCache {
    /// A cache of at most `capacity` salted passwords (0: nothing is kept).
    pub fn new(capacity: usize) -> Self {
        ScramCache {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// How many salted passwords are cached.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |entries| entries.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logins that found their salted password here (or waited for a
    /// concurrent login of the same account to derive it), since creation.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Logins that had to run PBKDF2, since creation: the number of
    /// derivations started through this cache.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The salted password for `request`: from the cache, or from `derive`
    /// (run once for concurrent callers with the same key; the others wait
    /// for it). `derive` failing (`None`) caches nothing, and the next
    /// waiter derives in its turn.
    pub(crate) async fn get_or_derive<F>(
        &self,
        request: &DeriveRequest,
        derive: F,
    ) -> Option<(Arc<[u8]>, bool)>
    where
        F: Future<Output = Option<Arc<[u8]>>>,
    {
        let Some(entries) = &self.entries else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return derive.await.map(|salted| (salted, false));
        };
        match entries.get_value_or_guard_async(&request.key()).await {
            Ok(salted) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some((salted, true))
            }
            Err(guard) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let salted = derive.await?;
                let _ = guard.insert(Arc::clone(&salted));
                Some((salted, false))
            }
        }
    }

    /// The cached salted password for `request`, if any (for sans-IO users
    /// who run [`DeriveRequest::derive`] themselves). Counts a hit or a miss.
    pub fn get(&self, request: &DeriveRequest) -> Option<Arc<[u8]>> {
        let found = self.entries.as_ref()?.get(&request.key());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `salted_password` for `request`.
    pub fn insert(&self, request: &DeriveRequest, salted_password: Arc<[u8]>) {
        if let Some(entries) = &self.entries {
            entries.insert(request.key(), salted_password);
        }
    }
}

impl fmt::Debug for ScramCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

/// `Hi(password, salt, i)` of RFC 5802 §2.2, for the mechanism's hash.
pub(crate) fn salt_password(
    mechanism: &str,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Arc<[u8]> {
    if mechanism == "SCRAM-SHA-256" {
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut out)
            .expect("HMAC takes keys of any length");
        Arc::from(&out[..])
    } else {
        let mut out = [0u8; 20];
        pbkdf2::pbkdf2::<Hmac<Sha1>>(password, salt, iterations, &mut out)
            .expect("HMAC takes keys of any length");
        Arc::from(&out[..])
    }
}

/// The length of a salted password (the hash's output) for a SCRAM mechanism.
pub(crate) fn salted_len(mechanism: &str) -> usize {
    if mechanism == "SCRAM-SHA-256" { 32 } else { 20 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(password: &str, salt: &[u8]) -> DeriveRequest {
        DeriveRequest::new("SCRAM-SHA-1", password.into(), salt.to_vec(), 4096)
    }

    #[test]
    fn derive_matches_rfc_6070_and_debug_hides_the_password() {
        // RFC 6070 test vector: PBKDF2-HMAC-SHA1("password", "salt", 4096).
        let derived = request("password", b"salt").derive();
        let hex: String = derived.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "4b007901b765489abead49d926f721d065a429c1");
        let shown = format!("{:?}", request("hunter2", b"salt"));
        assert!(!shown.contains("hunter2"), "{shown}");
        let sha256 = DeriveRequest::new("SCRAM-SHA-256", "pw".into(), b"s".to_vec(), 1);
        assert_eq!(sha256.derive().len(), salted_len("SCRAM-SHA-256"));
    }

    #[tokio::test]
    async fn a_hit_skips_the_derivation_and_a_full_cache_evicts_one_not_all() {
        let cache = ScramCache::new(40);
        let derive = |r: &DeriveRequest| {
            let r = r.clone();
            async move { Some(r.derive()) }
        };
        let first = request("pw", b"salt");
        let (salted, hit) = cache.get_or_derive(&first, derive(&first)).await.unwrap();
        assert!(!hit);
        let (again, hit) = cache
            .get_or_derive(&first, async { panic!("a hit must not derive") })
            .await
            .unwrap();
        assert!(hit && Arc::ptr_eq(&salted, &again));
        assert_eq!((cache.hits(), cache.misses()), (1, 1));
        for n in 0..200 {
            let other = request(&format!("pw{n}"), b"salt");
            cache.get_or_derive(&other, derive(&other)).await.unwrap();
        }
        let len = cache.len();
        assert!(len <= 40 && len > 20, "bounded, never cleared whole: {len}");
    }

    #[tokio::test]
    async fn a_failed_derivation_caches_nothing_and_capacity_zero_keeps_nothing() {
        let cache = ScramCache::new(4);
        let r = request("pw", b"salt");
        assert!(cache.get_or_derive(&r, async { None }).await.is_none());
        assert!(cache.is_empty());
        let off = ScramCache::new(0);
        let derived = off.get_or_derive(&r, async { Some(r.derive()) }).await;
        assert!(derived.is_some_and(|(_, hit)| !hit));
        assert_eq!((off.len(), off.misses()), (0, 1));
        assert_eq!(off.get(&r), None);
        off.insert(&r, r.derive());
        assert!(off.is_empty());
    }
}
