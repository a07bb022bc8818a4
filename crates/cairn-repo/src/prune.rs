//! Prune: removes blobs no restore point needs and repacks mostly-empty packs, safely while
//! backups run and crash-safe at every step. The protocol, and why it is safe, is in
//! `docs/prune.md`; in short:
//!
//! * **Mark.** A pack whose live share (bytes of blobs some restore point references) is
//!   below the threshold is *retired*: its live blobs are copied into new packs (new packs,
//!   then their index file), the index files naming it are rewritten without it (new file
//!   first, old one deleted after), and then a *pending* object `pending/<id>` records the
//!   retired packs with their entries and the time. Packs no index names (interrupted or
//!   running backups) are recorded there too. Nothing is deleted in the run that marks.
//! * **Sweep.** A later run, at least the grace period after the mark, deletes each pending
//!   pack unless an index names it again, or a restore point now references one of its blobs
//!   that no index has (a backup that started before the mark and committed after it): then
//!   the pack is indexed again (resurrected) instead.
//!
//! Backups that start after the mark cannot see the retired blobs (they are in no index),
//! so they store their own copy; backups that started before it commit within the grace
//! period, and the sweep sees their manifests.
//!
//! Live means referenced by a restore point, or named by the caller's `extra_live`
//! ([`Repository::prune_keeping`]): derived data such as the find index.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::crypto::Sealer;
use crate::frame::{self, FileKind, HEADER_LEN};
use crate::index::{pack_name, IndexFile, IndexPack, MAX_INDEX_FILE_BYTES};
use crate::pack::{PackBuilder, MAX_PACK_BYTES};
use crate::repo::{INDEX_DIR, PACK_DIR};
use crate::{
    BlobEntry, BlobId, BlobKind, EncodedBlob, Encryption, Error, LocalBackend, ObjectId,
    Repository, Result, SnapshotId,
};

/// Folder of pending-deletion objects written by prune.
pub const PENDING_DIR: &str = "pending/";
/// Magic of a pending-deletion object.
pub const PENDING_MAGIC: &[u8; 8] = b"CAIRNPND";
/// Largest pending-deletion payload accepted: like an index file.
pub const MAX_PENDING_FILE_BYTES: u64 = MAX_INDEX_FILE_BYTES;
/// Blob entries per written index or pending file: 2^21 entries stay far below
/// [`MAX_INDEX_FILE_BYTES`] (at most ~60 bytes each in postcard).
pub const ENTRIES_PER_FILE: usize = 1 << 21;

/// Options of [`prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// How long a retired pack stays on disk before a later run may delete it (default
    /// 24 h). Must exceed the longest backup run (see `docs/prune.md`). `0` or less: the
    /// same run also deletes what it marks (only when no backup can be running).
    pub grace_seconds: i64,
    /// Repack packs with less than this share (percent) of live bytes (default 50; 0 only
    /// retires packs with no live blob).
    pub repack_threshold_percent: u8,
    /// Prune's clock (Unix seconds); the system clock when `None`.
    pub now: Option<i64>,
}

/// Default grace period: 24 hours.
pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
/// Default repack threshold: packs with less than half their bytes live.
pub const DEFAULT_REPACK_THRESHOLD_PERCENT: u8 = 50;

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            grace_seconds: DEFAULT_GRACE_SECONDS,
            repack_threshold_percent: DEFAULT_REPACK_THRESHOLD_PERCENT,
            now: None,
        }
    }
}

/// What [`prune`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Packs deleted (marked by an earlier run at least the grace period ago), orphans
    /// included.
    pub packs_deleted: u64,
    /// Packs retired this run whose live blobs were copied into new packs.
    pub packs_repacked: u64,
    /// Unreferenced blobs dropped from the index this run.
    pub blobs_removed: u64,
    /// Bytes of the packs deleted.
    pub bytes_freed: u64,
    /// Index files replaced by rewritten ones (or deleted when nothing was left in them).
    pub index_files_rewritten: u64,
    /// Unindexed packs (interrupted backups) deleted.
    pub orphans_deleted: u64,
    /// Packs marked for deletion and kept until their grace period ends.
    pub kept_for_grace: u64,
    /// Indexed blobs no restore point references that were kept because the caller's
    /// `extra_live` named them ([`Repository::prune_keeping`]: the find index's pieces).
    pub cache_blobs_kept: u64,
    /// Pins removed because their restore point no longer exists
    /// ([`Repository::remove_orphan_pins`]); pins of existing restore points stay.
    pub pins_removed: u64,
}

