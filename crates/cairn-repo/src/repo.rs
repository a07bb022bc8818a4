//! The repository: open/init, blob reads, writer sessions, manifests.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use serde::{de::DeserializeOwned, Serialize};
use tracing::warn;

use crate::blob::{self, EncodedBlob};
use crate::config::{RepoConfig, DEFAULT_PACK_TARGET, MAX_CONFIG_BYTES, REPO_VERSION};
use crate::crypto::{Crypto, Sealer};
use crate::frame::{self, FileKind};
use crate::index::{pack_name, BlobIndex, IndexFile, IndexPack, MAX_INDEX_FILE_BYTES};
use crate::manifest::{
    DiskManifest, DiskRecord, Manifest, ManifestFile, RestorePointSummary, LIST_ENTRIES_PER_BLOB,
    MAX_MANIFEST_BYTES,
};
use crate::pack::{PackStream, MAX_PACK_BYTES};
use crate::{
    Backend, BlobId, BlobKind, ChunkIdHash, Encryption, Error, NewObject, ObjectId, Result,
    SnapshotId,
};
use cairn_crypto::{KeyRing, MasterKey, SlotSecret};

/// Name of the configuration object.
pub const CONFIG_NAME: &str = "config";
/// Name of the key ring object (encrypted repositories keeping their keys inside).
pub const KEYS_NAME: &str = "keys";
/// Folder of index files.
pub const INDEX_DIR: &str = "index/";
/// Folder of restore-point manifests.
pub const SNAPSHOT_DIR: &str = "snapshots/";
/// Folder of packs.
pub const PACK_DIR: &str = "packs/";
/// A writer writes an index file after this many packs (and at the end): a crash loses the
/// index of at most this many packs, whose blobs a later run then stores again.
pub const INDEX_EVERY_PACKS: usize = 8;

/// Options of [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunker (default: fixed 256 KiB, [`cairn_chunk::DEFAULT_FIXED_SIZE`]).
    pub chunker: cairn_chunk::ChunkerParams,
    /// Pack target size (default 32 MiB).
    pub pack_target: u64,
    /// Encryption (default none).
    pub encryption: Encryption,
    /// The hash naming chunks (default [`ChunkIdHash::Blake3`]: keyed BLAKE3 when encrypted).
    /// [`ChunkIdHash::Sha256`] makes HMAC-SHA256 / SHA-256 ids, as repositories created before
    /// the choice existed have.
    pub chunk_id: ChunkIdHash,
    /// Creation time (Unix seconds); now when `None`.
    pub time: Option<i64>,
    /// Write the key ring into the repository as `keys` (default). When `false` the ring
    /// exists only in [`Repository::key_ring`]: the caller saves it elsewhere
    /// (`KeyRing::save`) and passes it back in [`OpenOptions::key_ring`].
    pub keys_in_repository: bool,
    /// Label of the first key slot.
    pub slot_label: String,
    /// Argon2id parameters for a passphrase slot (`None`: cairn-crypto's defaults).
    pub kdf: Option<cairn_crypto::KdfParams>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: cairn_chunk::ChunkerParams::default(),
            pack_target: DEFAULT_PACK_TARGET,
            encryption: Encryption::None,
            chunk_id: ChunkIdHash::Blake3,
            time: None,
            keys_in_repository: true,
            slot_label: "initial".into(),
            kdf: None,
        }
    }
}

/// Options of [`Repository::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// A key ring kept outside the repository (loaded with `KeyRing::load`); when `None` the
    /// repository's own `keys` object is used.
    pub key_ring: Option<KeyRing>,
}

/// An index file that could not be read when the index was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexProblem {
    /// Object name.
    pub name: String,
    /// The error.
    pub error: String,
}

/// Manifests that could not be read: object name and error.
pub type Unreadable = Vec<(String, Error)>;

/// Result of [`Repository::snapshots`].
#[derive(Debug)]
pub struct SnapshotListing {
    /// Readable restore points, oldest first.
    pub readable: Vec<(SnapshotId, Manifest)>,
    /// Object names of unreadable manifests and why.
    pub unreadable: Unreadable,
}

/// Read-only result of [`Repository::orphans`]: what prune may delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphans {
    /// Pack objects no index file names (interrupted backups, or index files lost).
    pub unindexed_packs: Vec<String>,
    /// Index files naming packs that are absent.
    pub packs_missing: Vec<String>,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An open repository. `Send + Sync`: share it (e.g. in an `Arc`) between threads.
