//! OVA end to end: an OVA built by GNU `tar` from an OVF and a streamOptimized VMDK made by
//! `qemu-img` is backed up in place (nothing unpacked), restored with `--vm` as the
//! unpacked OVF folder, and every restored disk must equal `qemu-img convert -O raw` of the
//! source VMDK; damaged archives and escaping hrefs are refused with a clear message.
use std::path::{Path, PathBuf};

mod common;
use cairn_testkit::{qemu_img_convert, qemu_raw, random_bytes, run_command, tempdir_if_have};
use common::s;

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, None)
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

const OVF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="HREF1" ovf:size="SIZE1"/>
    <File ovf:id="file2" ovf:href="HREF2"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="4194304" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="a7a2e4a3-5d2c-4b8e-9e7a-1b2c3d4e5f60"/>
    <Disk ovf:capacity="2097152" ovf:diskId="vmdisk2" ovf:fileRef="file2" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="appliance">
    <Info>A virtual machine</Info>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <Item><rasd:HostResource>/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>7</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:HostResource>/disk/vmdisk2</rasd:HostResource><rasd:InstanceID>8</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.16-linux" uuid="{0b7c9c1e-6f0e-4a8e-8b3a-2d4c6e8f0a1b}" name="appliance"/>
  </VirtualSystem>
</Envelope>
"#;

/// A streamOptimized VMDK of `mib` MiB at `out`, made by qemu-img from noise with a hole.
fn make_vmdk(out: &Path, mib: usize, seed: u64) {
    let raw = out.with_extension("raw");
    let mut data = random_bytes(seed, mib << 20);
    data[(mib << 20) / 4..(mib << 20) / 2].fill(0);
    std::fs::write(&raw, &data).unwrap();
    qemu_img_convert(
        &raw,
        "raw",
        out,
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    std::fs::remove_file(raw).unwrap();
}

/// `dir/appliance.ova` made by GNU tar (`--format` `format`) in the order the OVF spec
/// requires (descriptor, manifest, disks) from `dir/src`; returns the archive and the two
/// source VMDKs.
fn make_ova(dir: &Path, format: &str, href2: &str) -> (PathBuf, PathBuf, PathBuf) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("disks")).unwrap();
    let d1 = src.join("appliance-disk1.vmdk");
    let d2 = src.join("disks/appliance-disk2.vmdk");
    make_vmdk(&d1, 4, 1);
    make_vmdk(&d2, 2, 2);
    let size1 = std::fs::metadata(&d1).unwrap().len().to_string();
    let ovf = OVF
        .replace("HREF1", "appliance-disk1.vmdk")
        .replace("SIZE1", &size1)
        .replace("HREF2", href2);
    std::fs::write(src.join("appliance.ovf"), ovf).unwrap();
    std::fs::write(src.join("appliance.mf"), "SHA256(appliance.ovf)= 00\n").unwrap();
    let ova = dir.join("appliance.ova");
    let mut tar = cairn_testkit::tool_command("tar");
    tar.current_dir(&src).args([
        "cf",
        s(&ova),
        "--format",
        format,
        "appliance.ovf",
        "appliance.mf",
        "appliance-disk1.vmdk",
        "disks/appliance-disk2.vmdk",
    ]);
    run_command(&mut tar);
    (ova, d1, d2)
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn ova_backs_up_in_place_and_restores_as_a_folder() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "tar"]) else {
        return;
    };
    for format in ["ustar", "pax", "gnu"] {
        let d = dir.path().join(format);
        std::fs::create_dir(&d).unwrap();
        let (ova, d1, d2) = make_ova(&d, format, "disks/appliance-disk2.vmdk");
        let repo = d.join("repo");
        ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
        let before = listing(&d);
        let ova_bytes = std::fs::read(&ova).unwrap();
        let b = json(&["backup", "--repo", s(&repo), s(&ova), "--json"]);
        // Nothing was unpacked next to the archive, and the archive is unchanged.
        assert_eq!(listing(&d), before, "{format}");
        assert_eq!(std::fs::read(&ova).unwrap(), ova_bytes);
        assert_eq!(b["vm"]["kind"], "ovf");
        assert_eq!(b["vm"]["name"], "appliance");
        assert_eq!(b["vm"]["uuid"], "0b7c9c1e-6f0e-4a8e-8b3a-2d4c6e8f0a1b");
        assert_eq!(b["vm"]["config_files"][0]["name"], "appliance.ovf");
        assert_eq!(b["vm"]["config_files"][1]["name"], "appliance.mf");
        let disks = b["vm"]["disks"].as_array().unwrap();
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0]["uuid"], "a7a2e4a3-5d2c-4b8e-9e7a-1b2c3d4e5f60");
        assert_eq!(disks[1]["written"], "disks/appliance-disk2.vmdk");
        let canon = std::fs::canonicalize(&ova).unwrap();
        assert_eq!(
            disks[0]["path"],
            s(&canon.join("appliance-disk1.vmdk")),
            "{format}"
        );

        // Restore: the unpacked OVF folder, raw disks equal to qemu-img's reading (every
        // disk is written next to the descriptor, named after the file it was).
        let out = d.join("restored");
        ok(&[
            "restore",
            "--repo",
            s(&repo),
            "latest",
            "--vm",
            "--to",
            s(&out),
        ]);
        assert_eq!(
            std::fs::read(out.join("appliance-disk1.img")).unwrap(),
            qemu_raw(&d1, "vmdk"),
            "{format}"
        );
        assert_eq!(
            std::fs::read(out.join("appliance-disk2.img")).unwrap(),
            qemu_raw(&d2, "vmdk"),
            "{format}"
        );
        let ovf = std::fs::read_to_string(out.join("appliance.ovf")).unwrap();
        assert!(ovf.contains(r#"ovf:href="appliance-disk1.img""#), "{ovf}");
        assert!(ovf.contains(r#"ovf:href="appliance-disk2.img""#), "{ovf}");
        assert!(!out.join("appliance.mf").exists());
        // The restored folder is itself a bundle.
        let again = json(&["backup", "--repo", s(&repo), s(&out), "--json"]);
        assert_eq!(again["vm"]["disks"].as_array().unwrap().len(), 2);

        // A second backup of the same OVA stores nothing new.
        let second = json(&["backup", "--repo", s(&repo), s(&ova), "--json"]);
        assert_eq!(second["bytes_new"], 0, "{format}");
    }
}

#[test]
fn ova_restores_as_stream_optimized_vmdk() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "tar"]) else {
        return;
    };
    let (ova, d1, d2) = make_ova(dir.path(), "ustar", "disks/appliance-disk2.vmdk");
    let repo = dir.path().join("repo");
    ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
    ok(&["backup", "--repo", s(&repo), s(&ova), "--json"]);
    let out = dir.path().join("restored");
    ok(&[
        "restore",
        "--repo",
        s(&repo),
        "latest",
        "--vm",
        "--to",
        s(&out),
        "--format",
        "vmdk",
        "--subformat",
        "streamOptimized",
    ]);
    assert_eq!(
        qemu_raw(&out.join("appliance-disk1.vmdk"), "vmdk"),
        qemu_raw(&d1, "vmdk")
    );
    assert_eq!(
        qemu_raw(&out.join("appliance-disk2.vmdk"), "vmdk"),
        qemu_raw(&d2, "vmdk")
    );
}

