#![no_main]
//! Walks arbitrary bytes as a tar archive (an OVA): headers, checksums, octal / base-256
//! sizes, ustar prefixes, GNU long names, pax records; then reads every member through its
//! slice and opens each as a disk image straight out of the archive, as an OVA backup does.
//! Must never panic, hang or over-allocate; every member must lie inside the archive.
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

use cairn_bundle::tar::TarArchive;
use cairn_io::ReadAt;

fuzz_target!(|data: &[u8]| {
    let size = data.len() as u64;
    let Ok(tar) = TarArchive::open(Arc::new(data.to_vec()), "fuzz.ova") else {
        return;
    };
    for m in tar.members() {
        assert!(m.offset.checked_add(m.size).is_some_and(|e| e <= size));
        let _ = tar.read_member(m, 1 << 20);
        let Ok(r) = tar.member_reader(m) else {
            continue;
        };
        let mut buf = [0u8; 512];
        let _ = r.read_at(&mut buf, m.size / 2);
        let _ =
            cairn_vdisk::VirtualDisk::open_reader(&m.name, r, &cairn_vdisk::OpenOptions::default());
    }
});
