//! Compiled weekly schedules: is a window open at an instant, and when does
//! that next change.
//!
//! A window is the half-open local interval `[from, to)` starting on each
//! enabled weekday; `to <= from` ends on the next day (it belongs to the day
//! it starts), `to = 1440` is the next midnight. Local times are turned into
//! instants in the policy's time zone: a time inside a DST gap becomes the
//! first instant after the gap, a time inside a fold its first occurrence.
//!
//! [`Schedule::state_reference`] is the definition: it converts `now` into
//! local time and walks the windows around it, which costs a few hundred
//! nanoseconds of time-zone arithmetic. [`Schedule::state`] gives the same
//! answer from a table: the reference's answer only changes where a window
//! opens or closes or where the local date changes, so between two such
//! instants it is constant, and a table of those instants over a horizon
//! around `now` (with the reference's answer at each) answers any instant
//! inside it with one binary search. The table is a memo of a pure
//! function, built on the first instant that falls outside it and swapped
//! in whole; instants it cannot cover get the reference path.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Span, Timestamp};

use super::{Origin, ScheduleSpec, Weekdays};

/// Minutes in a day.
const DAY_MINUTES: u16 = 1440;

/// Local days before `now`'s date that a table covers.
const TABLE_DAYS_BEFORE: i64 = 7;
/// Local days from `now`'s date that a table covers: a live proxy builds a
/// new one every seven weeks or so (~0.1 ms: about 200 reference evaluations).
const TABLE_DAYS_AFTER: i64 = 56;
/// Extra local days whose windows and midnights are looked at beyond a
/// table's ends. The reference looks at windows from the day before `now`'s
/// date to a week after it, and an instant's local date lies within about
/// two days of the date at the table's ends (UTC offsets are within ±26 h).
const TABLE_MARGIN_DAYS: i64 = 3;

/// A schedule ready to be evaluated.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) name: Arc<str>,
    pub(crate) days: Weekdays,
    pub(crate) from_minute: u16,
    pub(crate) to_minute: u16,
    pub(crate) origin: Option<Origin>,
    /// The policy's time zone, which the local times are in.
    timezone: TimeZone,
    /// The answers of [`Schedule::state_reference`] around the instants
    /// asked about lately.
    memo: Memo,
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

const CLOSED: ScheduleState = ScheduleState { active: false, next_change: None };

impl Schedule {
    /// Compiles a spec for time zone `timezone`; an inconsistent one
    /// (out-of-range minutes, `from == to`) is a schedule that never opens.
    /// `to = 0` is read as 1440 (midnight at the end of the day).
    pub(crate) fn compile(spec: &ScheduleSpec, timezone: &TimeZone) -> Schedule {
        // `to = 00:00` can only mean the next midnight.
        let to_minute = if spec.to_minute == 0 { DAY_MINUTES } else { spec.to_minute };
        let sane = spec.from_minute < DAY_MINUTES && to_minute <= DAY_MINUTES && spec.from_minute != to_minute;
        Schedule {
            name: Arc::from(spec.name.as_str()),
            days: if sane { Weekdays(spec.days.0 & Weekdays::ALL.0) } else { Weekdays(0) },
            from_minute: spec.from_minute,
            to_minute,
            origin: spec.origin.clone(),
            timezone: timezone.clone(),
            memo: Memo::default(),
        }
    }

    /// A schedule that never opens (for a name nothing defines).
    pub(crate) fn never(name: &str) -> Schedule {
        Schedule {
            name: Arc::from(name),
            days: Weekdays(0),
            from_minute: 0,
            to_minute: 1,
            origin: None,
            timezone: TimeZone::UTC,
            memo: Memo::default(),
        }
    }

    /// Whether the window is open at `now` and when that next changes:
    /// exactly [`Schedule::state_reference`], from the memo when `now` is
    /// inside its table.
    #[inline]
    pub(crate) fn state(&self, now: Timestamp) -> ScheduleState {
        if self.days.0 == 0 {
            return CLOSED;
        }
        if let Some(state) = self.memo.table.load().as_deref().and_then(|table| table.get(now)) {
            return state;
        }
        self.state_slow(now)
    }

    /// The memo missed: build a table around `now` and keep it.
    #[cold]
    fn state_slow(&self, now: Timestamp) -> ScheduleState {
        match Table::build(self, now) {
            Some(table) => {
                let state = table.get(now);
                self.memo.table.store(Some(Arc::new(table)));
                state.unwrap_or_else(|| self.state_reference(now))
            }
            None => self.state_reference(now),
        }
    }

    /// The definition of [`Schedule::state`]: whether the window is open at
    /// `now` and when that next changes, computed in local time. Adjacent
    /// windows (`00:00`-`24:00` on consecutive days) count as one.
    pub(crate) fn state_reference(&self, now: Timestamp) -> ScheduleState {
        if self.days.0 == 0 {
            return CLOSED;
        }
        let tz = &self.timezone;
        let today = tz.to_datetime(now).date();
        let Ok(mut day) = today.yesterday() else {
            return CLOSED;
        };
        // Windows are shorter than two days and start in chronological
        // order, so the first one that has not ended decides; a weekly
        // schedule has one within eight days.
        for _ in 0..9 {
            if let Some((start, end)) = self.window(day)
                && end > now
            {
                if start > now {
                    return ScheduleState { active: false, next_change: Some(start) };
                }
                return ScheduleState { active: true, next_change: Some(self.extend(day, end)) };
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return CLOSED,
            }
        }
        CLOSED
    }

