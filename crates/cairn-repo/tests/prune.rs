//! Prune: space is freed, kept restore points stay whole, dry runs change nothing, the grace
//! period protects running backups, repacking, prune under concurrent backups, and a crash
//! at every mutating step — unencrypted and encrypted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use cairn_repo::{
    prune, reindex_retired, Backend, BackupStats, BlobId, BlobKind, DiskManifest, Encryption,
    Error, InitOptions, KdfParams, Manifest, MemoryBackend, OpenOptions, PruneOptions, Repository,
    Result, SlotSecret, SnapshotId, StoredIdentity, VerifyOptions, PACK_DIR, PENDING_DIR,
};

const CHUNK: usize = 64 << 10;
const GRACE: i64 = 1000;
const T0: i64 = 1_000_000;

/// 64 KiB of incompressible bytes determined by `seed`.
fn content(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn secret(encrypted: bool) -> Option<SlotSecret> {
    encrypted.then(|| SlotSecret::Passphrase("prune test".into()))
}

fn init(backend: Arc<dyn Backend>, encrypted: bool) -> Repository {
    let opts = InitOptions {
        pack_target: 1 << 20,
        encryption: if encrypted {
            Encryption::Aes256Gcm
        } else {
            Encryption::None
        },
        kdf: Some(KdfParams::insecure_for_tests()),
        time: Some(T0),
        ..InitOptions::default()
    };
    Repository::init(backend, &opts, secret(encrypted).as_ref()).unwrap()
}

fn open(backend: Arc<dyn Backend>, encrypted: bool) -> Result<Repository> {
    Repository::open(backend, &OpenOptions::default(), secret(encrypted).as_ref())
}

fn manifest(chunks: Vec<Option<BlobId>>, time: i64) -> Manifest {
    Manifest {
        vm_name: "vm".into(),
        time,
        tags: Vec::new(),
        parent: None,
        disks: vec![DiskManifest {
            label: "disk0".into(),
            size: (chunks.len() * CHUNK) as u64,
            chunk_size: u32::try_from(CHUNK).unwrap(),
            identity: StoredIdentity::default(),
            chain: Vec::new(),
            chunks,
        }],
        stats: BackupStats::default(),
        volumes: Vec::new(),
        time_nanos: None,
    }
}

/// A backup of the blobs `seeds` (deduplicated against what this instance's index holds).
fn backup(repo: &Repository, seeds: &[u64], time: i64) -> SnapshotId {
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let mut chunks = Vec::new();
    for &s in seeds {
        let data = content(s);
        let id = enc.id(&data);
        if !w.has_blob(&id) {
            w.add(&enc.encode(BlobKind::Data, id, &data).unwrap())
                .unwrap();
        }
        chunks.push(Some(id));
    }
    w.finish().unwrap();
    let ids: Vec<BlobId> = chunks.iter().flatten().copied().collect();
    let rp = repo.save_manifest(&manifest(chunks, time)).unwrap();
    // What a backup does after its commit (see docs/prune.md).
    reindex_retired(repo, &ids).unwrap();
    rp
}

/// Reads every blob of the restore point and compares it with its content.
fn check_rp(repo: &Repository, id: &SnapshotId, seeds: &[u64]) {
    repo.reload_index().unwrap();
    let m = repo.load_manifest(id).unwrap();
    let chunks = &m.disks[0].chunks;
    assert_eq!(chunks.len(), seeds.len());
    for (c, s) in chunks.iter().zip(seeds) {
        let b = c.unwrap();
        assert_eq!(
            repo.read_blob(&b).unwrap(),
            content(*s),
            "restore point {id}"
        );
    }
}

fn verify_ok(repo: &Repository) {
    let r = repo
        .verify(&VerifyOptions {
            read_data: true,
            ..VerifyOptions::default()
        })
        .unwrap();
    assert!(r.is_ok(), "verify: {:?}", r.problems);
}

fn pack_bytes(b: &dyn Backend) -> u64 {
    b.list(PACK_DIR)
        .unwrap()
        .iter()
        .map(|n| b.size(n).unwrap())
        .sum()
}

fn opts(now: i64) -> PruneOptions {
    PruneOptions {
        dry_run: false,
        grace_seconds: GRACE,
        repack_threshold_percent: 50,
        now: Some(now),
    }
}

fn snapshot_objects(b: &dyn Backend) -> BTreeMap<String, Vec<u8>> {
    b.list("")
        .unwrap()
        .into_iter()
        .map(|n| {
            let v = b.get(&n).unwrap();
            (n, v)
        })
        .collect()
}

fn copy_backend(from: &dyn Backend) -> Arc<MemoryBackend> {
    let to = Arc::new(MemoryBackend::new());
    for (n, v) in snapshot_objects(from) {
        to.put(&n, &v).unwrap();
    }
    to
}

fn seeds(r: std::ops::Range<u64>) -> Vec<u64> {
    r.collect()
}

fn frees_space(encrypted: bool) {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), encrypted);
    let (s1, s2, s3) = (seeds(0..40), seeds(30..60), seeds(50..70));
    let rp1 = backup(&repo, &s1, 1);
    let rp2 = backup(&repo, &s2, 2);
    let rp3 = backup(&repo, &s3, 3);
    let before = pack_bytes(b.as_ref());
    repo.remove_restore_points(&[rp1]).unwrap();

    // First run: marks only.
    let r = prune(&repo, &opts(T0)).unwrap();
    assert_eq!(r.packs_deleted, 0);
    assert_eq!(r.bytes_freed, 0);
    assert!(r.kept_for_grace > 0, "{r:?}");
    assert!(r.blobs_removed >= 30, "{r:?}");
    assert!(r.index_files_rewritten > 0, "{r:?}");
    assert_eq!(b.list(PENDING_DIR).unwrap().len(), 1);
    verify_ok(&repo);
    check_rp(&repo, &rp2, &s2);
    check_rp(&repo, &rp3, &s3);

    // Inside the grace period nothing is deleted.
    let r = prune(&repo, &opts(T0 + GRACE - 1)).unwrap();
    assert_eq!(r.packs_deleted, 0, "{r:?}");

    // After it: the marked packs go.
    let r = prune(&repo, &opts(T0 + GRACE + 1)).unwrap();
    assert!(r.packs_deleted >= 2, "{r:?}");
    assert!(r.bytes_freed > 0);
    let after = pack_bytes(b.as_ref());
    assert!(after < before, "{after} >= {before}");
    // 30 of 70 chunks were dropped: at least a quarter of the space comes back.
    assert!(after * 4 < before * 3, "{after} vs {before}");
    assert!(b.list(PENDING_DIR).unwrap().is_empty());

    let again = open(b.clone(), encrypted).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp2, &s2);
    check_rp(&again, &rp3, &s3);
    assert_eq!(again.list_snapshots().unwrap().len(), 2);

    // Nothing left to do.
    let r = prune(&again, &opts(T0 + 3 * GRACE)).unwrap();
    assert_eq!(r.packs_deleted, 0, "{r:?}");
    assert_eq!(r.kept_for_grace, 0, "{r:?}");
}