impl PruneReport {
    fn add(&mut self, o: &PruneReport) {
        self.packs_deleted += o.packs_deleted;
        self.packs_repacked += o.packs_repacked;
        self.blobs_removed += o.blobs_removed;
        self.bytes_freed += o.bytes_freed;
        self.index_files_rewritten += o.index_files_rewritten;
        self.orphans_deleted += o.orphans_deleted;
        self.kept_for_grace = o.kept_for_grace;
        self.cache_blobs_kept = o.cache_blobs_kept;
    }
}

/// A pack no index named when it was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnindexedPack {
    /// Pack id.
    pub id: ObjectId,
    /// Its size then.
    pub size: u64,
}

/// Payload of a pending-deletion object (`pending/<id>`, see `docs/formats/repository.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PendingFile {
    /// When the packs were marked (prune's clock, Unix seconds), after they left the index.
    pub time: i64,
    /// Retired packs with the entries they had in the index.
    pub packs: Vec<IndexPack>,
    /// Packs no index named.
    pub unindexed: Vec<UnindexedPack>,
}

impl PendingFile {
    /// Checks every pack and entry.
    pub fn validate(&self, name: &str, overhead: usize) -> Result<()> {
        IndexFile {
            packs: self.packs.clone(),
        }
        .validate(name, overhead)?;
        for u in &self.unindexed {
            if u.size > MAX_PACK_BYTES {
                return Err(Error::malformed(
                    name,
                    format!("unindexed pack {} size {} too large", u.id, u.size),
                ));
            }
        }
        Ok(())
    }
}

fn aad(id: &ObjectId) -> Vec<u8> {
    let mut a = PENDING_MAGIC.to_vec();
    a.extend_from_slice(&id.0);
    a
}

pub(crate) fn encode_framed(magic: &[u8; 8], sealed: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&frame::VERSION.to_le_bytes());
    out.extend_from_slice(&(if sealed { frame::FLAG_SEALED } else { 0 }).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let c = frame::crc(&out[..20], payload);
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a framed file with its own magic (`pending/`, `pins/`: the frame of
/// `docs/formats/repository.md`) and returns the plain payload, opened with `aad` when sealed.
pub(crate) fn decode_framed(
    crypto: &crate::crypto::Crypto,
    magic: &[u8; 8],
    magic_str: &'static str,
    name: &str,
    aad: &[u8],
    bytes: &[u8],
    max_payload: u64,
) -> Result<Vec<u8>> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated {
            name: name.into(),
            len: bytes.len() as u64,
            need: HEADER_LEN as u64,
        });
    }
    let mut found = [0u8; 8];
    found.copy_from_slice(&bytes[..8]);
    if &found != magic {
        return Err(Error::BadMagic {
            name: name.into(),
            offset: 0,
            found,
            expected: magic_str,
        });
    }
    let le16 = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let version = le16(8);
    if version != frame::VERSION {
        return Err(Error::Unsupported {
            name: name.into(),
            offset: 8,
            field: "version",
            found: u64::from(version),
        });
    }
    let flags = le16(10);
    if flags & !frame::FLAG_SEALED != 0 {
        return Err(Error::Unsupported {
            name: name.into(),
            offset: 10,
            field: "flags",
            found: u64::from(flags),
        });
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&bytes[12..20]);
    let len = u64::from_le_bytes(l);
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if len != actual || len > max_payload {
        return Err(Error::BadLength {
            name: name.into(),
            offset: 12,
            field: "payload length",
            found: len,
            expected: format!("{actual} (the rest of the file), at most {max_payload}"),
        });
    }
    let mut c = [0u8; 4];
    c.copy_from_slice(&bytes[20..24]);
    let stored = u32::from_le_bytes(c);
    let computed = frame::crc(&bytes[..20], &bytes[HEADER_LEN..]);
    if stored != computed {
        return Err(Error::Checksum {
            name: name.into(),
            stored,
            computed,
        });
    }
    let sealed = flags & frame::FLAG_SEALED != 0;
    if sealed != (crypto.encryption() != Encryption::None) {
        return Err(Error::Crypto {
            name: name.into(),
            why: "sealing does not match the repository's encryption".into(),
        });
    }
    if sealed {
        crypto.open(name, aad, &bytes[HEADER_LEN..])
    } else {
        Ok(bytes[HEADER_LEN..].to_vec())
    }
}

/// Decodes a pending-deletion object (`crypto` is the repository's); `id` is the object's id.
pub(crate) fn decode_pending(
    crypto: &crate::crypto::Crypto,
    name: &str,
    id: &ObjectId,
    bytes: &[u8],
) -> Result<PendingFile> {
    let payload = decode_framed(
        crypto,
        PENDING_MAGIC,
        "CAIRNPND",
        name,
        &aad(id),
        bytes,
        MAX_PENDING_FILE_BYTES,
    )?;
    let f: PendingFile = postcard::from_bytes(&payload)
        .map_err(|e| Error::malformed(name, format!("postcard: {e}")))?;
    f.validate(name, crypto.overhead())?;
    Ok(f)
}

