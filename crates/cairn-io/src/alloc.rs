use crate::{Error, Result};

/// What a range of a virtual disk (or volume) holds, as one layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// Bytes stored in this layer.
    Data,
    /// This layer says the range reads as zeros (zero grain, zero cluster, unmapped block of
    /// a fixed-zero format), without storing them.
    Zero,
    /// Nothing stored and nothing said: reads fall through to the parent, or read as zeros
    /// when there is none. For a volume map: free blocks.
    Unallocated,
    /// In a chain's combined map: the range comes from an ancestor (see [`Run::depth`]).
    FromParent,
}

/// One contiguous range of an [`AllocationMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Run {
    /// Start, in bytes.
    pub offset: u64,
    /// Length, in bytes (never 0 inside a map).
    pub len: u64,
    /// What the range holds.
    pub kind: RangeKind,
    /// Which layer of a chain answers for the range: 0 is the top (the image opened), 1 its
    /// parent, and so on. Always 0 in a single layer's map.
    pub depth: u32,
}

impl Run {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Ordered, contiguous, non-overlapping runs covering `[0, size)`; neighbours with the same
/// kind and depth are merged, so the map stays as small as the layout allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllocationMap {
    size: u64,
    runs: Vec<Run>,
}

impl AllocationMap {
    /// An empty map of `size` bytes; [`push`](Self::push) appends runs in order.
    pub fn new(size: u64) -> Self {
        AllocationMap {
            size,
            runs: Vec::new(),
        }
    }

    /// A map of `size` bytes that is one run of `kind`.
    pub fn uniform(size: u64, kind: RangeKind) -> Self {
        let mut m = Self::new(size);
        if size > 0 {
            m.runs.push(Run {
                offset: 0,
                len: size,
                kind,
                depth: 0,
            });
        }
        m
    }

    /// Appends a run at `offset`. A gap since the previous run is filled with
    /// [`RangeKind::Unallocated`]; a run that starts before the previous one ends, or ends
    /// past the size, is an error.
    pub fn push(&mut self, offset: u64, len: u64, kind: RangeKind) -> Result<()> {
        self.push_depth(offset, len, kind, 0)
    }

