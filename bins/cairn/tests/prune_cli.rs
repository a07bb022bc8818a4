//! What `cairn prune` keeps besides restore points' data: the find index's blobs, so the
//! first `find` after a prune answers from the index instead of rebuilding it.
use std::path::Path;

mod common;
use common::s;

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, Some("test"))
}

/// Runs `cairn args...`, asserts success, returns (stdout, stderr).
fn ok_err(args: &[&str]) -> (String, String) {
    let out = common::cairn_output(args, Some("test"));
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn prune_json(repo: &Path) -> (serde_json::Value, String) {
    let (out, err) = ok_err(&["prune", "--repo", s(repo), "--grace-hours", "0", "--json"]);
    (serde_json::from_str(&out).unwrap(), err)
}

/// Two restore points of the sample VM (its ext4 and FAT partitions are catalogued).
fn repo_with_two_points(d: &Path) -> std::path::PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/demo-vm.vmdk");
    let repo = d.join("repo");
    ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
    for time in ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"] {
        ok(&[
            "backup",
            "--repo",
            s(&repo),
            s(&sample),
            "--name",
            "vm",
            "--time",
            time,
        ]);
    }
    repo
}

#[test]
fn prune_keeps_the_find_index() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_with_two_points(dir.path());
    let pointer = repo.join("cache/find-index");
    let find = |extra: &[&str]| {
        let mut args = vec!["find", "--repo", s(&repo), "*.txt", "--json"];
        args.extend_from_slice(extra);
        ok_err(&args)
    };
    let (first, _) = find(&[]);
    assert!(first.contains("/hello.txt"), "{first}");
    let saved = std::fs::read(&pointer).unwrap();

    // Nothing forgotten: prune frees nothing a restore point or the index needs, and the
    // next find neither rebuilds nor rewrites the index (before the fix, prune deleted the
    // index's pack and find warned "find index unreadable, rebuilding it").
    let (r, err) = prune_json(&repo);
    assert!(r["find_index_blobs_kept"].as_u64().unwrap() > 0, "{r}");
    assert!(!err.contains("warning"), "{err}");
    let (again, err) = find(&[]);
    assert!(!err.contains("find index unreadable"), "{err}");
    assert_eq!(again, first);
    assert_eq!(std::fs::read(&pointer).unwrap(), saved);

    // A forgotten restore point: prune frees its data, keeps the index; find drops the point
    // from the index (an update, no rebuild) and answers like a walk of the catalogs.
    ok(&["forget", "--repo", s(&repo), "--keep-last", "1"]);
    let (r, _) = prune_json(&repo);
    assert!(r["find_index_blobs_kept"].as_u64().unwrap() > 0, "{r}");
    let (updated, err) = find(&[]);
    assert!(!err.contains("find index unreadable"), "{err}");
    assert_eq!(updated, find(&["--no-index"]).0);
    assert_ne!(std::fs::read(&pointer).unwrap(), saved);
    let (v, _) = ok_err(&["verify", "--repo", s(&repo), "--read-data"]);
    assert!(!v.is_empty());

    // A pointer that cannot be read keeps nothing and does not stop prune.
    std::fs::write(&pointer, b"garbage").unwrap();
    let (r, err) = prune_json(&repo);
    assert_eq!(r["find_index_blobs_kept"], 0, "{r}");
    assert!(err.contains("cache/find-index unreadable"), "{err}");
    let (rebuilt, err) = find(&[]);
    assert!(err.contains("find index unreadable"), "{err}");
    assert_eq!(rebuilt, updated);
}

/// A pin left by a restore point that is gone (the pin/forget race; here its manifest is
/// deleted under it) is removed by prune, reported in text and JSON; the pin of an existing
/// restore point stays.
#[test]
fn prune_removes_pins_of_restore_points_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_with_two_points(dir.path());
    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    let ids: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for id in &ids {
        ok(&["pin", "--repo", s(&repo), id, "--reason", "hold"]);
    }
    std::fs::remove_file(repo.join("snapshots").join(ids[0])).unwrap();
    let pinned = || -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["pins", "--repo", s(&repo), "--json"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(pinned().len(), 2);

    let dry = ok(&["prune", "--repo", s(&repo), "--dry-run"]);
    assert!(
        dry.contains("1 pins of removed restore points deleted"),
        "{dry}"
    );
    assert_eq!(pinned().len(), 2);
    let (r, _) = prune_json(&repo);
    assert_eq!(r["pins_removed"], 1, "{r}");
    assert_eq!(pinned(), vec![ids[1].to_string()]);
    let (r, _) = prune_json(&repo);
    assert_eq!(r["pins_removed"], 0, "{r}");
    assert_eq!(pinned(), vec![ids[1].to_string()]);
}
