//! Copies ../src/metrics.rs with std's atomics swapped for loom's, and without its unit
//! tests, into OUT_DIR. Fails the build if the import it swaps is no longer there, so the
//! model can never silently check stale code.

use std::{env, fs, path::Path};

const STD_IMPORT: &str = "use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};";
const LOOM_IMPORT: &str = "use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};";

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/metrics.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = fs::read_to_string(&src).expect("read src/metrics.rs");
    assert_eq!(
        text.matches(STD_IMPORT).count(),
        1,
        "src/metrics.rs no longer has exactly one `{STD_IMPORT}`: update loom/build.rs"
    );
    let body = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    // Inner doc comments are not allowed in an include!d file.
    let body: String = body
        .replace(STD_IMPORT, LOOM_IMPORT)
        .lines()
        .map(|l| {
            l.strip_prefix("//!")
                .map_or(l.to_string(), |r| format!("//{r}"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("metrics.rs");
    fs::write(out, body).expect("write the loom copy of metrics.rs");
}
