//! The pure policy engine: `(identity, host, time) -> decision`.
//!
//! Nothing in this module does I/O, reads the clock, or knows about the
//! async runtime, HTTP or sockets: time is an argument, and the compiled [`Policy`] is an
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
//!
//! Inside: `host` normalises names the way browsers do, `matcher` holds the
//! exact and label-boundary suffix maps (a decision probes a few slices of
//! the host string, and allocates nothing but `Arc` clones), `schedule`
//! turns weekly local windows into instants (DST gaps and folds included)
//! and answers from a memo table of those instants.
//! For the status page and `explain`, [`Policy::departments`],
//! [`Policy::schedules`], [`Policy::decide_service`] and
//! [`Policy::decide_default`] expose the compiled policy read-only.

pub mod catalogue;
mod host;
mod matcher;
mod schedule;
mod spec;

pub use host::{Host, HostError};
pub use spec::{
    ActionSpec, DepartmentSpec, Origin, PolicySpec, RuleSpec, ScheduleSpec, ServiceEntrySpec, ServiceSpec, Weekdays,
};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;

use matcher::{FastMap, MatchKind, NameIndex, RuleRef};
use schedule::Schedule;

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
///
/// Built once per (re)load by [`Policy::compile`]; every method takes
/// `&self` and the time as an argument, so one value can serve any number
/// of threads. Besides deciding, it answers read-only questions for the
/// status page and `explain` ([`Policy::departments`],
/// [`Policy::schedules`], [`Policy::decide_service`], ...).
#[derive(Debug)]
pub struct Policy {
    timezone: jiff::tz::TimeZone,
    schedules: Vec<Schedule>,
    schedule_ids: HashMap<Box<str>, usize>,
    service_names: Vec<Arc<str>>,
    service_ids: HashMap<Box<str>, u32>,
    names: NameIndex,
    entries: Vec<Entry>,
    departments: Vec<Department>,
    department_ids: HashMap<Box<str>, u32>,
    users: FastMap<Box<str>, u32>,
    /// Most specific prefix first.
    networks: Vec<(IpNet, u32)>,
    default_department: u32,
    /// `"default"`, for departments with no `default` anywhere up the chain.
    builtin_default_rule: Arc<str>,
}

/// One action entry (`default`, a `[services]` entry or a rule) as written
/// in one department.
#[derive(Debug)]
struct Entry {
    spec: ActionSpec,
    /// Index into `Policy::schedules` of `spec.during`.
    schedule: Option<usize>,
    origin: Option<Origin>,
    /// The department whose file holds it.
    owner: u32,
    kind: EntryKind,
}

#[derive(Debug, Clone, Copy)]
enum EntryKind {
    Default,
    Service,
    /// Index in the owner's own rules.
    Rule(u32),
}

/// An entry as one department sees it, with its SPEC name (`rules[0]`,
/// `parent:services.youtube`) precomputed so deciding allocates nothing.
#[derive(Debug, Clone)]
struct Named {
    entry: usize,
    rule: Arc<str>,
}

#[derive(Debug)]
struct OwnRule {
    domains: Vec<Host>,
    hosts: Vec<Host>,
}

#[derive(Debug)]
struct Department {
    name: Arc<str>,
    description: Option<String>,
    parent: Option<u32>,
    networks: Vec<IpNet>,
    users: Vec<String>,
    own_rules: Vec<OwnRule>,
    /// Own rules, then the parent's effective rules.
    rules: Vec<Named>,
    /// For each department on the inheritance chain (self first): where its
    /// own rules start in `rules`.
    rule_base: Vec<(u32, usize)>,
    /// Effective `[services]` entry per service id (own, else nearest
    /// ancestor's).
    services: Vec<Option<Named>>,
    /// Effective `default` (own, else nearest ancestor's).
    default: Option<Named>,
}

impl Department {
    fn empty_spec(name: &str) -> DepartmentSpec {
        DepartmentSpec::new(name)
    }

    #[inline]
    fn rule_position(&self, rule: RuleRef) -> Option<usize> {
        self.rule_base.iter().find(|(dept, _)| *dept == rule.dept).map(|(_, base)| base + rule.rule as usize)
    }
}

