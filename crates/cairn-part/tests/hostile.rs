//! Hostile tables: loops, absurd sizes and bad checksums end in typed errors or warnings.
use cairn_part::{read_partition_table, Error, Scheme};

fn entry(disk: &mut [u8], sector_off: usize, slot: usize, kind: u8, lba: u32, sectors: u32) {
    let o = sector_off + 446 + 16 * slot;
    disk[o + 4] = kind;
    disk[o + 8..o + 12].copy_from_slice(&lba.to_le_bytes());
    disk[o + 12..o + 16].copy_from_slice(&sectors.to_le_bytes());
    disk[sector_off + 510] = 0x55;
    disk[sector_off + 511] = 0xAA;
}

#[test]
fn ebr_loop_is_an_error() {
    let mut disk = vec![0u8; 1 << 20];
    entry(&mut disk, 0, 0, 0x05, 100, 1000);
    // EBR at LBA 100: one logical, next EBR points back at itself (relative 0).
    entry(&mut disk, 100 * 512, 0, 0x83, 10, 10);
    entry(&mut disk, 100 * 512, 1, 0x05, 0, 100);
    let err = read_partition_table(&disk).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadEbrChain {
                what: "loops back to an earlier EBR",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn partition_past_the_end_is_a_warning_and_open_fails() {
    let mut disk = vec![0u8; 1 << 20];
    entry(&mut disk, 0, 0, 0x83, 1, u32::MAX);
    let t = read_partition_table(&disk).unwrap();
    assert_eq!(t.scheme, Scheme::Mbr);
    assert!(t.warnings[0].contains("past the end"));
    assert!(matches!(
        t.partitions[0].open(&disk),
        Err(Error::PartitionOutsideDisk { index: 1, .. })
    ));
}

fn gpt_disk(sector: usize, entries: u32, entry_size: u32) -> Vec<u8> {
    let mut d = vec![0u8; 256 * sector];
    entry(&mut d, 0, 0, 0xEE, 1, 255);
    let h = sector;
    d[h..h + 8].copy_from_slice(b"EFI PART");
    d[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
    d[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
    d[h + 32..h + 40].copy_from_slice(&255u64.to_le_bytes());
    d[h + 40..h + 48].copy_from_slice(&6u64.to_le_bytes());
    d[h + 48..h + 56].copy_from_slice(&250u64.to_le_bytes());
    d[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
    d[h + 80..h + 84].copy_from_slice(&entries.to_le_bytes());
    d[h + 84..h + 88].copy_from_slice(&entry_size.to_le_bytes());
    // One entry: Linux filesystem at LBA 10..=19.
    let e = 2 * sector;
    let t = cairn_part::Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap();
    d[e..e + 16].copy_from_slice(&t.0);
    d[e + 32..e + 40].copy_from_slice(&10u64.to_le_bytes());
    d[e + 40..e + 48].copy_from_slice(&19u64.to_le_bytes());
    let arr_len = (entries * entry_size) as usize;
    if e + arr_len <= d.len() {
        let crc = crc32fast::hash(&d[e..e + arr_len]);
        d[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&d[h..h + 92]);
    d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    d
}

#[test]
fn gpt_with_4096_byte_sectors() {
    let d = gpt_disk(4096, 4, 128);
    let t = read_partition_table(&d).unwrap();
    assert_eq!(t.scheme, Scheme::Gpt);
    assert_eq!(t.sector_size, 4096);
    assert_eq!(
        (t.partitions[0].start, t.partitions[0].size),
        (10 * 4096, 10 * 4096)
    );
    assert_eq!(t.partitions[0].type_name, "Linux filesystem");
}

#[test]
fn gpt_absurd_entry_count_is_refused() {
    let d = gpt_disk(512, 1_000_000, 128);
    let err = read_partition_table(&d).unwrap_err();
    match err {
        Error::NoValidGpt { primary, .. } => {
            assert!(primary.contains("exceed the limit"), "{primary}")
        }
        e => panic!("{e}"),
    }
}

#[test]
fn gpt_bad_entry_size_is_refused() {
    let d = gpt_disk(512, 4, 100);
    let err = read_partition_table(&d).unwrap_err();
    assert!(err.to_string().contains("entry size 100"), "{err}");
}

#[test]
fn truncated_disks_do_not_panic() {
    let d = gpt_disk(512, 4, 128);
    for len in [0, 1, 100, 511, 512, 600, 1024, 1100, 2048] {
        let _ = read_partition_table(&d[..len].to_vec());
    }
}
