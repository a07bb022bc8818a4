//! `Bundle::open` on generated folders: detection, path rules, power states and the typed
//! error of each broken input. Disks here are raw files (read by magic), so no external
//! tool is needed; bins/cairn/tests/bundle_cli.rs covers qemu-img-made images.
use std::path::Path;

use cairn_bundle::{Bundle, BundleKind, Error, OpenOptions, PowerState};

fn vmx(dir: &Path, disk_line: &str) {
    std::fs::write(
        dir.join("vm.vmx"),
        format!(
            ".encoding = \"UTF-8\"\ndisplayName = \"t\"\nuuid.bios = \"56 4d 00 11 22 33 44 55-66 77 88 99 aa bb cc dd\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"{disk_line}\"\n"
        ),
    )
    .unwrap();
}

fn raw(path: &Path) {
    std::fs::write(path, vec![0u8; 64 << 10]).unwrap();
}

#[test]
fn vmware_folder_and_file_open_alike() {
    let d = tempfile::tempdir().unwrap();
    raw(&d.path().join("disk.img"));
    vmx(d.path(), "disk.img");
    std::fs::write(d.path().join("vm.nvram"), b"nv").unwrap();
    std::fs::write(d.path().join("vm.vmsd"), b"snapshot.current = \"1\"\nsnapshot0.uid = \"1\"\nsnapshot0.disk0.node = \"scsi0:0\"\nsnapshot0.disk0.fileName = \"disk.img\"\n").unwrap();
    let a = Bundle::open(d.path(), &OpenOptions::default()).unwrap();
    let b = Bundle::open(d.path().join("vm.vmx"), &OpenOptions::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.kind, BundleKind::Vmware);
    assert_eq!(a.vm_uuid.unwrap()[..3], [0x56, 0x4d, 0x00]);
    let names: Vec<&str> = a.config_files.iter().map(|f| f.name.as_str()).collect();
    // nvram is named only by the vmx's `nvram` key: absent here, so not stored.
    assert_eq!(names, ["vm.vmx", "vm.vmsd"]);
    assert_eq!(a.snapshots.as_ref().unwrap().snapshots.len(), 1);
    assert_eq!(a.power_state, PowerState::Cold);
}

#[test]
fn paths_may_not_escape_the_bundle() {
    let d = tempfile::tempdir().unwrap();
    let vm = d.path().join("vm");
    std::fs::create_dir(&vm).unwrap();
    raw(&d.path().join("outside.img"));
    vmx(&vm, "../outside.img");
    let e = Bundle::open(&vm, &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Escape { .. }), "{e}");
    // Relative escapes stay refused even when outside paths are allowed.
    let allow = OpenOptions {
        allow_outside: true,
        ..Default::default()
    };
    assert!(matches!(
        Bundle::open(&vm, &allow),
        Err(Error::Escape { .. })
    ));
    let abs = d.path().join("outside.img");
    vmx(&vm, abs.to_str().unwrap());
    assert!(matches!(
        Bundle::open(&vm, &OpenOptions::default()),
        Err(Error::Escape { .. })
    ));
    let b = Bundle::open(&vm, &allow).unwrap();
    assert_eq!(b.disks[0].path, std::fs::canonicalize(&abs).unwrap());
    // A symbolic link inside the folder that leads out is an escape too.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&abs, vm.join("link.img")).unwrap();
        vmx(&vm, "link.img");
        assert!(matches!(
            Bundle::open(&vm, &OpenOptions::default()),
            Err(Error::Escape { .. })
        ));
    }
    vmx(&vm, "missing.img");
    assert!(matches!(
        Bundle::open(&vm, &OpenOptions::default()),
        Err(Error::DiskMissing { .. })
    ));
}

