//! The policy runner over generated VM folders, driven by a fake clock.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cairn_engine::policy::{Clock, FakeClock, Policy, RunOutcome, RunState};
use cairn_engine::{run_due, snapshots, RunOptions};
use cairn_repo::{InitOptions, LocalBackend, Repository};

/// 2024-01-01T00:00:00Z.
const JAN_1: i64 = 1_704_067_200;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn make_vm(dir: &Path, seed: u8) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let image: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i / 512).to_le_bytes()[0] ^ seed)
        .collect();
    std::fs::write(dir.join("disk.img"), image).unwrap();
    // Not a disk image: the runner must leave it alone.
    std::fs::write(dir.join("vm.nvram"), b"nvram").unwrap();
    dir.to_path_buf()
}

fn make_repo(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    Repository::init(
        Arc::new(LocalBackend::new(path).unwrap()),
        &InitOptions::default(),
        None,
    )
    .unwrap();
    path.to_path_buf()
}

fn open(path: &Path) -> Repository {
    cairn_engine::open_repository(path, None).unwrap()
}

fn times_of(repo: &Path, vm: &str) -> Vec<i64> {
    let mut t: Vec<i64> = snapshots(&open(repo))
        .unwrap()
        .into_iter()
        .filter(|s| s.vm_name == vm)
        .map(|s| s.time)
        .collect();
    t.sort_unstable();
    t
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn simulated_month_keeps_exactly_the_expected_restore_points() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    make_vm(&root.join("vms/finance/db01"), 1);
    make_vm(&root.join("vms/desktops/pc01"), 2);
    let fin_repo = make_repo(&root.join("repo-finance"));
    let desk_repo = make_repo(&root.join("repo-desktops"));
    let text = format!(
        r#"
        [class.finance]
        schedule = "hourly"
        keep_daily = 30
        keep_monthly = 12
        threads = 1
        repository = '{fin}'

        [class.desktops]
        schedule = "daily 02:00"
        keep_daily = 7
        exclude = ["*.mp3"]
        window = "22:00-06:00"
        read_mb_per_s = 10000
        io_concurrency = 1
        repository = '{desk}'

        [job.finance-db]
        class = "finance"
        vms = ['{root}/vms/finance/*']

        [job.office]
        class = "desktops"
        vms = ['{root}/vms/desktops/pc01']
        "#,
        fin = p(&fin_repo),
        desk = p(&desk_repo),
        root = p(root),
    );
    let policy_path = root.join("policy.toml");
    std::fs::write(&policy_path, text).unwrap();
    let policy = Policy::load(&policy_path).unwrap();

    let clock = FakeClock::new(JAN_1);
    let state_path = root.join("state.json");
    let mut runs = 0usize;
    let mut office_runs = Vec::new();
    for hour in 0..30 * 24 {
        clock.set(JAN_1 + hour * HOUR);
        // Like the daemon: state loaded and saved around every pass.
        let mut state = match std::fs::read_to_string(&state_path) {
            Ok(t) => RunState::from_json(&t).unwrap(),
            Err(_) => RunState::new(),
        };
        let reports = run_due(&policy, &mut state, &clock, &RunOptions::default());
        std::fs::write(&state_path, state.to_json()).unwrap();
        for r in &reports {
            assert_eq!(r.outcome, RunOutcome::Succeeded, "{}", r.summary());
            assert!(r.restore_point.is_some());
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
            if r.job == "office" {
                office_runs.push(r.started);
            }
        }
        runs += reports.len();
    }
    // Finance every hour; office on its first pass (never ran) and daily at 02:00.
    let mut expected_office = vec![JAN_1];
    expected_office.extend((0..30).map(|d| JAN_1 + d * DAY + 2 * HOUR));
    assert_eq!(office_runs, expected_office);
    assert_eq!(runs, 30 * 24 + expected_office.len());

    // finance: keep_daily 30 keeps the newest of each of the 30 days (23:00); keep_monthly
    // still has count left at the oldest point, so the very first one stays too.
    let mut expected_fin = vec![JAN_1];
    expected_fin.extend((0..30).map(|d| JAN_1 + d * DAY + 23 * HOUR));
    assert_eq!(times_of(&fin_repo, "db01"), expected_fin);

    // desktops: the 7 newest days at 02:00 (Jan 24..30); the first pass's point went once
    // 7 days had points.
    let expected_desk: Vec<i64> = (23..30).map(|d| JAN_1 + d * DAY + 2 * HOUR).collect();
    assert_eq!(times_of(&desk_repo, "pc01"), expected_desk);

    // Tags: job and class.
    let s = snapshots(&open(&fin_repo)).unwrap();
    assert!(s.iter().all(|s| s.tags == ["finance-db", "finance"]));
}

