//! Master key, per-purpose subkeys, chunk ids and sealing (AES-256-GCM with per-session keys).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf, hmac};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Length of the master key and of every derived key, in bytes.
pub const KEY_LEN: usize = 32;

/// HKDF-Extract salt applied to the master key. A fixed, public domain-separation string: the
/// master key is already uniform, the salt only keeps Cairn's derivations apart from any other
/// use of the same bytes.
pub(crate) const MASTER_HKDF_SALT: &[u8] = b"cairn/v1/master";
/// HKDF info of the chunk-id key of [`ChunkIdHash::Sha256`] repositories (HMAC-SHA256).
pub(crate) const INFO_CHUNK_ID: &[u8] = b"cairn/v1/chunk-id";
/// HKDF info of the chunk-id key of [`ChunkIdHash::Blake3`] repositories (keyed BLAKE3). Its
/// own string: a subkey is never used by two algorithms.
pub(crate) const INFO_CHUNK_ID_BLAKE3: &[u8] = b"cairn/v1/chunk-id-blake3";
/// HKDF info of the data key, from which every sealing session key is derived.
pub(crate) const INFO_DATA: &[u8] = b"cairn/v1/data";
/// HKDF info of the key ring's authentication key (HMAC-SHA256 over the slot list).
pub(crate) const INFO_KEYRING_MAC: &[u8] = b"cairn/v1/keyring-mac";
/// HKDF info of the public key fingerprint (lets a repository recognise its key).
pub(crate) const INFO_FINGERPRINT: &[u8] = b"cairn/v1/key-fingerprint";
/// HKDF info prefix of a sealing session key; the 16-byte session id follows it.
pub(crate) const INFO_SESSION: &[u8] = b"cairn/v1/seal-session";

/// Version byte of the sealed form described in `docs/formats/keys.md`.
pub const SEALED_VERSION: u8 = 1;
/// Length of a sealing session id.
pub const SESSION_ID_LEN: usize = 16;
/// Length of the AES-GCM nonce (the 96-bit message counter).
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Sealed header: version byte + session id + nonce.
pub const SEALED_HEADER_LEN: usize = 1 + SESSION_ID_LEN + NONCE_LEN;
/// Bytes sealing adds to a plaintext: header + tag.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;

/// Messages one [`Sealer`] may seal before it refuses. The 96-bit nonce field could count much
/// further, but a session key should not protect unbounded data: 2^32 blobs of up to a few MiB
/// each is petabytes, and keeps the AES-GCM birthday bound (total blocks per key) far away.
pub const MAX_SEALS_PER_SESSION: u64 = 1 << 32;

/// Session keys kept by [`RepoCrypto::open`]: a restore reads blobs of a handful of sessions
/// (one per backup run it touches) over and over, so a small cache saves the HKDF + key
/// schedule for most blobs.
const SESSION_CACHE_LEN: usize = 16;

/// Whether a repository encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encryption {
    /// Plain blobs, SHA-256 chunk ids.
    #[serde(rename = "none")]
    None,
    /// AES-256-GCM sealed blobs, HMAC-SHA256 chunk ids.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encryption::None => "none",
            Encryption::Aes256Gcm => "aes-256-gcm",
        })
    }
}

impl std::str::FromStr for Encryption {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Encryption::None),
            "aes-256-gcm" => Ok(Encryption::Aes256Gcm),
            other => Err(format!(
                "unknown encryption {other:?} (expected \"none\" or \"aes-256-gcm\")"
            )),
        }
    }
}

/// The hash that names chunks (blob ids) in a repository. Recorded in the repository's
/// config: every id in one repository comes from one algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ChunkIdHash {
    /// HMAC-SHA256 under a subkey when encrypted, SHA-256 when not. Repositories created
    /// before the choice existed use it.
    #[serde(rename = "sha256")]
    Sha256,
    /// Keyed BLAKE3 under a subkey when encrypted, BLAKE3 when not. Also a PRF when keyed,
    /// about twice as fast as HMAC-SHA256 with SHA-NI; the choice for new repositories.
    #[serde(rename = "blake3")]
    Blake3,
}

