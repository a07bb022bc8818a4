//! Repository verification: structure (every referenced blob indexed, every indexed pack
//! present with its recorded size) and optionally data (every blob of a chosen share of the
//! packs fetched, CRC / AEAD checked, decompressed and re-hashed to its id). Each problem
//! names the restore points and disk byte ranges it breaks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::blob;
use crate::frame::{self, FileKind};
use crate::index::pack_name;
use crate::pack::MAX_PACK_BYTES;
use crate::repo::PACK_DIR;
use crate::{BlobId, Manifest, ObjectId, Repository, Result, SnapshotId};

/// Options of [`Repository::verify`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Also read and check blob data.
    pub read_data: bool,
    /// Share of packs whose data is read, 1..=100 (only with `read_data`).
    pub read_data_percent: u8,
    /// Seed choosing the packs of a partial read (`None`: random).
    pub seed: Option<u64>,
    /// Reader threads for `read_data` (0: 2).
    pub threads: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            read_data: false,
            read_data_percent: 100,
            seed: None,
            threads: 0,
        }
    }
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// An index file does not decode or fails its CRC / authentication.
    IndexFile,
    /// A manifest does not decode or fails its CRC / authentication.
    Manifest,
    /// A manifest references a blob no index lists.
    MissingBlob,
    /// An indexed pack is absent.
    MissingPack,
    /// A pack's size differs from the one indexed.
    PackSize,
    /// A pack's header, CRC or trailer is damaged (its blobs are checked one by one).
    PackFile,
    /// A blob fails its CRC, authentication, decompression or content hash.
    DamagedBlob,
    /// A pin object (`pins/<id>`) does not decode or fails its CRC / authentication (its
    /// restore point stays protected: pins count by name).
    Pin,
}

/// A restore point disk broken by a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// Restore point.
    pub snapshot: SnapshotId,
    /// Its VM.
    pub vm_name: String,
    /// Its time.
    pub time: i64,
    /// Disk position in the manifest.
    pub disk_index: usize,
    /// Disk label.
    pub disk_label: String,
    /// Byte ranges `[start, end)` of the disk that cannot be restored, merged and sorted.
    pub ranges: Vec<(u64, u64)>,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Kind.
    pub kind: ProblemKind,
    /// The object concerned.
    pub object: String,
    /// What is wrong.
    pub detail: String,
    /// Blobs lost by it.
    pub blobs: Vec<BlobId>,
    /// Restore points and ranges those blobs break.
    pub affected: Vec<Affected>,
}

/// Result of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Readable restore points.
    pub snapshots: usize,
    /// Index files.
    pub index_files: usize,
    /// Indexed packs.
    pub packs: usize,
    /// Packs whose data was read.
    pub packs_read: usize,
    /// Blobs fetched and checked.
    pub blobs_checked: u64,
    /// Bytes read for that.
    pub bytes_read: u64,
    /// Problems, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// No problem found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn chosen(pack: &ObjectId, seed: u64, percent: u8) -> bool {
    if percent >= 100 {
        return true;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&pack.0);
    h.finalize() % 100 < u32::from(percent)
}

impl Repository {
    /// Verifies the repository; see the module docs. Errors only when the backend cannot be
    /// listed; damage is reported in the [`VerifyReport`].
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        self.reload_index()?;
        report.index_files = self.list_index_files()?.len();
        for p in self.index_problems() {
            report.problems.push(Problem {
                kind: ProblemKind::IndexFile,
                object: p.name,
                detail: p.error,
                blobs: Vec::new(),
                affected: Vec::new(),
            });
        }
        let listing = self.snapshots()?;
        let (snaps, bad) = (listing.readable, listing.unreadable);
        report.snapshots = snaps.len();
        for (name, e) in bad {
            report.problems.push(Problem {
                kind: ProblemKind::Manifest,
                object: name,
                detail: e.to_string(),
                blobs: Vec::new(),
                affected: Vec::new(),
            });
        }

