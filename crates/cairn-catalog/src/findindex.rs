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
use std::collections::hash_map::{Entry as Slot, RandomState};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::blob::{bounded_vec, decode_framed, frame, Kind, Time};
use crate::read::MAX_WALK_STEPS;
use crate::{
    get_dir, BlobId, BlobStore, Error, Glob, Result, Version, DEFAULT_MAX_DEPTH, MAX_NAME_BYTES,
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
/// paths under `P/` are contiguous. (The byte-mapped comparison of both paths, decided at
/// the first byte where they differ: the common prefix is skipped eight bytes at a time.)
fn dfs_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut n = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .take_while(|(x, y)| x == y)
        .count()
        * 8;
    n += a
        .iter()
        .skip(n)
        .zip(b.iter().skip(n))
        .take_while(|(x, y)| x == y)
        .count();
    let key = |c: u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
    match (a.get(n), b.get(n)) {
        (Some(&x), Some(&y)) => key(x).cmp(&key(y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// What makes a version distinct (a row).
#[derive(Hash, PartialEq, Eq)]
struct Key<'a> {
    path: &'a str,
    size: u64,
    mtime: Option<Time>,
    content: BlobId,
}

impl Key<'_> {
    fn of(row: &Row) -> Key<'_> {
        Key {
            path: &row.path,
            size: row.size,
            mtime: row.mtime,
            content: row.content,
        }
    }
}

/// Passes a `u64` that is already a keyed hash through as the table hash.
#[derive(Default)]
struct HashedKey(u64);

impl Hasher for HashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

/// The rows of a group by [`Key`], without a copy of each path: a table from the key's
/// SipHash (keyed per process, as std's maps) to the row, checked against the row on every
/// hit; a second key with the same 64-bit hash (not expected to occur) goes to `spill`.
struct KeyIndex {
    hasher: RandomState,
    first: HashMap<u64, u32, BuildHasherDefault<HashedKey>>,
    spill: HashMap<(String, u64, Option<Time>, BlobId), u32>,
}

impl KeyIndex {
    fn new(rows: &[Row]) -> KeyIndex {
        let mut index = KeyIndex {
            hasher: RandomState::new(),
            first: HashMap::with_capacity_and_hasher(rows.len(), Default::default()),
            spill: HashMap::new(),
        };
        for (r, row) in rows.iter().enumerate() {
            let Ok(r) = u32::try_from(r) else { break };
            index.insert(&Key::of(row), r);
        }
        index
    }

    fn get(&self, key: &Key<'_>, rows: &[Row]) -> Option<u32> {
        let r = *self.first.get(&self.hasher.hash_one(key))?;
        if rows.get(r as usize).is_some_and(|row| Key::of(row) == *key) {
            return Some(r);
        }
        self.spill
            .get(&(key.path.to_string(), key.size, key.mtime, key.content))
            .copied()
    }

    fn insert(&mut self, key: &Key<'_>, r: u32) {
        match self.first.entry(self.hasher.hash_one(key)) {
            Slot::Vacant(v) => {
                v.insert(r);
            }
            Slot::Occupied(_) => {
                self.spill
                    .insert((key.path.to_string(), key.size, key.mtime, key.content), r);
            }
        }
    }

    /// Forgets the rows from `len` on.
    fn truncate(&mut self, len: usize) {
        self.first.retain(|_, r| (*r as usize) < len);
        self.spill.retain(|_, r| (*r as usize) < len);
    }
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
        let mut added = Ok(());
        for p in &points[first_new..] {
            added = b.add_point(p);
            if added.is_err() {
                break;
            }
            stats.added += 1;
        }
        // The points added so far stay indexed, with consistent spans, even after an error.
        stats.dirs_read = b.finish();
        added.map(|()| stats)
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

/// No point (a row that is not in an open run, or not reached yet).
const NO_POINT: u32 = u32::MAX;

/// One entry reached by a restore point's walk, in walk order (depth first, entries in
/// directory blob order): a directory's subtree directly follows it.
#[derive(Debug, Clone, Copy)]
struct Node {
    row: u32,
    /// Nodes in the subtree, this one included (1 for a file).
    size: u32,
}

/// The previous point's directory at the path being walked: its blob and the range of
/// `prev_nodes` holding its subtree (without the directory's own node).
#[derive(Debug, Clone, Copy)]
struct OldDir {
    id: BlobId,
    first: usize,
    end: usize,
}

/// Adds points to a group one after the other.
///
/// Each point is walked together with the previous one: a directory whose blob id is the
/// same at the same path carries the previous point's nodes of that subtree over without
/// being read; in a directory that changed, an entry whose version fields equal the
/// previous point's entry of that name keeps its row without hashing a content id. Rows
/// are not touched for every point holding them: each row has an open run (the first point
/// of its current run of consecutive points), closed into a span when a point no longer
/// holds it, and by [`Builder::finish`].
struct Builder<'g, 's, S: BlobStore + ?Sized> {
    group: &'g mut IndexGroup,
    store: &'s S,
    keys: KeyIndex,
    /// Per row: the first point of its open run, or [`NO_POINT`].
    open: Vec<u32>,
    /// Per row: the last point whose walk reached it, or [`NO_POINT`].
    seen: Vec<u32>,
    /// The previous point's walk.
    prev_nodes: Vec<Node>,
    /// `prev_nodes` is this builder's own walk (not rebuilt from the rows of a stored
    /// group), so its nodes match the previous point's directory entries one for one.
    exact: bool,
    prev_root: Option<BlobId>,
    /// Summaries of the directory blobs of the previous point's tree (those walked or
    /// carried over).
    prev_dirs: HashMap<BlobId, Arc<Summary>>,
    /// The same for the point being added.
    cur_dirs: HashMap<BlobId, Arc<Summary>>,
    dirs_read: u64,
    steps: u64,
}

impl<'g, 's, S: BlobStore + ?Sized> Builder<'g, 's, S> {
    fn new(group: &'g mut IndexGroup, store: &'s S) -> Self {
        let keys = KeyIndex::new(&group.rows);
        let mut open = vec![NO_POINT; group.rows.len()];
        let seen = vec![NO_POINT; group.rows.len()];
        let mut prev_nodes = Vec::new();
        if let Some(last) = group.points.len().checked_sub(1) {
            // The rows the last point holds reopen their last span, and become the previous
            // walk: sorted in walk order, each subtree sized by its path prefix.
            let last = u32::try_from(last).unwrap_or(u32::MAX);
            let mut alive: Vec<u32> = Vec::new();
            for (i, r) in group.rows.iter_mut().enumerate() {
                let Ok(i) = u32::try_from(i) else { break };
                if let Some(&(s, e)) = r.spans.last() {
                    if e == last + 1 {
                        r.spans.pop();
                        open[i as usize] = s;
                        alive.push(i);
                    }
                }
            }
            let rows = &group.rows;
            alive.sort_by(|&a, &b| dfs_cmp(&rows[a as usize].path, &rows[b as usize].path));
            prev_nodes = alive.iter().map(|&row| Node { row, size: 1 }).collect();
            let mut stack: Vec<usize> = Vec::new();
            let size = |from: usize, to: usize| u32::try_from(to - from).unwrap_or(u32::MAX);
            for i in 0..prev_nodes.len() {
                let p = rows[prev_nodes[i].row as usize].path.as_bytes();
                while let Some(&top) = stack.last() {
                    let t = rows[prev_nodes[top].row as usize].path.as_bytes();
                    if p.len() > t.len() && p.starts_with(t) && p.get(t.len()) == Some(&b'/') {
                        break;
                    }
                    prev_nodes[top].size = size(top, i);
                    stack.pop();
                }
                stack.push(i);
            }
            let n = prev_nodes.len();
            for top in stack {
                prev_nodes[top].size = size(top, n);
            }
        }
        let prev_root = group.points.last().map(|p| p.root);
        Builder {
            group,
            store,
            keys,
            open,
            seen,
            exact: prev_nodes.is_empty(),
            prev_nodes,
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
        let rows_before = self.group.rows.len();
        let mut nodes = Vec::with_capacity(self.prev_nodes.len());
        let old = self.prev_root.map(|id| OldDir {
            id,
            first: 0,
            end: self.prev_nodes.len(),
        });
        let mut path = String::new();
        if let Err(e) = self.walk(old, p.root, &mut path, 0, &mut nodes) {
            // The point is not added: forget the rows it created.
            self.group.rows.truncate(rows_before);
            self.open.truncate(rows_before);
            self.seen.truncate(rows_before);
            self.keys.truncate(rows_before);
            self.cur_dirs.clear();
            return Err(e);
        }
        for n in &nodes {
            let r = n.row as usize;
            self.seen[r] = index;
            if self.open[r] == NO_POINT {
                self.open[r] = index;
            }
        }
        // Rows of the previous point this one does not hold end their run here.
        for n in &self.prev_nodes {
            let r = n.row as usize;
            if self.seen[r] != index && self.open[r] != NO_POINT {
                push_span(&mut self.group.rows[r].spans, self.open[r], index);
                self.open[r] = NO_POINT;
            }
        }
        self.group.points.push(p.clone());
        self.prev_nodes = nodes;
        self.exact = true;
        self.prev_root = Some(p.root);
        self.prev_dirs = std::mem::take(&mut self.cur_dirs);
        Ok(())
    }

    /// Closes the open runs at the last point added.
    fn finish(self) -> u64 {
        let end = u32::try_from(self.group.points.len()).unwrap_or(u32::MAX);
        for (row, &open) in self.group.rows.iter_mut().zip(&self.open) {
            if open != NO_POINT {
                push_span(&mut row.spans, open, end);
            }
        }
        self.dirs_read
    }

    /// The summary of a directory of the previous point that changed (kept from its walk,
    /// or read again).
    fn old_dir(&mut self, id: &BlobId) -> Result<Arc<Summary>> {
        if let Some(d) = self.prev_dirs.remove(id) {
            return Ok(d);
        }
        if let Some(d) = self.cur_dirs.get(id) {
            return Ok(d.clone());
        }
        self.dirs_read += 1;
        let d = get_dir(self.store, id)?;
        let mut sum = Summary::with_capacity(d.entries.len());
        for e in &d.entries {
            sum.push(e)?;
        }
        Ok(Arc::new(sum))
    }

    /// Keeps the summaries of a subtree carried over for the next point.
    fn carry_dirs(&mut self, id: BlobId) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            // Each blob moves once: the loop ends even on a blob graph with shared children.
            let Some(d) = self.prev_dirs.remove(&id) else {
                continue;
            };
            stack.extend(d.entries.iter().filter_map(|e| e.child));
            self.cur_dirs.insert(id, d);
        }
    }

    /// For each entry of the previous point's directory `old` at `path`, the index of its
    /// node in `prev_nodes`; `None` when the nodes of `range` are not exactly those entries
    /// (by name, checked when `prev_nodes` was rebuilt from rows) or when names repeat (a
    /// path then stands for several entries), in which case the directory is walked as new.
    fn old_nodes(&self, old: &Summary, path: &str, range: (usize, usize)) -> Option<Vec<usize>> {
        let rows = &self.group.rows;
        let mut at = Vec::with_capacity(old.entries.len());
        let mut i = range.0;
        let mut prev_name: Option<&[u8]> = None;
        for k in 0..old.entries.len() {
            let name = old.name(k);
            if prev_name == Some(name) || i >= range.1 {
                return None;
            }
            prev_name = Some(name);
            let n = self.prev_nodes.get(i)?;
            if n.size == 0 {
                return None;
            }
            if !self.exact {
                let p = rows.get(n.row as usize)?.path.as_bytes();
                let named = p.len() == path.len() + 1 + name.len()
                    && p.starts_with(path.as_bytes())
                    && p.get(path.len()) == Some(&b'/')
                    && p.ends_with(name);
                if !named {
                    return None;
                }
            }
            at.push(i);
            i = i.checked_add(n.size as usize)?;
        }
        (i == range.1).then_some(at)
    }

    /// The row of the version `e` at path `p`, added when new.
    fn row_of(&mut self, e: &crate::Entry, p: &str) -> Result<u32> {
        let key = Key {
            path: p,
            size: e.size,
            mtime: e.mtime,
            content: e.content_id(),
        };
        if let Some(r) = self.keys.get(&key, &self.group.rows) {
            return Ok(r);
        }
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
        self.keys.insert(&key, r);
        self.group.rows.push(Row {
            path: p.to_string(),
            kind: e.kind,
            size: e.size,
            mtime: e.mtime,
            content: key.content,
            spans: Vec::new(),
        });
        self.open.push(NO_POINT);
        self.seen.push(NO_POINT);
        Ok(r)
    }

    /// Walks directory blob `id` at `path` (`""` for the root), appending its subtree's
    /// nodes to `out`; `old` is the previous point's directory at the same path.
    fn walk(
        &mut self,
        old: Option<OldDir>,
        id: BlobId,
        path: &mut String,
        depth: u32,
        out: &mut Vec<Node>,
    ) -> Result<()> {
        if let Some(o) = old.filter(|o| o.id == id) {
            // Same blob at the same path: the previous point's nodes under it carry over.
            let Some(carried) = self.prev_nodes.get(o.first..o.end) else {
                return Err(Error::Invalid(format!(
                    "find index: subtree {}..{} outside the previous walk",
                    o.first, o.end
                )));
            };
            out.extend_from_slice(carried);
            self.carry_dirs(id);
            return Ok(());
        }
        if depth > DEFAULT_MAX_DEPTH {
            return Err(Error::TooDeep(path.clone()));
        }
        // Always read: a blob seen elsewhere is summarized, not kept decoded (the walk of
        // `find --no-index` reads it again too).
        self.dirs_read += 1;
        let d = get_dir(self.store, &id)?;
        let mut sum = Summary::with_capacity(d.entries.len());
        let old = match old {
            Some(o) => {
                let od = self.old_dir(&o.id)?;
                self.old_nodes(&od, path, (o.first, o.end))
                    .map(|at| (od, at))
            }
            None => None,
        };
        let base = path.len();
        let mut k = 0;
        for e in &d.entries {
            self.steps += 1;
            if self.steps > MAX_WALK_STEPS {
                return Err(Error::TooLarge {
                    what: "find index walk steps",
                    found: self.steps,
                    max: MAX_WALK_STEPS,
                });
            }
            path.truncate(base);
            path.push('/');
            path.push_str(&e.name);
            sum.push(e)?;
            // The previous point's entry of the same name and its node (names sorted).
            let mut pair: Option<(usize, Node, usize)> = None;
            if let Some((od, at)) = &old {
                let name = e.name.as_bytes();
                while k < od.entries.len() && od.name(k) < name {
                    k += 1;
                }
                if k < od.entries.len() && od.name(k) == name {
                    let i = at[k];
                    pair = Some((k, self.prev_nodes[i], i));
                    k += 1;
                }
            }
            // The same version fields at the same path: the same row, no content id. (A
            // row of a stored group is checked too: its rows were not made by this walk.)
            let same = pair.and_then(|(x, n, _)| {
                let od = &old.as_ref()?.0;
                if od.version(x) != sum.version(sum.entries.len() - 1) {
                    return None;
                }
                if !self.exact {
                    let row = self.group.rows.get(n.row as usize)?;
                    if row.kind != e.kind || row.size != e.size || row.mtime != e.mtime {
                        return None;
                    }
                }
                Some(n.row)
            });
            let row = match same {
                Some(r) => r,
                None => self.row_of(e, path)?,
            };
            let at = out.len();
            out.push(Node { row, size: 1 });
            if let (Kind::Dir, Some(c)) = (e.kind, e.child) {
                // Only a directory entry has a child (checked on decode).
                let sub = pair.and_then(|(x, n, i)| {
                    Some(OldDir {
                        id: old.as_ref()?.0.entries[x].child?,
                        first: i + 1,
                        end: i + n.size as usize,
                    })
                });
                self.walk(sub, c, path, depth + 1, out)?;
                let size = u32::try_from(out.len() - at).map_err(|_| Error::TooLarge {
                    what: "find index subtree entries",
                    found: (out.len() - at) as u64,
                    max: u64::from(u32::MAX),
                })?;
                out[at].size = size;
            }
        }
        path.truncate(base);
        self.cur_dirs.insert(id, Arc::new(sum));
        Ok(())
    }
}

/// What the next point's walk needs of a directory blob: per entry its name, its version
/// fields in one byte form, and its child blob, packed in one buffer. Comparing with it
/// reads memory in order, where the decoded entries of a blob read one point earlier have
/// their names and extents scattered over the heap (and out of cache).
#[derive(Debug, Default)]
struct Summary {
    bytes: Vec<u8>,
    entries: Vec<SummaryEntry>,
}

#[derive(Debug)]
struct SummaryEntry {
    /// Where the name ends in `bytes` (it starts where the previous entry ends).
    name_end: usize,
    /// Where the version fields end.
    end: usize,
    child: Option<BlobId>,
}

impl Summary {
    fn with_capacity(entries: usize) -> Summary {
        Summary {
            bytes: Vec::with_capacity(entries * 64),
            entries: Vec::with_capacity(entries),
        }
    }

    fn start(&self, k: usize) -> usize {
        k.checked_sub(1).map_or(0, |p| self.entries[p].end)
    }

    fn name(&self, k: usize) -> &[u8] {
        &self.bytes[self.start(k)..self.entries[k].name_end]
    }

    fn version(&self, k: usize) -> &[u8] {
        &self.bytes[self.entries[k].name_end..self.entries[k].end]
    }

    /// Appends an entry. Its version bytes are equal to another entry's exactly when the
    /// fields [`same_version`] names are: every variable part is length-prefixed.
    fn push(&mut self, e: &crate::Entry) -> Result<()> {
        let b = &mut self.bytes;
        b.extend_from_slice(e.name.as_bytes());
        let name_end = b.len();
        b.push(match e.kind {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
            Kind::Other => 3,
        });
        b.extend_from_slice(&e.size.to_le_bytes());
        match e.mtime {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&t.secs.to_le_bytes());
                b.extend_from_slice(&t.nanos.to_le_bytes());
            }
        }
        b.extend_from_slice(&(e.extents.len() as u64).to_le_bytes());
        for x in &e.extents {
            b.extend_from_slice(&x.file_offset.to_le_bytes());
            b.extend_from_slice(&x.len.to_le_bytes());
            b.extend_from_slice(&x.volume_offset.map_or(0, |v| v).to_le_bytes());
            b.push(u8::from(x.volume_offset.is_some()) | (u8::from(x.encoded) << 1));
        }
        if e.streams.is_empty() {
            b.push(0);
        } else {
            let streams = postcard::to_allocvec(&e.streams).map_err(|err| Error::Decode {
                what: "find index entry streams",
                detail: err.to_string(),
            })?;
            b.push(1);
            b.extend_from_slice(&(streams.len() as u64).to_le_bytes());
            b.extend_from_slice(&streams);
        }
        match &e.symlink_target {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&(t.len() as u64).to_le_bytes());
                b.extend_from_slice(t.as_bytes());
            }
        }
        let end = b.len();
        self.entries.push(SummaryEntry {
            name_end,
            end,
            child: e.child,
        });
        Ok(())
    }
}