#[derive(Debug)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: RepoConfig,
    crypto: Crypto,
    index: RwLock<BlobIndex>,
    index_problems: Mutex<Vec<IndexProblem>>,
    key_ring: Option<KeyRing>,
}

fn file_aad(kind: FileKind, id: &ObjectId) -> Vec<u8> {
    let mut a = kind.magic().to_vec();
    a.extend_from_slice(&id.0);
    a
}

impl Repository {
    /// Creates a repository in an empty backend. An encrypted repository needs `secret`,
    /// which becomes the first slot of a new key ring around a fresh master key.
    pub fn init(
        backend: Arc<dyn Backend>,
        opts: &InitOptions,
        secret: Option<&SlotSecret>,
    ) -> Result<Self> {
        if backend.exists(CONFIG_NAME)? {
            return Err(Error::AlreadyExists {
                name: CONFIG_NAME.into(),
            });
        }
        let (crypto, key_ring) = match opts.encryption {
            Encryption::None => (Crypto::none_with(opts.chunk_id), None),
            Encryption::Aes256Gcm => {
                let secret = secret.ok_or(Error::KeyNeeded)?;
                let master = MasterKey::generate().map_err(Error::Keys)?;
                let ring = match opts.kdf {
                    Some(k) => KeyRing::create_with_params(&master, secret, &opts.slot_label, k),
                    None => KeyRing::create(&master, secret, &opts.slot_label),
                }
                .map_err(Error::Keys)?;
                (Crypto::keyed(&master, opts.chunk_id), Some(ring))
            }
        };
        let config = RepoConfig {
            id: ObjectId::random()?,
            version: REPO_VERSION,
            chunker: opts.chunker,
            encryption: opts.encryption,
            created: opts.time.unwrap_or_else(now),
            pack_target: opts.pack_target,
            key_fingerprint: crypto.fingerprint(),
            chunk_id: Some(crypto.chunk_id_hash()),
        };
        config.validate()?;
        // All 256 pack folders now, not one by one on a backup's hot path.
        let pack_folders: Vec<String> = (0..=255u8).map(|b| format!("{PACK_DIR}{b:02x}")).collect();
        backend.prepare_folders(&pack_folders)?;
        if let (Some(ring), true) = (&key_ring, opts.keys_in_repository) {
            backend.put(KEYS_NAME, &ring.encode())?;
        }
        // The config goes last: a repository exists once it is there.
        backend.put(CONFIG_NAME, &config.encode()?)?;
        Ok(Repository {
            backend,
            config,
            crypto,
            index: RwLock::new(BlobIndex::new()),
            index_problems: Mutex::new(Vec::new()),
            key_ring,
        })
    }

    /// Opens a repository and loads its index. An encrypted repository needs `secret` and
    /// its key ring ([`OpenOptions::key_ring`] or the `keys` object). Unreadable index files
    /// do not stop the open: they are listed in [`index_problems`](Self::index_problems)
    /// (their blobs look absent, so a backup stores them again; `verify` reports them).
    pub fn open(
        backend: Arc<dyn Backend>,
        opts: &OpenOptions,
        secret: Option<&SlotSecret>,
    ) -> Result<Self> {
        let config = read_config(backend.as_ref())?;
        // Every id of a repository comes from the hash its config records.
        let chunk_id = config.chunk_id_hash();
        let (crypto, key_ring) = match config.encryption {
            Encryption::None => (Crypto::none_with(chunk_id), None),
            Encryption::Aes256Gcm => {
                let secret = secret.ok_or(Error::KeyNeeded)?;
                let ring = match &opts.key_ring {
                    Some(r) => r.clone(),
                    None => {
                        let size = backend.size(KEYS_NAME)?;
                        let cap = (cairn_crypto::KEYRING_HEADER_LEN
                            + cairn_crypto::MAX_KEYRING_PAYLOAD)
                            as u64;
                        if size > cap {
                            return Err(Error::BadLength {
                                name: KEYS_NAME.into(),
                                offset: 0,
                                field: "file size",
                                found: size,
                                expected: format!("at most {cap}"),
                            });
                        }
                        KeyRing::decode(&backend.get(KEYS_NAME)?).map_err(Error::Keys)?
                    }
                };
                let master = ring.unlock(secret).map_err(Error::Keys)?;
                let crypto = Crypto::keyed(&master, chunk_id);
                if crypto.fingerprint() != config.key_fingerprint {
                    return Err(Error::ForeignKeyRing);
                }
                (crypto, Some(ring))
            }
        };
        let repo = Repository {
            backend,
            config,
            crypto,
            index: RwLock::new(BlobIndex::new()),
            index_problems: Mutex::new(Vec::new()),
            key_ring,
        };
        repo.reload_index()?;
        Ok(repo)
    }

