//! The schedule memo against its definition: [`Schedule::state`] must give
//! exactly [`Schedule::state_reference`]'s answer at every instant, across
//! DST gaps and folds, windows past midnight, `24:00`, merged windows, and
//! instants far apart (the memo is rebuilt) or outside any table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::schedule::Schedule;
use super::{ScheduleSpec, Weekdays};

/// Zones with DST gaps and folds at 02:00 (Oslo, New York), at midnight
/// (Havana, Santiago, Sao Paulo's past), half-hour DST (Lord Howe), negative
/// DST (Dublin), Ramadan switches (Casablanca), a skipped day (Apia), odd
/// offsets (Kolkata, St Johns, Chatham, Kathmandu) and none at all (UTC).
const ZONES: &[&str] = &[
    "Europe/Oslo",
    "America/New_York",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Pacific/Apia",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "Antarctica/Troll",
    "UTC",
];

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or_else(|e| panic!("bundled zone {name}: {e}"))
}

fn compile(tz: &TimeZone, days: u8, from_minute: u16, to_minute: u16) -> Schedule {
    let spec = ScheduleSpec { name: "s".to_owned(), days: Weekdays(days), from_minute, to_minute, origin: None };
    Schedule::compile(&spec, tz)
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("fixture time {s:?}: {e}"))
}

/// Compares the memo with the reference at `now` and right around every
/// instant the answer could change nearby: the window edges it reports and
/// the zone's offset transitions.
fn check_around(schedule: &Schedule, tz: &TimeZone, now: Timestamp) -> Result<(), TestCaseError> {
    let mut instants = vec![now];
    if let Some(next) = schedule.state_reference(now).next_change {
        instants.push(next);
    }
    instants.extend(tz.following(now).take(2).map(|t| t.timestamp()));
    instants.extend(tz.preceding(now).take(1).map(|t| t.timestamp()));
    // Local midnights: where the days the reference looks at shift.
    let today = tz.to_datetime(now).date();
    for day in [today.yesterday().ok(), Some(today), today.tomorrow().ok()].into_iter().flatten() {
        instants.extend(day.at(0, 0, 0, 0).to_zoned(tz.clone()).ok().map(|z| z.timestamp()));
    }
    for t in instants {
        for delta in [-1_000_000_000, -1, 0, 1, 1_000_000_000] {
            let Ok(probe) = t.checked_add(SignedDuration::from_nanos(delta)) else { continue };
            prop_assert_eq!(schedule.state(probe), schedule.state_reference(probe), "at {} in {:?}", probe, tz);
        }
    }
    Ok(())
}

fn minute() -> impl Strategy<Value = u16> {
    prop_oneof![
        proptest::sample::select(vec![0u16, 1, 59, 60, 90, 120, 150, 179, 180, 1380, 1410, 1439, 1440]),
        0u16..=1440,
    ]
}

/// `(from, to)`: any pair, or a short window near the DST hours (which may
/// vanish into a gap).
fn window() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        (minute(), minute()),
        (
            proptest::sample::select(vec![0u16, 60, 120, 150, 165, 1410]),
            proptest::sample::select(vec![1u16, 15, 29, 30])
        )
            .prop_map(|(from, length)| (from, from + length)),
    ]
}

/// Weekdays: every day, one day, or any set.
fn days() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0b111_1111u8), (0u32..7).prop_map(|d| 1u8 << d), 0u8..=127]
}

/// Seconds since the epoch: mostly 1995-2045, some 1950-2100.
fn second() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 788_918_400i64..2_366_841_600, 1 => -631_152_000i64..4_102_444_800]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memo_equals_reference(
        zone_index in 0..ZONES.len(),
        days in days(),
        (from, to) in window(),
        seconds in proptest::collection::vec(second(), 1..5),
        nanos in 0i32..1_000_000_000,
        nearby in proptest::collection::vec(-4_000_000i64..8_000_000, 0..4),
    ) {
        let tz = zone(ZONES[zone_index]);
        let schedule = compile(&tz, days, from, to);
        for &s in &seconds {
            let base = Timestamp::new(s, 0).unwrap();
            let now = Timestamp::new(s, if s < 0 { -nanos } else { nanos }).unwrap();
            check_around(&schedule, &tz, now)?;
            // Later instants usually fall inside the table just built.
            for &d in &nearby {
                check_around(&schedule, &tz, base.checked_add(SignedDuration::from_secs(d)).unwrap())?;
            }
            // The days before and after the next transition: windows in a
            // gap, dates that repeat or vanish.
            if let Some(transition) = tz.following(base).next() {
                for day in -9..=2 {
                    let probe = transition.timestamp().checked_add(SignedDuration::from_hours(24 * day));
                    check_around(&schedule, &tz, probe.unwrap())?;
                }
            }
        }
    }
}

