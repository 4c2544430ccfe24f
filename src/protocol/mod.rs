//! The sans-IO protocol core: XEP-0124 / XEP-0206 wire format, SASL and the
//! login state machine. Nothing here touches a socket, a timer or a task:
//! feed a CM response, get the next request (see [`handshake`]). The driver
//! (`crate::driver`) does the I/O.

pub mod bosh;
pub(crate) mod credentials;
pub mod handshake;
pub(crate) mod sasl;
pub(crate) mod scram_cache;
pub(crate) mod xml;
