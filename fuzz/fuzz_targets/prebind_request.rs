//! `cargo fuzz run prebind_request`: see ../README.md and `bosh_prebind_fuzz::prebind_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bosh_prebind_fuzz::prebind_request(data));
