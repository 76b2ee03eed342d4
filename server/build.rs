//! Test switch: `BIOPAY_SKIP_POSTGRES=1` sets the cfg `biopay_skip_postgres`,
//! which marks every PostgreSQL test `#[ignore]` (server/tests/common), so the
//! test runner reports each one as ignored, by name. Without it a PostgreSQL
//! test that cannot start PostgreSQL fails and says why.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(biopay_skip_postgres)");
    println!("cargo:rerun-if-env-changed=BIOPAY_SKIP_POSTGRES");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("BIOPAY_SKIP_POSTGRES").is_some_and(|v| v == "1") {
        println!("cargo:rustc-cfg=biopay_skip_postgres");
    }
}
