//! The validated input to [`super::Policy::compile`]: plain data, built by
//! `config` after every name, reference and position has been checked.

use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use super::{Action, Host};

/// Where a config entry was written: `file:line:col`, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file, as the user named it (relative paths stay relative).
    pub file: Arc<Path>,
    /// Line, 1-based.
    pub line: u32,
    /// Column, 1-based, in characters.
    pub col: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Everything the engine needs, validated.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    /// `[schedules] timezone` (UTC if unset).
    pub timezone: jiff::tz::TimeZone,
    /// Named schedules.
    pub schedules: Vec<ScheduleSpec>,
    /// The full catalogue: built-in services (possibly extended or replaced
    /// by `services.toml`) plus the admin's own.
    pub services: Vec<ServiceSpec>,
    /// Every department (file stem = name).
    pub departments: Vec<DepartmentSpec>,
    /// `[identity] default_department`; names one of `departments`.
    pub default_department: String,
}

/// Days of the week a schedule runs on, bit 0 = Monday .. bit 6 = Sunday.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Weekdays(pub u8);

impl Weekdays {
    /// Every day of the week.
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    /// Day names as config files write them, Monday (bit 0) first.
    pub const NAMES: [&'static str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
}

impl std::fmt::Display for Weekdays {
    /// `mon-fri`, `sat, sun`, `every day`, `no day`: runs of three or more
    /// days are joined with a dash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Weekdays::ALL {
            return f.write_str("every day");
        }
        let on = |day: usize| self.0 & (1 << day) != 0;
        let mut parts: Vec<String> = Vec::new();
        let mut day = 0;
        while day < 7 {
            if !on(day) {
                day += 1;
                continue;
            }
            let start = day;
            while day + 1 < 7 && on(day + 1) {
                day += 1;
            }
            let (first, last) = (Weekdays::NAMES[start], Weekdays::NAMES[day]);
            match day - start {
                0 => parts.push(first.to_owned()),
                1 => parts.extend([first.to_owned(), last.to_owned()]),
                _ => parts.push(format!("{first}-{last}")),
            }
            day += 1;
        }
        if parts.is_empty() { f.write_str("no day") } else { f.write_str(&parts.join(", ")) }
    }
}

/// A named weekly window `[from, to)` in the policy's time zone.
#[derive(Clone, Debug)]
pub struct ScheduleSpec {
    /// Schedule name (a key under `[schedules]`).
    pub name: String,
    /// Days the window starts on.
    pub days: Weekdays,
    /// Start, minutes after local midnight (0..1440).
    pub from_minute: u16,
    /// End, minutes after local midnight (1..=1440); `to < from` runs past
    /// midnight and belongs to the day it starts. Never equal to `from`.
    pub to_minute: u16,
    /// Where the schedule was defined.
    pub origin: Option<Origin>,
}

/// A service: suffix `domains` and exact `hosts`.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Service name (`facebook`, ...).
    pub name: String,
    /// Matches the host and every subdomain on a label boundary.
    pub domains: Vec<Host>,
    /// Matches exactly that host.
    pub hosts: Vec<Host>,
}

/// An action, possibly scheduled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionSpec {
    /// The action (inside the schedule's window if `during` is set).
    pub action: Action,
    /// Schedule name; `None` = always.
    pub during: Option<String>,
    /// Outside the window; `None` = the department's `default`.
    pub otherwise: Option<Action>,
}

impl ActionSpec {
    /// An unscheduled action.
    pub fn always(action: Action) -> ActionSpec {
        ActionSpec { action, during: None, otherwise: None }
    }
}

/// One `[services]` entry of a department.
#[derive(Clone, Debug)]
pub struct ServiceEntrySpec {
    /// Catalogue service name.
    pub service: String,
    /// What to do.
    pub action: ActionSpec,
    /// Where it was written.
    pub origin: Option<Origin>,
}

/// One `[[rules]]` entry of a department.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    /// Suffix-matched domains.
    pub domains: Vec<Host>,
    /// Exactly matched hosts.
    pub hosts: Vec<Host>,
    /// What to do.
    pub action: ActionSpec,
    /// Where it was written.
    pub origin: Option<Origin>,
}

/// One department, as written (inheritance is resolved by `compile`).
#[derive(Clone, Debug)]
pub struct DepartmentSpec {
    /// File stem.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// Parent department name (exists; no cycles).
    pub inherits: Option<String>,
    /// Client source networks.
    pub networks: Vec<IpNet>,
    /// Proxy user names (case-sensitive).
    pub users: Vec<String>,
    /// `default`; `None` = inherited, or `allow` at the root.
    pub default: Option<ActionSpec>,
    /// Where `default` was written.
    pub default_origin: Option<Origin>,
    /// `[services]` entries.
    pub services: Vec<ServiceEntrySpec>,
    /// `[[rules]]`, in order.
    pub rules: Vec<RuleSpec>,
}

impl DepartmentSpec {
    /// A department with only a name: no networks, users, entries or rules.
    pub fn new(name: &str) -> DepartmentSpec {
        DepartmentSpec {
            name: name.to_owned(),
            description: None,
            inherits: None,
            networks: Vec::new(),
            users: Vec::new(),
            default: None,
            default_origin: None,
            services: Vec::new(),
            rules: Vec::new(),
        }
    }
}