#[test]
fn prune_frees_space_and_keeps_restore_points() {
    frees_space(false);
}

#[test]
fn prune_frees_space_encrypted() {
    frees_space(true);
}

fn dry_run(encrypted: bool) {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), encrypted);
    let rp1 = backup(&repo, &seeds(0..40), 1);
    let _rp2 = backup(&repo, &seeds(35..50), 2);
    repo.remove_restore_points(&[rp1]).unwrap();
    let dry = PruneOptions {
        dry_run: true,
        ..opts(T0)
    };
    let before = snapshot_objects(b.as_ref());
    let r = prune(&repo, &dry).unwrap();
    assert!(r.kept_for_grace > 0 && r.blobs_removed > 0, "{r:?}");
    assert_eq!(snapshot_objects(b.as_ref()), before);

    // A real mark, then a dry sweep.
    let real = prune(&repo, &opts(T0)).unwrap();
    assert_eq!(real.blobs_removed, r.blobs_removed);
    let before = snapshot_objects(b.as_ref());
    let r = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..opts(T0 + GRACE)
        },
    )
    .unwrap();
    assert!(r.packs_deleted > 0 && r.bytes_freed > 0, "{r:?}");
    assert_eq!(snapshot_objects(b.as_ref()), before);
    let r2 = prune(&repo, &opts(T0 + GRACE)).unwrap();
    assert_eq!(r2.packs_deleted, r.packs_deleted);
    assert_eq!(r2.bytes_freed, r.bytes_freed);
}

#[test]
fn dry_run_changes_nothing() {
    dry_run(false);
    dry_run(true);
}

/// A backend that fails every put matching `fail_prefix` (an interrupted backup).
#[derive(Debug)]
struct FailPuts {
    inner: Arc<dyn Backend>,
    fail_prefix: &'static str,
}

