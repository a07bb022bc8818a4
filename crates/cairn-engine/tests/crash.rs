//! Reliability under SIGKILL: a child process (this test binary, re-executed) backs up
//! images into a local repository in a loop; the parent kills it at many different moments
//! and then checks that the repository opens, verifies (data included) and that every
//! restore point it holds restores to the exact image it was made from.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{
    backup, restore_raw, snapshots, verify, BackupOptions, DiskSource, RestoreOptions,
    VerifyOptions,
};
use cairn_io::{AllocationMap, DiskIdentity, RangeKind};
use cairn_repo::{InitOptions, LocalBackend, OpenOptions, Repository};

const CHILD_ENV: &str = "CAIRN_CRASH_CHILD_REPO";
const SIZE: usize = 3 << 20;

/// Image number `n`: mostly shared content with a changed stripe, so runs both dedup and
/// write new blobs. The tag of the restore point records `n` so the parent can rebuild it.
fn image(n: u64) -> Vec<u8> {
    let mut v: Vec<u8> = (0..SIZE)
        .map(|i| (i as u64 * 31 / 7).to_le_bytes()[0] ^ (i >> 16).to_le_bytes()[0])
        .collect();
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let start = usize::try_from(n % 40).unwrap() * 65536;
    for b in &mut v[start..start + 4 * 65536] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    v
}

fn open(path: &std::path::Path) -> Repository {
    Repository::open(
        Arc::new(LocalBackend::new(path).unwrap()),
        &OpenOptions::default(),
        None,
    )
    .unwrap()
}

/// The child's work; a no-op when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let start: u64 = std::env::var("CAIRN_CRASH_SEED").unwrap().parse().unwrap();
    let repo = open(&path);
    for n in start.. {
        let img = image(n);
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
        backup(&repo, "vm", &[src], &opts).unwrap();
    }
}

#[test]
fn sigkill_at_many_points_leaves_a_consistent_repository() {
    let dir = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        chunker: cairn_chunk::ChunkerParams::Fixed { size: 65536 },
        pack_target: 1 << 20,
        ..Default::default()
    };
    Repository::init(
        Arc::new(LocalBackend::new(dir.path()).unwrap()),
        &opts,
        None,
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    // Kill points spread over the child's start-up, packing, index and manifest writes.
    for (round, delay_ms) in [5u64, 40, 80, 120, 170, 230, 300, 380, 470, 600]
        .into_iter()
        .enumerate()
    {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("CAIRN_CRASH_SEED", (round as u64 * 1000).to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
    }
    let repo = Arc::new(open(dir.path()));
    let report = verify(
        &repo,
        &VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(repo.index_problems().is_empty());
    for s in snapshots(&repo).unwrap() {
        let n: u64 = s.tags[0].parse().unwrap();
        let out = dir.path().join("restore.raw");
        restore_raw(&repo, &s.id, 0, &out, &RestoreOptions::default()).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == image(n),
            "restore point {} (image {n}) differs",
            s.id
        );
    }
    // Whatever the kills left behind is only orphans (prune's business), never damage.
    let orphans = repo.orphans().unwrap();
    eprintln!(
        "{} restore points survived, {} unindexed packs",
        snapshots(&repo).unwrap().len(),
        orphans.unindexed_packs.len()
    );
}