pub(crate) fn seal_payload<T: Serialize>(
    repo: &Repository,
    sealer: &Sealer,
    aad: &[u8],
    value: &T,
) -> Result<(bool, Vec<u8>)> {
    let plain = postcard::to_stdvec(value).map_err(|e| Error::Invalid(format!("postcard: {e}")))?;
    if repo.crypto().encryption() == Encryption::None {
        Ok((false, plain))
    } else {
        Ok((true, crate::crypto::seal(sealer, aad, &plain)?))
    }
}

fn id_of(name: &str) -> Result<ObjectId> {
    name.rsplit('/')
        .next()
        .unwrap_or(name)
        .parse()
        .map_err(|_| Error::malformed(name, "object name is not a 64-digit hex id"))
}

/// Splits packs into groups of at most [`ENTRIES_PER_FILE`] entries.
fn groups(packs: Vec<IndexPack>) -> Vec<Vec<IndexPack>> {
    let mut out: Vec<Vec<IndexPack>> = Vec::new();
    let mut n = 0usize;
    for p in packs {
        if out.is_empty() || n + p.blobs.len() > ENTRIES_PER_FILE {
            out.push(Vec::new());
            n = 0;
        }
        n += p.blobs.len();
        if let Some(last) = out.last_mut() {
            last.push(p);
        }
    }
    out
}

/// Everything one run writes goes through here, so a dry run writes nothing.
struct Io<'r> {
    repo: &'r Repository,
    sealer: Sealer,
    dry_run: bool,
}

impl Io<'_> {
    fn write_index(&self, packs: Vec<IndexPack>) -> Result<()> {
        for g in groups(packs) {
            let id = ObjectId::random()?;
            let mut a = FileKind::Index.magic().to_vec();
            a.extend_from_slice(&id.0);
            let (sealed, payload) =
                seal_payload(self.repo, &self.sealer, &a, &IndexFile { packs: g })?;
            if !self.dry_run {
                self.repo.backend().put(
                    &format!("{INDEX_DIR}{id}"),
                    &frame::encode(FileKind::Index, sealed, &payload),
                )?;
            }
        }
        Ok(())
    }

    fn write_pending(
        &self,
        time: i64,
        packs: Vec<IndexPack>,
        unindexed: Vec<UnindexedPack>,
    ) -> Result<()> {
        let mut files: Vec<PendingFile> = groups(packs)
            .into_iter()
            .map(|g| PendingFile {
                time,
                packs: g,
                unindexed: Vec::new(),
            })
            .collect();
        for part in unindexed.chunks(ENTRIES_PER_FILE) {
            files.push(PendingFile {
                time,
                packs: Vec::new(),
                unindexed: part.to_vec(),
            });
        }
        for f in files {
            let id = ObjectId::random()?;
            let (sealed, payload) = seal_payload(self.repo, &self.sealer, &aad(&id), &f)?;
            if !self.dry_run {
                self.repo.backend().put(
                    &format!("{PENDING_DIR}{id}"),
                    &encode_framed(PENDING_MAGIC, sealed, &payload),
                )?;
            }
        }
        Ok(())
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        if self.dry_run {
            Ok(())
        } else {
            self.repo.backend().put(name, data)
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        if self.dry_run {
            Ok(())
        } else {
            self.repo.backend().delete(name)
        }
    }
}

fn read_pendings(repo: &Repository) -> Result<Vec<(String, PendingFile)>> {
    let backend = repo.backend();
    let mut pendings = Vec::new();
    for name in backend.list(PENDING_DIR)? {
        let id = id_of(&name)?;
        // Swept by a prune meanwhile (this may run in a backup, concurrently).
        let size = match backend.size(&name) {
            Ok(s) => s,
            Err(_) if !backend.exists(&name)? => continue,
            Err(e) => return Err(e),
        };
        if size > MAX_PENDING_FILE_BYTES + HEADER_LEN as u64 {
            return Err(Error::BadLength {
                name,
                offset: 0,
                field: "file size",
                found: size,
                expected: format!("at most {}", MAX_PENDING_FILE_BYTES + HEADER_LEN as u64),
            });
        }
        let bytes = match backend.get(&name) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => continue,
            Err(_) if !backend.exists(&name)? => continue,
            Err(e) => return Err(e),
        };
        let f = decode_pending(repo.crypto(), &name, &id, &bytes)?;
        pendings.push((name, f));
    }
    Ok(pendings)
}