        // Referenced blobs must be indexed.
        {
            let idx = self.index();
            let mut missing: BTreeMap<BlobId, ()> = BTreeMap::new();
            for (sid, m) in &snaps {
                // Configuration files of VM bundles (in the manifest head only).
                if let Ok(f) = self.load_manifest_file(sid) {
                    for id in f.vm_blobs() {
                        if !idx.contains(id) {
                            missing.insert(*id, ());
                        }
                    }
                }
                for d in &m.disks {
                    for id in d.chunks.iter().flatten() {
                        if !idx.contains(id) {
                            missing.insert(*id, ());
                        }
                    }
                }
                for v in &m.volumes {
                    for id in &v.catalog_blobs {
                        if !idx.contains(id) {
                            missing.insert(*id, ());
                        }
                    }
                }
            }
            for id in missing.into_keys() {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingBlob,
                    object: format!("blob {id}"),
                    detail: "referenced by a restore point but in no index file".into(),
                    blobs: vec![id],
                    affected: Vec::new(),
                });
            }
        }

        // Indexed packs must exist with their size.
        let packs: Vec<(ObjectId, u64)> = self.index().packs().to_vec();
        report.packs = packs.len();
        let blobs_of = |pos: usize| -> Vec<BlobId> {
            let idx = self.index();
            idx.entries()
                .iter()
                .filter(|e| e.pack as usize == pos)
                .map(|e| e.id)
                .collect()
        };
        let present: HashSet<String> = self.backend().list(PACK_DIR)?.into_iter().collect();
        let mut readable = Vec::new();
        for (pos, (id, size)) in packs.iter().enumerate() {
            let name = pack_name(id);
            if !present.contains(&name) {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingPack,
                    object: name,
                    detail: "indexed pack is absent".into(),
                    blobs: blobs_of(pos),
                    affected: Vec::new(),
                });
                continue;
            }
            match self.backend().size(&name) {
                Ok(s) if s == *size => readable.push(pos),
                Ok(s) => report.problems.push(Problem {
                    kind: ProblemKind::PackSize,
                    object: name,
                    detail: format!("size {s}, index says {size}"),
                    blobs: blobs_of(pos),
                    affected: Vec::new(),
                }),
                Err(e) => report.problems.push(Problem {
                    kind: ProblemKind::MissingPack,
                    object: name,
                    detail: e.to_string(),
                    blobs: blobs_of(pos),
                    affected: Vec::new(),
                }),
            }
        }

        if opts.read_data {
            let seed = opts.seed.unwrap_or_else(|| {
                ObjectId::random().map_or(0, |r| {
                    u64::from_le_bytes(r.0[..8].try_into().unwrap_or([0; 8]))
                })
            });
            let percent = opts.read_data_percent.clamp(1, 100);
            let selected: Vec<usize> = readable
                .into_iter()
                .filter(|&pos| chosen(&packs[pos].0, seed, percent))
                .collect();
            // Entries grouped by pack.
            let mut by_pack: HashMap<u32, Vec<crate::IndexEntry>> = HashMap::new();
            for e in self.index().entries() {
                by_pack.entry(e.pack).or_default().push(*e);
            }
            let next = AtomicUsize::new(0);
            let out = Mutex::new((Vec::new(), 0u64, 0u64, 0usize));
            let threads = if opts.threads == 0 {
                2
            } else {
                opts.threads.min(64)
            };
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&pos) = selected.get(i) else { break };
                        let entries = by_pack
                            .get(&u32::try_from(pos).unwrap_or(u32::MAX))
                            .map_or(&[][..], |v| &v[..]);
                        let (probs, blobs, bytes) = self.check_pack(&packs[pos].0, entries);
                        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                        o.0.extend(probs);
                        o.1 += blobs;
                        o.2 += bytes;
                        o.3 += 1;
                    });
                }
            });
            let (probs, blobs, bytes, n) = out.into_inner().unwrap_or_else(|p| p.into_inner());
            report.problems.extend(probs);
            report.blobs_checked = blobs;
            report.bytes_read = bytes;
            report.packs_read = n;
        }

        attach_affected(&mut report.problems, &snaps);
        for id in self.pinned_ids()? {
            if let Err(e) = self.pin_of(&id) {
                report.problems.push(Problem {
                    kind: ProblemKind::Pin,
                    object: format!("{}{id}", crate::PIN_DIR),
                    detail: e.to_string(),
                    blobs: Vec::new(),
                    affected: Vec::new(),
                });
            }
        }
        Ok(report)
    }

    fn check_pack(&self, id: &ObjectId, entries: &[crate::IndexEntry]) -> (Vec<Problem>, u64, u64) {
        let name = pack_name(id);
        let mut probs = Vec::new();
        let all = || entries.iter().map(|e| e.id).collect::<Vec<_>>();
        let file = match self.backend().size(&name).and_then(|s| {
            if s > MAX_PACK_BYTES {
                Err(crate::Error::BadLength {
                    name: name.clone(),
                    offset: 0,
                    field: "pack size",
                    found: s,
                    expected: format!("at most {MAX_PACK_BYTES}"),
                })
            } else {
                self.backend().get(&name)
            }
        }) {
            Ok(f) => f,
            Err(e) => {
                probs.push(Problem {
                    kind: ProblemKind::MissingPack,
                    object: name,
                    detail: e.to_string(),
                    blobs: all(),
                    affected: Vec::new(),
                });
                return (probs, 0, 0);
            }
        };
        if let Err(e) = frame::decode(&name, FileKind::Pack, &file, MAX_PACK_BYTES) {
            probs.push(Problem {
                kind: ProblemKind::PackFile,
                object: name.clone(),
                detail: e.to_string(),
                blobs: Vec::new(),
                affected: Vec::new(),
            });
        }
        let mut checked = 0;
        for e in entries {
            let start = e.offset as usize;
            let end = start + e.length as usize;
            let res = match file.get(start..end) {
                Some(stored) => blob::decode(
                    self.crypto(),
                    &name,
                    e.kind,
                    &e.id,
                    e.raw_length,
                    e.crc32,
                    stored,
                )
                .map(|_| ()),
                None => Err(crate::Error::BlobCorrupt {
                    id: e.id,
                    pack: name.clone(),
                    why: "range outside the pack".into(),
                }),
            };
            checked += 1;
            if let Err(err) = res {
                probs.push(Problem {
                    kind: ProblemKind::DamagedBlob,
                    object: name.clone(),
                    detail: err.to_string(),
                    blobs: vec![e.id],
                    affected: Vec::new(),
                });
            }
        }
        (probs, checked, file.len() as u64)
    }
}

