//! libFuzzer target `messages`: see `biopay_fuzz::messages`.
//! Run with `cargo +nightly fuzz run messages --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::messages(data);
});
