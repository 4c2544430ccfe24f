//! `cargo fuzz run cm_response`: see ../README.md and `bosh_prebind_fuzz::cm_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bosh_prebind_fuzz::cm_response(data));
