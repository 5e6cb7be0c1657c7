//! Parsers for the value types config files hold (durations, times of day,
//! days, networks, addresses, actions, hosts). Each returns the value or a
//! lowercase message plus an optional hint, for [`super::walk::Sink::parsed`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::walk::{list, suggest};
use crate::policy::{Action, Host, Weekdays};

/// A parse failure: message and optional hint.
pub(crate) type Failure = (String, Option<String>);

/// The action names, sorted.
pub(crate) const ACTIONS: &[&str] = &["allow", "block", "log"];

/// Day names, Monday first.
pub(crate) const DAYS: &[&str] = &Weekdays::NAMES;

/// `30s`, `500ms`, `5m`, `1h`.
pub(crate) fn duration(s: &str) -> Result<Duration, Failure> {
    let bad = || {
        (
            format!("invalid duration `{s}`, expected a number followed by `ms`, `s`, `m` or `h`"),
            Some("e.g. `30s`, `500ms`, `5m`, `1h`".to_owned()),
        )
    };
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(digits_end);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

/// `HH:MM` as minutes after midnight, `00:00` to `24:00`.
pub(crate) fn time_of_day(s: &str) -> Result<u16, Failure> {
    let bad = || (format!("invalid time `{s}`, expected `HH:MM` between `00:00` and `24:00`"), None);
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `mon`..`sun` as a bit index (Monday = 0).
pub(crate) fn day(s: &str) -> Result<u8, Failure> {
    match DAYS.iter().position(|d| *d == s) {
        Some(i) => Ok(u8::try_from(i).unwrap_or(0)),
        None => {
            let lower = s.to_ascii_lowercase();
            let hint = suggest(&lower, DAYS.iter().copied())
                .or_else(|| DAYS.iter().find(|d| lower.starts_with(*d)).map(|d| format!("did you mean `{d}`?")));
            Err((format!("unknown day `{s}`, expected one of {}", list(DAYS.iter().copied())), hint))
        }
    }
}

/// A CIDR (`10.20.0.0/16`) or a bare address (one host). Host bits must be zero.
pub(crate) fn network(s: &str) -> Result<IpNet, Failure> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    match s.parse::<IpNet>() {
        Ok(net) if net.trunc() != net => {
            Err((format!("network `{s}` has host bits set"), Some(format!("did you mean `{}`?", net.trunc()))))
        }
        Ok(net) => Ok(net),
        Err(_) => Err((format!("invalid network `{s}`, expected an address or a CIDR such as `10.20.0.0/16`"), None)),
    }
}

/// `ip:port` (IPv6 as `[::1]:port`).
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, Failure> {
    if s.trim().is_empty() {
        return Err(("empty listen address, expected `ip:port`".to_owned(), Some("e.g. `127.0.0.1:3128`".to_owned())));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        let hint = if s.parse::<IpAddr>().is_ok() {
            Some("add a port, e.g. `127.0.0.1:3128`".to_owned())
        } else {
            Some("e.g. `127.0.0.1:3128` or `[::1]:3128`".to_owned())
        };
        (format!("invalid address `{s}`, expected `ip:port`"), hint)
    })
}

/// A DNS server: `ip` (port 53) or `ip:port`.
pub(crate) fn nameserver(s: &str) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().map_err(|_| (format!("invalid nameserver `{s}`, expected `ip` or `ip:port`"), None))
}

/// `allow`, `block` or `log`.
pub(crate) fn action(s: &str) -> Result<Action, Failure> {
    s.parse::<Action>().map_err(|_| {
        (
            format!("unknown action `{s}`, expected one of {}", list(ACTIONS.iter().copied())),
            suggest(s, ACTIONS.iter().copied()),
        )
    })
}

/// A host name or domain (normalised).
pub(crate) fn host(s: &str) -> Result<Host, Failure> {
    Host::parse(s).map_err(|e| (format!("invalid host name `{s}`: {e}"), None))
}

/// One of a fixed set of keywords.
pub(crate) fn keyword<'k>(s: &str, what: &str, allowed: &[&'k str]) -> Result<&'k str, Failure> {
    allowed.iter().find(|k| **k == s).copied().ok_or_else(|| {
        (
            format!("unknown {what} `{s}`, expected one of {}", list(allowed.iter().copied())),
            suggest(s, allowed.iter().copied()),
        )
    })
}

/// An IANA time zone name.
pub(crate) fn timezone(s: &str) -> Result<jiff::tz::TimeZone, Failure> {
    jiff::tz::TimeZone::get(s).map_err(|_| {
        let known: Vec<_> = jiff::tz::db().available().collect();
        (
            format!("unknown time zone `{s}`, expected an IANA name such as `Europe/Oslo` or `UTC`"),
            suggest(s, known.iter().map(|name| name.as_str())),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "30", "30 s", "-1s", "1.5s", "1d", "99999999999999999999h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(time_of_day("00:00").unwrap(), 0);
        assert_eq!(time_of_day("08:30").unwrap(), 510);
        assert_eq!(time_of_day("24:00").unwrap(), 1440);
        for bad in ["24:01", "25:00", "8:00", "08:60", "0800", "", "ab:cd"] {
            assert!(time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(network("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(network("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        let (msg, hint) = network("10.20.1.0/16").unwrap_err();
        assert_eq!(msg, "network `10.20.1.0/16` has host bits set");
        assert_eq!(hint.as_deref(), Some("did you mean `10.20.0.0/16`?"));
        assert!(network("10.0.0.0/33").is_err());
    }

    #[test]
    fn days_and_actions() {
        assert_eq!(day("wed").unwrap(), 2);
        assert_eq!(day("monday").unwrap_err().1.as_deref(), Some("did you mean `mon`?"));
        assert_eq!(action("blok").unwrap_err().1.as_deref(), Some("did you mean `block`?"));
        assert_eq!(timezone("Europe/Olso").unwrap_err().1.as_deref(), Some("did you mean `Europe/Oslo`?"));
        assert_eq!(timezone("America/New_Yrok").unwrap_err().1.as_deref(), Some("did you mean `America/New_York`?"));
        assert_eq!(timezone("Mars/Olympus").unwrap_err().1, None);
    }
}
