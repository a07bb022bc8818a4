//! The find index: every distinct version of every entry of a series of restore points, with
//! the restore points holding it, so that `find` answers by scanning one table instead of
//! reading and decoding every directory blob of every restore point.
//!
//! One [`IndexGroup`] covers one volume position (disk, partition) of one VM. It is derived
//! data: [`IndexGroup::update`] brings it up to date with the restore points that exist now
//! (dropping forgotten ones, appending new ones by walking only the directories whose blob
//! changed since the previous restore point), and a group that is missing, corrupt or
//! inconsistent with the catalogs is rebuilt from them. The byte format (frame type 3, and
//! the pointer, frame type 4) is in `docs/formats/catalog.md`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::blob::{bounded_vec, decode_framed, frame, Kind, Time};
use crate::read::MAX_WALK_STEPS;
use crate::{
    get_dir, BlobId, BlobStore, DirBlob, Error, Glob, Result, Version, DEFAULT_MAX_DEPTH,
    MAX_NAME_BYTES,
};

/// Blob type byte of a find-index group.
pub const TYPE_FIND_INDEX: u8 = 3;
/// Blob type byte of a find-index pointer (the list of group blob ids).
pub const TYPE_FIND_POINTER: u8 = 4;
/// Most restore points one group indexes (years of hourly backups of one VM).
pub const MAX_INDEX_POINTS: usize = 1 << 20;
/// Most rows (distinct versions) one group holds; the 64 MiB payload bound is met first
/// for real data (a row is at least ~45 bytes), this bounds the decoder's loop.
pub const MAX_INDEX_ROWS: usize = 1 << 24;
/// Most (version, restore point) pairs one group records: 10 million files in 400 restore
/// points; bounds what a search over a hostile group can be made to list.
pub const MAX_INDEX_MEMBERSHIP: u64 = 1 << 32;
/// Most groups one pointer lists (VMs × volumes).
pub const MAX_INDEX_GROUPS: usize = 1 << 16;
/// Longest restore point id or VM name kept in a group.
pub const MAX_INDEX_TEXT: usize = 4096;
/// Longest path in a row: the deepest catalog walk times the longest name.
pub const MAX_INDEX_PATH: usize = (DEFAULT_MAX_DEPTH as usize + 1) * (MAX_NAME_BYTES + 1);

/// A restore point as a group indexes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPoint {
    /// Restore point id, as the CLI prints it.
    pub id: String,
    /// When the restore point was taken.
    pub time: Time,
    /// Root directory blob of the volume's catalog in that restore point.
    pub root: BlobId,
}

/// One distinct version: path, kind, size, mtime, content id, and the restore points
/// (indices into the group's points, as half-open spans) holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Row {
    path: String,
    kind: Kind,
    size: u64,
    mtime: Option<Time>,
    content: BlobId,
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_INDEX_POINTS>")]
    spans: Vec<(u32, u32)>,
}

/// The find index of one volume position of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexGroup {
    /// VM name.
    pub vm: String,
    /// Disk position in the manifests.
    pub disk: u32,
    /// Partition number.
    pub partition: u32,
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_INDEX_POINTS>")]
    points: Vec<IndexedPoint>,
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_INDEX_ROWS>")]
    rows: Vec<Row>,
}

/// What [`IndexGroup::update`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Restore points dropped (forgotten since the index was written).
    pub dropped: usize,
    /// Restore points added.
    pub added: usize,
    /// The group was cleared and rebuilt (inconsistent order or catalogs).
    pub rebuilt: bool,
    /// Directory blobs read and decoded.
    pub dirs_read: u64,
}

impl UpdateStats {
    /// Whether the group changed.
    pub fn changed(&self) -> bool {
        self.dropped > 0 || self.added > 0 || self.rebuilt
    }
}

/// Ordering of paths as a depth-first walk with names sorted by bytes visits them: `/`
/// sorts before every other byte, so a directory's subtree directly follows it and the
/// paths under `P/` are contiguous.
fn dfs_cmp(a: &str, b: &str) -> Ordering {
    let key = |c: u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    path: String,
    size: u64,
    mtime: Option<Time>,
    content: BlobId,
}

