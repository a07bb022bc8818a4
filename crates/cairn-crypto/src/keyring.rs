//! The key ring (`keys` file): the master key wrapped by one or more slots.
//!
//! Byte layout: `docs/formats/keys.md`.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, Nonce};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kdf::{argon2id_kek, hkdf_kek, KdfParams, INFO_KEK_KEY_FILE, INFO_KEK_RECOVERY};
use crate::recovery::parse_recovery_key;
use crate::repo::{aes_key, random_fill, MasterKey, INFO_KEYRING_MAC, KEY_LEN, NONCE_LEN, TAG_LEN};

/// First 8 bytes of a keys file.
pub const KEYRING_MAGIC: [u8; 8] = *b"CAIRNKEY";
/// Format version this build reads and writes.
pub const KEYRING_VERSION: u16 = 1;
/// Fixed header: magic 8, version 2, flags 2, payload length 4, CRC32 4.
pub const KEYRING_HEADER_LEN: usize = 20;
/// Largest payload accepted. A full ring ([`MAX_SLOTS`] slots with [`MAX_LABEL_LEN`] labels)
/// is under 5 KiB, so anything near this is not a keys file.
pub const MAX_KEYRING_PAYLOAD: usize = 64 * 1024;
/// Most slots a ring may hold: enough for every admin, key file and recovery key of a site,
/// few enough that trying every passphrase slot (one Argon2id run each) stays bounded.
pub const MAX_SLOTS: usize = 16;
/// Longest slot label in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// Longest passphrase in bytes (no one types more; bounds the KDF input).
pub const MAX_PASSPHRASE_LEN: usize = 4096;
/// Shortest key file: 32 bytes = 256 bits if random.
pub const MIN_KEY_FILE_LEN: usize = 32;
/// Longest key file we read (any file may serve as a key file, but not a disk image).
pub const MAX_KEY_FILE_LEN: usize = 1024 * 1024;
/// Length of a generated key file.
pub const GENERATED_KEY_FILE_LEN: usize = 64;
/// Length of a slot's KDF salt.
pub const SLOT_SALT_LEN: usize = 32;
/// Length of the key ring's authentication code (HMAC-SHA256).
pub const KEYRING_MAC_LEN: usize = 32;
/// Prefix of a slot's wrap associated data.
const WRAP_AAD_DOMAIN: &[u8] = b"cairn/v1/slot-wrap";

/// A secret that opens a slot.
///
/// `Debug` prints only the kind; dropping a secret overwrites its bytes (best effort).
pub enum SlotSecret {
    /// A passphrase, used as its UTF-8 bytes exactly as given (no normalisation, no trimming).
    Passphrase(String),
    /// The contents of a key file (see [`generate_key_file`]).
    KeyFile(Vec<u8>),
    /// A recovery key as typed (see [`generate_recovery_key`](crate::generate_recovery_key)).
    RecoveryKey(String),
}

impl SlotSecret {
    /// The kind of slot this secret opens.
    pub fn kind(&self) -> SlotKind {
        match self {
            SlotSecret::Passphrase(_) => SlotKind::Passphrase,
            SlotSecret::KeyFile(_) => SlotKind::KeyFile,
            SlotSecret::RecoveryKey(_) => SlotKind::RecoveryKey,
        }
    }
}

impl fmt::Debug for SlotSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotSecret::{:?}(<redacted>)", self.kind())
    }
}

impl Drop for SlotSecret {
    fn drop(&mut self) {
        let mut bytes = match self {
            SlotSecret::Passphrase(s) | SlotSecret::RecoveryKey(s) => {
                std::mem::take(s).into_bytes()
            }
            SlotSecret::KeyFile(b) => std::mem::take(b),
        };
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// A fresh random key file ([`GENERATED_KEY_FILE_LEN`] bytes) for a key-file slot.
pub fn generate_key_file() -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; GENERATED_KEY_FILE_LEN];
    random_fill(&mut bytes)?;
    Ok(bytes)
}

/// Kind of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// Argon2id over a passphrase.
    Passphrase,
    /// HKDF over the contents of a key file.
    KeyFile,
    /// HKDF over a recovery key.
    RecoveryKey,
}

impl fmt::Display for SlotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotKind::Passphrase => "passphrase",
            SlotKind::KeyFile => "key-file",
            SlotKind::RecoveryKey => "recovery-key",
        })
    }
}

