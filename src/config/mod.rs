//! Loading and validating the configuration.
//!
//! [`load`] reads the main file, `services.toml`, `departments/*.toml`, the
//! htpasswd and hosts files and the certificates, reports *every* problem as
//! a [`Diagnostic`] (`FILE:LINE:COL: error: MESSAGE`, with a hint where one
//! helps), and on success returns one immutable [`Config`] snapshot holding
//! the compiled [`Policy`] and any warnings (`FILE:LINE:COL: warning:
//! MESSAGE`: what loads but does not work as written). The proxy swaps
//! whole snapshots on reload.
//!
//! Each file is parsed into a spanned TOML document and walked by small
//! validators that record problems and carry on (`walk` holds the helpers,
//! `values` the value parsers): `main_file`, `services`, `departments`, and
//! `named_files` for the htpasswd, hosts and PEM files; [`load`] then runs
//! the cross-file checks and builds the [`PolicySpec`].

mod departments;
mod diagnostic;
mod main_file;
mod named_files;
mod services;
mod values;
mod walk;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use named_files::refused_log_kind;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::policy::{Host, Policy, PolicySpec};

use walk::{Sink, Source, io_reason, name_hint};

/// The default main config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "config/socialgate.toml";

/// A complete, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The main file, as given.
    pub main_file: PathBuf,
    /// Every file and folder that was read, and `services.toml` even if
    /// absent (its appearance changes the config): what reload watches.
    pub files: Vec<PathBuf>,
    /// `[proxy]`.
    pub proxy: ProxyConfig,
    /// `[identity]` (`default_department` lives in the policy).
    pub identity: IdentityConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[admin]`, if configured.
    pub admin: Option<AdminConfig>,
    /// `[pac]`.
    pub pac: PacConfig,
    /// `[intercept]`, if configured.
    pub intercept: Option<InterceptConfig>,
    /// `[block_page]`.
    pub block_page: BlockPageConfig,
    /// `[limits]`.
    pub limits: Limits,
    /// The compiled policy (schedules, services, departments).
    pub policy: Policy,
    /// What the config holds, for [`Config::summary`].
    pub counts: Counts,
    /// What loads but does not do all it says (`FILE:LINE:COL: warning:
    /// MESSAGE`), in file order; empty for most configs. `check` and the
    /// other commands print them, a reload logs them.
    pub warnings: Diagnostics,
}

/// How much a config holds (the policy itself is opaque).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Departments.
    pub departments: usize,
    /// Catalogue services (built-in and `services.toml`).
    pub services: usize,
    /// Named schedules.
    pub schedules: usize,
    /// Distinct user names, in department files and the htpasswd file.
    pub users: usize,
}

/// `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Plain listeners.
    pub listen: Vec<SocketAddr>,
    /// `[proxy.tls]`: an HTTPS listener (client->proxy TLS).
    pub tls: Option<TlsListenerConfig>,
    /// CONNECT only to these ports.
    pub connect_ports: Vec<u16>,
    /// Refuse non-global destinations.
    pub block_private_destinations: bool,
    /// Exempt from the rule above.
    pub allow_destinations: Vec<IpNet>,
    /// `hosts_file`, parsed: normalised name -> addresses, consulted before DNS.
    pub hosts: HashMap<Host, Vec<IpAddr>>,
    /// DNS servers; empty = the system's resolver.
    pub nameservers: Vec<SocketAddr>,
    /// `X-Forwarded-For` handling.
    pub forwarded_for: ForwardedFor,
    /// `http://<status_host>/` answers the status page.
    pub status_host: Host,
    /// What to do with CONNECT tunnels whose first bytes are not TLS.
    pub non_tls_tunnels: NonTlsTunnels,
    /// Peers allowed to send the PROXY protocol header.
    pub proxy_protocol_from: Vec<IpNet>,
    /// TCP congestion control of accepted client connections; `None`: the
    /// system's default.
    pub client_congestion_control: Option<String>,
}

/// `[proxy.tls]`: certificate chain and key, already read and parsed.
#[derive(Debug, Clone)]
pub struct TlsListenerConfig {
    /// TLS listeners.
    pub listen: Vec<SocketAddr>,
    /// Certificate file path (for messages).
    pub cert_path: PathBuf,
    /// Key file path (for messages).
    pub key_path: PathBuf,
    /// Certificate chain (PEM contents).
    pub cert_pem: String,
    /// Private key (PEM contents). Never printed by `Debug`.
    pub key_pem: Secret,
}

/// A string that `Debug` never prints.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `forwarded_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFor {
    /// Append the client address.
    Add,
    /// Remove the header.
    Delete,
    /// Pass it through unchanged.
    Keep,
}

/// `non_tls_tunnels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonTlsTunnels {
    /// Let tunnels whose first bytes are not TLS through (decided on the
    /// CONNECT host alone).
    Allow,
    /// Close them.
    Refuse,
}