impl IndexGroup {
    /// An empty group.
    pub fn new(vm: &str, disk: u32, partition: u32) -> IndexGroup {
        IndexGroup {
            vm: vm.to_string(),
            disk,
            partition,
            points: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// The restore points indexed, oldest first.
    pub fn points(&self) -> &[IndexedPoint] {
        &self.points
    }

    /// Number of distinct versions.
    pub fn versions(&self) -> usize {
        self.rows.len()
    }

    /// Brings the group up to date with `points` (the restore points of this VM and volume
    /// that exist now, in the order `find` reports them). Points no longer present are
    /// dropped; points after the last indexed one are added by walking only the directory
    /// blobs that differ from the previous point's at the same path. When the indexed points
    /// are not a prefix-ordered subset of `points` (a point inserted in the past, a catalog
    /// root that changed), the group is rebuilt from scratch.
    pub fn update<S: BlobStore + ?Sized>(
        &mut self,
        store: &S,
        points: &[IndexedPoint],
    ) -> Result<UpdateStats> {
        let mut stats = UpdateStats::default();
        if points.len() > MAX_INDEX_POINTS {
            return Err(Error::TooLarge {
                what: "restore points in a find index",
                found: points.len() as u64,
                max: MAX_INDEX_POINTS as u64,
            });
        }
        // Which indexed points survive, and where the new ones start.
        let wanted: HashMap<&str, (usize, &IndexedPoint)> = points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), (i, p)))
            .collect();
        let mut keep = Vec::with_capacity(self.points.len());
        let mut last_pos: Option<usize> = None;
        let mut consistent = true;
        for p in &self.points {
            match wanted.get(p.id.as_str()) {
                Some(&(pos, w)) if w == p => {
                    if last_pos.is_some_and(|l| pos <= l) {
                        consistent = false;
                    }
                    last_pos = Some(pos);
                    keep.push(true);
                }
                Some(_) => {
                    consistent = false;
                    keep.push(true);
                }
                None => keep.push(false),
            }
        }
        let kept = keep.iter().filter(|k| **k).count();
        // Every wanted point not indexed must come after the last kept one.
        let first_new = last_pos.map_or(0, |l| l + 1);
        if consistent && points.len() - first_new + kept != points.len() {
            consistent = false;
        }
        if !consistent {
            self.points.clear();
            self.rows.clear();
            stats.rebuilt = true;
        } else if kept < self.points.len() {
            stats.dropped = self.points.len() - kept;
            self.drop_points(&keep);
        }
        let first_new = if stats.rebuilt { 0 } else { first_new };
        if first_new >= points.len() {
            return Ok(stats);
        }
        let mut b = Builder::new(self, store);
        for p in &points[first_new..] {
            b.add_point(p)?;
            stats.added += 1;
        }
        stats.dirs_read = b.dirs_read;
        Ok(stats)
    }

    /// Removes the points whose `keep` flag is false, renumbering the spans.
    fn drop_points(&mut self, keep: &[bool]) {
        let mut new_index = Vec::with_capacity(keep.len());
        let mut n = 0u32;
        for &k in keep {
            new_index.push(k.then_some(n));
            if k {
                n += 1;
            }
        }
        for row in &mut self.rows {
            let mut spans: Vec<(u32, u32)> = Vec::new();
            for &(s, e) in &row.spans {
                for old in s..e {
                    let Some(Some(new)) = usize::try_from(old).ok().and_then(|o| new_index.get(o))
                    else {
                        continue;
                    };
                    push_point(&mut spans, *new);
                }
            }
            row.spans = spans;
        }
        self.rows.retain(|r| !r.spans.is_empty());
        let mut i = 0;
        self.points.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }

    /// Every distinct version of entries matching `pattern` held by a point taken within
    /// `[since, until]`, with those points, sorted by path then first appearance: the
    /// answer [`crate::find_versions`] gives for the same points.
    pub fn find(&self, pattern: &Glob, since: Option<Time>, until: Option<Time>) -> Vec<Version> {
        let in_window: Vec<bool> = self
            .points
            .iter()
            .map(|p| since.is_none_or(|s| p.time >= s) && until.is_none_or(|u| p.time <= u))
            .collect();
        let mut out: Vec<(Version, usize)> = Vec::new();
        for row in &self.rows {
            if !pattern.matches(&row.path) {
                continue;
            }
            let mut ids = Vec::new();
            let mut first = usize::MAX;
            for &(s, e) in &row.spans {
                for i in s..e {
                    let Ok(i) = usize::try_from(i) else { continue };
                    if in_window.get(i) == Some(&true) {
                        first = first.min(i);
                        ids.push(self.points[i].id.clone());
                    }
                }
            }
            if ids.is_empty() {
                continue;
            }
            out.push((
                Version {
                    vm: self.vm.clone(),
                    path: row.path.clone(),
                    kind: row.kind.as_str(),
                    size: row.size,
                    mtime: row.mtime.map(Time::to_rfc3339),
                    content: crate::hex(&row.content),
                    restore_points: ids,
                },
                first,
            ));
        }
        out.sort_by(|a, b| (&a.0.path, a.1).cmp(&(&b.0.path, b.1)));
        out.into_iter().map(|(v, _)| v).collect()
    }

    fn validate(&self) -> Result<()> {
        let text = |what: &'static str, s: &str| {
            if s.len() > MAX_INDEX_TEXT {
                Err(Error::TooLarge {
                    what,
                    found: s.len() as u64,
                    max: MAX_INDEX_TEXT as u64,
                })
            } else {
                Ok(())
            }
        };
        text("find index VM name", &self.vm)?;
        for p in &self.points {
            text("find index restore point id", &p.id)?;
        }
        let n = u32::try_from(self.points.len()).map_err(|_| Error::TooLarge {
            what: "find index restore points",
            found: self.points.len() as u64,
            max: MAX_INDEX_POINTS as u64,
        })?;
        let mut membership = 0u64;
        for (r, row) in self.rows.iter().enumerate() {
            if row.path.len() > MAX_INDEX_PATH {
                return Err(Error::TooLarge {
                    what: "find index path",
                    found: row.path.len() as u64,
                    max: MAX_INDEX_PATH as u64,
                });
            }
            if !row.path.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "find index row {r}: path {:?} does not start with '/'",
                    row.path
                )));
            }
            if row.spans.is_empty() {
                return Err(Error::Invalid(format!(
                    "find index row {r}: no restore point"
                )));
            }
            let mut prev_end = 0u32;
            for (k, &(s, e)) in row.spans.iter().enumerate() {
                if s >= e || e > n || (k > 0 && s <= prev_end) {
                    return Err(Error::Invalid(format!(
                        "find index row {r}: span {s}..{e} out of order or outside 0..{n}"
                    )));
                }
                prev_end = e;
                membership += u64::from(e - s);
            }
            if membership > MAX_INDEX_MEMBERSHIP {
                return Err(Error::TooLarge {
                    what: "find index memberships",
                    found: membership,
                    max: MAX_INDEX_MEMBERSHIP,
                });
            }
        }
        Ok(())
    }
}

