//! `[proxy] client_congestion_control`: the TCP congestion control of the
//! connections the proxy accepts. It is set once on each proxy listening
//! socket, and Linux gives it to every connection that socket accepts (a
//! per-route `congctl` still wins). Unset, accepted connections get the
//! system's default (`net.ipv4.tcp_congestion_control`).
//!
//! Why a proxy would choose: with `bbr` as the system default and no `fq`
//! qdisc, TCP paces each connection with its own timers. Towards clients on
//! the LAN, where pacing buys nothing, that cost the proxy about twice the
//! CPU per byte and 40% of the tunnel throughput in the benchmarks
//! (BENCHMARKS.md, "client_congestion_control").

use std::io;
use std::os::fd::AsFd;

/// Where Linux lists the algorithms it has, the ones any user may set, and
/// the default.
#[cfg(target_os = "linux")]
const AVAILABLE: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";
#[cfg(target_os = "linux")]
const ALLOWED: &str = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
#[cfg(target_os = "linux")]
const DEFAULT: &str = "/proc/sys/net/ipv4/tcp_congestion_control";

/// Longest name Linux takes (`TCP_CA_NAME_MAX` less the terminating NUL).
const NAME_MAX: usize = 15;

/// Sets `socket`'s congestion control to `name`.
pub(crate) fn set(socket: impl AsFd, name: &str) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::net::sockopt::set_tcp_congestion(socket, name).map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, name);
        Err(io::Error::new(io::ErrorKind::Unsupported, "congestion control is chosen on Linux only"))
    }
}

/// The congestion control `socket` uses.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn get(socket: impl AsFd) -> io::Result<String> {
    rustix::net::sockopt::tcp_congestion(socket).map_err(io::Error::from)
}

/// The system's default (what an unset `client_congestion_control` means),
/// when it can be read.
pub(crate) fn system_default() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        names(DEFAULT).into_iter().next()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The names a `/proc` list holds (empty when it cannot be read).
#[cfg(target_os = "linux")]
fn names(path: &str) -> Vec<String> {
    std::fs::read_to_string(path).map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
}

/// Whether this process can set `name` on its sockets: tried on a socket
/// of its own, so `check` says so before `run` fails to bind. The error is
/// a message and a hint, as config values report them.
pub(crate) fn usable(name: &str) -> Result<String, (String, Option<String>)> {
    if name.is_empty() || name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err((
            format!(
                "invalid congestion control name `{name}`, expected a Linux TCP algorithm such as `cubic` or `bbr`"
            ),
            None,
        ));
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::io::Errno;
        use rustix::net::{AddressFamily, SocketType};
        let probe = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)
            .or_else(|_| rustix::net::socket(AddressFamily::INET6, SocketType::STREAM, None));
        // No socket to try it on (out of descriptors): binding will tell.
        let Ok(probe) = probe else { return Ok(name.to_owned()) };
        let choice = |path| {
            let names = names(path);
            if names.is_empty() { String::new() } else { format!(", expected one of {}", quoted(&names)) }
        };
        match rustix::net::sockopt::set_tcp_congestion(&probe, name) {
            Ok(()) => Ok(name.to_owned()),
            Err(Errno::NOENT) => Err((
                format!("congestion control `{name}` is not available on this system{}", choice(AVAILABLE)),
                Some(format!("`modprobe tcp_{name}` loads it, if this kernel has it")),
            )),
            Err(Errno::PERM) => Err((
                format!("congestion control `{name}` is not allowed for this user{}", choice(ALLOWED)),
                Some(format!("add it to the sysctl `net.ipv4.tcp_allowed_congestion_control` ({ALLOWED})")),
            )),
            Err(err) => Err((format!("cannot use congestion control `{name}`: {err}"), None)),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err((format!("`client_congestion_control` is supported on Linux only, not on this system (`{name}`)"), None))
    }
}

/// `a`, `b`, `c`.
#[cfg(target_os = "linux")]
fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn built_in_reno_is_usable_and_bad_names_are_not() {
        // `reno` is built into every Linux kernel and always allowed.
        assert_eq!(usable("reno").unwrap(), "reno");
        for bad in ["", "has space", "a/b", "sixteen_letters_", "bbr\0"] {
            let (message, _) = usable(bad).unwrap_err();
            assert!(message.starts_with("invalid congestion control name"), "{bad:?}: {message}");
        }
    }

    #[test]
    fn an_unknown_algorithm_names_the_available_ones() {
        let (message, hint) = usable("nosuchcc").unwrap_err();
        assert!(message.starts_with("congestion control `nosuchcc` is not available"), "{message}");
        assert!(message.contains("`reno`"), "the choices are listed: {message}");
        assert!(hint.unwrap().contains("modprobe tcp_nosuchcc"));
    }

    #[test]
    fn the_system_default_is_readable() {
        let default = system_default().expect("net.ipv4.tcp_congestion_control is readable");
        assert!(usable(&default).is_ok(), "{default}");
    }
}
