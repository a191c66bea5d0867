//! Policy periods: calendar months and days plus fixed seconds.
//!
//! App-password validity is "3 months" in the provider's sense: 2022-11-15 + 3 months is
//! 2023-02-15, and 2023-11-30 + 3 months is 2024-02-29 (the day is clamped to the end of
//! the shorter month). A fixed number of seconds cannot express that, so a [`Period`]
//! keeps months, days and seconds apart, and adds months and days on the calendar of the
//! provider's time zone (SPEC "Time"): generated at 00:30 on 15/11 in Rome, a 3-month
//! password expires at 00:30 on 15/02 in Rome, across the change from summer time.

use std::fmt;
use std::str::FromStr;

use jiff::{Span, Timestamp, tz::TimeZone};

/// A length of time written as `3mo`, `14d`, `30s`, `1mo 15d`, …
///
/// Units: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks, `mo` calendar months.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    months: u32,
    days: u32,
    seconds: u64,
}

/// Why a period could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    /// Nothing but white space.
    #[error("empty period: write e.g. \"3mo\", \"14d\" or \"30s\"")]
    Empty,
    /// A part without digits, a number too large, or a unit not in the list.
    #[error("bad period part {0:?}: expected a number followed by s, m, h, d, w or mo")]
    BadPart(String),
    /// The total is zero, which no policy period may be.
    #[error("period must be longer than zero")]
    Zero,
}

impl Period {
    /// A period of whole calendar months.
    pub const fn months(months: u32) -> Self {
        Period {
            months,
            days: 0,
            seconds: 0,
        }
    }

    /// A period of whole calendar days.
    pub const fn days(days: u32) -> Self {
        Period {
            months: 0,
            days,
            seconds: 0,
        }
    }

    /// A period of seconds.
    pub const fn seconds(seconds: u64) -> Self {
        Period {
            months: 0,
            days: 0,
            seconds,
        }
    }

    /// Its calendar months, calendar days and seconds.
    pub fn parts(&self) -> (u32, u32, u64) {
        (self.months, self.days, self.seconds)
    }

    /// The shorter of two fixed periods (`self` if either has calendar months).
    pub fn min_by_seconds(self, other: Period) -> Period {
        match (self.as_std(), other.as_std()) {
            (Some(a), Some(b)) if b < a => other,
            _ => self,
        }
    }

    /// The period as a fixed duration (days of 24 h), if it has no calendar months.
    pub fn as_std(&self) -> Option<std::time::Duration> {
        (self.months == 0)
            .then(|| std::time::Duration::from_secs(u64::from(self.days) * 86_400 + self.seconds))
    }

    /// A fixed period as a duration, for settings that validation has already checked
    /// carry no calendar months (a period with months, never accepted there, is a minute).
    pub fn fixed(&self) -> std::time::Duration {
        self.as_std().unwrap_or(std::time::Duration::from_secs(60))
    }

    /// `at` plus this period: months and days on the calendar of `zone` (the day clamped
    /// to the month's end; a wall time that does not exist that day moves forward), then
    /// the seconds. Saturates at the largest representable time instead of failing.
    pub fn after(&self, at: Timestamp, zone: &TimeZone) -> Timestamp {
        self.shift(at, zone, 1)
    }

    /// `at` minus this period, the mirror of [`Period::after`].
    pub fn before(&self, at: Timestamp, zone: &TimeZone) -> Timestamp {
        self.shift(at, zone, -1)
    }

