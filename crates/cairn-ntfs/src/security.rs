//! Self-relative Windows security descriptors: owner, group and DACL as strings.

use std::fmt;

use cairn_io::le::{u16_le, u32_le};

use crate::error::{Error, Result};

/// Most sub-authorities a SID may have (Windows' SID_MAX_SUB_AUTHORITIES).
const MAX_SUB_AUTHORITIES: usize = 15;

/// A decoded security descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDescriptor {
    /// Control flags (SE_DACL_PRESENT = 0x0004, SE_SELF_RELATIVE = 0x8000, ...).
    pub control: u16,
    /// Owner SID (`S-1-5-32-544`), if present.
    pub owner: Option<String>,
    /// Primary group SID, if present.
    pub group: Option<String>,
    /// Discretionary ACL entries, or `None` when the descriptor has no DACL (everyone has
    /// access).
    pub dacl: Option<Vec<Ace>>,
}

/// One access-control entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    /// ACE type: 0 allow, 1 deny, 2 audit, 5/6/7 object variants, others kept raw.
    pub ace_type: u8,
    /// Inheritance flags (OBJECT_INHERIT 0x01, CONTAINER_INHERIT 0x02, INHERIT_ONLY 0x08,
    /// INHERITED 0x10, ...).
    pub flags: u8,
    /// Access mask.
    pub mask: u32,
    /// The trustee, or `None` for ACE types this decoder does not know.
    pub sid: Option<String>,
}

