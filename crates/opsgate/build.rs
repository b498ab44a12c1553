//! Link settings for the release `opsgate` binary: its start-up code grouped at the front of
//! `.text`, and its relocations packed. Both only where the link is certainly rust-lld against
//! this machine's glibc 2.36 or later; anywhere else the binary links as before.
//!
//! Why: the kernel maps a binary's code in whole page-cache folios (up to 2 MB on Linux 6.18), so
//! the ~4 MB of functions a server runs to start and idle, spread by the default layout over 25 MB
//! of `.text`, kept about 15 MB of it resident. `startup-order.txt` lists those functions
//! (`scripts/startup-order.sh` writes it from a callgrind run); lld places them first, in that
//! order. Unpacked, the relocations are a 1.9 MB table the loader reads at every start; packed
//! (DT_RELR), a few kilobytes. BENCHMARKS.md section 3 measures the result.

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "startup-order.txt";

/// Set to `off` to link without the start-up layout and packed relocations.
const SWITCH: &str = "OPSGATE_RELEASE_LAYOUT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed={SWITCH}");
    if env::var("PROFILE").as_deref() != Ok("release") || env::var(SWITCH).as_deref() == Ok("off") {
        return;
    }
    // Other targets link as rustc chooses, without a word: the layout is tuned for this one.
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return;
    }
    if let Some(why) = why_not_rust_lld_on_new_glibc() {
        println!("cargo:warning=opsgate: linking without the start-up layout: {why} (see crates/opsgate/build.rs)");
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER_FILE);
    if order.is_file() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        // Names the file lists but this build does not define (a changed dependency renames its
        // functions) are skipped; scripts/bench.sh reports how much of the file still matches.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// `None` when the x86_64-unknown-linux-gnu binary is linked by rust-lld, rustc's default
/// linker there since 1.90 (`--symbol-ordering-file` is an lld flag), for the glibc this build
/// runs on, and that glibc loads packed relocations (2.36 and later); else why not.
fn why_not_rust_lld_on_new_glibc() -> Option<String> {
    let target = env::var("TARGET").unwrap_or_default();
    if env::var("HOST").unwrap_or_default() != target {
        return Some("cross-compiled".to_string());
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        return Some(format!("linker {linker} configured"));
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|flag| flag.contains("link-self-contained") || flag.contains("linker")) {
        return Some("RUSTFLAGS choose the linker".to_string());
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(version) = Command::new(rustc).arg("--version").output() else {
        return Some("`rustc --version` did not run".to_string());
    };
    let minor = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|version| version.split('.').nth(1).map(str::to_string))
        .and_then(|minor| minor.parse::<u32>().ok());
    match minor {
        Some(minor) if minor >= 90 => {}
        _ => return Some("rustc older than 1.90 links with the system linker".to_string()),
    }
    let glibc = glibc_version();
    if glibc < (2, 36) {
        return Some(format!("glibc {}.{} loads no packed relocations", glibc.0, glibc.1));
    }
    None
}

/// The glibc this build runs on, which is the target's (the build is not cross-compiled), from
/// `getconf GNU_LIBC_VERSION` ("glibc 2.36"); (0, 0) when that cannot say.
fn glibc_version() -> (u32, u32) {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return (0, 0) };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
