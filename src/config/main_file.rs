//! The main file (`socialgate.toml`): every section of SPEC 2.1 validated
//! key by key, defaults filled in, and the files it names (htpasswd, hosts,
//! certificates) read through [`super::named_files`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use ipnet::IpNet;
use toml::de::DeTable;

use super::named_files;
use super::values;
use super::walk::{Sink, Source, Val, entries, get, resolve};
use super::{
    AdminConfig, AuthMode, BlockPageConfig, Diagnostic, ForwardedFor, IdentityConfig, InterceptConfig, Limits,
    LogConfig, LogFormat, LogTarget, NonTlsTunnels, PacConfig, ProxyConfig, TlsListenerConfig,
};
use crate::policy::{Host, ScheduleSpec, Weekdays};

const TOP_KEYS: &[&str] =
    &["admin", "block_page", "identity", "intercept", "limits", "log", "pac", "proxy", "schedules"];
const PROXY_KEYS: &[&str] = &[
    "allow_destinations",
    "block_private_destinations",
    "client_congestion_control",
    "connect_ports",
    "forwarded_for",
    "hosts_file",
    "listen",
    "nameservers",
    "non_tls_tunnels",
    "proxy_protocol_from",
    "status_host",
    "tls",
];
const TLS_KEYS: &[&str] = &["cert", "key", "listen"];
const IDENTITY_KEYS: &[&str] = &["auth", "auth_exempt_networks", "default_department", "htpasswd", "realm"];
const SCHEDULE_KEYS: &[&str] = &["days", "from", "to"];
const LOG_KEYS: &[&str] = &["access_log", "allowed", "format", "pseudonym_key_file", "pseudonymize_users"];
const ADMIN_KEYS: &[&str] = &["listen"];
const PAC_KEYS: &[&str] = &["direct", "fallback_direct", "proxy"];
const INTERCEPT_KEYS: &[&str] = &["ca_cert", "ca_key"];
const BLOCK_PAGE_KEYS: &[&str] = &["contact"];
const LIMIT_KEYS: &[&str] = &[
    "connect_timeout",
    "header_timeout",
    "idle_timeout",
    "max_connections",
    "max_header_bytes",
    "shutdown_grace",
    "sni_peek_timeout",
    "tunnel_idle_timeout",
    "upstream_response_timeout",
];

/// The default `status_host`.
const DEFAULT_STATUS_HOST: &str = "socialgate.status";

/// Everything the main file says, with defaults.
#[derive(Debug)]
pub(crate) struct MainParts {
    /// The file parsed as TOML (false: a syntax error was reported).
    pub parsed: bool,
    pub proxy: ProxyConfig,
    pub identity: IdentityConfig,
    pub log: LogConfig,
    pub admin: Option<AdminConfig>,
    pub pac: PacConfig,
    pub intercept: Option<InterceptConfig>,
    pub block_page: BlockPageConfig,
    pub limits: Limits,
    pub timezone: jiff::tz::TimeZone,
    pub schedules: Vec<ScheduleSpec>,
    /// Every schedule name declared, valid or not (so that a reference to
    /// a broken schedule is not also reported as unknown).
    pub schedule_names: Vec<String>,
    /// `default_department` and where it was written.
    pub default_department: (String, Option<Range<usize>>),
    /// Files named by the main file that were read.
    pub files: Vec<PathBuf>,
    /// What loads but does not do all it says, in file order.
    pub warnings: Vec<Diagnostic>,
}

impl MainParts {
    fn defaults(src: &Source) -> MainParts {
        MainParts {
            parsed: false,
            proxy: ProxyConfig {
                listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 3128))],
                tls: None,
                connect_ports: vec![443],
                block_private_destinations: true,
                allow_destinations: Vec::new(),
                hosts: HashMap::new(),
                nameservers: Vec::new(),
                forwarded_for: ForwardedFor::Add,
                status_host: Host::parse(DEFAULT_STATUS_HOST)
                    .unwrap_or_else(|_| Host::from_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))),
                non_tls_tunnels: NonTlsTunnels::Allow,
                proxy_protocol_from: Vec::new(),
                client_congestion_control: None,
            },
            identity: IdentityConfig {
                auth: AuthMode::None,
                users: HashMap::new(),
                realm: "socialgate".to_owned(),
                auth_exempt_networks: Vec::new(),
            },
            log: LogConfig {
                access_log: LogTarget::Stdout,
                format: LogFormat::Json,
                allowed: true,
                pseudonymize_users: false,
                pseudonym_key_file: resolve(&src.path, "pseudonym.key"),
            },
            admin: None,
            pac: PacConfig::default(),
            intercept: None,
            block_page: BlockPageConfig::default(),
            limits: Limits::default(),
            timezone: jiff::tz::TimeZone::UTC,
            schedules: Vec::new(),
            schedule_names: Vec::new(),
            default_department: ("default".to_owned(), None),
            files: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Parses and validates the main file, reading the files it names.