    /// The key ring the repository was created or opened with (encrypted repositories).
    pub fn key_ring(&self) -> Option<&KeyRing> {
        self.key_ring.as_ref()
    }

    /// Writes `ring` as the repository's `keys` object (after adding or removing a slot).
    pub fn write_key_ring(&self, ring: &KeyRing) -> Result<()> {
        if self.config.encryption == Encryption::None {
            return Err(Error::Invalid("the repository is not encrypted".into()));
        }
        self.backend.put(KEYS_NAME, &ring.encode())
    }

    /// The configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Encryption of this repository.
    pub fn encryption(&self) -> Encryption {
        self.crypto.encryption()
    }

    /// Re-reads every index file (to see what concurrent writers added).
    pub fn reload_index(&self) -> Result<()> {
        let mut idx = BlobIndex::new();
        let mut problems = Vec::new();
        for name in self.backend.list(INDEX_DIR)? {
            match self.read_index_file(&name) {
                Ok(f) => idx.add_file(&f)?,
                Err(e) => {
                    warn!("index file {name} unreadable: {e}");
                    problems.push(IndexProblem {
                        name,
                        error: e.to_string(),
                    });
                }
            }
        }
        idx.finish();
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = idx;
        *self
            .index_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problems;
        Ok(())
    }

    /// Index files that could not be read at the last load.
    pub fn index_problems(&self) -> Vec<IndexProblem> {
        self.index_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The in-memory index (read lock; do not hold it across a writer's `finish`).
    pub fn index(&self) -> RwLockReadGuard<'_, BlobIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the index has the blob.
    pub fn contains_blob(&self, id: &BlobId) -> bool {
        self.index().contains(id)
    }

    /// The content id of `data` in this repository.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        BlobId(self.crypto.chunk_id(data))
    }

    /// Fetches a blob, checks CRC / authentication, decompresses and re-hashes it.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let (entry, pack) = {
            let idx = self.index();
            let e = *idx.get(id).ok_or(Error::BlobMissing(*id))?;
            let (pack, _) = idx.pack(e.pack).ok_or(Error::BlobMissing(*id))?;
            (e, pack)
        };
        let name = pack_name(&pack);
        let stored =
            self.backend
                .get_range(&name, u64::from(entry.offset), u64::from(entry.length))?;
        blob::decode(
            &self.crypto,
            &name,
            entry.kind,
            id,
            entry.raw_length,
            entry.crc32,
            &stored,
        )
    }

    /// [`read_blob`](Self::read_blob) into reused buffers: the stored bytes go to `stored`,
    /// the blob's bytes to `out` (both resized as needed; their capacity is kept).
    pub fn read_blob_into(
        &self,
        id: &BlobId,
        stored: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let (entry, pack) = {
            let idx = self.index();
            let e = *idx.get(id).ok_or(Error::BlobMissing(*id))?;
            let (pack, _) = idx.pack(e.pack).ok_or(Error::BlobMissing(*id))?;
            (e, pack)
        };
        let name = pack_name(&pack);
        // The index validated the length against the pack and the seal overhead.
        let len = usize::try_from(entry.length)
            .map_err(|_| Error::Invalid(format!("blob length {}", entry.length)))?;
        stored.resize(len, 0);
        self.backend
            .get_range_into(&name, u64::from(entry.offset), stored)?;
        blob::decode_into(
            &self.crypto,
            &name,
            (entry.kind, id, entry.raw_length, entry.crc32),
            stored,
            out,
        )
    }

    pub(crate) fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    fn read_sealed_file<T: DeserializeOwned>(
        &self,
        kind: FileKind,
        name: &str,
        id: &ObjectId,
        max: u64,
    ) -> Result<T> {
        let size = self.backend.size(name)?;
        // Check the length before reading the object into memory.
        if size > max + frame::HEADER_LEN as u64 {
            return Err(Error::BadLength {
                name: name.to_string(),
                offset: 0,
                field: "file size",
                found: size,
                expected: format!("at most {}", max + frame::HEADER_LEN as u64),
            });
        }
        let bytes = self.backend.get(name)?;
        decode_sealed_file(&self.crypto, kind, name, id, &bytes, max)
    }

    fn write_sealed_file<T: Serialize>(
        &self,
        sealer: &Sealer,
        kind: FileKind,
        name: &str,
        id: &ObjectId,
        value: &T,
    ) -> Result<()> {
        let bytes = self.encode_sealed_file(sealer, kind, id, value)?;
        self.backend.put(name, &bytes)
    }

    /// The framed (and, when encrypted, sealed) bytes of a file holding `value`.
    fn encode_sealed_file<T: Serialize>(
        &self,
        sealer: &Sealer,
        kind: FileKind,
        id: &ObjectId,
        value: &T,
    ) -> Result<Vec<u8>> {
        let plain =
            postcard::to_stdvec(value).map_err(|e| Error::Invalid(format!("postcard: {e}")))?;
        let sealed = self.crypto.encryption() != Encryption::None;
        let payload = if sealed {
            crate::crypto::seal(sealer, &file_aad(kind, id), &plain)?
        } else {
            plain
        };
        Ok(frame::encode(kind, sealed, &payload))
    }

    pub(crate) fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        let id = id_from_name(name)?;
        let f: IndexFile =
            self.read_sealed_file(FileKind::Index, name, &id, MAX_INDEX_FILE_BYTES)?;
        f.validate(name, self.crypto.overhead())?;
        Ok(f)
    }

    /// Names of all index files.
    pub fn list_index_files(&self) -> Result<Vec<String>> {
        self.backend.list(INDEX_DIR)
    }

    /// Ids of all restore points (unordered; see [`snapshots`](Self::snapshots)).
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        self.backend
            .list(SNAPSHOT_DIR)?
            .iter()
            .map(|n| id_from_name(n))
            .collect()
    }

    /// Reads and checks a restore point's manifest file (head: no chunk lists).
    pub fn load_manifest_file(&self, id: &SnapshotId) -> Result<ManifestFile> {
        let name = format!("{SNAPSHOT_DIR}{id}");
        let m: ManifestFile =
            self.read_sealed_file(FileKind::Manifest, &name, id, MAX_MANIFEST_BYTES)?;
        m.validate(&name)?;
        Ok(m)
    }

    /// Reads a restore point's manifest with the full chunk list of every disk (fetched from
    /// its metadata blobs, each verified like any blob).
    pub fn load_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        let name = format!("{SNAPSHOT_DIR}{id}");
        let f = self.load_manifest_file(id)?;
        let mut disks = Vec::with_capacity(f.disks.len());
        for (n, d) in f.disks.into_iter().enumerate() {
            let count = d.size.div_ceil(u64::from(d.chunk_size));
            let mut chunks: Vec<Option<BlobId>> = Vec::new();
            for (k, list) in d.lists.iter().enumerate() {
                let bytes = self.read_blob(list)?;
                let part: Vec<Option<BlobId>> = postcard::from_bytes(&bytes).map_err(|e| {
                    Error::malformed(&name, format!("disk {n} chunk list {k}: {e}"))
                })?;
                let expect = (count - chunks.len() as u64).min(LIST_ENTRIES_PER_BLOB as u64);
                if part.len() as u64 != expect {
                    return Err(Error::malformed(
                        &name,
                        format!(
                            "disk {n} chunk list {k}: {} entries, expected {expect}",
                            part.len()
                        ),
                    ));
                }
                chunks.extend(part);
            }
            disks.push(DiskManifest {
                label: d.label,
                size: d.size,
                chunk_size: d.chunk_size,
                identity: d.identity,
                chain: d.chain,
                chunks,
            });
        }
        let m = Manifest {
            vm_name: f.vm_name,
            time: f.time,
            time_nanos: f.time_nanos,
            tags: f.tags,
            parent: f.parent,
            disks,
            stats: f.stats,
            volumes: f.volumes,
        };
        m.validate(&name)?;
        Ok(m)
    }

    /// Summaries of every readable restore point, oldest first, reading only manifest heads
    /// (fast: no chunk lists); unreadable manifests are returned with their error.
    pub fn summaries(&self) -> Result<(Vec<RestorePointSummary>, Unreadable)> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in self.list_snapshots()? {
            match self.load_manifest_file(&id) {
                Ok(m) => ok.push(RestorePointSummary::of_file(id, &m)),
                Err(e) => bad.push((format!("{SNAPSHOT_DIR}{id}"), e)),
            }
        }
        ok.sort_by_key(|s| (s.time_key(), s.id));
        Ok((ok, bad))
    }

    /// Every readable restore point with its chunk lists, oldest first, and the problems of
    /// unreadable ones.
    pub fn snapshots(&self) -> Result<SnapshotListing> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for id in self.list_snapshots()? {
            match self.load_manifest(&id) {
                Ok(m) => ok.push((id, m)),
                Err(e) => bad.push((format!("{SNAPSHOT_DIR}{id}"), e)),
            }
        }
        ok.sort_by_key(|(id, m)| (crate::time_order(m.time, m.time_nanos), *id));
        Ok(SnapshotListing {
            readable: ok,
            unreadable: bad,
        })
    }

    /// Writes a restore point: its chunk lists as metadata blobs (deduplicated), then the
    /// manifest file under a fresh random id. This is the commit point of a backup: call it
    /// only after the writer that stored the data blobs has finished.
    pub fn save_manifest(&self, m: &Manifest) -> Result<SnapshotId> {
        self.save_manifest_with_vm(m, None)
    }

    /// [`Repository::save_manifest`] for a VM bundle: `vm` (whose configuration-file
    /// blobs must be indexed already) is recorded in the manifest file.
    pub fn save_manifest_with_vm(
        &self,
        m: &Manifest,
        vm: Option<&crate::VmRecord>,
    ) -> Result<SnapshotId> {
        m.validate("new manifest")?;
        if let Some(vm) = vm {
            vm.validate("new manifest", m.disks.len())?;
        }
        {
            let idx = self.index();
            for d in &m.disks {
                for id in d.chunks.iter().flatten() {
                    if !idx.contains(id) {
                        return Err(Error::BlobMissing(*id));
                    }
                }
            }
            for id in vm.iter().flat_map(|v| v.blobs()) {
                if !idx.contains(id) {
                    return Err(Error::BlobMissing(*id));
                }
            }
            for v in &m.volumes {
                for id in &v.catalog_blobs {
                    if !idx.contains(id) {
                        return Err(Error::BlobMissing(*id));
                    }
                }
            }
        }
        let mut w = self.writer()?;
        let enc = w.encoder();
        let mut disks = Vec::with_capacity(m.disks.len());
        for d in &m.disks {
            let mut lists = Vec::new();
            for part in d.chunks.chunks(LIST_ENTRIES_PER_BLOB) {
                let bytes = postcard::to_stdvec(part)
                    .map_err(|e| Error::Invalid(format!("postcard: {e}")))?;
                let id = enc.id(&bytes);
                w.add(&enc.encode(BlobKind::Meta, id, &bytes)?)?;
                lists.push(id);
            }
            disks.push(DiskRecord {
                label: d.label.clone(),
                size: d.size,
                chunk_size: d.chunk_size,
                identity: d.identity.clone(),
                chain: d.chain.clone(),
                lists,
            });
        }
        w.finish()?;
        let file = ManifestFile {
            vm_name: m.vm_name.clone(),
            time: m.time,
            tags: m.tags.clone(),
            parent: m.parent,
            disks,
            stats: m.stats,
            volumes: m.volumes.clone(),
            vm: vm.cloned(),
            time_nanos: m.time_nanos,
        };
        let id = ObjectId::random()?;
        let sealer = self.crypto.sealer()?;
        self.write_sealed_file(
            &sealer,
            FileKind::Manifest,
            &format!("{SNAPSHOT_DIR}{id}"),
            &id,
            &file,
        )?;
        Ok(id)
    }

    /// Starts a writer session (one per backup run; several may run at once, in this or
    /// other processes).
    pub fn writer(&self) -> Result<RepoWriter<'_>> {
        Ok(RepoWriter {
            repo: self,
            sealer: Arc::new(self.crypto.sealer()?),
            pack: None,
            unindexed: Vec::new(),
            session: HashSet::new(),
            written: Vec::new(),
            bytes_stored: 0,
            committer: Committer::start(self.backend.clone())?,
        })
    }

    /// Deletes the manifests of these restore points (their data stays until prune).
    /// Deleting an absent restore point is not an error. Refuses, deleting nothing, when
    /// one of them is pinned (`pins/`).
    pub fn remove_restore_points(&self, ids: &[SnapshotId]) -> Result<()> {
        let pinned = self.pinned_ids()?;
        if let Some(id) = ids.iter().find(|id| pinned.contains(id)) {
            return Err(Error::Invalid(format!(
                "restore point {id} is pinned (unpin it first); nothing removed"
            )));
        }
        for id in ids {
            self.backend.delete(&format!("{SNAPSHOT_DIR}{id}"))?;
        }
        Ok(())
    }

    /// Prune's starting point (read-only): packs no index names and index entries whose
    /// pack is gone. Deleting them is left to a `prune` that also checks no writer is
    /// running (a running writer's packs are unindexed until it writes its index).
    pub fn orphans(&self) -> Result<Orphans> {
        let idx = self.index();
        let known: HashSet<String> = idx.packs().iter().map(|(id, _)| pack_name(id)).collect();
        let present: HashSet<String> = self.backend.list(PACK_DIR)?.into_iter().collect();
        let mut o = Orphans {
            unindexed_packs: present.difference(&known).cloned().collect(),
            packs_missing: known.difference(&present).cloned().collect(),
        };
        o.unindexed_packs.sort();
        o.packs_missing.sort();
        Ok(o)
    }
}

