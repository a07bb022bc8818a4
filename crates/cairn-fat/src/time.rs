//! DOS date/time fields to [`Timestamp`].
//!
//! FAT stores local time without a zone; this crate reads it as UTC (the only choice that
//! does not depend on the machine doing the backup). exFAT stores an optional UTC offset in
//! 15-minute steps, which is applied when its "valid" bit is set.

use cairn_vfs::Timestamp;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A DOS date (bits 15-9 year since 1980, 8-5 month, 4-0 day) and time (15-11 hours, 10-5
/// minutes, 4-0 two-second units) plus a count of 10 ms units (0..=199, adding up to 1.99 s).
/// `None` for a zero date or fields out of range.
pub(crate) fn dos_to_timestamp(date: u16, time: u16, tens_of_ms: u8) -> Option<Timestamp> {
    if date == 0 {
        return None;
    }
    let year = 1980 + i64::from(date >> 9);
    let month = u32::from((date >> 5) & 0x0F);
    let day = u32::from(date & 0x1F);
    let hour = i64::from(time >> 11);
    let min = i64::from((time >> 5) & 0x3F);
    let sec2 = i64::from(time & 0x1F);
    if !(1..=12).contains(&month) || day == 0 || hour > 23 || min > 59 || sec2 > 29 {
        return None;
    }
    let tens = if tens_of_ms <= 199 { tens_of_ms } else { 0 };
    let secs = days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + min * 60
        + sec2 * 2
        + i64::from(tens / 100);
    Some(Timestamp {
        secs,
        nanos: u32::from(tens % 100) * 10_000_000,
    })
}

/// An exFAT timestamp: the DOS date in the high half, DOS time in the low half, the 10 ms
/// increment, and the UTC offset byte (bit 7 valid, bits 6-0 signed 15-minute steps).
pub(crate) fn exfat_to_timestamp(stamp: u32, tens_of_ms: u8, utc_offset: u8) -> Option<Timestamp> {
    let date = u16::try_from(stamp >> 16).ok()?;
    let time = u16::try_from(stamp & 0xFFFF).ok()?;
    let mut ts = dos_to_timestamp(date, time, tens_of_ms)?;
    if utc_offset & 0x80 != 0 {
        // Sign-extend the 7-bit field.
        let steps = i64::from(i8::from_ne_bytes([utc_offset << 1]) >> 1);
        ts.secs -= steps * 15 * 60;
    }
    Some(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_epoch_and_known_date() {
        // 1980-01-01 00:00:00
        assert_eq!(
            dos_to_timestamp(0x0021, 0, 0),
            Some(Timestamp {
                secs: 315_532_800,
                nanos: 0
            })
        );
        // 2023-11-14 22:13:20 (1700000000): year 43, month 11, day 14; 22:13:20
        let date = (43 << 9) | (11 << 5) | 14;
        let time = (22 << 11) | (13 << 5) | 10;
        assert_eq!(
            dos_to_timestamp(date, time, 0).map(|t| t.secs),
            Some(1_700_000_000)
        );
        assert_eq!(
            dos_to_timestamp(date, time, 150),
            Some(Timestamp {
                secs: 1_700_000_001,
                nanos: 500_000_000
            })
        );
        assert_eq!(dos_to_timestamp(date & !0x1F, time, 0), None);
    }

    #[test]
    fn exfat_offsets() {
        let date: u32 = (43 << 9) | (11 << 5) | 14;
        let time: u32 = (23 << 11) | (13 << 5) | 10;
        // local 23:13:20 at UTC+1 (4 steps) is 22:13:20 UTC
        let ts = exfat_to_timestamp((date << 16) | time, 0, 0x80 | 4).unwrap();
        assert_eq!(ts.secs, 1_700_000_000);
        // UTC-1 (-4 = 0x7C in 7 bits): local 21:13:20 is 22:13:20 UTC
        let time: u32 = (21 << 11) | (13 << 5) | 10;
        let ts = exfat_to_timestamp((date << 16) | time, 0, 0x80 | 0x7C).unwrap();
        assert_eq!(ts.secs, 1_700_000_000);
    }

    proptest::proptest! {
        /// Encode a calendar time into DOS fields, decode, and print it with cairn-vfs's
        /// own (independent) calendar code: the text must be the time we started from.
        #[test]
        fn dos_round_trip(y in 1980u16..=2107, mo in 1u16..=12, d in 1u16..=28, h in 0u16..24,
                          mi in 0u16..60, s2 in 0u16..30, tens in 0u8..200) {
            let date = ((y - 1980) << 9) | (mo << 5) | d;
            let time = (h << 11) | (mi << 5) | s2;
            let ts = dos_to_timestamp(date, time, tens).unwrap();
            let secs = u32::from(s2) * 2 + u32::from(tens) / 100;
            let mut want = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{secs:02}");
            if tens % 100 != 0 {
                want.push_str(&format!(".{:09}", u32::from(tens % 100) * 10_000_000));
            }
            want.push('Z');
            // At most 58 s + 1.99 s: never rolls into the next minute.
            proptest::prop_assert_eq!(ts.to_rfc3339(), want);
            // exFAT: the same local time at offset k * 15 min is k * 900 s earlier in UTC.
            let k: i8 = 8;
            let ex = exfat_to_timestamp((u32::from(date) << 16) | u32::from(time), tens, 0x80 | 8).unwrap();
            proptest::prop_assert_eq!(ex.secs, ts.secs - i64::from(k) * 900);
        }
    }
}