#[test]
fn detection_errors() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        Bundle::open(d.path(), &OpenOptions::default()),
        Err(Error::NotABundle { .. })
    ));
    raw(&d.path().join("disk.img"));
    assert!(matches!(
        Bundle::open(d.path().join("disk.img"), &OpenOptions::default()),
        Err(Error::NotABundle { .. })
    ));
    std::fs::write(d.path().join("x.ova"), vec![0u8; 1024]).unwrap();
    let e = Bundle::open(d.path().join("x.ova"), &OpenOptions::default()).unwrap_err();
    // An OVA is read in place; an empty archive holds no descriptor.
    assert!(e.to_string().contains("no .ovf descriptor"), "{e}");
    std::fs::write(d.path().join("x.ova"), vec![1u8; 1024]).unwrap();
    let e = Bundle::open(d.path().join("x.ova"), &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Archive { offset: 0, .. }), "{e}");
    vmx(d.path(), "disk.img");
    std::fs::write(d.path().join("other.vmx"), "displayName = \"x\"\n").unwrap();
    let e = Bundle::open(d.path(), &OpenOptions::default()).unwrap_err();
    assert!(e.to_string().contains("several configurations"), "{e}");
    // A truncated .vmx: the error names the line.
    std::fs::write(d.path().join("other.vmx"), "displayName = \"x").unwrap();
    let e = Bundle::open(d.path().join("other.vmx"), &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Syntax { line: 1, .. }), "{e}");
}

#[test]
fn power_states() {
    let d = tempfile::tempdir().unwrap();
    raw(&d.path().join("disk.img"));
    vmx(d.path(), "disk.img");
    std::fs::write(d.path().join("vm.vmss"), b"state").unwrap();
    let b = Bundle::open(d.path(), &OpenOptions::default()).unwrap();
    assert_eq!(b.power_state, PowerState::Warm);
    assert_eq!(b.disks[0].capture, b.disks[0].path);
    std::fs::create_dir(d.path().join("disk.img.lck")).unwrap();
    // Running, and the disk is not a delta: no frozen point.
    let e = Bundle::open(d.path(), &OpenOptions::default()).unwrap_err();
    assert!(matches!(e, Error::NoFrozenPoint { .. }), "{e}");
    let cold = OpenOptions {
        state: Some(PowerState::Cold),
        ..Default::default()
    };
    assert_eq!(
        Bundle::open(d.path(), &cold).unwrap().power_state,
        PowerState::Cold
    );
}

#[test]
fn libvirt_ovf_and_hyperv_mutations_give_typed_errors() {
    let d = tempfile::tempdir().unwrap();
    raw(&d.path().join("a.img"));
    let ok = "<domain><name>n</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid><devices><disk type='file' device='disk'><source file='a.img'/><target dev='vda'/></disk></devices></domain>";
    std::fs::write(d.path().join("d.xml"), ok).unwrap();
    let b = Bundle::open(d.path(), &OpenOptions::default()).unwrap();
    assert_eq!(b.kind, BundleKind::Libvirt);
    assert_eq!(b.disks[0].written, "a.img");
    for (bad, what) in [
        (ok.replace("<target dev='vda'/>", ""), "no target"),
        (ok.replace("4dea22b3-", "zz"), "bad uuid"),
        (
            ok.replace("</disk>", "</disk><disk type='file' device='disk'><source file='a.img'/><target dev='vda'/></disk>"),
            "target twice",
        ),
    ] {
        std::fs::write(d.path().join("d.xml"), &bad).unwrap();
        let e = Bundle::open(d.path().join("d.xml"), &OpenOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{what}: {e}");
    }
    std::fs::remove_file(d.path().join("d.xml")).unwrap();
    let ovf = "<Envelope><References><File id='f1' href='a.img'/></References><DiskSection><Disk diskId='d1' fileRef='f1' capacity='65536'/></DiskSection><VirtualSystem id='vs'><Name>app</Name></VirtualSystem></Envelope>";
    std::fs::write(d.path().join("x.ovf"), ovf).unwrap();
    let b = Bundle::open(d.path(), &OpenOptions::default()).unwrap();
    assert_eq!((b.kind, b.vm_name.as_str()), (BundleKind::Ovf, "app"));
    std::fs::write(
        d.path().join("x.ovf"),
        ovf.replace("fileRef='f1'", "fileRef='f9'"),
    )
    .unwrap();
    assert!(matches!(
        Bundle::open(d.path(), &OpenOptions::default()),
        Err(Error::Invalid { .. })
    ));
    std::fs::write(d.path().join("x.ovf"), &ovf[..ovf.len() - 5]).unwrap();
    assert!(matches!(
        Bundle::open(d.path(), &OpenOptions::default()),
        Err(Error::Xml { .. })
    ));
}

#[test]
fn vmcx_cannot_be_rewritten() {
    let e = cairn_bundle::rewrite_config(
        BundleKind::HyperVVmcx,
        b"opaque",
        &std::collections::BTreeMap::new(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)));
}