    /// Follows windows that start exactly when the previous one ends.
    fn extend(&self, mut day: Date, mut end: Timestamp) -> Timestamp {
        for _ in 0..8 {
            let Ok(next) = day.tomorrow() else { break };
            day = next;
            match self.window(day) {
                Some((start, next_end)) if start == end => end = next_end,
                _ => break,
            }
        }
        end
    }

    /// The window starting on local date `day`, as instants, if the
    /// schedule runs that day and the window is not empty (both ends in
    /// the same DST gap).
    fn window(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        let tz = &self.timezone;
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

/// The memo: at most one table, replaced whole (readers never wait and
/// never see a half-built one).
#[derive(Default)]
struct Memo {
    table: ArcSwapOption<Table>,
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo { table: ArcSwapOption::new(self.table.load_full()) }
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let segments = self.table.load().as_deref().map_or(0, |t| t.states.len());
        f.debug_struct("Memo").field("segments", &segments).finish()
    }
}

/// [`Schedule::state_reference`] as a step function over `[starts[0],
/// starts[n])`: for `starts[i] <= now < starts[i + 1]` the state is
/// `states[i]`. Every instant where the reference's answer can change lies
/// in `starts` (consecutive equal states are merged), and all are whole
/// seconds.
#[derive(Debug)]
struct Table {
    /// Segment starts in seconds since the epoch, ascending; the last one
    /// is where the table ends.
    starts: Box<[i64]>,
    /// One state per segment (`starts.len() - 1`).
    states: Box<[ScheduleState]>,
}

impl Table {
    /// The state at `now`, if the table covers it.
    #[inline]
    fn get(&self, now: Timestamp) -> Option<ScheduleState> {
        // Segment starts are whole seconds, so `start <= now` is
        // `start <= floor(now)`; `as_second` truncates toward zero.
        let mut second = now.as_second();
        if now.subsec_nanosecond() < 0 {
            second = second.checked_sub(1)?;
        }
        let (&first, &end) = (self.starts.first()?, self.starts.last()?);
        if second < first || second >= end {
            return None;
        }
        let segment = self.starts.partition_point(|&start| start <= second).checked_sub(1)?;
        self.states.get(segment).copied()
    }

    /// The table for the local days around `now`'s date, or `None` near the
    /// ends of the representable dates or if an instant that matters is not
    /// a whole second.
    fn build(schedule: &Schedule, now: Timestamp) -> Option<Table> {
        let tz = &schedule.timezone;
        let today = tz.to_datetime(now).date();
        let first_day = add_days(today, -TABLE_DAYS_BEFORE)?;
        let end_day = add_days(today, TABLE_DAYS_AFTER)?;
        let start = midnight(tz, first_day)?;
        let end = midnight(tz, end_day)?;

        // Every instant where the reference's answer may change: where a
        // window it looks at opens or closes, and where the local date
        // changes (local midnights, every occurrence, and every offset
        // transition). Instants outside the table are dropped below, so a
        // generous superset costs only a little build time.
        let mut points: Vec<Timestamp> = vec![start, end];
        let mut day = add_days(first_day, -(TABLE_MARGIN_DAYS + 1))?;
        let last_window_day = add_days(end_day, 7 + TABLE_MARGIN_DAYS)?;
        let last_midnight_day = add_days(end_day, TABLE_MARGIN_DAYS)?;
        while day <= last_window_day {
            if let Some((open, close)) = schedule.window(day) {
                points.push(open);
                points.push(close);
            }
            if day <= last_midnight_day {
                let dt = day.at(0, 0, 0, 0);
                match tz.to_ambiguous_timestamp(dt).offset() {
                    AmbiguousOffset::Unambiguous { offset } => points.extend(offset.to_timestamp(dt).ok()),
                    AmbiguousOffset::Fold { before, after } => {
                        points.extend(before.to_timestamp(dt).ok());
                        points.extend(after.to_timestamp(dt).ok());
                    }
                    // The date changes at the transition, listed below.
                    AmbiguousOffset::Gap { .. } => {}
                }
            }
            day = day.tomorrow().ok()?;
        }
        let before_start = start.checked_sub(Span::new().seconds(1)).ok()?;
        points.extend(tz.following(before_start).map(|t| t.timestamp()).take_while(|&t| t <= end));

        let mut seconds: Vec<i64> = Vec::with_capacity(points.len());
        for point in points {
            if point < start || point > end {
                continue;
            }
            if point.subsec_nanosecond() != 0 {
                return None;
            }
            seconds.push(point.as_second());
        }
        seconds.sort_unstable();
        seconds.dedup();

        let mut starts: Vec<i64> = Vec::with_capacity(seconds.len());
        let mut states: Vec<ScheduleState> = Vec::with_capacity(seconds.len());
        for pair in seconds.windows(2) {
            let &[from, _] = pair else { continue };
            let state = schedule.state_reference(Timestamp::from_second(from).ok()?);
            if states.last() != Some(&state) {
                starts.push(from);
                states.push(state);
            }
        }
        starts.push(*seconds.last()?);
        if states.is_empty() {
            return None;
        }
        Some(Table { starts: starts.into_boxed_slice(), states: states.into_boxed_slice() })
    }
}

fn add_days(day: Date, days: i64) -> Option<Date> {
    day.checked_add(Span::new().try_days(days).ok()?).ok()
}

/// The first instant of local date `day` (the end of the gap if midnight
/// is skipped, the first occurrence if it repeats).
fn midnight(tz: &TimeZone, day: Date) -> Option<Timestamp> {
    resolve(tz, day.at(0, 0, 0, 0))
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