/// Makes `wanted` readable again when a prune retired the packs holding them after the
/// backup that reuses them started: packs of pending-deletion objects holding a wanted blob
/// no index names are indexed again, and, for blobs still missing (a prune killed before it
/// wrote its pending object), packs no index names that hold them. A backup calls this
/// after committing its manifest (with the blob ids the manifest references); prune does the
/// same for a restore point whose chunk lists it cannot read. Returns how many packs were
/// indexed again.
pub fn reindex_retired(repo: &Repository, wanted: &[BlobId]) -> Result<u64> {
    repo.reload_index()?;
    let missing: HashSet<BlobId> = {
        let idx = repo.index();
        wanted
            .iter()
            .filter(|b| !idx.contains(b))
            .copied()
            .collect()
    };
    if missing.is_empty() {
        return Ok(0);
    }
    let mut back: Vec<IndexPack> = Vec::new();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    for (_, pf) in read_pendings(repo)? {
        for p in pf.packs {
            if seen.contains(&p.id) || !p.blobs.iter().any(|b| missing.contains(&b.id)) {
                continue;
            }
            if repo.backend().exists(&pack_name(&p.id))? {
                seen.insert(p.id);
                back.push(p);
            }
        }
    }
    // A prune killed between rewriting the index files and writing its pending object
    // leaves retired packs in no index and no pending object: look for what is still
    // missing in every pack no index names (a rare repair path: it reads those packs).
    let mut still: HashSet<BlobId> = missing.clone();
    for p in &back {
        for b in &p.blobs {
            still.remove(&b.id);
        }
    }
    if !still.is_empty() {
        let indexed: HashSet<ObjectId> = repo.index().packs().iter().map(|(id, _)| *id).collect();
        for name in repo.backend().list(PACK_DIR)? {
            if still.is_empty() {
                break;
            }
            let Ok(id) = id_of(&name) else { continue };
            if indexed.contains(&id) || seen.contains(&id) {
                continue;
            }
            let bytes = match repo.backend().get(&name) {
                Ok(b) => b,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            // A pack being written by a running backup is complete once named (puts are
            // atomic); a damaged one is left to verify.
            let Ok(blobs) = crate::pack::parse_pack(&name, &id, &bytes, repo.crypto()) else {
                continue;
            };
            if blobs.iter().any(|b| still.contains(&b.id)) {
                for b in &blobs {
                    still.remove(&b.id);
                }
                seen.insert(id);
                back.push(IndexPack {
                    id,
                    size: bytes.len() as u64,
                    blobs,
                });
            }
        }
    }
    let n = back.len() as u64;
    if !back.is_empty() {
        let io = Io {
            repo,
            sealer: repo.crypto().sealer()?,
            dry_run: false,
        };
        io.write_index(back)?;
        repo.reload_index()?;
    }
    Ok(n)
}

/// What [`referenced`] found.
enum Referenced {
    /// Every blob some restore point needs, and the restore points read.
    Blobs(HashSet<BlobId>, HashSet<SnapshotId>),
    /// A restore point needed blobs of retired packs (a backup that reused them committed
    /// after the mark and has not re-indexed them yet): they were indexed again; read again.
    Reindexed,
}

/// Every blob some restore point needs: chunks, chunk-list blobs, catalog and VM blobs. A
/// manifest that cannot be read stops prune (its blobs would look unreferenced); one deleted
/// meanwhile is skipped. A manifest whose chunk lists sit in retired packs gets those packs
/// indexed again (as the backup that wrote it does right after its commit) when `reindex`.
fn referenced(repo: &Repository, reindex: bool) -> Result<Referenced> {
    let mut out = HashSet::new();
    let ids: Vec<SnapshotId> = repo.list_snapshots()?;
    let read: HashSet<SnapshotId> = ids.iter().copied().collect();
    for id in ids {
        let mut attempt = 0;
        loop {
            let res = repo
                .load_manifest_file(&id)
                .and_then(|f| Ok((f, repo.load_manifest(&id)?)));
            match res {
                Ok((f, m)) => {
                    for d in &f.disks {
                        out.extend(d.lists.iter().copied());
                    }
                    for d in &m.disks {
                        out.extend(d.chunks.iter().flatten().copied());
                    }
                    for v in &m.volumes {
                        out.extend(v.catalog_root);
                        out.extend(v.sd_table);
                        out.extend(v.catalog_blobs.iter().copied());
                    }
                    out.extend(f.vm_blobs().copied());
                    break;
                }
                Err(e) => {
                    if !repo
                        .backend()
                        .exists(&format!("{}{id}", crate::SNAPSHOT_DIR))?
                    {
                        break;
                    }
                    // A backup that committed after the index was loaded: its chunk lists
                    // are in index files written since. Reload once.
                    if attempt == 0 {
                        attempt += 1;
                        repo.reload_index()?;
                        continue;
                    }
                    // Its chunk lists are in packs a prune retired after the backup saw
                    // them: index those packs again, then the caller reads everything anew.
                    if reindex && matches!(e, Error::BlobMissing(_)) {
                        if let Ok(f) = repo.load_manifest_file(&id) {
                            let lists: Vec<BlobId> = f
                                .disks
                                .iter()
                                .flat_map(|d| d.lists.iter().copied())
                                .collect();
                            if reindex_retired(repo, &lists)? > 0 {
                                return Ok(Referenced::Reindexed);
                            }
                        }
                    }
                    return Err(Error::Invalid(format!(
                        "restore point {id} cannot be read ({e}); prune stops so as not to \
                         delete what it references (run verify)"
                    )));
                }
            }
        }
    }
    Ok(Referenced::Blobs(out, read))
}

/// Prunes the repository; see the module docs and `docs/prune.md`. Run at most one prune
/// at a time per repository (backups may run). Keeps only what restore points reference;
/// [`Repository::prune_keeping`] also keeps blobs a caller's derived data names. Also
/// removes pins whose restore point is gone ([`Repository::remove_orphan_pins`]).
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    repo.prune_keeping(opts, &|_| Vec::new())
}

