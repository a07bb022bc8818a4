//! Data run lists ("mapping pairs") of non-resident attributes.

/// One run: `len` clusters at stream cluster `vcn`, stored at volume cluster `lcn` or sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRun {
    /// First virtual cluster (stream cluster) of the run.
    pub vcn: u64,
    /// Number of clusters.
    pub len: u64,
    /// First logical (volume) cluster, or `None` for a sparse run (reads as zeros).
    pub lcn: Option<u64>,
}

/// Why a run list could not be decoded (the caller adds the record and attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunListError {
    /// A header byte's length or offset field is wider than 8 bytes, or the length is empty.
    BadHeader { pos: usize, header: u8 },
    /// The list runs past the end of its buffer without a terminator.
    Truncated { pos: usize },
    /// A run length is zero or negative.
    BadLength { pos: usize },
    /// The running LCN went negative or overflowed.
    LcnOutOfRange { pos: usize },
    /// A run ends past the volume's last cluster.
    PastVolumeEnd { lcn: u64, len: u64, total: u64 },
    /// More runs than allowed.
    TooManyRuns { limit: usize },
    /// VCNs overflow 64 bits.
    VcnOverflow,
}

impl std::fmt::Display for RunListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunListError::BadHeader { pos, header } => {
                write!(f, "byte {pos}: bad run header {header:#04x}")
            }
            RunListError::Truncated { pos } => write!(f, "truncated at byte {pos}"),
            RunListError::BadLength { pos } => write!(f, "byte {pos}: run length is not positive"),
            RunListError::LcnOutOfRange { pos } => {
                write!(f, "byte {pos}: cluster offset leaves the volume")
            }
            RunListError::PastVolumeEnd { lcn, len, total } => write!(
                f,
                "run of {len} clusters at lcn {lcn} ends past the volume ({total} clusters)"
            ),
            RunListError::TooManyRuns { limit } => write!(f, "more than {limit} runs"),
            RunListError::VcnOverflow => write!(f, "virtual cluster numbers overflow"),
        }
    }
}

/// Reads a little-endian integer of `n` (1..=8) bytes; signed ones are sign-extended.
fn read_var(b: &[u8], signed: bool) -> u64 {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate() {
        v |= u64::from(byte) << (8 * i);
    }
    let n = b.len();
    if signed && n < 8 && n > 0 && b[n - 1] & 0x80 != 0 {
        v |= u64::MAX << (8 * n);
    }
    v
}

