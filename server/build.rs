//! Test switch: `BIOPAY_SKIP_POSTGRES=1` sets the cfg `biopay_skip_postgres`,
//! which marks every PostgreSQL test `#[ignore]` (server/tests/common), so the
//! test runner reports each one as ignored, by name. Without it a PostgreSQL
//! test that cannot start PostgreSQL fails and says why.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(biopay_skip_postgres)");
    println!("cargo:rerun-if-env-changed=BIOPAY_SKIP_POSTGRES");
    println!("cargo:rerun-if-env-changed=BIOPAY_REQUIRE_POSTGRES");
    println!("cargo:rerun-if-changed=build.rs");
    // BIOPAY_REQUIRE_POSTGRES=1 (CI) overrides the opt-out: nothing may be skipped.
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
    if set("BIOPAY_SKIP_POSTGRES") && !set("BIOPAY_REQUIRE_POSTGRES") {
        println!("cargo:rustc-cfg=biopay_skip_postgres");
    }
}
