//! libFuzzer target `cose`: see `biopay_fuzz::cose`.
//! Run with `cargo +nightly fuzz run cose --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::cose(data);
});