/// Fills each problem's `affected` from the manifests' chunk lists.
fn attach_affected(problems: &mut [Problem], snaps: &[(SnapshotId, Manifest)]) {
    let mut owner: HashMap<BlobId, Vec<usize>> = HashMap::new();
    for (i, p) in problems.iter().enumerate() {
        for b in &p.blobs {
            owner.entry(*b).or_default().push(i);
        }
    }
    if owner.is_empty() {
        return;
    }
    for (sid, m) in snaps {
        for (di, d) in m.disks.iter().enumerate() {
            // problem index -> ranges
            let mut hits: BTreeMap<usize, Vec<(u64, u64)>> = BTreeMap::new();
            for (ci, c) in d.chunks.iter().enumerate() {
                let Some(id) = c else { continue };
                if let Some(ps) = owner.get(id) {
                    let r = d.chunk_range(ci);
                    for &p in ps {
                        let v = hits.entry(p).or_default();
                        match v.last_mut() {
                            Some(last) if last.1 == r.0 => last.1 = r.1,
                            _ => v.push(r),
                        }
                    }
                }
            }
            for (p, ranges) in hits {
                problems[p].affected.push(Affected {
                    snapshot: *sid,
                    vm_name: m.vm_name.clone(),
                    time: m.time,
                    disk_index: di,
                    disk_label: d.label.clone(),
                    ranges,
                });
            }
        }
    }
}
