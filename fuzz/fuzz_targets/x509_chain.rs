//! libFuzzer target `x509_chain`: see `biopay_fuzz::x509_chain`.
//! Run with `cargo +nightly fuzz run x509_chain --features libfuzzer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = biopay_fuzz::x509_chain(data);
});