impl Policy {
    /// Compiles a validated spec. The spec must already have passed config
    /// validation (unknown names, cycles, duplicates are config errors with
    /// positions); anything still inconsistent is ignored, never a panic:
    /// later duplicates of a department, schedule or catalogue entry lose to
    /// the first, an unknown parent or a cycle ends the inheritance chain,
    /// a `[services]` entry for an unknown service is dropped, a `during`
    /// naming no schedule never opens, and a missing default department is
    /// created empty (default `allow`).
    pub fn compile(spec: PolicySpec) -> Policy {
        let PolicySpec {
            timezone,
            schedules: schedule_specs,
            services: service_specs,
            departments: dept_specs,
            default_department,
        } = spec;

        let mut schedules = Vec::new();
        let mut schedule_ids: HashMap<Box<str>, usize> = HashMap::new();
        for s in &schedule_specs {
            if !schedule_ids.contains_key(s.name.as_str()) {
                schedule_ids.insert(s.name.as_str().into(), schedules.len());
                schedules.push(Schedule::compile(s, &timezone));
            }
        }

        // Size the name index once, at (at most) its final size.
        let mut names = NameIndex::default();
        let (mut exact, mut exact_bytes, mut suffix, mut suffix_bytes) = (0, 0, 0, 0);
        let rule_lists = dept_specs.iter().flat_map(|d| d.rules.iter().map(|r| (&r.domains, &r.hosts)));
        for (domains, hosts) in service_specs.iter().map(|s| (&s.domains, &s.hosts)).chain(rule_lists) {
            suffix += domains.len();
            suffix_bytes += domains.iter().map(|h| h.as_str().len()).sum::<usize>();
            exact += hosts.len();
            exact_bytes += hosts.iter().map(|h| h.as_str().len()).sum::<usize>();
        }
        names.reserve(exact, exact_bytes, suffix, suffix_bytes);
        let mut service_names: Vec<Arc<str>> = Vec::new();
        let mut service_ids: HashMap<Box<str>, u32> = HashMap::new();
        for s in &service_specs {
            let id = match service_ids.get(s.name.as_str()) {
                Some(&id) => id,
                None => {
                    let id = to_u32(service_names.len());
                    service_ids.insert(s.name.as_str().into(), id);
                    service_names.push(Arc::from(s.name.as_str()));
                    id
                }
            };
            for domain in &s.domains {
                names.add_service_domain(domain, id);
            }
            for host in &s.hosts {
                names.add_service_host(host, id);
            }
        }

        let mut specs: Vec<DepartmentSpec> = Vec::with_capacity(dept_specs.len() + 1);
        let mut department_ids: HashMap<Box<str>, u32> = HashMap::new();
        for d in dept_specs {
            if !department_ids.contains_key(d.name.as_str()) {
                department_ids.insert(d.name.as_str().into(), to_u32(specs.len()));
                specs.push(d);
            }
        }
        let default_id = match department_ids.get(default_department.as_str()) {
            Some(&id) => id,
            None => {
                let id = to_u32(specs.len());
                department_ids.insert(default_department.as_str().into(), id);
                specs.push(Department::empty_spec(&default_department));
                id
            }
        };

        let parents = acyclic_parents(&specs, &department_ids);

        let mut entries: Vec<Entry> = Vec::new();
        let mut own_defaults: Vec<Option<usize>> = Vec::with_capacity(specs.len());
        let mut own_services: Vec<Vec<(u32, usize)>> = Vec::with_capacity(specs.len());
        let mut own_rule_entries: Vec<Vec<usize>> = Vec::with_capacity(specs.len());
        let mut departments: Vec<Department> = Vec::with_capacity(specs.len());
        let mut users: FastMap<Box<str>, u32> = FastMap::default();
        let mut networks: Vec<(IpNet, u32)> = Vec::new();

        for (index, d) in specs.into_iter().enumerate() {
            let owner = to_u32(index);
            let mut new_entry = |spec: ActionSpec, origin: Option<Origin>, kind: EntryKind| {
                let schedule = spec.during.as_deref().map(|name| match schedule_ids.get(name) {
                    Some(&id) => id,
                    None => {
                        schedule_ids.insert(name.into(), schedules.len());
                        schedules.push(Schedule::never(name));
                        schedules.len() - 1
                    }
                });
                entries.push(Entry { spec, schedule, origin, owner, kind });
                entries.len() - 1
            };
            own_defaults.push(d.default.map(|spec| new_entry(spec, d.default_origin, EntryKind::Default)));
            let mut services = Vec::new();
            for s in d.services {
                if let Some(&service) = service_ids.get(s.service.as_str())
                    && services.iter().all(|(known, _)| *known != service)
                {
                    services.push((service, new_entry(s.action, s.origin, EntryKind::Service)));
                }
            }
            own_services.push(services);
            let mut rule_entries = Vec::with_capacity(d.rules.len());
            let mut own_rules = Vec::with_capacity(d.rules.len());
            for (i, r) in d.rules.into_iter().enumerate() {
                let rule = RuleRef { dept: owner, rule: to_u32(i) };
                for domain in &r.domains {
                    names.add_rule_domain(domain, rule);
                }
                for host in &r.hosts {
                    names.add_rule_host(host, rule);
                }
                rule_entries.push(new_entry(r.action, r.origin, EntryKind::Rule(rule.rule)));
                own_rules.push(OwnRule { domains: r.domains, hosts: r.hosts });
            }
            own_rule_entries.push(rule_entries);
            for user in &d.users {
                users.entry(user.as_str().into()).or_insert(owner);
            }
            for net in &d.networks {
                networks.push((canonical_net(*net), owner));
            }
            departments.push(Department {
                name: Arc::from(d.name.as_str()),
                description: d.description,
                parent: parents.get(index).copied().flatten(),
                networks: d.networks,
                users: d.users,
                own_rules,
                rules: Vec::new(),
                rule_base: Vec::new(),
                services: Vec::new(),
                default: None,
            });
        }
        names.shrink();
        networks.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));

        // Resolve inheritance: each department sees its own entries first,
        // then its ancestors', nearest first.
        let dept_names: Vec<Arc<str>> = departments.iter().map(|d| d.name.clone()).collect();
        let qualify = |owner: u32, me: u32, local: &str| -> Arc<str> {
            if owner == me {
                Arc::from(local)
            } else {
                let owner_name = dept_names.get(owner as usize).map_or("", |n| &**n);
                Arc::from(format!("{owner_name}:{local}"))
            }
        };
        let chains: Vec<Vec<u32>> = (0..departments.len()).map(|d| chain(&parents, to_u32(d))).collect();
        for (index, dept) in departments.iter_mut().enumerate() {
            let me = to_u32(index);
            let chain = chains.get(index).map_or(&[][..], Vec::as_slice);
            for &owner in chain {
                let o = owner as usize;
                dept.rule_base.push((owner, dept.rules.len()));
                for (i, &entry) in own_rule_entries.get(o).into_iter().flatten().enumerate() {
                    dept.rules.push(Named { entry, rule: qualify(owner, me, &format!("rules[{i}]")) });
                }
                if dept.default.is_none()
                    && let Some(entry) = own_defaults.get(o).copied().flatten()
                {
                    dept.default = Some(Named { entry, rule: qualify(owner, me, "default") });
                }
            }
            dept.services = (0..service_names.len())
                .map(|service| {
                    let service = to_u32(service);
                    chain.iter().find_map(|&owner| {
                        let entry = own_services.get(owner as usize)?.iter().find(|(s, _)| *s == service)?.1;
                        let name = service_names.get(service as usize).map_or("", |n| &**n);
                        Some(Named { entry, rule: qualify(owner, me, &format!("services.{name}")) })
                    })
                })
                .collect();
        }

        Policy {
            timezone,
            schedules,
            schedule_ids,
            service_names,
            service_ids,
            names,
            entries,
            departments,
            department_ids,
            users,
            networks,
            default_department: default_id,
            builtin_default_rule: Arc::from("default"),
        }
    }

    /// Finds the client's department: a listed user first (case-sensitive),
    /// then the most specific network containing the client address
    /// (IPv4-mapped IPv6 addresses are matched as IPv4), then the default
    /// department.
    pub fn place(&self, identity: &Identity<'_>) -> Placement {
        if let Some(&department) = identity.user.and_then(|user| self.users.get(user)) {
            return Placement { department: DeptId(department), source: DepartmentSource::User };
        }
        if let Some(ip) = identity.client_ip.map(|ip| ip.to_canonical())
            && let Some(&(_, department)) = self.networks.iter().find(|(net, _)| net.contains(&ip))
        {
            return Placement { department: DeptId(department), source: DepartmentSource::Network };
        }
        Placement { department: DeptId(self.default_department), source: DepartmentSource::Default }
    }

    /// Looks a department up by name.
    pub fn department_id(&self, name: &str) -> Option<DeptId> {
        self.department_ids.get(name).map(|&id| DeptId(id))
    }

    /// The name of a department (the default department's for an id that
    /// is not from this policy).
    pub fn department_name(&self, id: DeptId) -> &str {
        &self.dept(id.0).name
    }

    /// `[identity] default_department`.
    pub fn default_department(&self) -> DeptId {
        DeptId(self.default_department)
    }

    /// The catalogue service a host belongs to: an exact `hosts` entry beats
    /// a `domains` entry, otherwise the longest matching domain wins. IP
    /// literals only match `hosts` entries.
    pub fn service_of(&self, host: &Host) -> Option<&str> {
        self.names.service_of(host).and_then(|id| self.service_names.get(id as usize)).map(|name| &**name)
    }

    /// Decides what happens to a request for `host` from a client placed in
    /// `placement`, at instant `now`.
    ///
    /// Evaluation order, first hit decides:
    /// 1. the department's effective `[[rules]]`: its own in file order, then
    ///    its parent's effective rules (so a grandparent's come last); a rule
    ///    matches when one of its `hosts` equals the host or one of its
    ///    `domains` is the host or a parent domain of it;
    /// 2. the `[services]` entry for [`Policy::service_of`]`(host)`: the
    ///    department's own, else the nearest ancestor's;
    /// 3. the `default`: the department's own, else the nearest ancestor's,
    ///    else `allow`.
    ///
    /// A scheduled entry (`{ action, during, otherwise }`) gives `action`
    /// while its schedule's window is open and `otherwise` outside it; with
    /// no `otherwise`, the deciding department's effective default is
    /// evaluated instead (and when that default is the scheduled entry
    /// itself, the default it overrides: the owner's parent's, else
    /// `allow`). `rule` and `origin` name the deciding entry, `schedule` the
    /// schedule it consulted, and `valid_until` is the earliest instant
    /// after `now` at which any schedule consulted opens or closes.
    pub fn decide(&self, placement: Placement, host: &Host, now: Timestamp) -> Decision {
        let dept = self.dept(placement.department.0);
        let (service, first_rule) = self.lookup(dept, host);
        let named = first_rule
            .and_then(|pos| dept.rules.get(pos))
            .or_else(|| service.and_then(|s| dept.services.get(s as usize)).and_then(Option::as_ref))
            .or(dept.default.as_ref());
        self.decision(dept, placement.source, service, named, now)
    }

    /// What applies to a host of catalogue service `service` that no
    /// `[[rules]]` entry matches: steps 2 and 3 of [`Policy::decide`]. For
    /// the status page ("what my department's policy is right now"). `None`
    /// if the catalogue has no such service.
    pub fn decide_service(&self, placement: Placement, service: &str, now: Timestamp) -> Option<Decision> {
        let service = *self.service_ids.get(service)?;
        let dept = self.dept(placement.department.0);
        let named = dept.services.get(service as usize).and_then(Option::as_ref).or(dept.default.as_ref());
        Some(self.decision(dept, placement.source, Some(service), named, now))
    }

    /// What each of the department's effective `[[rules]]` (own first, then
    /// inherited) decides at `now`, with the domains and hosts it covers:
    /// the status page lists them, as they come before any service.
    pub fn decide_rules(&self, placement: Placement, now: Timestamp) -> Vec<(RuleView<'_>, Decision)> {
        let dept = self.dept(placement.department.0);
        let views = self.department(placement.department).rules();
        dept.rules
            .iter()
            .zip(views)
            .map(|(named, view)| (view, self.decision(dept, placement.source, None, Some(named), now)))
            .collect()
    }

    /// What applies to a host in no service and no rule: step 3 of
    /// [`Policy::decide`].
    pub fn decide_default(&self, placement: Placement, now: Timestamp) -> Decision {
        let dept = self.dept(placement.department.0);
        self.decision(dept, placement.source, None, dept.default.as_ref(), now)
    }

    /// The policy's time zone (`[schedules] timezone`).
    pub fn timezone(&self) -> &jiff::tz::TimeZone {
        &self.timezone
    }

    /// Catalogue service names, in catalogue order.
    pub fn service_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.service_names.iter().map(|name| &**name)
    }

    /// Every department, in the order the spec listed them (a default
    /// department the spec lacked comes last).
    pub fn departments(&self) -> impl ExactSizeIterator<Item = DepartmentView<'_>> + '_ {
        (0..self.departments.len()).map(|id| DepartmentView { policy: self, id: to_u32(id) })
    }

    /// One department (the default department for an id that is not from
    /// this policy).
    pub fn department(&self, id: DeptId) -> DepartmentView<'_> {
        let id = if (id.0 as usize) < self.departments.len() { id.0 } else { self.default_department };
        DepartmentView { policy: self, id }
    }

    /// Every schedule defined (and any name a `during` used that none
    /// defined, which never opens).
    pub fn schedules(&self) -> impl ExactSizeIterator<Item = ScheduleView<'_>> + '_ {
        self.schedules.iter().map(|schedule| ScheduleView { schedule })
    }

    /// Whether schedule `name` is in force at `now`; `None` if no such
    /// schedule.
    pub fn schedule_active(&self, name: &str, now: Timestamp) -> Option<bool> {
        self.schedule(name).map(|s| s.is_active(now))
    }

    /// The first instant after `now` at which schedule `name` opens or
    /// closes; `None` if no such schedule or it never changes.
    pub fn schedule_next_change(&self, name: &str, now: Timestamp) -> Option<Timestamp> {
        self.schedule(name).and_then(|s| s.next_change(now))
    }

    /// One schedule by name.
    pub fn schedule(&self, name: &str) -> Option<ScheduleView<'_>> {
        let schedule = self.schedules.get(*self.schedule_ids.get(name)?)?;
        Some(ScheduleView { schedule })
    }

    /// The department for an index; indices come from this policy, which
    /// always holds its default department, so the fallback never fails.
    fn dept(&self, id: u32) -> &Department {
        match self.departments.get(id as usize) {
            Some(dept) => dept,
            None => &self.departments[self.default_department as usize],
        }
    }

    /// The catalogue service of `host` and the position in `dept.rules` of
    /// the first rule matching it.
    #[inline]
    fn lookup(&self, dept: &Department, host: &Host) -> (Option<u32>, Option<usize>) {
        let mut exact_service = None;
        let mut suffix_service = None;
        let mut first_rule: Option<usize> = None;
        self.names.for_each_match(host, |kind, target| {
            match kind {
                MatchKind::Exact => exact_service = exact_service.or(target.service),
                MatchKind::Suffix => suffix_service = suffix_service.or(target.service),
            }
            for &rule in target.rules {
                if let Some(pos) = dept.rule_position(rule) {
                    first_rule = Some(first_rule.map_or(pos, |best| best.min(pos)));
                }
            }
        });
        (exact_service.or(suffix_service), first_rule)
    }

    fn decision(
        &self,
        dept: &Department,
        source: DepartmentSource,
        service: Option<u32>,
        named: Option<&Named>,
        now: Timestamp,
    ) -> Decision {
        let service = service.and_then(|s| self.service_names.get(s as usize)).cloned();
        let mut valid_until = None;
        let (rule, origin, action, schedule, schedule_active) =
            match named.and_then(|n| Some((n, self.entries.get(n.entry)?))) {
                Some((named, entry)) => {
                    let (action, schedule, active) = self.evaluate(dept, named.entry, entry, now, &mut valid_until);
                    (named.rule.clone(), entry.origin.clone(), action, schedule, active)
                }
                None => (self.builtin_default_rule.clone(), None, Action::Allow, None, false),
            };
        Decision {
            department: dept.name.clone(),
            department_source: source,
            service,
            rule,
            schedule: schedule.map(|s| s.name.clone()),
            schedule_active,
            action,
            origin,
            valid_until,
        }
    }

    /// The action an entry gives at `now` for `dept`, the schedule it
    /// consulted and whether that was open.
    fn evaluate(
        &self,
        dept: &Department,
        index: usize,
        entry: &Entry,
        now: Timestamp,
        valid_until: &mut Option<Timestamp>,
    ) -> (Action, Option<&Schedule>, bool) {
        let Some(schedule) = entry.schedule.and_then(|s| self.schedules.get(s)) else {
            return (entry.spec.action, None, false);
        };
        let state = schedule.state(now);
        merge_earliest(valid_until, state.next_change);
        if state.active {
            return (entry.spec.action, Some(schedule), true);
        }
        if let Some(otherwise) = entry.spec.otherwise {
            return (otherwise, Some(schedule), false);
        }
        let fallback = match dept.default.as_ref() {
            // The default itself: fall back to the default it overrides.
            Some(default) if default.entry == index => self.inherited_default(entry.owner),
            Some(default) => Some(default.entry),
            None => None,
        };
        (self.evaluate_default(fallback, now, valid_until), Some(schedule), false)
    }

    /// The effective default of `owner`'s parent, as an entry index.
    fn inherited_default(&self, owner: u32) -> Option<usize> {
        let parent = self.departments.get(owner as usize)?.parent?;
        Some(self.departments.get(parent as usize)?.default.as_ref()?.entry)
    }

    /// Evaluates a default entry (`None` = the built-in `allow`), falling
    /// back up the inheritance chain while a scheduled default without
    /// `otherwise` is outside its window.
    fn evaluate_default(
        &self,
        mut current: Option<usize>,
        now: Timestamp,
        valid_until: &mut Option<Timestamp>,
    ) -> Action {
        // Each step moves to a strict ancestor, so this ends; the bound only
        // guards against a bug.
        for _ in 0..=self.departments.len() {
            let Some(entry) = current.and_then(|e| self.entries.get(e)) else {
                return Action::Allow;
            };
            let Some(schedule) = entry.schedule.and_then(|s| self.schedules.get(s)) else {
                return entry.spec.action;
            };
            let state = schedule.state(now);
            merge_earliest(valid_until, state.next_change);
            if state.active {
                return entry.spec.action;
            }
            if let Some(otherwise) = entry.spec.otherwise {
                return otherwise;
            }
            current = self.inherited_default(entry.owner);
        }
        Action::Allow
    }

    fn entry_view<'p>(&'p self, named: &'p Named) -> Option<EntryView<'p>> {
        let entry = self.entries.get(named.entry)?;
        Some(EntryView {
            rule: &named.rule,
            action: &entry.spec,
            department: &self.dept(entry.owner).name,
            origin: entry.origin.as_ref(),
        })
    }
}

