//! OVA archives: the tar walker against archives GNU `tar` wrote (ustar, GNU long names,
//! pax), hostile archives built by hand (each breaking one thing, with the exact error),
//! and `Bundle::open` of an OVA holding a streamOptimized VMDK made by `qemu-img`, read in
//! place and compared with `qemu-img convert -O raw`.
use std::path::Path;
use std::sync::Arc;

use cairn_bundle::tar::{MemberKind, TarArchive, MAX_MEMBER_NAME, MAX_TAR_MEMBERS};
use cairn_bundle::{Bundle, BundleKind, Error, OpenOptions};
use cairn_io::ReadAt;
use cairn_testkit::{path_str, qemu_img_convert, qemu_raw, run_command, tempdir_if_have};
use proptest::prelude::*;

/// Sets the checksum field of a header as ustar writes it: six octal digits, NUL, space.
fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A ustar header for `name` (≤ 100 bytes) of `size` bytes and type `typeflag`.
fn header(name: &[u8], size: u64, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

/// A header and its data, padded to a block.
fn entry(name: &[u8], data: &[u8], typeflag: u8) -> Vec<u8> {
    let mut v = header(name, data.len() as u64, typeflag).to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// The two zero blocks that end an archive.
fn end(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(&[0u8; 1024]);
    v
}

fn open(bytes: Vec<u8>) -> cairn_bundle::Result<TarArchive> {
    TarArchive::open(Arc::new(bytes), "t.ova")
}

/// The (member, offset, message) of an archive error.
fn archive_err(r: cairn_bundle::Result<TarArchive>) -> (Option<String>, u64, String) {
    match r {
        Err(Error::Archive {
            member,
            offset,
            what,
            ..
        }) => (member, offset, what),
        other => panic!("expected Error::Archive, got {other:?}"),
    }
}

fn two_members() -> Vec<u8> {
    let mut v = entry(b"vm.ovf", b"<Envelope/>", b'0');
    v.extend(entry(b"disk1.vmdk", &[7u8; 1000], b'0'));
    end(v)
}

#[test]
fn hand_made_archive_reads() {
    let t = open(two_members()).unwrap();
    let m = t.members();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].name.as_str(), m[0].offset, m[0].size),
        ("vm.ovf", 512, 11)
    );
    assert_eq!(
        (m[1].name.as_str(), m[1].offset, m[1].size),
        ("disk1.vmdk", 1536, 1000)
    );
    let r = t.member_reader(&m[1]).unwrap();
    assert_eq!(r.size(), 1000);
    let mut buf = vec![0u8; 2000];
    assert_eq!(r.read_at(&mut buf, 0).unwrap(), 1000);
    assert!(buf[..1000].iter().all(|&b| b == 7));
    // An archive without its end blocks (cut after the last member) still reads.
    let mut cut = two_members();
    cut.truncate(cut.len() - 1024);
    assert_eq!(open(cut).unwrap().members().len(), 2);
}

#[test]
fn bad_checksum() {
    let mut v = two_members();
    v[1024 + 3] ^= 1; // a byte of the second header's name
    let (member, offset, what) = archive_err(open(v));
    assert_eq!(offset, 1024);
    assert!(member.is_some());
    assert!(what.contains("checksum"), "{what}");
}

#[test]
fn size_beyond_the_archive() {
    let mut v = entry(b"vm.ovf", b"x", b'0');
    let mut h = header(b"disk1.vmdk", 1 << 32, b'0');
    set_checksum(&mut h);
    v.extend_from_slice(&h);
    let (member, offset, what) = archive_err(open(end(v)));
    assert_eq!(member.as_deref(), Some("disk1.vmdk"));
    assert_eq!(offset, 1024);
    assert!(what.contains("passes the archive's end"), "{what}");
    // Base-256 sizes too, and a negative one is refused.
    let mut h = header(b"big", 0, b'0');
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
    set_checksum(&mut h);
    let (_, _, what) = archive_err(open(end(h.to_vec())));
    assert!(what.contains("passes the archive's end"), "{what}");
    h[124] = 0xff;
    set_checksum(&mut h);
    let (_, _, what) = archive_err(open(end(h.to_vec())));
    assert!(what.contains("negative"), "{what}");
    // A size field that is not octal.
    let mut h = header(b"x", 0, b'0');
    h[124..136].copy_from_slice(b"0000000009x\0");
    set_checksum(&mut h);
    let (_, _, what) = archive_err(open(end(h.to_vec())));
    assert!(what.contains("size field"), "{what}");
}