/// Parses the main file. `log_files`: also check the files `[log]` names
/// (see [`super::load_to_read`] for when not to).
pub(crate) fn parse(src: &Source, out: &mut Vec<Diagnostic>, log_files: bool) -> MainParts {
    let mut parts = MainParts::defaults(src);
    let mut sink = Sink { src, out, offset: 0 };
    let doc = match DeTable::parse(&src.text) {
        Ok(doc) => doc,
        Err(err) => {
            super::syntax_error(&mut sink, &err);
            return parts;
        }
    };
    parts.parsed = true;
    let doc = doc.get_ref();
    sink.unknown_keys(doc, TOP_KEYS, "the main file");
    for (key, value) in entries(doc) {
        if !TOP_KEYS.contains(&key.get_ref().as_ref()) {
            continue; // reported above
        }
        let Some(table) = sink.table(value) else { continue };
        match key.get_ref().as_ref() {
            "proxy" => proxy(&mut sink, table, &mut parts),
            "identity" => identity(&mut sink, table, &mut parts),
            "schedules" => schedules(&mut sink, table, &mut parts),
            "log" => log(&mut sink, table, &mut parts),
            "admin" => {
                sink.unknown_keys(table, ADMIN_KEYS, "`[admin]`");
                match get(table, "listen") {
                    Some(v) => {
                        if let Some(listen) = sink.parsed(v, values::socket_addr) {
                            parts.admin = Some(AdminConfig { listen });
                        }
                    }
                    None => sink.error(&key.span(), "`[admin]` needs `listen`, e.g. `listen = \"127.0.0.1:9090\"`"),
                }
            }
            "pac" => pac(&mut sink, table, &mut parts),
            "intercept" => intercept(&mut sink, table, &key.span(), &mut parts),
            "block_page" => {
                sink.unknown_keys(table, BLOCK_PAGE_KEYS, "`[block_page]`");
                if let Some(s) = get(table, "contact").and_then(|v| sink.string(v)) {
                    parts.block_page.contact = s.to_owned();
                }
            }
            "limits" => limits(&mut sink, table, &mut parts),
            _ => {}
        }
    }
    htpasswd(&mut sink, doc, &mut parts);
    self::log_files(&mut sink, doc, &mut parts, log_files);
    parts
}

fn networks(sink: &mut Sink<'_>, v: &Val<'_>) -> Vec<ipnet::IpNet> {
    sink.strings(v)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(s, span)| sink.parse_at(s, &span, values::network))
        .collect()
}

/// Networks matched against client addresses, which are taken in
/// canonical form: an IPv4-mapped network (`::ffff:10.0.0.0/104`) is kept
/// as the IPv4 network it denotes, as department `networks` are.
fn client_networks(sink: &mut Sink<'_>, v: &Val<'_>) -> Vec<ipnet::IpNet> {
    networks(sink, v).into_iter().map(crate::policy::canonical_net).collect()
}

fn listen_list(sink: &mut Sink<'_>, v: &Val<'_>, section: &str) -> Option<Vec<SocketAddr>> {
    let items = sink.string_or_strings(v)?;
    if items.is_empty() {
        sink.error_hint(
            &v.span(),
            format!("empty `listen` in {section}, expected at least one `ip:port`"),
            Some("e.g. `listen = [\"127.0.0.1:3128\"]`".to_owned()),
        );
        return None;
    }
    let n = items.len();
    let addrs: Vec<SocketAddr> =
        items.into_iter().filter_map(|(s, span)| sink.parse_at(s, &span, values::socket_addr)).collect();
    (addrs.len() == n).then_some(addrs)
}