/// Decodes a framed, possibly sealed file (config excepted) into `T`.
pub(crate) fn decode_sealed_file<T: DeserializeOwned>(
    crypto: &Crypto,
    kind: FileKind,
    name: &str,
    id: &ObjectId,
    bytes: &[u8],
    max: u64,
) -> Result<T> {
    let (sealed, payload) = frame::decode(name, kind, bytes, max)?;
    let want_sealed = crypto.encryption() != Encryption::None;
    if sealed != want_sealed {
        return Err(Error::Crypto {
            name: name.to_string(),
            why: format!(
                "file is {}sealed but the repository is {}",
                if sealed { "" } else { "not " },
                crypto.encryption()
            ),
        });
    }
    let plain;
    let payload = if sealed {
        plain = crypto.open(name, &file_aad(kind, id), payload)?;
        &plain[..]
    } else {
        payload
    };
    postcard::from_bytes(payload).map_err(|e| Error::malformed(name, format!("postcard: {e}")))
}

/// Reads and checks `config`.
pub fn read_config(backend: &dyn Backend) -> Result<RepoConfig> {
    let size = backend.size(CONFIG_NAME)?;
    if size > MAX_CONFIG_BYTES {
        return Err(Error::BadLength {
            name: CONFIG_NAME.into(),
            offset: 0,
            field: "file size",
            found: size,
            expected: format!("at most {MAX_CONFIG_BYTES}"),
        });
    }
    let bytes = backend.get(CONFIG_NAME)?;
    let (sealed, payload) = frame::decode(CONFIG_NAME, FileKind::Config, &bytes, MAX_CONFIG_BYTES)?;
    if sealed {
        return Err(Error::Unsupported {
            name: CONFIG_NAME.into(),
            offset: 10,
            field: "flags (config is never sealed)",
            found: 1,
        });
    }
    let c: RepoConfig = postcard::from_bytes(payload)
        .map_err(|e| Error::malformed(CONFIG_NAME, format!("postcard: {e}")))?;
    c.validate()?;
    Ok(c)
}