impl Repository {
    /// [`prune`], treating the blobs `extra_live` returns as live too: they are neither
    /// dropped from the index nor deleted, and a pack holding one is repacked like a pack
    /// holding a referenced blob. It is for derived data the repository stores as blobs
    /// that no restore point references, such as the find index of `cairn find` (its
    /// pointer object names the pieces; this crate does not read it). It is called once
    /// per pass, after the index files and manifests are read, so a pointer replaced while
    /// prune runs is seen by the next pass (a piece of the new pointer sitting in a pack
    /// this pass retires is indexed again, as a restore point's blob would be). It returns
    /// ids, not a `Result`: a cache that cannot be read names nothing, it never stops
    /// prune. Ids not in the index are ignored.
    pub fn prune_keeping(
        &self,
        opts: &PruneOptions,
        extra_live: &dyn Fn(&Repository) -> Vec<BlobId>,
    ) -> Result<PruneReport> {
        let mut report = run(self, opts, extra_live)?;
        if opts.grace_seconds <= 0 && !opts.dry_run {
            // Sweep what this run just marked.
            let second = run(self, opts, extra_live)?;
            report.add(&second);
        }
        // Pins of restore points that are gone: prune is the pass that reconciles what
        // the repository names with what exists (forget refuses pinned points, so it never
        // makes such a pin itself; a pin racing a forget does, after the forget ended).
        report.pins_removed = self.remove_orphan_pins(opts.dry_run)?.len() as u64;
        Ok(report)
    }
}

/// Attempts of [`read_state`]: each one that had to index retired packs again starts over
/// (so this run sees them as indexed); more than a few means restore points keep changing
/// under prune faster than it can read them.
const READ_STATE_ATTEMPTS: usize = 4;

/// Steps 1-3 of a run: index files, pending objects, then every blob restore points need.
#[allow(clippy::type_complexity)]
fn read_state(
    repo: &Repository,
    dry_run: bool,
) -> Result<(
    Vec<(String, IndexFile)>,
    Vec<(String, PendingFile)>,
    HashSet<BlobId>,
    HashSet<SnapshotId>,
)> {
    for _ in 0..READ_STATE_ATTEMPTS {
        // 1. Index files, one by one (prune rewrites files). An unreadable one stops prune:
        //    the packs it names would look unindexed.
        let mut files: Vec<(String, IndexFile)> = Vec::new();
        for name in repo.list_index_files()? {
            let f = repo.read_index_file(&name).map_err(|e| {
                Error::Invalid(format!(
                    "index file {name} cannot be read ({e}); prune stops (run verify)"
                ))
            })?;
            files.push((name, f));
        }
        // 2. Pending-deletion objects.
        let pendings = read_pendings(repo)?;
        // 3. Manifests, after the index files: a manifest committed later references only
        //    blobs in index files this run does not touch, or blobs its backup saw before
        //    (the grace period covers those).
        repo.reload_index()?;
        match referenced(repo, !dry_run)? {
            Referenced::Blobs(live, read) => return Ok((files, pendings, live, read)),
            Referenced::Reindexed => continue,
        }
    }
    Err(Error::Invalid(format!(
        "restore points kept changing while prune read them ({READ_STATE_ATTEMPTS} attempts); \
         prune stops, run it again"
    )))
}

