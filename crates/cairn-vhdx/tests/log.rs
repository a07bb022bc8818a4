//! Log replay: a hand-written log over a qemu-made image, checked against qemu's own replay
//! (`qemu-img check -r all` on a copy), and against the sample with a dirty log when
//! `CAIRN_SAMPLES_DIR` is set.
// Test fixtures are a few MiB: offsets and lengths fit every integer type used here.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::path::Path;
use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, RangeKind, ReadAt};
use cairn_vhdx::{Error, VhdxImage};
use common::*;

const LOG_GUID: [u8; 16] = *b"cairn-log-guid!!";

/// Writes a log entry at `pos` of the log: data sectors then zero ranges, all with `seq`.
fn log_entry(
    file: &mut [u8],
    log_off: usize,
    pos: usize,
    seq: u64,
    data: &[(u64, [u8; 4096])],
    zeros: &[(u64, u64)],
) -> usize {
    let count = data.len() + zeros.len();
    let desc_sectors = (64 + 32 * count).div_ceil(4096);
    let len = (desc_sectors + data.len()) * 4096;
    let e = log_off + pos;
    let size = file.len() as u64;
    let b = &mut file[e..e + len];
    b.fill(0);
    b[0..4].copy_from_slice(b"loge");
    put32(b, 8, len as u32);
    put32(b, 12, 0);
    put64(b, 16, seq);
    put32(b, 24, count as u32);
    b[32..48].copy_from_slice(&LOG_GUID);
    put64(b, 48, size);
    put64(b, 56, size);
    let mut d = 64;
    for (i, (off, sector)) in data.iter().enumerate() {
        b[d..d + 4].copy_from_slice(b"desc");
        b[d + 4..d + 8].copy_from_slice(&sector[4092..4096]);
        b[d + 8..d + 16].copy_from_slice(&sector[0..8]);
        put64(b, d + 16, *off);
        put64(b, d + 24, seq);
        d += 32;
        let ds = (desc_sectors + i) * 4096;
        b[ds..ds + 4096].copy_from_slice(sector);
        b[ds..ds + 4].copy_from_slice(b"data");
        put32(b, ds + 4, (seq >> 32) as u32);
        put32(b, ds + 4092, seq as u32);
    }
    for (off, l) in zeros {
        b[d..d + 4].copy_from_slice(b"zero");
        put64(b, d + 8, *l);
        put64(b, d + 16, *off);
        put64(b, d + 24, seq);
        d += 32;
    }
    fix_crc(b, 0, len);
    len
}

/// Marks the current header as having the log (both copies, so either is current).
fn set_log_guid(file: &mut [u8]) {
    for h in [64 * 1024, 128 * 1024] {
        file[h + 48..h + 64].copy_from_slice(&LOG_GUID);
        fix_crc(file, h, 4096);
    }
}

/// A qemu-made dynamic image with two written blocks; returns (dir, path, bytes).
fn base_image() -> Option<(tempfile::TempDir, std::path::PathBuf, Vec<u8>)> {
    let dir = tempdir_if_have(&["qemu-img", "qemu-io"])?;
    let v = dir.path().join("l.vhdx");
    qemu_vhdx(&v, &["write -P 0x5c 1M 1M", "write -P 0x66 5M 1M"]);
    let bytes = std::fs::read(&v).unwrap();
    Some((dir, v, bytes))
}

/// A copy of `src` at `dst` repaired by qemu (`qemu-img check -r all`, which replays a dirty
/// log; its exit status tells what it found and fixed, so it is not checked).
fn qemu_repaired_copy(src: &Path, dst: &Path) {
    std::fs::copy(src, dst).unwrap();
    let _ = cairn_testkit::tool_command("qemu-img")
        .args(["check", "-r", "all", s(dst)])
        .output()
        .unwrap();
}

fn find_sector(file: &[u8], fill: u8) -> usize {
    (0..file.len() / 4096)
        .map(|i| i * 4096)
        .find(|&o| file[o..o + 4096].iter().all(|&b| b == fill))
        .unwrap()
}