fn merge_earliest(earliest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(candidate) = candidate {
        *earliest = Some(earliest.map_or(candidate, |current| current.min(candidate)));
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network
/// it denotes, since client addresses are matched in canonical form.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let (Some(v4), Some(prefix)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        && let Ok(v4) = ipnet::Ipv4Net::new(v4, prefix)
    {
        return IpNet::V4(v4);
    }
    net
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Each department's parent index, with unknown parents dropped and every
/// cycle cut (at the first member reached in spec order).
fn acyclic_parents(specs: &[DepartmentSpec], ids: &HashMap<Box<str>, u32>) -> Vec<Option<u32>> {
    let mut parents: Vec<Option<u32>> =
        specs.iter().map(|d| d.inherits.as_deref().and_then(|name| ids.get(name).copied())).collect();
    for start in 0..parents.len() {
        let mut current = parents.get(start).copied().flatten();
        for _ in 0..parents.len() {
            match current {
                None => break,
                Some(p) if p as usize == start => {
                    if let Some(slot) = parents.get_mut(start) {
                        *slot = None;
                    }
                    break;
                }
                Some(p) => current = parents.get(p as usize).copied().flatten(),
            }
        }
    }
    parents
}

/// `dept` and its ancestors, nearest first (`parents` is acyclic).
fn chain(parents: &[Option<u32>], dept: u32) -> Vec<u32> {
    let mut chain = vec![dept];
    let mut current = parents.get(dept as usize).copied().flatten();
    while let Some(p) = current {
        if chain.len() > parents.len() {
            break;
        }
        chain.push(p);
        current = parents.get(p as usize).copied().flatten();
    }
    chain
}

/// A read-only view of one compiled department, for the status page and
/// `explain`: what it is, who is in it, and what applies to its members
/// after inheritance.
#[derive(Clone, Copy, Debug)]
pub struct DepartmentView<'p> {
    policy: &'p Policy,
    id: u32,
}

/// One action entry as a department sees it (after inheritance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView<'p> {
    /// Its SPEC name from this department's point of view: `default`,
    /// `services.youtube`, `rules[0]`, or `parent:services.facebook` when
    /// inherited.
    pub rule: &'p str,
    /// The action as written (possibly scheduled).
    pub action: &'p ActionSpec,
    /// The department whose file holds it.
    pub department: &'p str,
    /// Where it was written.
    pub origin: Option<&'p Origin>,
}

