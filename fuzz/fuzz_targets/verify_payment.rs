//! libFuzzer target `verify_payment`: see `biopay_fuzz::verify_payment`.
//! Run with `cargo +nightly fuzz run verify_payment --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::verify_payment(data);
});
