//! Public samples made by native tools (Hyper-V, Virtual PC, Disk2VHD, ESXi, Windows),
//! checked against qemu-img, libvhdi/libvmdk and The Sleuth Kit by
//! `scripts/check-samples.sh` (see docs/samples.md).
//!
//! The samples are not committed (their licences differ from ours) and fetching them needs
//! the Debian, PyPI and crates.io registries, so this test runs only when
//! `CAIRN_SAMPLES_DIR` points at a folder filled by `scripts/fetch-samples.sh`:
//!
//! ```text
//! scripts/fetch-samples.sh samples-cache
//! CAIRN_SAMPLES_DIR=$PWD/samples-cache cargo test -p cairn --test samples -- --nocapture
//! ```
use std::path::Path;
use std::process::Command;

#[test]
fn public_samples_match_independent_readers() {
    let Some(dir) = std::env::var_os("CAIRN_SAMPLES_DIR") else {
        println!("skipped: set CAIRN_SAMPLES_DIR (a folder filled by scripts/fetch-samples.sh)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-samples.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .env("CAIRN_BIN", env!("CARGO_BIN_EXE_cairn"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    let fails: Vec<&str> = stdout.lines().filter(|l| l.contains("| FAIL |")).collect();
    let err_lines: Vec<&str> = stderr.lines().collect();
    let err_tail = &err_lines[err_lines.len().saturating_sub(20)..];
    assert!(
        out.status.success(),
        "check-samples.sh failed ({}); FAIL rows:\n{}\nstderr tail:\n{}",
        out.status,
        fails.join("\n"),
        err_tail.join("\n"),
    );
}
