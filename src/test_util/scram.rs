//! The server side of SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677),
//! as a server that stores keys, not passwords, runs it.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    /// The hash of `SCRAM-SHA-1` or `SCRAM-SHA-256`.
    pub(super) fn of(mechanism: &str) -> Option<Hash> {
        match mechanism {
            "SCRAM-SHA-1" => Some(Hash::Sha1),
            "SCRAM-SHA-256" => Some(Hash::Sha256),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) (RFC 5802 §2.2).
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0; 20];
                pbkdf2::pbkdf2::<Hmac<Sha1>>(password, salt, iterations, &mut out)
                    .expect("HMAC takes any key length");
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0; 32];
                pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut out)
                    .expect("HMAC takes any key length");
                out.to_vec()
            }
        }
    }
}

/// What the server stores for the account: the keys, derived once per hash
/// (Prosody stores them at registration; the fake on first use).
#[derive(Debug)]
pub(super) struct StoredKeys {
    password: String,
    salt: Vec<u8>,
    iterations: u32,
    sha1: OnceLock<Keys>,
    sha256: OnceLock<Keys>,
}

#[derive(Debug)]
struct Keys {
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl StoredKeys {
    pub(super) fn new(password: &str, salt: &[u8], iterations: u32) -> Self {
        StoredKeys {
            password: password.to_owned(),
            salt: salt.to_vec(),
            iterations,
            sha1: OnceLock::new(),
            sha256: OnceLock::new(),
        }
    }

    fn keys(&self, hash: Hash) -> &Keys {
        let cell = match hash {
            Hash::Sha1 => &self.sha1,
            Hash::Sha256 => &self.sha256,
        };
        cell.get_or_init(|| {
            let salted =
                hash.salted_password(self.password.as_bytes(), &self.salt, self.iterations);
            let client_key = hash.hmac(&salted, b"Client Key");
            Keys {
                stored_key: hash.digest(&client_key),
                server_key: hash.hmac(&salted, b"Server Key"),
            }
        })
    }
}

/// One SCRAM exchange between server-first and server-final.
#[derive(Debug)]
pub(super) struct Exchange {
    hash: Hash,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// The server's answer to a client-final message.
#[derive(Debug)]
pub(super) enum Verdict {
    /// The proof is right: the base64 of `v=ServerSignature`.
    Proven(String),
    /// The proof is wrong.
    NotAuthorized,
}

/// `key=value` from a comma-separated SCRAM message.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl Exchange {
    /// RFC 5802 §5.1: client-first → server-first (not yet base64).
    ///
    /// `Err` names what the client got wrong (a protocol violation).
    pub(super) fn start(
        hash: Hash,
        client_first: &[u8],
        user: &str,
        keys: &StoredKeys,
    ) -> Result<(Exchange, String), String> {
        let message = std::str::from_utf8(client_first)
            .map_err(|_| "client-first is not UTF-8".to_owned())?;
        let bare = message
            .strip_prefix("n,,")
            .ok_or_else(|| format!("GS2 header must be 'n,,' (no channel binding): {message}"))?;
        if field(bare, "n") != Some(user) {
            return Err(format!("client-first names another user: {message}"));
        }
        let client_nonce = field(bare, "r").ok_or_else(|| format!("no nonce: {message}"))?;
        if client_nonce.len() < 8 {
            return Err(format!("client nonce too short: {message}"));
        }
        let nonce = format!("{client_nonce}fake-cm-server-nonce");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        let exchange = Exchange {
            hash,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// RFC 5802 §3: verifies the client proof in client-final.
    ///
    /// `Err` names what the client got wrong (a protocol violation).
    pub(super) fn finish(
        self,
        client_final: &[u8],
        keys: &StoredKeys,
        tamper_server_signature: bool,
    ) -> Result<Verdict, String> {
        let message = std::str::from_utf8(client_final)
            .map_err(|_| "client-final is not UTF-8".to_owned())?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or_else(|| format!("no client proof: {message}"))?;
        if field(without_proof, "c") != Some("biws") {
            return Err(format!("channel binding must be 'biws': {message}"));
        }
        if field(without_proof, "r") != Some(self.nonce.as_str()) {
            return Err(format!("client-final with another nonce: {message}"));
        }
        let hash = self.hash;
        let stored = keys.keys(hash);
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = hash.hmac(&stored.stored_key, auth_message.as_bytes());
        let Ok(proof) = B64.decode(proof) else {
            return Ok(Verdict::NotAuthorized);
        };
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if proof.len() != client_signature.len() || hash.digest(&client_key) != stored.stored_key {
            return Ok(Verdict::NotAuthorized);
        }
        let mut server_signature = hash.hmac(&stored.server_key, auth_message.as_bytes());
        if tamper_server_signature {
            server_signature[0] ^= 1;
        }
        Ok(Verdict::Proven(
            B64.encode(format!("v={}", B64.encode(server_signature))),
        ))
    }
}