#[test]
fn truncated_header_and_data() {
    let full = two_members();
    for cut in [100, 511, 1024 + 200, 1024 + 512 + 10] {
        let (_, offset, what) = archive_err(open(full[..cut].to_vec()));
        if cut < 512 || (1024..1536).contains(&cut) {
            assert!(what.contains("truncated header"), "{cut}: {what}");
            assert_eq!(offset, if cut < 512 { 0 } else { 1024 });
        } else {
            assert!(what.contains("passes the archive's end"), "{cut}: {what}");
        }
    }
    // Every cut either reads (a prefix of whole members) or fails with Error::Archive.
    for cut in 0..full.len() {
        match open(full[..cut].to_vec()) {
            Ok(t) => assert!(t.members().len() <= 2),
            Err(Error::Archive { .. }) => {}
            Err(e) => panic!("{cut}: {e}"),
        }
    }
}

#[test]
fn names_leading_outside_are_refused() {
    for name in [
        &b"../evil.vmdk"[..],
        b"a/../../evil",
        b"/etc/passwd",
        b"a\\b",
    ] {
        let (member, offset, what) = archive_err(open(end(entry(name, b"x", b'0'))));
        assert_eq!(offset, 0);
        assert_eq!(member.as_deref(), Some(std::str::from_utf8(name).unwrap()));
        assert!(
            what.contains("outside") || what.contains("absolute"),
            "{what}"
        );
    }
    // Two members of one name.
    let mut v = entry(b"disk.vmdk", b"a", b'0');
    v.extend(entry(b"./disk.vmdk", b"b", b'0'));
    let (_, offset, what) = archive_err(open(end(v)));
    assert_eq!(offset, 1024);
    assert!(what.contains("second member"), "{what}");
}

/// A pax record `"<len> key=value\n"`, `len` counting the whole record.
fn pax_record(key_value: &str) -> String {
    let mut n = key_value.len() + 3;
    while format!("{n} {key_value}\n").len() != n {
        n += 1;
    }
    format!("{n} {key_value}\n")
}

#[test]
fn pax_headers_and_long_names() {
    // A pax header renaming and resizing the next member.
    let long = "d/".repeat(80) + "disk.vmdk";
    let records = pax_record(&format!("path={long}")) + &pax_record("size=5");
    let mut v = entry(b"PaxHeaders/x", records.as_bytes(), b'x');
    v.extend(entry(b"short", b"hello", b'0'));
    let t = open(end(v)).unwrap();
    assert_eq!(t.members().len(), 1);
    assert_eq!(t.members()[0].name, long);
    assert_eq!(t.read_member(&t.members()[0], 100).unwrap(), b"hello");
    // A pax size beyond the archive.
    let mut v = entry(
        b"PaxHeaders/x",
        pax_record("size=99999999").as_bytes(),
        b'x',
    );
    v.extend(entry(b"short", b"hello", b'0'));
    let (member, _, what) = archive_err(open(end(v)));
    assert_eq!(member.as_deref(), Some("short"));
    assert!(what.contains("pax size"), "{what}");
    // A malformed pax record.
    let v = entry(b"PaxHeaders/x", b"99 path=x\n", b'x');
    let (_, _, what) = archive_err(open(end(v)));
    assert!(what.contains("pax header"), "{what}");
    // A GNU long name above the limit.
    let too_long = vec![b'a'; MAX_MEMBER_NAME + 10];
    let v = entry(b"././@LongLink", &too_long, b'L');
    let (_, _, what) = archive_err(open(end(v)));
    assert!(what.contains("limit"), "{what}");
    // An extended header with no member after it.
    let v = entry(b"PaxHeaders/x", pax_record("size=1").as_bytes(), b'x');
    let (_, _, what) = archive_err(open(end(v.clone())));
    assert!(what.contains("extended header"), "{what}");
    let (_, _, what) = archive_err(open(v));
    assert!(what.contains("extended header"), "{what}");
}

