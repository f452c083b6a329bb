//! Links GCC's unwinder statically on Linux with glibc, when the compiler driver has it.
//!
//! Rust's standard library unwinds through libgcc_s.so.1, and loading that library costs every
//! devbox process time at start: its constructor asks the CPU for its features
//! with a dozen `cpuid` instructions, each a trap to the hypervisor on a virtual machine. A warm
//! `devbox run` took about 80 µs longer with it (bench/README.md, "Start-up cost"). libgcc_eh.a is
//! the same unwinder as an archive (what `gcc -static-libgcc` links); named here, it comes
//! before the standard library's `-lgcc_s` on the link line, defines the `_Unwind_*` symbols,
//! and `--as-needed` then drops libgcc_s.so.1. Without libgcc_eh.a, the default stays.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || var("TARGET") != var("HOST")
    {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| Path::new(p).is_absolute() && Path::new(p).is_file());
    if let Some(path) = found {
        let dir = Path::new(&path).parent().unwrap_or(Path::new("/"));
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
}