fn proxy(sink: &mut Sink<'_>, table: &DeTable<'_>, parts: &mut MainParts) {
    sink.unknown_keys(table, PROXY_KEYS, "`[proxy]`");
    let p = &mut parts.proxy;
    for (key, v) in entries(table) {
        match key.get_ref().as_ref() {
            "listen" => {
                if let Some(addrs) = listen_list(sink, v, "`[proxy]`") {
                    p.listen = addrs;
                }
            }
            "connect_ports" => {
                if let Some(items) = array(sink, v, "an array of port numbers") {
                    p.connect_ports = items
                        .iter()
                        .filter_map(|i| sink.integer(i, 1, 65535))
                        .filter_map(|n| u16::try_from(n).ok())
                        .collect();
                }
            }
            "block_private_destinations" => {
                if let Some(b) = sink.boolean(v) {
                    p.block_private_destinations = b;
                }
            }
            "allow_destinations" => p.allow_destinations = networks(sink, v),
            // Peers are matched in canonical form (IPv4-mapped as IPv4).
            "proxy_protocol_from" => p.proxy_protocol_from = client_networks(sink, v),
            "hosts_file" => {
                if let Some(s) = sink.string(v) {
                    let path = resolve(&sink.src.path, s);
                    if let Some(hosts) = named_files::hosts_file(sink, &path, &v.span()) {
                        p.hosts = hosts;
                    }
                    parts.files.push(path);
                }
            }
            "nameservers" => {
                p.nameservers = sink
                    .strings(v)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(s, span)| sink.parse_at(s, &span, values::nameserver))
                    .collect();
            }
            "forwarded_for" => {
                if let Some(k) =
                    sink.parsed(v, |s| values::keyword(s, "`forwarded_for` mode", &["add", "delete", "keep"]))
                {
                    p.forwarded_for = match k {
                        "delete" => ForwardedFor::Delete,
                        "keep" => ForwardedFor::Keep,
                        _ => ForwardedFor::Add,
                    };
                }
            }
            "status_host" => {
                if let Some(h) = sink.parsed(v, values::host) {
                    p.status_host = h;
                }
            }
            "non_tls_tunnels" => {
                if let Some(k) = sink.parsed(v, |s| values::keyword(s, "`non_tls_tunnels` mode", &["allow", "refuse"]))
                {
                    p.non_tls_tunnels = if k == "refuse" { NonTlsTunnels::Refuse } else { NonTlsTunnels::Allow };
                }
            }
            "client_congestion_control" => {
                if let Some(name) = sink.parsed(v, crate::proxy::congestion::usable) {
                    p.client_congestion_control = Some(name);
                }
            }
            "tls" => {
                if let Some(t) = sink.table(v) {
                    p.tls = tls(sink, t, &key.span(), &mut parts.files);
                }
            }
            _ => {}
        }
    }
}

