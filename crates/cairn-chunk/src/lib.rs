//! # cairn-chunk
//!
//! Splits disk images into chunks, the unit of deduplication of a Cairn repository.
//!
//! Two chunkers sit behind one enum, [`Chunker`], built from serialisable, validated
//! [`ChunkerParams`]:
//!
//! * [`ChunkerParams::Fixed`]: chunks of one size **aligned to the image offset** (chunk `i`
//!   covers `[i * size, (i + 1) * size)`, the last one may be short). A guest file system
//!   rewrites blocks in place and never shifts data, so aligned chunks find every unchanged
//!   block again; it is the default for VM images (see `docs/chunking.md`).
//! * [`ChunkerParams::FastCdc`]: content-defined chunks (`fastcdc::v2020`, normalisation
//!   level 1), for byte streams where insertions shift data (file trees, archives).
//!
//! ```
//! use cairn_chunk::{Chunker, ChunkerParams};
//!
//! let chunker = Chunker::new(ChunkerParams::Fixed { size: 4096 }).unwrap();
//! // A buffer that starts at image offset 6144: the first chunk ends on the next
//! // 4 KiB boundary of the image, not of the buffer.
//! let spans = chunker.split(6144, &[0u8; 10_000]);
//! assert_eq!(spans[0].len, 2048);
//! assert_eq!(spans[1].offset, 8192);
//! assert_eq!(spans.iter().map(|s| s.len).sum::<usize>(), 10_000);
//! ```
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Smallest fixed chunk accepted: one 4 KiB guest block. Smaller chunks would multiply
/// index entries without finding more duplicates in images.
pub const FIXED_MIN: u32 = 4096;
/// Largest chunk of any chunker: 16 MiB. Bounds every chunk buffer a reader allocates and
/// the raw length a repository accepts for a blob.
pub const CHUNK_MAX: u32 = 16 << 20;
/// Default fixed chunk size for VM images: 256 KiB. About 3x less new data than 1 MiB
/// chunks on in-place guest writes, for 4 million index entries per TiB instead of 1
/// million (see `docs/chunking.md` for the study).
pub const DEFAULT_FIXED_SIZE: u32 = 256 << 10;

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A fixed chunk size outside `[FIXED_MIN, CHUNK_MAX]` or not a power of two.
    #[error(
        "fixed chunk size {size} invalid: must be a power of two in [{FIXED_MIN}, {CHUNK_MAX}]"
    )]
    BadFixedSize {
        /// The size given.
        size: u32,
    },
    /// FastCDC sizes outside fastcdc's bounds or not ordered `min <= avg <= max`.
    #[error("FastCDC sizes min {min} / avg {avg} / max {max} invalid: {why}")]
    BadCdcSizes {
        /// Minimum given.
        min: u32,
        /// Average given.
        avg: u32,
        /// Maximum given.
        max: u32,
        /// The rule broken.
        why: &'static str,
    },
}

/// How a repository cuts data into chunks. Stored in the repository configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChunkerParams {
    /// Fixed-size chunks aligned to the image offset.
    Fixed {
        /// Chunk size in bytes: a power of two in `[FIXED_MIN, CHUNK_MAX]`.
        size: u32,
    },
    /// FastCDC v2020 content-defined chunks.
    FastCdc {
        /// Smallest chunk (except the last of a stream).
        min: u32,
        /// Target average.
        avg: u32,
        /// Largest chunk.
        max: u32,
    },
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams::Fixed {
            size: DEFAULT_FIXED_SIZE,
        }
    }
}

impl ChunkerParams {
    /// Checks the parameters (they may come from an untrusted repository configuration).
    pub fn validate(&self) -> Result<(), Error> {
        match *self {
            ChunkerParams::Fixed { size } => {
                if !(FIXED_MIN..=CHUNK_MAX).contains(&size) || !size.is_power_of_two() {
                    return Err(Error::BadFixedSize { size });
                }
            }
            ChunkerParams::FastCdc { min, avg, max } => {
                use fastcdc::v2020 as f;
                let bad = |why| Error::BadCdcSizes { min, avg, max, why };
                if !(f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min) {
                    return Err(bad("min outside fastcdc's [64, 1 MiB]"));
                }
                if !(f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg) {
                    return Err(bad("avg outside fastcdc's [256, 4 MiB]"));
                }
                if !(f::MAXIMUM_MIN..=f::MAXIMUM_MAX.min(CHUNK_MAX)).contains(&max) {
                    return Err(bad("max outside fastcdc's [1 KiB, 16 MiB]"));
                }
                if !(min <= avg && avg <= max) {
                    return Err(bad("sizes must be ordered min <= avg <= max"));
                }
            }
        }
        Ok(())
    }

    /// The largest chunk these parameters produce.
    pub fn max_chunk(&self) -> u32 {
        match *self {
            ChunkerParams::Fixed { size } => size,
            ChunkerParams::FastCdc { max, .. } => max,
        }
    }
}