/// Identifier of a slot, unique for the life of a ring (ids are never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u32);

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What [`KeyRing::slots`] tells about a slot (no secret material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot id.
    pub id: SlotId,
    /// Kind.
    pub kind: SlotKind,
    /// Free-text label given when the slot was added.
    pub label: String,
    /// Creation time, seconds since the Unix epoch (as claimed by the writer's clock).
    pub created: u64,
    /// Argon2id parameters of a passphrase slot.
    pub kdf: Option<KdfParams>,
}

/// How a slot derives its key-encryption key. Serialized as the postcard enum described in
/// `docs/formats/keys.md` (variant index 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum SlotKdf {
    Argon2id(KdfParams),
    KeyFile,
    RecoveryKey,
}

impl SlotKdf {
    fn kind(&self) -> SlotKind {
        match self {
            SlotKdf::Argon2id(_) => SlotKind::Passphrase,
            SlotKdf::KeyFile => SlotKind::KeyFile,
            SlotKdf::RecoveryKey => SlotKind::RecoveryKey,
        }
    }

    fn kind_byte(&self) -> u8 {
        match self {
            SlotKdf::Argon2id(_) => 0,
            SlotKdf::KeyFile => 1,
            SlotKdf::RecoveryKey => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SlotRecord {
    id: u32,
    kdf: SlotKdf,
    salt: [u8; SLOT_SALT_LEN],
    label: String,
    created: u64,
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; KEY_LEN],
    tag: [u8; TAG_LEN],
}

impl SlotRecord {
    /// Associated data of the wrap: binds the slot id, kind, KDF parameters and salt, so none of
    /// them can be changed without the master key.
    fn wrap_aad(&self) -> Vec<u8> {
        let (m, t, p) = match self.kdf {
            SlotKdf::Argon2id(k) => (k.memory_kib, k.time_cost, k.parallelism),
            _ => (0, 0, 0),
        };
        let mut aad = Vec::with_capacity(WRAP_AAD_DOMAIN.len() + 17 + SLOT_SALT_LEN);
        aad.extend_from_slice(WRAP_AAD_DOMAIN);
        aad.extend_from_slice(&self.id.to_le_bytes());
        aad.push(self.kdf.kind_byte());
        aad.extend_from_slice(&m.to_le_bytes());
        aad.extend_from_slice(&t.to_le_bytes());
        aad.extend_from_slice(&p.to_le_bytes());
        aad.extend_from_slice(&self.salt);
        aad
    }

    /// KEK for `secret`; `Ok(None)` when the secret cannot belong to this slot (other kind,
    /// or a length no slot accepts).
    fn kek(&self, secret: &SlotSecret) -> Result<Option<[u8; KEY_LEN]>> {
        Ok(match (&self.kdf, secret) {
            (SlotKdf::Argon2id(params), SlotSecret::Passphrase(p)) => {
                if p.is_empty() || p.len() > MAX_PASSPHRASE_LEN {
                    None
                } else {
                    Some(argon2id_kek(params, p.as_bytes(), &self.salt)?)
                }
            }
            (SlotKdf::KeyFile, SlotSecret::KeyFile(bytes)) => {
                if (MIN_KEY_FILE_LEN..=MAX_KEY_FILE_LEN).contains(&bytes.len()) {
                    Some(hkdf_kek(&self.salt, bytes, INFO_KEK_KEY_FILE))
                } else {
                    None
                }
            }
            (SlotKdf::RecoveryKey, SlotSecret::RecoveryKey(text)) => {
                let data = parse_recovery_key(text)?;
                Some(hkdf_kek(&self.salt, &data, INFO_KEK_RECOVERY))
            }
            _ => None,
        })
    }

    fn unwrap_master(&self, kek: &[u8; KEY_LEN]) -> Option<MasterKey> {
        let mut buf = [0u8; KEY_LEN + TAG_LEN];
        buf[..KEY_LEN].copy_from_slice(&self.wrapped);
        buf[KEY_LEN..].copy_from_slice(&self.tag);
        let opened = aes_key(kek)
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(self.wrap_aad()),
                &mut buf,
            )
            .ok()?;
        let mut master = [0u8; KEY_LEN];
        master.copy_from_slice(opened);
        buf.fill(0);
        Some(MasterKey::from_bytes(master))
    }

    fn info(&self) -> SlotInfo {
        SlotInfo {
            id: SlotId(self.id),
            kind: self.kdf.kind(),
            label: self.label.clone(),
            created: self.created,
            kdf: match self.kdf {
                SlotKdf::Argon2id(k) => Some(k),
                _ => None,
            },
        }
    }
}

/// The payload body, serialized with postcard; the MAC follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Body {
    next_slot_id: u32,
    slots: Vec<SlotRecord>,
}

