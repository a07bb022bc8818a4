//! The CLI end to end on the shipped sample image and on broken input, checked against
//! qemu-img and The Sleuth Kit.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use cairn_testkit::{qemu_img_convert, qemu_img_create, qemu_img_overlay, qemu_io, qemu_raw};
use common::have;

fn cairn(args: &[&str]) -> Output {
    common::cairn_output(args, None)
}

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, None)
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/demo-vm.vmdk")
}

#[test]
fn inspect_json_describes_the_sample() {
    let s = sample();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", s.to_str().unwrap()])).unwrap();
    assert_eq!(v["format"], "vmdk");
    assert_eq!(v["subformat"], "monolithicSparse");
    assert_eq!(v["virtual_size"], 48 << 20);
    assert_eq!(v["chain"].as_array().unwrap().len(), 1);
    let parts = v["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["index"], 1);
    assert_eq!(parts[0]["start"], 1 << 20);
    assert_eq!(parts[0]["filesystem"], "fat16");
    assert_eq!(parts[1]["filesystem"], "ext4");
    assert_eq!(parts[1]["type"], "Linux filesystem");
}

#[test]
fn broken_images_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample()).unwrap();
    // Truncated in the middle of the grain directory area: the header still says KDMV.
    let cut = dir.path().join("cut.vmdk");
    std::fs::write(&cut, &bytes[..4096]).unwrap();
    let out = cairn(&["inspect", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("cairn: error: ") && err.contains("cut.vmdk"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    // A missing file.
    let out = cairn(&["inspect", dir.path().join("nope.vmdk").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn ls_and_extract_agree_with_the_sleuth_kit() {
    if !have("qemu-img") || !have("fls") || !have("icat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let s = sample();
    qemu_img_convert(&s, "vmdk", &raw, "raw", &[]);
    // Partition 2 (ext4) starts at sector 34816.
    let fls = Command::new("fls")
        .args(["-r", "-p", "-o", "34816", raw.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(fls.status.success());
    let mut tsk: Vec<(String, String)> = String::from_utf8(fls.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            // "r/r 12:\thome/alice/random.bin"
            let (kind, rest) = l.split_once(' ')?;
            let (inode, path) = rest.split_once(":\t")?;
            if path.starts_with("$OrphanFiles")
                || path.starts_with("lost+found") && path != "lost+found"
            {
                return None;
            }
            Some((format!("/{path}"), format!("{kind}|{inode}")))
        })
        .collect();
    tsk.sort();
    let ls = ok(&["ls", "-r", "--json", "-p", "2", s.to_str().unwrap()]);
    let ours: Vec<serde_json::Value> = ls
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut our_paths: Vec<String> = ours
        .iter()
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    our_paths.sort();
    let tsk_paths: Vec<String> = tsk.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(our_paths, tsk_paths);

    let out = dir.path().join("out");
    ok(&[
        "extract",
        "-p",
        "2",
        s.to_str().unwrap(),
        "/",
        "--to",
        out.to_str().unwrap(),
    ]);
    for (path, kind_inode) in &tsk {
        if !kind_inode.starts_with("r/r") {
            continue;
        }
        let inode = kind_inode.split('|').nth(1).unwrap();
        let icat = Command::new("icat")
            .args(["-o", "34816", raw.to_str().unwrap(), inode])
            .output()
            .unwrap();
        assert!(icat.status.success());
        let ours = std::fs::read(out.join(path.trim_start_matches('/'))).unwrap();
        assert_eq!(ours, icat.stdout, "{path}");
    }
}

#[test]
fn extract_refuses_names_that_escape() {
    let s = sample();
    let dir = tempfile::tempdir().unwrap();
    let out = cairn(&[
        "extract",
        "-p",
        "2",
        s.to_str().unwrap(),
        "/no/such/file",
        "--to",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
}

fn cairn_pw(args: &[&str], pw: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env("CAIRN_PASSWORD", pw)
        .output()
        .expect("run cairn")
}

#[test]
fn encrypted_repository_round_trip_and_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let keys = dir.path().join("elsewhere.keys");
    let s = sample();
    let r = repo.to_str().unwrap();
    let k = keys.to_str().unwrap();
    // Keys kept outside the repository, plus a recovery key.
    let out = cairn_pw(
        &["init", "--repo", r, "--key-file", k, "--recovery-key"],
        "right",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recovery = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(recovery.len() >= 26, "{recovery}");
    assert!(
        !repo.join("keys").exists(),
        "the key ring must not be in the repository"
    );
    let out = cairn_pw(
        &[
            "backup",
            "--repo",
            r,
            "--key-file",
            k,
            s.to_str().unwrap(),
            "--json",
        ],
        "right",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No content fingerprint in clear: the repository files never contain the sample's text.
    for f in walk_files(&repo) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(16).any(|w| w == b"hello from cairn"),
            "{}",
            f.display()
        );
    }
    // A wrong passphrase: one clear line, exit 1.
    let out = cairn_pw(&["snapshots", "--repo", r, "--key-file", k], "wrong");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.to_lowercase().contains("wrong") || err.contains("key"),
        "{err}"
    );
    // Without the key file the repository cannot be opened either.
    let out = cairn_pw(&["snapshots", "--repo", r], "right");
    assert_eq!(out.status.code(), Some(1));
    // The restore is bit-exact.
    let restored = dir.path().join("restored.raw");
    let out = cairn_pw(
        &[
            "restore",
            "--repo",
            r,
            "--key-file",
            k,
            "latest",
            "--to",
            restored.to_str().unwrap(),
        ],
        "right",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/demo-vm.raw.sha256"),
    )
    .unwrap();
    let got = ring_sha256(&std::fs::read(&restored).unwrap());
    assert_eq!(got, want.trim());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn ring_sha256(b: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out.unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b).unwrap();
    let o = child.wait_with_output().unwrap();
    String::from_utf8(o.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Times are whole seconds: `latest` among restore points of one second is the child of the
/// incremental chain, and a tie the chain does not settle is refused, never guessed.
#[test]
fn latest_in_one_second_follows_the_chain_or_refuses() {
    if !(have("qemu-img") && have("qemu-io")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (base, child) = (dir.path().join("base.vmdk"), dir.path().join("child.vmdk"));
    qemu_img_create(&base, "vmdk", "4M", &[]);
    qemu_io(&base, "vmdk", &["write -P 0x11 0 4M"]);
    qemu_img_overlay(&child, "vmdk", "base.vmdk", "vmdk");
    qemu_io(&child, "vmdk", &["write -P 0x22 1M 64k"]);
    let repo = p("repo");
    ok(&["init", "--repo", &repo, "--encryption", "none"]);
    let t = "2024-01-01T00:00:00Z";
    for img in ["base.vmdk", "child.vmdk"] {
        ok(&[
            "backup",
            "--repo",
            &repo,
            &p(img),
            "--name",
            "vm",
            "--time",
            t,
        ]);
    }
    let out = p("latest.raw");
    ok(&["restore", "--repo", &repo, "latest", "--to", &out]);
    assert!(std::fs::read(&out).unwrap() == qemu_raw(&child, "vmdk"));

    // Another VM in the same second: two heads, so `latest` names no one.
    ok(&[
        "backup",
        "--repo",
        &repo,
        &p("base.vmdk"),
        "--name",
        "other",
        "--time",
        t,
        "--full",
    ]);
    let r = cairn(&["restore", "--repo", &repo, "latest", "--to", &p("x.raw")]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("`latest` is ambiguous"), "{err}");
}