/// One chunk: `len` bytes at image offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// Image (or stream) offset of the first byte.
    pub offset: u64,
    /// Length in bytes (never 0).
    pub len: usize,
}

/// The common behaviour of all chunkers.
pub trait Chunk {
    /// Cuts `data`, which starts at image offset `base`, into spans that cover it exactly,
    /// in order. For the fixed chunker spans end on multiples of the chunk size of the
    /// image; for FastCDC `data` is taken as one whole stream (its end is a cut point).
    fn split(&self, base: u64, data: &[u8]) -> Vec<Span>;
}

/// Fixed-size chunks aligned to the image offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedChunker {
    size: u32,
}

impl FixedChunker {
    /// A fixed chunker; fails on a size [`ChunkerParams::validate`] refuses.
    pub fn new(size: u32) -> Result<Self, Error> {
        ChunkerParams::Fixed { size }.validate()?;
        Ok(FixedChunker { size })
    }

    /// The chunk size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of chunks of an image of `image_size` bytes (the last may be short).
    pub fn count(&self, image_size: u64) -> u64 {
        image_size.div_ceil(u64::from(self.size))
    }

    /// The span of chunk `index` of an image of `image_size` bytes, or `None` past the end.
    pub fn span(&self, index: u64, image_size: u64) -> Option<Span> {
        let offset = index.checked_mul(u64::from(self.size))?;
        if offset >= image_size {
            return None;
        }
        let len = (image_size - offset).min(u64::from(self.size));
        Some(Span {
            offset,
            len: usize::try_from(len).ok()?,
        })
    }
}

impl Chunk for FixedChunker {
    fn split(&self, base: u64, data: &[u8]) -> Vec<Span> {
        let size = u64::from(self.size);
        let mut out = Vec::with_capacity(data.len() / self.size as usize + 2);
        let mut pos = 0usize;
        while pos < data.len() {
            let off = base.saturating_add(pos as u64);
            let to_boundary = size - off % size;
            let len = usize::try_from(to_boundary)
                .unwrap_or(usize::MAX)
                .min(data.len() - pos);
            out.push(Span { offset: off, len });
            pos += len;
        }
        out
    }
}

/// FastCDC v2020 content-defined chunker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdcChunker {
    min: u32,
    avg: u32,
    max: u32,
}

impl CdcChunker {
    /// A FastCDC chunker; fails on sizes [`ChunkerParams::validate`] refuses (fastcdc
    /// itself would panic on them).
    pub fn new(min: u32, avg: u32, max: u32) -> Result<Self, Error> {
        ChunkerParams::FastCdc { min, avg, max }.validate()?;
        Ok(CdcChunker { min, avg, max })
    }
}

impl Chunk for CdcChunker {
    fn split(&self, base: u64, data: &[u8]) -> Vec<Span> {
        fastcdc::v2020::FastCDC::new(data, self.min, self.avg, self.max)
            .map(|c| Span {
                offset: base.saturating_add(c.offset as u64),
                len: c.length,
            })
            .collect()
    }
}

/// Any chunker, chosen by [`ChunkerParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Chunker {
    /// See [`FixedChunker`].
    Fixed(FixedChunker),
    /// See [`CdcChunker`].
    FastCdc(CdcChunker),
}

impl Chunker {
    /// Builds the chunker the (validated) parameters describe.
    pub fn new(params: ChunkerParams) -> Result<Self, Error> {
        match params {
            ChunkerParams::Fixed { size } => Ok(Chunker::Fixed(FixedChunker::new(size)?)),
            ChunkerParams::FastCdc { min, avg, max } => {
                Ok(Chunker::FastCdc(CdcChunker::new(min, avg, max)?))
            }
        }
    }

    /// The parameters this chunker was built from.
    pub fn params(&self) -> ChunkerParams {
        match *self {
            Chunker::Fixed(f) => ChunkerParams::Fixed { size: f.size },
            Chunker::FastCdc(c) => ChunkerParams::FastCdc {
                min: c.min,
                avg: c.avg,
                max: c.max,
            },
        }
    }

    /// See [`Chunk::split`].
    pub fn split(&self, base: u64, data: &[u8]) -> Vec<Span> {
        match self {
            Chunker::Fixed(f) => f.split(base, data),
            Chunker::FastCdc(c) => c.split(base, data),
        }
    }
}