/// The key ring: the master key wrapped by 1..=[`MAX_SLOTS`] slots, authenticated as a whole by
/// an HMAC under a key derived from the master key.
#[derive(Clone)]
pub struct KeyRing {
    body: Body,
    /// The exact postcard bytes of `body` as authenticated by `mac` (kept as read, so a decoded
    /// ring re-encodes byte for byte and the MAC is checked over what was on disk).
    body_bytes: Vec<u8>,
    mac: [u8; KEYRING_MAC_LEN],
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("slots", &self.slots())
            .finish_non_exhaustive()
    }
}

fn check_label(label: &str) -> Result<()> {
    if label.len() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
        return Err(Error::Label {
            len: label.len(),
            max: MAX_LABEL_LEN,
        });
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac_key(master: &MasterKey) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, &master.subkey(INFO_KEYRING_MAC))
}

/// Builds a new slot wrapping `master` under `secret`.
fn new_slot(
    master: &MasterKey,
    id: u32,
    secret: &SlotSecret,
    label: &str,
    params: KdfParams,
) -> Result<SlotRecord> {
    check_label(label)?;
    let kdf = match secret {
        SlotSecret::Passphrase(p) => {
            if p.is_empty() || p.len() > MAX_PASSPHRASE_LEN {
                return Err(Error::PassphraseLength {
                    len: p.len(),
                    max: MAX_PASSPHRASE_LEN,
                });
            }
            params.validate()?;
            SlotKdf::Argon2id(params)
        }
        SlotSecret::KeyFile(bytes) => {
            if !(MIN_KEY_FILE_LEN..=MAX_KEY_FILE_LEN).contains(&bytes.len()) {
                return Err(Error::KeyFileLength {
                    len: bytes.len(),
                    min: MIN_KEY_FILE_LEN,
                    max: MAX_KEY_FILE_LEN,
                });
            }
            SlotKdf::KeyFile
        }
        SlotSecret::RecoveryKey(text) => {
            parse_recovery_key(text)?;
            SlotKdf::RecoveryKey
        }
    };
    let mut salt = [0u8; SLOT_SALT_LEN];
    random_fill(&mut salt)?;
    // Each KEK is fresh (random salt) and wraps exactly once, so a random nonce is safe.
    let mut nonce = [0u8; NONCE_LEN];
    random_fill(&mut nonce)?;
    let mut slot = SlotRecord {
        id,
        kdf,
        salt,
        label: label.to_owned(),
        created: now_unix(),
        nonce,
        wrapped: [0u8; KEY_LEN],
        tag: [0u8; TAG_LEN],
    };
    let kek = slot.kek(secret)?.ok_or(Error::WrongKey)?;
    let mut buf = *master.bytes();
    let tag = aes_key(&kek)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(slot.wrap_aad()),
            &mut buf,
        )
        .map_err(|_| Error::WrongKey)?;
    slot.wrapped = buf;
    slot.tag.copy_from_slice(tag.as_ref());
    Ok(slot)
}

impl KeyRing {
    /// A ring with one slot opened by `first`, passphrase slots using [`KdfParams::default`].
    pub fn create(master: &MasterKey, first: &SlotSecret, label: &str) -> Result<Self> {
        Self::create_with_params(master, first, label, KdfParams::default())
    }

    /// [`KeyRing::create`] with explicit Argon2id parameters (ignored unless `first` is a
    /// passphrase).
    pub fn create_with_params(
        master: &MasterKey,
        first: &SlotSecret,
        label: &str,
        params: KdfParams,
    ) -> Result<Self> {
        let slot = new_slot(master, 0, first, label, params)?;
        Ok(Self::sealed(
            master,
            Body {
                next_slot_id: 1,
                slots: vec![slot],
            },
        ))
    }

    fn sealed(master: &MasterKey, body: Body) -> Self {
        let body_bytes = postcard::to_allocvec(&body)
            .unwrap_or_else(|_| unreachable!("postcard cannot fail on plain structs into a Vec"));
        let mut mac = [0u8; KEYRING_MAC_LEN];
        mac.copy_from_slice(hmac::sign(&mac_key(master), &body_bytes).as_ref());
        KeyRing {
            body,
            body_bytes,
            mac,
        }
    }

