//! Fills an existing repository (made with `cairn init`) with `points` restore points whose
//! one volume holds a synthetic catalog of `files` files, each restore point changing 1% of
//! the files of the previous one: the repository `benches/find.sh` times `cairn find` on.
//! The restore points have no disks (only the catalog matters to `find`).
//!
//! With `from`, the series is replayed but only restore points `from..points` are written
//! (one more restore point of the same series, for the incremental-update figure).
//!
//! `CAIRN_PASSWORD=... cargo run --release -p cairn-catalog --example find_repo -- REPO [points] [files] [from]`

use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_catalog::{put_dir, BlobId, BlobStore, DirBlob, Entry, Extent, Kind, Time};
use cairn_repo::{
    BackupStats, BlobKind, LocalBackend, Manifest, OpenOptions, RepoWriter, Repository,
    VolumeRecord,
};

const FILES_PER_DIR: usize = 100;
const DIRS_PER_PARENT: usize = 32;

/// Catalog blobs written as metadata blobs through one writer session.
struct WriterStore<'r> {
    writer: Mutex<RepoWriter<'r>>,
    ids: Mutex<Vec<BlobId>>,
}

impl BlobStore for WriterStore<'_> {
    type Error = cairn_repo::Error;

    fn put(&self, bytes: Vec<u8>) -> Result<BlobId, cairn_repo::Error> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let enc = w.encoder();
        let id = enc.id(&bytes);
        if !w.has_blob(&id) {
            w.add(&enc.encode(BlobKind::Meta, id, &bytes)?)?;
        }
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.0);
        Ok(id.0)
    }

    fn get(&self, _id: &BlobId) -> Result<Vec<u8>, cairn_repo::Error> {
        Err(cairn_repo::Error::Invalid("write-only store".into()))
    }
}

/// The tree of `files` ((size, mtime) per index); returns the root id.
fn build(store: &WriterStore<'_>, files: &[(u64, i64)]) -> BlobId {
    let mut level: Vec<Entry> = files
        .chunks(FILES_PER_DIR)
        .enumerate()
        .map(|(d, chunk)| {
            let mut entries: Vec<Entry> = chunk
                .iter()
                .enumerate()
                .map(|(i, &(size, mtime))| {
                    let n = d * FILES_PER_DIR + i;
                    let ext = if n.is_multiple_of(10) { "doc" } else { "dat" };
                    let mut e = Entry::new(format!("file{n:07}.{ext}"), Kind::File, size);
                    e.mtime = Some(Time {
                        secs: mtime,
                        nanos: 0,
                    });
                    e.node = n as u64;
                    e.extents.push(Extent {
                        file_offset: 0,
                        len: size,
                        volume_offset: Some(n as u64 * 65536),
                        encoded: false,
                    });
                    e
                })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let mut dir = Entry::new(format!("d{d:05}"), Kind::Dir, 0);
            dir.child = Some(put_dir(store, &DirBlob { entries }).expect("put"));
            dir
        })
        .collect();
    while level.len() > DIRS_PER_PARENT {
        level = level
            .chunks(DIRS_PER_PARENT)
            .enumerate()
            .map(|(i, chunk)| {
                let mut dir = Entry::new(format!("p{i:05}"), Kind::Dir, 0);
                let entries = chunk.to_vec();
                dir.child = Some(put_dir(store, &DirBlob { entries }).expect("put"));
                dir
            })
            .collect();
    }
    put_dir(store, &DirBlob { entries: level }).expect("put")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: find_repo REPO [points] [files] [from]");
        std::process::exit(2);
    };
    let points: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let from: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let backend = Arc::new(LocalBackend::new(&dir).expect("backend"));
    let secret = std::env::var("CAIRN_PASSWORD")
        .ok()
        .map(cairn_repo::SlotSecret::Passphrase);
    let repo =
        Repository::open(backend, &OpenOptions::default(), secret.as_ref()).expect("open repo");
    let mut files: Vec<(u64, i64)> = (0..n).map(|i| (1000 + i as u64, 1_700_000_000)).collect();
    let mut x = 12345u64;
    let t = Instant::now();
    for rp in 0..points {
        if rp < from {
            mutate(&mut files, &mut x, rp);
            continue;
        }
        let store = WriterStore {
            writer: Mutex::new(repo.writer().expect("writer")),
            ids: Mutex::new(Vec::new()),
        };
        let root = build(&store, &files);
        let mut ids = store.ids.into_inner().unwrap_or_else(|p| p.into_inner());
        store
            .writer
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish()
            .expect("finish");
        ids.sort_unstable();
        ids.dedup();
        let volume = VolumeRecord {
            disk: 0,
            partition: 1,
            size: 1 << 40,
            fs: "ext4".into(),
            catalog_root: Some(cairn_repo::BlobId(root)),
            catalog_blobs: ids.into_iter().map(cairn_repo::BlobId).collect(),
            files: n as u64,
            ..Default::default()
        };
        let m = Manifest {
            vm_name: "vm".into(),
            time: 1_700_000_000 + i64::try_from(rp).expect("rp") * 86_400,
            tags: Vec::new(),
            parent: None,
            disks: Vec::new(),
            stats: BackupStats::default(),
            volumes: vec![volume],
            time_nanos: None,
        };
        repo.save_manifest(&m).expect("manifest");
        mutate(&mut files, &mut x, rp);
    }
    println!(
        "{} restore points of {n} files written in {:?}",
        points.saturating_sub(from),
        t.elapsed()
    );
}

/// Changes 1% of the files (random picks) after restore point `rp`.
fn mutate(files: &mut [(u64, i64)], x: &mut u64, rp: usize) {
    let n = files.len();
    for _ in 0..n / 100 {
        *x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let i = usize::try_from(*x >> 33).unwrap_or(0) % n;
        files[i] = (files[i].0 + 1, 1_700_000_000 + rp as i64 + 1);
    }
}
