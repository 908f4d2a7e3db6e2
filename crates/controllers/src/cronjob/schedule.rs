//! Cron schedules as upstream's CronJob controller reads them (robfig/cron's standard
//! parser): five fields (minute, hour, day of month, month, day of week) of numbers, names
//! (`JAN`, `MON`), ranges, lists and steps, or a descriptor (`@hourly`, `@daily`, ...); the
//! times it fires at, in a time zone.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// A parsed schedule: for each field, a bit per value that fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether the day-of-month or day-of-week field was `*` or `?` (a day then has to
    /// match only the other one; with both restricted, either matches, as in cron).
    any_day: bool,
    any_weekday: bool,
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparseable schedule {schedule:?}: {reason}")]
pub struct ScheduleError {
    schedule: String,
    reason: String,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: &[] };
const DAY: Field = Field { name: "day of month", min: 1, max: 31, names: &[] };
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const WEEKDAY: Field = Field {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(schedule: &str) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError { schedule: schedule.to_string(), reason };
        let trimmed = schedule.trim();
        let expanded = match trimmed {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(error(format!("unrecognized descriptor {other:?}")));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(error(format!("expected exactly 5 fields, found {}", fields.len())));
        }
        let parse = |text: &str, field: &Field| bits(text, field).map_err(error);
        let (days, any_day) = parse(fields[2], &DAY)?;
        let (mut weekdays, any_weekday) = parse(fields[4], &WEEKDAY_WITH_SEVEN)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes: parse(fields[0], &MINUTE)?.0,
            hours: parse(fields[1], &HOUR)?.0,
            days,
            months: parse(fields[3], &MONTH)?.0,
            weekdays,
            any_day,
            any_weekday,
        })
    }
}

/// Day of week as written: 0 to 7, both Sunday.
const WEEKDAY_WITH_SEVEN: Field = Field { max: 7, ..WEEKDAY };

/// The values a field's text selects, and whether it began with `*` or `?` (without a step).
fn bits(text: &str, field: &Field) -> Result<(u64, bool), String> {
    let mut all = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step {step:?} in the {} field", field.name))?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            if step.is_none_or(|s| s == 1) {
                star = true;
            }
            (field.min, field.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, field)?, value(high, field)?)
        } else {
            let low = value(range, field)?;
            // `N/step` runs from N to the field's end.
            (low, if step.is_some() { field.max } else { low })
        };
        if low > high {
            return Err(format!(
                "beginning of range ({low}) beyond end of range ({high}) in the {} field",
                field.name
            ));
        }
        let step = step.unwrap_or(1);
        let mut v = low;
        while v <= high {
            all |= 1 << v;
            v += step;
        }
    }
    Ok((all, star))
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let found = match field.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + field.min,
        None => text
            .parse()
            .map_err(|_| format!("failed to parse {text:?} in the {} field", field.name))?,
    };
    if found < field.min || found > field.max {
        return Err(format!(
            "{} field value {found} out of range [{}, {}]",
            field.name, field.min, field.max
        ));
    }
    Ok(found)
}

impl Schedule {
    /// The first time after `after` that the schedule fires, in `zone`; `None` if it never
    /// does within five years (such as `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(zone.clone()).datetime();
        // The next whole minute.
        let mut at = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(jiff::Span::new().minutes(1))
            .ok()?;
        let limit = start.year() + 5;
        while at.year() <= limit {
            if !self.has(self.months, at.month() as u32) {
                at = first_of_next_month(at.date())?;
                continue;
            }
            if !self.day_matches(at.date()) {
                at = at.date().tomorrow().ok()?.to_datetime(Time::midnight());
                continue;
            }
            if !self.has(self.hours, at.hour() as u32) {
                at = at
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(jiff::Span::new().hours(1))
                    .ok()?;
                continue;
            }
            if !self.has(self.minutes, at.minute() as u32) {
                at = at.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            // A time skipped by a clock change fires at the first instant after the gap.
            let fired = zone.to_ambiguous_timestamp(at).later().ok()?;
            if fired > after {
                return Some(fired);
            }
            at = at.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
        None
    }

    fn has(&self, set: u64, value: u32) -> bool {
        set & (1 << value) != 0
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = self.has(self.days, date.day() as u32);
        let weekday = self.has(self.weekdays, date.weekday().to_sunday_zero_offset() as u32);
        if self.any_day || self.any_weekday { day && weekday } else { day || weekday }
    }
}

fn first_of_next_month(date: Date) -> Option<DateTime> {
    let first = date.first_of_month().checked_add(jiff::Span::new().months(1)).ok()?;
    Some(first.to_datetime(Time::midnight()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn next(schedule: &str, after: &str) -> String {
        let s: Schedule = schedule.parse().expect("parses");
        s.next(at(after), &TimeZone::UTC).map(|t| t.to_string()).unwrap_or_default()
    }

    #[test]
    fn fields_ranges_steps_and_names() {
        assert_eq!(next("*/15 * * * *", "2026-01-01T10:07:30Z"), "2026-01-01T10:15:00Z");
        assert_eq!(next("* * * * *", "2026-01-01T10:07:00Z"), "2026-01-01T10:08:00Z");
        assert_eq!(next("5 4 * * *", "2026-01-01T10:07:00Z"), "2026-01-02T04:05:00Z");
        assert_eq!(next("0 9-17/4 * * MON-FRI", "2026-01-02T18:00:00Z"), "2026-01-05T09:00:00Z");
        assert_eq!(next("0 0 1 jan,Jul *", "2026-02-01T00:00:00Z"), "2026-07-01T00:00:00Z");
        assert_eq!(next("@hourly", "2026-01-01T10:00:00Z"), "2026-01-01T11:00:00Z");
        assert_eq!(next("@weekly", "2026-01-01T00:00:00Z"), "2026-01-04T00:00:00Z");
        assert_eq!(next("0 0 * * 7", "2026-01-01T00:00:00Z"), "2026-01-04T00:00:00Z");
        assert_eq!(next("30 2/6 * * *", "2026-01-01T03:00:00Z"), "2026-01-01T08:30:00Z");
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either fires (the 13th, or a Friday).
        assert_eq!(next("0 0 13 * 5", "2026-01-01T00:00:00Z"), "2026-01-02T00:00:00Z");
        assert_eq!(next("0 0 13 * 5", "2026-01-10T00:00:00Z"), "2026-01-13T00:00:00Z");
        // One is `*`: only the other restricts.
        assert_eq!(next("0 0 13 * *", "2026-01-01T00:00:00Z"), "2026-01-13T00:00:00Z");
        assert_eq!(next("0 0 30 2 *", "2026-01-01T00:00:00Z"), "", "never");
    }

    #[test]
    fn time_zones() {
        let s: Schedule = "0 9 * * *".parse().expect("parses");
        let zone = TimeZone::get("America/New_York").expect("tzdata");
        let t = s.next(at("2026-07-01T00:00:00Z"), &zone).expect("fires");
        assert_eq!(t.to_string(), "2026-07-01T13:00:00Z");
        // 02:30 does not exist on the spring-forward day: it fires right after the gap.
        let s: Schedule = "30 2 * * *".parse().expect("parses");
        let t = s.next(at("2026-03-08T05:00:00Z"), &zone).expect("fires");
        assert_eq!(t.to_string(), "2026-03-08T07:30:00Z");
    }

    #[test]
    fn bad_schedules() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@every 5m",
            "x * * * *",
            "* * * * 8",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad:?} parsed");
        }
    }
}