#[test]
fn damaged_and_escaping_ovas_are_refused() {
    let Some(dir) = tempdir_if_have(&["qemu-img", "tar"]) else {
        return;
    };
    let repo = dir.path().join("repo");
    ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
    let fail = |ova: &Path| -> String {
        let out = common::cairn_output(&["backup", "--repo", s(&repo), s(ova)], None);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // An href climbing out of the archive.
    let e = dir.path().join("escape");
    std::fs::create_dir(&e).unwrap();
    let (ova, _, _) = make_ova(&e, "ustar", "../appliance-disk2.vmdk");
    let msg = fail(&ova);
    assert!(msg.contains("outside the bundle"), "{msg}");
    // A bit flipped in the second member's header: its checksum fails.
    let bad = dir.path().join("bad.ova");
    let mut bytes = std::fs::read(&ova).unwrap();
    let ovf_len = std::fs::read(e.join("src/appliance.ovf")).unwrap().len();
    let second = 512 + ovf_len.div_ceil(512) * 512;
    bytes[second + 2] ^= 0x20;
    std::fs::write(&bad, &bytes).unwrap();
    let msg = fail(&bad);
    assert!(msg.contains(&format!("offset {second}")), "{msg}");
    assert!(msg.contains("checksum"), "{msg}");
    // Cut in the middle of a disk.
    let cut = dir.path().join("cut.ova");
    let bytes = std::fs::read(&ova).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let msg = fail(&cut);
    assert!(msg.contains("passes the archive's end"), "{msg}");
}