/// `[identity]`.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `auth`.
    pub auth: AuthMode,
    /// htpasswd contents: user -> bcrypt hash (empty if no file).
    pub users: HashMap<String, Secret>,
    /// Basic realm.
    pub realm: String,
    /// Clients in these networks need no credentials.
    pub auth_exempt_networks: Vec<IpNet>,
}

/// `auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No proxy authentication.
    None,
    /// Basic proxy authentication (407 until valid credentials).
    Basic,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Where access-log records go.
    pub access_log: LogTarget,
    /// Record format.
    pub format: LogFormat,
    /// `false`: write only `block` and `log` decisions.
    pub allowed: bool,
    /// Replace user names by keyed hashes.
    pub pseudonymize_users: bool,
    /// Key file for pseudonyms (created 0600 if missing).
    pub pseudonym_key_file: PathBuf,
}

/// `access_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// `"-"`.
    Stdout,
    /// A file (resolved against the config folder).
    File(PathBuf),
}

/// `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON Lines.
    Json,
    /// Squid native access.log.
    Squid,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Admin listener.
    pub listen: SocketAddr,
}

/// `[pac]`.
#[derive(Debug, Clone, Default)]
pub struct PacConfig {
    /// `host:port` advertised in the PAC file; `None` = the first listener.
    pub proxy: Option<String>,
    /// Host patterns (`*.corp.example`) and CIDRs reached directly.
    pub direct: Vec<String>,
    /// Append `; DIRECT` after the proxy.
    pub fallback_direct: bool,
}

/// `[intercept]`: the company CA, already read.
#[derive(Debug, Clone)]
pub struct InterceptConfig {
    /// CA certificate path.
    pub ca_cert_path: PathBuf,
    /// CA key path.
    pub ca_key_path: PathBuf,
    /// CA certificate (PEM).
    pub ca_cert_pem: String,
    /// CA key (PEM).
    pub ca_key_pem: Secret,
}

/// `[block_page]`.
#[derive(Debug, Clone, Default)]
pub struct BlockPageConfig {
    /// Who to contact, shown on the block page.
    pub contact: String,
}

/// `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line + headers; 431 beyond.
    pub max_header_bytes: usize,
    /// To receive a whole request head; 408 after.
    pub header_timeout: Duration,
    /// Keep-alive connection between requests.
    pub idle_timeout: Duration,
    /// CONNECT tunnel with no bytes either way.
    pub tunnel_idle_timeout: Duration,
    /// Upstream connect; 504 after.
    pub connect_timeout: Duration,
    /// Origin accepted but sends no response head; 504 after.
    pub upstream_response_timeout: Duration,
    /// Wait for a ClientHello on a new tunnel.
    pub sni_peek_timeout: Duration,
    /// Concurrent client connections; beyond: 503 + close.
    pub max_connections: usize,
    /// SIGTERM: time given to in-flight work.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 65536,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            tunnel_idle_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            upstream_response_timeout: Duration::from_secs(60),
            sni_peek_timeout: Duration::from_secs(5),
            max_connections: 10000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Loads and validates the configuration rooted at `main_file`. Relative
/// paths inside a file are resolved against that file's folder. Returns
/// every problem found, not just the first, sorted by file (main file,
/// `services.toml`, departments by name, then the files they name) and
/// position.
///
/// A file that cannot be read is reported as `FILE:0:0`, except files named
/// by a key of the main file (htpasswd, hosts, certificates), which are
/// reported at that key's value.
///
/// The files `[log]` names are checked as the proxy will use them (without
/// creating any): see [`load_to_read`] for commands that do not write logs.
pub fn load(main_file: &Path) -> Result<Config, Diagnostics> {
    load_with(main_file, true)
}

/// [`load`], without checking the files `[log]` names: for commands that
/// only read the policy (`explain`, `pac`, `replay`) and may run on a
/// machine that does not have the proxy's log and state folders.
pub fn load_to_read(main_file: &Path) -> Result<Config, Diagnostics> {
    load_with(main_file, false)
}