/// The items of an array value, or a reported type error.
fn array<'v, 'i>(sink: &mut Sink<'_>, v: &'v Val<'i>, expected: &str) -> Option<&'v [Val<'i>]> {
    match v.get_ref() {
        toml::de::DeValue::Array(a) => Some(a),
        _ => {
            sink.wrong_type(v, expected);
            None
        }
    }
}

/// A required path key: its resolved path and span, or a reported error.
fn required_path(
    sink: &mut Sink<'_>,
    table: &DeTable<'_>,
    key: &str,
    section: &str,
    section_span: &Range<usize>,
) -> Option<(PathBuf, Range<usize>)> {
    match get(table, key) {
        Some(v) => {
            let s = sink.string(v)?;
            Some((resolve(&sink.src.path, s), v.span()))
        }
        None => {
            sink.error(section_span, format!("{section} needs `{key}`"));
            None
        }
    }
}

fn tls(
    sink: &mut Sink<'_>,
    table: &DeTable<'_>,
    span: &Range<usize>,
    files: &mut Vec<PathBuf>,
) -> Option<TlsListenerConfig> {
    sink.unknown_keys(table, TLS_KEYS, "`[proxy.tls]`");
    let listen = match get(table, "listen") {
        Some(v) => listen_list(sink, v, "`[proxy.tls]`"),
        None => {
            sink.error(span, "`[proxy.tls]` needs `listen`");
            None
        }
    };
    let cert = required_path(sink, table, "cert", "`[proxy.tls]`", span);
    let key = required_path(sink, table, "key", "`[proxy.tls]`", span);
    let cert_pem = cert.as_ref().and_then(|(path, span)| named_files::certificates(sink, path, span));
    let key_pem = key.as_ref().and_then(|(path, span)| named_files::private_key(sink, path, span));
    files.extend(cert.iter().chain(key.iter()).map(|(p, _)| p.clone()));
    let ((cert_path, cert_span), (key_path, _), cert_pem, key_pem) = (cert?, key?, cert_pem?, key_pem?);
    named_files::check_key_matches(sink, &cert_pem, &key_pem, &cert_path, &key_path, &cert_span, "certificate");
    Some(TlsListenerConfig { listen: listen?, cert_path, key_path, cert_pem, key_pem: super::Secret(key_pem) })
}

fn intercept(sink: &mut Sink<'_>, table: &DeTable<'_>, span: &Range<usize>, parts: &mut MainParts) {
    sink.unknown_keys(table, INTERCEPT_KEYS, "`[intercept]`");
    let cert = required_path(sink, table, "ca_cert", "`[intercept]`", span);
    let key = required_path(sink, table, "ca_key", "`[intercept]`", span);
    let cert_pem = cert.as_ref().and_then(|(path, span)| named_files::certificates(sink, path, span));
    let key_pem = key.as_ref().and_then(|(path, span)| named_files::private_key(sink, path, span));
    parts.files.extend(cert.iter().chain(key.iter()).map(|(p, _)| p.clone()));
    let (Some((ca_cert_path, cert_span)), Some((ca_key_path, key_span)), Some(ca_cert_pem), Some(ca_key_pem)) =
        (cert, key, cert_pem, key_pem)
    else {
        return;
    };
    if named_files::check_key_matches(
        sink,
        &ca_cert_pem,
        &ca_key_pem,
        &ca_cert_path,
        &ca_key_path,
        &cert_span,
        "CA certificate",
    ) {
        named_files::check_intercept_ca(
            sink,
            &ca_cert_pem,
            &ca_key_pem,
            &ca_cert_path,
            &ca_key_path,
            &cert_span,
            &key_span,
        );
    }
    parts.intercept =
        Some(InterceptConfig { ca_cert_path, ca_key_path, ca_cert_pem, ca_key_pem: super::Secret(ca_key_pem) });
}

fn identity(sink: &mut Sink<'_>, table: &DeTable<'_>, parts: &mut MainParts) {
    sink.unknown_keys(table, IDENTITY_KEYS, "`[identity]`");
    let id = &mut parts.identity;
    for (key, v) in entries(table) {
        match key.get_ref().as_ref() {
            "auth" => {
                if let Some(k) = sink.parsed(v, |s| values::keyword(s, "`auth` mode", &["basic", "none"])) {
                    id.auth = if k == "basic" { AuthMode::Basic } else { AuthMode::None };
                }
            }
            "realm" => {
                if let Some(s) = sink.string(v) {
                    if s.contains('"') || s.chars().any(char::is_control) {
                        sink.error(&v.span(), "`realm` must not contain quotes or control characters");
                    } else {
                        id.realm = s.to_owned();
                    }
                }
            }
            "default_department" => {
                if let Some(s) = sink.string(v) {
                    parts.default_department = (s.to_owned(), Some(v.span()));
                }
            }
            "auth_exempt_networks" => id.auth_exempt_networks = client_networks(sink, v),
            _ => {} // htpasswd is read after the whole table is known
        }
    }
}

/// Reads the htpasswd file: required with `auth = "basic"`, optional (when
/// absent) with `auth = "none"`.
fn htpasswd(sink: &mut Sink<'_>, doc: &DeTable<'_>, parts: &mut MainParts) {
    let identity = get(doc, "identity").and_then(|v| match v.get_ref() {
        toml::de::DeValue::Table(t) => Some(t),
        _ => None,
    });
    let written = identity.and_then(|t| get(t, "htpasswd"));
    let (path, span) = match written {
        Some(v) => match sink.string(v) {
            Some(s) => (resolve(&sink.src.path, s), Some(v.span())),
            None => return,
        },
        None => (resolve(&sink.src.path, "users.htpasswd"), None),
    };
    let basic = parts.identity.auth == AuthMode::Basic;
    if !basic && !path.exists() {
        return;
    }
    let auth_span = identity.and_then(|t| get(t, "auth")).map(|v| v.span());
    let at = span.or(auth_span).unwrap_or(0..0);
    if let Some(users) = named_files::htpasswd(sink, &path, &at) {
        parts.identity.users = users;
    }
    parts.files.push(path);
}

/// Checks the files `[log]` names, without creating them: the access log
/// can be opened for appending, and, with `pseudonymize_users`, the key
/// file can be read or created. The key file is watched like the other
/// files the config reads.
fn log_files(sink: &mut Sink<'_>, doc: &DeTable<'_>, parts: &mut MainParts, check: bool) {
    let table = get(doc, "log").and_then(|v| match v.get_ref() {
        toml::de::DeValue::Table(t) => Some(t),
        _ => None,
    });
    let span = |key: &str| table.and_then(|t| get(t, key)).map(|v| v.span());
    if let LogTarget::File(path) = &parts.log.access_log
        && check
    {
        let at = span("access_log").unwrap_or(0..0);
        named_files::access_log(sink, path, &at);
    }
    if parts.log.pseudonymize_users {
        let at = span("pseudonym_key_file").or_else(|| span("pseudonymize_users")).unwrap_or(0..0);
        if check {
            named_files::pseudonym_key(sink, &parts.log.pseudonym_key_file, &at);
        }
        parts.files.push(parts.log.pseudonym_key_file.clone());
    }
}

fn schedules(sink: &mut Sink<'_>, table: &DeTable<'_>, parts: &mut MainParts) {
    for (key, v) in entries(table) {
        let name: &str = key.get_ref();
        if name == "timezone" {
            if v.get_ref().is_table() {
                sink.error(&key.span(), "`timezone` is reserved for the time zone name, not a schedule");
            } else if let Some(tz) = sink.parsed(v, values::timezone) {
                parts.timezone = tz;
            }
            continue;
        }
        let Some(t) = sink.table(v) else { continue };
        parts.schedule_names.push(name.to_owned());
        sink.unknown_keys(t, SCHEDULE_KEYS, &format!("schedule `{name}`"));
        let days = match get(t, "days") {
            Some(d) => {
                let list = sink.strings(d).unwrap_or_default();
                if list.is_empty() && matches!(d.get_ref(), toml::de::DeValue::Array(_)) {
                    sink.error(&d.span(), format!("schedule `{name}` has no `days`"));
                }
                let mut bits = 0u8;
                for (s, span) in list {
                    if let Some(b) = sink.parse_at(s, &span, values::day) {
                        bits |= 1 << b;
                    }
                }
                Weekdays(bits)
            }
            None => Weekdays::ALL,
        };
        let mut time = |k: &str| match get(t, k) {
            Some(v) => sink.parsed(v, values::time_of_day).map(|m| (m, v.span())),
            None => {
                sink.error(&key.span(), format!("schedule `{name}` needs `{k}` (`HH:MM`)"));
                None
            }
        };
        let from = time("from");
        let to = time("to");
        let (Some((from, from_span)), Some((to, to_span))) = (from, to) else { continue };
        if from == 1440 {
            sink.error(&from_span, "`from` cannot be `24:00`, use `00:00`");
            continue;
        }
        if from == to {
            sink.error_hint(
                &to_span,
                format!("schedule `{name}` is empty: `from` and `to` are equal"),
                Some("for the whole day use `from = \"00:00\"` and `to = \"24:00\"`".to_owned()),
            );
            continue;
        }
        parts.schedules.push(ScheduleSpec {
            name: name.to_owned(),
            days,
            from_minute: from,
            // `to = "00:00"` ends at the midnight after `from`.
            to_minute: if to == 0 { 1440 } else { to },
            origin: Some(sink.src.origin(&key.span())),
        });
    }
}

fn log(sink: &mut Sink<'_>, table: &DeTable<'_>, parts: &mut MainParts) {
    sink.unknown_keys(table, LOG_KEYS, "`[log]`");
    let l = &mut parts.log;
    for (key, v) in entries(table) {
        match key.get_ref().as_ref() {
            "access_log" => {
                if let Some(s) = sink.string(v) {
                    if s.is_empty() {
                        sink.error_hint(&v.span(), "empty `access_log`", Some("use `\"-\"` for stdout".to_owned()));
                    } else if s == "-" || s == "/dev/stdout" {
                        // `/dev/stdout` opened by name fails when stdout is
                        // a socket (systemd's journal) and reopens a pipe:
                        // what is meant is the process's stdout.
                        l.access_log = LogTarget::Stdout;
                    } else {
                        l.access_log = LogTarget::File(resolve(&sink.src.path, s));
                    }
                }
            }
            "format" => {
                if let Some(k) = sink.parsed(v, |s| values::keyword(s, "log format", &["json", "squid"])) {
                    l.format = if k == "squid" { LogFormat::Squid } else { LogFormat::Json };
                }
            }
            "allowed" => {
                if let Some(b) = sink.boolean(v) {
                    l.allowed = b;
                }
            }
            "pseudonymize_users" => {
                if let Some(b) = sink.boolean(v) {
                    l.pseudonymize_users = b;
                }
            }
            "pseudonym_key_file" => {
                if let Some(s) = sink.string(v) {
                    l.pseudonym_key_file = resolve(&sink.src.path, s);
                }
            }
            _ => {}
        }
    }
}

/// The host of `[pac] proxy`, written into the PAC's `PROXY host:port` as
/// it is: an ASCII host name or IPv4 address, or a bracketed IPv6 address.
fn pac_proxy_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
                && Host::parse(host).is_ok()
        }
    }
}

