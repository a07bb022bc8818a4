//! Reading a catalog: list, lookup, walk, find, diff, JSON output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::blob::{Entry, Kind};
use crate::{
    get_dir, get_sd_table, BlobId, BlobStore, DirBlob, Error, Glob, Result, DEFAULT_MAX_DEPTH,
};

/// Directory blobs kept decoded per open catalog (bounds its memory; a miss re-reads).
const MAX_CACHED_DIRS: usize = 1024;
/// Most entries one walk or diff visits: a hostile blob tree (the same child id under many
/// names, nested) could otherwise be exponentially large.
pub(crate) const MAX_WALK_STEPS: u64 = 1 << 30;

/// An open catalog of one volume.
pub struct Catalog<'s, S: BlobStore + ?Sized> {
    store: &'s S,
    root: BlobId,
    sd_table: Option<BlobId>,
    case_insensitive: bool,
    cache: Mutex<HashMap<BlobId, Arc<DirBlob>>>,
}

impl<S: BlobStore + ?Sized> std::fmt::Debug for Catalog<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("root", &crate::hex(&self.root))
            .finish_non_exhaustive()
    }
}

/// What changed between two versions of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum What {
    /// File, directory, symlink or other.
    Kind,
    /// Logical size.
    Size,
    /// Modification time.
    Mtime,
    /// Data location (extents), named streams or symlink target.
    Content,
    /// Mode, owner, attributes, xattrs, security descriptor, creation time, link count,
    /// exclusion. (Access and change times are not compared: they move on every read.)
    Metadata,
}

/// The kind of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "change")]
pub enum ChangeKind {
    /// Only in the new catalog.
    Added,
    /// Only in the old catalog.
    Removed,
    /// In both, different.
    Changed {
        /// What differs.
        what: Vec<What>,
    },
}

/// One difference between two catalogs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Path from the volume root.
    pub path: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// A named stream in JSON output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamJson {
    /// Name.
    pub name: String,
    /// Size.
    pub size: u64,
}

