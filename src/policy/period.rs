//! Policy periods: calendar months plus fixed seconds.
//!
//! App-password validity is "3 months" in the provider's sense: 2022-11-15 + 3 months is
//! 2023-02-15, and 2023-11-30 + 3 months is 2024-02-29 (the day is clamped to the end of
//! the shorter month). A fixed number of seconds cannot express that, so a [`Period`]
//! keeps months and seconds apart and adds months on the UTC calendar.

use std::fmt;
use std::str::FromStr;

use jiff::{Span, Timestamp, tz::TimeZone};

/// A length of time written as `3mo`, `14d`, `30s`, `1mo 15d`, …
///
/// Units: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks, `mo` calendar months.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    months: u32,
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
        Period { months, seconds: 0 }
    }

    /// A period of whole days (24 h each; policy time is UTC, so days have no DST gaps).
    pub const fn days(days: u64) -> Self {
        Period {
            months: 0,
            seconds: days * 86_400,
        }
    }

    /// A period of seconds.
    pub const fn seconds(seconds: u64) -> Self {
        Period { months: 0, seconds }
    }

    /// The period as a fixed duration, if it has no calendar months.
    pub fn as_std(&self) -> Option<std::time::Duration> {
        (self.months == 0).then(|| std::time::Duration::from_secs(self.seconds))
    }

    /// `at` plus this period: months on the UTC calendar (day clamped), then seconds.
    /// Saturates at the largest representable time instead of failing.
    pub fn after(&self, at: Timestamp) -> Timestamp {
        self.shift(at, 1)
    }

    /// `at` minus this period, the mirror of [`Period::after`].
    pub fn before(&self, at: Timestamp) -> Timestamp {
        self.shift(at, -1)
    }

    fn shift(&self, at: Timestamp, sign: i64) -> Timestamp {
        let civil = at.to_zoned(TimeZone::UTC).datetime();
        let moved = civil
            .checked_add(Span::new().months(sign * i64::from(self.months)))
            .and_then(|dt| dt.to_zoned(TimeZone::UTC))
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
                "s" | "m" | "h" | "d" | "w" => {
                    let mult = match unit {
                        "s" => 1,
                        "m" => 60,
                        "h" => 3_600,
                        "d" => 86_400,
                        _ => 604_800,
                    };
                    let add = n.checked_mul(mult).ok_or_else(bad)?;
                    period.seconds = period.seconds.checked_add(add).ok_or_else(bad)?;
                }
                _ => return Err(bad()),
            }
            // Periods beyond ~1000 years are typos, and would overflow date arithmetic.
            if period.months > 12_000 || period.seconds > 32_000_000_000 {
                return Err(bad());
            }
            rest = tail;
        }
        if period.months == 0 && period.seconds == 0 {
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
        let s = self.seconds;
        if s > 0 {
            if s.is_multiple_of(86_400) {
                parts.push(format!("{}d", s / 86_400));
            } else if s.is_multiple_of(3_600) {
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
                seconds: 15 * 86_400
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
            p.after(ts("2022-11-15T09:35:00Z")),
            ts("2023-02-15T09:35:00Z")
        );
    }

    #[test]
    fn month_end_is_clamped() {
        let p = Period::months(3);
        assert_eq!(
            p.after(ts("2023-11-30T12:00:00Z")),
            ts("2024-02-29T12:00:00Z")
        );
        assert_eq!(
            p.after(ts("2022-11-30T12:00:00Z")),
            ts("2023-02-28T12:00:00Z")
        );
        assert_eq!(
            Period::months(1).after(ts("2023-01-31T00:00:00Z")),
            ts("2023-02-28T00:00:00Z")
        );
    }

    #[test]
    fn before_mirrors_after_for_days() {
        let p = Period::days(14);
        assert_eq!(
            p.before(ts("2023-02-15T00:00:00Z")),
            ts("2023-02-01T00:00:00Z")
        );
        assert_eq!(
            p.before(ts("2023-03-10T00:00:00Z")),
            ts("2023-02-24T00:00:00Z")
        );
    }

    #[test]
    fn saturates_instead_of_panicking() {
        let p = Period::months(12_000);
        assert_eq!(
            p.after(Timestamp::MAX).as_second(),
            Timestamp::MAX.as_second()
        );
        assert_eq!(
            p.before(Timestamp::MIN).as_second(),
            Timestamp::MIN.as_second()
        );
        assert_eq!(
            Period::seconds(u64::MAX / 2)
                .after(Timestamp::UNIX_EPOCH)
                .as_second(),
            Timestamp::MAX.as_second()
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
