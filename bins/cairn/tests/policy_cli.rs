//! `cairn policy check`, `forget`, `run` end to end through the binary.
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::s;

fn cairn(args: &[&str]) -> Output {
    common::cairn_output(args, None)
}

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, None)
}

#[test]
fn policy_check_describes_the_example_and_rejects_errors_with_a_position() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy.toml");
    let out = ok(&["policy", "check", s(&example)]);
    for job in ["finance-db", "finance-web", "office", "lab"] {
        assert!(out.contains(&format!("job {job}:")), "{out}");
    }
    assert!(out.contains("hourly at :30"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[class.c]\nschedule = \"hourly\"\nkeep_dialy = 3\nrepository = \"/r\"\n",
    )
    .unwrap();
    let out = cairn(&["policy", "check", s(&bad)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3:"), "{err}");
}

fn init_repo(repo: &Path) {
    ok(&["init", "--repo", s(repo), "--encryption", "none"]);
}

fn make_image(path: &Path, seed: u8) {
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i / 4096).to_le_bytes()[0] ^ seed)
        .collect();
    std::fs::write(path, data).unwrap();
}

fn backup_at(repo: &Path, image: &Path, name: &str, time: &str) -> String {
    ok(&[
        "backup",
        "--repo",
        s(repo),
        "--name",
        name,
        "--time",
        time,
        s(image),
    ])
    .trim()
    .to_owned()
}

fn forget_json(repo: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["forget", "--repo", s(repo), "--json"];
    args.extend_from_slice(extra);
    ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn times(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| p["time"].as_str().unwrap().to_owned())
        .collect()
}

/// The worked examples of docs/policy.md, through `cairn backup --time` and `cairn forget`.
#[test]
fn forget_dry_run_json_gives_the_documented_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_repo(&repo);
    let img = dir.path().join("disk.img");
    make_image(&img, 1);

    // One point every Sunday 11:00 from 2019-09-01 to 2019-11-17, keep_daily = 4.
    let sundays = [
        "2019-09-01",
        "2019-09-08",
        "2019-09-15",
        "2019-09-22",
        "2019-09-29",
        "2019-10-06",
        "2019-10-13",
        "2019-10-20",
        "2019-10-27",
        "2019-11-03",
        "2019-11-10",
        "2019-11-17",
    ];
    for d in sundays {
        backup_at(&repo, &img, "weekly-vm", &format!("{d}T11:00:00Z"));
    }
    // keep_last 1, daily 2, monthly 2, yearly 2 over seven points of another VM.
    let table = [
        "2023-06-15T12:00:00Z",
        "2023-12-20T12:00:00Z",
        "2024-01-01T08:00:00Z",
        "2024-01-01T09:00:00Z",
        "2024-01-02T12:00:00Z",
        "2024-01-03T09:00:00Z",
        "2024-01-03T10:00:00Z",
    ];
    let mut ids = std::collections::BTreeMap::new();
    for t in table {
        ids.insert(t, backup_at(&repo, &img, "mixed-vm", t));
    }

    let groups = forget_json(&repo, &["--dry-run", "--keep-daily", "4"]);
    assert_eq!(groups.len(), 2);
    let weekly = groups.iter().find(|g| g["vm"] == "weekly-vm").unwrap();
    assert_eq!(
        times(&weekly["keep"]),
        [
            "2019-11-17T11:00:00Z",
            "2019-11-10T11:00:00Z",
            "2019-11-03T11:00:00Z",
            "2019-10-27T11:00:00Z"
        ]
    );
    assert_eq!(weekly["remove"].as_array().unwrap().len(), 8);
    assert!(weekly["keep"][0]["reasons"]
        .as_array()
        .unwrap()
        .contains(&"daily snapshot".into()));

    let rules = [
        "--dry-run",
        "--keep-last",
        "1",
        "--keep-daily",
        "2",
        "--keep-monthly",
        "2",
        "--keep-yearly",
        "2",
    ];
    let groups = forget_json(&repo, &rules);
    let mixed = groups.iter().find(|g| g["vm"] == "mixed-vm").unwrap();
    assert_eq!(
        times(&mixed["keep"]),
        [
            "2024-01-03T10:00:00Z",
            "2024-01-02T12:00:00Z",
            "2023-12-20T12:00:00Z"
        ]
    );
    assert_eq!(
        mixed["keep"][0]["reasons"],
        serde_json::json!([
            "last snapshot",
            "daily snapshot",
            "monthly snapshot",
            "yearly snapshot"
        ])
    );
    assert_eq!(mixed["keep"][0]["id"], ids["2024-01-03T10:00:00Z"].as_str());
    assert_eq!(
        times(&mixed["remove"]),
        [
            "2024-01-03T09:00:00Z",
            "2024-01-01T09:00:00Z",
            "2024-01-01T08:00:00Z",
            "2023-06-15T12:00:00Z"
        ]
    );

    // A dry run removed nothing; the real run removes exactly the listed points.
    let listed = |repo: &Path| -> usize {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["snapshots", "--repo", s(repo), "--json"])).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(listed(&repo), 19);
    ok(&["forget", "--repo", s(&repo), "--keep-daily", "4"]);
    // weekly-vm keeps 4; mixed-vm (daily 4) keeps 01-03 10:00, 01-02, 01-01 09:00,
    // 2023-12-20.
    assert_eq!(listed(&repo), 8);

    // No rule at all is refused, as restic does.
    let out = cairn(&["forget", "--repo", s(&repo), "--dry-run"]);
    assert!(!out.status.success());
}

