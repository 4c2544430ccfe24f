//! The layer end to end against the fake connection manager of
//! `bosh_prebind::test_util` (feature `test-util`), grouped by behaviour.
//!
//! The fake answers in the shapes Prosody 0.12 uses (docs/protocol/), runs
//! real SASL server sides (PLAIN, SCRAM-SHA-1, SCRAM-SHA-256) and checks
//! every request against XEP-0124 / XEP-0206: a protocol violation panics
//! inside the transport, which fails the test that caused it.
//!
//! One test binary (one link) for all of them: `cargo test --test fake_cm`;
//! one group: `cargo test --test fake_cm sasl::`.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod abandonment;
mod derivation;
mod edge_cases;
mod faults;
mod happy_paths;
mod lifetime;
mod observability;
mod pages;
mod passthrough;
mod pool;
mod refusals;
mod sasl;
mod secrets;
mod the_fake;