/// Whether two entries at the same path are the same version: equal kind, size, mtime and
/// the other fields their content id covers ([`crate::Entry::content_id`]).
#[cfg(test)]
fn same_version(a: &crate::Entry, b: &crate::Entry) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.mtime == b.mtime
        && a.extents == b.extents
        && a.streams == b.streams
        && a.symlink_target == b.symlink_target
}

/// Appends the run `start..end` to sorted spans, merging it with a span it touches.
fn push_span(spans: &mut Vec<(u32, u32)>, start: u32, end: u32) {
    match spans.last_mut() {
        Some(last) if last.1 >= start => last.1 = last.1.max(end),
        _ => spans.push((start, end)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain definition: paths compared byte by byte with `/` lowest.
    fn dfs_cmp_plain(a: &str, b: &str) -> Ordering {
        let key = |c: u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
        a.bytes().map(key).cmp(b.bytes().map(key))
    }

    proptest! {
        #[test]
        fn dfs_cmp_is_the_mapped_byte_order(a in "[/a\\x00é.]{0,20}", b in "[/a\\x00é.]{0,20}") {
            prop_assert_eq!(dfs_cmp(&a, &b), dfs_cmp_plain(&a, &b));
            let long = "/0123456789abcdef/0123456789";
            let (la, lb) = (format!("{long}{a}"), format!("{long}{b}"));
            prop_assert_eq!(dfs_cmp(&la, &lb), dfs_cmp_plain(&la, &lb));
        }
    }

    fn arb_entry() -> impl Strategy<Value = crate::Entry> {
        let extent = (0u64..3, 0u64..3, prop::option::of(0u64..3), any::<bool>()).prop_map(
            |(file_offset, len, volume_offset, encoded)| crate::Extent {
                file_offset,
                len,
                volume_offset,
                encoded,
            },
        );
        let stream = ("[ab]{0,2}", 0u64..2).prop_map(|(name, size)| crate::Stream {
            name,
            size,
            extents: Vec::new(),
        });
        (
            "[ab]{1,2}",
            prop::sample::select(vec![Kind::File, Kind::Dir, Kind::Symlink, Kind::Other]),
            0u64..3,
            prop::option::of((0i64..2, 0u32..2)),
            prop::collection::vec(extent, 0..3),
            prop::collection::vec(stream, 0..2),
            prop::option::of("[ab/]{0,3}"),
            any::<u32>(),
        )
            .prop_map(
                |(name, kind, size, mtime, extents, streams, target, nlink)| {
                    let mut e = crate::Entry::new(name, kind, size);
                    e.mtime = mtime.map(|(secs, nanos)| Time { secs, nanos });
                    e.extents = extents;
                    e.streams = streams;
                    e.symlink_target = target;
                    e.nlink = nlink;
                    e
                },
            )
    }

    proptest! {
        /// Version bytes are equal exactly when the version fields are, whatever else
        /// differs, and names and children are kept apart.
        #[test]
        fn summary_versions_match_exactly_the_version_fields(a in arb_entry(), b in arb_entry()) {
            let mut s = Summary::default();
            s.push(&a).unwrap();
            s.push(&b).unwrap();
            prop_assert_eq!(s.version(0) == s.version(1), same_version(&a, &b));
            prop_assert_eq!(s.name(0), a.name.as_bytes());
            prop_assert_eq!(s.name(1), b.name.as_bytes());
            prop_assert_eq!(same_version(&a, &b), a.content_id() == b.content_id()
                && a.mtime == b.mtime);
        }
    }

    #[test]
    fn push_span_merges_touching_runs() {
        let mut s = vec![(0, 2)];
        push_span(&mut s, 2, 4);
        push_span(&mut s, 6, 7);
        assert_eq!(s, vec![(0, 4), (6, 7)]);
    }
}
