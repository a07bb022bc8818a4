//! `cairn backup --read-mb-per-s N --io-concurrency N --threads N`: a throttled backup of a
//! raw image and of a qemu-img VMDK restores bit-exact (against `qemu-img convert -O raw`),
//! and out-of-range values are refused before anything is read. Whether the cap is honoured
//! is a matter of time, measured by benches/throttle.sh (BENCHMARKS section 4), not here:
//! tests carry no wall-clock thresholds.
use std::path::Path;

mod common;
use cairn_testkit::{qemu_img_convert, qemu_raw};
use common::{cairn_ok, cairn_output, have, s};

const PASSWORD: &str = "throttle test passphrase";

/// A 4 MiB image of random data with a 512 KiB hole in the middle, so the backup has both
/// data to read and a range it must not read.
fn random_image() -> Vec<u8> {
    let mut data = cairn_testkit::random_bytes(0x7407_7e1e, 4 << 20);
    data[(1 << 20)..(1 << 20) + (512 << 10)].fill(0);
    data
}

fn init_repo(repo: &Path) {
    cairn_ok(&["init", "--repo", s(repo)], Some(PASSWORD));
}

/// Backs up `image` with the throttle flags and returns the `--json` report.
fn throttled_backup(repo: &Path, image: &Path, throttle: [&str; 3]) -> serde_json::Value {
    let [mb, readers, threads] = throttle;
    let out = cairn_ok(
        &[
            "backup",
            "--repo",
            s(repo),
            "--read-mb-per-s",
            mb,
            "--io-concurrency",
            readers,
            "--threads",
            threads,
            "--json",
            s(image),
        ],
        Some(PASSWORD),
    );
    serde_json::from_str(&out).expect("backup --json prints one JSON object")
}

fn restore(repo: &Path, restore_point: &str, to: &Path) -> Vec<u8> {
    cairn_ok(
        &["restore", "--repo", s(repo), restore_point, "--to", s(to)],
        Some(PASSWORD),
    );
    std::fs::read(to).unwrap()
}

#[test]
fn throttled_backup_of_a_raw_image_restores_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_repo(&repo);
    let image = dir.path().join("disk.img");
    let data = random_image();
    std::fs::write(&image, &data).unwrap();

    // Every combination of one reader / several readers and one worker / several workers.
    for (i, throttle) in [["40", "1", "1"], ["200", "3", "2"], ["1000", "64", "64"]]
        .into_iter()
        .enumerate()
    {
        let report = throttled_backup(&repo, &image, throttle);
        let rp = report["restore_point"].as_str().expect("restore point id");
        assert!(
            report["bytes_read"]
                .as_u64()
                .is_some_and(|n| n > 0 && n <= 4 << 20),
            "{throttle:?}: {report}"
        );
        let restored = restore(&repo, rp, &dir.path().join(format!("out{i}.raw")));
        assert!(restored == data, "{throttle:?}: restored bytes differ");
    }
    cairn_ok(
        &["verify", "--repo", s(&repo), "--read-data"],
        Some(PASSWORD),
    );
}

#[test]
fn throttled_backup_of_a_vmdk_matches_qemu_img_convert() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    std::fs::write(&raw, random_image()).unwrap();
    let vmdk = dir.path().join("disk.vmdk");
    qemu_img_convert(&raw, "raw", &vmdk, "vmdk", &[]);
    // The oracle: what qemu-img itself reads out of the VMDK.
    let expect = qemu_raw(&vmdk, "vmdk");
    let repo = dir.path().join("repo");
    init_repo(&repo);
    let report = throttled_backup(&repo, &vmdk, ["25", "2", "1"]);
    let rp = report["restore_point"].as_str().expect("restore point id");
    // The VMDK leaves the zero range unallocated: never read.
    assert!(
        report["bytes_read"].as_u64().is_some_and(|n| n < 4 << 20),
        "{report}"
    );
    let restored = restore(&repo, rp, &dir.path().join("out.raw"));
    assert!(
        restored == expect,
        "restored bytes differ from qemu-img convert -O raw"
    );
}

#[test]
fn out_of_range_throttle_values_are_refused_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_repo(&repo);
    let image = dir.path().join("disk.img");
    std::fs::write(&image, random_image()).unwrap();

    for (flag, value) in [
        ("--read-mb-per-s", "0"),
        ("--read-mb-per-s", "4294967296"),
        ("--read-mb-per-s", "fast"),
        ("--io-concurrency", "0"),
        ("--io-concurrency", "65"),
        ("--io-concurrency", "-1"),
        ("--threads", "0"),
        ("--threads", "100000"),
        ("--threads", "1.5"),
    ] {
        let arg = format!("{flag}={value}");
        let out = cairn_output(
            &["backup", "--repo", s(&repo), &arg, s(&image)],
            Some(PASSWORD),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg} was accepted: {err}");
        assert!(
            out.stdout.is_empty(),
            "{arg}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // One line says what is wrong and names the flag; clap may add its usual
        // "For more information, try '--help'." hint after a blank line, nothing else.
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: invalid value '{value}' for '{flag} ")),
            "{arg}: {err}"
        );
        let other: Vec<&str> = err
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
            .collect();
        assert!(other.is_empty(), "{arg}: more than one error line: {err}");
    }
    // Nothing was backed up.
    let list = cairn_ok(&["snapshots", "--repo", s(&repo), "--json"], Some(PASSWORD));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
}