    /// Adds a slot opened by `new`; `unlock_with` must open an existing slot. Passphrase slots
    /// use [`KdfParams::default`]. The master key, hence all data, is unchanged.
    pub fn add_slot(
        &mut self,
        unlock_with: &SlotSecret,
        new: &SlotSecret,
        label: &str,
    ) -> Result<SlotId> {
        self.add_slot_with_params(unlock_with, new, label, KdfParams::default())
    }

    /// [`KeyRing::add_slot`] with explicit Argon2id parameters for a new passphrase slot.
    pub fn add_slot_with_params(
        &mut self,
        unlock_with: &SlotSecret,
        new: &SlotSecret,
        label: &str,
        params: KdfParams,
    ) -> Result<SlotId> {
        if self.body.slots.len() >= MAX_SLOTS {
            return Err(Error::TooManySlots {
                count: self.body.slots.len() + 1,
                max: MAX_SLOTS,
            });
        }
        check_label(label)?;
        let master = self.unlock(unlock_with)?;
        let id = self.body.next_slot_id;
        let next = id.checked_add(1).ok_or(Error::SlotIdsExhausted)?;
        let slot = new_slot(&master, id, new, label, params)?;
        let mut body = self.body.clone();
        body.slots.push(slot);
        body.next_slot_id = next;
        *self = Self::sealed(&master, body);
        Ok(SlotId(id))
    }

    /// Removes slot `id`; `unlock_with` must open a slot (possibly the one removed). Refuses to
    /// remove the last slot.
    pub fn remove_slot(&mut self, unlock_with: &SlotSecret, id: SlotId) -> Result<()> {
        let pos = self
            .body
            .slots
            .iter()
            .position(|s| s.id == id.0)
            .ok_or(Error::NoSuchSlot { id: id.0 })?;
        if self.body.slots.len() == 1 {
            return Err(Error::LastSlot { id: id.0 });
        }
        let master = self.unlock(unlock_with)?;
        let mut body = self.body.clone();
        body.slots.remove(pos);
        *self = Self::sealed(&master, body);
        Ok(())
    }

    /// The slots, in file order.
    pub fn slots(&self) -> Vec<SlotInfo> {
        self.body.slots.iter().map(SlotRecord::info).collect()
    }

    /// The master key, if `secret` opens a slot of its kind. Tries each slot of that kind (one
    /// Argon2id run per passphrase slot). Errors: [`Error::WrongKey`] if none opens;
    /// [`Error::KeyRingTampered`] if one opens but the ring's MAC does not verify;
    /// [`Error::RecoveryKeyFormat`] for a mistyped recovery key.
    pub fn unlock(&self, secret: &SlotSecret) -> Result<MasterKey> {
        for slot in &self.body.slots {
            let Some(kek) = slot.kek(secret)? else {
                continue;
            };
            if let Some(master) = slot.unwrap_master(&kek) {
                hmac::verify(&mac_key(&master), &self.body_bytes, &self.mac)
                    .map_err(|_| Error::KeyRingTampered)?;
                return Ok(master);
            }
        }
        Err(Error::WrongKey)
    }

