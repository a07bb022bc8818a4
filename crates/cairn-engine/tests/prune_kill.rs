//! Prune under fire, with real processes: two child processes (this test binary,
//! re-executed) back up into one local repository without pause while a third forgets old
//! restore points and prunes in a loop (every backup commits while prunes mark, repack and
//! sweep); the parent SIGKILLs the pruning process at many points: after fixed delays, and from inside the child after its N-th mutating backend
//! operation (a fault point: the child sends itself SIGKILL, so the kill lands exactly
//! between two writes). Afterwards, with every process dead: `verify --read-data` passes,
//! every restore point left restores to the exact image it was made from (SHA-256), a final
//! prune completes, frees the space, and leaves nothing pending.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::policy::{forget, Retention, UtcOffset};
use cairn_engine::{backup, restore_raw, snapshots, verify, BackupOptions, DiskSource};
use cairn_io::{AllocationMap, DiskIdentity, RangeKind};
use cairn_repo::{
    Backend, InitOptions, LocalBackend, OpenOptions, PruneOptions, Repository, Result, PACK_DIR,
    PENDING_DIR,
};

const ROLE_ENV: &str = "CAIRN_PRUNE_KILL_ROLE";
const REPO_ENV: &str = "CAIRN_PRUNE_KILL_REPO";
const SEED_ENV: &str = "CAIRN_PRUNE_KILL_SEED";
const KILL_AFTER_ENV: &str = "CAIRN_PRUNE_KILL_AFTER_OPS";
/// A backup child stops between two backups once this file exists in the repository's
/// parent folder (the test kills prune, not backups: crash.rs kills backups).
const STOP_FILE: &str = "stop-backups";
const SIZE: usize = 2 << 20;
/// Prune's grace period in the children: far longer than one backup of a 2 MiB image
/// (milliseconds), so a backup that started before a mark commits before the sweep.
const GRACE_SECONDS: i64 = 4;

