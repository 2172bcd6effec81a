//! Fuzz the webp stripper: never a panic, never an output that fails verification.
#![no_main]

use asepsis_common::media::{Format, Limits, strip_as, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(stripped) = strip_as(Format::Webp, data, &limits) {
        assert!(verify(&stripped.bytes, &limits).is_ok());
    }
});
