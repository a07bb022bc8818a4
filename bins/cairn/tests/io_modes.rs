//! How cairn writes, checked with strace (a tool we did not write):
//! - `cairn restore` is durable by default: the restored file is fsynced before the command
//!   says it finished. `--no-fsync` returns once the data is in the page cache (what restic,
//!   borg and `qemu-img convert` do), still bit-exact and sparse.
//! - `cairn backup --direct-io` opens its pack files with O_DIRECT (falling back to buffered
//!   writes where the file system refuses), and the restore points it writes restore
//!   bit-exact; without the flag packs go through the page cache.
//!
//! The speed of each mode is measured in benches/backup-peers.sh (BENCHMARKS section 2), not
//! here.
use std::path::Path;

mod common;
use cairn_testkit::{have, run_command, tool_command};
use common::{cairn_ok, cairn_output, s};

const PASSWORD: &str = "restore fsync test passphrase";

/// 6 MiB: random data, a 2 MiB hole (left unwritten by restore), random data.
fn image() -> Vec<u8> {
    let mut data = cairn_testkit::random_bytes(0xf5_7c, 6 << 20);
    data[(2 << 20)..(4 << 20)].fill(0);
    data
}

/// A repository holding one backup of [`image`]; returns the restore point id.
fn backed_up(dir: &Path) -> (std::path::PathBuf, String) {
    let repo = dir.join("repo");
    cairn_ok(&["init", "--repo", s(&repo)], Some(PASSWORD));
    let img = dir.join("disk.img");
    std::fs::write(&img, image()).unwrap();
    let rp = backup(&repo, &img, &[]);
    (repo, rp)
}

/// Backs up `img` into `repo` with `extra` flags; returns the restore point id.
fn backup(repo: &Path, img: &Path, extra: &[&str]) -> String {
    let mut args = vec!["backup", "--repo", s(repo), "--json", s(img)];
    args.extend(extra);
    let out = cairn_ok(&args, Some(PASSWORD));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    report["restore_point"].as_str().unwrap().to_string()
}

/// `restore --repo REPO RP --to TO EXTRA...`.
fn restore_args<'a>(repo: &'a Path, rp: &'a str, to: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["restore", "--repo", s(repo), rp, "--to", s(to)];
    args.extend(extra);
    args
}

#[cfg(unix)]
fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn no_fsync_restore_is_bit_exact_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, rp) = backed_up(dir.path());
    let out = dir.path().join("out.raw");
    let o = cairn_output(
        &restore_args(&repo, &rp, &out, &["--no-fsync"]),
        Some(PASSWORD),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not yet on disk"),
        "the summary line must say the data is not durable yet"
    );
    assert!(
        std::fs::read(&out).unwrap() == image(),
        "restored bytes differ"
    );
    #[cfg(unix)]
    assert!(
        allocated_bytes(&out) <= 4 << 20,
        "the 2 MiB hole was written: {} bytes allocated",
        allocated_bytes(&out)
    );
}

#[test]
fn no_fsync_is_refused_where_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, rp) = backed_up(dir.path());
    let out = dir.path().join("out.vmdk");
    let o = cairn_output(
        &restore_args(&repo, &rp, &out, &["--format", "vmdk", "--no-fsync"]),
        Some(PASSWORD),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert!(err.contains("--no-fsync is for --format raw"), "{err}");
    assert!(!out.exists(), "nothing may be written before the refusal");

    let o = cairn_output(
        &restore_args(&repo, &rp, dir.path(), &["--vm", "--no-fsync"]),
        Some(PASSWORD),
    );
    assert!(!o.status.success(), "--vm with --no-fsync must be refused");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--no-fsync"));
}