/// Decodes a run list starting at VCN `start_vcn`. Every run must lie within
/// `total_clusters`; at most `max_runs` runs are accepted.
pub fn decode_runs(
    buf: &[u8],
    start_vcn: u64,
    total_clusters: u64,
    max_runs: usize,
) -> Result<Vec<DataRun>, RunListError> {
    let mut runs = Vec::new();
    let mut pos = 0usize;
    let mut vcn = start_vcn;
    let mut lcn: i64 = 0;
    loop {
        let Some(&header) = buf.get(pos) else {
            return Err(RunListError::Truncated { pos });
        };
        if header == 0 {
            break;
        }
        let len_size = usize::from(header & 0x0F);
        let off_size = usize::from(header >> 4);
        if len_size == 0 || len_size > 8 || off_size > 8 {
            return Err(RunListError::BadHeader { pos, header });
        }
        let body = pos + 1;
        let end = body + len_size + off_size;
        if end > buf.len() {
            return Err(RunListError::Truncated { pos });
        }
        let len_raw = read_var(&buf[body..body + len_size], true);
        let len = i64::from_le_bytes(len_raw.to_le_bytes());
        if len <= 0 {
            return Err(RunListError::BadLength { pos });
        }
        let len = len.unsigned_abs();
        let run_lcn = if off_size == 0 {
            None
        } else {
            let delta =
                i64::from_le_bytes(read_var(&buf[body + len_size..end], true).to_le_bytes());
            lcn = lcn
                .checked_add(delta)
                .filter(|&l| l >= 0)
                .ok_or(RunListError::LcnOutOfRange { pos })?;
            let l = lcn.unsigned_abs();
            if l.checked_add(len).is_none_or(|e| e > total_clusters) {
                return Err(RunListError::PastVolumeEnd {
                    lcn: l,
                    len,
                    total: total_clusters,
                });
            }
            Some(l)
        };
        if runs.len() >= max_runs {
            return Err(RunListError::TooManyRuns { limit: max_runs });
        }
        runs.push(DataRun {
            vcn,
            len,
            lcn: run_lcn,
        });
        vcn = vcn.checked_add(len).ok_or(RunListError::VcnOverflow)?;
        pos = end;
    }
    Ok(runs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn min_bytes_signed(v: i64) -> usize {
        (1..=8)
            .find(|&n| {
                let bits = 8 * n;
                if bits == 64 {
                    return true;
                }
                let lo = -(1i64 << (bits - 1));
                let hi = (1i64 << (bits - 1)) - 1;
                (lo..=hi).contains(&v)
            })
            .unwrap_or(8)
    }

    /// Test-only encoder: the inverse of [`decode_runs`].
    pub(crate) fn encode_runs(runs: &[(u64, Option<u64>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev: i64 = 0;
        for &(len, lcn) in runs {
            let len = i64::try_from(len).unwrap();
            let ls = min_bytes_signed(len);
            let (os, delta) = match lcn {
                None => (0, 0),
                Some(l) => {
                    let l = i64::try_from(l).unwrap();
                    let d = l - prev;
                    prev = l;
                    (min_bytes_signed(d), d)
                }
            };
            out.push(u8::try_from(ls | (os << 4)).unwrap());
            out.extend_from_slice(&len.to_le_bytes()[..ls]);
            out.extend_from_slice(&delta.to_le_bytes()[..os]);
        }
        out.push(0);
        out
    }

    #[test]
    fn negative_delta_and_sparse() {
        // 0x21: len 1 byte, offset 2 bytes; second run goes backwards; third is sparse.
        let buf = [0x21, 0x10, 0x00, 0x01, 0x11, 0x08, 0xF0, 0x01, 0x04, 0x00];
        let r = decode_runs(&buf, 0, 1 << 20, 16).unwrap();
        assert_eq!(
            r,
            vec![
                DataRun {
                    vcn: 0,
                    len: 16,
                    lcn: Some(256)
                },
                DataRun {
                    vcn: 16,
                    len: 8,
                    lcn: Some(240)
                },
                DataRun {
                    vcn: 24,
                    len: 4,
                    lcn: None
                },
            ]
        );
    }

    #[test]
    fn hostile_lists() {
        assert_eq!(
            decode_runs(&[0x21, 0x10], 0, 100, 4),
            Err(RunListError::Truncated { pos: 0 })
        );
        assert_eq!(
            decode_runs(&[0x09, 0], 0, 100, 4),
            Err(RunListError::BadHeader { pos: 0, header: 9 })
        );
        assert_eq!(
            decode_runs(&[0x11, 0x10, 0x60, 0], 0, 100, 4),
            Err(RunListError::PastVolumeEnd {
                lcn: 0x60,
                len: 0x10,
                total: 100
            })
        );
        assert_eq!(
            decode_runs(&[0x11, 0x01, 0xF0, 0], 0, 100, 4),
            Err(RunListError::LcnOutOfRange { pos: 0 })
        );
        assert_eq!(
            decode_runs(&[0x01, 0xFF, 0], 0, 100, 4),
            Err(RunListError::BadLength { pos: 0 })
        );
        assert_eq!(
            decode_runs(&[0x01, 1, 0x01, 1, 0], 0, 100, 1),
            Err(RunListError::TooManyRuns { limit: 1 })
        );
        assert_eq!(
            decode_runs(&[], 0, 100, 1),
            Err(RunListError::Truncated { pos: 0 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(runs in proptest::collection::vec((1u64..1_000_000, proptest::option::of(0u64..1_000_000_000)), 0..40)) {
            let enc = encode_runs(&runs);
            let dec = decode_runs(&enc, 7, 2_000_000_000, 64).unwrap();
            prop_assert_eq!(dec.len(), runs.len());
            let mut vcn = 7;
            for (d, &(len, lcn)) in dec.iter().zip(&runs) {
                prop_assert_eq!(d.vcn, vcn);
                prop_assert_eq!(d.len, len);
                prop_assert_eq!(d.lcn, lcn);
                vcn += len;
            }
        }

        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_runs(&buf, 0, 1 << 40, 16);
        }
    }
}