/// A clock that moves forward by `step` on every reading (a run "takes" time).
struct SteppingClock {
    now: AtomicI64,
    step: i64,
}

impl Clock for SteppingClock {
    fn now(&self) -> i64 {
        self.now.fetch_add(self.step, Ordering::SeqCst)
    }
}

#[test]
fn failing_pre_hook_fails_only_its_run_and_post_hook_sees_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let vm_a = make_vm(&root.join("vms/a"), 3);
    let vm_b = make_vm(&root.join("vms/b"), 4);
    let repo = make_repo(&root.join("repo"));
    let log = root.join("hook.log");
    let text = format!(
        r#"
        [class.c]
        schedule = "hourly"
        keep_last = 2
        repository = '{repo}'

        [job.broken]
        class = "c"
        vms = ['{a}']
        pre_hook = ["false"]

        [job.good]
        class = "c"
        vms = ['{b}']
        post_hook = ["sh", "-c", "echo \"$CAIRN_JOB $CAIRN_VM\" >> '{log}'"]
        "#,
        repo = p(&repo),
        a = p(&vm_a),
        b = p(&vm_b),
        log = p(&log),
    );
    let policy = Policy::parse(&text).unwrap();
    let clock = FakeClock::new(JAN_1);
    let mut state = RunState::new();
    let reports = run_due(&policy, &mut state, &clock, &RunOptions::default());
    assert_eq!(reports.len(), 2);
    assert!(reports[0].failed(), "{}", reports[0].summary());
    assert!(reports[0].summary().contains("pre_hook"));
    assert!(reports[0].restore_point.is_none());
    assert_eq!(reports[1].outcome, RunOutcome::Succeeded);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("good {}\n", p(&vm_b))
    );
    assert!(matches!(
        state.record("broken", &p(&vm_a)).unwrap().outcome,
        RunOutcome::Failed { .. }
    ));
    assert_eq!(times_of(&repo, "a"), Vec::<i64>::new());
    assert_eq!(times_of(&repo, "b"), vec![JAN_1]);

    // Not due again within the hour; --now runs both anyway; keep_last = 2 holds.
    assert!(run_due(&policy, &mut state, &clock, &RunOptions::default()).is_empty());
    for i in 1..4 {
        clock.set(JAN_1 + i * 60);
        let opts = RunOptions {
            now_all: true,
            job: Some("good".into()),
            ..Default::default()
        };
        let r = run_due(&policy, &mut state, &clock, &opts);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].job, "good");
    }
    assert_eq!(times_of(&repo, "b"), vec![JAN_1 + 120, JAN_1 + 180]);
}

#[test]
fn run_past_the_window_is_reported_as_overran() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let vm = make_vm(&root.join("vms/late"), 5);
    let repo = make_repo(&root.join("repo"));
    let text = format!(
        r#"
        [class.c]
        schedule = "daily 00:00"
        window = "00:00-01:00"
        keep_last = 5
        repository = '{repo}'

        [job.late]
        class = "c"
        vms = ['{vm}']
        "#,
        repo = p(&repo),
        vm = p(&vm),
    );
    let policy = Policy::parse(&text).unwrap();
    // Readings: 00:00 (due check), 00:40 (start), 01:20 (end).
    let clock = SteppingClock {
        now: AtomicI64::new(JAN_1),
        step: 40 * 60,
    };
    let mut state = RunState::new();
    let reports = run_due(&policy, &mut state, &clock, &RunOptions::default());
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].outcome,
        RunOutcome::Overran {
            window_closed: JAN_1 + HOUR
        }
    );
    assert!(reports[0].restore_point.is_some());
}