fn id_from_name(name: &str) -> Result<ObjectId> {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.parse()
        .map_err(|_| Error::malformed(name, "object name is not a 64-digit hex id"))
}

/// Compresses and seals blobs; cheap to clone, usable from many threads at once.
#[derive(Debug, Clone)]
pub struct BlobEncoder {
    crypto: Crypto,
    sealer: Arc<Sealer>,
}

impl BlobEncoder {
    /// Content id of `data`.
    pub fn id(&self, data: &[u8]) -> BlobId {
        BlobId(self.crypto.chunk_id(data))
    }

    /// Compresses and seals `data` (whose id is `id`) for a pack.
    pub fn encode(&self, kind: BlobKind, id: BlobId, data: &[u8]) -> Result<EncodedBlob> {
        blob::encode(&self.sealer, kind, id, data)
    }

    /// [`encode`](Self::encode) into `buf`'s memory (cleared first): pass back the
    /// [`EncodedBlob::stored`] of an earlier blob once the writer has taken it, and no chunk
    /// costs a fresh allocation. Same bytes as `encode`.
    pub fn encode_with(
        &self,
        kind: BlobKind,
        id: BlobId,
        data: &[u8],
        buf: Vec<u8>,
    ) -> Result<EncodedBlob> {
        blob::encode_into(&self.sealer, kind, id, data, buf)
    }

