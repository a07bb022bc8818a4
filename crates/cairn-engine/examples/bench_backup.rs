//! Throughput of a full backup, a repeated backup and a restore of a generated image.
//!
//! The image is half pseudo-random, a quarter text-like, an eighth zeros (mapped as data, so
//! it is read and detected as zero chunks) and an eighth unallocated.
//!
//! Run: `cargo run --release -p cairn-engine --example bench_backup [MiB] [repo dir] [--encrypt]`

use std::sync::Arc;
use std::time::Instant;

use cairn_engine::{backup, restore_raw, BackupOptions, DiskSource, RestoreOptions};
use cairn_io::{AllocationMap, DiskIdentity, RangeKind};
use cairn_repo::{Encryption, InitOptions, KdfParams, LocalBackend, Repository, SlotSecret};

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat (Linux); 0 elsewhere.
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (t(11) + t(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let dir = args
        .get(2)
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "/tmp/cairn-bench-repo".into());
    let encrypt = args.iter().any(|a| a == "--encrypt");
    let size = mib << 20;
    let mut img = vec![0u8; size];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for c in img[..size / 2].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    let words: [&[u8]; 6] = [
        b"kernel: ",
        b"eth0 up ",
        b"backup ok ",
        b"GET /index.html ",
        b"200 ",
        b"\n",
    ];
    let mut i = size / 2;
    while i < size * 3 / 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = words[usize::try_from(x % 6).unwrap_or(0)];
        let n = w.len().min(size * 3 / 4 - i);
        img[i..i + n].copy_from_slice(&w[..n]);
        i += n;
    }
    let mut map = AllocationMap::new(size as u64);
    map.push(0, (size * 7 / 8) as u64, RangeKind::Data)
        .expect("in order");
    let map = map.finish();
    let img = Arc::new(img);

    let _ = std::fs::remove_dir_all(&dir);
    let backend = Arc::new(LocalBackend::new(&dir).expect("repo dir"));
    let pass = SlotSecret::Passphrase("bench".into());
    let opts = InitOptions {
        encryption: if encrypt {
            Encryption::Aes256Gcm
        } else {
            Encryption::None
        },
        kdf: Some(KdfParams::insecure_for_tests()),
        ..Default::default()
    };
    let repo = Repository::init(backend, &opts, Some(&pass)).expect("init");
    let src = || DiskSource {
        label: "disk0".into(),
        reader: img.clone(),
        map: map.clone(),
        identity: DiskIdentity::default(),
        chain_ids: vec![],
        changed: None,
    };
    for run in ["full", "again"] {
        let (t, c) = (Instant::now(), cpu_seconds());
        let r = backup(&repo, "bench", &[src()], &BackupOptions::default()).expect("backup");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{run:>6}: {mib} MiB in {secs:.2} s wall ({:.2} s cpu): {:.0} MiB/s; read {} MiB, new {} MiB, stored {} MiB",
            cpu_seconds() - c,
            mib as f64 / secs,
            r.bytes_read >> 20,
            r.bytes_new >> 20,
            r.bytes_stored >> 20
        );
        if run == "again" {
            let out = format!("{dir}/restored.raw");
            let (t, c) = (Instant::now(), cpu_seconds());
            restore_raw(
                &repo,
                &r.restore_point,
                0,
                out.as_ref(),
                &RestoreOptions::default(),
            )
            .expect("restore");
            let secs = t.elapsed().as_secs_f64();
            println!(
                "restore: {secs:.2} s wall ({:.2} s cpu): {:.0} MiB/s",
                cpu_seconds() - c,
                mib as f64 / secs
            );
            let back = std::fs::read(&out).expect("read back");
            let mut want = img.as_ref().clone();
            want[size * 7 / 8..].fill(0);
            assert!(back == want, "restore differs");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