impl Backend for FailPuts {
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        if name.starts_with(self.fail_prefix) {
            return Err(Error::Invalid("simulated interruption".into()));
        }
        self.inner.put(name, data)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> Result<bool> {
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> Result<u64> {
        self.inner.size(name)
    }
}

fn grace(encrypted: bool) {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), encrypted);
    let kept = seeds(0..10);
    let rp0 = backup(&repo, &kept, 1);

    // A running backup: packs and index written, manifest not yet.
    let running = open(b.clone(), encrypted).unwrap();
    let run_seeds = seeds(100..130);
    let mut w = running.writer().unwrap();
    let enc = w.encoder();
    let mut chunks = Vec::new();
    for &s in &run_seeds {
        let d = content(s);
        let id = enc.id(&d);
        w.add(&enc.encode(BlobKind::Data, id, &d).unwrap()).unwrap();
        chunks.push(Some(id));
    }
    w.finish().unwrap();

    // An interrupted backup: a pack no index names.
    let broken: Arc<dyn Backend> = Arc::new(FailPuts {
        inner: b.clone(),
        fail_prefix: "index/",
    });
    let interrupted = open(broken, encrypted).unwrap();
    let mut w = interrupted.writer().unwrap();
    let enc = w.encoder();
    for s in 200..220u64 {
        let d = content(s);
        let id = enc.id(&d);
        let _ = w.add(&enc.encode(BlobKind::Data, id, &d).unwrap());
    }
    assert!(w.finish().is_err());
    repo.reload_index().unwrap();
    let orphans = repo.orphans().unwrap();
    assert!(!orphans.unindexed_packs.is_empty());
    let packs_before = b.list(PACK_DIR).unwrap();

    // Prune sees the running backup's blobs unreferenced and the orphan: it only marks.
    let r = prune(&repo, &opts(T0)).unwrap();
    assert_eq!(r.packs_deleted, 0, "{r:?}");
    assert!(
        r.kept_for_grace > orphans.unindexed_packs.len() as u64,
        "{r:?}"
    );
    let r = prune(&repo, &opts(T0 + GRACE - 1)).unwrap();
    assert_eq!(r.packs_deleted, 0, "{r:?}");
    for p in &packs_before {
        assert!(b.exists(p).unwrap(), "{p} deleted inside the grace period");
    }

    // The running backup commits (it started before the mark, finishes within the grace).
    let rp1 = running.save_manifest(&manifest(chunks, 2)).unwrap();

    // After the grace period: the orphan goes, the committed backup's packs are indexed
    // again instead of deleted.
    let r = prune(&repo, &opts(T0 + GRACE + 1)).unwrap();
    assert_eq!(
        r.orphans_deleted,
        orphans.unindexed_packs.len() as u64,
        "{r:?}"
    );
    for p in &orphans.unindexed_packs {
        assert!(!b.exists(p).unwrap());
    }
    let again = open(b.clone(), encrypted).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp0, &kept);
    check_rp(&again, &rp1, &run_seeds);
    // Later runs keep them too.
    prune(&again, &opts(T0 + 3 * GRACE)).unwrap();
    prune(&again, &opts(T0 + 5 * GRACE)).unwrap();
    let again = open(b.clone(), encrypted).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp1, &run_seeds);
}

#[test]
fn grace_period_protects_new_packs() {
    grace(false);
    grace(true);
}

fn repack(encrypted: bool) {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), encrypted);
    let all = seeds(0..64);
    let rp1 = backup(&repo, &all, 1);
    let sparse: Vec<u64> = (0..64).step_by(8).collect();
    let rp2 = backup(&repo, &sparse, 2);
    let packs_before = b.list(PACK_DIR).unwrap();
    assert!(packs_before.len() >= 4);
    let before = pack_bytes(b.as_ref());
    repo.remove_restore_points(&[rp1]).unwrap();

    let r = prune(&repo, &opts(T0)).unwrap();
    assert!(r.packs_repacked >= 4, "{r:?}");
    verify_ok(&repo);
    check_rp(&repo, &rp2, &sparse);
    let r = prune(&repo, &opts(T0 + GRACE)).unwrap();
    assert!(r.packs_deleted >= 4, "{r:?}");
    let after = pack_bytes(b.as_ref());
    assert!(after * 4 < before, "{after} vs {before}");
    let again = open(b.clone(), encrypted).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp2, &sparse);
    let idx = again.index();
    assert_eq!(idx.len(), sparse.len() + 1, "8 data blobs and rp2's list");
}

#[test]
fn repacking_moves_live_blobs_out_of_mostly_empty_packs() {
    repack(false);
    repack(true);
}

/// Counts mutating operations and fails every one after the first `budget` (a kill: the
/// process does nothing more).
#[derive(Debug)]
struct KillAfter {
    inner: Arc<dyn Backend>,
    budget: AtomicI64,
}

impl KillAfter {
    fn step(&self) -> Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            Err(Error::Invalid("killed".into()))
        } else {
            Ok(())
        }
    }
}