impl ChunkIdHash {
    /// Every algorithm, in the order of their postcard variant index.
    pub const ALL: [ChunkIdHash; 2] = [ChunkIdHash::Sha256, ChunkIdHash::Blake3];

    /// The algorithm's name: `sha256` or `blake3` (the serde and [`FromStr`] spelling).
    ///
    /// [`FromStr`]: std::str::FromStr
    pub fn name(self) -> &'static str {
        match self {
            ChunkIdHash::Sha256 => "sha256",
            ChunkIdHash::Blake3 => "blake3",
        }
    }

    /// What ids are, spelled out: `hmac-sha256` / `sha256`, `keyed-blake3` / `blake3`.
    pub fn describe(self, encryption: Encryption) -> &'static str {
        match (self, encryption) {
            (ChunkIdHash::Sha256, Encryption::Aes256Gcm) => "hmac-sha256",
            (ChunkIdHash::Sha256, Encryption::None) => "sha256",
            (ChunkIdHash::Blake3, Encryption::Aes256Gcm) => "keyed-blake3",
            (ChunkIdHash::Blake3, Encryption::None) => "blake3",
        }
    }
}

impl fmt::Display for ChunkIdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ChunkIdHash {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ChunkIdHash::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| {
                format!("unknown chunk-id hash {s:?} (expected \"sha256\" or \"blake3\")")
            })
    }
}

/// Fills `out` from the operating system's CSPRNG.
pub(crate) fn random_fill(out: &mut [u8]) -> Result<()> {
    SystemRandom::new().fill(out).map_err(|_| Error::Random)
}

/// An HKDF output length for ring's `expand`.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand(prk, info parts concatenated) to 32 bytes.
pub(crate) fn hkdf_expand32(prk: &hkdf::Prk, info: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    prk.expand(info, OkmLen(KEY_LEN))
        .and_then(|okm| okm.fill(&mut out))
        // HKDF-SHA256 refuses only outputs above 255 * 32 bytes; never hand out a zero key.
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 can always expand to 32 bytes"));
    out
}

/// An AES-256-GCM key from 32 bytes.
pub(crate) fn aes_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // AES_256_GCM takes exactly 32 bytes, which the type guarantees.
    let unbound = UnboundKey::new(&AES_256_GCM, bytes)
        .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for AES-256-GCM"));
    LessSafeKey::new(unbound)
}

