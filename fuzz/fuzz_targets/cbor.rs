//! libFuzzer target `cbor`: see `biopay_fuzz::cbor`.
//! Run with `cargo +nightly fuzz run cbor --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::cbor(data);
});
