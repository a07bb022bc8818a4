use std::path::Path;

use cairn_io::{FileReader, ReadAt};

use crate::{Error, Result};

/// A container format, as its magic bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// VMware VMDK: text descriptor, hosted sparse (`KDMV`), vmfsSparse (`COWD`), seSparse.
    Vmdk,
    /// Virtual PC / Hyper-V VHD (`conectix` footer; fixed disks have it only at the end).
    Vhd,
    /// Hyper-V VHDX (`vhdxfile`).
    Vhdx,
    /// QEMU qcow2 (`QFI\xfb`).
    Qcow2,
    /// Anything else: the file is the disk.
    Raw,
}

/// seSparse header magic, little-endian u64 0x00000000cafebabe.
const SESPARSE_MAGIC: [u8; 8] = [0xbe, 0xba, 0xfe, 0xca, 0, 0, 0, 0];

/// Reads the first 1 KiB and the last 512 bytes of `path` and names its format.
pub fn probe_format(path: &Path) -> Result<ImageFormat> {
    let f = FileReader::open(path).map_err(|e| Error::io(path, e))?;
    probe_reader(&f).map_err(|e| Error::io(path, e.into()))
}

/// [`probe_format`] of any reader (a disk inside an archive, say).
pub fn probe_reader(f: &dyn ReadAt) -> cairn_io::Result<ImageFormat> {
    let mut head = [0u8; 1024];
    let n = f.read_at(&mut head, 0)?;
    let head = &head[..n];
    let starts = |m: &[u8]| head.len() >= m.len() && &head[..m.len()] == m;
    if starts(b"KDMV") || starts(b"COWD") || starts(&SESPARSE_MAGIC) || is_vmdk_descriptor(head) {
        return Ok(ImageFormat::Vmdk);
    }
    if starts(b"vhdxfile") {
        return Ok(ImageFormat::Vhdx);
    }
    if starts(b"QFI\xfb") {
        return Ok(ImageFormat::Qcow2);
    }
    if starts(b"conectix") {
        return Ok(ImageFormat::Vhd);
    }
    let size = f.size();
    for tail_len in [512u64, 511] {
        if size >= tail_len {
            let mut tail = [0u8; 8];
            f.read_exact_at(&mut tail, size - tail_len)?;
            if &tail == b"conectix" {
                return Ok(ImageFormat::Vhd);
            }
        }
    }
    Ok(ImageFormat::Raw)
}

/// A VMDK text descriptor: printable text whose first lines hold the descriptor header or a
/// `createType=` key.
fn is_vmdk_descriptor(head: &[u8]) -> bool {
    let text_len = head.iter().position(|&b| b == 0).unwrap_or(head.len());
    let text = &head[..text_len];
    if text
        .iter()
        .any(|&b| b < 0x09 || (b > 0x0d && b < 0x20 && b != 0x1b))
    {
        return false;
    }
    let s = String::from_utf8_lossy(text);
    s.starts_with("# Disk DescriptorFile")
        || s.lines()
            .take(16)
            .any(|l| l.trim_start().starts_with("createType"))
}

/// True when the file starts with a VHD footer copy (dynamic and differencing disks do; a
/// fixed disk has its footer only at the end).
pub(crate) fn has_leading_vhd_copy(path: &Path) -> bool {
    let Ok(f) = FileReader::open(path) else {
        return false;
    };
    let mut head = [0u8; 8];
    f.read_exact_at(&mut head, 0).is_ok() && &head == b"conectix"
}
