//! `cargo fuzz run html_scanner`: see ../README.md and `bosh_prebind_fuzz::html_scanner`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bosh_prebind_fuzz::html_scanner(data));
