//! Compiled weekly schedules: is a window open at an instant, and when does
//! that next change.
//!
//! A window is the half-open local interval `[from, to)` starting on each
//! enabled weekday; `to <= from` ends on the next day (it belongs to the day
//! it starts), `to = 1440` is the next midnight. Local times are turned into
//! instants in the policy's time zone: a time inside a DST gap becomes the
//! first instant after the gap, a time inside a fold its first occurrence.

use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::{Origin, ScheduleSpec, Weekdays};

/// Minutes in a day.
const DAY_MINUTES: u16 = 1440;

/// A schedule ready to be evaluated.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) name: Arc<str>,
    pub(crate) days: Weekdays,
    pub(crate) from_minute: u16,
    pub(crate) to_minute: u16,
    pub(crate) origin: Option<Origin>,
}

/// A schedule's state at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScheduleState {
    /// The window is open.
    pub(crate) active: bool,
    /// The next instant after `now` at which the window opens or closes
    /// (`None` if it never does).
    pub(crate) next_change: Option<Timestamp>,
}

impl Schedule {
    /// Compiles a spec; an inconsistent one (out-of-range minutes,
    /// `from == to`) is a schedule that never opens. `to = 0` is read as
    /// 1440 (midnight at the end of the day).
    pub(crate) fn compile(spec: &ScheduleSpec) -> Schedule {
        // `to = 00:00` can only mean the next midnight.
        let to_minute = if spec.to_minute == 0 { DAY_MINUTES } else { spec.to_minute };
        let sane = spec.from_minute < DAY_MINUTES && to_minute <= DAY_MINUTES && spec.from_minute != to_minute;
        Schedule {
            name: Arc::from(spec.name.as_str()),
            days: if sane { Weekdays(spec.days.0 & Weekdays::ALL.0) } else { Weekdays(0) },
            from_minute: spec.from_minute,
            to_minute,
            origin: spec.origin.clone(),
        }
    }

    /// A schedule that never opens (for a name nothing defines).
    pub(crate) fn never(name: &str) -> Schedule {
        Schedule { name: Arc::from(name), days: Weekdays(0), from_minute: 0, to_minute: 1, origin: None }
    }

    /// Whether the window is open at `now` and when that next changes.
    /// Adjacent windows (`00:00`-`24:00` on consecutive days) count as one.
    pub(crate) fn state(&self, tz: &TimeZone, now: Timestamp) -> ScheduleState {
        let closed = ScheduleState { active: false, next_change: None };
        if self.days.0 == 0 {
            return closed;
        }
        let today = tz.to_datetime(now).date();
        let Ok(mut day) = today.yesterday() else {
            return closed;
        };
        // Windows are shorter than two days and start in chronological
        // order, so the first one that has not ended decides; a weekly
        // schedule has one within eight days.
        for _ in 0..9 {
            if let Some((start, end)) = self.window(tz, day) {
                if end > now {
                    if start > now {
                        return ScheduleState { active: false, next_change: Some(start) };
                    }
                    return ScheduleState { active: true, next_change: Some(self.extend(tz, day, end)) };
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return closed,
            }
        }
        closed
    }

    /// Follows windows that start exactly when the previous one ends.
    fn extend(&self, tz: &TimeZone, mut day: Date, mut end: Timestamp) -> Timestamp {
        for _ in 0..8 {
            let Ok(next) = day.tomorrow() else { break };
            day = next;
            match self.window(tz, day) {
                Some((start, next_end)) if start == end => end = next_end,
                _ => break,
            }
        }
        end
    }

    /// The window starting on local date `day`, as instants, if the
    /// schedule runs that day and the window is not empty (both ends in
    /// the same DST gap).
    fn window(&self, tz: &TimeZone, day: Date) -> Option<(Timestamp, Timestamp)> {
        let weekday = day.weekday().to_monday_zero_offset();
        if self.days.0 & (1u8 << weekday) == 0 {
            return None;
        }
        let start = resolve(tz, at_minute(day, self.from_minute)?)?;
        let end_day = if self.to_minute <= self.from_minute || self.to_minute == DAY_MINUTES {
            day.tomorrow().ok()?
        } else {
            day
        };
        let end = resolve(tz, at_minute(end_day, self.to_minute % DAY_MINUTES)?)?;
        (start < end).then_some((start, end))
    }
}

fn at_minute(day: Date, minute: u16) -> Option<DateTime> {
    let hour = i8::try_from(minute / 60).ok()?;
    let min = i8::try_from(minute % 60).ok()?;
    Some(day.at(hour, min, 0, 0))
}

/// The instant of a local time: the first occurrence in a fold, the first
/// instant after the gap (the transition itself) in a gap.
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { before, after } => {
            // Read with the later offset, `dt` lies before the transition;
            // the next transition from there is where the gap ends.
            let early = after.to_timestamp(dt).ok()?;
            tz.following(early).next().map(|t| t.timestamp()).or_else(|| before.to_timestamp(dt).ok())
        }
    }
}