#[test]
fn run_now_backs_up_every_vm_once_and_fails_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = root.join("repo");
    init_repo(&repo);
    for vm in ["web01", "web02"] {
        std::fs::create_dir_all(root.join("vms").join(vm)).unwrap();
        make_image(&root.join("vms").join(vm).join("disk.img"), 3);
    }
    let policy = root.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[class.c]\nschedule = \"daily 02:00\"\nkeep_last = 3\nrepository = '{}'\n\n\
             [job.web]\nclass = \"c\"\nvms = ['{}/vms/web*']\n",
            s(&repo),
            s(root)
        ),
    )
    .unwrap();
    let out = ok(&["run", "--policy", s(&policy), "--now"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.contains("succeeded")), "{out}");
    // Default state file next to the policy.
    let state = std::fs::read_to_string(root.join(".cairn-state.json")).unwrap();
    assert!(
        state.contains("web01") && state.contains("succeeded"),
        "{state}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    let mut names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["web01", "web02"]);
    assert_eq!(v[0]["tags"], serde_json::json!(["web", "c"]));

    // Not due again right away (daily), so a plain run does nothing.
    ok(&["run", "--policy", s(&policy)]);
    // An unknown job, and a job whose repository is missing, fail.
    assert!(!cairn(&["run", "--policy", s(&policy), "--job", "nope"])
        .status
        .success());
    let broken = root.join("broken.toml");
    std::fs::write(
        &broken,
        format!(
            "[class.c]\nschedule = \"hourly\"\nkeep_last = 1\nrepository = '{}/missing'\n\n\
             [job.x]\nclass = \"c\"\nvms = ['{}/vms/web01']\n",
            s(root),
            s(root)
        ),
    )
    .unwrap();
    let state2 = root.join("state2.json");
    let out = cairn(&[
        "run",
        "--policy",
        s(&broken),
        "--now",
        "--state",
        s(&state2),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    assert!(state2.exists());
}

#[test]
fn forget_then_prune_frees_the_space_of_removed_restore_points() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_repo(&repo);
    let (old, new) = (dir.path().join("old.img"), dir.path().join("new.img"));
    make_image(&old, 1);
    make_image(&new, 0x80);
    backup_at(&repo, &old, "vm", "2024-01-01T00:00:00Z");
    let kept = backup_at(&repo, &new, "vm", "2024-01-02T00:00:00Z");
    ok(&["forget", "--repo", s(&repo), "--keep-last", "1"]);

    let prune = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["prune", "--repo", s(&repo), "--json", "--grace-hours", "0"];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let dry = prune(&["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    // Marking and deleting may take two passes (the grace protocol); stop once freed.
    let mut freed = 0;
    for _ in 0..3 {
        freed += prune(&[])["bytes_freed"].as_u64().unwrap();
        if freed > 0 {
            break;
        }
    }
    assert!(freed > 0, "prune freed nothing");
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "verify",
        "--repo",
        s(&repo),
        "--read-data",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    assert_eq!(v[0]["id"], kept.as_str());
}

/// The daemon runs due jobs, logs each run with a timestamp, survives a failing job, and
/// keeps running until killed.
#[test]
fn daemon_runs_due_jobs_and_survives_a_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = root.join("repo");
    init_repo(&repo);
    std::fs::create_dir_all(root.join("vms/db01")).unwrap();
    make_image(&root.join("vms/db01/disk.img"), 5);
    let policy = root.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[class.c]\nschedule = \"daily 03:00\"\nkeep_last = 3\nrepository = '{repo}'\n\n\
             [job.a-broken]\nclass = \"c\"\nvms = ['{root}/vms/db01']\nrepository = '{root}/missing'\n\n\
             [job.b-good]\nclass = \"c\"\nvms = ['{root}/vms/db01']\n",
            repo = s(&repo),
            root = s(root)
        ),
    )
    .unwrap();
    let state = root.join("state.json");
    let log = root.join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["daemon", "--policy", s(&policy), "--state", s(&state)])
        .env_remove("XDG_STATE_HOME")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The VM runs one job at a time: the broken job first, the good one on the next pass
    // (a second later). Poll for the good job's run, bounded.
    let mut done = false;
    for _ in 0..600 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("job b-good") {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(still_running, "{text}");
    assert!(done, "{text}");
    assert!(
        text.contains("job a-broken") && text.contains("FAILED"),
        "{text}"
    );
    let good = text.lines().find(|l| l.contains("job b-good")).unwrap();
    assert!(
        good.contains("succeeded") && good.starts_with("20"),
        "{good}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

/// `forget --policy`: each job's rules apply to the restore points tagged with its name;
/// other restore points are left alone.
#[test]
fn forget_with_a_policy_applies_each_jobs_rules_to_its_own_points() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = root.join("repo");
    init_repo(&repo);
    let img = root.join("vm.img");
    make_image(&img, 6);
    for t in [
        "2024-01-01T00:00:00Z",
        "2024-01-02T00:00:00Z",
        "2024-01-03T00:00:00Z",
    ] {
        ok(&[
            "backup",
            "--repo",
            s(&repo),
            "--name",
            "vm",
            "--tag",
            "nightly",
            "--time",
            t,
            s(&img),
        ]);
    }
    backup_at(&repo, &img, "vm", "2023-12-01T00:00:00Z");
    let policy = root.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[class.c]\nschedule = \"daily 01:00\"\nkeep_last = 1\nrepository = '{}'\n\n\
             [job.nightly]\nclass = \"c\"\nvms = ['{}']\n",
            s(&repo),
            s(&img)
        ),
    )
    .unwrap();
    let groups = forget_json(&repo, &["--policy", s(&policy), "--dry-run"]);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["job"], "nightly");
    assert_eq!(times(&groups[0]["keep"]), ["2024-01-03T00:00:00Z"]);
    assert_eq!(
        times(&groups[0]["remove"]),
        ["2024-01-02T00:00:00Z", "2024-01-01T00:00:00Z"]
    );
    // Rules on the command line and --policy do not mix.
    assert!(!cairn(&[
        "forget",
        "--repo",
        s(&repo),
        "--policy",
        s(&policy),
        "--keep-last",
        "2"
    ])
    .status
    .success());
}