/// Every minute (and one nanosecond either side of it) over the three days
/// around a transition.
fn sweep(zone_name: &str, schedules: &[(u8, u16, u16)], around: &str) {
    let tz = zone(zone_name);
    let middle = at(around);
    for &(days, from, to) in schedules {
        let schedule = compile(&tz, days, from, to);
        for minute in -1440 * 2..1440 * 2 {
            let t = middle.checked_add(SignedDuration::from_mins(minute)).unwrap();
            for delta in [-1, 0, 1] {
                let probe = t.checked_add(SignedDuration::from_nanos(delta)).unwrap();
                assert_eq!(
                    schedule.state(probe),
                    schedule.state_reference(probe),
                    "{zone_name} {days:07b} {from}-{to} at {probe}"
                );
            }
        }
    }
}

const EVERY_DAY: u8 = 0b111_1111;

/// Windows that start, end or lie inside the hour that is skipped or
/// repeated, past midnight, all day, and merged across days.
const AROUND_TWO: &[(u8, u16, u16)] = &[
    (EVERY_DAY, 120, 180),
    (EVERY_DAY, 150, 165),
    (EVERY_DAY, 90, 150),
    (EVERY_DAY, 150, 210),
    (EVERY_DAY, 1380, 150),
    (EVERY_DAY, 0, 1440),
    (EVERY_DAY, 0, 0),
    (0b110_0000, 0, 1440),
    (0b100_0000, 150, 165),
    (0b001_1111, 480, 960),
    (EVERY_DAY, 180, 120),
];

#[test]
fn memo_equals_reference_across_oslo_dst() {
    // Spring forward 02:00 -> 03:00, fall back 03:00 -> 02:00 (Sundays).
    sweep("Europe/Oslo", AROUND_TWO, "2026-03-29T01:00:00Z");
    sweep("Europe/Oslo", AROUND_TWO, "2026-10-25T01:00:00Z");
}

#[test]
fn memo_equals_reference_across_midnight_transitions() {
    // Havana and Santiago switch at midnight: local dates repeat or vanish.
    let midnight: &[(u8, u16, u16)] =
        &[(EVERY_DAY, 0, 60), (EVERY_DAY, 1380, 30), (EVERY_DAY, 0, 1440), (0b000_0001, 0, 1440), (EVERY_DAY, 30, 0)];
    sweep("America/Havana", midnight, "2026-03-08T05:00:00Z");
    sweep("America/Havana", midnight, "2026-11-01T05:00:00Z");
    sweep("America/Santiago", midnight, "2026-04-05T03:00:00Z");
    sweep("America/Santiago", midnight, "2026-09-06T04:00:00Z");
    // Apia skipped 30 December 2011 entirely.
    sweep("Pacific/Apia", midnight, "2011-12-30T10:00:00Z");
    sweep("Pacific/Apia", AROUND_TWO, "2011-12-30T10:00:00Z");
}

#[test]
fn memo_equals_reference_at_the_ends_of_time() {
    let tz = zone("Europe/Oslo");
    let schedule = compile(&tz, EVERY_DAY, 1380, 60);
    for now in [Timestamp::MIN, Timestamp::MAX, at("-009999-01-03T00:00:00Z"), at("9999-12-30T12:00:00Z")] {
        assert_eq!(schedule.state(now), schedule.state_reference(now), "at {now}");
    }
}

#[test]
fn memo_answers_known_oslo_instants() {
    // 02:30-02:45 every day: empty on the spring-forward day, twice as
    // long an interval of instants is not: the fold takes the first one.
    let tz = zone("Europe/Oslo");
    let schedule = compile(&tz, EVERY_DAY, 150, 165);
    // Saturday 28 March 2026, 02:30 CET = 01:30Z.
    let state = schedule.state(at("2026-03-28T01:40:00Z"));
    assert!(state.active);
    assert_eq!(state.next_change, Some(at("2026-03-28T01:45:00Z")));
    // The window on Sunday 29 March is in the gap: next is Monday 02:30 CEST.
    let state = schedule.state(at("2026-03-28T01:45:00Z"));
    assert!(!state.active);
    assert_eq!(state.next_change, Some(at("2026-03-30T00:30:00Z")));
    // Fall back on 25 October: 02:30 is first 02:30 CEST = 00:30Z.
    let state = schedule.state(at("2026-10-25T00:00:00Z"));
    assert_eq!(state.next_change, Some(at("2026-10-25T00:30:00Z")));
    let state = schedule.state(at("2026-10-25T01:35:00Z"));
    assert!(!state.active, "the second 02:35 is outside the window");
}