#[test]
fn too_many_members() {
    let mut v = Vec::with_capacity((MAX_TAR_MEMBERS + 1) * 512 + 1024);
    for i in 0..=MAX_TAR_MEMBERS {
        let mut h = header(format!("f{i}").as_bytes(), 0, b'0');
        set_checksum(&mut h);
        v.extend_from_slice(&h);
    }
    let (_, offset, what) = archive_err(open(end(v)));
    assert_eq!(offset, (MAX_TAR_MEMBERS as u64) * 512);
    assert!(what.contains("members"), "{what}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Any damage to a valid archive gives members inside the archive or Error::Archive.
    #[test]
    fn damaged_archives_never_panic(pos in 0usize..3072, val: u8, cut in 0usize..4000) {
        let mut v = two_members();
        if pos < v.len() {
            v[pos] = val;
        }
        v.truncate(cut.min(v.len()));
        let size = v.len() as u64;
        match open(v) {
            Ok(t) => {
                for m in t.members() {
                    prop_assert!(m.offset + m.size <= size);
                }
            }
            Err(Error::Archive { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

/// Runs GNU tar in `dir` with `args`.
fn tar(dir: &Path, args: &[&str]) {
    let mut cmd = cairn_testkit::tool_command("tar");
    cmd.current_dir(dir).args(args);
    run_command(&mut cmd);
}

#[test]
fn archives_gnu_tar_wrote() {
    let Some(dir) = tempdir_if_have(&["tar"]) else {
        return;
    };
    let d = dir.path();
    let long = format!("{}/disk.vmdk", "sub".repeat(40));
    std::fs::create_dir_all(d.join(Path::new(&long).parent().unwrap())).unwrap();
    std::fs::write(d.join("vm.ovf"), b"<Envelope/>").unwrap();
    let data = cairn_testkit::random_bytes(5, 70_000);
    std::fs::write(d.join(&long), &data).unwrap();
    for format in ["ustar", "gnu", "pax", "posix", "v7"] {
        let name = format!("{format}.tar");
        let files: &[&str] = if format == "v7" || format == "ustar" {
            // v7 names stop at 100 bytes, ustar at 255 (prefix + name): the short path.
            &["vm.ovf", "sub/x"]
        } else {
            &["vm.ovf", &long]
        };
        if files[1] == "sub/x" {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/x"), &data).unwrap();
        }
        let mut args = vec!["cf", &name, "--format", format];
        args.extend_from_slice(files);
        tar(d, &args);
        let bytes = std::fs::read(d.join(&name)).unwrap();
        let t = open(bytes).unwrap_or_else(|e| panic!("{format}: {e}"));
        let m = t
            .find(files[1])
            .unwrap_or_else(|| panic!("{format}: {:?}", t.members()));
        assert_eq!(m.kind, MemberKind::File);
        assert_eq!(t.read_member(m, 1 << 20).unwrap(), data, "{format}");
        assert_eq!(t.members()[0].name, "vm.ovf", "{format}");
    }
}

const OVF: &str = r#"<?xml version="1.0"?>
<Envelope ovf:version="1.0" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="HREF"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:capacity="4194304" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="appliance">
    <Info>A virtual machine</Info>
    <vbox:Machine ovf:required="false" uuid="{0b7c9c1e-6f0e-4a8e-8b3a-2d4c6e8f0a1b}" name="appliance"/>
  </VirtualSystem>
</Envelope>
"#;

/// `dir/vm.ova` holding `vm.ovf` (disk `href`), `vm.mf` and a 4 MiB streamOptimized
/// `disk1.vmdk` made by qemu-img; returns the archive and the VMDK.
fn make_ova(dir: &Path, href: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let raw = src.join("disk.raw");
    let mut data = cairn_testkit::random_bytes(9, 4 << 20);
    data[1 << 20..3 << 20].fill(0);
    std::fs::write(&raw, &data).unwrap();
    let vmdk = src.join("disk1.vmdk");
    qemu_img_convert(
        &raw,
        "raw",
        &vmdk,
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    std::fs::remove_file(&raw).unwrap();
    std::fs::write(src.join("vm.ovf"), OVF.replace("HREF", href)).unwrap();
    std::fs::write(src.join("vm.mf"), "SHA256(vm.ovf)= 00\n").unwrap();
    let ova = dir.join("vm.ova");
    // The OVF spec's order: descriptor, manifest, then the disks.
    tar(
        &src,
        &[
            "cf",
            path_str(&ova),
            "--format",
            "ustar",
            "vm.ovf",
            "vm.mf",
            "disk1.vmdk",
        ],
    );
    (ova, vmdk)
}

#[test]
fn ova_opens_in_place() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "tar"]) else {
        return;
    };
    let (ova, vmdk) = make_ova(dir.path(), "disk1.vmdk");
    let b = Bundle::open(&ova, &OpenOptions::default()).unwrap();
    assert_eq!(b.kind, BundleKind::Ovf);
    assert_eq!(b.vm_name, "appliance");
    assert_eq!(
        b.archive.as_deref(),
        Some(std::fs::canonicalize(&ova).unwrap().as_path())
    );
    let names: Vec<&str> = b.config_files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["vm.ovf", "vm.mf"]);
    assert!(b
        .read_config_file(&b.config_files[0])
        .unwrap()
        .starts_with(b"<?xml"));
    assert_eq!(b.disks.len(), 1);
    let disk = b
        .open_disk(&b.disks[0], &cairn_vdisk::OpenOptions::default())
        .unwrap();
    assert_eq!(disk.subformat(), "streamOptimized");
    let got = cairn_testkit::read_all(&disk, 1 << 20);
    assert_eq!(got, qemu_raw(&vmdk, "vmdk"));
}

#[test]
fn ova_hrefs_cannot_escape() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "tar"]) else {
        return;
    };
    for href in [
        "../disk1.vmdk",
        "/disk1.vmdk",
        "http://example.com/disk1.vmdk",
    ] {
        let d = dir.path().join(format!("e{}", href.len()));
        std::fs::create_dir_all(&d).unwrap();
        let (ova, _) = make_ova(&d, href);
        match Bundle::open(&ova, &OpenOptions::default()) {
            Err(Error::Escape { path, .. }) => assert_eq!(path, href),
            other => panic!("{href}: {other:?}"),
        }
    }
    let d = dir.path().join("missing");
    std::fs::create_dir_all(&d).unwrap();
    let (ova, _) = make_ova(&d, "disk2.vmdk");
    assert!(matches!(
        Bundle::open(&ova, &OpenOptions::default()),
        Err(Error::DiskMissing { .. })
    ));
}

