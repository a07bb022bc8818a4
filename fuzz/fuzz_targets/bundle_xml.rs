#![no_main]
//! Parses arbitrary bytes as each XML configuration Cairn reads — a libvirt domain, a
//! Hyper-V 2012 R2 configuration, an OVF descriptor — (UTF-8 or UTF-16 with a BOM, size and
//! node limits, no DTD), then rewrites the disk paths of whatever parsed; must never panic,
//! hang or over-allocate.
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

use cairn_bundle::{rewrite_config, xml, BundleKind};

fuzz_target!(|data: &[u8]| {
    let Ok((text, _)) = xml::decode("f.xml", data) else {
        return;
    };
    let parsed = [
        (BundleKind::Libvirt, xml::libvirt("f.xml", &text)),
        (BundleKind::HyperV, xml::hyperv("f.xml", &text, None)),
        (BundleKind::Ovf, xml::ovf("f.xml", &text)),
    ];
    for (kind, cfg) in parsed {
        let Ok(cfg) = cfg else { continue };
        let map: BTreeMap<String, String> = cfg
            .disks
            .iter()
            .map(|d| (d.config_ref.clone(), "new & <disk>.vmdk".to_string()))
            .collect();
        let _ = rewrite_config(kind, data, &map);
    }
});