/// The port of `[pac] proxy`: digits only (`+3128` parses as a number but
/// is no port to a browser), 1-65535.
fn pac_proxy_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0)
}

fn pac(sink: &mut Sink<'_>, table: &DeTable<'_>, parts: &mut MainParts) {
    sink.unknown_keys(table, PAC_KEYS, "`[pac]`");
    if let Some(v) = get(table, "proxy")
        && let Some(s) = sink.string(v)
    {
        let ok = s.rsplit_once(':').is_some_and(|(h, p)| pac_proxy_host(h) && pac_proxy_port(p));
        if ok {
            parts.pac.proxy = Some(s.to_owned());
        } else {
            sink.error_hint(
                &v.span(),
                format!("invalid PAC proxy `{s}`, expected `host:port`"),
                Some("e.g. `proxy.example.com:3128`".to_owned()),
            );
        }
    }
    if let Some(v) = get(table, "direct") {
        let items = sink.strings(v).unwrap_or_default();
        for (s, span) in items {
            if s.is_empty() || s.contains(['"', '\'', '\\', ' ']) || s.chars().any(char::is_control) {
                sink.error(&span, format!("invalid `direct` entry `{s}`, expected a host pattern or a CIDR"));
            } else if s.contains('/') && values::network(s).is_err() {
                let _ = sink.parse_at(s, &span, values::network);
            } else {
                if let Ok(net @ IpNet::V6(_)) = s.parse::<IpNet>()
                    && let IpNet::V6(_) = crate::policy::canonical_net(net)
                {
                    // As `pac::render` tells networks from patterns.
                    parts.warnings.push(sink.warning(
                        &span,
                        format!(
                            "IPv6 network `{s}` in `direct` is left out of the PAC file: PAC `isInNet` only \
                             matches IPv4 addresses"
                        ),
                        Some("list its hosts by name instead, e.g. `*.corp.example`".to_owned()),
                    ));
                }
                parts.pac.direct.push(s.to_owned());
            }
        }
    }
    if let Some(b) = get(table, "fallback_direct").and_then(|v| sink.boolean(v)) {
        parts.pac.fallback_direct = b;
    }
}