/// Appends point `i` to sorted, merged spans (ignores a point already present).
fn push_point(spans: &mut Vec<(u32, u32)>, i: u32) {
    match spans.last_mut() {
        Some(last) if last.1 == i => last.1 = i + 1,
        Some(last) if last.1 > i => {}
        _ => spans.push((i, i + 1)),
    }
}

/// Adds points to a group one after the other.
struct Builder<'g, 's, S: BlobStore + ?Sized> {
    group: &'g mut IndexGroup,
    store: &'s S,
    keys: HashMap<Key, u32>,
    /// Rows of the previous point in depth-first path order.
    alive: Vec<u32>,
    prev_root: Option<BlobId>,
    /// Directory blobs read for the previous point (they are the "old" side now).
    prev_dirs: HashMap<BlobId, Arc<DirBlob>>,
    cur_dirs: HashMap<BlobId, Arc<DirBlob>>,
    dirs_read: u64,
    steps: u64,
}

impl<'g, 's, S: BlobStore + ?Sized> Builder<'g, 's, S> {
    fn new(group: &'g mut IndexGroup, store: &'s S) -> Self {
        let keys = group
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let i = u32::try_from(i).ok()?;
                Some((
                    Key {
                        path: r.path.clone(),
                        size: r.size,
                        mtime: r.mtime,
                        content: r.content,
                    },
                    i,
                ))
            })
            .collect();
        let (alive, prev_root) = match group.points.len().checked_sub(1) {
            None => (Vec::new(), None),
            Some(last) => {
                let last = u32::try_from(last).unwrap_or(u32::MAX);
                let mut alive: Vec<u32> = group
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.spans.last().is_some_and(|&(_, e)| e == last + 1))
                    .filter_map(|(i, _)| u32::try_from(i).ok())
                    .collect();
                let rows = &group.rows;
                alive.sort_by(|&a, &b| dfs_cmp(&rows[a as usize].path, &rows[b as usize].path));
                (alive, group.points.last().map(|p| p.root))
            }
        };
        Builder {
            group,
            store,
            keys,
            alive,
            prev_root,
            prev_dirs: HashMap::new(),
            cur_dirs: HashMap::new(),
            dirs_read: 0,
            steps: 0,
        }
    }

    fn add_point(&mut self, p: &IndexedPoint) -> Result<()> {
        let index = u32::try_from(self.group.points.len()).map_err(|_| Error::TooLarge {
            what: "find index restore points",
            found: self.group.points.len() as u64,
            max: MAX_INDEX_POINTS as u64,
        })?;
        let mut alive_new = Vec::with_capacity(self.alive.len());
        self.walk(self.prev_root, p.root, "", 0, &mut alive_new)?;
        for &r in &alive_new {
            push_point(&mut self.group.rows[r as usize].spans, index);
        }
        self.group.points.push(p.clone());
        self.alive = alive_new;
        self.prev_root = Some(p.root);
        self.prev_dirs = std::mem::take(&mut self.cur_dirs);
        Ok(())
    }

    fn dir(&mut self, id: &BlobId, old: bool) -> Result<Arc<DirBlob>> {
        let cached = if old {
            self.prev_dirs.get(id)
        } else {
            self.cur_dirs.get(id).or_else(|| self.prev_dirs.get(id))
        };
        if let Some(d) = cached {
            let d = d.clone();
            if !old {
                self.cur_dirs.insert(*id, d.clone());
            }
            return Ok(d);
        }
        self.dirs_read += 1;
        let d = Arc::new(get_dir(self.store, id)?);
        if !old {
            self.cur_dirs.insert(*id, d.clone());
        }
        Ok(d)
    }

    /// The row of the version `e` at path `p`, added when new.
    fn row_of(&mut self, e: &crate::Entry, p: &str) -> Result<u32> {
        let key = Key {
            path: p.to_string(),
            size: e.size,
            mtime: e.mtime,
            content: e.content_id(),
        };
        Ok(match self.keys.get(&key) {
            Some(&r) => r,
            None => {
                let r = u32::try_from(self.group.rows.len()).map_err(|_| Error::TooLarge {
                    what: "find index rows",
                    found: self.group.rows.len() as u64,
                    max: MAX_INDEX_ROWS as u64,
                })?;
                if self.group.rows.len() >= MAX_INDEX_ROWS {
                    return Err(Error::TooLarge {
                        what: "find index rows",
                        found: self.group.rows.len() as u64 + 1,
                        max: MAX_INDEX_ROWS as u64,
                    });
                }
                self.group.rows.push(Row {
                    path: p.to_string(),
                    kind: e.kind,
                    size: e.size,
                    mtime: e.mtime,
                    content: key.content,
                    spans: Vec::new(),
                });
                self.keys.insert(key, r);
                r
            }
        })
    }

    fn walk(
        &mut self,
        prev: Option<BlobId>,
        id: BlobId,
        path: &str,
        depth: u32,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        if prev == Some(id) {
            // Same blob at the same path: the previous point's rows under it carry over.
            let prefix = format!("{path}/");
            let rows = &self.group.rows;
            let start = self
                .alive
                .partition_point(|&r| dfs_cmp(&rows[r as usize].path, &prefix) == Ordering::Less);
            for &r in &self.alive[start..] {
                if !rows[r as usize].path.starts_with(&prefix) {
                    break;
                }
                out.push(r);
            }
            return Ok(());
        }
        if depth > DEFAULT_MAX_DEPTH {
            return Err(Error::TooDeep(path.to_string()));
        }
        let d = self.dir(&id, false)?;
        let old = match prev {
            Some(p) => Some(self.dir(&p, true)?),
            None => None,
        };
        let mut p = String::with_capacity(path.len() + 64);
        for e in &d.entries {
            self.steps += 1;
            if self.steps > MAX_WALK_STEPS {
                return Err(Error::TooLarge {
                    what: "find index walk steps",
                    found: self.steps,
                    max: MAX_WALK_STEPS,
                });
            }
            p.clear();
            p.push_str(path);
            p.push('/');
            p.push_str(&e.name);
            let old_e = old.as_ref().and_then(|o| {
                let i = o
                    .entries
                    .binary_search_by(|x| x.name.as_str().cmp(&e.name))
                    .ok()?;
                Some(&o.entries[i])
            });
            // An entry equal to the previous point's at the same path is the same version:
            // its row is found by path, without hashing a content id and a key.
            let same = match old_e {
                Some(x) if x == e => {
                    let rows = &self.group.rows;
                    self.alive
                        .binary_search_by(|&r| dfs_cmp(&rows[r as usize].path, &p))
                        .ok()
                        .map(|i| self.alive[i])
                        .filter(|&r| {
                            let row = &rows[r as usize];
                            row.size == e.size && row.mtime == e.mtime && row.kind == e.kind
                        })
                }
                _ => None,
            };
            let row = match same {
                Some(r) => r,
                None => self.row_of(e, &p)?,
            };
            out.push(row);
            if let (Kind::Dir, Some(c)) = (e.kind, e.child) {
                let prev_child =
                    old_e.and_then(|x| if x.kind == Kind::Dir { x.child } else { None });
                self.walk(prev_child, c, &p, depth + 1, out)?;
            }
        }
        Ok(())
    }
}