/// Image `n` of VM `vm`: shared content with a changed stripe, so backups both dedup and
/// write new blobs, and forgotten restore points leave garbage behind.
fn image(vm: &str, n: u64) -> Vec<u8> {
    let salt = u64::from(vm.as_bytes()[vm.len() - 1]);
    let mut v: Vec<u8> = (0..SIZE)
        .map(|i| (i as u64 * 31 / 7).to_le_bytes()[0] ^ (i >> 16).to_le_bytes()[0])
        .collect();
    let mut x = (n ^ (salt << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let start = usize::try_from(n % 24).unwrap() * 65536;
    for b in &mut v[start..start + 6 * 65536] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    v
}

fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn open_with(backend: Arc<dyn Backend>) -> Repository {
    Repository::open(backend, &OpenOptions::default(), None).unwrap()
}

/// A local backend that SIGKILLs its own process at the N-th mutating operation (before
/// performing it).
#[derive(Debug)]
struct KillAtOp {
    inner: LocalBackend,
    left: AtomicU64,
}

impl KillAtOp {
    fn step(&self) {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            let pid = std::process::id().to_string();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            // SIGKILL is not deliverable late; never get here.
            std::process::abort();
        }
    }
}

impl Backend for KillAtOp {
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.step();
        self.inner.put(name, data)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.step();
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> Result<bool> {
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> Result<u64> {
        self.inner.size(name)
    }
}

/// Keeps the 3 newest restore points of each VM, removes the rest.
fn forget_old(repo: &Repository) {
    let points = cairn_engine::restore_points(repo, None).unwrap();
    if points.is_empty() {
        return;
    }
    let rules = Retention {
        keep_last: 3,
        ..Default::default()
    };
    let groups = forget(&points, &rules, i64::MAX / 2, UtcOffset::UTC).unwrap();
    let (_, remove) = cairn_engine::removal_list(&groups).unwrap();
    repo.remove_restore_points(&remove).unwrap();
}

/// The children's work; a no-op when run as an ordinary test.
#[test]
fn prune_kill_child() {
    let (Ok(role), Ok(path)) = (std::env::var(ROLE_ENV), std::env::var(REPO_ENV)) else {
        return;
    };
    let local = LocalBackend::new(&path).unwrap();
    match role.as_str() {
        "backup-a" | "backup-b" => {
            let vm = &role["backup-".len()..];
            let repo = open_with(Arc::new(local));
            let start: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
            let stop = Path::new(&path).parent().unwrap().join(STOP_FILE);
            for n in start.. {
                if stop.exists() {
                    return;
                }
                let img = image(vm, n);
                let src = DiskSource {
                    label: "d".into(),
                    map: AllocationMap::uniform(img.len() as u64, RangeKind::Data),
                    reader: Arc::new(img),
                    identity: DiskIdentity::default(),
                    chain_ids: vec![],
                    changed: None,
                };
                let opts = BackupOptions {
                    tags: vec![n.to_string()],
                    ..Default::default()
                };
                backup(&repo, vm, &[src], &opts).unwrap();
            }
        }
        "prune" => {
            let kill_after: u64 = std::env::var(KILL_AFTER_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            let repo = open_with(Arc::new(KillAtOp {
                inner: local,
                left: AtomicU64::new(kill_after),
            }));
            let opts = PruneOptions {
                grace_seconds: GRACE_SECONDS,
                ..Default::default()
            };
            loop {
                forget_old(&repo);
                cairn_repo::prune(&repo, &opts).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, repo: &Path, extra: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "prune_kill_child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(ROLE_ENV, role)
    .env(REPO_ENV, repo)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for `child` up to `limit`, then SIGKILLs it; returns its stderr and whether it
/// ended by SIGKILL.
fn kill_after(mut child: Child, limit: Duration) -> (String, bool) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL on Unix
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.signal() == Some(9),
    )
}

fn pack_bytes(b: &dyn Backend) -> u64 {
    b.list(PACK_DIR)
        .unwrap()
        .iter()
        .map(|n| b.size(n).unwrap())
        .sum()
}

/// Every restore point restores to the image it was made from (by SHA-256); returns how
/// many there are per VM.
fn check_all_restore(repo: &Arc<Repository>, scratch: &Path) -> BTreeMap<String, usize> {
    let mut per_vm = BTreeMap::new();
    for s in snapshots(repo).unwrap() {
        let n: u64 = s.tags[0].parse().unwrap();
        let out = scratch.join("restore.raw");
        restore_raw(repo, &s.id, 0, &out, &Default::default()).unwrap();
        assert_eq!(
            sha256(&std::fs::read(&out).unwrap()),
            sha256(&image(&s.vm_name, n)),
            "restore point {} ({} image {n}) differs",
            s.id,
            s.vm_name
        );
        *per_vm.entry(s.vm_name.clone()).or_insert(0) += 1;
    }
    per_vm
}

#[test]
fn prune_killed_at_many_points_while_backups_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let scratch = dir.path();
    let opts = InitOptions {
        chunker: cairn_chunk::ChunkerParams::Fixed { size: 65536 },
        pack_target: 1 << 20,
        ..Default::default()
    };
    Repository::init(Arc::new(LocalBackend::new(&path).unwrap()), &opts, None).unwrap();

    let backups = [
        spawn("backup-a", &path, &[(SEED_ENV, "0".into())]),
        spawn("backup-b", &path, &[(SEED_ENV, "0".into())]),
    ];
    // Kill points: after fixed delays (anywhere: reading, copying, writing index or pending
    // objects, deleting), and exactly at the N-th mutation of a forget + prune pass.
    let delays_ms = [40u64, 110, 190, 300, 420, 560, 700, 850, 1000, 1200];
    let op_counts = [1u64, 2, 3, 4, 6, 8, 11, 15, 20, 27];
    let mut killed = 0;
    for round in 0..delays_ms.len() {
        let child = spawn("prune", &path, &[]);
        let (err, by_kill) = kill_after(child, Duration::from_millis(delays_ms[round]));
        assert!(by_kill, "prune child ended on its own: {err}");
        killed += 1;
        let child = spawn(
            "prune",
            &path,
            &[(KILL_AFTER_ENV, op_counts[round].to_string())],
        );
        // Bounded: a pass with too little to do in that time is killed from outside.
        let (err, by_kill) = kill_after(child, Duration::from_secs(4));
        assert!(by_kill, "prune child ended on its own: {err}");
        killed += 1;
    }
    std::fs::write(scratch.join(STOP_FILE), b"").unwrap();
    for b in backups {
        let out = b.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a backup child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(killed, 2 * delays_ms.len());

    // Every process is dead. The repository verifies, data included.
    let backend: Arc<LocalBackend> = Arc::new(LocalBackend::new(&path).unwrap());
    let repo = Arc::new(open_with(backend.clone()));
    let report = verify(
        &repo,
        &cairn_engine::VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(repo.index_problems().is_empty());
    let per_vm = check_all_restore(&repo, scratch);
    assert!(
        per_vm.len() == 2 && per_vm.values().all(|&n| n >= 1),
        "both VMs keep restore points: {per_vm:?}"
    );

    // A final prune (nothing runs now, so no grace period is needed) frees the space of
    // everything forgotten, interrupted or half-repacked, and settles.
    forget_old(&repo);
    let before = pack_bytes(backend.as_ref());
    let final_opts = PruneOptions {
        grace_seconds: 0,
        ..Default::default()
    };
    let r = cairn_repo::prune(&repo, &final_opts).unwrap();
    let after = pack_bytes(backend.as_ref());
    assert!(
        r.bytes_freed > 0 && after < before,
        "{r:?}: {before} -> {after}"
    );
    assert!(backend.list(PENDING_DIR).unwrap().is_empty());
    assert!(repo.orphans().unwrap().unindexed_packs.is_empty());
    let again = cairn_repo::prune(&repo, &final_opts).unwrap();
    assert_eq!(
        (again.packs_deleted, again.packs_repacked, again.bytes_freed),
        (0, 0, 0),
        "{again:?}"
    );
    // Temporary files the kills left behind go too.
    cairn_repo::remove_stale_temp_files(&backend, &final_opts).unwrap();
    assert!(backend.temp_files().unwrap().is_empty());
    let report = verify(
        &repo,
        &cairn_engine::VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // The final forget kept the 3 newest of each VM; they all still restore.
    let kept: BTreeMap<String, usize> =
        per_vm.iter().map(|(k, &n)| (k.clone(), n.min(3))).collect();
    assert_eq!(check_all_restore(&repo, scratch), kept);
    eprintln!(
        "{killed} prune processes killed; {per_vm:?} restore points kept; final prune freed {} bytes ({before} -> {after})",
        r.bytes_freed
    );
}
