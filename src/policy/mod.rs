//! The pure policy engine: `(identity, host, time) -> decision`.
//!
//! Nothing in this module does I/O, reads the clock, or knows about tokio,
//! hyper or sockets: time is an argument, and the compiled [`Policy`] is an
//! immutable value built once per (re)load from a validated [`PolicySpec`].
//!
//! Evaluation order (see [`Policy::decide`]):
//! 1. the department's `[[rules]]`, in order, first match wins (a child's rules
//!    before the rules it inherits);
//! 2. the department's `[services]` entry for the catalogue service the host
//!    belongs to (its own entry, else the nearest ancestor's);
//! 3. the department's `default` (its own, else the nearest ancestor's).
//!
//! Each entry may be scheduled (`{ action, during, otherwise }`): inside the
//! schedule's window `action` applies, outside it `otherwise` (which defaults
//! to the department's `default`).

pub mod catalogue;
mod host;
mod spec;

pub use host::{Host, HostError};
pub use spec::{
    ActionSpec, DepartmentSpec, Origin, PolicySpec, RuleSpec, ScheduleSpec, ServiceEntrySpec, ServiceSpec, Weekdays,
};

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;

/// What the proxy does with a request. Ordered by strictness:
/// `Allow < Log < Block`, so `max` picks the stricter of two decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let it through, recorded only if `[log] allowed = true`.
    Allow,
    /// Let it through and always record it (audit).
    Log,
    /// Refuse it.
    Block,
}

impl Action {
    /// The action's name as written in config files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Block => "block",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that is not `allow`, `log` or `block`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action `{0}`, expected one of `allow`, `block`, `log`")]
pub struct UnknownAction(pub String);

impl std::str::FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Action::Allow),
            "log" => Ok(Action::Log),
            "block" => Ok(Action::Block),
            other => Err(UnknownAction(other.to_owned())),
        }
    }
}

/// How a client's department was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DepartmentSource {
    /// The authenticated user is listed in the department's `users`.
    User,
    /// The client address is inside one of the department's `networks`.
    Network,
    /// Nothing matched: `[identity] default_department`.
    Default,
}

impl DepartmentSource {
    /// `"user"`, `"network"` or `"default"`, as `explain --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            DepartmentSource::User => "user",
            DepartmentSource::Network => "network",
            DepartmentSource::Default => "default",
        }
    }
}

/// Who is asking: the authenticated proxy user (if any) and the client address.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity<'a> {
    /// The user name from valid `Proxy-Authorization` credentials.
    pub user: Option<&'a str>,
    /// The client's address (after PROXY protocol, if any).
    pub client_ip: Option<IpAddr>,
}

/// Index of a department inside one compiled [`Policy`]. Only meaningful
/// for the policy that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeptId(pub(crate) u32);

/// The department a client belongs to, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The department.
    pub department: DeptId,
    /// How it was chosen.
    pub source: DepartmentSource,
}

/// A decision, with everything needed to explain and log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Department name.
    pub department: Arc<str>,
    /// How the department was chosen.
    pub department_source: DepartmentSource,
    /// The catalogue service the host belongs to, whatever decided (`None`
    /// if the host is in no service).
    pub service: Option<Arc<str>>,
    /// What decided, as the SPEC spells it: `rules[0]`, `services.youtube`,
    /// `default`, or for inherited entries `parent:services.facebook`.
    pub rule: Arc<str>,
    /// The schedule the deciding entry consulted (`during`), if any.
    pub schedule: Option<Arc<str>>,
    /// Whether that schedule's window was open at the decision time.
    pub schedule_active: bool,
    /// The action to take.
    pub action: Action,
    /// Where the deciding entry was written (`None` for built-in defaults).
    pub origin: Option<Origin>,
    /// The first instant after the decision time at which this decision may
    /// change because a schedule window opens or closes; `None` if it never
    /// changes with time.
    pub valid_until: Option<Timestamp>,
}

/// A compiled, immutable policy: departments, catalogue and schedules in
/// fast lookup structures.
#[derive(Debug)]
pub struct Policy {
    // Filled in by the policy implementation.
    _private: (),
}

impl Policy {
    /// Compiles a validated spec. The spec must already have passed config
    /// validation (unknown names, cycles, duplicates are config errors with
    /// positions); anything still inconsistent is ignored, never a panic.
    pub fn compile(spec: PolicySpec) -> Policy {
        let _ = spec;
        Policy { _private: () }
    }

    /// Finds the client's department: a listed user first, then the most
    /// specific matching network, then the default department.
    pub fn place(&self, identity: &Identity<'_>) -> Placement {
        let _ = identity;
        Placement { department: DeptId(0), source: DepartmentSource::Default }
    }

    /// Looks a department up by name.
    pub fn department_id(&self, name: &str) -> Option<DeptId> {
        let _ = name;
        None
    }

    /// The name of a department.
    pub fn department_name(&self, id: DeptId) -> &str {
        let _ = id;
        ""
    }

    /// The catalogue service a host belongs to: an exact `hosts` entry beats
    /// a `domains` entry, otherwise the longest matching domain wins.
    pub fn service_of(&self, host: &Host) -> Option<&str> {
        let _ = host;
        None
    }

    /// Decides what happens to a request for `host` from a client placed in
    /// `placement`, at instant `now`. See the module docs for the order.
    pub fn decide(&self, placement: Placement, host: &Host, now: Timestamp) -> Decision {
        let _ = (placement, host, now);
        todo_decision()
    }
}

fn todo_decision() -> Decision {
    Decision {
        department: Arc::from(""),
        department_source: DepartmentSource::Default,
        service: None,
        rule: Arc::from("default"),
        schedule: None,
        schedule_active: false,
        action: Action::Allow,
        origin: None,
        valid_until: None,
    }
}