/// A department's effective `[services]` entry for one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceEntryView<'p> {
    /// The catalogue service.
    pub service: &'p str,
    /// The entry (own or inherited).
    pub entry: EntryView<'p>,
}

/// A department's effective `[[rules]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleView<'p> {
    /// Suffix-matched domains.
    pub domains: &'p [Host],
    /// Exactly matched hosts.
    pub hosts: &'p [Host],
    /// The entry (own or inherited).
    pub entry: EntryView<'p>,
}

impl<'p> DepartmentView<'p> {
    /// The department's id in its policy.
    pub fn id(&self) -> DeptId {
        DeptId(self.id)
    }

    fn dept(&self) -> &'p Department {
        self.policy.dept(self.id)
    }

    /// Name (file stem).
    pub fn name(&self) -> &'p str {
        &self.dept().name
    }

    /// `description`.
    pub fn description(&self) -> Option<&'p str> {
        self.dept().description.as_deref()
    }

    /// The department it `inherits` from (after cutting any cycle).
    pub fn parent(&self) -> Option<&'p str> {
        let parent = self.dept().parent?;
        Some(&self.policy.dept(parent).name)
    }

    /// Whether this is `[identity] default_department`.
    pub fn is_default(&self) -> bool {
        self.id == self.policy.default_department
    }

    /// Its own `networks` (never inherited).
    pub fn networks(&self) -> &'p [IpNet] {
        &self.dept().networks
    }

    /// Its own `users` (never inherited).
    pub fn users(&self) -> &'p [String] {
        &self.dept().users
    }

    /// The effective `default` (own, else nearest ancestor's); `None` when
    /// no department on the chain sets one (the built-in `allow`).
    pub fn default_entry(&self) -> Option<EntryView<'p>> {
        self.dept().default.as_ref().and_then(|named| self.policy.entry_view(named))
    }

    /// The effective `[services]` entries (own, else nearest ancestor's),
    /// in catalogue order; services with no entry anywhere are left out
    /// (they get the default).
    pub fn services(&self) -> impl Iterator<Item = ServiceEntryView<'p>> + 'p {
        let policy = self.policy;
        self.dept().services.iter().enumerate().filter_map(move |(service, named)| {
            Some(ServiceEntryView {
                service: policy.service_names.get(service)?,
                entry: policy.entry_view(named.as_ref()?)?,
            })
        })
    }

    /// The effective `[[rules]]` in evaluation order: own first, then
    /// inherited ones.
    pub fn rules(&self) -> impl Iterator<Item = RuleView<'p>> + 'p {
        let policy = self.policy;
        self.dept().rules.iter().filter_map(move |named| {
            let entry = policy.entries.get(named.entry)?;
            let EntryKind::Rule(index) = entry.kind else { return None };
            let own = policy.dept(entry.owner).own_rules.get(index as usize)?;
            Some(RuleView { domains: &own.domains, hosts: &own.hosts, entry: policy.entry_view(named)? })
        })
    }
}

/// A read-only view of one schedule.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleView<'p> {
    schedule: &'p Schedule,
}

impl<'p> ScheduleView<'p> {
    /// Its name.
    pub fn name(&self) -> &'p str {
        &self.schedule.name
    }

    /// The days its window starts on (empty for a schedule that never opens).
    pub fn days(&self) -> Weekdays {
        self.schedule.days
    }

    /// Window start, minutes after local midnight.
    pub fn from_minute(&self) -> u16 {
        self.schedule.from_minute
    }

    /// Window end, minutes after local midnight (`<= from_minute`: the next
    /// day).
    pub fn to_minute(&self) -> u16 {
        self.schedule.to_minute
    }

    /// Where it was defined (`None` for a name used but never defined).
    pub fn origin(&self) -> Option<&'p Origin> {
        self.schedule.origin.as_ref()
    }

    /// Whether its window is open at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.schedule.state(now).active
    }

    /// The first instant after `now` at which its window opens or closes.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.schedule.state(now).next_change
    }
}

#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;