#[test]
fn replay_matches_qemu() {
    let Some((dir, path, mut f)) = base_image() else {
        return;
    };
    let h = 64 * 1024;
    let log_off = usize::try_from(get64(&f, h + 72)).unwrap();
    let blk1 = find_sector(&f, 0x5c);
    let blk5 = find_sector(&f, 0x66);
    let mut sector = [0u8; 4096];
    for (i, b) in sector.iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    let mut sector2 = [0x99u8; 4096];
    sector2[0] = 1;
    // Entry 7: two data sectors into block 1; entry 8: a newer version of one of them and
    // 8 KiB of zeros into block 5.
    let l1 = log_entry(
        &mut f,
        log_off,
        0,
        7,
        &[(blk1 as u64, sector), (blk1 as u64 + 8192, sector)],
        &[],
    );
    log_entry(
        &mut f,
        log_off,
        l1,
        8,
        &[(blk1 as u64 + 8192, sector2)],
        &[(blk5 as u64 + 4096, 8192)],
    );
    set_log_guid(&mut f);
    let dirty = dir.path().join("dirty.vhdx");
    std::fs::write(&dirty, &f).unwrap();

    let img = VhdxImage::open(&dirty, &Limits::default()).unwrap();
    assert!(img.log_replayed());
    let ours = read_all(&img);
    assert_eq!(&ours[1 << 20..(1 << 20) + 4096], &sector[..]);
    assert_eq!(&ours[(1 << 20) + 4096..(1 << 20) + 8192], &[0x5c; 4096][..]);
    assert_eq!(&ours[(1 << 20) + 8192..(1 << 20) + 12288], &sector2[..]);
    assert!(ours[(5 << 20) + 4096..(5 << 20) + 12288]
        .iter()
        .all(|&b| b == 0));
    // The file itself is untouched.
    assert!(std::fs::read(&dirty).unwrap() == f);

    // qemu refuses it read-only, and replays it in a repair.
    let out = cairn_testkit::tool_command("qemu-img")
        .args(["convert", "-O", "raw", s(&dirty), "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let fixed = dir.path().join("fixed.vhdx");
    qemu_repaired_copy(&dirty, &fixed);
    assert!(
        qemu_raw(&fixed, "vhdx") == ours,
        "our replay differs from qemu's"
    );
    let _ = path;
}

#[test]
fn corrupt_log_entry_is_not_replayed() {
    let Some((dir, _path, mut f)) = base_image() else {
        return;
    };
    let log_off = usize::try_from(get64(&f, 64 * 1024 + 72)).unwrap();
    let blk1 = find_sector(&f, 0x5c);
    let before =
        read_all(&VhdxImage::from_reader(Arc::new(f.clone()), &Limits::default()).unwrap());
    log_entry(&mut f, log_off, 0, 3, &[(blk1 as u64, [0x42; 4096])], &[]);
    f[log_off + 4096 + 100] ^= 1; // breaks the entry's CRC
    set_log_guid(&mut f);
    let img = VhdxImage::from_reader(Arc::new(f), &Limits::default()).unwrap();
    assert!(read_all(&img) == before);
    drop(dir);
}

#[test]
fn log_outside_file_is_refused() {
    let Some((_dir, _path, mut f)) = base_image() else {
        return;
    };
    set_log_guid(&mut f);
    for h in [64 * 1024, 128 * 1024] {
        put64(&mut f, h + 72, 1 << 40);
        fix_crc(&mut f, h, 4096);
    }
    let r = VhdxImage::from_reader(Arc::new(f), &Limits::default());
    assert!(matches!(r, Err(Error::DirtyLog { .. })), "{r:?}");
}

/// The qemu-iotests sample with a dirty log: our in-memory replay equals qemu's repair.
#[test]
fn dirty_log_sample_matches_qemu_repair() {
    let Some(dir) = std::env::var_os("CAIRN_SAMPLES_DIR") else {
        eprintln!("skipped: CAIRN_SAMPLES_DIR not set");
        return;
    };
    let p = Path::new(&dir).join("iotest-dirtylog-10G-4M.vhdx");
    if !p.exists() || !have("qemu-img") {
        eprintln!("skipped: no iotest-dirtylog-10G-4M.vhdx");
        return;
    }
    let img = VhdxImage::open(&p, &Limits::default()).unwrap();
    assert!(img.log_replayed());
    let tmp = tempfile::tempdir().unwrap();
    let fixed = tmp.path().join("fixed.vhdx");
    qemu_repaired_copy(&p, &fixed);
    let repaired = VhdxImage::open(&fixed, &Limits::default()).unwrap();
    assert!(!repaired.log_replayed());
    let a = img.layer_map().unwrap();
    let b = repaired.layer_map().unwrap();
    assert_eq!(a.runs(), b.runs());
    let mut x = vec![0u8; 1 << 20];
    let mut y = vec![0u8; 1 << 20];
    for r in a.ranges_of(RangeKind::Data) {
        let mut off = r.offset;
        while off < r.end() {
            let n = (r.end() - off).min(1 << 20) as usize;
            img.read_exact_at(&mut x[..n], off).unwrap();
            repaired.read_exact_at(&mut y[..n], off).unwrap();
            assert!(x[..n] == y[..n], "differs at {off}");
            off += n as u64;
        }
    }
    // qemu's repair opens the file read-write, which renews DataWriteGuid; the disk id stays.
    assert_eq!(img.identity().uuid, repaired.identity().uuid);
}
