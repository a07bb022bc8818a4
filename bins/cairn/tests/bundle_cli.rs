//! VM bundles end to end: VMware, libvirt, OVF and Hyper-V folders with disks made by
//! qemu-img are backed up and restored with `--vm`; every restored disk must equal
//! `qemu-img convert -O raw` of its source, and the rewritten configuration must read back
//! (through `cairn backup`) pointing at the restored disks.
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use cairn_testkit::{qemu_img_convert, qemu_img_overlay, qemu_io, qemu_raw};
use common::{have, s};

fn cairn(args: &[&str]) -> Output {
    common::cairn_output(args, None)
}

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, None)
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// A 4 MiB raw disk with data in a few places (and holes elsewhere), converted by qemu-img
/// to `fmt` at `out`.
fn make_disk(dir: &Path, out: &Path, fmt: &str, opts: &[&str], seed: u8) {
    let raw = dir.join(format!("src-{seed}.raw"));
    let mut data = vec![0u8; 4 << 20];
    for (i, b) in data[..300 << 10].iter_mut().enumerate() {
        *b = (i.to_le_bytes()[0]).wrapping_mul(31).wrapping_add(seed);
    }
    for b in &mut data[(2 << 20) + 4096..(2 << 20) + 70_000] {
        *b = seed ^ 0x5a;
    }
    std::fs::write(&raw, &data).unwrap();
    qemu_img_convert(&raw, "raw", out, fmt, opts);
    std::fs::remove_file(raw).unwrap();
}

fn init_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
    repo
}

fn backup(repo: &Path, path: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["backup", "--repo", s(repo), s(path), "--json"];
    args.extend_from_slice(extra);
    json(&args)
}

/// `cairn restore --repo REPO latest --vm --to OUT extra...`: the arguments.
fn restore_vm_args<'a>(repo: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "restore",
        "--repo",
        s(repo),
        "latest",
        "--vm",
        "--to",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

/// Restores the latest restore point as a VM folder at `out`, which must succeed.
fn restore_vm(repo: &Path, out: &Path, extra: &[&str]) {
    ok(&restore_vm_args(repo, out, extra));
}

/// A Hyper-V folder `dir/name` with its `Virtual Hard Disks` and `Virtual Machines`
/// folders, and a VHDX disk `Virtual Hard Disks/<name>.vhdx` (see [`make_disk`]); returns
/// the folder and the disk.
fn hyperv_folder(dir: &Path, name: &str, seed: u8) -> (PathBuf, PathBuf) {
    let vm = dir.join(name);
    std::fs::create_dir_all(vm.join("Virtual Hard Disks")).unwrap();
    std::fs::create_dir_all(vm.join("Virtual Machines")).unwrap();
    let disk = vm.join("Virtual Hard Disks").join(format!("{name}.vhdx"));
    make_disk(dir, &disk, "vhdx", &[], seed);
    (vm, disk)
}

const VMX: &str = r#".encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
pciBridge0.present = "TRUE"
vmci0.present = "TRUE"
hpet0.present = "TRUE"
nvram = "Ubuntu 64-bit.nvram"
virtualHW.productCompatibility = "hosted"
powerType.powerOff = "soft"
displayName = "Ubuntu 64-bit"
guestOS = "ubuntu-64"
memsize = "2048"
numvcpus = "2"
scsi0.virtualDev = "lsilogic"
scsi0.present = "TRUE"
scsi0:0.fileName = "Ubuntu 64-bit.vmdk"
scsi0:0.present = "TRUE"
sata0.present = "TRUE"
sata0:1.deviceType = "cdrom-image"
sata0:1.fileName = "/home/user/ubuntu-22.04-desktop-amd64.iso"
sata0:1.present = "TRUE"
ethernet0.connectionType = "nat"
ethernet0.addressType = "generated"
ethernet0.virtualDev = "e1000"
ethernet0.present = "TRUE"
extendedConfigFile = "Ubuntu 64-bit.vmxf"
uuid.bios = "56 4d 9b 3f 5e 1c 2a 7d-8e 41 0a 6b 3c 2d 1e 0f"
uuid.location = "56 4d 9b 3f 5e 1c 2a 7d-8e 41 0a 6b 3c 2d 1e 0f"
cleanShutdown = "TRUE"
"#;

const VMXF: &str = r#"<?xml version="1.0"?>
<Foundry>
<VM>
<VMId type="string">52 1c 2d 8a 4b 7e 9f 10-21 32 43 54 65 76 87 98</VMId>
<ClientMetaData>
<clientMetaDataAttributes/>
<HistoryEventList/></ClientMetaData>
<vmxPathName type="string">Ubuntu 64-bit.vmx</vmxPathName></VM></Foundry>
"#;