#[test]
fn missing_vm_and_missing_repository_fail_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = make_repo(&root.join("repo"));
    let text = format!(
        r#"
        [class.c]
        schedule = "hourly"
        keep_last = 1
        repository = '{repo}'

        [job.gone]
        class = "c"
        vms = ['{root}/vms/nothing-here']

        [job.norepo]
        class = "c"
        vms = ['{root}/vms/x']
        repository = '{root}/no-such-repo'
        "#,
        repo = p(&repo),
        root = p(root),
    );
    make_vm(&root.join("vms/x"), 6);
    let policy = Policy::parse(&text).unwrap();
    let clock = FakeClock::new(JAN_1);
    let mut state = RunState::new();
    let reports = run_due(&policy, &mut state, &clock, &RunOptions::default());
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| r.failed()));
    assert!(
        reports[0].summary().contains("does not exist"),
        "{}",
        reports[0].summary()
    );
    assert!(
        reports[1].summary().contains("no-such-repo"),
        "{}",
        reports[1].summary()
    );
}

#[test]
fn throttled_backup_restores_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let vm = make_vm(&dir.path().join("vm"), 7);
    let repo = Arc::new(open(&make_repo(&dir.path().join("repo"))));
    let (mut src, _) = cairn_engine::open_disk_source(
        &vm.join("disk.img"),
        &cairn_engine::SourceOptions::default(),
    )
    .unwrap();
    cairn_engine::throttle_source(&mut src, 1000);
    let r = cairn_engine::backup(&repo, "vm", &[src], &Default::default()).unwrap();
    let out = dir.path().join("out.raw");
    cairn_engine::restore_raw(&repo, &r.restore_point, 0, &out, &Default::default()).unwrap();
    assert_eq!(
        std::fs::read(out).unwrap(),
        std::fs::read(vm.join("disk.img")).unwrap()
    );
}

fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
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

fn sh(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The desktops class's `exclude = ["*.mp3"]`: the song's blocks are not read, so the
/// restored image has zeros there, while the other file's data is intact. The FAT image is
/// made by mkfs.fat and mcopy.
#[test]
fn class_exclusions_leave_the_excluded_files_data_unread() {
    if !have("mkfs.fat") || !have("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let vm = root.join("vms/pc02");
    std::fs::create_dir_all(&vm).unwrap();
    let img = vm.join("disk.img");
    sh("mkfs.fat", &["-C", p(&img).as_str(), "8192"]);
    let song: Vec<u8> = (0..256u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0] | 1)
        .collect();
    let notes: Vec<u8> = b"quarterly numbers\n".repeat(120_000);
    std::fs::write(root.join("song.mp3"), &song).unwrap();
    std::fs::write(root.join("notes.txt"), &notes).unwrap();
    // notes first: the song lands beyond the first MiB, which is always read (boot code).
    for f in ["notes.txt", "song.mp3"] {
        sh(
            "mcopy",
            &[
                "-i",
                p(&img).as_str(),
                p(&root.join(f)).as_str(),
                &format!("::/{f}"),
            ],
        );
    }
    let repo = make_repo(&root.join("repo"));
    let text = format!(
        r#"
        [class.desktops]
        schedule = "daily 02:00"
        keep_daily = 7
        exclude = ["*.mp3"]
        repository = '{repo}'

        [job.office]
        class = "desktops"
        vms = ['{vm}']
        "#,
        repo = p(&repo),
        vm = p(&vm),
    );
    let policy = Policy::parse(&text).unwrap();
    let clock = FakeClock::new(JAN_1);
    let reports = run_due(
        &policy,
        &mut RunState::new(),
        &clock,
        &RunOptions::default(),
    );
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].outcome,
        RunOutcome::Succeeded,
        "{}",
        reports[0].summary()
    );
    assert!(reports[0].bytes_skipped >= song.len() as u64);
    let rp = reports[0].restore_point.unwrap();
    let out = root.join("restored.raw");
    let repo = open(&repo);
    cairn_engine::restore_raw(&repo, &rp, 0, &out, &Default::default()).unwrap();
    let restored = std::fs::read(out).unwrap();
    let original = std::fs::read(&img).unwrap();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let at = find(&original, &song[..4096]).expect("song in the image");
    assert!(at >= 1 << 20, "the first MiB of a volume is always read");
    assert!(restored[at..at + song.len()].iter().all(|&b| b == 0));
    assert!(find(&restored, &notes[..4096]).is_some());
}

