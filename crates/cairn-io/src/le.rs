//! Explicit-endian field decoding at byte offsets of a buffer whose length the caller has
//! already checked. Each helper panics only on a programming error (an offset the caller
//! did not size the buffer for), never on disk data: callers slice a buffer of a fixed,
//! validated length first.

/// Little-endian `u16` at `off`.
pub fn u16_le(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Little-endian `u32` at `off`.
pub fn u32_le(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Little-endian `u64` at `off`.
pub fn u64_le(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Big-endian `u16` at `off`.
pub fn u16_be(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Big-endian `u32` at `off`.
pub fn u32_be(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Big-endian `u64` at `off`.
pub fn u64_be(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// 16 bytes at `off` (a GUID or UUID, byte order left to the caller).
pub fn bytes16(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a
}