impl Backend for KillAfter {
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.step()?;
        self.inner.put(name, data)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.step()?;
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> Result<bool> {
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> Result<u64> {
        self.inner.size(name)
    }
}

/// A restore point and the seeds of its blobs.
type Kept = (SnapshotId, Vec<u64>);

fn crash(encrypted: bool) {
    // State: three restore points, one forgotten, an orphan pack, a first mark done.
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), encrypted);
    let (s1, s2, s3) = (
        seeds(0..40),
        seeds(30..60),
        seeds(5..70).into_iter().step_by(5).collect::<Vec<_>>(),
    );
    let rp1 = backup(&repo, &s1, 1);
    let rp2 = backup(&repo, &s2, 2);
    let rp3 = backup(&repo, &s3, 3);
    let broken: Arc<dyn Backend> = Arc::new(FailPuts {
        inner: b.clone(),
        fail_prefix: "index/",
    });
    let interrupted = open(broken, encrypted).unwrap();
    let mut w = interrupted.writer().unwrap();
    let enc = w.encoder();
    for s in 300..320u64 {
        let d = content(s);
        let _ = w.add(&enc.encode(BlobKind::Data, enc.id(&d), &d).unwrap());
    }
    assert!(w.finish().is_err());
    repo.remove_restore_points(&[rp1]).unwrap();
    let kept = [(rp2, s2.clone()), (rp3, s3.clone())];

    // Scenario A: the first (marking, repacking) run is killed. Scenario B: a sweeping
    // run (with more to mark: rp2 forgotten too) is killed.
    let state_a = copy_backend(b.as_ref());
    prune(&repo, &opts(T0)).unwrap();
    repo.remove_restore_points(&[rp2]).unwrap();
    let state_b = copy_backend(b.as_ref());
    let scenarios: [(Arc<MemoryBackend>, i64, &[Kept]); 2] =
        [(state_a, T0, &kept[..]), (state_b, T0 + GRACE, &kept[1..])];

    for (state, now, kept) in scenarios {
        // How many mutations a full run makes.
        let counter = Arc::new(KillAfter {
            inner: copy_backend(state.as_ref()),
            budget: AtomicI64::new(i64::MAX),
        });
        let r = open(counter.clone(), encrypted).unwrap();
        prune(&r, &opts(now)).unwrap();
        let total = i64::MAX - counter.budget.load(Ordering::SeqCst);
        assert!(total >= 3, "{total} mutations");
        for n in 0..total {
            let mem = copy_backend(state.as_ref());
            let killer = Arc::new(KillAfter {
                inner: mem.clone(),
                budget: AtomicI64::new(n),
            });
            let r = open(killer, encrypted).unwrap();
            assert!(prune(&r, &opts(now)).is_err(), "kill after {n} of {total}");
            drop(r);
            let again = open(mem.clone(), encrypted).unwrap();
            verify_ok(&again);
            for (id, s) in kept {
                check_rp(&again, id, s);
            }
            // Later runs complete and everything converges.
            for k in 0..3 {
                prune(&again, &opts(now + (k + 1) * GRACE)).unwrap();
            }
            let again = open(mem.clone(), encrypted).unwrap();
            verify_ok(&again);
            for (id, s) in kept {
                check_rp(&again, id, s);
            }
            assert!(
                again.orphans().unwrap().unindexed_packs.is_empty(),
                "kill after {n}"
            );
            assert!(mem.list(PENDING_DIR).unwrap().is_empty(), "kill after {n}");
        }
    }
}

#[test]
fn crash_at_every_step() {
    crash(false);
}

#[test]
fn crash_at_every_step_encrypted() {
    crash(true);
}

/// Prune runs `r` at simulated time `r * GRACE * 2 / 3`: a mark of run `r` is swept by run
/// `r + 2`. A backup that saw the index after run `g` must commit before run `g + 3`
/// starts (the grace period exceeds every backup): prune waits for that.
#[derive(Default)]
struct Clock {
    state: Mutex<(i64, HashMap<u64, i64>)>,
    cv: Condvar,
}

