//! LZNT1 decompression (NTFS compressed attributes).
//!
//! A compression unit is a sequence of chunks, each with a 2-byte little-endian header:
//! bits 0..12 hold the chunk's stored length minus 3 (header included), bit 15 says whether
//! the chunk is compressed. A stored chunk is 4096 literal bytes; a compressed one is groups of
//! a flag byte and 8 tokens (literal byte, or a 2-byte back-reference whose offset/length
//! split depends on the output position within the 4 KiB chunk). A zero header ends the unit.

/// Uncompressed size of one LZNT1 chunk.
pub const CHUNK_SIZE: usize = 4096;

/// Why a compression unit could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lznt1Error {
    /// A chunk's stored length runs past the input.
    Truncated { pos: usize },
    /// A back-reference points before the start of its chunk.
    BadBackReference { pos: usize },
}

impl std::fmt::Display for Lznt1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lznt1Error::Truncated { pos } => write!(f, "LZNT1 chunk at byte {pos} is truncated"),
            Lznt1Error::BadBackReference { pos } => {
                write!(
                    f,
                    "LZNT1 back-reference at byte {pos} points before its chunk"
                )
            }
        }
    }
}

/// Decompresses `input` into `out`, writing at most `out.len()` bytes (the compression unit
/// size bounds the work); returns how many bytes were produced. Output beyond that is left
/// untouched (callers pass a zeroed buffer: the unit's tail reads as zeros).
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, Lznt1Error> {
    let mut ip = 0usize;
    let mut op = 0usize;
    while ip + 2 <= input.len() && op < out.len() {
        let header = u16::from_le_bytes([input[ip], input[ip + 1]]);
        if header == 0 {
            break;
        }
        let chunk_len = usize::from(header & 0x0FFF) + 1;
        let data_start = ip + 2;
        let data_end = data_start + chunk_len;
        if data_end > input.len() {
            return Err(Lznt1Error::Truncated { pos: ip });
        }
        let chunk_out_start = op;
        let chunk_out_end = (op + CHUNK_SIZE).min(out.len());
        if header & 0x8000 == 0 {
            // Stored chunk: literal bytes.
            let n = chunk_len.min(chunk_out_end - op);
            out[op..op + n].copy_from_slice(&input[data_start..data_start + n]);
            op += n;
        } else {
            let mut p = data_start;
            'chunk: while p < data_end {
                let flags = input[p];
                p += 1;
                for bit in 0..8 {
                    if p >= data_end || op >= chunk_out_end {
                        break 'chunk;
                    }
                    if flags & (1 << bit) == 0 {
                        out[op] = input[p];
                        op += 1;
                        p += 1;
                    } else {
                        if p + 2 > data_end {
                            return Err(Lznt1Error::Truncated { pos: p });
                        }
                        let token = u16::from_le_bytes([input[p], input[p + 1]]);
                        let pos_in_chunk = op - chunk_out_start;
                        // Offset bits grow with the position: 4 bits up to 16 bytes, ... 12.
                        let mut lg = 0u32;
                        let mut i = pos_in_chunk.saturating_sub(1);
                        while i >= 0x10 {
                            i >>= 1;
                            lg += 1;
                        }
                        let back = usize::from(token >> (12 - lg)) + 1;
                        let len = usize::from(token & (0x0FFF >> lg)) + 3;
                        if pos_in_chunk == 0 || back > pos_in_chunk {
                            return Err(Lznt1Error::BadBackReference { pos: p });
                        }
                        for _ in 0..len {
                            if op >= chunk_out_end {
                                break;
                            }
                            out[op] = out[op - back];
                            op += 1;
                        }
                        p += 2;
                    }
                }
            }
            // A compressed chunk shorter than 4 KiB (not the last) is padded with zeros by
            // the caller's zeroed buffer; the next chunk starts at the next 4 KiB boundary.
            if data_end < input.len() && op < chunk_out_end {
                op = chunk_out_end;
            }
        }
        ip = data_end;
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Test-only greedy LZNT1 compressor (the inverse of [`decompress`]).
    fn compress(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(CHUNK_SIZE) {
            let mut body = Vec::new();
            let mut pos = 0usize;
            while pos < chunk.len() {
                let flag_at = body.len();
                body.push(0u8);
                for bit in 0..8 {
                    if pos >= chunk.len() {
                        break;
                    }
                    let mut lg = 0u32;
                    let mut i = pos.saturating_sub(1);
                    while i >= 0x10 {
                        i >>= 1;
                        lg += 1;
                    }
                    let max_back = (1usize << (4 + lg)).min(pos);
                    let max_len = (0x0FFFusize >> lg) + 3;
                    let mut best = (0usize, 0usize);
                    for back in 1..=max_back {
                        let mut l = 0;
                        while l < max_len
                            && pos + l < chunk.len()
                            && chunk[pos + l] == chunk[pos + l - back]
                        {
                            l += 1;
                        }
                        if l > best.1 {
                            best = (back, l);
                        }
                    }
                    if best.1 >= 3 {
                        let token =
                            u16::try_from(((best.0 - 1) << (12 - lg)) | (best.1 - 3)).unwrap();
                        body.extend_from_slice(&token.to_le_bytes());
                        body[flag_at] |= 1 << bit;
                        pos += best.1;
                    } else {
                        body.push(chunk[pos]);
                        pos += 1;
                    }
                }
            }
            if body.len() < chunk.len() {
                let h = u16::try_from(body.len() - 1).unwrap() | 0xB000;
                out.extend_from_slice(&h.to_le_bytes());
                out.extend_from_slice(&body);
            } else {
                let h = u16::try_from(chunk.len() - 1).unwrap() | 0x3000;
                out.extend_from_slice(&h.to_le_bytes());
                out.extend_from_slice(chunk);
            }
        }
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn repeated_text() {
        let data: Vec<u8> = b"compressible line of text\n"
            .iter()
            .copied()
            .cycle()
            .take(10_000)
            .collect();
        let c = compress(&data);
        assert!(c.len() < data.len() / 4);
        let mut out = vec![0u8; 16 * 4096];
        let n = decompress(&c, &mut out).unwrap();
        assert!(n >= data.len());
        assert_eq!(&out[..data.len()], &data[..]);
    }

    #[test]
    fn bad_back_reference() {
        // Compressed chunk whose first token is a back-reference.
        let input = [0x02, 0xB0, 0x01, 0x00, 0x00];
        let mut out = [0u8; 4096];
        assert_eq!(
            decompress(&input, &mut out),
            Err(Lznt1Error::BadBackReference { pos: 3 })
        );
        let input = [0xFF, 0xBF, 0x01];
        assert_eq!(
            decompress(&input, &mut out),
            Err(Lznt1Error::Truncated { pos: 0 })
        );
    }

    proptest! {
        #[test]
        fn round_trip(seed in proptest::collection::vec(0u8..4, 0..300), reps in 1usize..40) {
            let data: Vec<u8> = seed.iter().copied().cycle().take(seed.len() * reps).collect();
            let c = compress(&data);
            let mut out = vec![0u8; data.len().div_ceil(CHUNK_SIZE).max(1) * CHUNK_SIZE];
            decompress(&c, &mut out).unwrap();
            prop_assert_eq!(&out[..data.len()], &data[..]);
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut out = vec![0u8; 8192];
            let _ = decompress(&input, &mut out);
        }
    }
}
