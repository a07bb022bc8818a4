//! # cairn-engine
//!
//! Image backup and restore jobs on a [`cairn_repo::Repository`]:
//!
//! * [`backup`]: fixed chunks aligned to each disk, holes never read nor stored, parallel
//!   hashing / compression / sealing with bounded memory, dedup against the whole
//!   repository, and incremental reads of delta layers (only changed chunks are read when
//!   an earlier restore point captured the parent layer). Every restore point lists every
//!   chunk (synthetic full).
//! * [`RestoredDisk`]: a restore point's disk as a [`cairn_io::ReadAt`] with its
//!   [`cairn_io::AllocationMap`], for converters to any image format.
//! * [`restore_raw`]: a sparse raw file, chunks fetched and verified in parallel.
//! * [`snapshots`] and [`verify`].
//!
//! ```
//! use std::sync::Arc;
//! use cairn_engine::{backup, restore_raw, BackupOptions, DiskSource, RestoreOptions};
//! use cairn_io::{AllocationMap, DiskIdentity, RangeKind};
//! use cairn_repo::{InitOptions, MemoryBackend, Repository};
//!
//! let repo = Repository::init(Arc::new(MemoryBackend::new()), &InitOptions::default(), None).unwrap();
//! let image: Vec<u8> = (0..3u32 << 20).map(|i| (i / 4096) as u8).collect();
//! let disk = DiskSource {
//!     label: "disk0".into(),
//!     map: AllocationMap::uniform(image.len() as u64, RangeKind::Data),
//!     reader: Arc::new(image.clone()),
//!     identity: DiskIdentity::default(),
//!     chain_ids: vec![],
//!     changed: None,
//! };
//! let report = backup(&repo, "vm1", &[disk], &BackupOptions::default()).unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("disk0.raw");
//! restore_raw(&repo, &report.restore_point, 0, &out, &RestoreOptions::default()).unwrap();
//! assert_eq!(std::fs::read(&out).unwrap(), image);
//! ```
#![forbid(unsafe_code)]

mod backup;
mod bundle;
mod error;
mod jobs;
mod restore;
mod source;
mod store;

pub use backup::{backup, BackupOptions, BackupReport, DiskSource, Progress, ProgressFn};
pub use bundle::{
    backup_bundle, backup_source, restore_bundle, vm_record, BundleBackupReport, VmRestoreOptions,
    VmRestoreReport, CONFIG_BLOB_BYTES,
};
pub use cairn_bundle::{
    Bundle, BundleDisk, BundleKind, OpenOptions as BundleOpenOptions, PowerState,
};
pub use error::{Error, Result};
pub use jobs::{
    expand_vms, next_due, open_repository, policy, removal_list, restore_points, run_daemon,
    run_due, run_due_each, throttle_source, vm_disk_images, vm_name, DaemonHost, JobRunReport,
    LockAttempt, RunOptions, ThrottledReader, VmLock, HOOK_TIMEOUT, MAX_DISKS_PER_VM,
    MAX_GLOB_WALK_DEPTH, MAX_GLOB_WALK_ENTRIES,
};
pub use restore::{restore_raw, RestoreOptions, RestoreReport, RestoredDisk, RESTORE_CACHE_CHUNKS};
pub use source::{
    open_disk_source, prepare_vm, prepare_vm_disks, skip_free_blocks, PreparedVm, SourceOptions,
    SourceReport, VolumeReport,
};
pub use store::{RepoCatalogStore, RepoReadStore};

pub use cairn_repo::{RestorePointSummary, VerifyOptions, VerifyReport};

/// Every readable restore point, oldest first (unreadable manifests are left out; `verify`
/// reports them).
pub fn snapshots(repo: &cairn_repo::Repository) -> Result<Vec<RestorePointSummary>> {
    Ok(repo.summaries()?.0)
}

/// Verifies the repository (see [`cairn_repo::Repository::verify`]).
pub fn verify(repo: &cairn_repo::Repository, opts: &VerifyOptions) -> Result<VerifyReport> {
    Ok(repo.verify(opts)?)
}
