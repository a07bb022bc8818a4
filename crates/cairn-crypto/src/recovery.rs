//! Recovery keys: high-entropy secrets a human can write down and type back.
//!
//! Form: 26 data characters (130 random bits) and 2 check characters, Crockford base32, in 7
//! groups of 4 joined by `-`, e.g. `7K2M-Q9XD-...`. Parsing ignores case, spaces and dashes,
//! reads `O` as `0` and `I`/`L` as `1`, and reports a typo (failed check) distinctly from a
//! wrong key.

use ring::digest;

use crate::error::{Error, Result};
use crate::repo::random_fill;

/// Crockford base32: no I, L, O, U, so nothing looks like a digit or invites an obscenity.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Data characters: 26 x 5 bits = 130 bits of entropy, beyond brute force without a slow KDF.
pub const RECOVERY_DATA_CHARS: usize = 26;
/// Check characters: 10 bits, so a typo is caught with probability 1 - 2^-10.
const CHECK_CHARS: usize = 2;
const TOTAL_CHARS: usize = RECOVERY_DATA_CHARS + CHECK_CHARS;
const GROUP: usize = 4;
/// Domain separation of the check characters.
const CHECK_DOMAIN: &[u8] = b"cairn/v1/recovery-check";
/// Cap on the text we look at: a recovery key with generous spacing is far below this.
const MAX_RECOVERY_INPUT: usize = 256;

fn check_chars(data: &[u8]) -> [u8; CHECK_CHARS] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(CHECK_DOMAIN);
    ctx.update(data);
    let d = ctx.finish();
    let h = d.as_ref();
    let bits = (u16::from(h[0]) << 2) | (u16::from(h[1]) >> 6);
    [
        ALPHABET[usize::from(bits >> 5)],
        ALPHABET[usize::from(bits & 31)],
    ]
}

/// A fresh recovery key from the system CSPRNG, formatted for display.
pub fn generate_recovery_key() -> Result<String> {
    let mut raw = [0u8; RECOVERY_DATA_CHARS];
    random_fill(&mut raw)?;
    // 256 is a multiple of 32, so `b & 31` is uniform.
    let data: Vec<u8> = raw.iter().map(|b| ALPHABET[usize::from(b & 31)]).collect();
    let mut all = data.clone();
    all.extend_from_slice(&check_chars(&data));
    let groups: Vec<String> = all
        .chunks(GROUP)
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    Ok(groups.join("-"))
}

/// Parses a recovery key as typed and returns its 26 canonical data characters (the KDF input).
pub(crate) fn parse_recovery_key(text: &str) -> Result<[u8; RECOVERY_DATA_CHARS]> {
    if text.len() > MAX_RECOVERY_INPUT {
        return Err(Error::RecoveryKeyFormat {
            detail: format!(
                "{} bytes is far too long (expected {TOTAL_CHARS} characters)",
                text.len()
            ),
        });
    }
    let mut chars = Vec::with_capacity(TOTAL_CHARS);
    for (pos, c) in text.chars().enumerate() {
        if c.is_whitespace() || c == '-' {
            continue;
        }
        let canon = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        let Ok(byte) = u8::try_from(canon) else {
            return Err(bad_char(c, pos));
        };
        if !ALPHABET.contains(&byte) {
            return Err(bad_char(c, pos));
        }
        chars.push(byte);
    }
    if chars.len() != TOTAL_CHARS {
        return Err(Error::RecoveryKeyFormat {
            detail: format!(
                "{} characters (expected {TOTAL_CHARS}, dashes and spaces ignored)",
                chars.len()
            ),
        });
    }
    let (data, check) = chars.split_at(RECOVERY_DATA_CHARS);
    if check != check_chars(data) {
        return Err(Error::RecoveryKeyFormat {
            detail: "check characters do not match: probably a typo".to_owned(),
        });
    }
    let mut out = [0u8; RECOVERY_DATA_CHARS];
    out.copy_from_slice(data);
    Ok(out)
}

fn bad_char(c: char, pos: usize) -> Error {
    Error::RecoveryKeyFormat {
        detail: format!("character {c:?} at position {pos} is not in the recovery-key alphabet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_look_right() {
        let key = generate_recovery_key().unwrap();
        assert_eq!(key.len(), TOTAL_CHARS + TOTAL_CHARS / GROUP - 1);
        assert_eq!(key.split('-').count(), TOTAL_CHARS / GROUP);
        parse_recovery_key(&key).unwrap();
        // Lower case, spaces instead of dashes.
        let relaxed = key.to_lowercase().replace('-', " ");
        assert_eq!(
            parse_recovery_key(&relaxed).unwrap(),
            parse_recovery_key(&key).unwrap()
        );
    }

    #[test]
    fn confusable_letters_are_read_as_digits() {
        let key = generate_recovery_key().unwrap();
        let swapped = key.replace('0', "O").replace('1', "l");
        assert_eq!(
            parse_recovery_key(&swapped).unwrap(),
            parse_recovery_key(&key).unwrap()
        );
    }

    #[test]
    fn typos_are_caught() {
        let key = generate_recovery_key().unwrap();
        let mut caught = 0;
        for pos in (0..key.len()).filter(|&i| key.as_bytes()[i] != b'-') {
            let mut bytes = key.clone().into_bytes();
            bytes[pos] = if bytes[pos] == b'Z' { b'Y' } else { b'Z' };
            let typo = String::from_utf8(bytes).unwrap();
            if matches!(
                parse_recovery_key(&typo),
                Err(Error::RecoveryKeyFormat { .. })
            ) {
                caught += 1;
            }
        }
        // A 10-bit check misses a given typo with probability 2^-10; over 28 typos allow one.
        assert!(caught >= TOTAL_CHARS - 1, "caught {caught}");
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        for bad in [
            "",
            "ABCD",
            "U".repeat(28).as_str(),
            &"A".repeat(300),
            "ÄBCD",
        ] {
            assert!(matches!(
                parse_recovery_key(bad),
                Err(Error::RecoveryKeyFormat { .. })
            ));
        }
    }
}