    fn shift(&self, at: Timestamp, zone: &TimeZone, sign: i64) -> Timestamp {
        let civil = at.to_zoned(zone.clone()).datetime();
        let span = Span::new()
            .try_months(sign * i64::from(self.months))
            .and_then(|s| s.try_days(sign * i64::from(self.days)));
        let moved = span
            .and_then(|span| civil.checked_add(span))
            .and_then(|dt| dt.to_zoned(zone.clone()))
            .map(|z| z.timestamp());
        // Policy time is whole seconds (that is what the store keeps).
        let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        let moved = match moved {
            Ok(ts) => ts.as_second(),
            Err(_) if sign > 0 => max,
            Err(_) => min,
        };
        let secs = i64::try_from(self.seconds).unwrap_or(i64::MAX);
        let total = moved
            .saturating_add(sign.saturating_mul(secs))
            .clamp(min, max);
        Timestamp::from_second(total).expect("clamped to the representable range")
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(PeriodError::Empty);
        }
        let mut period = Period {
            months: 0,
            days: 0,
            seconds: 0,
        };
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start();
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (num, tail) = rest.split_at(digits);
            let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, tail) = tail.split_at(unit_len);
            let part = format!("{num}{unit}");
            let n: u64 = num
                .parse()
                .map_err(|_| PeriodError::BadPart(part.clone()))?;
            let bad = || PeriodError::BadPart(part.clone());
            match unit {
                "mo" => {
                    let m = u32::try_from(n).map_err(|_| bad())?;
                    period.months = period.months.checked_add(m).ok_or_else(bad)?;
                }
                "d" | "w" => {
                    let d = u32::try_from(n).map_err(|_| bad())?;
                    let d = if unit == "w" {
                        d.checked_mul(7)
                    } else {
                        Some(d)
                    };
                    period.days = d.and_then(|d| period.days.checked_add(d)).ok_or_else(bad)?;
                }
                "s" | "m" | "h" => {
                    let mult = match unit {
                        "s" => 1,
                        "m" => 60,
                        _ => 3_600,
                    };
                    let add = n.checked_mul(mult).ok_or_else(bad)?;
                    period.seconds = period.seconds.checked_add(add).ok_or_else(bad)?;
                }
                _ => return Err(bad()),
            }
            // Periods beyond ~1000 years are typos, and would overflow date arithmetic.
            if period.months > 12_000 || period.days > 370_000 || period.seconds > 32_000_000_000 {
                return Err(bad());
            }
            rest = tail;
        }
        if period.months == 0 && period.days == 0 && period.seconds == 0 {
            return Err(PeriodError::Zero);
        }
        Ok(period)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.months > 0 {
            parts.push(format!("{}mo", self.months));
        }
        if self.days > 0 {
            parts.push(format!("{}d", self.days));
        }
        let s = self.seconds;
        if s > 0 {
            if s.is_multiple_of(3_600) {
                parts.push(format!("{}h", s / 3_600));
            } else if s.is_multiple_of(60) {
                parts.push(format!("{}m", s / 60));
            } else {
                parts.push(format!("{s}s"));
            }
        }
        f.write_str(&parts.join(" "))
    }
}

impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const UTC: TimeZone = TimeZone::UTC;

    fn rome() -> TimeZone {
        TimeZone::get("Europe/Rome").unwrap()
    }

    #[test]
    fn parses_units() {
        assert_eq!("3mo".parse(), Ok(Period::months(3)));
        assert_eq!("14d".parse(), Ok(Period::days(14)));
        assert_eq!("30s".parse(), Ok(Period::seconds(30)));
        assert_eq!("2m".parse(), Ok(Period::seconds(120)));
        assert_eq!("1h".parse(), Ok(Period::seconds(3600)));
        assert_eq!("1w".parse(), Ok(Period::days(7)));
        assert_eq!(
            "1mo 15d".parse(),
            Ok(Period {
                months: 1,
                days: 15,
                seconds: 0
            })
        );
    }

    #[test]
    fn rejects_bad_periods() {
        assert_eq!("".parse::<Period>(), Err(PeriodError::Empty));
        assert_eq!("0d".parse::<Period>(), Err(PeriodError::Zero));
        assert!(matches!(
            "3".parse::<Period>(),
            Err(PeriodError::BadPart(_))
        ));
        assert!(matches!(
            "3y".parse::<Period>(),
            Err(PeriodError::BadPart(_))
        ));
        assert!(matches!(
            "d".parse::<Period>(),
            Err(PeriodError::BadPart(_))
        ));
        assert!(matches!(
            "-3d".parse::<Period>(),
            Err(PeriodError::BadPart(_))
        ));
        assert!(matches!(
            "99999999999999999999d".parse::<Period>(),
            Err(PeriodError::BadPart(_))
        ));
    }

    #[test]
    fn seed_example_three_months() {
        // Seed 004: generated 2022-11-15, expiry shown as 15/02/2023.
        let p = Period::months(3);
        assert_eq!(
            p.after(ts("2022-11-15T09:35:00Z"), &UTC),
            ts("2023-02-15T09:35:00Z")
        );
    }

    #[test]
    fn month_end_is_clamped() {
        let p = Period::months(3);
        assert_eq!(
            p.after(ts("2023-11-30T12:00:00Z"), &UTC),
            ts("2024-02-29T12:00:00Z")
        );
        assert_eq!(
            p.after(ts("2022-11-30T12:00:00Z"), &UTC),
            ts("2023-02-28T12:00:00Z")
        );
        assert_eq!(
            Period::months(1).after(ts("2023-01-31T00:00:00Z"), &UTC),
            ts("2023-02-28T00:00:00Z")
        );
    }

    #[test]
    fn before_mirrors_after_for_days() {
        let p = Period::days(14);
        assert_eq!(
            p.before(ts("2023-02-15T00:00:00Z"), &UTC),
            ts("2023-02-01T00:00:00Z")
        );
        assert_eq!(
            p.before(ts("2023-03-10T00:00:00Z"), &UTC),
            ts("2023-02-24T00:00:00Z")
        );
    }

    #[test]
    fn saturates_instead_of_panicking() {
        let p = Period::months(12_000);
        assert_eq!(
            p.after(Timestamp::MAX, &UTC).as_second(),
            Timestamp::MAX.as_second()
        );
        assert_eq!(
            p.before(Timestamp::MIN, &UTC).as_second(),
            Timestamp::MIN.as_second()
        );
        assert_eq!(
            Period::seconds(u64::MAX / 2)
                .after(Timestamp::UNIX_EPOCH, &UTC)
                .as_second(),
            Timestamp::MAX.as_second()
        );
    }

    #[test]
    fn months_and_days_are_on_the_calendar_of_the_zone() {
        // 00:30 on 15/11 in Rome is 23:30 UTC on the 14th: still the 15th for the owner.
        let generated = ts("2022-11-14T23:30:00Z");
        let expires = Period::months(3).after(generated, &rome());
        assert_eq!(
            expires,
            ts("2023-02-14T23:30:00Z"),
            "00:30 on 15/02 in Rome"
        );
        // Across the spring change (26/03/2023), 3 months keep the wall time: 10:00 in
        // winter (09:00 UTC) to 10:00 in summer (08:00 UTC); UTC arithmetic would not.
        let winter = ts("2023-01-20T09:00:00Z");
        assert_eq!(
            Period::months(3).after(winter, &rome()),
            ts("2023-04-20T08:00:00Z")
        );
        assert_eq!(
            Period::months(3).after(winter, &UTC),
            ts("2023-04-20T09:00:00Z")
        );
        // Fourteen calendar days before an expiry just after the change: same wall time.
        assert_eq!(
            Period::days(14).before(ts("2023-04-02T08:00:00Z"), &rome()),
            ts("2023-03-19T09:00:00Z")
        );
        // Seconds stay exact.
        assert_eq!(
            Period::seconds(3600).after(ts("2023-03-26T00:30:00Z"), &rome()),
            ts("2023-03-26T01:30:00Z")
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["3mo", "14d", "30s", "1mo 15d", "2h", "5m"] {
            let p: Period = s.parse().unwrap();
            assert_eq!(p.to_string().parse::<Period>().unwrap(), p);
        }
    }
}
