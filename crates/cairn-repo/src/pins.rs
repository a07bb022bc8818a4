//! Pinned (protected) restore points: `pins/<restore point id>`, one small object per pin.
//!
//! Manifests are immutable, so a pin is not a flag inside the manifest but an object of its
//! own, written and deleted without touching the restore point. Retention (`forget`) never
//! removes a pinned restore point, and [`Repository::remove_restore_points`] refuses to.
//! Prune deletes pins whose restore point is gone ([`Repository::remove_orphan_pins`]).
//! Safety paths ([`Repository::pinned_ids`]) go by object names only, so a damaged pin
//! object still protects its restore point; listings ([`Repository::pins`]) decode and
//! check every object. Format: `docs/formats/repository.md`, section "pins".

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::crypto::Crypto;
use crate::frame::HEADER_LEN;
use crate::prune::{decode_framed, encode_framed, seal_payload};
use crate::repo::SNAPSHOT_DIR;
use crate::{Error, ObjectId, Repository, Result, SnapshotId};

/// Folder of pin objects.
pub const PIN_DIR: &str = "pins/";
/// Magic of a pin object.
pub const PIN_MAGIC: &[u8; 8] = b"CAIRNPIN";
/// Longest pin reason, in bytes (as every other text of the repository, `MAX_TEXT`).
pub const MAX_PIN_REASON: usize = crate::MAX_TEXT;
/// Largest pin payload accepted: a 4 KiB reason, the id, the time and the seal fit in 8 KiB.
pub const MAX_PIN_FILE_BYTES: u64 = 8 << 10;

/// One pin: which restore point, since when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The pinned restore point (also the object's name).
    pub restore_point: SnapshotId,
    /// When it was pinned, Unix seconds (UTC).
    pub time: i64,
    /// The operator's or the policy's reason (UTF-8, at most [`MAX_PIN_REASON`] bytes).
    pub reason: String,
}