/// The repository master key: 32 random bytes. It never changes for the life of a repository;
/// the key ring only wraps it. `Debug` does not print it; dropping it overwrites it (best effort:
/// copies made by the optimiser or the OS are out of our reach).
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// A fresh master key from the system CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        random_fill(&mut bytes)?;
        Ok(MasterKey(bytes))
    }

    /// A master key from known bytes: for test vectors and key-escrow tooling. Normal code gets
    /// its master key from [`MasterKey::generate`] or [`KeyRing::unlock`](crate::KeyRing::unlock).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The HKDF pseudo-random key every subkey is expanded from.
    pub(crate) fn prk(&self) -> hkdf::Prk {
        hkdf::Salt::new(hkdf::HKDF_SHA256, MASTER_HKDF_SALT).extract(&self.0)
    }

    /// Subkey for `info` (one of the `INFO_*` strings).
    pub(crate) fn subkey(&self, info: &[u8]) -> [u8; KEY_LEN] {
        hkdf_expand32(&self.prk(), &[info])
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// A keyed-BLAKE3 chunk-id key; overwritten on drop (best effort, as [`MasterKey`]).
struct Blake3Key([u8; KEY_LEN]);

impl Drop for Blake3Key {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// The chunk-id key of an encrypted repository, one per [`ChunkIdHash`].
enum ChunkIdKey {
    HmacSha256(hmac::Key),
    Blake3(Blake3Key),
}

impl ChunkIdKey {
    fn derive(master: &MasterKey, hash: ChunkIdHash) -> Self {
        match hash {
            ChunkIdHash::Sha256 => ChunkIdKey::HmacSha256(hmac::Key::new(
                hmac::HMAC_SHA256,
                &master.subkey(INFO_CHUNK_ID),
            )),
            ChunkIdHash::Blake3 => {
                ChunkIdKey::Blake3(Blake3Key(master.subkey(INFO_CHUNK_ID_BLAKE3)))
            }
        }
    }
}

/// Keys derived from the master key for an encrypted repository.
struct Keys {
    chunk_id: ChunkIdKey,
    /// The data key, used directly as an HKDF PRK for session keys (it is itself an HKDF
    /// output, hence uniform).
    data: hkdf::Prk,
    fingerprint: [u8; KEY_LEN],
    sessions: Mutex<VecDeque<([u8; SESSION_ID_LEN], Arc<LessSafeKey>)>>,
}

impl Keys {
    fn session_key(&self, sid: &[u8; SESSION_ID_LEN]) -> LessSafeKey {
        aes_key(&hkdf_expand32(&self.data, &[INFO_SESSION, sid]))
    }

    fn cached_session_key(&self, sid: &[u8; SESSION_ID_LEN]) -> Arc<LessSafeKey> {
        // A poisoned lock only means another thread panicked while holding a cache of derived
        // values; the cache stays consistent, so keep using it.
        let mut cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pos) = cache.iter().position(|(id, _)| id == sid) {
            if let Some(entry) = cache.remove(pos) {
                let key = Arc::clone(&entry.1);
                cache.push_front(entry);
                return key;
            }
        }
        let key = Arc::new(self.session_key(sid));
        if cache.len() >= SESSION_CACHE_LEN {
            cache.pop_back();
        }
        cache.push_front((*sid, Arc::clone(&key)));
        key
    }
}

/// The cryptography of one repository: chunk ids, sealing, opening.
///
/// Cheap to clone (shared state); `Debug` prints no key material.
#[derive(Clone)]
pub struct RepoCrypto {
    keys: Option<Arc<Keys>>,
    chunk_id_hash: ChunkIdHash,
}

impl fmt::Debug for RepoCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoCrypto")
            .field("encryption", &self.encryption())
            .field("chunk_id_hash", &self.chunk_id_hash)
            .finish_non_exhaustive()
    }
}

impl RepoCrypto {
    /// An unencrypted repository with SHA-256 chunk ids (repositories created before the
    /// chunk-id hash was recorded); sealing is the identity.
    pub fn none() -> Self {
        Self::none_with(ChunkIdHash::Sha256)
    }

    /// An unencrypted repository whose chunk ids are `hash` of the data (SHA-256 or BLAKE3);
    /// sealing is the identity.
    pub fn none_with(hash: ChunkIdHash) -> Self {
        RepoCrypto {
            keys: None,
            chunk_id_hash: hash,
        }
    }

    /// An encrypted repository keyed by `master` with HMAC-SHA256 chunk ids (repositories
    /// created before the chunk-id hash was recorded); see [`with_chunk_id`](Self::with_chunk_id).
    pub fn new(master: &MasterKey) -> Self {
        Self::with_chunk_id(master, ChunkIdHash::Sha256)
    }

