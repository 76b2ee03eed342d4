//! libFuzzer target `android_attestation`: see `biopay_fuzz::android_attestation`.
//! Run with `cargo +nightly fuzz run android_attestation --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::android_attestation(data);
});