    /// Sizes `buf` for a chunk of `len` bytes read straight into it for
    /// [`encode_in_place`](Self::encode_in_place), and returns where the chunk goes (behind
    /// room for the seal header and codec byte, with capacity for the seal's tag). Old bytes
    /// are not zeroed: fill the whole range.
    pub fn chunk_buffer(&self, buf: &mut Vec<u8>, len: usize) -> std::ops::Range<usize> {
        blob::chunk_buffer(&self.sealer, buf, len)
    }

    /// [`encode`](Self::encode) of the chunk in `chunk` (laid out by
    /// [`chunk_buffer`](Self::chunk_buffer)) without copying it: a chunk stored raw is sealed
    /// where it was read and `spare` is returned; a compressed one is built in `spare` and
    /// `chunk` is returned. Same bytes as `encode`.
    pub fn encode_in_place(
        &self,
        kind: BlobKind,
        id: BlobId,
        chunk: Vec<u8>,
        spare: Vec<u8>,
    ) -> Result<(EncodedBlob, Vec<u8>)> {
        blob::encode_in_place(&self.sealer, kind, id, chunk, spare)
    }
}

/// Counters of a finished writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Blobs added.
    pub blobs: u64,
    /// Packs written.
    pub packs: u64,
    /// Bytes of blobs written to packs.
    pub bytes_stored: u64,
}