fn load_with(main_file: &Path, log_files: bool) -> Result<Config, Diagnostics> {
    let mut out = Vec::new();
    let main_src = match walk::read_text(main_file) {
        Ok(text) => Source::new(main_file.to_path_buf(), text),
        Err(err) => return Err(Diagnostics(vec![unreadable(main_file, "config file", &err)])),
    };
    let mut files = vec![main_file.to_path_buf()];
    let main = main_file::parse(&main_src, &mut out, log_files);

    let services_path = walk::resolve(main_file, "services.toml");
    let services_src = read_optional(&services_path, &mut out);
    // Watched even when absent: creating it changes the config.
    files.push(services_path.clone());
    let catalogue = services::parse(services_src.as_ref(), &mut out);

    let dept_dir = walk::resolve(main_file, "departments");
    let mut dept_sources: Vec<(String, Source)> = Vec::new();
    match std::fs::read_dir(&dept_dir) {
        Ok(dir) => {
            files.push(dept_dir.clone());
            let mut paths: Vec<PathBuf> = dir
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.is_dir())
                // Editor droppings such as Emacs' `.#sales.toml` lock files.
                .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            paths.sort();
            for path in paths {
                let file = dept_dir.join(path.file_name().unwrap_or_default());
                let Some(name) = file.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                    out.push(whole_file(&file, "department file name is not valid UTF-8".to_owned()));
                    continue;
                };
                if !departments::valid_name(&name) {
                    out.push(whole_file(
                        &file,
                        format!("invalid department name `{name}`, expected letters, digits, `-`, `_` or `.`"),
                    ));
                    continue;
                }
                match walk::read_text(&file) {
                    Ok(text) => {
                        files.push(file.clone());
                        dept_sources.push((name, Source::new(file, text)));
                    }
                    Err(err) => out.push(unreadable(&file, "department file", &err)),
                }
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => out.push(whole_file(&dept_dir, format!("cannot read departments folder: {}", io_reason(&err)))),
    }
    let drafts: Vec<departments::DepartmentDraft> = dept_sources
        .iter()
        .enumerate()
        .filter_map(|(i, (name, src))| departments::parse(name, i, src, &mut out))
        .collect();

    cross_check(&main_src, &main, &catalogue, &dept_sources, &drafts, &mut out);
    for file in &main.files {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }

    if !out.is_empty() {
        // The warnings too, in place: fixing the errors should not bring
        // news about the same files.
        out.extend(main.warnings);
        let mut order: Vec<PathBuf> = vec![main_file.to_path_buf(), services_path];
        order.extend(dept_sources.iter().map(|(_, s)| s.path.clone()));
        let rank = |p: &Path| order.iter().position(|o| o == p).unwrap_or(order.len());
        out.sort_by_key(|d| (rank(&d.file), d.line, d.col));
        return Err(Diagnostics(out));
    }

    let mut users: std::collections::HashSet<&str> = main.identity.users.keys().map(String::as_str).collect();
    users.extend(drafts.iter().flat_map(|d| d.spec.users.iter().map(String::as_str)));
    let counts = Counts {
        departments: drafts.len(),
        services: catalogue.services.len(),
        schedules: main.schedules.len(),
        users: users.len(),
    };
    let spec = PolicySpec {
        timezone: main.timezone,
        schedules: main.schedules,
        services: catalogue.services,
        departments: drafts.into_iter().map(|d| d.spec).collect(),
        default_department: main.default_department.0,
    };
    Ok(Config {
        main_file: main_file.to_path_buf(),
        files,
        proxy: main.proxy,
        identity: main.identity,
        log: main.log,
        admin: main.admin,
        pac: main.pac,
        intercept: main.intercept,
        block_page: main.block_page,
        limits: main.limits,
        policy: Policy::compile(spec),
        counts,
        warnings: Diagnostics(main.warnings),
    })
}