fn run(
    repo: &Repository,
    opts: &PruneOptions,
    extra_live: &dyn Fn(&Repository) -> Vec<BlobId>,
) -> Result<PruneReport> {
    let now = opts.now.unwrap_or_else(crate::repo::now);
    let backend = repo.backend().clone();
    let io = Io {
        repo,
        sealer: repo.crypto().sealer()?,
        dry_run: opts.dry_run,
    };
    let mut report = PruneReport::default();

    let (files, pendings, mut live, read) = read_state(repo, opts.dry_run)?;
    // Blobs the caller's derived data names (read after the index files, like manifests).
    let extra: HashSet<BlobId> = extra_live(repo)
        .into_iter()
        .filter(|b| !live.contains(b))
        .collect();
    let mut present: HashSet<String> = backend.list(PACK_DIR)?.into_iter().collect();

    // Index state: pack -> its entries (first listing wins; packs are immutable).
    let mut packs: HashMap<ObjectId, IndexPack> = HashMap::new();
    for (_, f) in &files {
        for p in &f.packs {
            packs.entry(p.id).or_insert_with(|| p.clone());
        }
    }
    let mut indexed_blobs: HashSet<BlobId> = packs
        .values()
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    report.cache_blobs_kept = extra.iter().filter(|b| indexed_blobs.contains(b)).count() as u64;
    live.extend(extra);

    // 4. Sweep pending objects older than the grace period.
    let mut resurrect: Vec<IndexPack> = Vec::new();
    let mut to_delete: Vec<(String, u64, bool)> = Vec::new();
    let mut swept: Vec<String> = Vec::new();
    let ripe = |pf: &PendingFile| pf.time <= now.saturating_sub(opts.grace_seconds);
    // Packs of pending objects not yet ripe: never deleted nor retired again in this run.
    let mut young_packs: HashSet<ObjectId> = pendings
        .iter()
        .filter(|(_, pf)| !ripe(pf))
        .flat_map(|(_, pf)| {
            pf.packs
                .iter()
                .map(|p| p.id)
                .chain(pf.unindexed.iter().map(|u| u.id))
        })
        .collect();
    for (name, pf) in &pendings {
        if !ripe(pf) {
            // A backup that reused a blob of a pack retired after it started has committed:
            // index the pack again now so its restore point reads (the file stays, so the
            // pack is not retired again before the file is swept).
            for p in &pf.packs {
                if packs.contains_key(&p.id) || !present.contains(&pack_name(&p.id)) {
                    continue;
                }
                if p.blobs
                    .iter()
                    .any(|b| live.contains(&b.id) && !indexed_blobs.contains(&b.id))
                {
                    indexed_blobs.extend(p.blobs.iter().map(|b| b.id));
                    packs.insert(p.id, p.clone());
                    resurrect.push(p.clone());
                }
            }
            continue;
        }
        swept.push(name.clone());
        let mut cands: Vec<(IndexPack, bool)> =
            pf.packs.iter().map(|p| (p.clone(), false)).collect();
        for u in &pf.unindexed {
            // What an unindexed pack holds is in its own directory.
            let pname = pack_name(&u.id);
            if packs.contains_key(&u.id) || !present.contains(&pname) {
                continue;
            }
            let entries = backend
                .get(&pname)
                .and_then(|b| crate::pack::parse_pack(&pname, &u.id, &b, repo.crypto()));
            let blobs = entries.unwrap_or_else(|e| {
                debug!("unindexed pack {pname} unreadable ({e}); deleting it");
                Vec::new()
            });
            cands.push((
                IndexPack {
                    id: u.id,
                    size: u.size,
                    blobs,
                },
                true,
            ));
        }
        for (p, orphan) in cands {
            let pname = pack_name(&p.id);
            if packs.contains_key(&p.id) || !present.contains(&pname) || young_packs.contains(&p.id)
            {
                continue;
            }
            let needed = p
                .blobs
                .iter()
                .any(|b| live.contains(&b.id) && !indexed_blobs.contains(&b.id));
            if needed {
                warn!("pack {pname} holds blobs a restore point committed after the mark needs: indexing it again");
                indexed_blobs.extend(p.blobs.iter().map(|b| b.id));
                packs.insert(p.id, p.clone());
                resurrect.push(p);
            } else {
                let size = backend.size(&pname).unwrap_or(p.size);
                to_delete.push((pname, size, orphan));
            }
        }
    }
    // Packs indexed again are not retired in the same run (their index file is not among
    // the files this run rewrites).
    young_packs.extend(resurrect.iter().map(|p| p.id));
    if !resurrect.is_empty() {
        io.write_index(resurrect)?;
    }
    for (name, size, orphan) in &to_delete {
        io.delete(name)?;
        present.remove(name);
        report.packs_deleted += 1;
        report.bytes_freed += size;
        if *orphan {
            report.orphans_deleted += 1;
        }
    }
    for name in &swept {
        io.delete(name)?;
    }

    // 5. Mark: retire packs below the threshold, copy their live blobs.
    let mut retired: Vec<ObjectId> = Vec::new();
    for p in packs.values() {
        if young_packs.contains(&p.id) || !present.contains(&pack_name(&p.id)) {
            continue;
        }
        let live_bytes: u64 = p
            .blobs
            .iter()
            .filter(|b| live.contains(&b.id))
            .map(|b| u64::from(b.length))
            .sum();
        let size = p.size.max(1);
        let threshold = u64::from(opts.repack_threshold_percent.min(100));
        if live_bytes == 0 || live_bytes * 100 < threshold * size {
            retired.push(p.id);
        }
    }
    retired.sort();
    let retired_set: HashSet<ObjectId> = retired.iter().copied().collect();
    // Blobs that stay readable in kept packs (an indexed but absent pack keeps nothing).
    let kept_blobs: HashSet<BlobId> = packs
        .values()
        .filter(|p| !retired_set.contains(&p.id) && present.contains(&pack_name(&p.id)))
        .flat_map(|p| p.blobs.iter().map(|b| b.id))
        .collect();
    let target = usize::try_from(repo.config().pack_target).unwrap_or(usize::MAX);
    let mut builder: Option<PackBuilder> = None;
    let mut new_packs: Vec<IndexPack> = Vec::new();
    let mut copied: HashSet<BlobId> = HashSet::new();
    let mut retired_final: Vec<IndexPack> = Vec::new();
    let mut dead_blobs: HashSet<BlobId> = HashSet::new();
    let sealed = repo.crypto().encryption() != Encryption::None;
    let flush = |b: PackBuilder, out: &mut Vec<IndexPack>| -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        let id = ObjectId::random()?;
        let (file, blobs) = b.finish(&io.sealer, sealed, &id)?;
        io.put(&pack_name(&id), &file)?;
        out.push(IndexPack {
            id,
            size: file.len() as u64,
            blobs,
        });
        Ok(())
    };
    for id in &retired {
        let Some(p) = packs.get(id) else { continue };
        let need: Vec<&BlobEntry> = p
            .blobs
            .iter()
            .filter(|b| {
                live.contains(&b.id) && !kept_blobs.contains(&b.id) && !copied.contains(&b.id)
            })
            .collect();
        if !need.is_empty() {
            let pname = pack_name(id);
            let bytes = match backend.get(&pname) {
                Ok(b) => b,
                Err(e) => {
                    warn!("pack {pname} unreadable ({e}); kept");
                    continue;
                }
            };
            let mut blobs = Vec::with_capacity(need.len());
            let mut damaged = false;
            for e in &need {
                let start = usize::try_from(e.offset).unwrap_or(usize::MAX);
                let len = usize::try_from(e.length).unwrap_or(usize::MAX);
                let stored = start.checked_add(len).and_then(|end| bytes.get(start..end));
                match (stored, BlobKind::from_byte(e.kind)) {
                    (Some(s), Some(kind)) if crc32fast::hash(s) == e.crc32 => {
                        blobs.push(EncodedBlob {
                            id: e.id,
                            kind,
                            raw_len: e.raw_length,
                            stored: s.to_vec(),
                            crc32: e.crc32,
                        });
                    }
                    _ => damaged = true,
                }
            }
            if damaged {
                // Keep the pack as it is: verify reports the damage; copying would hide it.
                warn!("pack {pname} has a damaged live blob; not repacked");
                continue;
            }
            for b in blobs {
                let full = builder.as_ref().is_some_and(|x| {
                    (x.len() + b.stored.len()) as u64 + (1 << 20) > MAX_PACK_BYTES
                });
                if full {
                    if let Some(x) = builder.take() {
                        flush(x, &mut new_packs)?;
                    }
                }
                let x =
                    builder.get_or_insert_with(|| PackBuilder::new(target.saturating_add(1 << 20)));
                x.add(&b)?;
                copied.insert(b.id);
                if x.len() >= target {
                    if let Some(x) = builder.take() {
                        flush(x, &mut new_packs)?;
                    }
                }
            }
            report.packs_repacked += 1;
        }
        for b in &p.blobs {
            if !live.contains(&b.id) {
                dead_blobs.insert(b.id);
            }
        }
        retired_final.push(p.clone());
    }
    if let Some(x) = builder.take() {
        flush(x, &mut new_packs)?;
    }
    // New packs are durable: now their index.
    if !new_packs.is_empty() {
        io.write_index(new_packs)?;
    }
    // Rewrite the index files naming retired packs: new files first, then delete the old.
    let final_set: HashSet<ObjectId> = retired_final.iter().map(|p| p.id).collect();
    let mut superseded: Vec<&str> = Vec::new();
    for (name, f) in &files {
        if !f.packs.iter().any(|p| final_set.contains(&p.id)) {
            continue;
        }
        let keep: Vec<IndexPack> = f
            .packs
            .iter()
            .filter(|p| !final_set.contains(&p.id))
            .cloned()
            .collect();
        if !keep.is_empty() {
            io.write_index(keep)?;
        }
        superseded.push(name);
    }
    for name in &superseded {
        io.delete(name)?;
    }
    report.index_files_rewritten = superseded.len() as u64;
    report.blobs_removed = dead_blobs
        .iter()
        .filter(|b| !kept_blobs.contains(b))
        .count() as u64;

    // Packs no index names and no pending object lists: interrupted or running backups.
    let mut known: HashSet<String> = packs.keys().map(pack_name).collect();
    known.extend(young_packs.iter().map(pack_name));
    let mut unindexed: Vec<UnindexedPack> = Vec::new();
    let mut pnames: Vec<&String> = present.iter().filter(|n| !known.contains(*n)).collect();
    pnames.sort();
    for n in pnames {
        let Ok(id) = id_of(n) else {
            warn!("{n} is not a pack name; left alone");
            continue;
        };
        let size = backend.size(n)?;
        unindexed.push(UnindexedPack { id, size });
    }
    // Record the marks last: their time is at or after the moment the packs left the index.
    report.kept_for_grace = (pendings
        .iter()
        .filter(|(n, _)| !swept.contains(n))
        .map(|(_, f)| f.packs.len() + f.unindexed.len())
        .sum::<usize>()
        + retired_final.len()
        + unindexed.len()) as u64;
    let marked = !retired_final.is_empty() || !unindexed.is_empty();
    if marked {
        io.write_pending(now, retired_final, unindexed)?;
    }
    if !opts.dry_run {
        if marked {
            // Close the window of a backup that committed after this run read the
            // manifests and checked the index (its `reindex_retired`) before the packs left
            // it: the blobs of every restore point committed since are indexed again.
            reindex_new_restore_points(repo, &read)?;
        }
        repo.reload_index()?;
    }
    Ok(report)
}

