//! Prune: removes blobs no restore point needs and repacks mostly-empty packs, safely while
//! backups run and crash-safe at every step. The protocol is in `docs/prune.md`.

use crate::{Error, Repository, Result};

/// Options of [`prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// How long a pack stays marked before it may be deleted (default 24 h). Must exceed
    /// the longest backup run.
    pub grace_seconds: i64,
    /// Repack packs with less than this share of live bytes (default 50).
    pub repack_threshold_percent: u8,
    /// Prune's clock (Unix seconds); the system clock when `None`.
    pub now: Option<i64>,
}

/// Default grace period: 24 hours.
pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
/// Default repack threshold: packs with less than half their bytes live.
pub const DEFAULT_REPACK_THRESHOLD_PERCENT: u8 = 50;

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            grace_seconds: DEFAULT_GRACE_SECONDS,
            repack_threshold_percent: DEFAULT_REPACK_THRESHOLD_PERCENT,
            now: None,
        }
    }
}

/// What [`prune`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Packs deleted (marked by an earlier run at least the grace period ago).
    pub packs_deleted: u64,
    /// Packs whose live blobs were copied into new packs this run.
    pub packs_repacked: u64,
    /// Unreferenced blobs dropped from the index this run.
    pub blobs_removed: u64,
    /// Bytes of the packs deleted.
    pub bytes_freed: u64,
    /// Index files replaced by rewritten ones.
    pub index_files_rewritten: u64,
    /// Unindexed packs (interrupted backups) deleted.
    pub orphans_deleted: u64,
    /// Packs marked for deletion but kept until their grace period ends.
    pub kept_for_grace: u64,
}

/// Prunes the repository; see `docs/prune.md`.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let _ = (repo, opts);
    Err(Error::Invalid("prune is not implemented yet".into()))
}
