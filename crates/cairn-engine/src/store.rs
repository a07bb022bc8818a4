//! The repository as the catalog's blob store: catalog blobs are metadata blobs of the
//! repository, deduplicated, compressed and sealed like chunks, with the repository's own
//! (keyed, when encrypted) ids.
use std::sync::Mutex;

use cairn_catalog::BlobStore;
use cairn_repo::{BlobId, BlobKind, RepoWriter, Repository};

use crate::{Error, Result};

/// Writes catalog blobs into the repository in one writer session, remembering every id
/// it handed out (the restore point lists them so that prune keeps them).
pub struct RepoCatalogStore<'r> {
    repo: &'r Repository,
    writer: Mutex<Option<RepoWriter<'r>>>,
    ids: Mutex<Vec<BlobId>>,
}

impl std::fmt::Debug for RepoCatalogStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoCatalogStore").finish_non_exhaustive()
    }
}

impl<'r> RepoCatalogStore<'r> {
    /// Starts a writer session on `repo`.
    pub fn new(repo: &'r Repository) -> Result<Self> {
        Ok(RepoCatalogStore {
            repo,
            writer: Mutex::new(Some(repo.writer()?)),
            ids: Mutex::new(Vec::new()),
        })
    }

    /// Takes the ids handed out since the last call (sorted, unique).
    pub fn take_ids(&self) -> Vec<BlobId> {
        let mut ids = self
            .ids
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Flushes the session: packs and index become visible to readers.
    pub fn finish(self) -> Result<()> {
        let w = self
            .writer
            .into_inner()
            .map_err(|_| Error::Invalid("catalog writer poisoned".into()))?;
        if let Some(w) = w {
            w.finish()?;
        }
        Ok(())
    }
}

impl BlobStore for RepoCatalogStore<'_> {
    type Error = Error;

    fn put(&self, bytes: Vec<u8>) -> Result<[u8; 32]> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| Error::Invalid("catalog writer poisoned".into()))?;
        let w = guard
            .as_mut()
            .ok_or_else(|| Error::Invalid("catalog writer finished".into()))?;
        let enc = w.encoder();
        let id = enc.id(&bytes);
        if !w.has_blob(&id) {
            w.add(&enc.encode(BlobKind::Meta, id, &bytes)?)?;
        }
        if let Ok(mut ids) = self.ids.lock() {
            ids.push(id);
        }
        Ok(id.0)
    }

    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>> {
        Ok(self.repo.read_blob(&BlobId(*id))?)
    }
}

/// Reads catalog blobs from the repository.
#[derive(Debug, Clone, Copy)]
pub struct RepoReadStore<'r>(pub &'r Repository);

impl BlobStore for RepoReadStore<'_> {
    type Error = Error;

    fn put(&self, _bytes: Vec<u8>) -> Result<[u8; 32]> {
        Err(Error::Invalid(
            "the catalog of a restore point is read-only".into(),
        ))
    }

    fn get(&self, id: &[u8; 32]) -> Result<Vec<u8>> {
        Ok(self.0.read_blob(&BlobId(*id))?)
    }
}