    /// An encrypted repository keyed by `master` whose chunk ids are `hash` keyed by a
    /// subkey (HMAC-SHA256 or keyed BLAKE3). Derives the per-purpose subkeys with
    /// HKDF-SHA256 (see `docs/formats/keys.md`); each id algorithm has its own subkey.
    pub fn with_chunk_id(master: &MasterKey, hash: ChunkIdHash) -> Self {
        let keys = Keys {
            chunk_id: ChunkIdKey::derive(master, hash),
            data: hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &master.subkey(INFO_DATA)),
            fingerprint: master.subkey(INFO_FINGERPRINT),
            sessions: Mutex::new(VecDeque::with_capacity(SESSION_CACHE_LEN)),
        };
        RepoCrypto {
            keys: Some(Arc::new(keys)),
            chunk_id_hash: hash,
        }
    }

    /// The hash that names chunks in this repository.
    pub fn chunk_id_hash(&self) -> ChunkIdHash {
        self.chunk_id_hash
    }

    /// Whether this repository encrypts.
    pub fn encryption(&self) -> Encryption {
        if self.keys.is_some() {
            Encryption::Aes256Gcm
        } else {
            Encryption::None
        }
    }

    /// Content id of a chunk. Encrypted: a PRF of the data under a chunk-id subkey
    /// (HMAC-SHA256 or keyed BLAKE3, per [`chunk_id_hash`](Self::chunk_id_hash)), so storage
    /// cannot test for known content. Unencrypted: SHA-256 or BLAKE3 of the data.
    pub fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        match &self.keys {
            Some(keys) => match &keys.chunk_id {
                ChunkIdKey::HmacSha256(key) => to_id(hmac::sign(key, data).as_ref()),
                ChunkIdKey::Blake3(key) => *blake3::keyed_hash(&key.0, data).as_bytes(),
            },
            None => match self.chunk_id_hash {
                ChunkIdHash::Sha256 => to_id(digest::digest(&digest::SHA256, data).as_ref()),
                ChunkIdHash::Blake3 => *blake3::hash(data).as_bytes(),
            },
        }
    }

    /// A public, one-way fingerprint of the master key (HKDF output with its own info string),
    /// `None` when unencrypted. Safe to store in clear: a repository can record it and tell
    /// "this key ring belongs to another repository" before opening any blob.
    pub fn key_fingerprint(&self) -> Option<[u8; 32]> {
        self.keys.as_ref().map(|k| k.fingerprint)
    }

    /// A sealing session for one writer (one backup run): fresh random 128-bit session id, a
    /// session key derived from it by HKDF, 96-bit counter nonces. Nonces therefore never repeat
    /// under one key, whatever the number of writers.
    pub fn sealer(&self) -> Result<Sealer> {
        match &self.keys {
            None => Ok(Sealer { inner: None }),
            Some(keys) => {
                let mut sid = [0u8; SESSION_ID_LEN];
                random_fill(&mut sid)?;
                Ok(Sealer::with_session(keys, sid, 0))
            }
        }
    }

    /// A sealer with a chosen session id and starting counter: for known-answer tests and for
    /// exercising counter exhaustion. Never use a session id twice.
    #[doc(hidden)]
    pub fn sealer_for_tests(&self, sid: [u8; SESSION_ID_LEN], counter: u64) -> Sealer {
        match &self.keys {
            None => Sealer { inner: None },
            Some(keys) => Sealer::with_session(keys, sid, counter),
        }
    }

    /// Opens what any [`Sealer`] of this repository sealed. `aad` must be the bytes given to
    /// `seal` (the repository passes blob kind + blob id). When unencrypted, returns `sealed`
    /// unchanged.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let Some(keys) = &self.keys else {
            return Ok(sealed.to_vec());
        };
        if sealed.len() < SEALED_OVERHEAD {
            return Err(Error::SealedTooShort {
                len: sealed.len(),
                min: SEALED_OVERHEAD,
            });
        }
        let (header, body) = sealed.split_at(SEALED_HEADER_LEN);
        let (version, rest) = header.split_at(1);
        if version[0] != SEALED_VERSION {
            return Err(Error::SealedVersion {
                found: version[0],
                expected: SEALED_VERSION,
            });
        }
        let (sid_bytes, nonce_bytes) = rest.split_at(SESSION_ID_LEN);
        let mut sid = [0u8; SESSION_ID_LEN];
        sid.copy_from_slice(sid_bytes);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(nonce_bytes);
        let key = keys.cached_session_key(&sid);
        let mut buf = body.to_vec();
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(gcm_aad(aad)),
                &mut buf,
            )
            .map_err(|_| Error::SealedAuthentication)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// Like [`open`](Self::open), but decrypts inside `sealed` and returns the plaintext as a
    /// sub-slice of it (no allocation, no copy). On error the contents of `sealed` are
    /// unspecified. When unencrypted, returns `sealed` whole.
    pub fn open_in_place<'a>(&self, aad: &[u8], sealed: &'a mut [u8]) -> Result<&'a mut [u8]> {
        let Some(keys) = &self.keys else {
            return Ok(sealed);
        };
        if sealed.len() < SEALED_OVERHEAD {
            return Err(Error::SealedTooShort {
                len: sealed.len(),
                min: SEALED_OVERHEAD,
            });
        }
        let (header, body) = sealed.split_at_mut(SEALED_HEADER_LEN);
        if header[0] != SEALED_VERSION {
            return Err(Error::SealedVersion {
                found: header[0],
                expected: SEALED_VERSION,
            });
        }
        let mut sid = [0u8; SESSION_ID_LEN];
        sid.copy_from_slice(&header[1..1 + SESSION_ID_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[1 + SESSION_ID_LEN..]);
        let key = keys.cached_session_key(&sid);
        key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(gcm_aad(aad)),
            body,
        )
        .map_err(|_| Error::SealedAuthentication)
    }

    /// Bytes `seal` adds to a plaintext: [`SEALED_OVERHEAD`], or 0 when unencrypted.
    pub fn overhead(&self) -> usize {
        if self.keys.is_some() {
            SEALED_OVERHEAD
        } else {
            0
        }
    }
}

