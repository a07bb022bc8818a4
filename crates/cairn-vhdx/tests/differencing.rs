//! A differencing VHDX (qemu cannot make one): a qemu-made dynamic image turned into a child
//! by hand (has-parent flag, parent locator, NOT_PRESENT blocks, one PARTIALLY_PRESENT block
//! with a sector bitmap), read with its parent attached and compared with libvhdi's chain
//! read (`pyvhdi` `set_parent`) and with the expected bytes.
// Test fixtures are a few MiB: offsets and lengths fit every integer type used here.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::sync::Arc;

use cairn_io::{DiskLayer, Limits, ParentExpectation, RangeKind};
use cairn_vhdx::VhdxImage;
use common::*;

const MIB: usize = 1 << 20;
const PARENT_LOCATOR_GUID: [u8; 16] = [
    0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c,
];
const LOCATOR_TYPE_GUID: [u8; 16] = [
    0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13,
];

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A parent locator item with `pairs`.
fn locator(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut item = vec![0u8; 20 + 12 * pairs.len()];
    item[0..16].copy_from_slice(&LOCATOR_TYPE_GUID);
    item[18..20].copy_from_slice(&(pairs.len() as u16).to_le_bytes());
    for (i, (k, v)) in pairs.iter().enumerate() {
        let (k, v) = (utf16(k), utf16(v));
        let e = 20 + 12 * i;
        let ko = item.len() as u32;
        item.extend_from_slice(&k);
        let vo = item.len() as u32;
        item.extend_from_slice(&v);
        put32(&mut item, e, ko);
        put32(&mut item, e + 4, vo);
        item[e + 8..e + 10].copy_from_slice(&(k.len() as u16).to_le_bytes());
        item[e + 10..e + 12].copy_from_slice(&(v.len() as u16).to_le_bytes());
    }
    item
}

/// Sectors of block 3 marked present in the child.
const PRESENT: [usize; 4] = [0, 5, 100, 2047];

#[test]
fn differencing_chain() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else {
        return;
    };
    let praw = dir.path().join("parent.raw");
    let pdata = random_bytes(77, 8 * MIB);
    std::fs::write(&praw, &pdata).unwrap();
    let parent = dir.path().join("parent.vhdx");
    qemu_img_convert(&praw, "raw", &parent, "vhdx", &["-o", "block_size=1M"]);
    let parent_img = VhdxImage::open(&parent, &Limits::default()).unwrap();
    let parent_cid = parent_img.identity().content_id.unwrap();

    let child = dir.path().join("child.avhdx");
    qemu_vhdx(&child, &["write -P 0xc1 1M 1M", "write -P 0xc3 3M 1M"]);
    let mut f = std::fs::read(&child).unwrap();
    let (bat, meta) = regions(&f);
    // Has-parent.
    let (fp, _) = meta_item(&f, &FILE_PARAMS_GUID);
    put32(&mut f, fp + 4, 2);
    // BAT: blocks other than 1 and 3 come from the parent; block 3 is partial.
    let chunk_ratio = (1usize << 23) * 512 / MIB; // 512-byte sectors, 1 MiB blocks
    for b in 0..8 {
        let e = bat + 8 * b;
        match b {
            1 => {}
            3 => {
                let v = get64(&f, e);
                put64(&mut f, e, v & !7 | 7);
            }
            _ => put64(&mut f, e, 0),
        }
    }
    // The chunk's sector bitmap, appended at a 1 MiB boundary.
    let sb = f.len().div_ceil(MIB) * MIB;
    f.resize(sb + MIB, 0);
    for s in PRESENT {
        let bit = 3 * 2048 + s;
        f[sb + bit / 8] |= 1 << (bit % 8);
    }
    put64(&mut f, bat + 8 * chunk_ratio, (sb as u64) | 6);
    // Parent locator, at 512 KiB into the metadata region.
    let loc = locator(&[
        ("parent_linkage", &format!("{{{parent_cid}}}")),
        ("relative_path", ".\\parent.vhdx"),
        ("absolute_win32_path", "C:\\vms\\parent.vhdx"),
    ]);
    let item_off = 512 * KIB;
    f[meta + item_off..meta + item_off + loc.len()].copy_from_slice(&loc);
    add_meta_entry(&mut f, &PARENT_LOCATOR_GUID, item_off, loc.len(), 4); // IsRequired
    std::fs::write(&child, &f).unwrap();

    // What the chain must read.
    let mut want = pdata.clone();
    want[MIB..2 * MIB].fill(0xc1);
    for s in PRESENT {
        let o = 3 * MIB + s * 512;
        want[o..o + 512].fill(0xc3);
    }

    let mut img = VhdxImage::open(&child, &Limits::default()).unwrap();
    assert_eq!(img.subformat(), "differencing");
    let link = img.parent_link().unwrap();
    assert_eq!(link.hints, vec![".\\parent.vhdx", "C:\\vms\\parent.vhdx"]);
    assert_eq!(link.expect, ParentExpectation::ContentId(parent_cid));
    // The layer alone.
    let map = img.layer_map().unwrap();
    let data: Vec<_> = map
        .ranges_of(RangeKind::Data)
        .map(|r| (r.offset as usize, r.len as usize))
        .collect();
    let mut expect_data = vec![(MIB, MIB), (3 * MIB, 512)];
    expect_data.extend([
        (3 * MIB + 5 * 512, 512),
        (3 * MIB + 100 * 512, 512),
        (4 * MIB - 512, 512),
    ]);
    assert_eq!(data, expect_data);
    assert_eq!(map.bytes_of(RangeKind::Zero), 0);
    let alone = read_all(&img);
    assert!(
        alone[..MIB].iter().all(|&b| b == 0),
        "unattached child reads zeros"
    );

    img.attach_parent(Arc::new(parent_img)).unwrap();
    let ours = read_all(&img);
    assert!(ours == want, "chain read differs from the expected bytes");
    check_odd_reads(&img, &want);

    // libvhdi reads the same chain.
    let script = r#"
import sys, pyvhdi
p = pyvhdi.file(); p.open(sys.argv[2])
c = pyvhdi.file(); c.open(sys.argv[1])
sys.stderr.write("child names %s, parent is %s\n" % (c.parent_identifier, p.identifier))
c.set_parent(p)
sys.stdout.buffer.write(c.read_buffer(c.media_size))
"#;
    if have_python_module("pyvhdi") {
        let out = run_command(std::process::Command::new("/usr/bin/python3").args([
            "-c",
            script,
            s(&child),
            s(&parent),
        ]));
        assert!(out == want, "libvhdi reads the chain differently");
    }
}