impl Pin {
    /// Checks the structural rules; `name` is the object name, `id` the id it names.
    pub fn validate(&self, name: &str, id: Option<&SnapshotId>) -> Result<()> {
        if self.reason.len() > MAX_PIN_REASON {
            return Err(Error::malformed(
                name,
                format!(
                    "reason of {} bytes, at most {MAX_PIN_REASON}",
                    self.reason.len()
                ),
            ));
        }
        if let Some(id) = id {
            if *id != self.restore_point {
                return Err(Error::malformed(
                    name,
                    format!(
                        "pin names restore point {}, not the {id} of its object name",
                        self.restore_point
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn aad(id: &SnapshotId) -> Vec<u8> {
    let mut a = PIN_MAGIC.to_vec();
    a.extend_from_slice(&id.0);
    a
}

fn pin_name(id: &SnapshotId) -> String {
    format!("{PIN_DIR}{id}")
}

/// Decodes a pin object. With `id` (the id of its object name) the payload must name the
/// same restore point; without it (fuzzing, tools) the associated data is the zero id.
pub(crate) fn decode_pin(
    crypto: &Crypto,
    name: &str,
    id: Option<&SnapshotId>,
    bytes: &[u8],
) -> Result<Pin> {
    let zero = ObjectId::default();
    let payload = decode_framed(
        crypto,
        PIN_MAGIC,
        "CAIRNPIN",
        name,
        &aad(id.unwrap_or(&zero)),
        bytes,
        MAX_PIN_FILE_BYTES,
    )?;
    let pin: Pin = postcard::from_bytes(&payload)
        .map_err(|e| Error::malformed(name, format!("postcard: {e}")))?;
    pin.validate(name, id)?;
    Ok(pin)
}

/// Encodes an unencrypted pin object (for tests and tools; the repository seals its own).
pub fn encode_plain_pin(pin: &Pin) -> Result<Vec<u8>> {
    pin.validate("pin", None)?;
    let plain = postcard::to_stdvec(pin).map_err(|e| Error::Invalid(format!("postcard: {e}")))?;
    Ok(encode_framed(PIN_MAGIC, false, &plain))
}

impl Repository {
    /// Pins restore point `id` with `reason` at `time` (Unix seconds; now when `None`),
    /// replacing an earlier pin of it. The restore point must exist and be readable.
    pub fn pin(&self, id: &SnapshotId, reason: &str, time: Option<i64>) -> Result<Pin> {
        if reason.len() > MAX_PIN_REASON {
            return Err(Error::Invalid(format!(
                "pin reason of {} bytes, at most {MAX_PIN_REASON}",
                reason.len()
            )));
        }
        // Checks the manifest exists and decodes: never pin a name that is not a restore point.
        self.load_manifest_file(id)?;
        let pin = Pin {
            restore_point: *id,
            time: time.unwrap_or_else(crate::repo::now),
            reason: reason.to_owned(),
        };
        let sealer = self.crypto().sealer()?;
        let (sealed, payload) = seal_payload(self, &sealer, &aad(id), &pin)?;
        self.backend()
            .put(&pin_name(id), &encode_framed(PIN_MAGIC, sealed, &payload))?;
        Ok(pin)
    }

    /// Removes the pin of `id`; returns whether there was one. The restore point itself is
    /// untouched (it may now be forgotten like any other).
    pub fn unpin(&self, id: &SnapshotId) -> Result<bool> {
        let name = pin_name(id);
        if !self.backend().exists(&name)? {
            return Ok(false);
        }
        self.backend().delete(&name)?;
        Ok(true)
    }

    /// Ids of every pinned restore point, from object names alone (a damaged pin object
    /// still protects its restore point). Names that are not ids are errors: a pin the
    /// repository cannot attribute must not be ignored silently.
    pub fn pinned_ids(&self) -> Result<BTreeSet<SnapshotId>> {
        let mut out = BTreeSet::new();
        for name in self.backend().list(PIN_DIR)? {
            let last = name.rsplit('/').next().unwrap_or(&name);
            let id: SnapshotId = last
                .parse()
                .map_err(|_| Error::malformed(&name, "object name is not a 64-digit hex id"))?;
            out.insert(id);
        }
        Ok(out)
    }

    /// The pin of `id`, decoded and checked; `None` when it is not pinned.
    pub fn pin_of(&self, id: &SnapshotId) -> Result<Option<Pin>> {
        let name = pin_name(id);
        let size = match self.backend().size(&name) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let cap = MAX_PIN_FILE_BYTES + HEADER_LEN as u64;
        if size > cap {
            return Err(Error::BadLength {
                name,
                offset: 0,
                field: "file size",
                found: size,
                expected: format!("at most {cap}"),
            });
        }
        let bytes = match self.backend().get(&name) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        decode_pin(self.crypto(), &name, Some(id), &bytes).map(Some)
    }

    /// Every pin, decoded and checked, sorted by restore point id. A pin whose restore
    /// point no longer exists (a pin/forget race) is listed too: `unpin` or the next prune
    /// ([`Repository::remove_orphan_pins`]) removes it.
    pub fn pins(&self) -> Result<Vec<Pin>> {
        let mut out = Vec::new();
        for id in self.pinned_ids()? {
            if let Some(p) = self.pin_of(&id)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Whether restore point `id` exists (its manifest object is present).
    pub fn has_restore_point(&self, id: &SnapshotId) -> Result<bool> {
        self.backend().exists(&format!("{SNAPSHOT_DIR}{id}"))
    }

    /// Deletes the pins whose restore point no longer exists ("orphan pins": a pin written
    /// by a `pin` that raced the `forget` removing its restore point, or a restore point
    /// deleted by hand) and returns the restore point ids they named; with `dry_run` only
    /// returns them. Prune calls it after its passes.
    ///
    /// Never removes the pin of a restore point that exists, or may exist later: `pin`
    /// writes a pin only after reading the restore point's manifest, manifests are written
    /// whole under fresh random ids and never written again, so a pin never precedes its
    /// restore point (a backup still running has no manifest and so no pin) and a manifest
    /// found absent after its pin was listed is gone for good. Pins are listed first and
    /// each restore point is checked after, by the existence of its manifest object only (a
    /// damaged manifest keeps its pin). A name in `pins/` that is not an id, or a restore
    /// point whose existence cannot be checked, is left alone (with a warning).
    pub fn remove_orphan_pins(&self, dry_run: bool) -> Result<Vec<SnapshotId>> {
        let mut removed = Vec::new();
        for name in self.backend().list(PIN_DIR)? {
            let last = name.rsplit('/').next().unwrap_or(&name);
            let Ok(id) = last.parse::<SnapshotId>() else {
                tracing::warn!("{name}: not a pin name (64 hex digits); left alone");
                continue;
            };
            match self.has_restore_point(&id) {
                Ok(false) => {}
                Ok(true) => continue,
                Err(e) => {
                    tracing::warn!(
                        "{name}: cannot tell whether restore point {id} exists ({e}); pin kept"
                    );
                    continue;
                }
            }
            if !dry_run {
                match self.backend().delete(&name) {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            removed.push(id);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::{InitOptions, Manifest, MemoryBackend};

    /// A restore point without disks, decoded from its postcard form so the test does not
    /// depend on fields later formats append (trailing optional fields decode as absent).
    fn empty_manifest(time: i64) -> Manifest {
        let bytes = postcard::to_stdvec(&(
            "vm",
            time,
            Vec::<String>::new(),
            None::<[u8; 32]>,
            Vec::<u8>::new(),
            (0u64, 0u64, 0u64, 0u64),
            Vec::<u8>::new(),
        ))
        .unwrap();
        postcard::from_bytes(&bytes).unwrap()
    }

    fn repo_with_point() -> (Repository, SnapshotId) {
        let repo = Repository::init(
            Arc::new(MemoryBackend::new()),
            &InitOptions::default(),
            None,
        )
        .unwrap();
        let id = repo.save_manifest(&empty_manifest(1_700_000_000)).unwrap();
        (repo, id)
    }

    #[test]
    fn pin_unpin_and_removal_refused() {
        let (repo, id) = repo_with_point();
        assert!(repo.pin_of(&id).unwrap().is_none());
        let p = repo.pin(&id, "legal hold", Some(42)).unwrap();
        assert_eq!(repo.pin_of(&id).unwrap(), Some(p.clone()));
        assert_eq!(repo.pins().unwrap(), vec![p]);
        assert!(repo.pinned_ids().unwrap().contains(&id));
        let err = repo.remove_restore_points(&[id]).unwrap_err();
        assert!(err.to_string().contains("pinned"), "{err}");
        assert!(repo.has_restore_point(&id).unwrap());
        assert!(repo.unpin(&id).unwrap());
        assert!(!repo.unpin(&id).unwrap());
        repo.remove_restore_points(&[id]).unwrap();
        assert!(!repo.has_restore_point(&id).unwrap());
        // Not a restore point: refused.
        assert!(matches!(
            repo.pin(&id, "x", None),
            Err(Error::NotFound { .. })
        ));
        let long = "x".repeat(MAX_PIN_REASON + 1);
        assert!(matches!(repo.pin(&id, &long, None), Err(Error::Invalid(_))));
    }

    #[test]
    fn each_field_is_checked() {
        let id = ObjectId([7; 32]);
        let pin = Pin {
            restore_point: id,
            time: 5,
            reason: "r".into(),
        };
        let good = encode_plain_pin(&pin).unwrap();
        let c = Crypto::none();
        assert_eq!(decode_pin(&c, "p", Some(&id), &good).unwrap(), pin);
        let mut v = good.clone();
        v[0] = b'X';
        assert!(matches!(
            decode_pin(&c, "p", None, &v),
            Err(Error::BadMagic { offset: 0, .. })
        ));
        let mut v = good.clone();
        v[8] = 2;
        assert!(matches!(
            decode_pin(&c, "p", None, &v),
            Err(Error::Unsupported { offset: 8, .. })
        ));
        let mut v = good.clone();
        v[10] = 2;
        assert!(matches!(
            decode_pin(&c, "p", None, &v),
            Err(Error::Unsupported { offset: 10, .. })
        ));
        let mut v = good.clone();
        v[12] ^= 1;
        assert!(matches!(
            decode_pin(&c, "p", None, &v),
            Err(Error::BadLength { offset: 12, .. })
        ));
        let mut v = good.clone();
        *v.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode_pin(&c, "p", None, &v),
            Err(Error::Checksum { .. })
        ));
        // Sealed flag on an unencrypted repository.
        let mut v = good.clone();
        v[10] = 1;
        let crc = crate::frame::crc(&v[..20], &v[HEADER_LEN..]);
        v[20..24].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_pin(&c, "p", None, &v),
            Err(Error::Crypto { .. })
        ));
        // Another restore point's name.
        assert!(matches!(
            decode_pin(&c, "p", Some(&ObjectId([8; 32])), &good),
            Err(Error::Malformed { .. })
        ));
        for n in 0..good.len() {
            assert!(decode_pin(&c, "p", None, &good[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn encrypted_pins_are_sealed_and_bound_to_their_name() {
        let backend = Arc::new(MemoryBackend::new());
        let opts = InitOptions {
            encryption: crate::Encryption::Aes256Gcm,
            kdf: Some(crate::KdfParams::insecure_for_tests()),
            ..Default::default()
        };
        let secret = crate::SlotSecret::Passphrase("pw".into());
        let repo = Repository::init(backend.clone(), &opts, Some(&secret)).unwrap();
        let m = empty_manifest(1);
        let a = repo.save_manifest(&m).unwrap();
        let b = repo.save_manifest(&m).unwrap();
        repo.pin(&a, "secret reason", Some(1)).unwrap();
        let bytes = crate::Backend::get(backend.as_ref(), &pin_name(&a)).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"secret"));
        assert_eq!(repo.pin_of(&a).unwrap().unwrap().reason, "secret reason");
        // Moved to another restore point's name: authentication fails, yet b counts as
        // pinned (names decide safety).
        crate::Backend::put(backend.as_ref(), &pin_name(&b), &bytes).unwrap();
        assert!(matches!(repo.pin_of(&b), Err(Error::Crypto { .. })));
        let report = repo.verify(&crate::VerifyOptions::default()).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.problems[0].kind, crate::ProblemKind::Pin);
        assert!(repo.pinned_ids().unwrap().contains(&b));
        assert!(repo.remove_restore_points(&[b]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(id in any::<[u8; 32]>(), time in any::<i64>(), reason in "\\PC{0,300}") {
            let pin = Pin { restore_point: ObjectId(id), time, reason };
            let bytes = encode_plain_pin(&pin).unwrap();
            let back = decode_pin(&Crypto::none(), "p", Some(&ObjectId(id)), &bytes).unwrap();
            prop_assert_eq!(back, pin);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_pin(&Crypto::none(), "p", None, &bytes);
        }
    }
}
