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

/// A libvirt VM bundle: `<name>.xml` (domain XML naming one raw disk) and `disk.img`, a FAT
/// file system made by mkfs.fat with `files` (guest path, content) copied in by mcopy.
fn make_fat_vm(dir: &Path, uuid: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let img = dir.join("disk.img");
    sh("mkfs.fat", &["-C", p(&img).as_str(), "8192"]);
    for (guest, data) in files {
        add_file(&img, guest, data);
    }
    let name = dir.file_name().unwrap().to_str().unwrap();
    std::fs::write(
        dir.join(format!("{name}.xml")),
        format!(
            "<domain type='kvm'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <devices>\n    \
             <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      \
             <source file='{img}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n  \
             </devices>\n</domain>\n",
            img = p(&img)
        ),
    )
    .unwrap();
    img
}

/// The guest writes a file (mmd for its folder, then mcopy).
fn add_file(img: &Path, guest: &str, data: &[u8]) {
    let tmp = img.with_extension(format!("{}.tmp", guest.replace('/', "_")));
    std::fs::write(&tmp, data).unwrap();
    if let Some((parent, _)) = guest.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
        let _ = std::process::Command::new("mmd")
            .args(["-i", p(img).as_str(), &format!("::{parent}")])
            .output();
    }
    sh(
        "mcopy",
        &[
            "-o",
            "-i",
            p(img).as_str(),
            p(&tmp).as_str(),
            &format!("::{guest}"),
        ],
    );
    std::fs::remove_file(tmp).unwrap();
}

/// Every file of a restore point's catalog as (path, excluded), sorted.
fn catalog_files(repo: &Repository, id: &cairn_repo::SnapshotId) -> Vec<(String, bool)> {
    let m = repo.load_manifest_file(id).unwrap();
    let store = cairn_engine::RepoReadStore(repo);
    let mut out = Vec::new();
    for v in &m.volumes {
        let Some(root) = v.catalog_root else { continue };
        let cat = cairn_catalog::Catalog::open(&store, root.0)
            .unwrap()
            .with_case_insensitive_paths(true);
        cat.walk(&mut |path, e| {
            if e.kind != cairn_catalog::Kind::Dir {
                out.push((path.to_lowercase(), e.excluded));
            }
            Ok(())
        })
        .unwrap();
    }
    out.sort();
    out
}

/// The test's daemon host: sleeping advances the fake clock; the guests write one new file
/// a day at 12:00; the daemon stops after the simulated month.
struct SimulatedMonth<'a> {
    policy: &'a Path,
    clock: &'a FakeClock,
    end: i64,
    state_path: PathBuf,
    reports: Vec<cairn_engine::JobRunReport>,
    images: Vec<PathBuf>,
    next_change: i64,
    day: u32,
}

impl cairn_engine::DaemonHost for SimulatedMonth<'_> {
    fn policy(&mut self) -> Result<Policy, String> {
        Policy::load(self.policy).map_err(|e| e.to_string())
    }
    fn ran(&mut self, r: &cairn_engine::JobRunReport, state: &RunState) {
        // Like `cairn daemon`: the state is saved after every run.
        std::fs::write(&self.state_path, state.to_json()).unwrap();
        self.reports.push(r.clone());
    }
    fn pass_done(&mut self, _: &RunState) {}
    fn log(&mut self, message: &str) {
        panic!("daemon: {message}");
    }
    fn sleep(&mut self, seconds: i64) -> bool {
        let to = self.clock.now() + seconds;
        // The guests' daily change lands at 12:00, before that hour's runs.
        while self.next_change <= to && self.next_change < self.end {
            self.clock.set(self.next_change);
            self.day += 1;
            for img in &self.images {
                add_file(
                    img,
                    &format!("/day-{:02}.txt", self.day),
                    &day_text(self.day),
                );
            }
            self.next_change += DAY;
        }
        self.clock.set(to);
        to < self.end
    }
}

fn day_text(day: u32) -> Vec<u8> {
    format!("day {day}\n").repeat(300).into_bytes()
}

