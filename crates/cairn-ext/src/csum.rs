//! crc32c as ext4 uses it: the raw CRC (no final inversion), seeded by the caller.

/// `crc32c_le(seed, data)` of the Linux kernel / e2fsprogs: no pre- or post-inversion.
pub(crate) fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    // The crate's append function inverts on entry and exit; undo both.
    !crc32c::crc32c_append(!seed, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_crc_matches_standard_crc32c() {
        // Standard CRC-32C ("123456789") = 0xE3069283 = !raw(!0, data).
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        // Chaining equals one pass.
        let a = crc32c_raw(crc32c_raw(7, b"1234"), b"56789");
        assert_eq!(a, crc32c_raw(7, b"123456789"));
    }
}