/// An entry as the CLI prints it (`ls --json`, `find --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryJson {
    /// Path from the volume root.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<String>,
    /// Creation time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btime: Option<String>,
    /// Unix mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Unix owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Unix group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Windows attribute bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<u32>,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Named streams.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamJson>,
    /// Data not backed up (exclusion pattern).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
    /// Why the entry is incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Entry {
    /// The JSON view of this entry at `path`.
    pub fn to_json(&self, path: &str) -> EntryJson {
        EntryJson {
            path: path.to_string(),
            kind: self.kind.as_str(),
            size: self.size,
            mtime: self.mtime.map(|t| t.to_rfc3339()),
            btime: self.btime.map(|t| t.to_rfc3339()),
            mode: self.unix.map(|u| u.mode),
            uid: self.unix.map(|u| u.uid),
            gid: self.unix.map(|u| u.gid),
            attributes: self.windows_attributes,
            target: self.symlink_target.clone(),
            streams: self
                .streams
                .iter()
                .map(|s| StreamJson {
                    name: s.name.clone(),
                    size: s.size,
                })
                .collect(),
            excluded: self.excluded,
            error: self.error.clone(),
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

impl<'s, S: BlobStore + ?Sized> Catalog<'s, S> {
    /// Opens the catalog whose root directory blob is `root` (reads and checks it).
    pub fn open(store: &'s S, root: BlobId) -> Result<Self> {
        let cat = Catalog {
            store,
            root,
            sd_table: None,
            case_insensitive: false,
            cache: Mutex::new(HashMap::new()),
        };
        cat.dir(&root)?;
        Ok(cat)
    }

    /// Path lookups ([`Catalog::list`], [`Catalog::lookup`]) fall back to a case-insensitive
    /// match when no name matches exactly (NTFS, FAT, exFAT catalogs).
    pub fn with_case_insensitive_paths(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    /// Attaches the volume's SD table (for [`Catalog::security_descriptor`]).
    pub fn with_sd_table(mut self, sd_table: Option<BlobId>) -> Self {
        self.sd_table = sd_table;
        self
    }

    /// The root blob id.
    pub fn root(&self) -> BlobId {
        self.root
    }

    /// The store the catalog reads.
    pub fn store(&self) -> &'s S {
        self.store
    }

    /// The security descriptor bytes an entry's `sd` index names.
    pub fn security_descriptor(&self, index: u32) -> Result<Option<Vec<u8>>> {
        let Some(id) = self.sd_table else {
            return Ok(None);
        };
        let t = get_sd_table(self.store, &id)?;
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| t.descriptors.get(i))
            .map(|s| s.0.clone()))
    }

    /// The decoded directory blob `id` (cached).
    pub fn dir(&self, id: &BlobId) -> Result<Arc<DirBlob>> {
        if let Some(d) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(d.clone());
        }
        let d = Arc::new(get_dir(self.store, id)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_DIRS {
            cache.clear();
        }
        cache.insert(*id, d.clone());
        Ok(d)
    }

    /// The decoded directory blob `id`, not kept: whole-tree walks read each blob once, and
    /// caching them would hold a whole catalog in memory.
    pub fn dir_uncached(&self, id: &BlobId) -> Result<Arc<DirBlob>> {
        if let Some(d) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(d.clone());
        }
        Ok(Arc::new(get_dir(self.store, id)?))
    }

    /// The blob id of the directory at `path`.
    fn dir_id(&self, path: &str) -> Result<BlobId> {
        let mut id = self.root;
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            walked.push('/');
            walked.push_str(part);
            let d = self.dir(&id)?;
            let e = find_name(&d, part, self.case_insensitive)
                .ok_or_else(|| Error::NotFound(walked.clone()))?;
            if e.kind != Kind::Dir {
                return Err(Error::NotADirectory(walked));
            }
            id = match (&e.child, &e.error) {
                (Some(c), _) => *c,
                (None, why) => {
                    return Err(Error::NotCatalogued {
                        path: walked,
                        why: why.clone().unwrap_or_else(|| "no child blob".into()),
                    })
                }
            };
        }
        Ok(id)
    }

    /// The entries of the directory at `path` (`/` for the root), sorted by name.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let id = self.dir_id(path)?;
        Ok(self.dir(&id)?.entries.clone())
    }

    /// The entry at `path`, or `None` when nothing has that name. The root (`/`) is a
    /// synthetic directory entry named `/`.
    pub fn lookup(&self, path: &str) -> Result<Option<Entry>> {
        let trimmed = path.trim_end_matches('/');
        let Some(slash) = trimmed.rfind('/') else {
            if trimmed.is_empty() {
                let mut root = Entry::new("/", Kind::Dir, 0);
                root.child = Some(self.root);
                return Ok(Some(root));
            }
            return self.lookup(&format!("/{trimmed}"));
        };
        let (parent, name) = (&trimmed[..slash], &trimmed[slash + 1..]);
        let id = match self.dir_id(parent) {
            Ok(id) => id,
            Err(Error::NotFound(_) | Error::NotADirectory(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let d = self.dir(&id)?;
        Ok(find_name(&d, name, self.case_insensitive).cloned())
    }

    /// Visits every entry depth first, names in order: `visit(path, entry)`.
    pub fn walk(&self, visit: &mut dyn FnMut(&str, &Entry) -> Result<()>) -> Result<()> {
        let mut steps = 0u64;
        self.walk_from(self.root, "", 0, &mut steps, visit)
    }

    fn walk_from(
        &self,
        id: BlobId,
        path: &str,
        depth: u32,
        steps: &mut u64,
        visit: &mut dyn FnMut(&str, &Entry) -> Result<()>,
    ) -> Result<()> {
        if depth > DEFAULT_MAX_DEPTH {
            return Err(Error::TooDeep(path.to_string()));
        }
        let d = self.dir_uncached(&id)?;
        for e in &d.entries {
            *steps += 1;
            if *steps > MAX_WALK_STEPS {
                return Err(Error::TooLarge {
                    what: "catalog walk steps",
                    found: *steps,
                    max: MAX_WALK_STEPS,
                });
            }
            let p = join(path, &e.name);
            visit(&p, e)?;
            if let (Kind::Dir, Some(c)) = (e.kind, e.child) {
                self.walk_from(c, &p, depth + 1, steps, visit)?;
            }
        }
        Ok(())
    }

    /// Entries whose path (anchored pattern) or name (pattern without `/`) matches.
    pub fn find(&self, pattern: &Glob) -> Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        self.walk(&mut |p, e| {
            if pattern.matches(p) {
                out.push((p.to_string(), e.clone()));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Changes from `self` (old) to `new`. Both catalogs must read the same store kind.
    pub fn diff(&self, new: &Catalog<'_, S>) -> Result<Vec<Change>> {
        let mut d = Differ {
            old: self,
            new,
            out: Vec::new(),
            steps: 0,
        };
        d.dirs(Some(self.root), Some(new.root), "", 0)?;
        Ok(d.out)
    }
}

/// Changes between the catalogs rooted at `old_root` and `new_root` in one store, in path
/// order. Subtrees with equal ids are skipped without being read.
pub fn diff<S: BlobStore + ?Sized>(
    store: &S,
    old_root: BlobId,
    new_root: BlobId,
) -> Result<Vec<Change>> {
    let old = Catalog::open(store, old_root)?;
    let new = Catalog::open(store, new_root)?;
    old.diff(&new)
}

fn find_name<'d>(d: &'d DirBlob, name: &str, case_insensitive: bool) -> Option<&'d Entry> {
    let exact = d
        .entries
        .binary_search_by(|e| e.name.as_str().cmp(name))
        .ok()
        .map(|i| &d.entries[i]);
    if exact.is_some() || !case_insensitive {
        return exact;
    }
    let folded = name.to_lowercase();
    d.entries.iter().find(|e| e.name.to_lowercase() == folded)
}

struct Differ<'a, 'o, 'n, S: BlobStore + ?Sized> {
    old: &'a Catalog<'o, S>,
    new: &'a Catalog<'n, S>,
    out: Vec<Change>,
    steps: u64,
}

fn whats(a: &Entry, b: &Entry) -> Vec<What> {
    let mut w = Vec::new();
    if a.kind != b.kind {
        w.push(What::Kind);
    }
    if a.size != b.size {
        w.push(What::Size);
    }
    if a.mtime != b.mtime {
        w.push(What::Mtime);
    }
    if a.extents != b.extents || a.streams != b.streams || a.symlink_target != b.symlink_target {
        w.push(What::Content);
    }
    if a.unix != b.unix
        || a.windows_attributes != b.windows_attributes
        || a.xattrs != b.xattrs
        || a.sd != b.sd
        || a.btime != b.btime
        || a.nlink != b.nlink
        || a.excluded != b.excluded
    {
        w.push(What::Metadata);
    }
    w
}

impl<S: BlobStore + ?Sized> Differ<'_, '_, '_, S> {
    fn step(&mut self) -> Result<()> {
        self.steps += 1;
        if self.steps > MAX_WALK_STEPS {
            return Err(Error::TooLarge {
                what: "catalog diff steps",
                found: self.steps,
                max: MAX_WALK_STEPS,
            });
        }
        Ok(())
    }

    fn dirs(
        &mut self,
        old: Option<BlobId>,
        new: Option<BlobId>,
        path: &str,
        depth: u32,
    ) -> Result<()> {
        if old == new {
            return Ok(());
        }
        if depth > DEFAULT_MAX_DEPTH {
            return Err(Error::TooDeep(path.to_string()));
        }
        let empty = Arc::new(DirBlob::default());
        let a = match old {
            Some(id) => self.old.dir_uncached(&id)?,
            None => empty.clone(),
        };
        let b = match new {
            Some(id) => self.new.dir_uncached(&id)?,
            None => empty,
        };
        let (mut i, mut j) = (0, 0);
        while i < a.entries.len() || j < b.entries.len() {
            self.step()?;
            let ord = match (a.entries.get(i), b.entries.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    let x = &a.entries[i];
                    self.subtree(x, &join(path, &x.name), false, depth)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let y = &b.entries[j];
                    self.subtree(y, &join(path, &y.name), true, depth)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (x, y) = (&a.entries[i], &b.entries[j]);
                    let p = join(path, &x.name);
                    let w = whats(x, y);
                    if !w.is_empty() {
                        self.out.push(Change {
                            path: p.clone(),
                            kind: ChangeKind::Changed { what: w },
                        });
                    }
                    let xc = if x.kind == Kind::Dir { x.child } else { None };
                    let yc = if y.kind == Kind::Dir { y.child } else { None };
                    self.dirs(xc, yc, &p, depth + 1)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Reports `e` and everything under it as added (`added`) or removed.
    fn subtree(&mut self, e: &Entry, path: &str, added: bool, depth: u32) -> Result<()> {
        let kind = if added {
            ChangeKind::Added
        } else {
            ChangeKind::Removed
        };
        self.out.push(Change {
            path: path.to_string(),
            kind,
        });
        if let (Kind::Dir, Some(c)) = (e.kind, e.child) {
            if added {
                self.dirs(None, Some(c), path, depth + 1)
            } else {
                self.dirs(Some(c), None, path, depth + 1)
            }
        } else {
            Ok(())
        }
    }
}