/// Encodes a find-index group (frame type 3).
pub fn encode_find_group(group: &IndexGroup) -> Result<Vec<u8>> {
    group.validate()?;
    let payload = postcard::to_allocvec(group).map_err(|e| Error::Decode {
        what: "find index",
        detail: e.to_string(),
    })?;
    frame(TYPE_FIND_INDEX, &payload)
}

/// Decodes a find-index group, checking the frame, the CRC, every limit and every span.
pub fn decode_find_group(bytes: &[u8]) -> Result<IndexGroup> {
    let group: IndexGroup = decode_framed(bytes, TYPE_FIND_INDEX, "find index")?;
    group.validate()?;
    Ok(group)
}

/// Bytes of one stored piece of an encoded group: repository blobs stay far below their
/// 16 MiB limit, and a group of any size up to the 64 MiB frame limit is stored.
pub const FIND_PART_BYTES: usize = 4 << 20;
/// Most pieces one group is stored in (the frame limit divided by the piece size, rounded up).
pub const MAX_GROUP_PARTS: usize =
    (crate::MAX_PAYLOAD_BYTES + crate::HEADER_LEN).div_ceil(FIND_PART_BYTES);

#[derive(Serialize, Deserialize)]
struct Parts(#[serde(deserialize_with = "bounded_vec::<_, _, MAX_GROUP_PARTS>")] Vec<BlobId>);

#[derive(Serialize, Deserialize)]
struct Pointer {
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_INDEX_GROUPS>")]
    groups: Vec<Parts>,
}

/// Encodes the find-index pointer: for each group, the blob ids of its pieces (frame
/// type 4).
pub fn encode_find_pointer(groups: &[Vec<BlobId>]) -> Result<Vec<u8>> {
    if groups.len() > MAX_INDEX_GROUPS {
        return Err(Error::TooLarge {
            what: "find index groups",
            found: groups.len() as u64,
            max: MAX_INDEX_GROUPS as u64,
        });
    }
    for g in groups {
        if g.len() > MAX_GROUP_PARTS || g.is_empty() {
            return Err(Error::Invalid(format!(
                "find index group of {} pieces (1..={MAX_GROUP_PARTS})",
                g.len()
            )));
        }
    }
    let payload = postcard::to_allocvec(&Pointer {
        groups: groups.iter().map(|g| Parts(g.clone())).collect(),
    })
    .map_err(|e| Error::Decode {
        what: "find index pointer",
        detail: e.to_string(),
    })?;
    frame(TYPE_FIND_POINTER, &payload)
}

/// Decodes the find-index pointer: the piece ids of each group.
pub fn decode_find_pointer(bytes: &[u8]) -> Result<Vec<Vec<BlobId>>> {
    let p: Pointer = decode_framed(bytes, TYPE_FIND_POINTER, "find index pointer")?;
    if let Some(g) = p.groups.iter().position(|g| g.0.is_empty()) {
        return Err(Error::Invalid(format!("find index group {g} has no piece")));
    }
    Ok(p.groups.into_iter().map(|g| g.0).collect())
}

/// Stores a group through `store` in pieces of at most [`FIND_PART_BYTES`]; returns their
/// ids in order.
pub fn put_find_group<S: BlobStore + ?Sized>(store: &S, group: &IndexGroup) -> Result<Vec<BlobId>> {
    encode_find_group(group)?
        .chunks(FIND_PART_BYTES)
        .map(|piece| {
            store
                .put(piece.to_vec())
                .map_err(|e| Error::Store(Box::new(e)))
        })
        .collect()
}

/// Loads the pieces `parts` of a group and decodes it.
pub fn get_find_group<S: BlobStore + ?Sized>(store: &S, parts: &[BlobId]) -> Result<IndexGroup> {
    if parts.len() > MAX_GROUP_PARTS {
        return Err(Error::TooLarge {
            what: "find index group pieces",
            found: parts.len() as u64,
            max: MAX_GROUP_PARTS as u64,
        });
    }
    let max = crate::MAX_PAYLOAD_BYTES + crate::HEADER_LEN;
    let mut bytes = Vec::new();
    for id in parts {
        let piece = store.get(id).map_err(|e| Error::Store(Box::new(e)))?;
        if bytes.len() + piece.len() > max {
            return Err(Error::TooLarge {
                what: "find index group bytes",
                found: (bytes.len() + piece.len()) as u64,
                max: max as u64,
            });
        }
        bytes.extend_from_slice(&piece);
    }
    decode_find_group(&bytes)
}
