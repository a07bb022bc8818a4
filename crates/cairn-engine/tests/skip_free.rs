//! Data-aware backup: blocks a guest file system marks free are not read; every file still
//! reads the same from the restored disk (checked with The Sleuth Kit), and free space
//! restores as zeros.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_engine::{
    backup, open_disk_source, restore_raw, BackupOptions, RestoreOptions, SourceOptions,
};
use cairn_repo::{InitOptions, LocalBackend, Repository};

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("skipped: {tool} not found");
    }
    found
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn icat_all(img: &Path) -> Vec<(String, Vec<u8>)> {
    let fls = String::from_utf8(run(Command::new("fls").args(["-r", "-p"]).arg(img))).unwrap();
    let mut out = Vec::new();
    for line in fls.lines() {
        let Some((kind, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((inode, path)) = rest.split_once(":\t") else {
            continue;
        };
        if kind != "r/r" || line.contains("(deleted)") || inode.starts_with('*') {
            continue;
        }
        out.push((
            path.to_string(),
            run(Command::new("icat").arg(img).arg(inode)),
        ));
    }
    out.sort();
    out
}

#[test]
fn free_blocks_holding_old_data_are_skipped() {
    if !have("mke2fs") || !have("debugfs") || !have("fls") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("keep")).unwrap();
    let mut x = 7u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    };
    std::fs::write(tree.join("keep/a.bin"), noise(3 << 20)).unwrap();
    std::fs::write(tree.join("keep/b.txt"), b"hello\n".repeat(1000)).unwrap();
    std::fs::write(tree.join("old.bin"), noise(12 << 20)).unwrap();
    let img = dir.path().join("vol.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run(Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img));
    // Delete the big file: its 12 MiB of data stay on disk, in free blocks.
    run(Command::new("debugfs")
        .args(["-w", "-R", "rm /old.bin"])
        .arg(&img));
    let before = icat_all(&img);
    assert_eq!(before.len(), 2);

    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let repo = Repository::init(
        Arc::new(LocalBackend::new(&repo_dir).unwrap()),
        &InitOptions::default(),
        None,
    )
    .unwrap();

    let mut reads = Vec::new();
    for skip in [false, true] {
        let opts = SourceOptions {
            skip_free: skip,
            ..SourceOptions::default()
        };
        let (src, report) = open_disk_source(&img, &opts).unwrap();
        assert_eq!(report.volumes.len(), if skip { 1 } else { 0 });
        let r = backup(
            &repo,
            "vm",
            &[src],
            &BackupOptions {
                no_incremental: true,
                ..Default::default()
            },
        )
        .unwrap();
        reads.push((r.bytes_read, report.bytes_skipped, r.restore_point));
    }
    let (read_all, _, _) = reads[0];
    let (read_used, skipped, rp) = reads[1];
    assert!(skipped >= 12 << 20, "skipped {skipped}");
    assert!(
        read_used + (12 << 20) <= read_all,
        "read {read_used} with skipping, {read_all} without"
    );

    let out = dir.path().join("restored.img");
    restore_raw(&repo, &rp, 0, &out, &RestoreOptions::default()).unwrap();
    assert_eq!(
        icat_all(&out),
        before,
        "every file reads the same from the restored volume"
    );
    // The deleted file's old data is gone: free space restored as zeros.
    let restored = std::fs::read(&out).unwrap();
    let original = std::fs::read(&img).unwrap();
    let differing = restored
        .iter()
        .zip(&original)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing > 10 << 20,
        "free blocks should differ: {differing}"
    );
}