#[test]
fn prune_under_fire() {
    for encrypted in [false, true] {
        let b = Arc::new(MemoryBackend::new());
        let repo = init(b.clone(), encrypted);
        drop(repo);
        let clock = Arc::new(Clock::default());
        let expected: Arc<Mutex<HashMap<SnapshotId, Vec<u64>>>> = Arc::default();
        const BACKUPS: u64 = 10;
        const RUNS: i64 = 12;
        let step = GRACE * 2 / 3;

        let backups = {
            let (b, clock, expected) = (b.clone(), clock.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut pool: Vec<u64> = Vec::new();
                for k in 0..BACKUPS {
                    {
                        let mut s = clock.state.lock().unwrap();
                        let g = s.0;
                        s.1.insert(k, g);
                    }
                    let repo = open(b.clone(), encrypted).unwrap();
                    // New data plus blobs of earlier backups (some of them pruned).
                    let mut s: Vec<u64> = (0..5).map(|i| 1000 + k * 10 + i).collect();
                    for i in 0..5u64 {
                        if !pool.is_empty() {
                            let pick =
                                usize::try_from((k * 7 + i * 13) % pool.len() as u64).unwrap();
                            s.push(pool[pick]);
                        }
                    }
                    std::thread::yield_now();
                    let id = backup(&repo, &s, i64::try_from(k).unwrap() + 10);
                    pool.extend(&s[..5]);
                    expected.lock().unwrap().insert(id, s);
                    {
                        let mut st = clock.state.lock().unwrap();
                        st.1.remove(&k);
                    }
                    clock.cv.notify_all();
                }
            })
        };

        for run in 1..=RUNS {
            {
                let mut s = clock.state.lock().unwrap();
                while s.1.values().any(|&g| g + 3 <= run) {
                    s = clock.cv.wait(s).unwrap();
                }
            }
            let repo = open(b.clone(), encrypted).unwrap();
            // Forget all but the two newest restore points.
            let (sums, bad) = repo.summaries().unwrap();
            assert!(bad.is_empty());
            if sums.len() > 2 {
                let old: Vec<SnapshotId> = sums[..sums.len() - 2].iter().map(|s| s.id).collect();
                repo.remove_restore_points(&old).unwrap();
                let mut e = expected.lock().unwrap();
                for id in &old {
                    e.remove(id);
                }
            }
            prune(&repo, &opts(T0 + run * step)).unwrap();
            {
                let mut s = clock.state.lock().unwrap();
                s.0 = run;
            }
            clock.cv.notify_all();
            std::thread::yield_now();
        }
        backups.join().unwrap();
        let repo = open(b.clone(), encrypted).unwrap();
        verify_ok(&repo);
        for (id, s) in expected.lock().unwrap().iter() {
            check_rp(&repo, id, s);
        }
        // Quiet now: a few more runs converge, and everything kept still reads back.
        for k in 1..=4 {
            prune(&repo, &opts(T0 + (RUNS + 2 * k) * step)).unwrap();
        }
        let repo = open(b.clone(), encrypted).unwrap();
        verify_ok(&repo);
        for (id, s) in expected.lock().unwrap().iter() {
            check_rp(&repo, id, s);
        }
        assert!(b.list(PENDING_DIR).unwrap().is_empty());
    }
}

#[test]
fn catalog_blobs_are_kept() {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), false);
    let data = seeds(0..4);
    // Catalog blobs: metadata blobs only a volume record references.
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let cat: Vec<Vec<u8>> = (0..3u64).map(|s| content(5000 + s)).collect();
    let ids: Vec<BlobId> = cat.iter().map(|c| enc.id(c)).collect();
    for (c, id) in cat.iter().zip(&ids) {
        w.add(&enc.encode(BlobKind::Meta, *id, c).unwrap()).unwrap();
    }
    w.finish().unwrap();
    let mut m = manifest(Vec::new(), 1);
    m.disks.clear();
    m.volumes.push(cairn_repo::VolumeRecord {
        catalog_root: Some(ids[0]),
        sd_table: Some(ids[1]),
        catalog_blobs: ids.clone(),
        ..cairn_repo::VolumeRecord::default()
    });
    let rp = repo.save_manifest(&m).unwrap();
    let other = backup(&repo, &data, 2);
    repo.remove_restore_points(&[other]).unwrap();
    prune(&repo, &opts(T0)).unwrap();
    let r = prune(&repo, &opts(T0 + GRACE)).unwrap();
    assert!(r.packs_deleted > 0, "{r:?}");
    let again = open(b.clone(), false).unwrap();
    verify_ok(&again);
    assert_eq!(again.list_snapshots().unwrap(), vec![rp]);
    for (c, id) in cat.iter().zip(&ids) {
        assert_eq!(&again.read_blob(id).unwrap(), c);
    }
}

