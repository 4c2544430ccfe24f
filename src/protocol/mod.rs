//! The sans-IO protocol core: XEP-0124 / XEP-0206 wire format, SASL and the
//! login state machine (classic SASL, or SASL2 + Bind 2 + FAST where offered). Nothing here touches a socket, a timer or a task:
//! feed a CM response, get the next request (see [`handshake`]). The driver
//! (`crate::driver`) does the I/O.

pub mod bosh;
pub(crate) mod credentials;
pub(crate) mod fast;
pub mod handshake;
pub(crate) mod sasl;
pub(crate) mod sasl2;
pub(crate) mod scram_cache;
pub(crate) mod xml;