/// Packs (each already written to its temporary object) and index files waiting for the
/// committer thread. The objects hold no data in memory with [`crate::LocalBackend`] (they
/// are closed before they are queued; backends that keep them in memory get 2), so the
/// queue can absorb a slow stretch of fsyncs:
/// 8 gave a 2 GiB backup 1.47 s mean wall vs 1.59 s with 2 (5 alternating runs each).
const COMMIT_QUEUE: usize = 8;
/// Packs committed at once (see [`Committer`]).
const COMMIT_PARALLEL: usize = 4;

/// Work for the committer thread, done strictly in order: an index file is written only after
/// every pack it names is durable.
enum Commit {
    Pack(NewObject),
    Put(String, Vec<u8>),
}

/// The committer: makes packs durable and visible (fsync, rename, fsync the folder) and
/// writes index files, off the thread that fills packs, so compression and hashing never wait
/// for the disk. It stops at the first error, which the writer reports at its next call.
#[derive(Debug)]
struct Committer {
    tx: Option<std::sync::mpsc::SyncSender<Commit>>,
    thread: Option<std::thread::JoinHandle<()>>,
    error: Arc<Mutex<Option<Error>>>,
}

impl Committer {
    fn start(backend: Arc<dyn Backend>) -> Result<Self> {
        // Finished packs held in memory (object stores) queue two deep, not COMMIT_QUEUE.
        let depth = if backend.new_objects_in_memory() {
            2
        } else {
            COMMIT_QUEUE
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Commit>(depth);
        let error: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        let err = error.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-commit".into())
            .spawn(move || {
                // Packs are committed COMMIT_PARALLEL at a time: each commit is mostly an
                // fsync waiting on the disk (~50 ms per 32 MiB pack here), and concurrent
                // fsyncs share journal commits and device flushes.
                let mut inflight: VecDeque<std::thread::JoinHandle<Result<()>>> = VecDeque::new();
                let settle_all = |inflight: &mut VecDeque<std::thread::JoinHandle<Result<()>>>| {
                    let mut first = Ok(());
                    while let Some(h) = inflight.pop_front() {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(Error::Invalid("a pack commit panicked".into()))
                        });
                        if first.is_ok() {
                            first = r;
                        }
                    }
                    first
                };
                for job in rx {
                    let r = match job {
                        Commit::Pack(obj) => {
                            let mut r = Ok(());
                            if inflight.len() >= COMMIT_PARALLEL {
                                if let Some(h) = inflight.pop_front() {
                                    r = h.join().unwrap_or_else(|_| {
                                        Err(Error::Invalid("a pack commit panicked".into()))
                                    });
                                }
                            }
                            let b = backend.clone();
                            r.and_then(|()| {
                                std::thread::Builder::new()
                                    .name("cairn-commit-pack".into())
                                    .spawn(move || b.commit(obj))
                                    .map(|h| inflight.push_back(h))
                                    .map_err(|e| {
                                        Error::Invalid(format!("cannot start a pack commit: {e}"))
                                    })
                            })
                        }
                        // An index names packs sent before it: all of them durable first.
                        Commit::Put(name, data) => {
                            settle_all(&mut inflight).and_then(|()| backend.put(&name, &data))
                        }
                    };
                    if let Err(e) = r {
                        let _ = settle_all(&mut inflight);
                        *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        // Later jobs (and the objects they hold) are dropped unwritten: an
                        // index must never name a pack that did not make it.
                        return;
                    }
                }
                if let Err(e) = settle_all(&mut inflight) {
                    *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the pack committer: {e}")))?;
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            error,
        })
    }