#[test]
fn hand_made_ovas() {
    let dir = tempfile::tempdir().unwrap();
    let ovf = OVF.replace("HREF", "disk1.vmdk");
    let write = |name: &str, members: &[(&str, &[u8])]| {
        let mut v = Vec::new();
        for (n, data) in members {
            v.extend(entry(n.as_bytes(), data, b'0'));
        }
        let p = dir.path().join(name);
        std::fs::write(&p, end(v)).unwrap();
        p
    };
    let opts = OpenOptions::default();
    // A gzip-compressed disk member (ovf:compression="gzip") is refused by name.
    let gz = write(
        "gz.ova",
        &[
            ("vm.ovf", ovf.as_bytes()),
            ("disk1.vmdk", &[0x1f, 0x8b, 8, 0, 0, 0]),
        ],
    );
    match Bundle::open(&gz, &opts) {
        Err(Error::Unsupported(m)) => assert!(m.contains("gzip"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Two descriptors, or none.
    let two = write(
        "two.ova",
        &[("a.ovf", ovf.as_bytes()), ("b.ovf", ovf.as_bytes())],
    );
    match Bundle::open(&two, &opts) {
        Err(Error::NotABundle { why, .. }) => assert!(why.contains("several"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A disk that is a directory member.
    let mut v = entry(b"vm.ovf", ovf.as_bytes(), b'0');
    v.extend(entry(b"disk1.vmdk", b"", b'5'));
    let p = dir.path().join("dir.ova");
    std::fs::write(&p, end(v)).unwrap();
    assert!(matches!(
        Bundle::open(&p, &opts),
        Err(Error::Invalid { .. })
    ));
    // A running VM cannot be read out of an archive.
    let Some(qdir) = tempdir_if_have(&["qemu-img", "tar"]) else {
        return;
    };
    let (ova, _) = make_ova(qdir.path(), "disk1.vmdk");
    let active = OpenOptions {
        state: Some(cairn_bundle::PowerState::Active),
        ..Default::default()
    };
    assert!(matches!(
        Bundle::open(&ova, &active),
        Err(Error::NoFrozenPoint { .. })
    ));
}