#[test]
fn local_repository_grace_zero_and_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let local = Arc::new(cairn_repo::LocalBackend::new(dir.path()).unwrap());
    let repo = init(local.clone(), false);
    let (s1, s2) = (seeds(0..30), seeds(20..40));
    let rp1 = backup(&repo, &s1, 1);
    let rp2 = backup(&repo, &s2, 2);
    let before = pack_bytes(local.as_ref());
    repo.remove_restore_points(&[rp1]).unwrap();
    // A temporary file of an interrupted write.
    let tmp = dir.path().join("packs").join(".tmp-1-2-x");
    std::fs::write(&tmp, b"partial").unwrap();

    // Grace 0: marks and deletes in one call (no backup running).
    let r = prune(
        &repo,
        &PruneOptions {
            grace_seconds: 0,
            now: None,
            ..opts(0)
        },
    )
    .unwrap();
    assert!(r.packs_deleted > 0 && r.bytes_freed > 0, "{r:?}");
    assert_eq!(r.kept_for_grace, 0, "{r:?}");
    assert!(pack_bytes(local.as_ref()) < before);
    let again = open(local.clone(), false).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp2, &s2);

    // The temporary file is young: kept; once older than the grace period: deleted.
    let young = PruneOptions::default();
    assert_eq!(
        cairn_repo::remove_stale_temp_files(&local, &young).unwrap(),
        0
    );
    let later = PruneOptions {
        now: Some(i64::MAX / 2),
        ..PruneOptions::default()
    };
    let dry = PruneOptions {
        dry_run: true,
        ..later
    };
    assert_eq!(
        cairn_repo::remove_stale_temp_files(&local, &dry).unwrap(),
        1
    );
    assert!(tmp.exists());
    assert_eq!(
        cairn_repo::remove_stale_temp_files(&local, &later).unwrap(),
        1
    );
    assert!(!tmp.exists());
}

#[test]
fn encrypted_pending_objects_cannot_be_swapped() {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), true);
    let rp1 = backup(&repo, &seeds(0..20), 1);
    repo.remove_restore_points(&[rp1]).unwrap();
    prune(&repo, &opts(T0)).unwrap();
    let names = b.list(PENDING_DIR).unwrap();
    assert_eq!(names.len(), 1);
    // The same bytes under another id fail authentication: prune stops, deletes nothing.
    let bytes = b.get(&names[0]).unwrap();
    b.delete(&names[0]).unwrap();
    b.put(&format!("{PENDING_DIR}{}", "ab".repeat(32)), &bytes)
        .unwrap();
    let packs = b.list(PACK_DIR).unwrap();
    assert!(matches!(
        prune(&repo, &opts(T0 + GRACE)),
        Err(Error::Crypto { .. })
    ));
    assert_eq!(b.list(PACK_DIR).unwrap(), packs);
}

#[test]
fn damaged_live_blob_is_not_repacked_away() {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), false);
    let all = seeds(0..16);
    let rp1 = backup(&repo, &all, 1);
    let sparse = vec![3u64];
    let _rp2 = backup(&repo, &sparse, 2);
    repo.remove_restore_points(&[rp1]).unwrap();
    // Damage the live blob in its pack.
    let id = repo.blob_id(&content(3));
    let (pack, offset) = {
        let idx = repo.index();
        let e = *idx.get(&id).unwrap();
        (idx.pack(e.pack).unwrap().0, e.offset)
    };
    let name = cairn_repo::pack_name(&pack);
    let mut bytes = b.get(&name).unwrap();
    bytes[usize::try_from(offset).unwrap() + 10] ^= 0xff;
    b.put(&name, &bytes).unwrap();

    prune(&repo, &opts(T0)).unwrap();
    prune(&repo, &opts(T0 + 2 * GRACE)).unwrap();
    // The pack is still there and indexed: verify names the damage instead of a missing blob.
    assert!(b.exists(&name).unwrap());
    let again = open(b.clone(), false).unwrap();
    let r = again
        .verify(&VerifyOptions {
            read_data: true,
            ..VerifyOptions::default()
        })
        .unwrap();
    assert!(!r.problems.is_empty());
    assert!(
        r.problems
            .iter()
            .all(|p| p.kind != cairn_repo::ProblemKind::MissingBlob
                && p.kind != cairn_repo::ProblemKind::MissingPack),
        "{:?}",
        r.problems
    );
}

/// Stores `n` metadata blobs no restore point references (what `cairn find` stores for its
/// index) and returns their ids.
fn cache_blobs(repo: &Repository, seeds: std::ops::Range<u64>) -> Vec<BlobId> {
    let mut w = repo.writer().unwrap();
    let enc = w.encoder();
    let mut ids = Vec::new();
    for s in seeds {
        let c = content(s);
        let id = enc.id(&c);
        w.add(&enc.encode(BlobKind::Meta, id, &c).unwrap()).unwrap();
        ids.push(id);
    }
    w.finish().unwrap();
    ids
}

