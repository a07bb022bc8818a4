#!/usr/bin/env python3
"""Independent derivation of the golden values in golden.rs, from docs/formats/keys.md, using
Python's standard library (hmac, hashlib) and the `cryptography` package (AES-GCM, Argon2id).
BLAKE3 is implemented below in plain Python from the BLAKE3 paper (section 2), and checked
against the BLAKE3 team's published test vectors before it is used.
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

# --- BLAKE3 (hash and keyed_hash, 32-byte output), a straight reading of the paper. ---
B3_IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
B3_PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
CHUNK_START, CHUNK_END, PARENT, ROOT, KEYED_HASH = 1, 2, 4, 8, 16
M32 = 0xFFFFFFFF

def b3_g(v, a, b, c, d, x, y):
    rotr = lambda w, n: ((w >> n) | (w << (32 - n))) & M32
    v[a] = (v[a] + v[b] + x) & M32; v[d] = rotr(v[d] ^ v[a], 16)
    v[c] = (v[c] + v[d]) & M32;     v[b] = rotr(v[b] ^ v[c], 12)
    v[a] = (v[a] + v[b] + y) & M32; v[d] = rotr(v[d] ^ v[a], 8)
    v[c] = (v[c] + v[d]) & M32;     v[b] = rotr(v[b] ^ v[c], 7)

def b3_compress(cv, block, counter, block_len, flags):
    m = list(struct.unpack("<16I", block.ljust(64, b"\0")))
    v = list(cv) + B3_IV[:4] + [counter & M32, counter >> 32, block_len, flags]
    for _ in range(7):
        for i, (a, b, c, d) in enumerate([(0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                                          (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)]):
            b3_g(v, a, b, c, d, m[2 * i], m[2 * i + 1])
        m = [m[j] for j in B3_PERM]
    return [v[i] ^ v[i + 8] for i in range(8)]

def b3_node(key, data, first_chunk, flags):
    """The (cv, block, counter, len, flags) of the subtree over `data`, not yet compressed, so
    that the root can add ROOT."""
    if len(data) <= 1024:
        blocks = [data[i:i + 64] for i in range(0, len(data), 64)] or [b""]
        cv = key
        for n, blk in enumerate(blocks[:-1]):
            cv = b3_compress(cv, blk, first_chunk, 64, flags | (CHUNK_START if n == 0 else 0))
        last = flags | CHUNK_END | (CHUNK_START if len(blocks) == 1 else 0)
        return (cv, blocks[-1], first_chunk, len(blocks[-1]), last)
    chunks = (len(data) + 1023) // 1024
    left = 1 << ((chunks - 1).bit_length() - 1)  # largest power of two below `chunks`
    l = b3_node(key, data[:left * 1024], first_chunk, flags)
    r = b3_node(key, data[left * 1024:], first_chunk + left, flags)
    cvs = struct.pack("<8I", *b3_compress(*l)) + struct.pack("<8I", *b3_compress(*r))
    return (key, cvs, 0, 64, flags | PARENT)

def blake3(data, key=None):
    kw = list(struct.unpack("<8I", key)) if key else B3_IV
    cv, blk, ctr, n, fl = b3_node(kw, data, 0, KEYED_HASH if key else 0)
    return struct.pack("<8I", *b3_compress(cv, blk, ctr, n, fl | ROOT))

# Published vectors (BLAKE3-team/BLAKE3 test_vectors/test_vectors.json: input byte i = i mod 251,
# key "whats the Elvish word for friend"; first 32 bytes of each output).
tv = lambda n: bytes(i % 251 for i in range(n))
TV_KEY = b"whats the Elvish word for friend"
for n, h, k in [
    (0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26"),
    (1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
        "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b"),
    (1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
        "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4"),
    (1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
        "357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69"),
    (3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
        "68dede9bef00ba89e43f31a6825f4cf433389fedae75c04ee9f0cf16a427c95a"),
    (5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff",
        "6ccf1c34753e7a044db80798ecd0782a8f76f33563accaddbfbb2e0ea4b2d024"),
]:
    assert blake3(tv(n)).hex() == h, n
    assert blake3(tv(n), TV_KEY).hex() == k, n

blake3_key = hk_expand32(prk, b"cairn/v1/chunk-id-blake3")
print("BLAKE3_ABC", blake3(b"abc").hex())
print("CHUNK_ID_HELLO_KEYED_BLAKE3", blake3(b"hello", blake3_key).hex())
print("CHUNK_ID_HELLO_PLAIN_BLAKE3", blake3(b"hello").hex())
# A multi-chunk input (a 3-level tree), as real chunks are (256 KiB): bytes i mod 251.
print("CHUNK_ID_10000_KEYED_BLAKE3", blake3(tv(10000), blake3_key).hex())
print("CHUNK_ID_10000_KEYED_SHA256", hmac.new(chunk_key, tv(10000), hashlib.sha256).hexdigest())
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
