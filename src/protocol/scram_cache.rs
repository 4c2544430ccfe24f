//! [`ScramCache`]: salted passwords of recent SCRAM logins, so a returning
//! user costs two HMACs instead of a PBKDF2 run (RFC 5802 §5.1).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Salted passwords of recent SCRAM logins, keyed by a hash of
/// (mechanism, password, salt, iteration count), so a user who logs in
/// again (another tab, a reload) costs two HMACs instead of a PBKDF2 run
/// (RFC 5802 §5.1 allows the client to cache it).
///
/// The values are password equivalents held in memory, like the passwords
/// the credentials already hold; the cache is bounded and keeps no
/// password. Share one cache between layers with `Arc`.
pub struct ScramCache {
    entries: Mutex<HashMap<[u8; 32], Arc<[u8]>>>,
    capacity: usize,
}

impl ScramCache {
    /// A cache of at most `capacity` salted passwords.
    pub fn new(capacity: usize) -> Self {
        ScramCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// How many salted passwords are cached.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |entries| entries.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn salted_password(
        &self,
        mechanism: &str,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Arc<[u8]> {
        let mut key = Sha256::new();
        for part in [mechanism.as_bytes(), password, salt] {
            key.update((part.len() as u64).to_be_bytes());
            key.update(part);
        }
        key.update(iterations.to_be_bytes());
        let key: [u8; 32] = key.finalize().into();
        if let Some(hit) = self.entries.lock().ok().and_then(|e| e.get(&key).cloned()) {
            return hit;
        }
        let salted = salt_password(mechanism, password, salt, iterations);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                // Bounded, not LRU: a full cache starts over.
                entries.clear();
            }
            if self.capacity > 0 {
                entries.insert(key, Arc::clone(&salted));
            }
        }
        salted
    }
}

impl fmt::Debug for ScramCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
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