fn vmware_folder(dir: &Path, name: &str) -> PathBuf {
    let vm = dir.join(name);
    std::fs::create_dir_all(&vm).unwrap();
    make_disk(
        dir,
        &vm.join("Ubuntu 64-bit.vmdk"),
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
        1,
    );
    std::fs::write(vm.join("Ubuntu 64-bit.vmx"), VMX).unwrap();
    std::fs::write(vm.join("Ubuntu 64-bit.vmxf"), VMXF).unwrap();
    let nvram: Vec<u8> = (0..8684u32)
        .map(|i| (i * 7 % 251).to_le_bytes()[0])
        .collect();
    std::fs::write(vm.join("Ubuntu 64-bit.nvram"), nvram).unwrap();
    std::fs::write(vm.join("Ubuntu 64-bit.vmsd"), "").unwrap();
    std::fs::write(vm.join("vmware.log"), "log\n").unwrap();
    vm
}

#[test]
fn vmware_bundle_round_trip() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let vm = vmware_folder(dir.path(), "Ubuntu 64-bit");
    let b = backup(&repo, &vm, &[]);
    assert_eq!(b["vm"]["kind"], "vmware");
    assert_eq!(b["vm"]["name"], "Ubuntu 64-bit");
    assert_eq!(b["vm"]["power_state"], "cold");
    assert_eq!(b["vm"]["uuid"], "564d9b3f-5e1c-2a7d-8e41-0a6b3c2d1e0f");
    assert_eq!(b["vm"]["disks"][0]["config_ref"], "scsi0:0");
    let files: Vec<&str> = b["vm"]["config_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "Ubuntu 64-bit.vmx",
            "Ubuntu 64-bit.vmxf",
            "Ubuntu 64-bit.nvram",
            "Ubuntu 64-bit.vmsd"
        ]
    );
    let snaps = json(&["snapshots", "--repo", s(&repo), "--json"]);
    assert_eq!(
        snaps[0]["vm"]["uuid"],
        "564d9b3f-5e1c-2a7d-8e41-0a6b3c2d1e0f"
    );
    let text = ok(&["snapshots", "--repo", s(&repo)]);
    assert!(text.contains("[vmware cold uuid 564d9b3f"), "{text}");

    let out = dir.path().join("restored");
    restore_vm(&repo, &out, &["--format", "vmdk"]);
    let restored = out.join("Ubuntu 64-bit.vmdk");
    assert_eq!(
        qemu_raw(&restored, "vmdk"),
        qemu_raw(&vm.join("Ubuntu 64-bit.vmdk"), "vmdk")
    );
    // Config files come back byte for byte, except the one rewritten line; the snapshot
    // database is left out (the disks are flattened).
    for f in ["Ubuntu 64-bit.vmxf", "Ubuntu 64-bit.nvram"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(vm.join(f)).unwrap()
        );
    }
    assert!(!out.join("Ubuntu 64-bit.vmsd").exists());
    let vmx = std::fs::read_to_string(out.join("Ubuntu 64-bit.vmx")).unwrap();
    assert_eq!(vmx, VMX);
    // Now as raw: the file name changes and the .vmx follows.
    let out2 = dir.path().join("restored-raw");
    restore_vm(&repo, &out2, &[]);
    let vmx = std::fs::read_to_string(out2.join("Ubuntu 64-bit.vmx")).unwrap();
    assert!(
        vmx.contains("scsi0:0.fileName = \"Ubuntu 64-bit.img\"\n"),
        "{vmx}"
    );
    assert_eq!(
        std::fs::read(out2.join("Ubuntu 64-bit.img")).unwrap(),
        qemu_raw(&vm.join("Ubuntu 64-bit.vmdk"), "vmdk")
    );
    // The restored folder is a bundle again, pointing at the restored disk.
    let again = backup(&repo, &out2, &[]);
    assert_eq!(
        again["vm"]["disks"][0]["path"],
        s(&std::fs::canonicalize(out2.join("Ubuntu 64-bit.img")).unwrap())
    );
    // Restoring over existing files is refused.
    let e = cairn(&restore_vm_args(&repo, &out2, &[]));
    assert!(!e.status.success());
}

