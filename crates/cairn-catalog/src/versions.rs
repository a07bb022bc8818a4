//! Search across restore points: each distinct version of each matching file once, with
//! every restore point that holds it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::blob::{Kind, Time};
use crate::read::MAX_WALK_STEPS;
use crate::{BlobId, BlobStore, Catalog, Error, Glob, Result, DEFAULT_MAX_DEPTH};

/// One restore point's catalog of a volume, as [`find_versions`] takes it.
#[derive(Debug)]
pub struct RestorePointRef<'a, 's, S: BlobStore + ?Sized> {
    /// Restore point id, as the CLI prints it.
    pub id: String,
    /// When the restore point was taken.
    pub time: Time,
    /// The VM it belongs to (a path is one file per VM).
    pub vm_name: String,
    /// The volume catalog.
    pub catalog: &'a Catalog<'s, S>,
}

/// A distinct version of a file: same VM, path, size, mtime and content identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    /// VM name.
    pub vm: String,
    /// Path from the volume root.
    pub path: String,
    /// `file`, `dir`, `symlink`, `other`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Size.
    pub size: u64,
    /// Modification time, RFC 3339.
    pub mtime: Option<String>,
    /// Hex SHA-256 of the entry's content identity ([`crate::Entry::content_id`]).
    pub content: String,
    /// Restore points holding this version, in the order given.
    pub restore_points: Vec<String>,
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    vm: usize,
    path: String,
    size: u64,
    mtime: Option<Time>,
    content: BlobId,
}

struct Search<'p> {
    pattern: &'p Glob,
    vm: usize,
    /// Directory blob id → its path → indices of matching versions in the subtree.
    memo: HashMap<BlobId, HashMap<String, Arc<Vec<usize>>>>,
    index: HashMap<Key, usize>,
    versions: Vec<(Version, Option<Time>, usize)>,
    steps: u64,
}

/// Finds every distinct version of entries matching `pattern` in the restore points taken
/// within `[since, until]` (inclusive; `None` = open). Directory blobs shared between restore
/// points (same id at the same path) are searched once, so a series of mostly unchanged
/// catalogs costs little more than one. Results are sorted by VM, path, then first
/// appearance.
pub fn find_versions<S: BlobStore + ?Sized>(
    catalogs: &[RestorePointRef<'_, '_, S>],
    pattern: &Glob,
    since: Option<Time>,
    until: Option<Time>,
) -> Result<Vec<Version>> {
    let mut vms: Vec<&str> = Vec::new();
    let mut searches: Vec<Search<'_>> = Vec::new();
    for (order, rp) in catalogs.iter().enumerate() {
        if since.is_some_and(|s| rp.time < s) || until.is_some_and(|u| rp.time > u) {
            continue;
        }
        let vm = match vms.iter().position(|v| *v == rp.vm_name) {
            Some(i) => i,
            None => {
                vms.push(&rp.vm_name);
                searches.push(Search {
                    pattern,
                    vm: vms.len() - 1,
                    memo: HashMap::new(),
                    index: HashMap::new(),
                    versions: Vec::new(),
                    steps: 0,
                });
                vms.len() - 1
            }
        };
        let s = &mut searches[vm];
        let hits = s.dir(rp.catalog, rp.catalog.root(), "", 0)?;
        for &i in hits.iter() {
            let rps = &mut s.versions[i].0.restore_points;
            if rps.last() != Some(&rp.id) {
                rps.push(rp.id.clone());
            }
            if s.versions[i].2 == usize::MAX {
                s.versions[i].2 = order;
            }
        }
    }
    let mut out: Vec<(Version, usize)> = Vec::new();
    for s in searches {
        let vm = vms[s.vm].to_string();
        out.extend(s.versions.into_iter().map(|(mut v, _, first)| {
            v.vm.clone_from(&vm);
            (v, first)
        }));
    }
    out.sort_by(|a, b| (&a.0.vm, &a.0.path, a.1).cmp(&(&b.0.vm, &b.0.path, b.1)));
    Ok(out.into_iter().map(|(v, _)| v).collect())
}

impl Search<'_> {
    fn dir<S: BlobStore + ?Sized>(
        &mut self,
        cat: &Catalog<'_, S>,
        id: BlobId,
        path: &str,
        depth: u32,
    ) -> Result<Arc<Vec<usize>>> {
        if let Some(hit) = self.memo.get(&id).and_then(|m| m.get(path)) {
            return Ok(hit.clone());
        }
        if depth > DEFAULT_MAX_DEPTH {
            return Err(Error::TooDeep(path.to_string()));
        }
        let d = cat.dir_uncached(&id)?;
        let mut found = Vec::new();
        let mut p = String::with_capacity(path.len() + 64);
        for e in &d.entries {
            self.steps += 1;
            if self.steps > MAX_WALK_STEPS {
                return Err(Error::TooLarge {
                    what: "version search steps",
                    found: self.steps,
                    max: MAX_WALK_STEPS,
                });
            }
            p.clear();
            p.push_str(path);
            p.push('/');
            p.push_str(&e.name);
            if self.pattern.matches(&p) {
                let content = e.content_id();
                let key = Key {
                    vm: self.vm,
                    path: p.clone(),
                    size: e.size,
                    mtime: e.mtime,
                    content,
                };
                let n = self.versions.len();
                let i = *self.index.entry(key).or_insert(n);
                if i == n {
                    let v = Version {
                        vm: String::new(),
                        path: p.clone(),
                        kind: e.kind.as_str(),
                        size: e.size,
                        mtime: e.mtime.map(Time::to_rfc3339),
                        content: crate::hex(&content),
                        restore_points: Vec::new(),
                    };
                    self.versions.push((v, e.mtime, usize::MAX));
                }
                found.push(i);
            }
            if let (Kind::Dir, Some(c)) = (e.kind, e.child) {
                let sub = self.dir(cat, c, &p, depth + 1)?;
                found.extend_from_slice(&sub);
            }
        }
        let found = Arc::new(found);
        self.memo
            .entry(id)
            .or_default()
            .insert(path.to_string(), found.clone());
        Ok(found)
    }
}