    /// The keys file bytes (layout in `docs/formats/keys.md`).
    pub fn encode(&self) -> Vec<u8> {
        let payload_len = self.body_bytes.len() + KEYRING_MAC_LEN;
        let mut out = Vec::with_capacity(KEYRING_HEADER_LEN + payload_len);
        out.extend_from_slice(&KEYRING_MAGIC);
        out.extend_from_slice(&KEYRING_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        // Bounded by MAX_SLOTS and MAX_LABEL_LEN, far below u32::MAX.
        let len32 = u32::try_from(payload_len).unwrap_or(u32::MAX);
        out.extend_from_slice(&len32.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&self.body_bytes);
        out.extend_from_slice(&self.mac);
        let crc = frame_crc(&out[..16], &out[KEYRING_HEADER_LEN..]);
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and validates a keys file. Checks framing, CRC, every bound; does not (cannot)
    /// check the MAC: [`KeyRing::unlock`] does.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < KEYRING_HEADER_LEN {
            return Err(Error::KeyRingTooShort {
                len: bytes.len(),
                need: KEYRING_HEADER_LEN,
            });
        }
        let (header, payload) = bytes.split_at(KEYRING_HEADER_LEN);
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&header[0..8]);
        if magic != KEYRING_MAGIC {
            return Err(Error::KeyRingMagic { found: magic });
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version != KEYRING_VERSION {
            return Err(Error::KeyRingVersion {
                found: version,
                expected: KEYRING_VERSION,
            });
        }
        let flags = u16::from_le_bytes([header[10], header[11]]);
        if flags != 0 {
            return Err(Error::KeyRingFlags { found: flags });
        }
        let declared = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let declared64 = u64::from(declared);
        if declared64 > MAX_KEYRING_PAYLOAD as u64 {
            return Err(Error::KeyRingPayloadTooLarge {
                declared: declared64,
                max: MAX_KEYRING_PAYLOAD as u64,
            });
        }
        if declared64 != payload.len() as u64 {
            return Err(Error::KeyRingLength {
                declared: declared64,
                actual: payload.len() as u64,
            });
        }
        let stored = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        let computed = frame_crc(&header[..16], payload);
        if stored != computed {
            return Err(Error::KeyRingChecksum { stored, computed });
        }
        let Some(body_len) = payload.len().checked_sub(KEYRING_MAC_LEN) else {
            return Err(Error::KeyRingPayload {
                offset: KEYRING_HEADER_LEN,
                detail: format!(
                    "{} bytes cannot hold the {KEYRING_MAC_LEN}-byte MAC",
                    payload.len()
                ),
            });
        };
        let (body_bytes, mac_bytes) = payload.split_at(body_len);
        let (body, rest): (Body, &[u8]) =
            postcard::take_from_bytes(body_bytes).map_err(|e| Error::KeyRingPayload {
                offset: KEYRING_HEADER_LEN,
                detail: format!("slot list does not decode: {e}"),
            })?;
        if !rest.is_empty() {
            return Err(Error::KeyRingPayload {
                offset: KEYRING_HEADER_LEN + body_len - rest.len(),
                detail: format!("{} unexpected bytes before the MAC", rest.len()),
            });
        }
        validate_body(&body)?;
        let mut mac = [0u8; KEYRING_MAC_LEN];
        mac.copy_from_slice(mac_bytes);
        Ok(KeyRing {
            body,
            body_bytes: body_bytes.to_vec(),
            mac,
        })
    }

    /// Reads and decodes a keys file (inside the repository or anywhere else).
    pub fn load(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        let cap = (KEYRING_HEADER_LEN + MAX_KEYRING_PAYLOAD) as u64;
        if len > cap {
            return Err(Error::KeyRingPayloadTooLarge {
                declared: len,
                max: cap,
            });
        }
        Self::decode(&std::fs::read(path).map_err(io)?)
    }

    /// Writes the keys file atomically (temporary file in the same directory, fsync, rename),
    /// readable by the owner only on Unix.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp_name = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(&self.encode()).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// CRC32 (IEEE) over the first 16 header bytes and the payload.
fn frame_crc(header16: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header16);
    h.update(payload);
    h.finalize()
}

fn validate_body(body: &Body) -> Result<()> {
    if body.slots.is_empty() {
        return Err(Error::NoSlots);
    }
    if body.slots.len() > MAX_SLOTS {
        return Err(Error::TooManySlots {
            count: body.slots.len(),
            max: MAX_SLOTS,
        });
    }
    for (i, slot) in body.slots.iter().enumerate() {
        if slot.id >= body.next_slot_id || body.slots[..i].iter().any(|s| s.id == slot.id) {
            return Err(Error::SlotId {
                slot: slot.id,
                next: body.next_slot_id,
            });
        }
        if slot.label.len() > MAX_LABEL_LEN || slot.label.chars().any(char::is_control) {
            return Err(Error::SlotField {
                slot: slot.id,
                field: "label length (printable text only)",
                value: slot.label.len() as u64,
                min: 0,
                max: MAX_LABEL_LEN as u64,
            });
        }
        if let SlotKdf::Argon2id(params) = slot.kdf {
            params.validate().map_err(|e| match e {
                Error::KdfParams {
                    field,
                    value,
                    min,
                    max,
                } => Error::SlotField {
                    slot: slot.id,
                    field,
                    value,
                    min,
                    max,
                },
                other => other,
            })?;
        }
    }
    Ok(())
}
