//! Recovery at any depth: two restore points of the sample VM with files added and
//! deleted in between; find, diff, ls --repo and restore-file checked against the source
//! and The Sleuth Kit.
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{have, run, s};

fn cairn(args: &[&str]) -> Output {
    common::cairn_output(args, Some("test"))
}

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, Some("test"))
}

#[test]
fn find_diff_ls_and_restore_file_across_two_restore_points() {
    if !have("qemu-img") || !have("debugfs") || !have("fls") || !have("icat") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/demo-vm.vmdk");
    let repo = d.join("repo");
    ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
    ok(&[
        "backup",
        "--repo",
        s(&repo),
        s(&sample),
        "--name",
        "vm",
        "--time",
        "2024-01-01T00:00:00Z",
    ]);

    // Day two: delete /hello.txt, add /new.txt, on the ext4 partition (sector 34816).
    let raw = d.join("disk.raw");
    run(Command::new("qemu-img").args(["convert", "-O", "raw", s(&sample), s(&raw)]));
    let part = d.join("p2.img");
    run(Command::new("dd").args([
        &format!("if={}", s(&raw)),
        &format!("of={}", s(&part)),
        "bs=512",
        "skip=34816",
        "count=61440",
        "status=none",
    ]));
    std::fs::write(d.join("new.txt"), b"new file\n").unwrap();
    run(Command::new("debugfs").args([
        "-w",
        "-R",
        &format!("write {} new.txt", s(&d.join("new.txt"))),
        s(&part),
    ]));
    run(Command::new("debugfs").args(["-w", "-R", "rm hello.txt", s(&part)]));
    run(Command::new("dd").args([
        &format!("if={}", s(&part)),
        &format!("of={}", s(&raw)),
        "bs=512",
        "seek=34816",
        "conv=notrunc",
        "status=none",
    ]));
    ok(&[
        "backup",
        "--repo",
        s(&repo),
        s(&raw),
        "--name",
        "vm",
        "--time",
        "2024-01-02T00:00:00Z",
    ]);

    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    let ids: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);

    // find: each version once, with the restore points holding it.
    let found: Vec<serde_json::Value> = ok(&["find", "--repo", s(&repo), "*.txt", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let on_ext4 = |p: &str| {
        found
            .iter()
            .find(|v| v["partition"] == 2 && v["path"] == p)
            .map(|v| v["restore_points"].clone())
            .unwrap()
    };
    assert_eq!(on_ext4("/hello.txt"), serde_json::json!([ids[0]]));
    assert_eq!(on_ext4("/new.txt"), serde_json::json!([ids[1]]));
    assert_eq!(
        on_ext4("/home/alice/docs/report.txt"),
        serde_json::json!([ids[0], ids[1]])
    );
    // The first find saved the find index; the next ones answer from it, exactly as a walk
    // of every catalog (--no-index) does, for name, path and no-match patterns, and a
    // corrupt index is rebuilt with the same answers.
    assert!(repo.join("cache/find-index").is_file());
    for pat in ["*.txt", "/home/**", "*", "nothing-matches*"] {
        let walked = ok(&["find", "--repo", s(&repo), pat, "--json", "--no-index"]);
        assert_eq!(
            ok(&["find", "--repo", s(&repo), pat, "--json"]),
            walked,
            "{pat}"
        );
        let text_walked = ok(&["find", "--repo", s(&repo), pat, "--no-index"]);
        assert_eq!(ok(&["find", "--repo", s(&repo), pat]), text_walked, "{pat}");
    }
    std::fs::write(repo.join("cache/find-index"), b"garbage").unwrap();
    let out = cairn(&["find", "--repo", s(&repo), "*.txt", "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("find index unreadable"));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ok(&["find", "--repo", s(&repo), "*.txt", "--json", "--no-index"])
    );
    assert_ne!(
        std::fs::read(repo.join("cache/find-index")).unwrap(),
        b"garbage"
    );

    // diff: exactly one file removed and one added (the root directory's own times change).
    let changes: Vec<serde_json::Value> =
        ok(&["diff", "--repo", s(&repo), &ids[0], &ids[1], "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &serde_json::Value| v["change"] != "changed" || v["path"] != "/")
            .collect();
    let summary: Vec<(String, String)> = changes
        .iter()
        .map(|v| {
            (
                v["change"].as_str().unwrap().into(),
                v["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("removed".into(), "/hello.txt".into()),
            ("added".into(), "/new.txt".into())
        ]
    );

    // ls --repo of the second restore point lists what TSK lists in the day-two volume.
    let fls = String::from_utf8(run(Command::new("fls").args(["-r", "-p", s(&part)]))).unwrap();
    let mut tsk: Vec<(String, String)> = fls
        .lines()
        .filter_map(|l| {
            let (kind, rest) = l.split_once(' ')?;
            let (inode, path) = rest.split_once(":\t")?;
            (!l.contains("(deleted)")
                && !inode.starts_with('*')
                && !path.starts_with("$Orphan")
                && !path.starts_with("lost+found/"))
            .then(|| (format!("/{path}"), format!("{kind} {inode}")))
        })
        .collect();
    tsk.sort();
    let mut listed: Vec<String> = ok(&[
        "ls",
        "--repo",
        s(&repo),
        &format!("{}:1:2", ids[1]),
        "-r",
        "--json",
    ])
    .lines()
    .map(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    listed.sort();
    assert_eq!(listed, tsk.iter().map(|t| t.0.clone()).collect::<Vec<_>>());

    // restore-file of the whole volume: every file equals icat's bytes.
    let out = d.join("out");
    ok(&[
        "restore-file",
        "--repo",
        s(&repo),
        &format!("{}:1:2", ids[1]),
        "/",
        "--to",
        s(&out),
    ]);
    for (path, kind_inode) in &tsk {
        let (kind, inode) = kind_inode.split_once(' ').unwrap();
        if kind != "r/r" {
            continue;
        }
        let want = run(Command::new("icat").args([s(&part), inode]));
        assert_eq!(
            std::fs::read(out.join(path.trim_start_matches('/'))).unwrap(),
            want,
            "{path}"
        );
    }
    // The restore point is recoverable through the file-system layer...
    let v = ok(&[
        "verify",
        "--repo",
        s(&repo),
        "--recoverable",
        &ids[1],
        "--json",
    ]);
    let vols: Vec<serde_json::Value> = v
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(vols.len(), 2);
    assert!(
        vols.iter()
            .all(|v| v["recoverable"] == true && v["files_read"].as_u64().unwrap() > 0),
        "{v}"
    );
    // ... and a damaged pack makes it not recoverable (non-zero exit), never a panic.
    for entry in walk(&repo.join("packs")) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&entry, bytes).unwrap();
    }
    let broken = cairn(&["verify", "--repo", s(&repo), "--recoverable", &ids[1]]);
    assert_ne!(broken.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&broken.stderr).contains("panicked"));

    // A path that does not exist is one clear error.
    let bad = cairn(&[
        "restore-file",
        "--repo",
        s(&repo),
        "latest:1:2",
        "/nope",
        "--to",
        s(&out),
    ]);
    assert_eq!(bad.status.code(), Some(1));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