#[test]
fn moved_vm_with_a_new_delta_is_incremental() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let vm = vmware_folder(dir.path(), "vm-a");
    let first = backup(&repo, &vm, &[]);
    assert!(first["incremental_from"].is_null());
    // Moved to another folder, renamed, and a snapshot taken: the live disk is a delta.
    let moved = dir.path().join("elsewhere").join("vm-b");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&vm, &moved).unwrap();
    let delta = moved.join("Ubuntu 64-bit-000001.vmdk");
    qemu_img_overlay(&delta, "vmdk", "Ubuntu 64-bit.vmdk", "vmdk");
    qemu_io(&delta, "vmdk", &["write -P 0xab 1M 64k"]);
    let vmx = VMX
        .replace("Ubuntu 64-bit.vmdk", "Ubuntu 64-bit-000001.vmdk")
        .replace(
            "displayName = \"Ubuntu 64-bit\"",
            "displayName = \"renamed\"",
        );
    std::fs::write(moved.join("Ubuntu 64-bit.vmx"), vmx).unwrap();
    let second = backup(&repo, &moved, &[]);
    assert_eq!(second["incremental_from"], first["restore_point"]);
    assert!(second["chunks_reused"].as_u64().unwrap() > 0);
    // Only the changed range (one chunk's worth) is read.
    let read = second["bytes_read"].as_u64().unwrap();
    assert!(read > 0 && read <= 1 << 20, "read {read}");
    assert_eq!(second["vm"]["name"], "renamed");
    let out = dir.path().join("restored");
    let id = second["restore_point"].as_str().unwrap();
    ok(&["restore", "--repo", s(&repo), id, "--vm", "--to", s(&out)]);
    assert_eq!(
        std::fs::read(out.join("Ubuntu 64-bit-000001.img")).unwrap(),
        qemu_raw(&moved.join("Ubuntu 64-bit-000001.vmdk"), "vmdk")
    );
}