    fn check(&self) -> Result<()> {
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn send(&self, job: Commit) -> Result<()> {
        self.check()?;
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            // The thread ended: it stored why.
            self.check()?;
            return Err(Error::Invalid("the pack committer stopped".into()));
        }
        Ok(())
    }

    /// Waits until everything sent is durable (or failed).
    fn drain(&mut self) -> Result<()> {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                return Err(Error::Invalid("the pack committer panicked".into()));
            }
        }
        self.check()
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // An abandoned writer: let the thread finish what it has (unreferenced packs are
        // harmless, prune removes them) and do not leave it running.
        let _ = self.drain();
    }
}

/// One writer session: packs blobs, uploads packs, writes index files.
#[derive(Debug)]
pub struct RepoWriter<'r> {
    repo: &'r Repository,
    sealer: Arc<Sealer>,
    pack: Option<(ObjectId, PackStream)>,
    unindexed: Vec<IndexPack>,
    session: HashSet<BlobId>,
    written: Vec<IndexPack>,
    bytes_stored: u64,
    committer: Committer,
}

impl RepoWriter<'_> {
    /// An encoder for worker threads.
    pub fn encoder(&self) -> BlobEncoder {
        BlobEncoder {
            crypto: self.repo.crypto.clone(),
            sealer: self.sealer.clone(),
        }
    }

    /// Whether the repository or this session already has the blob.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.session.contains(id) || self.repo.contains_blob(id)
    }

    /// Adds an encoded blob; returns `false` (and stores nothing) when it is already there.
    /// Packs are written as blobs arrive and made durable in the background; an error of
    /// that background work is returned by a later `add`, `flush` or `finish`.
    pub fn add(&mut self, blob: &EncodedBlob) -> Result<bool> {
        if self.has_blob(&blob.id) {
            return Ok(false);
        }
        self.committer.check()?;
        let target = self.repo.config.pack_target;
        if let Some((_, pack)) = &self.pack {
            if pack.len() + blob.stored.len() as u64 + (1 << 20) > MAX_PACK_BYTES {
                self.flush_pack()?;
            }
        }
        let (_, pack) = match &mut self.pack {
            Some(p) => p,
            None => {
                let id = ObjectId::random()?;
                let obj = self.repo.backend.create(&pack_name(&id))?;
                self.pack.insert((id, PackStream::new(obj)?))
            }
        };
        pack.add(blob)?;
        self.session.insert(blob.id);
        self.bytes_stored += blob.stored.len() as u64;
        if pack.len() >= target {
            self.flush_pack()?;
            if self.unindexed.len() >= INDEX_EVERY_PACKS {
                self.flush_index()?;
            }
        }
        Ok(true)
    }

    fn flush_pack(&mut self) -> Result<()> {
        let Some((id, pack)) = self.pack.take() else {
            return Ok(());
        };
        if pack.is_empty() {
            return Ok(());
        }
        let sealed = self.repo.crypto.encryption() != Encryption::None;
        let (obj, blobs) = pack.finish(&self.sealer, sealed, &id)?;
        let size = obj.len();
        self.committer.send(Commit::Pack(obj))?;
        self.unindexed.push(IndexPack { id, size, blobs });
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let f = IndexFile {
            packs: std::mem::take(&mut self.unindexed),
        };
        let id = ObjectId::random()?;
        let name = format!("{INDEX_DIR}{id}");
        let bytes = self
            .repo
            .encode_sealed_file(&self.sealer, FileKind::Index, &id, &f)?;
        // Queued behind the packs it names: written once they are durable.
        self.committer.send(Commit::Put(name, bytes))?;
        self.written.extend(f.packs);
        Ok(())
    }

    /// Writes the open pack and the pending index file, and waits until everything this
    /// session wrote is durable. The writer stays usable.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_pack()?;
        self.flush_index()?;
        self.committer.drain()?;
        self.committer = Committer::start(self.repo.backend.clone())?;
        Ok(())
    }

    /// Flushes and merges what this session wrote into the repository's in-memory index.
    pub fn finish(mut self) -> Result<WriterStats> {
        self.flush_pack()?;
        self.flush_index()?;
        self.committer.drain()?;
        let f = IndexFile {
            packs: std::mem::take(&mut self.written),
        };
        let stats = WriterStats {
            blobs: f.packs.iter().map(|p| p.blobs.len() as u64).sum(),
            packs: f.packs.len() as u64,
            bytes_stored: self.bytes_stored,
        };
        let mut idx = self.repo.index.write().unwrap_or_else(|p| p.into_inner());
        idx.add_file(&f)?;
        idx.finish();
        Ok(stats)
    }
}