/// The must-show month: finance (hourly, 30 daily, 12 monthly, no exclusions) and desktops
/// (daily 02:00, 7 daily, `*.mp3` excluded) over generated libvirt VM bundles (domain XML +
/// a FAT disk) whose guests change every day,
/// driven by the daemon loop itself ([`cairn_engine::run_daemon`]) on a fake clock: exactly
/// the expected restore points are left, and each one's file catalog lists exactly the files
/// its guest had at that moment, the song excluded only for desktops.
#[test]
fn simulated_month_keeps_exactly_the_expected_restore_points() {
    if !have("mkfs.fat") || !have("mcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let song: Vec<u8> = (0..64u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0] | 1)
        .collect();
    let fin_img = make_fat_vm(
        &root.join("vms/finance/db01"),
        "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
        &[
            ("/ledger.txt", b"debit credit\n".repeat(500)),
            ("/song.mp3", song.clone()),
        ],
    );
    let desk_img = make_fat_vm(
        &root.join("vms/desktops/pc01"),
        "6c1d80aa-95e0-4b43-9e27-1f6a0f9bd1c2",
        &[
            ("/notes.txt", b"notes\n".repeat(500)),
            ("/music/song.mp3", song),
        ],
    );
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

    let clock = FakeClock::new(JAN_1);
    let mut host = SimulatedMonth {
        policy: &policy_path,
        clock: &clock,
        end: JAN_1 + 30 * DAY,
        state_path: root.join("state.json"),
        reports: Vec::new(),
        images: vec![fin_img, desk_img],
        next_change: JAN_1 + 12 * HOUR,
        day: 0,
    };
    let mut state = RunState::new();
    cairn_engine::run_daemon(&mut host, &mut state, &clock, &RunOptions::default(), HOUR);
    let reports = std::mem::take(&mut host.reports);
    let mut office_runs = Vec::new();
    for r in &reports {
        assert_eq!(r.outcome, RunOutcome::Succeeded, "{}", r.summary());
        assert!(r.restore_point.is_some());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        if r.job == "office" {
            office_runs.push(r.started);
        }
    }
    // Finance every hour; office on its first pass (never ran) and daily at 02:00.
    let mut expected_office = vec![JAN_1];
    expected_office.extend((0..30).map(|d| JAN_1 + d * DAY + 2 * HOUR));
    assert_eq!(office_runs, expected_office);
    assert_eq!(reports.len(), 30 * 24 + expected_office.len());
    let saved = RunState::from_json(&std::fs::read_to_string(&host.state_path).unwrap()).unwrap();
    assert_eq!(saved, state);

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

    // Every restore point is a VM bundle backup: the domain XML is stored with it, and the
    // VM is known by its UUID.
    for (repo, uuid0) in [(&fin_repo, 0x4du8), (&desk_repo, 0x6c)] {
        let r = open(repo);
        for sp in snapshots(&r).unwrap() {
            let rec = cairn_engine::vm_record(&r, &sp.id).unwrap();
            assert_eq!(rec.kind, "libvirt");
            assert_eq!(rec.uuid.map(|u| u[0]), Some(uuid0));
            assert_eq!(rec.config_files.len(), 1);
        }
    }

    // Catalogs: what the guest held at that moment (day files are written at 12:00), the
    // song listed everywhere, excluded only by the desktops class.
    let days_before = |t: i64| -> Vec<(String, bool)> {
        (1..=30u32)
            .filter(|d| JAN_1 + i64::from(*d - 1) * DAY + 12 * HOUR <= t)
            .map(|d| (format!("/day-{d:02}.txt"), false))
            .collect()
    };
    let fin = open(&fin_repo);
    for sp in snapshots(&fin).unwrap() {
        let mut want = days_before(sp.time);
        want.push(("/ledger.txt".into(), false));
        want.push(("/song.mp3".into(), false));
        want.sort();
        assert_eq!(catalog_files(&fin, &sp.id), want, "finance at {}", sp.time);
    }
    let desk = open(&desk_repo);
    for sp in snapshots(&desk).unwrap() {
        let mut want = days_before(sp.time);
        want.push(("/music/song.mp3".into(), true));
        want.push(("/notes.txt".into(), false));
        want.sort();
        assert_eq!(
            catalog_files(&desk, &sp.id),
            want,
            "desktops at {}",
            sp.time
        );
    }
}

/// `protect = "monthly"`: a daily job over 70 days pins the first restore point of each
/// month; retention (3 daily) keeps those and the last 3 days, reason "pinned"; an operator
/// unpin lets the next run's retention remove it.
#[test]
fn protect_monthly_pins_the_first_restore_point_of_each_month() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    make_vm(&root.join("vms/arch01"), 11);
    let repo = make_repo(&root.join("repo"));
    let text = format!(
        r#"
        [class.archive]
        schedule = "daily 01:00"
        keep_daily = 3
        protect = "monthly"
        repository = '{repo}'

        [job.arch]
        class = "archive"
        vms = ['{root}/vms/arch01']
        "#,
        repo = p(&repo),
        root = p(root),
    );
    let policy = Policy::parse(&text).unwrap();
    assert!(policy.jobs()[0]
        .describe()
        .contains("pins the first restore point of each month"));
    let clock = FakeClock::new(JAN_1);
    let mut state = RunState::new();
    let mut pinned_at = Vec::new();
    for day in 0..70 {
        clock.set(JAN_1 + day * DAY + HOUR);
        for r in run_due(&policy, &mut state, &clock, &RunOptions::default()) {
            assert_eq!(r.outcome, RunOutcome::Succeeded, "{}", r.summary());
            if let Some(reason) = &r.pinned {
                assert!(reason.contains("protect = \"monthly\""), "{reason}");
                assert!(r.summary().contains("pinned"));
                pinned_at.push(r.started);
            }
        }
    }
    // Jan 1, Feb 1, Mar 1 (2024: 31 + 29 days).
    let feb_1 = JAN_1 + 31 * DAY;
    let mar_1 = feb_1 + 29 * DAY;
    assert_eq!(pinned_at, [JAN_1 + HOUR, feb_1 + HOUR, mar_1 + HOUR]);
    let last = JAN_1 + 69 * DAY + HOUR;
    let mut want = pinned_at.clone();
    want.extend([last - 2 * DAY, last - DAY, last]);
    assert_eq!(times_of(&repo, "arch01"), want);
    let r = open(&repo);
    let pins = r.pins().unwrap();
    assert_eq!(pins.len(), 3);
    assert!(pins.iter().any(|p| p.reason.ends_with("2024-02")));
    // Forget through the engine's retention input: pinned points carry "pinned".
    let points = cairn_engine::restore_points(&r, None).unwrap();
    let groups = cairn_engine::policy::forget(
        &points,
        &policy.jobs()[0].retention,
        last + 1,
        cairn_engine::policy::UtcOffset::UTC,
    )
    .unwrap();
    let jan = groups[0]
        .keep
        .iter()
        .find(|k| k.time == JAN_1 + HOUR)
        .unwrap();
    // The 3 daily buckets are filled by March 8..10: January is kept only for its pin.
    assert_eq!(jan.reasons, ["pinned"]);
    // Unpin January: the next run's retention removes it; February and March stay.
    let jan_id = snapshots(&r)
        .unwrap()
        .into_iter()
        .find(|s| s.time == JAN_1 + HOUR)
        .unwrap()
        .id;
    assert!(r.unpin(&jan_id).unwrap());
    clock.set(last + DAY);
    let reports = run_due(&policy, &mut state, &clock, &RunOptions::default());
    assert!(reports[0].pinned.is_none(), "March has its pin already");
    assert_eq!(reports[0].removed.len(), 2, "January and March 8");
    assert!(reports[0].removed.contains(&jan_id));
    assert_eq!(
        times_of(&repo, "arch01"),
        [feb_1 + HOUR, mar_1 + HOUR, last - DAY, last, last + DAY]
    );
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
    assert!(reports[0].warnings.is_empty());

    // The next day's run is foreseen to overrun: the last one took 40 minutes and this one
    // starts 20 minutes before the window closes. The report says so before the outcome does.
    clock.now.store(JAN_1 + DAY, Ordering::SeqCst);
    let reports = run_due(&policy, &mut state, &clock, &RunOptions::default());
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0]
            .warnings
            .iter()
            .any(|w| w.contains("ends after its window closes")),
        "{}",
        reports[0].summary()
    );
    assert!(matches!(reports[0].outcome, RunOutcome::Overran { .. }));
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