#[test]
fn running_vmware_vm_is_read_at_its_frozen_point() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let vm = vmware_folder(dir.path(), "vm");
    std::fs::create_dir(vm.join("Ubuntu 64-bit.vmx.lck")).unwrap();
    // Running without a snapshot: nothing frozen to read.
    let out = cairn(&["backup", "--repo", s(&repo), s(&vm)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no snapshot delta"), "{err}");
    // With a snapshot (the live delta takes the writes), the base is the frozen point.
    let delta = vm.join("Ubuntu 64-bit-000001.vmdk");
    qemu_img_overlay(&delta, "vmdk", "Ubuntu 64-bit.vmdk", "vmdk");
    qemu_io(&delta, "vmdk", &["write -P 0xcd 0 64k"]);
    std::fs::write(
        vm.join("Ubuntu 64-bit.vmx"),
        VMX.replace("Ubuntu 64-bit.vmdk", "Ubuntu 64-bit-000001.vmdk"),
    )
    .unwrap();
    let b = backup(&repo, &vm, &[]);
    assert_eq!(b["vm"]["power_state"], "active");
    assert_eq!(b["vm"]["disks"][0]["capture_depth"], 1);
    assert!(b["vm"]["disks"][0]["captured"]
        .as_str()
        .unwrap()
        .ends_with("/Ubuntu 64-bit.vmdk"));
    let out = dir.path().join("restored");
    restore_vm(&repo, &out, &[]);
    assert_eq!(
        std::fs::read(out.join("Ubuntu 64-bit-000001.img")).unwrap(),
        qemu_raw(&vm.join("Ubuntu 64-bit.vmdk"), "vmdk")
    );
}

#[test]
fn libvirt_domain_round_trip() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let vm = dir.path().join("web01");
    std::fs::create_dir(&vm).unwrap();
    let disk = vm.join("web01.qcow2");
    make_disk(dir.path(), &disk, "qcow2", &[], 2);
    let xml = format!(
        r#"<domain type='kvm' id='7'>
  <name>web01</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='{}' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
      <alias name='sata0-0-0'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
"#,
        s(&disk)
    );
    std::fs::write(vm.join("web01.xml"), &xml).unwrap();
    let b = backup(&repo, &vm.join("web01.xml"), &["--state", "cold"]);
    assert_eq!(b["vm"]["kind"], "libvirt");
    assert_eq!(b["vm"]["uuid"], "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
    assert_eq!(b["vm"]["disks"].as_array().unwrap().len(), 1);
    assert!(b["vm"]["notes"].to_string().contains("cdrom"));
    let out = dir.path().join("restored");
    restore_vm(&repo, &out, &[]);
    let restored = std::fs::canonicalize(out.join("web01.img")).unwrap();
    assert_eq!(std::fs::read(&restored).unwrap(), qemu_raw(&disk, "qcow2"));
    let new_xml = std::fs::read_to_string(out.join("web01.xml")).unwrap();
    assert!(new_xml.contains(&format!("<source file='{}' index='2'/>", s(&restored))));
    assert!(new_xml.contains("<driver name='qemu' type='raw' discard='unmap'/>"));
    let again = backup(&repo, &out, &[]);
    assert_eq!(again["vm"]["disks"][0]["path"], s(&restored));
    // A disk outside the bundle folder is refused unless allowed.
    let outside = dir.path().join("outside.qcow2");
    std::fs::rename(&disk, &outside).unwrap();
    std::fs::write(vm.join("web01.xml"), xml.replace(s(&disk), s(&outside))).unwrap();
    let e = cairn(&["backup", "--repo", s(&repo), s(&vm)]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("outside the bundle folder"));
    backup(&repo, &vm, &["--allow-outside"]);
}

#[test]
fn ovf_export_round_trip() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let vm = dir.path().join("export");
    std::fs::create_dir(&vm).unwrap();
    let disk = vm.join("appliance-disk001.vmdk");
    make_disk(
        dir.path(),
        &disk,
        "vmdk",
        &["-o", "subformat=streamOptimized"],
        3,
    );
    let size = std::fs::metadata(&disk).unwrap().len();
    let ovf = format!(
        r#"<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="appliance-disk001.vmdk" ovf:size="{size}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="4194304" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="a7a2e4a3-5d2c-4b8e-9e7a-1b2c3d4e5f60"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="NAT"><Description>Logical network used by this appliance.</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="appliance">
    <Info>A virtual machine</Info>
    <OperatingSystemSection ovf:id="96"><Info>The kind of installed guest operating system</Info><Description>Debian_64</Description></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <Item><rasd:Caption>disk1</rasd:Caption><rasd:HostResource>/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>7</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
    <vbox:Machine ovf:required="false" version="1.16-linux" uuid="{{0b7c9c1e-6f0e-4a8e-8b3a-2d4c6e8f0a1b}}" name="appliance"/>
  </VirtualSystem>
</Envelope>
"#
    );
    std::fs::write(vm.join("appliance.ovf"), &ovf).unwrap();
    std::fs::write(
        vm.join("appliance.mf"),
        "SHA256 (appliance.ovf) = 00\nSHA256 (appliance-disk001.vmdk) = 00\n",
    )
    .unwrap();
    let b = backup(&repo, &vm, &[]);
    assert_eq!(b["vm"]["kind"], "ovf");
    assert_eq!(b["vm"]["name"], "appliance");
    assert_eq!(b["vm"]["uuid"], "0b7c9c1e-6f0e-4a8e-8b3a-2d4c6e8f0a1b");
    assert_eq!(
        b["vm"]["disks"][0]["uuid"],
        "a7a2e4a3-5d2c-4b8e-9e7a-1b2c3d4e5f60"
    );
    assert_eq!(b["vm"]["config_files"][1]["name"], "appliance.mf");
    let out = dir.path().join("restored");
    restore_vm(
        &repo,
        &out,
        &["--format", "vmdk", "--subformat", "streamOptimized"],
    );
    let restored = out.join("appliance-disk001.vmdk");
    assert_eq!(qemu_raw(&restored, "vmdk"), qemu_raw(&disk, "vmdk"));
    assert!(!out.join("appliance.mf").exists());
    let new_ovf = std::fs::read_to_string(out.join("appliance.ovf")).unwrap();
    assert!(new_ovf.contains(r#"<File ovf:id="file1" ovf:href="appliance-disk001.vmdk"/>"#));
    let again = backup(&repo, &out, &[]);
    assert_eq!(
        again["vm"]["disks"][0]["path"],
        s(&std::fs::canonicalize(&restored).unwrap())
    );
}

fn utf16(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

#[test]
fn hyperv_2012_round_trip() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let (vm, disk) = hyperv_folder(dir.path(), "SQL01", 4);
    let guid = "5A0D9B0E-3C1F-4E2A-9B8C-7D6E5F4A3B2C";
    let xml = r#"<?xml version="1.0" encoding="UTF-16" standalone="yes"?>
<configuration>
  <properties>
    <creation_time type="bytes">AAAAAAAAAAA=</creation_time>
    <global_id type="string">5A0D9B0E-3C1F-4E2A-9B8C-7D6E5F4A3B2C</global_id>
    <name type="string">SQL01</name>
    <type_id type="string">Virtual Machines</type_id>
    <version type="integer">1280</version>
  </properties>
  <_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_>
    <controller0>
      <drive0>
        <pathname type="string">D:\Hyper-V\SQL01\Virtual Hard Disks\SQL01.vhdx</pathname>
        <type type="string">VHD</type>
      </drive0>
    </controller0>
    <controller1>
      <drive0>
        <pathname type="string">C:\iso\en_windows_server_2012_r2.iso</pathname>
        <type type="string">ISO</type>
      </drive0>
    </controller1>
  </_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_>
</configuration>
"#;
    let cfg = vm.join("Virtual Machines").join(format!("{guid}.xml"));
    std::fs::write(&cfg, utf16(xml)).unwrap();
    let b = backup(&repo, &vm, &[]);
    assert_eq!(b["vm"]["kind"], "hyperv");
    assert_eq!(b["vm"]["name"], "SQL01");
    assert_eq!(b["vm"]["uuid"], guid.to_ascii_lowercase());
    assert_eq!(b["vm"]["disks"][0]["config_ref"], "ide/controller0/drive0");
    assert_eq!(
        b["vm"]["config_files"][0]["name"],
        format!("Virtual Machines/{guid}.xml")
    );
    let out = dir.path().join("restored");
    restore_vm(&repo, &out, &["--format", "vhd"]);
    let restored = out.join("Virtual Machines").join("SQL01.vhd");
    assert_eq!(qemu_raw(&restored, "vpc"), qemu_raw(&disk, "vhdx"));
    let new_cfg = std::fs::read(out.join("Virtual Machines").join(format!("{guid}.xml"))).unwrap();
    assert_eq!(&new_cfg[..2], b"\xff\xfe", "stays UTF-16");
    let again = backup(&repo, &out, &[]);
    assert_eq!(
        again["vm"]["disks"][0]["path"],
        s(&std::fs::canonicalize(&restored).unwrap())
    );
}

#[test]
fn hyperv_vmcx_is_opaque_and_disks_come_from_a_folder_scan() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let (vm, base) = hyperv_folder(dir.path(), "DC01", 5);
    let guid = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0";
    let vmcx: Vec<u8> = (0..40_000u32).map(|i| (i * 13).to_le_bytes()[0]).collect();
    std::fs::write(
        vm.join("Virtual Machines").join(format!("{guid}.vmcx")),
        &vmcx,
    )
    .unwrap();
    let b = backup(&repo, &vm, &[]);
    assert_eq!(b["vm"]["kind"], "hyperv-vmcx");
    assert_eq!(b["vm"]["folder_scan"], true);
    assert_eq!(b["vm"]["uuid"], guid.to_ascii_lowercase());
    assert_eq!(
        b["vm"]["disks"][0]["config_ref"],
        "scan:Virtual Hard Disks/DC01.vhdx"
    );
    let out = dir.path().join("restored");
    restore_vm(&repo, &out, &["--format", "vhd"]);
    assert_eq!(
        std::fs::read(out.join("Virtual Machines").join(format!("{guid}.vmcx"))).unwrap(),
        vmcx
    );
    assert_eq!(
        qemu_raw(&out.join("Virtual Hard Disks").join("DC01.vhd"), "vpc"),
        qemu_raw(&base, "vhdx")
    );
}

#[test]
fn plain_images_still_back_up_and_image_restore_points_refuse_vm_restore() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let img = dir.path().join("d.vmdk");
    make_disk(dir.path(), &img, "vmdk", &[], 6);
    let b = backup(&repo, &img, &[]);
    assert!(b.get("vm").is_none() || b["vm"].is_null());
    let e = cairn(&restore_vm_args(&repo, &dir.path().join("o"), &[]));
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("not a VM bundle"));
    let e = cairn(&["backup", "--repo", s(&repo), s(&img), "--state", "active"]);
    assert!(!e.status.success());
}

#[test]
fn config_blobs_survive_prune_and_verify() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let vm = vmware_folder(dir.path(), "vm");
    let first = backup(&repo, &vm, &["--time", "2026-01-01T00:00:00Z"]);
    // A second restore point with another nvram, then the first one is forgotten: prune
    // must keep the second one's configuration blobs and drop nothing it needs.
    std::fs::write(vm.join("Ubuntu 64-bit.nvram"), b"changed nvram").unwrap();
    let second = backup(&repo, &vm, &["--time", "2026-01-02T00:00:00Z"]);
    ok(&["forget", "--repo", s(&repo), "--keep-last", "1"]);
    ok(&["prune", "--repo", s(&repo)]);
    ok(&["verify", "--repo", s(&repo), "--read-data"]);
    let snaps = json(&["snapshots", "--repo", s(&repo), "--json"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["id"], second["restore_point"]);
    assert_ne!(first["restore_point"], second["restore_point"]);
    let out = dir.path().join("restored");
    restore_vm(&repo, &out, &[]);
    assert_eq!(
        std::fs::read(out.join("Ubuntu 64-bit.nvram")).unwrap(),
        b"changed nvram"
    );
}
