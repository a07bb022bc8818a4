//! Human names of partition type codes.
use crate::Guid;

/// The name of an MBR system id.
pub fn mbr_type_name(kind: u8) -> &'static str {
    match kind {
        0x00 => "Empty",
        0x01 => "FAT12",
        0x04 => "FAT16 <32M",
        0x05 => "Extended",
        0x06 => "FAT16",
        0x07 => "HPFS/NTFS/exFAT",
        0x0B => "W95 FAT32",
        0x0C => "W95 FAT32 (LBA)",
        0x0E => "W95 FAT16 (LBA)",
        0x0F => "W95 Extended (LBA)",
        0x11 => "Hidden FAT12",
        0x12 => "Compaq diagnostics",
        0x14 => "Hidden FAT16 <32M",
        0x16 => "Hidden FAT16",
        0x17 => "Hidden HPFS/NTFS",
        0x1B => "Hidden W95 FAT32",
        0x1C => "Hidden W95 FAT32 (LBA)",
        0x1E => "Hidden W95 FAT16 (LBA)",
        0x27 => "Hidden NTFS WinRE",
        0x42 => "SFS / Windows dynamic disk",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0x8E => "Linux LVM",
        0xA5 => "FreeBSD",
        0xA6 => "OpenBSD",
        0xA8 => "Darwin UFS",
        0xA9 => "NetBSD",
        0xAF => "HFS / HFS+",
        0xEE => "GPT protective",
        0xEF => "EFI (FAT-12/16/32)",
        0xFB => "VMware VMFS",
        0xFC => "VMware VMKCORE",
        0xFD => "Linux raid autodetect",
        _ => "Unknown",
    }
}

const GPT_TYPES: &[(&str, &str)] = &[
    ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI System"),
    ("21686148-6449-6e6f-744e-656564454649", "BIOS boot"),
    ("e3c9e316-0b5c-4db8-817d-f92df00215ae", "Microsoft reserved"),
    (
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
        "Microsoft basic data",
    ),
    (
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac",
        "Windows recovery environment",
    ),
    (
        "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3",
        "Microsoft LDM metadata",
    ),
    ("af9b60a0-1431-4f62-bc68-3311714a69ad", "Microsoft LDM data"),
    (
        "e75caf8f-f680-4cee-afa3-b001e56efc2d",
        "Microsoft Storage Spaces",
    ),
    ("0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem"),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap"),
    ("e6d6d379-f507-44c2-a23c-238f2a3df928", "Linux LVM"),
    ("a19d880f-05fc-4d3b-a006-743f0f84911e", "Linux RAID"),
    ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home"),
    ("3b8f8425-20e0-4f3b-907f-1a25a76f98e8", "Linux server data"),
    (
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "Linux root (x86-64)",
    ),
    ("44479540-f297-41b2-9af7-d131d5f0458a", "Linux root (x86)"),
    ("b921b045-1df0-41c3-af44-4c6f280d3fae", "Linux root (ARM64)"),
    (
        "bc13c2ff-59e6-4262-a352-b275fd6f7172",
        "Linux extended boot",
    ),
    ("ca7d7ccb-63ed-4c53-861c-1742536059cc", "Linux LUKS"),
    ("516e7cb4-6ecf-11d6-8ff8-00022d09712b", "FreeBSD data"),
    ("83bd6b9d-7f41-11dc-be0b-001560b84f0f", "FreeBSD boot"),
    ("516e7cb5-6ecf-11d6-8ff8-00022d09712b", "FreeBSD swap"),
    ("516e7cb6-6ecf-11d6-8ff8-00022d09712b", "FreeBSD UFS"),
    ("516e7cba-6ecf-11d6-8ff8-00022d09712b", "FreeBSD ZFS"),
    ("48465300-0000-11aa-aa11-00306543ecac", "Apple HFS/HFS+"),
    ("7c3457ef-0000-11aa-aa11-00306543ecac", "Apple APFS"),
    ("aa31e02a-400f-11db-9590-000c2911d1b8", "VMware VMFS"),
    (
        "9d275380-40ad-11db-bf97-000c2911d1b8",
        "VMware kcore crash protection",
    ),
    (
        "6a898cc3-1dd2-11b2-99a6-080020736631",
        "Solaris /usr & Apple ZFS",
    ),
];

/// The name of a GPT partition type GUID.
pub fn gpt_type_name(g: &Guid) -> &'static str {
    let s = g.to_string();
    GPT_TYPES
        .iter()
        .find(|(k, _)| *k == s)
        .map_or("Unknown", |(_, n)| n)
}