/// Re-indexes the retired or unindexed packs that restore points not in `read` (committed
/// while this run marked) need: first their chunk lists, then everything they reference.
fn reindex_new_restore_points(repo: &Repository, read: &HashSet<SnapshotId>) -> Result<()> {
    for id in repo.list_snapshots()? {
        if read.contains(&id) {
            continue;
        }
        let Ok(f) = repo.load_manifest_file(&id) else {
            continue; // deleted meanwhile, or damaged: verify's business
        };
        let mut wanted: Vec<BlobId> = f
            .disks
            .iter()
            .flat_map(|d| d.lists.iter().copied())
            .collect();
        wanted.extend(f.vm_blobs().copied());
        reindex_retired(repo, &wanted)?;
        let Ok(m) = repo.load_manifest(&id) else {
            continue;
        };
        let mut wanted: Vec<BlobId> = m
            .disks
            .iter()
            .flat_map(|d| d.chunks.iter().flatten().copied())
            .collect();
        for v in &m.volumes {
            wanted.extend(v.catalog_root);
            wanted.extend(v.sd_table);
            wanted.extend(v.catalog_blobs.iter().copied());
        }
        reindex_retired(repo, &wanted)?;
    }
    Ok(())
}

/// Deletes temporary files of interrupted writes in a local repository whose modification
/// time is older than the grace period (a running writer's temporary file is younger).
/// Returns how many were (or, in a dry run, would be) deleted.
pub fn remove_stale_temp_files(local: &LocalBackend, opts: &PruneOptions) -> Result<u64> {
    let now = opts.now.unwrap_or_else(crate::repo::now);
    let mut n = 0;
    for path in local.temp_files()? {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .unwrap_or(now);
        if mtime <= now.saturating_sub(opts.grace_seconds.max(0)) {
            if !opts.dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::backend("delete", &path.to_string_lossy(), e)),
                }
            }
            n += 1;
        }
    }
    Ok(n)
}
