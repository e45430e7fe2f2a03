//! Timestamps as Segment clients send them, parsed leniently and printed strictly.
//!
//! Clients in the wild send ISO-8601 with `Z` or a numeric offset, with anything from no fraction
//! to nanoseconds, sometimes a one-digit month or day (Segment's own documentation has
//! `2015-2-23T22:28:55.111Z`), and sometimes no offset at all (Python's naive `isoformat()`), which
//! we read as UTC rather than lose the event. Output is always RFC 3339 in UTC, so that parsing
//! what we print gives back the same instant.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant with nanosecond precision, between the years 0000 and 9999 (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Why a timestamp string could not be read; the text goes into rejection reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimestampError(&'static str);

const SECS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z as Unix seconds.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

impl Timestamp {
    /// The Unix epoch.
    pub const UNIX_EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// Builds a timestamp from Unix seconds and nanoseconds; `None` outside the years 0000–9999
    /// or when `nanos` is not below one second.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Timestamp> {
        ((MIN_SECS..=MAX_SECS).contains(&secs) && nanos < 1_000_000_000)
            .then_some(Timestamp { secs, nanos })
    }

    /// Builds a timestamp from Unix milliseconds.
    pub fn from_unix_millis(millis: i64) -> Option<Timestamp> {
        let secs = millis.div_euclid(1000);
        let nanos = u32::try_from(millis.rem_euclid(1000) * 1_000_000).ok()?;
        Timestamp::from_unix(secs, nanos)
    }

    /// The current time from the system clock.
    #[allow(clippy::cast_possible_wrap)]
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// Whole seconds since the Unix epoch (floor).
    pub fn unix_secs(self) -> i64 {
        self.secs
    }

    /// The sub-second part in nanoseconds.
    pub fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// Milliseconds since the Unix epoch (floor).
    pub fn unix_millis(self) -> i64 {
        self.secs * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// Builds a timestamp from nanoseconds since the Unix epoch, or `None` out of range.
    pub fn from_unix_nanos(nanos: i128) -> Option<Timestamp> {
        let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
        let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
        Timestamp::from_unix(secs, sub)
    }

    /// This instant moved by `delta_nanos` (may be negative), or `None` out of range.
    pub fn checked_add_nanos(self, delta_nanos: i128) -> Option<Timestamp> {
        Timestamp::from_unix_nanos(self.unix_nanos().checked_add(delta_nanos)?)
    }

    /// The calendar year (UTC).
    pub fn year(self) -> i64 {
        civil_from_days(self.secs.div_euclid(SECS_PER_DAY)).0
    }

    /// Parses the ISO-8601 forms that Segment clients send.
    ///
    /// Accepted: `YYYY-M-DTh:mm`, optional `:ss`, optional `.` and 1–9 fraction digits, then `Z`,
    /// `±hh:mm`, `±hhmm`, `±hh` or nothing (UTC). `T` may be lower case or a space. A bare date
    /// means midnight UTC.
    pub fn parse(s: &str) -> Result<Timestamp, TimestampError> {
        let mut p = Cursor {
            b: s.as_bytes(),
            i: 0,
        };
        let year = p
            .digits(4, 4)
            .ok_or(TimestampError("expected a four-digit year"))?;
        p.expect(b'-')
            .ok_or(TimestampError("expected `-` after the year"))?;
        let month = p.digits(1, 2).ok_or(TimestampError("expected a month"))?;
        p.expect(b'-')
            .ok_or(TimestampError("expected `-` after the month"))?;
        let day = p.digits(1, 2).ok_or(TimestampError("expected a day"))?;
        if !(1..=12).contains(&month) {
            return Err(TimestampError("month out of range"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(TimestampError("day out of range for the month"));
        }
        let days = days_from_civil(year, month, day);
        if p.at_end() {
            return Ok(Timestamp {
                secs: days * SECS_PER_DAY,
                nanos: 0,
            });
        }
        if !matches!(p.next(), Some(b'T' | b't' | b' ')) {
            return Err(TimestampError("expected `T` between date and time"));
        }
        let hour = p
            .digits(2, 2)
            .ok_or(TimestampError("expected a two-digit hour"))?;
        p.expect(b':')
            .ok_or(TimestampError("expected `:` after the hour"))?;
        let minute = p
            .digits(2, 2)
            .ok_or(TimestampError("expected two-digit minutes"))?;
        let mut second = 0;
        let mut nanos = 0;
        if p.peek() == Some(b':') {
            p.i += 1;
            second = p
                .digits(2, 2)
                .ok_or(TimestampError("expected two-digit seconds"))?;
            if matches!(p.peek(), Some(b'.' | b',')) {
                p.i += 1;
                nanos = p.fraction()?;
            }
        }
        // A leap second (:60) is folded into the next second's start rather than rejected.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(TimestampError("time of day out of range"));
        }
        let offset = p.offset()?;
        if !p.at_end() {
            return Err(TimestampError("unexpected characters after the timestamp"));
        }
        let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
        Timestamp::from_unix(secs, nanos).ok_or(TimestampError("timestamp out of range"))
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn at_end(&self) -> bool {
        self.i == self.b.len()
    }
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    /// Reads between `min` and `max` ASCII digits as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut n = 0i64;
        while self.i - start < max {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    n = n * 10 + i64::from(c - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        (self.i - start >= min).then_some(n)
    }
    fn fraction(&mut self) -> Result<u32, TimestampError> {
        let start = self.i;
        let mut nanos = 0u32;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.i - start == 9 {
                return Err(TimestampError("more than 9 fraction digits"));
            }
            nanos = nanos * 10 + u32::from(c - b'0');
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return Err(TimestampError("expected digits after the decimal point"));
        }
        Ok(nanos * 10u32.pow(u32::try_from(9 - n).unwrap_or(0)))
    }
    /// The UTC offset in seconds (east positive).
    fn offset(&mut self) -> Result<i64, TimestampError> {
        let sign = match self.peek() {
            None => return Ok(0),
            Some(b'Z' | b'z') => {
                self.i += 1;
                return Ok(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            Some(_) => return Err(TimestampError("expected `Z` or a UTC offset")),
        };
        self.i += 1;
        let hours = self
            .digits(2, 2)
            .ok_or(TimestampError("expected a two-digit offset hour"))?;
        let minutes = if self.at_end() {
            0
        } else {
            if self.peek() == Some(b':') {
                self.i += 1;
            }
            self.digits(2, 2)
                .ok_or(TimestampError("expected two-digit offset minutes"))?
        };
        if hours > 23 || minutes > 59 {
            return Err(TimestampError("UTC offset out of range"));
        }
        Ok(sign * (hours * 3600 + minutes * 60))
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Timestamp {
    /// RFC 3339 in UTC, with 0, 3, 6 or 9 fraction digits, the fewest that keep the value; as
    /// [`Display`](fmt::Display) writes it. Written digit by digit into a buffer on the stack:
    /// the collector writes several timestamps per stored event.
    pub fn rfc3339(&self) -> Rfc3339 {
        fn put(buf: &mut [u8], at: usize, width: usize, mut v: u64) {
            for i in (0..width).rev() {
                buf[at + i] = b'0' + u8::try_from(v % 10).expect("a digit");
                v /= 10;
            }
        }
        let days = self.secs.div_euclid(SECS_PER_DAY);
        let sod = u64::try_from(self.secs.rem_euclid(SECS_PER_DAY)).expect("non-negative");
        let (y, mo, d) = civil_from_days(days);
        let mut buf = *b"0000-00-00T00:00:00.000000000Z";
        // The year is 0..=9999 by construction, so every part fits its width.
        put(&mut buf, 0, 4, u64::try_from(y).expect("year 0 to 9999"));
        put(&mut buf, 5, 2, u64::try_from(mo).expect("month"));
        put(&mut buf, 8, 2, u64::try_from(d).expect("day"));
        put(&mut buf, 11, 2, sod / 3600);
        put(&mut buf, 14, 2, sod / 60 % 60);
        put(&mut buf, 17, 2, sod % 60);
        let n = self.nanos;
        let digits = if n == 0 {
            0
        } else if n % 1_000_000 == 0 {
            3
        } else if n % 1000 == 0 {
            6
        } else {
            9
        };
        put(&mut buf, 20, 9, u64::from(n));
        let len = if digits == 0 {
            buf[19] = b'Z';
            20
        } else {
            buf[20 + digits] = b'Z';
            21 + digits
        };
        Rfc3339 { buf, len }
    }
}

/// A timestamp's RFC 3339 text, held on the stack.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339 {
    buf: [u8; 30],
    len: usize,
}

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc3339().as_str())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.rfc3339().as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = Timestamp::parse(input)
            .map(|t| t.to_string())
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_deref().map_err(String::as_str),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn parses_the_forms_clients_send() {
        let table: &[(&str, Result<&str, &str>)] = &[
            (
                "2026-11-22T18:25:56.542+00:00",
                Ok("2026-11-22T18:25:56.542Z"),
            ),
            (
                "2026-11-22T18:25:57.038990+00:00",
                Ok("2026-11-22T18:25:57.038990Z"),
            ),
            ("2026-11-22T10:00:00.123Z", Ok("2026-11-22T10:00:00.123Z")),
            ("2026-11-22T10:00:00Z", Ok("2026-11-22T10:00:00Z")),
            ("2026-11-22T10:00Z", Ok("2026-11-22T10:00:00Z")),
            ("2026-11-22t10:00:00z", Ok("2026-11-22T10:00:00Z")),
            ("2026-11-22 10:00:00", Ok("2026-11-22T10:00:00Z")),
            ("2015-2-3T22:28:55.111Z", Ok("2015-02-03T22:28:55.111Z")),
            ("2026-11-22", Ok("2026-11-22T00:00:00Z")),
            ("2026-11-22T10:00:00.1Z", Ok("2026-11-22T10:00:00.100Z")),
            (
                "2026-11-22T10:00:00.123456789Z",
                Ok("2026-11-22T10:00:00.123456789Z"),
            ),
            ("2026-11-22T10:00:00,5Z", Ok("2026-11-22T10:00:00.500Z")),
            ("2026-11-22T10:00:00+05:30", Ok("2026-11-22T04:30:00Z")),
            ("2026-11-22T01:00:00-0200", Ok("2026-11-22T03:00:00Z")),
            ("2026-11-22T01:00:00+01", Ok("2026-11-22T00:00:00Z")),
            ("2026-01-01T00:30:00+01:00", Ok("2025-12-31T23:30:00Z")),
            ("2024-02-29T12:00:00Z", Ok("2024-02-29T12:00:00Z")),
            ("1969-12-31T23:59:59.5Z", Ok("1969-12-31T23:59:59.500Z")),
            ("2016-12-31T23:59:60Z", Ok("2017-01-01T00:00:00Z")),
            (
                "2023-02-29T12:00:00Z",
                Err("day out of range for the month"),
            ),
            ("2026-13-01T00:00:00Z", Err("month out of range")),
            ("2026-11-22T24:00:00Z", Err("time of day out of range")),
            (
                "2026-11-22T10:00:00.1234567891Z",
                Err("more than 9 fraction digits"),
            ),
            (
                "2026-11-22T10:00:00.Z",
                Err("expected digits after the decimal point"),
            ),
            ("2026-11-22T10:00:00+25:00", Err("UTC offset out of range")),
            (
                "2026-11-22T10:00:00 UTC",
                Err("expected `Z` or a UTC offset"),
            ),
            ("26-11-22", Err("expected a four-digit year")),
            ("1795371957", Err("expected `-` after the year")),
            ("", Err("expected a four-digit year")),
            ("2026-11-22T10", Err("expected `:` after the hour")),
            (
                "2026-11-22T10:00:00Zjunk",
                Err("unexpected characters after the timestamp"),
            ),
        ];
        for (input, expected) in table {
            check(input, *expected);
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_the_whole_range() {
        for days in (days_from_civil(0, 1, 1)..=days_from_civil(9999, 12, 31)).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            Timestamp::from_unix(MIN_SECS, 0).unwrap().to_string(),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            Timestamp::from_unix(MAX_SECS, 0).unwrap().to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert!(Timestamp::from_unix(MAX_SECS + 1, 0).is_none());
    }

    #[test]
    fn millis_and_nanos_conversions_agree() {
        let t = Timestamp::from_unix_millis(-1).unwrap();
        assert_eq!(t.to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(t.unix_millis(), -1);
        assert_eq!(Timestamp::from_unix_nanos(t.unix_nanos()), Some(t));
        assert_eq!(
            t.checked_add_nanos(1_000_000).unwrap(),
            Timestamp::UNIX_EPOCH
        );
    }
}
