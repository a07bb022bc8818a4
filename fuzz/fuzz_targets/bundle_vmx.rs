#![no_main]
//! Parses arbitrary bytes as a VMware `.vmx` (key = "value" lines, `.encoding`, `|XX`
//! escapes, disk nodes) and as a `.vmsd` snapshot database (tree checks), then rewrites the
//! disk file names of whatever parsed; must never panic, hang or over-allocate.
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

use cairn_bundle::vmx::{rewrite_vmx, KvFile, SnapshotDb, VmxConfig, MAX_KV_BYTES};

fuzz_target!(|data: &[u8]| {
    let _ = SnapshotDb::parse("f.vmsd", data).map(|db| db.current_chain().len());
    let Ok(kv) = KvFile::parse("f.vmx", data) else {
        return;
    };
    let _ = kv.to_bytes();
    if let Ok(cfg) = VmxConfig::from_kv("f.vmx", &kv) {
        let map: BTreeMap<String, String> = cfg
            .disks
            .iter()
            .map(|d| (d.config_ref.clone(), format!("{}-new.vmdk", d.file_name)))
            .collect();
        if let Ok(out) = rewrite_vmx("f.vmx", data, &map) {
            if out.len() > MAX_KV_BYTES {
                return;
            }
            // A rewrite must parse again and name the new files.
            let kv2 = KvFile::parse("f.vmx", &out).expect("rewritten vmx parses");
            let cfg2 = VmxConfig::from_kv("f.vmx", &kv2).expect("rewritten vmx reads");
            for d in &cfg2.disks {
                assert_eq!(map.get(&d.config_ref), Some(&d.file_name));
            }
        }
    }
});
