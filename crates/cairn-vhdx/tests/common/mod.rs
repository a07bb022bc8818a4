//! Shared helpers: external tools, fixture data, raw field access to VHDX files.
#![allow(dead_code, unused_imports)]

use std::path::Path;

pub use cairn_testkit::{
    check_odd_reads, have, have_python_module, path_str as s, qemu_img_convert, qemu_img_create,
    qemu_io, qemu_raw, random_bytes, run, run_command, sample_disk, tempdir_if_have,
};

/// Reads all of `img` in 1 MiB requests.
pub fn read_all(img: &dyn cairn_io::ReadAt) -> Vec<u8> {
    cairn_testkit::read_all(img, 1 << 20)
}

/// An 8 MiB dynamic VHDX of 1 MiB blocks made by qemu-img at `path`, then `writes`
/// (qemu-io commands such as `"write -P 0x5c 1M 1M"`) through qemu's driver. Callers check
/// `qemu-img` and `qemu-io` first.
pub fn qemu_vhdx(path: &Path, writes: &[&str]) {
    qemu_img_create(path, "vhdx", "8M", &["-o", "block_size=1M"]);
    qemu_io(path, "vhdx", writes);
}

pub const KIB: usize = 1024;
pub const H1: usize = 64 * KIB;
pub const H2: usize = 128 * KIB;
pub const R1: usize = 192 * KIB;
pub const R2: usize = 256 * KIB;

pub fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
pub fn get32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
pub fn get64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
/// Sets the checksum at `o + 4` of the `len`-byte structure at `o`.
pub fn fix_crc(b: &mut [u8], o: usize, len: usize) {
    put32(b, o + 4, 0);
    let c = crc32c::crc32c(&b[o..o + len]);
    put32(b, o + 4, c);
}

pub const BAT_GUID: [u8; 16] = [
    0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08,
];
pub const FILE_PARAMS_GUID: [u8; 16] = [
    0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b,
];
pub const LOGICAL_SECTOR_GUID: [u8; 16] = [
    0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f,
];
pub const SIZE_GUID: [u8; 16] = [
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
];

/// (BAT offset, metadata region offset) from region table 1.
pub fn regions(f: &[u8]) -> (usize, usize) {
    let n = get32(f, R1 + 8) as usize;
    let (mut bat, mut meta) = (0, 0);
    for i in 0..n {
        let e = R1 + 16 + i * 32;
        let off = get64(f, e + 16) as usize;
        if f[e..e + 16] == BAT_GUID {
            bat = off;
        } else {
            meta = off;
        }
    }
    (bat, meta)
}

/// Offset in the file of the metadata item with `guid` and its table entry.
pub fn meta_item(f: &[u8], guid: &[u8; 16]) -> (usize, usize) {
    let (_, meta) = regions(f);
    let n = usize::from(u16::from_le_bytes([f[meta + 10], f[meta + 11]]));
    for i in 0..n {
        let e = meta + 32 + i * 32;
        if &f[e..e + 16] == guid {
            return (meta + get32(f, e + 16) as usize, e);
        }
    }
    panic!("no such item")
}

/// Appends an entry for the metadata item `guid` (`len` bytes at `item_off` in the metadata
/// region, with `flags`) to the metadata table. The item's bytes are the caller's.
pub fn add_meta_entry(f: &mut [u8], guid: &[u8; 16], item_off: usize, len: usize, flags: u32) {
    let (_, meta) = regions(f);
    let n = usize::from(u16::from_le_bytes([f[meta + 10], f[meta + 11]]));
    let e = meta + 32 + n * 32;
    f[e..e + 16].copy_from_slice(guid);
    put32(f, e + 16, u32::try_from(item_off).unwrap());
    put32(f, e + 20, u32::try_from(len).unwrap());
    put32(f, e + 24, flags);
    f[meta + 10..meta + 12].copy_from_slice(&u16::try_from(n + 1).unwrap().to_le_bytes());
}