fn cache_blobs_kept(encrypted: bool) {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), encrypted);
    let data = seeds(0..8);
    let rp = backup(&repo, &data, 1);
    let cache = cache_blobs(&repo, 9000..9003);
    // What the caller's pointer names now (the CLI reads `cache/find-index`).
    let named: Mutex<Vec<BlobId>> = Mutex::new(cache.clone());
    let keep = |_: &Repository| named.lock().unwrap().clone();
    let run = |now: i64| repo.prune_keeping(&opts(now), &keep).unwrap();

    // Named: kept (not dropped from the index, their pack not deleted), counted.
    let r = run(T0);
    assert_eq!(r.cache_blobs_kept, 3, "{r:?}");
    assert_eq!((r.blobs_removed, r.packs_repacked), (0, 0), "{r:?}");
    run(T0 + GRACE);
    let again = open(b.clone(), encrypted).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp, &data);
    for (s, id) in (9000..).zip(&cache) {
        assert_eq!(again.read_blob(id).unwrap(), content(s));
    }

    // The pointer now names one of them: the other two go (what happened to all of them
    // before prune was told), and ids outside the index change nothing.
    *named.lock().unwrap() = vec![cache[1], BlobId::default(), repo.blob_id(b"not stored")];
    let r = run(T0 + 2 * GRACE);
    assert_eq!(r.cache_blobs_kept, 1, "{r:?}");
    assert_eq!(r.blobs_removed, 2, "{r:?}");
    run(T0 + 3 * GRACE);
    let again = open(b.clone(), encrypted).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp, &data);
    assert_eq!(again.read_blob(&cache[1]).unwrap(), content(9001));
    for id in [cache[0], cache[2]] {
        assert!(again.read_blob(&id).is_err());
    }

    // The plain `prune` keeps only what restore points reference.
    prune(&repo, &opts(T0 + 4 * GRACE)).unwrap();
    prune(&repo, &opts(T0 + 5 * GRACE)).unwrap();
    let again = open(b.clone(), encrypted).unwrap();
    assert!(again.read_blob(&cache[1]).is_err());
    check_rp(&again, &rp, &data);
}

#[test]
fn blobs_the_caller_names_are_kept() {
    cache_blobs_kept(false);
    cache_blobs_kept(true);
}

/// A cache rewritten while prune runs (`find` saving its index during a prune): a blob the
/// old pointer did not name is retired by one pass; the new pointer names it again (the
/// writer deduplicated against the index it had loaded), and the next pass indexes its pack
/// again before the grace period ends, as it does for a restore point's blob.
#[test]
fn blob_named_again_after_its_pack_was_retired_is_indexed_again() {
    let b = Arc::new(MemoryBackend::new());
    let repo = init(b.clone(), false);
    let data = seeds(0..4);
    let rp = backup(&repo, &data, 1);
    let cache = cache_blobs(&repo, 9100..9102);
    let named: Mutex<Vec<BlobId>> = Mutex::new(Vec::new());
    let keep = |_: &Repository| named.lock().unwrap().clone();
    let r = repo.prune_keeping(&opts(T0), &keep).unwrap();
    assert_eq!(r.cache_blobs_kept, 0, "{r:?}");
    assert!(b.list(PENDING_DIR).unwrap().len() == 1);
    repo.reload_index().unwrap();
    assert!(repo.read_blob(&cache[0]).is_err(), "retired: in no index");
    *named.lock().unwrap() = cache.clone();
    repo.prune_keeping(&opts(T0 + 1), &keep).unwrap();
    // Past the first mark's grace: the sweep keeps the pack (an index names it again).
    let r = repo.prune_keeping(&opts(T0 + 2 * GRACE), &keep).unwrap();
    assert_eq!(r.cache_blobs_kept, 2, "{r:?}");
    let again = open(b.clone(), false).unwrap();
    verify_ok(&again);
    check_rp(&again, &rp, &data);
    for (s, id) in (9100..).zip(&cache) {
        assert_eq!(again.read_blob(id).unwrap(), content(s));
    }
}

/// A pin whose restore point is gone, as a pin racing the forget that removed its restore
/// point leaves it (`pin` read the manifest, `forget` saw no pin and deleted it, `pin`
/// wrote the pin): the manifest object is deleted under the pin.
fn orphan_pin(repo: &Repository, b: &dyn Backend, seeds: &[u64], time: i64) -> SnapshotId {
    let rp = backup(repo, seeds, time);
    repo.pin(&rp, "monthly", Some(time)).unwrap();
    b.delete(&format!("{}{rp}", cairn_repo::SNAPSHOT_DIR))
        .unwrap();
    rp
}

