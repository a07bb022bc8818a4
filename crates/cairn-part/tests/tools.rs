//! Partition tables made by sfdisk and sgdisk, read back and compared with `sfdisk --json`.
use std::path::Path;
use std::process::Command;

use cairn_io::FileReader;
use cairn_part::{read_partition_table, FsKind, PartitionType, Scheme};

use cairn_testkit::have;

fn run(cmd: &mut Command) {
    cairn_testkit::run_command(cmd);
}

fn sized_file(path: &Path, size: u64) {
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
}

fn sfdisk_json(path: &Path) -> serde_json::Value {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["partitiontable"].clone()
}

/// (index from the node name's trailing digits, start sector, size in sectors)
fn sfdisk_parts(v: &serde_json::Value, img: &Path) -> Vec<(u32, u64, u64)> {
    let name = img.to_str().unwrap();
    v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let idx: u32 = node[name.len()..].parse().unwrap();
            (
                idx,
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn mbr_with_extended_and_logicals_matches_sfdisk() {
    if !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mbr.img");
    sized_file(&img, 64 << 20);
    let script = "label: dos\nlabel-id: 0x12345678\n\
        start=2048, size=20480, type=c, bootable\n\
        start=22528, size=40960, type=5\n\
        start=24576, size=8192, type=83\n\
        start=34816, size=8192, type=7\n\
        start=45056, size=8192, type=82\n\
        start=63488, size=4096, type=83\n";
    let mut child = Command::new("sfdisk")
        .arg("--no-reread")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let disk = FileReader::open(&img).unwrap();
    let table = read_partition_table(&disk).unwrap();
    assert_eq!(table.scheme, Scheme::Mbr);
    assert_eq!(table.disk_id.as_deref(), Some("12345678"));
    let ours: Vec<_> = table
        .partitions
        .iter()
        .map(|p| (p.index, p.start / 512, p.size / 512))
        .collect();
    let theirs = sfdisk_parts(&sfdisk_json(&img), &img);
    // sfdisk reports the extended container with its full size; so do we.
    assert_eq!(ours, theirs);
    assert!(table.partitions[0].bootable);
    assert_eq!(table.partitions[0].kind, PartitionType::Mbr(0x0c));
    assert_eq!(table.partitions.iter().filter(|p| p.logical).count(), 3);
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);
}

#[test]
fn gpt_matches_sfdisk_and_survives_a_broken_primary() {
    if !have("sgdisk") || !have("sfdisk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("gpt.img");
    sized_file(&img, 64 << 20);
    run(Command::new("sgdisk")
        .args(["-o", "-U", "11111111-2222-3333-4444-555555555555"])
        .args(["-n", "1:2048:34815", "-t", "1:ef00", "-c", "1:EFI system"])
        .args([
            "-n",
            "2:34816:77823",
            "-t",
            "2:0700",
            "-c",
            "2:Basic data ünï",
        ])
        .args(["-n", "3:77824:0", "-t", "3:8300", "-c", "3:root"])
        .arg(&img));
    let disk = FileReader::open(&img).unwrap();
    let table = read_partition_table(&disk).unwrap();
    assert_eq!(table.scheme, Scheme::Gpt);
    assert_eq!(
        table.disk_id.as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    let ours: Vec<_> = table
        .partitions
        .iter()
        .map(|p| (p.index, p.start / 512, p.size / 512))
        .collect();
    let theirs = sfdisk_parts(&sfdisk_json(&img), &img);
    assert_eq!(ours, theirs);
    let names: Vec<_> = table
        .partitions
        .iter()
        .map(|p| (p.type_name, p.name.clone().unwrap()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("EFI System", "EFI system".to_string()),
            ("Microsoft basic data", "Basic data ünï".to_string()),
            ("Linux filesystem", "root".to_string())
        ]
    );
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);

    // Corrupt the primary header's CRC: the backup takes over, with a warning.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[512 + 16] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    let disk = FileReader::open(&img).unwrap();
    let table2 = read_partition_table(&disk).unwrap();
    assert_eq!(table2.partitions, table.partitions);
    assert!(
        table2
            .warnings
            .iter()
            .any(|w| w.contains("primary GPT header unusable")),
        "{:?}",
        table2.warnings
    );

    // Corrupt the backup too: a typed error.
    let n = bytes.len();
    bytes[n - 512 + 16] ^= 0xff;
    std::fs::write(&img, &bytes).unwrap();
    let disk = FileReader::open(&img).unwrap();
    let err = read_partition_table(&disk).unwrap_err();
    assert!(matches!(err, cairn_part::Error::NoValidGpt { .. }), "{err}");
}

#[test]
fn probes_file_systems_made_by_their_tools() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], u64, FsKind)] = &[
        ("mkfs.fat", &["-F", "12"], 4 << 20, FsKind::Fat12),
        ("mkfs.fat", &["-F", "16"], 32 << 20, FsKind::Fat16),
        ("mkfs.fat", &["-F", "32"], 64 << 20, FsKind::Fat32),
        ("mkfs.exfat", &[], 16 << 20, FsKind::ExFat),
        ("mke2fs", &["-q", "-t", "ext2"], 8 << 20, FsKind::Ext2),
        ("mke2fs", &["-q", "-t", "ext3"], 8 << 20, FsKind::Ext3),
        ("mke2fs", &["-q", "-t", "ext4"], 8 << 20, FsKind::Ext4),
        ("mkntfs", &["-F", "-Q", "-q"], 16 << 20, FsKind::Ntfs),
        ("mkswap", &[], 8 << 20, FsKind::Swap),
    ];
    for (i, (tool, args, size, want)) in cases.iter().enumerate() {
        if !have(tool) {
            continue;
        }
        let img = dir.path().join(format!("fs{i}.img"));
        sized_file(&img, *size);
        let mut cmd = Command::new(tool);
        cmd.args(*args)
            .arg(&img)
            .stdout(std::process::Stdio::null());
        run(&mut cmd);
        let vol = FileReader::open(&img).unwrap();
        assert_eq!(cairn_part::probe_filesystem(&vol), *want, "{tool} {args:?}");
        // A bare file system has no partition table.
        assert_eq!(
            read_partition_table(&vol).unwrap().scheme,
            Scheme::None,
            "{tool} {args:?}"
        );
    }
}
