//! libFuzzer target `apple_app_attest`: see `biopay_fuzz::apple_app_attest`.
//! Run with `cargo +nightly fuzz run apple_app_attest --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::apple_app_attest(data);
});