impl Chunk for Chunker {
    fn split(&self, base: u64, data: &[u8]) -> Vec<Span> {
        Chunker::split(self, base, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic pseudo-random bytes (xorshift64*), so golden boundaries are stable.
    fn pseudo(len: usize, mut seed: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            v.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        v.truncate(len);
        v
    }

    fn covers(spans: &[Span], base: u64, len: usize) -> bool {
        let mut cur = base;
        for s in spans {
            if s.offset != cur || s.len == 0 {
                return false;
            }
            cur += s.len as u64;
        }
        cur == base + len as u64
    }

    #[test]
    fn golden_fastcdc_boundaries() {
        let data = pseudo(256 * 1024, 0x0123_4567_89ab_cdef);
        let c = Chunker::new(ChunkerParams::FastCdc {
            min: 4096,
            avg: 16384,
            max: 65536,
        })
        .unwrap();
        let cuts: Vec<u64> = c
            .split(0, &data)
            .iter()
            .map(|s| s.offset + s.len as u64)
            .collect();
        assert_eq!(cuts, GOLDEN_CDC);
    }

    /// Cut points pinned on first run; a change means stored repositories would stop
    /// deduplicating against new backups.
    const GOLDEN_CDC: &[u64] = &[
        23803, 31216, 38813, 50148, 61586, 75296, 91560, 157096, 173780, 201325, 217329, 243052,
        262144,
    ];

    #[test]
    fn golden_fixed_boundaries() {
        let c = Chunker::new(ChunkerParams::Fixed { size: 4096 }).unwrap();
        let spans = c.split(1000, &[7u8; 10_000]);
        let v: Vec<(u64, usize)> = spans.iter().map(|s| (s.offset, s.len)).collect();
        assert_eq!(v, vec![(1000, 3096), (4096, 4096), (8192, 2808)]);
        let f = FixedChunker::new(4096).unwrap();
        assert_eq!(f.count(10_000), 3);
        assert_eq!(
            f.span(2, 10_000),
            Some(Span {
                offset: 8192,
                len: 1808
            })
        );
        assert_eq!(f.span(3, 10_000), None);
    }

    #[test]
    fn bad_params_are_refused() {
        assert_eq!(
            ChunkerParams::Fixed { size: 5000 }.validate(),
            Err(Error::BadFixedSize { size: 5000 })
        );
        assert!(ChunkerParams::Fixed { size: 2048 }.validate().is_err());
        assert!(ChunkerParams::Fixed { size: 32 << 20 }.validate().is_err());
        assert!(matches!(
            ChunkerParams::FastCdc {
                min: 8192,
                avg: 4096,
                max: 65536
            }
            .validate(),
            Err(Error::BadCdcSizes { .. })
        ));
        assert!(ChunkerParams::FastCdc {
            min: 1,
            avg: 4096,
            max: 65536
        }
        .validate()
        .is_err());
        assert!(ChunkerParams::FastCdc {
            min: 64,
            avg: 256,
            max: 64 << 20
        }
        .validate()
        .is_err());
        ChunkerParams::default().validate().unwrap();
    }

    #[test]
    fn cdc_resyncs_after_insertion() {
        let a = pseudo(512 * 1024, 42);
        let mut b = a.clone();
        b.splice(1000..1000, [1u8, 2, 3]);
        let c = CdcChunker::new(2048, 8192, 32768).unwrap();
        let ca: std::collections::HashSet<&[u8]> = c
            .split(0, &a)
            .iter()
            .map(|s| &a[usize::try_from(s.offset).unwrap()..][..s.len])
            .collect();
        let shared = c
            .split(0, &b)
            .iter()
            .filter(|s| ca.contains(&b[usize::try_from(s.offset).unwrap()..][..s.len]))
            .count();
        let total = c.split(0, &b).len();
        assert!(shared + 3 >= total, "{shared} of {total} chunks shared");
    }

    proptest! {
        #[test]
        fn fixed_split_covers_and_aligns(base in 0u64..1 << 40, len in 0usize..50_000, shift in 12u32..16) {
            let c = FixedChunker::new(1 << shift).unwrap();
            let data = vec![0u8; len];
            let spans = c.split(base, &data);
            prop_assert!(covers(&spans, base, len));
            for s in spans.iter().take(spans.len().saturating_sub(1)) {
                prop_assert_eq!((s.offset + s.len as u64) % (1u64 << shift), 0);
                prop_assert!(s.len <= 1 << shift);
            }
        }

        #[test]
        fn cdc_split_covers_and_bounds(seed in any::<u64>(), len in 0usize..200_000) {
            let data = pseudo(len, seed | 1);
            let c = CdcChunker::new(1024, 4096, 16384).unwrap();
            let spans = c.split(5, &data);
            prop_assert!(covers(&spans, 5, len));
            for s in &spans {
                prop_assert!(s.len <= 16384);
            }
            for s in spans.iter().take(spans.len().saturating_sub(1)) {
                prop_assert!(s.len >= 1024);
            }
            // Deterministic.
            prop_assert_eq!(spans, c.split(5, &data));
        }

        #[test]
        fn fixed_sizes_accepted_up_to_chunk_max(size_shift in 12u32..25) {
            let p = ChunkerParams::Fixed { size: 1 << size_shift };
            prop_assert_eq!(p.validate().is_ok(), size_shift <= 24);
        }
    }
}
