//! Restoring one file from a restore point reads from the repository only the file's chunks,
//! the catalog blobs on its path and the disk's chunk list (plus the index files and the
//! manifest, which are not in packs): measured with a counting backend, in bytes.
//!
//! `restore_one_mib_file_from_multi_gib_image` is the same measurement on a multi-GiB image
//! (ignored by default; `CAIRN_RESTORE_GIB=4 cargo test --release -p cairn-engine --test
//! restore_file_reads -- --ignored --nocapture` prints the figures for docs/BENCHMARKS.md).
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_catalog::{Catalog, ExtentReader};
use cairn_engine::{backup, prepare_vm, BackupOptions, RepoReadStore, RestoredDisk, SourceOptions};
use cairn_io::ReadAt;
use cairn_repo::{Backend, BlobId, InitOptions, LocalBackend, OpenOptions, Repository};

/// Bytes and objects read per kind of repository object.
#[derive(Debug, Default)]
struct Counts {
    pack_bytes: AtomicU64,
    pack_reads: AtomicU64,
    index_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    other_bytes: AtomicU64,
}

/// A backend that counts what is read from it.
#[derive(Debug)]
struct CountingBackend<B> {
    inner: B,
    counts: Arc<Counts>,
}

impl<B: Backend> CountingBackend<B> {
    fn note(&self, name: &str, n: usize) {
        let n = n as u64;
        let c = &self.counts;
        let slot = if name.starts_with("packs/") {
            c.pack_reads.fetch_add(1, Ordering::Relaxed);
            &c.pack_bytes
        } else if name.starts_with("index/") {
            &c.index_bytes
        } else if name.starts_with("snapshots/") {
            &c.snapshot_bytes
        } else {
            &c.other_bytes
        };
        slot.fetch_add(n, Ordering::Relaxed);
    }
}

impl<B: Backend> Backend for CountingBackend<B> {
    fn get(&self, name: &str) -> cairn_repo::Result<Vec<u8>> {
        let v = self.inner.get(name)?;
        self.note(name, v.len());
        Ok(v)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_repo::Result<Vec<u8>> {
        let v = self.inner.get_range(name, offset, len)?;
        self.note(name, v.len());
        Ok(v)
    }
    fn put(&self, name: &str, data: &[u8]) -> cairn_repo::Result<()> {
        self.inner.put(name, data)
    }
    fn list(&self, prefix: &str) -> cairn_repo::Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> cairn_repo::Result<()> {
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> cairn_repo::Result<bool> {
        self.inner.exists(name)
    }
    fn size(&self, name: &str) -> cairn_repo::Result<u64> {
        self.inner.size(name)
    }
}

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

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

struct Figures {
    image: u64,
    stored_packs: u64,
    pack_bytes: u64,
    pack_reads: u64,
    fs_pack_bytes: u64,
    file_chunks: u64,
    catalog_path: u64,
    chunk_lists: u64,
    index_bytes: u64,
    snapshot_bytes: u64,
}

/// Builds an ext4 image of `image_mib` MiB holding `others` files of `other_kib` KiB in 20
/// folders and a 1 MiB `/data/target.bin`, backs it up, restores the target from a fresh
/// open of the repository the way `cairn restore-file` does, and returns what was read.
fn measure(dir: &Path, image_mib: u64, others: usize, other_kib: usize) -> Figures {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("data")).unwrap();
    for i in 0..others {
        let d = tree.join(format!("dir{:02}", i % 20));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i:05}.bin")),
            noise(i as u64 + 7, other_kib << 10),
        )
        .unwrap();
    }
    let target = noise(424_242, 1 << 20);
    std::fs::write(tree.join("data/target.bin"), &target).unwrap();
    let img = dir.join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(image_mib << 20)
        .unwrap();
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext4", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&tree).unwrap();

    let repo_dir = dir.join("repo");
    let rp = {
        let repo = Repository::init(
            Arc::new(LocalBackend::new(&repo_dir).unwrap()),
            &InitOptions::default(),
            None,
        )
        .unwrap();
        let prepared =
            prepare_vm(&repo, "vm", &[img.as_path()], &SourceOptions::default()).unwrap();
        let opts = BackupOptions {
            volumes: prepared.volumes,
            ..Default::default()
        };
        backup(&repo, "vm", &prepared.sources, &opts)
            .unwrap()
            .restore_point
    };
    std::fs::remove_file(&img).unwrap();
    let stored_packs: u64 = walk_sizes(&repo_dir.join("packs"));

    // A fresh open, counting from here on.
    let counts = Arc::new(Counts::default());
    let backend = CountingBackend {
        inner: LocalBackend::new(&repo_dir).unwrap(),
        counts: counts.clone(),
    };
    let repo =
        Arc::new(Repository::open(Arc::new(backend), &OpenOptions::default(), None).unwrap());
    let m = repo.load_manifest_file(&rp).unwrap();
    let vol = m
        .volumes
        .iter()
        .find(|v| v.catalog_root.is_some())
        .expect("a catalogued volume")
        .clone();
    let disk = Arc::new(RestoredDisk::open(repo.clone(), &rp, 0).unwrap());
    let store = RepoReadStore(&repo);
    let cat = Catalog::open(&store, vol.catalog_root.unwrap().0).unwrap();
    let entry = cat
        .lookup("/data/target.bin")
        .unwrap()
        .expect("target in catalog");
    let reader = ExtentReader::new(disk.clone(), vol.start, vol.size, &entry).expect("plain");
    let mut got = vec![0u8; usize::try_from(reader.size()).unwrap()];
    reader.read_exact_at(&mut got, 0).unwrap();
    assert!(got == target, "restored bytes differ");
    let pack_bytes = counts.pack_bytes.load(Ordering::Relaxed);
    let pack_reads = counts.pack_reads.load(Ordering::Relaxed);
    // For comparison: the same file through the guest file-system reader (what restore-file
    // did before it read catalog extents), on a fresh disk cache.
    let fresh: Arc<dyn ReadAt> = Arc::new(RestoredDisk::open(repo.clone(), &rp, 0).unwrap());
    let before = counts.pack_bytes.load(Ordering::Relaxed);
    let fs = cairn_guestfs::select_volume(fresh, Some(vol.partition).filter(|p| *p != 0))
        .unwrap()
        .open_fs(&cairn_io::Limits::default())
        .unwrap();
    let node = fs.lookup("/data/target.bin").unwrap();
    let stream = fs.open_stream(node, None).unwrap();
    let mut via_fs = vec![0u8; usize::try_from(stream.size()).unwrap()];
    stream.read_exact_at(&mut via_fs, 0).unwrap();
    assert!(via_fs == target);
    let fs_pack_bytes = counts.pack_bytes.load(Ordering::Relaxed) - before;

    // What the restore needed at least: the file's chunks, the catalog blobs on its path
    // (root and /data) and the chunk lists of the disk, at their stored sizes.
    let idx = repo.index();
    let stored = |id: &BlobId| u64::from(idx.get(id).expect("indexed").length);
    let cs = u64::from(disk.manifest().chunk_size);
    let mut chunks = BTreeSet::new();
    for x in &entry.extents {
        let v = vol.start + x.volume_offset.expect("allocated");
        let end = v + x.len.min(entry.size - x.file_offset);
        for c in v / cs..end.div_ceil(cs) {
            if let Some(id) = disk.manifest().chunks[usize::try_from(c).unwrap()] {
                chunks.insert(id);
            }
        }
    }
    let file_chunks: u64 = chunks.iter().map(stored).sum();
    let root = Catalog::open(&store, vol.catalog_root.unwrap().0).unwrap();
    let data_dir = root.lookup("/data").unwrap().unwrap().child.unwrap();
    let catalog_path = stored(&BlobId(root.root())) + stored(&BlobId(data_dir));
    let chunk_lists: u64 = m.disks[0].lists.iter().map(stored).sum();
    Figures {
        image: image_mib << 20,
        stored_packs,
        pack_bytes,
        pack_reads,
        fs_pack_bytes,
        file_chunks,
        catalog_path,
        chunk_lists,
        index_bytes: counts.index_bytes.load(Ordering::Relaxed),
        snapshot_bytes: counts.snapshot_bytes.load(Ordering::Relaxed),
    }
}

