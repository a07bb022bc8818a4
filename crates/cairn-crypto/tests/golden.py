#!/usr/bin/env python3
"""Independent derivation of the golden values in golden.rs, from docs/formats/keys.md, using
Python's standard library (hmac, hashlib) and the `cryptography` package (AES-GCM, Argon2id).
Run: python3 golden.py > /dev/stdout and paste."""
import hashlib, hmac, struct, zlib
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

def hk_extract(salt, ikm): return hmac.new(salt, ikm, hashlib.sha256).digest()
def hk_expand32(prk, info): return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

master = bytes(range(32))
prk = hk_extract(b"cairn/v1/master", master)
chunk_key = hk_expand32(prk, b"cairn/v1/chunk-id")
data_key = hk_expand32(prk, b"cairn/v1/data")
mac_key = hk_expand32(prk, b"cairn/v1/keyring-mac")
fingerprint = hk_expand32(prk, b"cairn/v1/key-fingerprint")
print("CHUNK_ID_HELLO_KEYED", hmac.new(chunk_key, b"hello", hashlib.sha256).hexdigest())
print("CHUNK_ID_HELLO_PLAIN", hashlib.sha256(b"hello").hexdigest())
print("FINGERPRINT", fingerprint.hex())

sid = bytes(range(0x10, 0x20))
session_key = hk_expand32(data_key, b"cairn/v1/seal-session" + sid)
counter = 5
nonce = b"\0" * 4 + struct.pack(">Q", counter)
aad = b"chunk/0123"
pt = b"cairn sealed test vector"
sealed = bytes([1]) + sid + nonce + AESGCM(session_key).encrypt(nonce, pt, bytes([1]) + aad)
print("SEALED", sealed.hex())

# A keys file with three slots, written from the spec.
def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])

ALPH = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
rdata = "".join(ALPH[i % 32] for i in range(7, 7 + 26 * 3, 3))
h = hashlib.sha256(b"cairn/v1/recovery-check" + rdata.encode()).digest()
bits = (h[0] << 2) | (h[1] >> 6)
rfull = rdata + ALPH[bits >> 5] + ALPH[bits & 31]
recovery = "-".join(rfull[i:i + 4] for i in range(0, 28, 4))
print("RECOVERY_KEY", recovery)
keyfile = bytes(range(100, 164))
passphrase = "pässphrase"

def slot(sid_, kind, params, salt, label, created, nonce_):
    m, t, p = params
    if kind == 0:
        kek = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(passphrase.encode())
    elif kind == 1:
        kek = hk_expand32(hk_extract(salt, keyfile), b"cairn/v1/kek/key-file")
    else:
        kek = hk_expand32(hk_extract(salt, rdata.encode()), b"cairn/v1/kek/recovery-key")
    wrap_aad = b"cairn/v1/slot-wrap" + struct.pack("<IBIII", sid_, kind, m, t, p) + salt
    ct = AESGCM(kek).encrypt(nonce_, master, wrap_aad)
    enc = varint(sid_) + varint(kind)
    if kind == 0:
        enc += varint(m) + varint(t) + varint(p)
    enc += salt + varint(len(label.encode())) + label.encode() + varint(created) + nonce_ + ct
    return enc

slots = [
    slot(0, 0, (16, 2, 1), bytes([0xA0 + i % 16 for i in range(32)]), "admin", 1_800_000_000, bytes(range(12))),
    slot(3, 1, (0, 0, 0), bytes([0xB0 + i % 16 for i in range(32)]), "offsite key file", 1_800_000_300, bytes(range(12, 24))),
    slot(4, 2, (0, 0, 0), bytes([0xC0 + i % 16 for i in range(32)]), "recovery ✓", 1_800_000_600, bytes(range(24, 36))),
]
body = varint(5) + varint(len(slots)) + b"".join(slots)
mac = hmac.new(mac_key, body, hashlib.sha256).digest()
payload = body + mac
head = b"CAIRNKEY" + struct.pack("<HHI", 1, 0, len(payload))
crc = zlib.crc32(head + payload)
keys_file = head + struct.pack("<I", crc) + payload
print("KEYS_FILE", keys_file.hex())
print("PASSPHRASE", passphrase)
print("KEY_FILE", keyfile.hex())