    /// [`push`](Self::push) with an explicit chain depth.
    pub fn push_depth(&mut self, offset: u64, len: u64, kind: RangeKind, depth: u32) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| Error::BadMap(format!("run {offset}+{len} past size {}", self.size)))?;
        let cur = self.covered();
        if offset < cur {
            return Err(Error::BadMap(format!(
                "run at {offset} overlaps previous end {cur}"
            )));
        }
        if offset > cur {
            self.append(Run {
                offset: cur,
                len: offset - cur,
                kind: RangeKind::Unallocated,
                depth: 0,
            });
        }
        self.append(Run {
            offset,
            len: end - offset,
            kind,
            depth,
        });
        Ok(())
    }

    fn append(&mut self, run: Run) {
        if let Some(last) = self.runs.last_mut() {
            if last.kind == run.kind && last.depth == run.depth && last.end() == run.offset {
                last.len += run.len;
                return;
            }
        }
        self.runs.push(run);
    }

    fn covered(&self) -> u64 {
        self.runs.last().map_or(0, Run::end)
    }

    /// Closes the map: whatever is not covered yet becomes [`RangeKind::Unallocated`].
    pub fn finish(mut self) -> Self {
        let cur = self.covered();
        if cur < self.size {
            self.append(Run {
                offset: cur,
                len: self.size - cur,
                kind: RangeKind::Unallocated,
                depth: 0,
            });
        }
        self
    }

    /// Size the map covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The runs, in order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Total bytes of runs of `kind`.
    pub fn bytes_of(&self, kind: RangeKind) -> u64 {
        self.runs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.len)
            .sum()
    }

    /// Runs of one kind, in order.
    pub fn ranges_of(&self, kind: RangeKind) -> impl Iterator<Item = &Run> + '_ {
        self.runs.iter().filter(move |r| r.kind == kind)
    }

    /// The runs that intersect `[offset, offset + len)`, clipped to it.
    pub fn clip(&self, offset: u64, len: u64) -> Vec<Run> {
        let end = offset.saturating_add(len).min(self.size);
        let first = self.runs.partition_point(|r| r.end() <= offset);
        let mut out = Vec::new();
        for r in &self.runs[first..] {
            if r.offset >= end {
                break;
            }
            let s = r.offset.max(offset);
            let e = r.end().min(end);
            out.push(Run {
                offset: s,
                len: e - s,
                ..*r
            });
        }
        out
    }

    /// Combines a child's own map with its parent's combined map: where the child is
    /// [`RangeKind::Unallocated`] the parent's runs show through with depth + 1 and kind
    /// [`RangeKind::FromParent`] for parent data (parent zeros stay `Zero`, parent holes stay
    /// `Unallocated`).
    pub fn overlay(&self, parent: &AllocationMap) -> AllocationMap {
        let mut out = AllocationMap::new(self.size);
        for r in &self.runs {
            if r.kind != RangeKind::Unallocated {
                out.append(*r);
                continue;
            }
            let mut cur = r.offset;
            for p in parent.clip(r.offset, r.len) {
                let kind = match p.kind {
                    RangeKind::Data | RangeKind::FromParent => RangeKind::FromParent,
                    k => k,
                };
                let depth = if kind == RangeKind::Unallocated {
                    0
                } else {
                    p.depth + 1
                };
                out.append(Run {
                    offset: p.offset,
                    len: p.len,
                    kind,
                    depth,
                });
                cur = p.end();
            }
            if cur < r.end() {
                out.append(Run {
                    offset: cur,
                    len: r.end() - cur,
                    kind: RangeKind::Unallocated,
                    depth: 0,
                });
            }
        }
        out
    }

    /// Checks the invariants (ordered, contiguous, within size, no empty run). Maps built
    /// with [`push`](Self::push) always pass; this guards maps decoded from storage.
    pub fn validate(&self) -> Result<()> {
        let mut cur = 0u64;
        for r in &self.runs {
            if r.len == 0 || r.offset != cur {
                return Err(Error::BadMap(format!(
                    "run at {} (expected {cur}, len {})",
                    r.offset, r.len
                )));
            }
            cur = r
                .offset
                .checked_add(r.len)
                .ok_or_else(|| Error::BadMap("run end overflows".into()))?;
        }
        if cur != self.size && !self.runs.is_empty() {
            return Err(Error::BadMap(format!(
                "runs end at {cur}, size is {}",
                self.size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_fills_gaps_and_merges() {
        let mut m = AllocationMap::new(100);
        m.push(10, 10, RangeKind::Data).unwrap();
        m.push(20, 5, RangeKind::Data).unwrap();
        m.push(50, 10, RangeKind::Zero).unwrap();
        let m = m.finish();
        let kinds: Vec<_> = m.runs().iter().map(|r| (r.offset, r.len, r.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, 10, RangeKind::Unallocated),
                (10, 15, RangeKind::Data),
                (25, 25, RangeKind::Unallocated),
                (50, 10, RangeKind::Zero),
                (60, 40, RangeKind::Unallocated)
            ]
        );
        m.validate().unwrap();
        assert_eq!(m.bytes_of(RangeKind::Data), 15);
    }

    #[test]
    fn overlapping_push_is_an_error() {
        let mut m = AllocationMap::new(100);
        m.push(10, 10, RangeKind::Data).unwrap();
        assert!(m.push(15, 10, RangeKind::Data).is_err());
        assert!(m.push(95, 10, RangeKind::Data).is_err());
    }

    #[test]
    fn overlay_shows_parent_through_holes() {
        let mut parent = AllocationMap::new(100);
        parent.push(0, 50, RangeKind::Data).unwrap();
        let parent = parent.finish();
        let mut child = AllocationMap::new(100);
        child.push(40, 20, RangeKind::Data).unwrap();
        let child = child.finish();
        let c = child.overlay(&parent);
        let v: Vec<_> = c
            .runs()
            .iter()
            .map(|r| (r.offset, r.len, r.kind, r.depth))
            .collect();
        assert_eq!(
            v,
            vec![
                (0, 40, RangeKind::FromParent, 1),
                (40, 20, RangeKind::Data, 0),
                (60, 40, RangeKind::Unallocated, 0)
            ]
        );
        c.validate().unwrap();
    }

    #[test]
    fn clip_cuts_runs() {
        let mut m = AllocationMap::new(100);
        m.push(10, 30, RangeKind::Data).unwrap();
        let m = m.finish();
        let c = m.clip(20, 30);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].offset, c[0].len, c[0].kind),
            (20, 20, RangeKind::Data)
        );
        assert_eq!(
            (c[1].offset, c[1].len, c[1].kind),
            (40, 10, RangeKind::Unallocated)
        );
    }
}
