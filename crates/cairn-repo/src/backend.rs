//! Storage backends: named, immutable objects.
//!
//! A backend stores whole objects under `/`-separated names. The repository never asks a
//! backend to rename, append or lock: every object is written once under a fresh name
//! (random or content-derived) and then only read or deleted. Atomicity therefore needs only
//! one property of [`Backend::put`]: **a reader sees either the whole object or no object**.
//! Object stores (S3 and alike) give that natively (a PUT becomes visible when complete);
//! [`LocalBackend`] gets it by writing a temporary name in the same folder, `fsync`, `rename`,
//! then `fsync` of the folder. A backup commits by writing its manifest last, after every
//! pack and index it references is durable, so an interrupted backup leaves only
//! unreferenced objects (prune's business), never a manifest that points at nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::direct::AppendFile;
use crate::{Error, Result};
use cairn_io::read_exact_at;

/// Prefix of temporary names in [`LocalBackend`]; [`Backend::list`] never returns them.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Where a repository's objects live.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The whole object. Fails with [`Error::NotFound`] when absent.
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes at `offset` of the object; fails when the range is not inside it.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Stores `data` under `name`, replacing any object of that name. Readers must see the
    /// whole object or none (see the module docs).
    fn put(&self, name: &str, data: &[u8]) -> Result<()>;
    /// Names of the objects whose name starts with `prefix` (at any depth), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes the object; removing an absent object is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// Whether the object exists.
    fn exists(&self, name: &str) -> Result<bool>;
    /// Size of the object in bytes.
    fn size(&self, name: &str) -> Result<u64>;

    /// Starts an object written in pieces ([`NewObject::write`]) and made visible by
    /// [`commit`](Self::commit), with [`put`](Self::put)'s all-or-nothing guarantee. The
    /// default keeps the pieces in memory and `put`s them at commit (right for object
    /// stores, whose PUT needs the whole body or a multipart upload); [`LocalBackend`]
    /// streams them to a temporary file so a pack never sits in memory whole.
    fn create(&self, name: &str) -> Result<NewObject> {
        check_name(name)?;
        Ok(NewObject {
            name: name.to_string(),
            inner: NewInner::Memory(Vec::new()),
        })
    }

    /// Whether a [`NewObject`] of this backend keeps its bytes in memory until its commit
    /// (the default `create`). Writers queue fewer finished packs when it does.
    fn new_objects_in_memory(&self) -> bool {
        true
    }

    /// Makes a [`NewObject`] of this backend visible under its name, durably.
    fn commit(&self, obj: NewObject) -> Result<()> {
        match obj.take_inner() {
            (name, NewInner::Memory(data)) => self.put(&name, &data),
            (name, inner) => {
                // Dropping it removes its temporary file.
                drop(NewObject {
                    name: name.clone(),
                    inner,
                });
                Err(Error::Invalid(format!(
                    "object {name:?} was created by another backend"
                )))
            }
        }
    }

    /// Makes ready, durably, the folders that objects named `<prefix>/<anything>` will live
    /// in, for each of `prefixes`. Called once when a repository is created, so the first
    /// write into each folder does not pay for creating it (and for the `fsync` of its
    /// parent, which on ext4 commits the journal: tens of milliseconds on the hot path of a
    /// backup). Object stores have no folders: the default does nothing.
    fn prepare_folders(&self, prefixes: &[String]) -> Result<()> {
        let _ = prefixes;
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` of the object into `buf` (reused buffers on hot
    /// paths); fails when the range is not inside the object.
    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let data = self.get_range(name, offset, buf.len() as u64)?;
        if data.len() != buf.len() {
            return Err(Error::Invalid(format!(
                "backend returned {} bytes of {name}, asked for {}",
                data.len(),
                buf.len()
            )));
        }
        buf.copy_from_slice(&data);
        Ok(())
    }
}

/// An object being written (see [`Backend::create`]); dropped without a commit, it leaves
/// nothing visible (a local temporary file is removed).
#[derive(Debug)]
pub struct NewObject {
    name: String,
    inner: NewInner,
}

#[derive(Debug)]
enum NewInner {
    Memory(Vec<u8>),
    File {
        // Boxed: the writer's state would make every `Result<NewObject>` large.
        file: Box<AppendFile>,
        tmp: PathBuf,
        path: PathBuf,
    },
    Done,
}

impl NewObject {
    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        match &self.inner {
            NewInner::Memory(v) => v.len() as u64,
            NewInner::File { file, .. } => file.len(),
            NewInner::Done => 0,
        }
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.inner {
            NewInner::Memory(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            NewInner::File { file, .. } => file
                .append(data)
                .map_err(|e| Error::backend("put", &self.name, e)),
            NewInner::Done => Err(Error::Invalid(format!("{} already committed", self.name))),
        }
    }

    /// Overwrites bytes already written, at `offset` (a header whose checksum is known only
    /// at the end).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|e| e > self.len()) {
            return Err(Error::Invalid(format!(
                "{}: rewrite of {}+{} past the {} bytes written",
                self.name,
                offset,
                data.len(),
                self.len()
            )));
        }
        match &mut self.inner {
            NewInner::Memory(v) => {
                // In bounds: checked against len above.
                let o = usize::try_from(offset).map_err(|_| Error::Invalid("offset".into()))?;
                v[o..o + data.len()].copy_from_slice(data);
                Ok(())
            }
            NewInner::File { file, .. } => file
                .write_at(offset, data)
                .map_err(|e| Error::backend("put", &self.name, e)),
            NewInner::Done => Err(Error::Invalid(format!("{} already committed", self.name))),
        }
    }

    /// Done writing: a local file is written out and its staging memory released, so an
    /// object queued for [`Backend::commit`] holds only a file handle. Later writes fail.
    pub fn close(&mut self) -> Result<()> {
        match &mut self.inner {
            NewInner::File { file, .. } => file
                .close()
                .map_err(|e| Error::backend("put", &self.name, e)),
            NewInner::Memory(_) | NewInner::Done => Ok(()),
        }
    }

    fn take_inner(mut self) -> (String, NewInner) {
        let inner = std::mem::replace(&mut self.inner, NewInner::Done);
        (std::mem::take(&mut self.name), inner)
    }
}

impl Drop for NewObject {
    fn drop(&mut self) {
        if let NewInner::File { tmp, .. } = &self.inner {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with(TEMP_PREFIX))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("object name {name:?}")))
    }
}

/// A repository in a local folder (or any mounted file system).
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    temp_counter: AtomicU64,
    direct_writes: bool,
}

impl LocalBackend {
    /// A backend rooted at `root`, creating the folder when missing.
    pub fn new(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root)
            .map_err(|e| Error::backend("mkdir", &root.to_string_lossy(), e))?;
        Ok(LocalBackend {
            root,
            temp_counter: AtomicU64::new(0),
            direct_writes: false,
        })
    }

    /// Whether streamed objects (packs) are written past the page cache (`O_DIRECT` where the
    /// file system allows it; see `direct.rs`). Off by default: it saves a backup about a
    /// fifth of its CPU time but, on the virtio disk we measure on, direct writes plus a
    /// per-pack fsync finished a 2 GiB backup ~0.4 s later than write-back through the
    /// cache (docs/BENCHMARKS.md). Worth it where CPU is the scarce resource (many backups
    /// at once on one host) or the device is fast at direct I/O.
    #[must_use]
    pub fn with_direct_writes(mut self, direct: bool) -> Self {
        self.direct_writes = direct;
        self
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn sync_dir(dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }

    /// Creates the object's folder (durably) and returns a fresh temporary path beside it.
    fn temp_for(&self, name: &str, path: &Path) -> io::Result<PathBuf> {
        let dir = path.parent().unwrap_or(&self.root);
        let created = !dir.exists();
        fs::create_dir_all(dir)?;
        if created {
            if let Some(parent) = dir.parent() {
                Self::sync_dir(parent)?;
            }
        }
        // A unique temporary name per process and call: concurrent writers never collide.
        Ok(dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed),
            name.rsplit('/').next().unwrap_or("obj")
        )))
    }

    fn put_inner(&self, name: &str, path: &Path, data: &[u8]) -> io::Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let tmp = self.temp_for(name, path)?;
        let res = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)?;
            Self::sync_dir(dir)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<String>, depth: u32) -> io::Result<()> {
        // Repository layouts are at most three levels deep; more is not ours.
        if depth > 4 {
            return Ok(());
        }
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for ent in rd {
            let ent = ent?;
            let Ok(fname) = ent.file_name().into_string() else {
                continue;
            };
            if fname.starts_with(TEMP_PREFIX) {
                continue;
            }
            let child = if rel.is_empty() {
                fname.clone()
            } else {
                format!("{rel}/{fname}")
            };
            let ft = ent.file_type()?;
            if ft.is_dir() {
                self.walk(&ent.path(), &child, out, depth + 1)?;
            } else if ft.is_file() {
                out.push(child);
            }
        }
        Ok(())
    }

    /// Temporary files left by interrupted writes (for prune to delete).
    pub fn temp_files(&self) -> Result<Vec<PathBuf>> {
        fn rec(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) -> io::Result<()> {
            if depth > 4 {
                return Ok(());
            }
            for ent in fs::read_dir(dir)? {
                let ent = ent?;
                let ft = ent.file_type()?;
                if ft.is_dir() {
                    rec(&ent.path(), out, depth + 1)?;
                } else if ent.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    out.push(ent.path());
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        rec(&self.root, &mut out, 0).map_err(|e| Error::backend("list", "", e))?;
        Ok(out)
    }
}

impl Backend for LocalBackend {
    fn new_objects_in_memory(&self) -> bool {
        false
    }

    fn prepare_folders(&self, prefixes: &[String]) -> Result<()> {
        let mut parents: Vec<PathBuf> = Vec::new();
        for prefix in prefixes {
            // The folder is where an object `prefix/x` goes; `x` only passes the name check.
            let dir = self
                .path(&format!("{prefix}/x"))?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.root.clone());
            fs::create_dir_all(&dir).map_err(|e| Error::backend("mkdir", prefix, e))?;
            if let Some(parent) = dir.parent() {
                if !parents.iter().any(|p| p == parent) {
                    parents.push(parent.to_path_buf());
                }
            }
        }
        for parent in &parents {
            Self::sync_dir(parent)
                .map_err(|e| Error::backend("mkdir", &parent.to_string_lossy(), e))?;
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        fs::read(&p).map_err(|e| Error::backend("get", name, e))
    }

    fn create(&self, name: &str) -> Result<NewObject> {
        let path = self.path(name)?;
        let tmp = self
            .temp_for(name, &path)
            .map_err(|e| Error::backend("put", name, e))?;
        let file = Box::new(
            AppendFile::create_new(&tmp, self.direct_writes)
                .map_err(|e| Error::backend("put", name, e))?,
        );
        Ok(NewObject {
            name: name.to_string(),
            inner: NewInner::File { file, tmp, path },
        })
    }

    fn commit(&self, obj: NewObject) -> Result<()> {
        match obj.take_inner() {
            (name, NewInner::Memory(data)) => self.put(&name, &data),
            (
                name,
                NewInner::File {
                    file, tmp, path, ..
                },
            ) => {
                let dir = path.parent().unwrap_or(&self.root).to_path_buf();
                let res = file
                    .finish()
                    .and_then(|file| file.sync_all().map(|()| file))
                    .and_then(|file| {
                        drop(file);
                        fs::rename(&tmp, &path)
                    })
                    .and_then(|()| Self::sync_dir(&dir));
                if res.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                res.map_err(|e| Error::backend("put", &name, e))
            }
            (name, NewInner::Done) => Err(Error::Invalid(format!("{name} already committed"))),
        }
    }

    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let p = self.path(name)?;
        let f = File::open(&p).map_err(|e| Error::backend("get", name, e))?;
        read_exact_at(&f, buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::BadLength {
                    name: name.to_string(),
                    offset,
                    field: "range length",
                    found: buf.len() as u64,
                    expected: "inside the object".into(),
                }
            } else {
                Error::backend("get", name, e)
            }
        })
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        let mut f = File::open(&p).map_err(|e| Error::backend("get", name, e))?;
        let size = f
            .metadata()
            .map_err(|e| Error::backend("get", name, e))?
            .len();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(Error::BadLength {
                name: name.to_string(),
                offset,
                field: "range length",
                found: len,
                expected: format!("inside the object's {size} bytes"),
            });
        }
        let n =
            usize::try_from(len).map_err(|_| Error::Invalid(format!("range of {len} bytes")))?;
        let mut buf = vec![0u8; n];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| Error::backend("get", name, e))?;
        Ok(buf)
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        let p = self.path(name)?;
        self.put_inner(name, &p, data)
            .map_err(|e| Error::backend("put", name, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // Walk from the deepest folder the prefix names, then filter.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            check_name(dir_part)?;
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        self.walk(&start, dir_part, &mut out, 0)
            .map_err(|e| Error::backend("list", prefix, e))?;
        out.retain(|n| n.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let p = self.path(name)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::backend("delete", name, e)),
        }
    }

    fn exists(&self, name: &str) -> Result<bool> {
        let p = self.path(name)?;
        Ok(p.is_file())
    }

    fn size(&self, name: &str) -> Result<u64> {
        let p = self.path(name)?;
        fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| Error::backend("size", name, e))
    }
}

/// An in-memory backend (tests, dry runs). Cheap to clone: clones share the objects.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    objects: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation
        // is one insert/remove), so a poisoned lock is safe to use.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn obj(&self, name: &str) -> Result<Arc<Vec<u8>>> {
        check_name(name)?;
        self.lock()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                name: name.to_string(),
            })
    }
}

impl Backend for MemoryBackend {
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.obj(name)?.as_ref().clone())
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let o = self.obj(name)?;
        let size = o.len() as u64;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| Error::BadLength {
                name: name.to_string(),
                offset,
                field: "range length",
                found: len,
                expected: format!("inside the object's {size} bytes"),
            })?;
        let (s, e) = (
            usize::try_from(offset).map_err(|_| Error::Invalid("offset".into()))?,
            usize::try_from(end).map_err(|_| Error::Invalid("end".into()))?,
        );
        Ok(o[s..e].to_vec())
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(name)?;
        self.lock()
            .insert(name.to_string(), Arc::new(data.to_vec()));
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .lock()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.lock().remove(name);
        Ok(())
    }

    fn exists(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        Ok(self.lock().contains_key(name))
    }

    fn size(&self, name: &str) -> Result<u64> {
        Ok(self.obj(name)?.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `init` makes all 256 pack folders (so no backup pays for creating one); they hold
    /// no objects, and the first pack goes into its folder without creating it.
    #[test]
    fn init_prepares_the_pack_folders() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(LocalBackend::new(dir.path()).unwrap());
        crate::Repository::init(b.clone(), &crate::InitOptions::default(), None).unwrap();
        for x in ["00", "7f", "ff"] {
            assert!(dir.path().join("packs").join(x).is_dir(), "packs/{x}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("packs")).unwrap().count(),
            256
        );
        assert!(b.list("packs/").unwrap().is_empty());
    }

    /// Streamed objects come out byte-exact whether written through the page cache or past
    /// it, including a header rewritten after megabytes were appended; nothing is visible
    /// before the commit and no temporary file is left after it.
    #[test]
    fn streamed_objects_direct_and_buffered() {
        for direct in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let b = LocalBackend::new(dir.path())
                .unwrap()
                .with_direct_writes(direct);
            b.prepare_folders(&["packs/0f".to_string()]).unwrap();
            let mut obj = b.create("packs/0f/0f01").unwrap();
            let mut expect = Vec::new();
            for i in 0..700u32 {
                let piece: Vec<u8> = (0..7919u32).map(|j| (i ^ j).to_le_bytes()[0]).collect();
                obj.write(&piece).unwrap();
                expect.extend_from_slice(&piece);
            }
            obj.write_at(5, b"HEADER").unwrap();
            expect[5..11].copy_from_slice(b"HEADER");
            assert!(!b.exists("packs/0f/0f01").unwrap());
            b.commit(obj).unwrap();
            assert!(b.get("packs/0f/0f01").unwrap() == expect, "direct {direct}");
            assert!(b.temp_files().unwrap().is_empty());
        }
    }

    fn exercise(b: &dyn Backend) {
        b.put("packs/ab/abcd", b"hello").unwrap();
        b.put("index/0001", b"x").unwrap();
        b.put("config", b"c").unwrap();
        assert_eq!(b.get("packs/ab/abcd").unwrap(), b"hello");
        assert_eq!(b.get_range("packs/ab/abcd", 1, 3).unwrap(), b"ell");
        assert!(b.get_range("packs/ab/abcd", 3, 3).is_err());
        assert_eq!(b.list("packs/").unwrap(), vec!["packs/ab/abcd".to_string()]);
        assert_eq!(b.list("index/").unwrap(), vec!["index/0001".to_string()]);
        assert_eq!(b.list("").unwrap().len(), 3);
        assert_eq!(b.size("config").unwrap(), 1);
        assert!(b.exists("config").unwrap());
        b.put("config", b"cc").unwrap();
        assert_eq!(b.get("config").unwrap(), b"cc");
        b.delete("config").unwrap();
        b.delete("config").unwrap();
        assert!(!b.exists("config").unwrap());
        assert!(matches!(b.get("config"), Err(Error::NotFound { .. })));
        assert!(b.put("../evil", b"x").is_err());
        assert!(b.put("/abs", b"x").is_err());
        assert!(b.put("a//b", b"x").is_err());
    }

    fn exercise_new_object(b: &dyn Backend) {
        let mut o = b.create("packs/cd/new").unwrap();
        o.write(b"xxxxhello").unwrap();
        o.write(b" world").unwrap();
        o.write_at(0, b"HEAD").unwrap();
        assert!(o.write_at(13, b"abc").is_err(), "past the end");
        assert_eq!(o.len(), 15);
        assert!(
            !b.exists("packs/cd/new").unwrap(),
            "invisible before commit"
        );
        b.commit(o).unwrap();
        assert_eq!(b.get("packs/cd/new").unwrap(), b"HEADhello world");
        let mut buf = [0u8; 5];
        b.get_range_into("packs/cd/new", 4, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(b.get_range_into("packs/cd/new", 12, &mut buf).is_err());
        // Dropped without commit: nothing appears.
        let mut o = b.create("packs/cd/gone").unwrap();
        o.write(b"partial").unwrap();
        drop(o);
        assert!(!b.exists("packs/cd/gone").unwrap());
        assert!(b.create("../evil").is_err());
    }

    #[test]
    fn new_objects_in_both_backends() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path()).unwrap();
        exercise_new_object(&b);
        assert!(b.temp_files().unwrap().is_empty(), "temporary files left");
        exercise_new_object(&MemoryBackend::new());
        // An object of one backend cannot be committed by another.
        let o = b.create("x").unwrap();
        assert!(MemoryBackend::new().commit(o).is_err());
    }

    #[test]
    fn local_backend_contract() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path()).unwrap();
        exercise(&b);
        // A leftover temporary file is invisible to list and reported to prune.
        std::fs::write(d.path().join("index").join(".tmp-1-2-x"), b"partial").unwrap();
        assert_eq!(b.list("index/").unwrap().len(), 1);
        assert_eq!(b.temp_files().unwrap().len(), 1);
    }

    #[test]
    fn memory_backend_contract() {
        exercise(&MemoryBackend::new());
    }
}
