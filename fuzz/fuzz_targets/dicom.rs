//! Fuzz DICOM de-identification: never a panic; whatever comes out passed its own verify, and
//! de-identifying the output again succeeds (it is a well-formed file).
#![no_main]

use asepsis_common::dicom::{UidKey, deidentify};
use asepsis_common::media::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let key = UidKey::for_tenant(&[1; 32].into(), "fuzz");
    if let Ok(done) = deidentify(data, &key, &limits) {
        assert!(deidentify(&done.bytes, &key, &limits).is_ok());
    }
});