/// Pins: `pin` with a reason, `pins --json`, `forget` keeps the pinned point with reason
/// "pinned" (text and JSON), prune keeps its data, `unpin` lets retention remove it.
#[test]
fn pinned_restore_points_survive_forget_and_prune_until_unpinned() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_repo(&repo);
    let imgs: Vec<_> = (0..3u8)
        .map(|i| {
            let p = dir.path().join(format!("d{i}.img"));
            make_image(&p, 0x10 * (i + 1));
            p
        })
        .collect();
    let first = backup_at(&repo, &imgs[0], "vm", "2024-01-01T00:00:00Z");
    backup_at(&repo, &imgs[1], "vm", "2024-01-02T00:00:00Z");
    let last = backup_at(&repo, &imgs[2], "vm", "2024-01-03T00:00:00Z");

    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "pin",
        "--repo",
        s(&repo),
        &first[..10],
        "--reason",
        "audit 2024",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["id"], first.as_str());
    assert_eq!(v["pinned"], true);
    let pins: serde_json::Value =
        serde_json::from_str(&ok(&["pins", "--repo", s(&repo), "--json"])).unwrap();
    assert_eq!(pins.as_array().unwrap().len(), 1);
    assert_eq!(pins[0]["id"], first.as_str());
    assert_eq!(pins[0]["reason"], "audit 2024");
    assert_eq!(pins[0]["vm"], "vm");
    assert_eq!(pins[0]["restore_point_time"], "2024-01-01T00:00:00Z");
    let text = ok(&["pins", "--repo", s(&repo)]);
    assert!(text.contains("audit 2024"), "{text}");
    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    let pinned: Vec<bool> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pinned"].as_bool().unwrap())
        .collect();
    assert_eq!(pinned, [true, false, false], "{snaps}");

    // forget --keep-last 1: the pinned oldest stays, with its reason.
    let groups = forget_json(&repo, &["--keep-last", "1", "--dry-run"]);
    assert_eq!(
        times(&groups[0]["keep"]),
        ["2024-01-03T00:00:00Z", "2024-01-01T00:00:00Z"]
    );
    assert_eq!(
        groups[0]["keep"][1]["reasons"],
        serde_json::json!(["pinned"])
    );
    assert_eq!(times(&groups[0]["remove"]), ["2024-01-02T00:00:00Z"]);
    let text = ok(&["forget", "--repo", s(&repo), "--keep-last", "1"]);
    assert!(
        text.lines()
            .any(|l| l.contains("keep") && l.contains("pinned")),
        "{text}"
    );
    for _ in 0..2 {
        ok(&["prune", "--repo", s(&repo), "--grace-hours", "0"]);
    }
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "verify",
        "--repo",
        s(&repo),
        "--read-data",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let out = dir.path().join("first.raw");
    ok(&["restore", "--repo", s(&repo), &first, "--to", s(&out)]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&imgs[0]).unwrap());

    // Unpinned, it goes like any other; unpinning twice is an error.
    ok(&["unpin", "--repo", s(&repo), &first]);
    assert!(!cairn(&["unpin", "--repo", s(&repo), &first])
        .status
        .success());
    ok(&["forget", "--repo", s(&repo), "--keep-last", "1"]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [last.as_str()]);
    // A pin of something that is not a restore point is refused.
    assert!(!cairn(&["pin", "--repo", s(&repo), &first]).status.success());
}