/// Encrypted repositories: a job's `password_file`, a `key_file` (key ring outside the
/// repository) with the runner's passphrase, and a wrong password failing only its job.
#[test]
fn jobs_open_encrypted_repositories_with_their_key_reference() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let vm = make_vm(&root.join("vms/enc"), 8);
    let init = |path: &Path, keys_in_repository: bool| -> Repository {
        std::fs::create_dir_all(path).unwrap();
        let opts = InitOptions {
            encryption: cairn_repo::Encryption::Aes256Gcm,
            keys_in_repository,
            kdf: Some(cairn_repo::KdfParams::insecure_for_tests()),
            ..Default::default()
        };
        Repository::init(
            Arc::new(LocalBackend::new(path).unwrap()),
            &opts,
            Some(&cairn_repo::SlotSecret::Passphrase("s3cret".into())),
        )
        .unwrap()
    };
    let with_pass = root.join("repo-pass");
    init(&with_pass, true);
    let with_key = root.join("repo-key");
    let ring_file = root.join("ring.key");
    init(&with_key, false)
        .key_ring()
        .unwrap()
        .save(&ring_file)
        .unwrap();
    std::fs::write(root.join("good.pass"), "s3cret\n").unwrap();
    std::fs::write(root.join("bad.pass"), "guess\n").unwrap();
    let text = format!(
        r#"
        [class.c]
        schedule = "hourly"
        keep_last = 3
        repository = '{with_pass}'

        [job.a-password]
        class = "c"
        vms = ['{vm}']
        password_file = '{root}/good.pass'

        [job.b-keyring]
        class = "c"
        vms = ['{vm}']
        repository = '{with_key}'
        key_file = '{ring}'

        [job.c-wrong]
        class = "c"
        vms = ['{vm}']
        password_file = '{root}/bad.pass'
        "#,
        with_pass = p(&with_pass),
        with_key = p(&with_key),
        ring = p(&ring_file),
        vm = p(&vm),
        root = p(root),
    );
    let policy = Policy::parse(&text).unwrap();
    let clock = FakeClock::new(JAN_1);
    let mut state = RunState::new();
    let opts = RunOptions {
        now_all: true,
        passphrase: Some("s3cret".into()),
        ..Default::default()
    };
    let reports = run_due(&policy, &mut state, &clock, &opts);
    let outcome = |job: &str| {
        reports
            .iter()
            .find(|r| r.job == job)
            .map(|r| (r.failed(), r.summary()))
            .unwrap()
    };
    assert!(!outcome("a-password").0, "{}", outcome("a-password").1);
    assert!(!outcome("b-keyring").0, "{}", outcome("b-keyring").1);
    let (failed, summary) = outcome("c-wrong");
    assert!(failed && summary.contains("repo-pass"), "{summary}");
    let open_pass = cairn_engine::open_repository(
        &with_pass,
        Some(&cairn_engine::policy::KeyRef::PasswordFile(
            root.join("good.pass"),
        )),
    )
    .unwrap();
    assert_eq!(snapshots(&open_pass).unwrap().len(), 1);
}

#[test]
fn jobs_sharing_a_vm_run_one_after_the_other_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let vm = make_vm(&root.join("vms/shared"), 9);
    let repo = make_repo(&root.join("repo"));
    let text = format!(
        r#"
        [class.c]
        schedule = "daily 01:00"
        keep_last = 5
        repository = '{repo}'

        [job.second]
        class = "c"
        vms = ['{vm}']

        [job.first]
        class = "c"
        vms = ['{vm}']
        "#,
        repo = p(&repo),
        vm = p(&vm),
    );
    let policy = Policy::parse(&text).unwrap();
    let clock = FakeClock::new(JAN_1);
    let mut state = RunState::new();
    let mut seen = Vec::new();
    let reports = cairn_engine::run_due_each(
        &policy,
        &mut state,
        &clock,
        &RunOptions::default(),
        &mut |r, st| {
            // The state handed over already holds this run's outcome.
            assert_eq!(st.record(&r.job, &p(&vm)).unwrap().outcome, r.outcome);
            seen.push(r.job.clone());
        },
    );
    assert_eq!(seen, ["first", "second"]);
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| !r.failed()));
    // Both are done for today.
    clock.advance(HOUR / 2);
    assert!(run_due(&policy, &mut state, &clock, &RunOptions::default()).is_empty());
    clock.set(JAN_1 + HOUR);
    assert_eq!(
        run_due(&policy, &mut state, &clock, &RunOptions::default()).len(),
        2
    );
}