/// A 32-byte id from a SHA-256 or HMAC-SHA256 output (always 32 bytes).
fn to_id(out: &[u8]) -> [u8; 32] {
    let mut id = [0u8; 32];
    id.copy_from_slice(out);
    id
}

/// AES-GCM associated data: the version byte, then the caller's bytes. Binding the version means
/// a future format cannot be confused with this one.
fn gcm_aad(aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + aad.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(aad);
    out
}

struct Session {
    sid: [u8; SESSION_ID_LEN],
    key: LessSafeKey,
    counter: AtomicU64,
}

/// One sealing session (see [`RepoCrypto::sealer`]). `seal` takes `&self`: the counter is
/// atomic, so threads may share one sealer.
pub struct Sealer {
    inner: Option<Session>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Sealer(none)"),
            Some(s) => f
                .debug_struct("Sealer")
                .field("sealed", &s.counter.load(Ordering::Relaxed))
                .finish_non_exhaustive(),
        }
    }
}

impl Sealer {
    fn with_session(keys: &Keys, sid: [u8; SESSION_ID_LEN], counter: u64) -> Self {
        Sealer {
            inner: Some(Session {
                sid,
                key: keys.session_key(&sid),
                counter: AtomicU64::new(counter),
            }),
        }
    }

    /// Seals `plaintext` with `aad` bound to it. Unencrypted: returns a copy of `plaintext`.
    /// Fails with [`Error::SealerExhausted`] after [`MAX_SEALS_PER_SESSION`] messages.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let Some(session) = &self.inner else {
            return Ok(plaintext.to_vec());
        };
        // Reserve a counter value; refuse rather than wrap, so a nonce is never reused.
        let counter = session
            .counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < MAX_SEALS_PER_SESSION).then(|| c + 1)
            })
            .map_err(|_| Error::SealerExhausted {
                limit: MAX_SEALS_PER_SESSION,
            })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());

        let mut out = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&session.sid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = session
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(gcm_aad(aad)),
                &mut out[SEALED_HEADER_LEN..],
            )
            // ring refuses only inputs beyond GCM's per-message limit (about 64 GiB).
            .map_err(|_| Error::PlaintextTooLarge {
                len: plaintext.len(),
            })?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Bytes [`seal_in_place`](Self::seal_in_place) expects in front of the plaintext:
    /// [`SEALED_HEADER_LEN`], or 0 when unencrypted.
    pub fn header_len(&self) -> usize {
        if self.inner.is_some() {
            SEALED_HEADER_LEN
        } else {
            0
        }
    }

    /// Seals without copying: `buf[..header_len()]` is room for the header (its contents are
    /// overwritten) and `buf[header_len()..]` is the plaintext; on return `buf` holds exactly
    /// what [`seal`](Self::seal) would have returned (the tag is appended). Lets a caller
    /// build the plaintext in a reused buffer. Unencrypted: `buf` is left as it is.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        let Some(session) = &self.inner else {
            return Ok(());
        };
        if buf.len() < SEALED_HEADER_LEN {
            return Err(Error::SealedTooShort {
                len: buf.len(),
                min: SEALED_HEADER_LEN,
            });
        }
        let counter = session
            .counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < MAX_SEALS_PER_SESSION).then(|| c + 1)
            })
            .map_err(|_| Error::SealerExhausted {
                limit: MAX_SEALS_PER_SESSION,
            })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());
        buf[0] = SEALED_VERSION;
        buf[1..1 + SESSION_ID_LEN].copy_from_slice(&session.sid);
        buf[1 + SESSION_ID_LEN..SEALED_HEADER_LEN].copy_from_slice(&nonce);
        let plain_len = buf.len() - SEALED_HEADER_LEN;
        let tag = session
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(gcm_aad(aad)),
                &mut buf[SEALED_HEADER_LEN..],
            )
            .map_err(|_| Error::PlaintextTooLarge { len: plain_len })?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Messages sealed so far in this session (0 when unencrypted).
    pub fn sealed_count(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |s| s.counter.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<RepoCrypto>();
        assert_send_sync::<Sealer>();
        assert_send_sync::<MasterKey>();
        assert_send_sync::<Error>();
    }

    #[test]
    fn in_place_forms_match_the_copying_ones() {
        let c = RepoCrypto::new(&MasterKey::from_bytes([7; KEY_LEN]));
        let plain: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        // Same session and counter: seal and seal_in_place give the same bytes.
        let a = c
            .sealer_for_tests([1; SESSION_ID_LEN], 5)
            .seal(b"ad", &plain)
            .unwrap();
        let s = c.sealer_for_tests([1; SESSION_ID_LEN], 5);
        let mut b = vec![0xEE; s.header_len()];
        b.extend_from_slice(&plain);
        s.seal_in_place(b"ad", &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(c.open(b"ad", &a).unwrap(), plain);
        assert_eq!(c.open_in_place(b"ad", &mut b).unwrap(), &plain[..]);
        let mut bad = a.clone();
        bad[40] ^= 1;
        assert!(matches!(
            c.open_in_place(b"ad", &mut bad),
            Err(Error::SealedAuthentication)
        ));
        assert!(c.open_in_place(b"other", &mut a.clone()).is_err());
        let mut short = vec![SEALED_VERSION; SEALED_OVERHEAD - 1];
        assert!(matches!(
            c.open_in_place(b"ad", &mut short),
            Err(Error::SealedTooShort { .. })
        ));
        let none = RepoCrypto::none();
        let s = none.sealer().unwrap();
        assert_eq!(s.header_len(), 0);
        let mut v = plain.clone();
        s.seal_in_place(b"ad", &mut v).unwrap();
        assert_eq!(v, plain);
        assert_eq!(none.open_in_place(b"ad", &mut v).unwrap(), &plain[..]);
    }

    #[test]
    fn subkeys_are_distinct() {
        let m = MasterKey::from_bytes([9; KEY_LEN]);
        let keys = [
            m.subkey(INFO_CHUNK_ID),
            m.subkey(INFO_CHUNK_ID_BLAKE3),
            m.subkey(INFO_DATA),
            m.subkey(INFO_KEYRING_MAC),
            m.subkey(INFO_FINGERPRINT),
        ];
        for (i, a) in keys.iter().enumerate() {
            assert_ne!(a, &[0u8; KEY_LEN]);
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
