//! `socialgate explain`: the decision the config would take, and why.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, anyhow};

use super::{CmdResult, load_config_to_read};
use crate::policy::{Decision, Host, Identity};

/// `socialgate explain` arguments.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// `http://host/path` (a plain request), or `https://host[:port]/...` or
    /// `host:port` (a CONNECT).
    #[arg(long, value_parser = valid_url)]
    pub url: String,
    /// A proxy user name (placed by `users`, whatever `auth` says).
    #[arg(long)]
    pub user: Option<String>,
    /// The client's address (placed by `networks`).
    #[arg(long, value_name = "IP")]
    pub client_ip: Option<IpAddr>,
    /// The request method (informational).
    #[arg(long, value_name = "M")]
    pub method: Option<String>,
    /// Decide at this instant (RFC 3339); default now.
    #[arg(long, value_name = "RFC3339", value_parser = valid_at)]
    pub at: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Checks `--url` while parsing arguments, so a bad one is a usage error
/// (exit 2).
fn valid_url(s: &str) -> Result<String, String> {
    parse_target(s).map(|_| s.to_owned()).map_err(|err| format!("{err:#}"))
}

/// Checks `--at` while parsing arguments (a usage error, exit 2).
fn valid_at(s: &str) -> Result<String, String> {
    parse_at(s).map(|_| s.to_owned()).map_err(|err| format!("{err:#}"))
}

fn parse_at(at: &str) -> anyhow::Result<jiff::Timestamp> {
    at.parse::<jiff::Timestamp>().context("expected RFC 3339 such as `2026-11-26T09:15:00Z`")
}

/// What the URL argument asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: Host,
    pub port: u16,
    pub connect: bool,
}

/// Parses `http://…`, `https://…` or `host:port`.
pub(crate) fn parse_target(url: &str) -> anyhow::Result<Target> {
    let (rest, default_port, connect) = if let Some(rest) = strip_scheme(url, "http://") {
        (rest, 80, false)
    } else if let Some(rest) = strip_scheme(url, "https://") {
        (rest, 443, true)
    } else if url.contains("://") {
        return Err(anyhow!("unsupported URL scheme in `{url}`, expected `http://`, `https://` or `host:port`"));
    } else {
        (url, 443, true)
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        Some(p) => p.parse::<u16>().with_context(|| format!("invalid port `{p}` in `{url}`"))?,
        None if url.contains("://") => default_port,
        None => return Err(anyhow!("`{url}` has no port, expected `host:port` or a URL")),
    };
    let host = Host::parse(host).with_context(|| format!("invalid host in `{url}`"))?;
    Ok(Target { host, port, connect })
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| &url[scheme.len()..])
}

fn split_host_port(authority: &str) -> anyhow::Result<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| anyhow!("unclosed `[` in `{authority}`"))?;
        return Ok((host, after.strip_prefix(':')));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host, Some(port))),
        _ => Ok((authority, None)),
    }
}

/// Runs `socialgate explain`.
pub fn explain(config_path: &Path, args: &ExplainArgs) -> CmdResult {
    let config = load_config_to_read(config_path)?;
    let target = parse_target(&args.url)?;
    let at = match &args.at {
        Some(at) => parse_at(at)?,
        None => jiff::Timestamp::now(),
    };
    let policy = &config.policy;
    let identity = Identity { user: args.user.as_deref(), client_ip: args.client_ip };
    let placement = policy.place(&identity);
    let decision = policy.decide(placement, &target.host, at);
    if args.json {
        println!("{}", json(&decision, args, &target));
    } else {
        print!("{}", text(&decision, args, &target, at.to_zoned(policy.timezone().clone())));
    }
    Ok(())
}

/// `explain --json`, in the SPEC's field order.
#[derive(serde::Serialize)]
struct ExplainJson<'a> {
    department: &'a str,
    department_source: &'static str,
    user: Option<&'a str>,
    client_ip: Option<String>,
    host: &'a str,
    service: Option<&'a str>,
    rule: &'a str,
    schedule: Option<&'a str>,
    action: &'static str,
}

fn json(d: &Decision, args: &ExplainArgs, target: &Target) -> String {
    let out = ExplainJson {
        department: &d.department,
        department_source: d.department_source.as_str(),
        user: args.user.as_deref(),
        client_ip: args.client_ip.map(|ip| ip.to_string()),
        host: target.host.as_str(),
        service: d.service.as_deref(),
        rule: &d.rule,
        schedule: d.schedule.as_deref(),
        action: d.action.as_str(),
    };
    serde_json::to_string(&out).unwrap_or_default()
}

fn text(d: &Decision, args: &ExplainArgs, target: &Target, at: jiff::Zoned) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let kind = if target.connect { "CONNECT" } else { args.method.as_deref().unwrap_or("GET") };
    let tz = at.time_zone().clone();
    let at = at.strftime("%Y-%m-%d %H:%M:%S %Z (%a)");
    let _ = writeln!(out, "request     {kind} {}:{} at {at}", target.host, target.port);
    let why = match d.department_source {
        crate::policy::DepartmentSource::User => {
            format!("user `{}` is listed in its `users`", args.user.as_deref().unwrap_or(""))
        }
        crate::policy::DepartmentSource::Network => format!(
            "client address {} is in one of its `networks`",
            args.client_ip.map(|ip| ip.to_string()).unwrap_or_default()
        ),
        crate::policy::DepartmentSource::Default => "no user or network matched: `default_department`".to_owned(),
    };
    let _ = writeln!(out, "department  {} ({why})", d.department);
    let _ = writeln!(out, "service     {}", d.service.as_deref().unwrap_or("(none: host is in no catalogue service)"));
    let place = d.origin.as_ref().map(|o| format!(" at {o}")).unwrap_or_default();
    let _ = writeln!(out, "rule        {}{place}", d.rule);
    match &d.schedule {
        Some(s) => {
            let state = if d.schedule_active { "in force" } else { "not in force" };
            let _ = writeln!(out, "schedule    {s} ({state})");
        }
        None => {
            let _ = writeln!(out, "schedule    (none)");
        }
    }
    if let Some(until) = d.valid_until {
        let until = until.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %Z (%a)");
        let _ = writeln!(out, "changes at  {until}");
    }
    let _ = writeln!(out, "action      {}", d.action);
    out
}
