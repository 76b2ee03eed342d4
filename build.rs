//! Test switch: `BIOPAY_SKIP_VECTORS=1` sets the cfg `biopay_skip_vectors`,
//! which marks the tests on the real Android chains of
//! `../shared/vectors/android-key-attestation` (tests/android_vectors.rs)
//! `#[ignore]`, so the test runner reports each one as ignored, by name.
//! `BIOPAY_REQUIRE_VECTORS=1` overrides it (CI sets it), so nothing is skipped there.
//! Without it a test that cannot find the folder fails and says why.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(biopay_skip_vectors)");
    println!("cargo:rerun-if-env-changed=BIOPAY_SKIP_VECTORS");
    println!("cargo:rerun-if-env-changed=BIOPAY_REQUIRE_VECTORS");
    println!("cargo:rerun-if-changed=build.rs");
    // BIOPAY_REQUIRE_VECTORS=1 (CI) overrides the opt-out: nothing may be skipped.
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
    if set("BIOPAY_SKIP_VECTORS") && !set("BIOPAY_REQUIRE_VECTORS") {
        println!("cargo:rustc-cfg=biopay_skip_vectors");
    }
}