impl Config {
    /// One line for `check`: how many departments, services, schedules, users.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        [(c.departments, "department"), (c.services, "service"), (c.schedules, "schedule"), (c.users, "user")]
            .iter()
            .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A problem with a file as a whole (`FILE:0:0`).
fn whole_file(file: &Path, message: String) -> Diagnostic {
    Diagnostic { severity: Severity::Error, file: file.to_path_buf(), line: 0, col: 0, message, hint: None }
}

/// A file that cannot be read: `FILE:0:0`, or the position of the first
/// byte that is not UTF-8.
fn unreadable(file: &Path, what: &str, err: &walk::ReadError) -> Diagnostic {
    let (line, col) = match err {
        walk::ReadError::NotUtf8 { line, col, .. } => (*line, *col),
        _ => (0, 0),
    };
    Diagnostic { line, col, hint: err.hint(), ..whole_file(file, format!("cannot read {what}: {}", err.reason())) }
}

/// Reads a file that may be absent.
fn read_optional(path: &Path, out: &mut Vec<Diagnostic>) -> Option<Source> {
    match walk::read_text(path) {
        Ok(text) => Some(Source::new(path.to_path_buf(), text)),
        Err(walk::ReadError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            out.push(unreadable(path, "file", &err));
            None
        }
    }
}

/// Reports a TOML syntax error (one per file).
fn syntax_error(sink: &mut Sink<'_>, err: &toml::de::Error) {
    let span = err.span().unwrap_or(0..0);
    let message = err.message().lines().next().unwrap_or("").trim().trim_end_matches('.');
    let mut message = format!("invalid TOML: {}", walk::lowercase_first(message));
    if message.ends_with("duplicate key")
        && let Some(key) = sink.src.text.get(span.clone()).filter(|k| !k.is_empty() && !k.contains('\n'))
    {
        message = format!("{message} `{key}`");
    }
    sink.error(&span, message);
}

/// Checks across files: the default department, `inherits` (unknown
/// parents, cycles), service and schedule references, users and networks
/// listed in two departments.
fn cross_check(
    main_src: &Source,
    main: &main_file::MainParts,
    catalogue: &services::Catalogue,
    sources: &[(String, Source)],
    drafts: &[departments::DepartmentDraft],
    out: &mut Vec<Diagnostic>,
) {
    let all_dept_names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
    if main.parsed {
        let (name, span) = &main.default_department;
        if !all_dept_names.contains(&name.as_str()) {
            let hint = walk::suggest(name, all_dept_names.iter().copied())
                .unwrap_or_else(|| format!("create `departments/{name}.toml`"));
            let message = format!("default department `{name}` does not exist");
            match span {
                Some(span) => Sink { src: main_src, out: &mut *out, offset: 0 }.error_hint(span, message, Some(hint)),
                None => out.push(Diagnostic { hint: Some(hint), ..whole_file(&main_src.path, message) }),
            }
        }
    }
    let service_names: Vec<&str> = catalogue.names.iter().map(String::as_str).collect();
    let schedule_names: Vec<&str> = main.schedule_names.iter().map(String::as_str).collect();
    let mut user_seen: HashMap<&str, (&str, (u32, u32), &Path)> = HashMap::new();
    let mut net_seen: HashMap<IpNet, (&str, (u32, u32), &Path)> = HashMap::new();
    for d in drafts {
        let Some((_, src)) = sources.get(d.source) else { continue };
        let mut sink = Sink { src, out: &mut *out, offset: 0 };
        let name = d.spec.name.as_str();
        if let Some((parent, span)) = &d.inherits
            && !all_dept_names.contains(&parent.as_str())
        {
            let hint = name_hint(parent, &all_dept_names, "departments");
            sink.error_hint(span, format!("`inherits` names unknown department `{parent}`"), hint);
        }
        for (svc, span) in &d.service_refs {
            if catalogue.complete && !service_names.contains(&svc.as_str()) {
                sink.error_hint(span, format!("unknown service `{svc}`"), name_hint(svc, &service_names, "services"));
            }
        }
        if main.parsed {
            for (sched, span) in &d.schedule_refs {
                if !schedule_names.contains(&sched.as_str()) {
                    let hint = name_hint(sched, &schedule_names, "schedules");
                    sink.error_hint(span, format!("unknown schedule `{sched}`"), hint);
                }
            }
        }
        for (user, span) in &d.users {
            let pos = src.position(span.start);
            match user_seen.get(user.as_str()) {
                Some((other, (line, col), file)) => sink.error(
                    span,
                    format!(
                        "user `{user}` is in two departments: `{other}` ({}:{line}:{col}) and `{name}`",
                        file.display()
                    ),
                ),
                None => {
                    user_seen.insert(user, (name, pos, &src.path));
                }
            }
        }
        for (net, span) in &d.networks {
            let pos = src.position(span.start);
            match net_seen.get(net) {
                Some((other, (line, col), file)) => sink.error(
                    span,
                    format!(
                        "network `{net}` is in two departments: `{other}` ({}:{line}:{col}) and `{name}`",
                        file.display()
                    ),
                ),
                None => {
                    net_seen.insert(*net, (name, pos, &src.path));
                }
            }
        }
    }
    // Inheritance cycles, each reported once, at the first member by name.
    let parent_of = |n: &str| drafts.iter().find(|d| d.spec.name == n).and_then(|d| d.inherits.as_ref());
    let mut reported: Vec<&str> = Vec::new();
    for d in drafts {
        let start = d.spec.name.as_str();
        let mut chain = vec![start];
        let mut cur = start;
        while let Some((parent, _)) = parent_of(cur) {
            if let Some(i) = chain.iter().position(|c| *c == parent.as_str()) {
                let cycle = &chain[i..];
                if i == 0 && !cycle.iter().any(|c| reported.contains(c)) && cycle.iter().min() == Some(&start) {
                    reported.extend(cycle.iter().copied());
                    let mut names: Vec<String> = cycle.iter().map(|c| format!("`{c}`")).collect();
                    names.push(format!("`{start}`"));
                    if let (Some((_, src)), Some((_, span))) = (sources.get(d.source), &d.inherits) {
                        Sink { src, out: &mut *out, offset: 0 }
                            .error(span, format!("`inherits` cycle: {}", names.join(" -> ")));
                    }
                }
                break;
            }
            chain.push(parent.as_str());
            cur = parent.as_str();
        }
    }
}

#[cfg(test)]
mod tests;