fn walk_sizes(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        total += if md.is_dir() {
            walk_sizes(&e.path())
        } else {
            md.len()
        };
    }
    total
}

fn report(f: &Figures) {
    eprintln!(
        "image {} MiB, {} MiB stored in packs; restoring the 1 MiB file read {} bytes from packs \
         in {} ranges (file chunks {}, catalog blobs on its path {}, chunk lists {}), \
         index files {} bytes, manifest {} bytes; through the file-system reader instead: \
         {} bytes from packs (chunk lists excluded)",
        f.image >> 20,
        f.stored_packs >> 20,
        f.pack_bytes,
        f.pack_reads,
        f.file_chunks,
        f.catalog_path,
        f.chunk_lists,
        f.index_bytes,
        f.snapshot_bytes,
        f.fs_pack_bytes
    );
}

#[test]
fn restoring_one_file_reads_only_its_chunks_and_the_catalog() {
    if !have("mke2fs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 320 MiB sparse image, 40 MiB of other files in 20 folders.
    let f = measure(dir.path(), 320, 160, 256);
    report(&f);
    assert!(
        f.pack_bytes <= f.file_chunks + f.catalog_path + f.chunk_lists,
        "read {} bytes from packs, needed {} + {} + {}",
        f.pack_bytes,
        f.file_chunks,
        f.catalog_path,
        f.chunk_lists
    );
    assert!(f.pack_bytes >= f.file_chunks, "the file's chunks were read");
    assert!(
        f.pack_bytes * 10 < f.stored_packs,
        "a small part of the repository"
    );
}

#[test]
#[ignore = "multi-GiB: run by hand with --release for docs/BENCHMARKS.md"]
fn restore_one_mib_file_from_multi_gib_image() {
    if !have("mke2fs") {
        return;
    }
    let gib: u64 = std::env::var("CAIRN_RESTORE_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    // Half the volume in 1 MiB files.
    let others = usize::try_from(gib * 512).unwrap();
    let f = measure(dir.path(), gib << 10, others, 1024);
    report(&f);
    assert!(f.pack_bytes <= f.file_chunks + f.catalog_path + f.chunk_lists);
}