/// Two `cairn run` processes on one VM: the second finds the VM lock taken and reports
/// "skipped: already running (pid N)" with the first one's pid; after the holder is killed
/// (SIGKILL), its lock dies with it and the next run takes the VM over.
#[test]
fn concurrent_runs_never_back_up_the_same_vm_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = root.join("repo");
    init_repo(&repo);
    std::fs::create_dir_all(root.join("vms/db01")).unwrap();
    make_image(&root.join("vms/db01/disk.img"), 9);
    let started = root.join("started");
    let release = root.join("release");
    let policy = root.join("policy.toml");
    // The pre hook signals it runs, then waits for the test to release it.
    std::fs::write(
        &policy,
        format!(
            "[class.c]\nschedule = \"hourly\"\nkeep_last = 10\nrepository = '{repo}'\n\n\
             [job.db]\nclass = \"c\"\nvms = ['{root}/vms/db01']\n\
             pre_hook = [\"sh\", \"-c\", \"touch '{started}'; while [ ! -e '{release}' ]; do sleep 0.05; done\"]\n",
            repo = s(&repo),
            root = s(root),
            started = s(&started),
            release = s(&release),
        ),
    )
    .unwrap();
    let spawn_run = || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["run", "--policy", s(&policy), "--now"])
            .env_remove("XDG_STATE_HOME")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_started = || {
        for _ in 0..1200 {
            if started.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the first run never reached its pre hook");
    };

    // 1. A holds the VM; B is skipped and names A's pid; A then finishes normally.
    let a = spawn_run();
    wait_started();
    let b = ok(&["run", "--policy", s(&policy), "--now"]);
    assert!(
        b.contains(&format!("job db skipped: already running (pid {})", a.id())),
        "{b}"
    );
    std::fs::write(&release, b"").unwrap();
    let out = a.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("succeeded"));
    let count = || {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&["snapshots", "--repo", s(&repo), "--json"])).unwrap();
        v.as_array().unwrap().len()
    };
    assert_eq!(count(), 1);
    let state = std::fs::read_to_string(root.join(".cairn-state.json")).unwrap();
    assert!(state.contains("succeeded"), "{state}");

    // 2. A is SIGKILLed while it holds the lock: the next run takes the VM over.
    std::fs::remove_file(&started).unwrap();
    std::fs::remove_file(&release).unwrap();
    let mut a = spawn_run();
    wait_started();
    a.kill().unwrap();
    a.wait().unwrap();
    // Let the orphaned hook of the killed run end, and the next one pass straight through.
    std::fs::write(&release, b"").unwrap();
    let c = ok(&["run", "--policy", s(&policy), "--now"]);
    assert!(
        c.contains("succeeded") && !c.contains("skipped: already"),
        "{c}"
    );
    assert_eq!(count(), 2);
}