fn limits(sink: &mut Sink<'_>, table: &DeTable<'_>, parts: &mut MainParts) {
    sink.unknown_keys(table, LIMIT_KEYS, "`[limits]`");
    let l = &mut parts.limits;
    for (key, v) in entries(table) {
        let name: &str = key.get_ref();
        let slot = match name {
            "max_header_bytes" => {
                if let Some(n) = sink.integer(v, 1, 16 * 1024 * 1024) {
                    l.max_header_bytes = usize::try_from(n).unwrap_or(usize::MAX);
                }
                continue;
            }
            "max_connections" => {
                if let Some(n) = sink.integer(v, 1, 10_000_000) {
                    l.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
                }
                continue;
            }
            "header_timeout" => &mut l.header_timeout,
            "idle_timeout" => &mut l.idle_timeout,
            "tunnel_idle_timeout" => &mut l.tunnel_idle_timeout,
            "connect_timeout" => &mut l.connect_timeout,
            "upstream_response_timeout" => &mut l.upstream_response_timeout,
            "sni_peek_timeout" => &mut l.sni_peek_timeout,
            "shutdown_grace" => &mut l.shutdown_grace,
            _ => continue,
        };
        if let Some(d) = sink.parsed(v, values::duration) {
            if d.is_zero() && name != "shutdown_grace" {
                sink.error(&v.span(), format!("`{name}` must be greater than zero"));
            } else {
                *slot = d;
            }
        }
    }
}