#[test]
fn prune_removes_pins_of_restore_points_that_are_gone() {
    for encrypted in [false, true] {
        let b = Arc::new(MemoryBackend::new());
        let repo = init(b.clone(), encrypted);
        let data = seeds(0..4);
        let kept = backup(&repo, &data, 1);
        repo.pin(&kept, "legal hold", Some(5)).unwrap();
        let gone = orphan_pin(&repo, b.as_ref(), &seeds(4..8), 2);
        let gone_pin = format!("{}{gone}", cairn_repo::PIN_DIR);
        // Not a pin name: left alone, and it does not stop prune.
        let stray = format!("{}notes.txt", cairn_repo::PIN_DIR);
        b.put(&stray, b"x").unwrap();

        let dry = PruneOptions {
            dry_run: true,
            ..opts(T0)
        };
        assert_eq!(prune(&repo, &dry).unwrap().pins_removed, 1);
        assert!(b.exists(&gone_pin).unwrap());
        let r = prune(&repo, &opts(T0)).unwrap();
        assert_eq!(r.pins_removed, 1, "{r:?}");
        assert!(!b.exists(&gone_pin).unwrap());
        assert!(b.exists(&stray).unwrap());
        b.delete(&stray).unwrap();
        assert_eq!(
            repo.pinned_ids().unwrap().into_iter().collect::<Vec<_>>(),
            vec![kept]
        );
        assert_eq!(repo.pin_of(&kept).unwrap().unwrap().reason, "legal hold");
        let r = prune(&repo, &opts(T0 + GRACE)).unwrap();
        assert_eq!(r.pins_removed, 0, "{r:?}");
        let again = open(b.clone(), encrypted).unwrap();
        verify_ok(&again);
        check_rp(&again, &kept, &data);
        // The pinned restore point is still protected from removal.
        assert!(again.remove_restore_points(&[kept]).is_err());
    }
}

/// Runs `hook` once, just before the backend call number `at` (counted from when it is
/// armed): another process acting between two steps of prune.
struct HookAt {
    inner: Arc<dyn Backend>,
    calls: AtomicI64,
    at: AtomicI64,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for HookAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookAt").field("at", &self.at).finish()
    }
}

impl HookAt {
    fn arm(&self, at: i64, hook: Box<dyn FnOnce() + Send>) {
        self.calls.store(0, Ordering::SeqCst);
        self.at.store(at, Ordering::SeqCst);
        *self.hook.lock().unwrap() = Some(hook);
    }
    fn tick(&self) {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at.load(Ordering::SeqCst) {
            let hook = self.hook.lock().unwrap().take();
            if let Some(h) = hook {
                h();
            }
        }
    }
}

impl Backend for HookAt {
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.tick();
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.tick();
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.tick();
        self.inner.put(name, data)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.tick();
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.tick();
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> Result<bool> {
        self.tick();
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> Result<u64> {
        self.tick();
        self.inner.size(name)
    }
}

/// A backup that commits and pins its restore point (a policy run with `protect`) while
/// prune runs, at every backend call of prune: its pin stays, the orphan pin goes. A prune
/// that listed restore points first and pins later would take the new pin for an orphan.
#[test]
fn pin_of_a_restore_point_committed_during_prune_is_kept() {
    let setup = || {
        let mem = Arc::new(MemoryBackend::new());
        let hooked = Arc::new(HookAt {
            inner: mem.clone(),
            calls: AtomicI64::new(0),
            at: AtomicI64::new(-1),
            hook: Mutex::new(None),
        });
        let repo = init(hooked.clone(), false);
        let old = backup(&repo, &seeds(0..4), 1);
        orphan_pin(&repo, mem.as_ref(), &seeds(4..8), 2);
        (mem, hooked, repo, old)
    };
    // How many backend calls one prune makes here.
    let (_, hooked, repo, _) = setup();
    hooked.arm(-1, Box::new(|| {}));
    assert_eq!(prune(&repo, &opts(T0)).unwrap().pins_removed, 1);
    let total = hooked.calls.load(Ordering::SeqCst);
    assert!(total > 10, "{total}");
    for at in 0..total {
        let (mem, hooked, repo, old) = setup();
        let new: Arc<Mutex<Option<SnapshotId>>> = Arc::default();
        let (m, n) = (mem.clone(), new.clone());
        hooked.arm(
            at,
            Box::new(move || {
                // Another process: its own repository instance on the same storage.
                let other = open(m, false).unwrap();
                let rp = backup(&other, &seeds(100..104), 3);
                other.pin(&rp, "protect", Some(3)).unwrap();
                *n.lock().unwrap() = Some(rp);
            }),
        );
        let r = prune(&repo, &opts(T0)).unwrap();
        assert_eq!(r.pins_removed, 1, "hook at call {at}: {r:?}");
        let rp = new.lock().unwrap().expect("the hook ran");
        let again = open(mem.clone(), false).unwrap();
        assert_eq!(
            again.pinned_ids().unwrap().into_iter().collect::<Vec<_>>(),
            vec![rp],
            "hook at call {at}"
        );
        check_rp(&again, &rp, &seeds(100..104));
        check_rp(&again, &old, &seeds(0..4));
    }
}
