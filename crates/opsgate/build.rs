//! Link settings for the release `opsgate` binary: the code it runs to start and idle is placed
//! together at the front of `.text`.
//!
//! Why: Linux 6.18 maps a binary's code in whole page-cache folios (up to 2 MB) on a fault, so the
//! ~4 MB of functions a server runs to start, answer and idle, spread by the default layout over
//! 25 MB of `.text`, kept about 15 MB of it resident (measured on this project's machine; on a
//! kernel that maps 4 KiB pages around a fault the gain is smaller). `startup-order.txt` lists
//! those functions (`scripts/startup-order.sh` writes it from callgrind runs); lld's
//! `--symbol-ordering-file` places them first, in that order. BENCHMARKS.md section 3 measures
//! the result and says whether the layout is in effect.
//!
//! Only for x86_64-unknown-linux-gnu release builds (the list is that target's symbol names), and
//! only when a trial link of an empty program with the same rustc, flags and linker accepts the
//! options: lld does, GNU ld does not, and rustc links with lld by default only in some builds of
//! it (rustup's since 1.90). Otherwise the binary links as before, with a warning saying why.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const ORDER_FILE: &str = "startup-order.txt";

/// Set to `off` to link without the start-up layout.
const SWITCH: &str = "OPSGATE_RELEASE_LAYOUT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed={SWITCH}");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let target = env::var("TARGET").unwrap_or_default();
    if !release || env::var(SWITCH).as_deref() == Ok("off") || target != "x86_64-unknown-linux-gnu" {
        return;
    }
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(ORDER_FILE);
    match layout_flags(&order, &target) {
        Ok(flags) => {
            for flag in flags {
                println!("cargo:rustc-link-arg-bins={flag}");
            }
        }
        Err(why) => {
            println!("cargo:warning=opsgate: linking without the start-up layout: {why} (see crates/opsgate/build.rs)")
        }
    }
}

/// The link arguments that place the listed functions first, once a trial link took them.
fn layout_flags(order: &Path, target: &str) -> Result<Vec<String>, String> {
    if !order.is_file() {
        return Err(format!("{} is missing", order.display()));
    }
    let order = order.display().to_string();
    // `-Wl,` splits its argument at commas.
    if order.contains(',') {
        return Err(format!("the path {order} has a comma"));
    }
    let flags = vec![
        format!("-Wl,--symbol-ordering-file={order}"),
        // Names the list has and this build does not define (a changed dependency renames its
        // functions) are skipped; BENCHMARKS.md says how many still match.
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    trial_link(&flags, target)?;
    Ok(flags)
}

/// Links an empty program with the rustc, `RUSTFLAGS` and linker this build uses, plus `flags`.
fn trial_link(flags: &[String], target: &str) -> Result<(), String> {
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|_| "OUT_DIR is not set".to_string())?);
    let source = out_dir.join("layout_probe.rs");
    std::fs::write(&source, "fn main() {}\n").map_err(|error| format!("writing {}: {error}", source.display()))?;
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let mut command = Command::new(&rustc);
    command.arg("--crate-name=layout_probe").arg("--edition=2021").arg("--target").arg(target);
    let encoded = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    command.args(encoded.split('\x1f').filter(|flag| !flag.is_empty()));
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        command.arg(format!("-Clinker={linker}"));
    }
    for flag in flags {
        command.arg(format!("-Clink-arg={flag}"));
    }
    command.arg("-o").arg(out_dir.join("layout_probe")).arg(&source);
    let output = command.output().map_err(|error| format!("running {rustc}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .find(|line| {
            ["unrecognized option", "unknown option", "unknown argument"].iter().any(|words| line.contains(words))
        })
        .or_else(|| stderr.lines().find(|line| line.starts_with("error")))
        .unwrap_or("the trial link failed");
    let reason = reason.trim().trim_start_matches("= note:").trim();
    Err(format!("the linker does not take --symbol-ordering-file ({reason})"))
}