/// The file descriptor numbers strace shows for `out` being opened, then every fsync-family
/// call on them.
fn syncs_of_output(trace: &str, out: &Path) -> usize {
    let name = format!("\"{}\"", out.display());
    let mut fds: Vec<String> = Vec::new();
    let mut syncs = 0;
    for line in trace.lines() {
        // `[pid N] openat(AT_FDCWD, "/…/out.raw", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3`
        if line.contains("openat(") && line.contains(&name) {
            if let Some(fd) = line.rsplit("= ").next() {
                fds.push(fd.trim().to_string());
            }
        }
        // A dup of the output (the flusher's clone): `fcntl(3, F_DUPFD_CLOEXEC, 3) = 4`.
        if line.contains("fcntl(") && line.contains("F_DUPFD") {
            let arg = line
                .split("fcntl(")
                .nth(1)
                .and_then(|r| r.split(',').next());
            if arg.is_some_and(|a| fds.iter().any(|f| f == a.trim())) {
                if let Some(fd) = line.rsplit("= ").next() {
                    fds.push(fd.trim().to_string());
                }
            }
        }
        for call in ["fsync(", "fdatasync("] {
            if let Some(rest) = line.split(call).nth(1) {
                let fd = rest.split(')').next().unwrap_or("");
                if fds.iter().any(|f| f == fd.trim()) {
                    syncs += 1;
                }
            }
        }
    }
    syncs
}

#[test]
fn default_restore_fsyncs_the_file_and_no_fsync_does_not() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repo, rp) = backed_up(dir.path());
    let cairn = env!("CARGO_BIN_EXE_cairn");
    for (extra, want_syncs) in [(None, true), (Some("--no-fsync"), false)] {
        let out = dir.path().join(format!("out-{want_syncs}.raw"));
        let trace = dir.path().join(format!("trace-{want_syncs}.txt"));
        let mut args = vec![
            "-f",
            "-qq",
            "-e",
            "trace=openat,fcntl,fsync,fdatasync",
            "-o",
            s(&trace),
            cairn,
        ];
        args.extend(restore_args(&repo, &rp, &out, extra.as_slice()));
        run_command(
            tool_command("strace")
                .env("CAIRN_PASSWORD", PASSWORD)
                .args(&args),
        );
        assert!(
            std::fs::read(&out).unwrap() == image(),
            "{extra:?}: bytes differ"
        );
        let syncs = syncs_of_output(&std::fs::read_to_string(&trace).unwrap(), &out);
        if want_syncs {
            assert!(syncs >= 1, "a default restore must fsync its output");
        } else {
            assert_eq!(syncs, 0, "--no-fsync must not fsync the output");
        }
    }
}

/// The flags of every `openat` of a pack file (`packs/xx/...`) in an strace log.
fn pack_open_flags(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter(|l| l.contains("openat(") && l.contains("/packs/"))
        .filter_map(|l| l.split(", ").nth(2).map(str::to_string))
        .filter(|flags| flags.contains("O_CREAT"))
        .collect()
}

#[test]
fn direct_io_backup_opens_packs_with_o_direct_and_restores_bit_exact() {
    if !have("strace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    cairn_ok(&["init", "--repo", s(&repo)], Some(PASSWORD));
    let cairn = env!("CARGO_BIN_EXE_cairn");
    for (i, direct) in [false, true].into_iter().enumerate() {
        // A different image each time, so each backup writes a pack of its own.
        let mut data = image();
        data[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let img = dir.path().join(format!("disk{i}.img"));
        std::fs::write(&img, &data).unwrap();
        let trace = dir.path().join(format!("backup-trace-{i}.txt"));
        let mut args = vec![
            "-f",
            "-qq",
            "-e",
            "trace=openat",
            "-o",
            s(&trace),
            cairn,
            "backup",
            "--repo",
            s(&repo),
            "--json",
            s(&img),
        ];
        if direct {
            args.push("--direct-io");
        }
        let out = run_command(
            tool_command("strace")
                .env("CAIRN_PASSWORD", PASSWORD)
                .args(&args),
        );
        let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let rp = report["restore_point"].as_str().unwrap().to_string();
        let flags = pack_open_flags(&std::fs::read_to_string(&trace).unwrap());
        assert!(!flags.is_empty(), "no pack file was created");
        let with_direct = flags.iter().filter(|f| f.contains("O_DIRECT")).count();
        if direct {
            assert!(with_direct > 0, "--direct-io: packs opened with {flags:?}");
        } else {
            assert_eq!(with_direct, 0, "buffered: packs opened with {flags:?}");
        }
        let to = dir.path().join(format!("out{i}.raw"));
        cairn_ok(&restore_args(&repo, &rp, &to, &[]), Some(PASSWORD));
        assert!(
            std::fs::read(&to).unwrap() == data,
            "direct {direct}: bytes differ"
        );
    }
    cairn_ok(
        &["verify", "--repo", s(&repo), "--read-data"],
        Some(PASSWORD),
    );
}