impl fmt::Display for Ace {
    /// `allow 0x001f01ff flags=0x03 S-1-5-18`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.ace_type {
            0 => "allow",
            1 => "deny",
            2 => "audit",
            5 => "allow-object",
            6 => "deny-object",
            7 => "audit-object",
            _ => "type",
        };
        if kind == "type" {
            write!(f, "type{}", self.ace_type)?;
        } else {
            f.write_str(kind)?;
        }
        write!(f, " {:#010x} flags={:#04x}", self.mask, self.flags)?;
        if let Some(s) = &self.sid {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

fn bad(msg: String) -> Error {
    Error::BadSecurityDescriptor(msg)
}

/// Decodes the SID at `off` of `b` to `S-1-...`; returns it and its length.
pub fn decode_sid(b: &[u8], off: usize) -> Result<(String, usize)> {
    if off.checked_add(8).is_none_or(|e| e > b.len()) {
        return Err(bad(format!(
            "SID at {off} runs past the end ({} bytes)",
            b.len()
        )));
    }
    let rev = b[off];
    let n = usize::from(b[off + 1]);
    if rev != 1 || n > MAX_SUB_AUTHORITIES {
        return Err(bad(format!(
            "SID at {off}: revision {rev}, {n} sub-authorities"
        )));
    }
    let len = 8 + 4 * n;
    if off + len > b.len() {
        return Err(bad(format!(
            "SID at {off} of {len} bytes runs past the end"
        )));
    }
    let mut auth = 0u64;
    for &x in &b[off + 2..off + 8] {
        auth = (auth << 8) | u64::from(x);
    }
    let mut s = if auth >= 1 << 32 {
        format!("S-1-{auth:#014x}")
    } else {
        format!("S-1-{auth}")
    };
    for i in 0..n {
        s.push_str(&format!("-{}", u32_le(b, off + 8 + 4 * i)));
    }
    Ok((s, len))
}

fn decode_acl(b: &[u8], off: usize) -> Result<Vec<Ace>> {
    if off.checked_add(8).is_none_or(|e| e > b.len()) {
        return Err(bad(format!("ACL at {off} runs past the end")));
    }
    let size = usize::from(u16_le(b, off + 2));
    let count = usize::from(u16_le(b, off + 4));
    if size < 8 || off + size > b.len() {
        return Err(bad(format!(
            "ACL at {off} of {size} bytes runs past the end"
        )));
    }
    let acl = &b[off..off + size];
    let mut aces = Vec::with_capacity(count.min(size / 8));
    let mut pos = 8usize;
    for i in 0..count {
        if pos + 4 > acl.len() {
            return Err(bad(format!("ACE {i} at {pos} runs past the ACL")));
        }
        let ace_type = acl[pos];
        let flags = acl[pos + 1];
        let ace_size = usize::from(u16_le(acl, pos + 2));
        if ace_size < 8 || pos + ace_size > acl.len() {
            return Err(bad(format!("ACE {i} at {pos} has size {ace_size}")));
        }
        let ace = &acl[pos..pos + ace_size];
        let mask = u32_le(ace, 4);
        let sid = match ace_type {
            0..=3 | 9..=10 | 0x11..=0x13 => Some(decode_sid(ace, 8)?.0),
            5..=8 | 0x0B..=0x10 => {
                // Object ACE: flags, then up to two GUIDs, then the SID.
                if ace.len() < 12 {
                    return Err(bad(format!("object ACE {i} too short")));
                }
                let of = u32_le(ace, 8);
                let mut p = 12;
                if of & 1 != 0 {
                    p += 16;
                }
                if of & 2 != 0 {
                    p += 16;
                }
                Some(decode_sid(ace, p)?.0)
            }
            _ => None,
        };
        aces.push(Ace {
            ace_type,
            flags,
            mask,
            sid,
        });
        pos += ace_size;
    }
    Ok(aces)
}

/// Decodes a self-relative security descriptor (as found in $Secure:$SDS or the
/// $SECURITY_DESCRIPTOR attribute).
///
/// ```
/// // Owner S-1-5-18 only, no DACL.
/// let mut sd = vec![1u8, 0, 0x00, 0x80, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// sd.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]);
/// let d = cairn_ntfs::decode_security_descriptor(&sd).unwrap();
/// assert_eq!(d.owner.as_deref(), Some("S-1-5-18"));
/// assert!(d.dacl.is_none());
/// ```
pub fn decode_security_descriptor(b: &[u8]) -> Result<SecurityDescriptor> {
    if b.len() < 20 {
        return Err(bad(format!("{} bytes, header needs 20", b.len())));
    }
    if b[0] != 1 {
        return Err(bad(format!("revision {} (expected 1)", b[0])));
    }
    let control = u16_le(b, 2);
    if control & 0x8000 == 0 {
        return Err(bad("not self-relative (control bit 0x8000 clear)".into()));
    }
    let at = |o: usize| usize::try_from(u32_le(b, o)).unwrap_or(usize::MAX);
    let (owner_off, group_off, dacl_off) = (at(4), at(8), at(16));
    let owner = if owner_off != 0 {
        Some(decode_sid(b, owner_off)?.0)
    } else {
        None
    };
    let group = if group_off != 0 {
        Some(decode_sid(b, group_off)?.0)
    } else {
        None
    };
    let dacl = if control & 0x0004 != 0 && dacl_off != 0 {
        Some(decode_acl(b, dacl_off)?)
    } else {
        None
    };
    Ok(SecurityDescriptor {
        control,
        owner,
        group,
        dacl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_sid(auth: u64, subs: &[u32]) -> Vec<u8> {
        let mut v = vec![1, u8::try_from(subs.len()).unwrap()];
        v.extend_from_slice(&auth.to_be_bytes()[2..]);
        for s in subs {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    fn sid_string(auth: u64, subs: &[u32]) -> String {
        let mut s = format!("S-1-{auth}");
        for x in subs {
            s.push_str(&format!("-{x}"));
        }
        s
    }

    /// Test-only encoder: owner, group and a DACL of allow/deny ACEs.
    fn encode_sd(owner: &[u8], group: &[u8], aces: &[(u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
        let mut acl = vec![2u8, 0, 0, 0, 0, 0, 0, 0];
        for (t, fl, mask, sid) in aces {
            let size = u16::try_from(8 + sid.len()).unwrap();
            acl.extend_from_slice(&[*t, *fl]);
            acl.extend_from_slice(&size.to_le_bytes());
            acl.extend_from_slice(&mask.to_le_bytes());
            acl.extend_from_slice(sid);
        }
        let acl_len = u16::try_from(acl.len()).unwrap();
        acl[2..4].copy_from_slice(&acl_len.to_le_bytes());
        acl[4..6].copy_from_slice(&u16::try_from(aces.len()).unwrap().to_le_bytes());
        let owner_off = 20u32;
        let group_off = owner_off + u32::try_from(owner.len()).unwrap();
        let dacl_off = group_off + u32::try_from(group.len()).unwrap();
        let mut sd = vec![1u8, 0];
        sd.extend_from_slice(&0x8004u16.to_le_bytes());
        for o in [owner_off, group_off, 0, dacl_off] {
            sd.extend_from_slice(&o.to_le_bytes());
        }
        sd.extend_from_slice(owner);
        sd.extend_from_slice(group);
        sd.extend_from_slice(&acl);
        sd
    }

    #[test]
    fn typical_descriptor() {
        let sd = encode_sd(
            &encode_sid(5, &[32, 544]),
            &encode_sid(5, &[18]),
            &[
                (0, 3, 0x001f_01ff, encode_sid(5, &[18])),
                (1, 0, 1, encode_sid(1, &[0])),
            ],
        );
        let d = decode_security_descriptor(&sd).unwrap();
        assert_eq!(d.owner.as_deref(), Some("S-1-5-32-544"));
        assert_eq!(d.group.as_deref(), Some("S-1-5-18"));
        let dacl = d.dacl.unwrap();
        assert_eq!(dacl[0].to_string(), "allow 0x001f01ff flags=0x03 S-1-5-18");
        assert_eq!(dacl[1].to_string(), "deny 0x00000001 flags=0x00 S-1-1-0");
    }

    #[test]
    fn hostile_descriptors() {
        assert!(matches!(
            decode_security_descriptor(&[1; 10]),
            Err(Error::BadSecurityDescriptor(_))
        ));
        let mut sd = encode_sd(&encode_sid(5, &[18]), &encode_sid(5, &[18]), &[]);
        sd[4] = 200; // owner offset past the end
        assert!(matches!(
            decode_security_descriptor(&sd),
            Err(Error::BadSecurityDescriptor(_))
        ));
        let mut sd = encode_sd(&encode_sid(5, &[18]), &encode_sid(5, &[18]), &[]);
        sd[21] = 200; // sub-authority count
        assert!(matches!(
            decode_security_descriptor(&sd),
            Err(Error::BadSecurityDescriptor(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(
            owner in (0u64..1 << 32, proptest::collection::vec(any::<u32>(), 0..6)),
            aces in proptest::collection::vec((0u8..2, any::<u8>(), any::<u32>(), 0u64..100, proptest::collection::vec(any::<u32>(), 0..5)), 0..8),
        ) {
            let enc_aces: Vec<_> = aces.iter().map(|(t, f, m, a, s)| (*t, *f, *m, encode_sid(*a, s))).collect();
            let sd = encode_sd(&encode_sid(owner.0, &owner.1), &encode_sid(5, &[18]), &enc_aces);
            let d = decode_security_descriptor(&sd).unwrap();
            prop_assert_eq!(d.owner, Some(sid_string(owner.0, &owner.1)));
            let dacl = d.dacl.unwrap();
            prop_assert_eq!(dacl.len(), aces.len());
            for (got, (t, f, m, a, s)) in dacl.iter().zip(&aces) {
                prop_assert_eq!(got.ace_type, *t);
                prop_assert_eq!(got.flags, *f);
                prop_assert_eq!(got.mask, *m);
                prop_assert_eq!(got.sid.clone(), Some(sid_string(*a, s)));
            }
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_security_descriptor(&b);
        }
    }
}
