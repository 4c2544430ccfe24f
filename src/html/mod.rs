//! The page side: the streaming HTML scanner that finds where a session goes
//! ([`scanner`], sans-IO), the snippet written there, and the JSON it
//! carries, escaped for a `<script>` context.

pub(crate) mod json;
pub mod scanner;
pub(crate) mod session_json;
pub(crate) mod snippet;
