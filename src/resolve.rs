//! Name resolution for upstream connections: the hosts file first, then
//! async DNS (configured nameservers or the system's resolver), and the
//! private-destination guard applied to the address actually connected to.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use ipnet::IpNet;
use tokio::net::TcpStream;

use crate::policy::Host;

/// Why an upstream connection could not be made. Each variant maps to one
/// SPEC outcome (status and `Proxy-Status` error) in `proxy::respond`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No address for the host (hosts file and DNS both came up empty).
    #[error("cannot resolve `{host}`: {reason}")]
    Unresolvable {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The host resolved to an address the guard refuses.
    #[error("destination {addr} is not permitted")]
    Prohibited {
        /// The refused address.
        addr: SocketAddr,
    },
    /// The origin refused the connection.
    #[error("connection to {addr} refused")]
    Refused {
        /// The address tried last.
        addr: SocketAddr,
    },
    /// The origin could not be reached (no route, reset, other I/O error).
    #[error("{addr} unreachable: {source}")]
    Unreachable {
        /// The address tried last.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No address answered within the connect timeout.
    #[error("connection to {addr} timed out")]
    Timeout {
        /// The address tried last.
        addr: SocketAddr,
    },
}

/// Decides whether an address may be connected to: not globally reachable
/// addresses are refused unless listed in `allow`; the proxy's own listeners
/// are always refused.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// `block_private_destinations`.
    pub block_private: bool,
    /// `allow_destinations`.
    pub allow: Vec<IpNet>,
    /// The proxy's own listening (and admin) addresses.
    pub own: Vec<SocketAddr>,
}

impl Guard {
    /// True if connecting to `addr` is permitted.
    pub fn permits(&self, addr: SocketAddr) -> bool {
        if self.is_own(addr) {
            return false;
        }
        if !self.block_private || is_global(addr.ip()) {
            return true;
        }
        let ip = canonical(addr.ip());
        self.allow.iter().any(|net| net.contains(&ip) || net.contains(&addr.ip()))
    }

    /// True if `addr` is one of the proxy's own listeners: the exact socket
    /// address, or the same port on a local address when a listener is bound
    /// to the unspecified address.
    fn is_own(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.own.iter().any(|own| {
            if own.port() != addr.port() {
                return false;
            }
            let own_ip = canonical(own.ip());
            own_ip == ip
                || ip.is_unspecified()
                || (own_ip.is_unspecified() && (ip.is_loopback() || self.own.iter().any(|o| o.ip() == ip)))
                || (own_ip.is_loopback() && ip.is_loopback())
        })
    }
}

/// IPv4-mapped addresses as their IPv4 form, so one check covers both.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// True if `ip` is globally reachable per the IANA special-purpose address
/// registries; IPv4 embedded in mapped, NAT64 and 6to4 addresses is checked
/// as IPv4.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let non_global = a == 0                                  // "this network", unspecified
        || a == 10                                           // RFC 1918
        || (a == 100 && (64..128).contains(&b))              // CGNAT 100.64/10
        || a == 127                                          // loopback
        || (a == 169 && b == 254)                            // link-local, metadata
        || (a == 172 && (16..32).contains(&b))               // RFC 1918
        || (a == 192 && b == 0 && c == 0)                    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                    // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                  // 6to4 relay anycast
        || (a == 192 && b == 168)                            // RFC 1918
        || (a == 198 && (b == 18 || b == 19))                // benchmarking
        || (a == 198 && b == 51 && c == 100)                 // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                  // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !non_global
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96: the last 32 bits are IPv4.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|&s| s == 0) {
        return is_global_v4(Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8));
    }
    // 6to4 2002::/16: bits 16..48 are IPv4.
    if seg[0] == 0x2002 {
        return is_global_v4(Ipv4Addr::new((seg[1] >> 8) as u8, seg[1] as u8, (seg[2] >> 8) as u8, seg[2] as u8));
    }
    let non_global = seg[..6].iter().all(|&s| s == 0)        // ::, ::1, IPv4-compatible ::/96
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (seg[0] == 0x100 && seg[1..4].iter().all(|&s| s == 0)) // discard 100::/64
        || (seg[0] == 0x2001 && seg[1] < 0x200)               // IETF protocol assignments 2001::/23
        || (seg[0] == 0x2001 && seg[1] == 0xdb8)              // documentation
        || (seg[0] & 0xfff0) == 0x3ff0                       // documentation 3fff::/20
        || (seg[0] & 0xfe00) == 0xfc00                       // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80                       // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0                       // site-local (deprecated)
        || (seg[0] & 0xff00) == 0xff00; // multicast
    !non_global
}

/// Resolves host names: the config's hosts map first, then DNS. Built once
/// per configuration snapshot.
pub struct Resolver {
    hosts: HashMap<Host, Vec<IpAddr>>,
    dns: Result<TokioResolver, String>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("hosts", &self.hosts.len()).field("dns", &self.dns.is_ok()).finish()
    }
}

impl Resolver {
    /// A resolver over `hosts`, asking `nameservers` (or, if empty, the
    /// system's `/etc/resolv.conf` servers). A DNS set-up failure is kept and
    /// reported on each lookup that needs DNS, never at start.
    pub fn new(hosts: HashMap<Host, Vec<IpAddr>>, nameservers: &[SocketAddr]) -> Resolver {
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|err| err.to_string())
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            Ok(TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            ))
        };
        let dns = builder.and_then(|mut builder| {
            let opts = builder.options_mut();
            opts.use_hosts_file = ResolveHosts::Never;
            opts.timeout = Duration::from_secs(3);
            opts.attempts = 1;
            builder.build().map_err(|err| err.to_string())
        });
        Resolver { hosts, dns }
    }

    /// The addresses of `host`, in the order to try them.
    pub async fn lookup(&self, host: &Host) -> Result<Vec<IpAddr>, ConnectError> {
        if let Some(ip) = host.ip() {
            return Ok(vec![ip]);
        }
        if let Some(addrs) = self.hosts.get(host) {
            return Ok(addrs.clone());
        }
        let unresolvable = |reason: String| ConnectError::Unresolvable { host: host.to_string(), reason };
        let dns = self.dns.as_ref().map_err(|err| unresolvable(err.clone()))?;
        // A trailing dot keeps the search domains out of it.
        let fqdn = format!("{}.", host.as_str());
        let found = dns.lookup_ip(fqdn.as_str()).await.map_err(|err| unresolvable(err.to_string()))?;
        let addrs: Vec<IpAddr> = found.iter().collect();
        if addrs.is_empty() {
            return Err(unresolvable("no addresses".into()));
        }
        Ok(addrs)
    }

    /// Resolves `host` and connects to `port` on the first address that
    /// answers, each attempt bounded by `timeout`. Every resolved address is
    /// checked by `guard` first: one refused address refuses the host.
    pub async fn connect(
        &self,
        host: &Host,
        port: u16,
        guard: &Guard,
        timeout: Duration,
    ) -> Result<(TcpStream, SocketAddr), ConnectError> {
        let addrs: Vec<SocketAddr> = self.lookup(host).await?.into_iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if let Some(addr) = addrs.iter().find(|addr| !guard.permits(**addr)) {
            return Err(ConnectError::Prohibited { addr: *addr });
        }
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Some(ConnectError::Refused { addr });
                }
                Ok(Err(source)) => {
                    warn_if_local_shortage(format_args!("cannot connect to {addr}"), &source);
                    last = Some(ConnectError::Unreachable { addr, source });
                }
                Err(_) => last = Some(ConnectError::Timeout { addr }),
            }
        }
        Err(last
            .unwrap_or_else(|| ConnectError::Unresolvable { host: host.to_string(), reason: "no addresses".into() }))
    }
}

/// A shortage on this machine rather than the origin's fault (the client
/// still gets `502`, as for any unreachable origin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shortage {
    /// No local port left towards one address (`EADDRNOTAVAIL`).
    Ports,
    /// No file descriptor left (`EMFILE`, `ENFILE`).
    Descriptors,
}

impl Shortage {
    fn of(err: &std::io::Error) -> Option<Shortage> {
        use rustix::io::Errno;
        let code = err.raw_os_error()?;
        if code == Errno::ADDRNOTAVAIL.raw_os_error() {
            Some(Shortage::Ports)
        } else if code == Errno::MFILE.raw_os_error() || code == Errno::NFILE.raw_os_error() {
            Some(Shortage::Descriptors)
        } else {
            None
        }
    }

    /// What the admin can do about it.
    fn remedy(self) -> &'static str {
        match self {
            Shortage::Ports => {
                "out of local ports towards this address: widen net.ipv4.ip_local_port_range and set \
                 net.ipv4.tcp_tw_reuse = 1 (see docs/deploy.md)"
            }
            Shortage::Descriptors => {
                "out of file descriptors: raise LimitNOFILE or lower [limits] max_connections (see docs/deploy.md)"
            }
        }
    }
}

/// If `err` (from `what`) is a local shortage, logs it with the remedy, at
/// most once a second per kind of shortage (when one strikes, it strikes
/// every connection; one kind must not hide the other), and returns true.
pub(crate) fn warn_if_local_shortage(what: std::fmt::Arguments<'_>, err: &std::io::Error) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    let Some(shortage) = Shortage::of(err) else { return false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if LAST[shortage as usize].swap(now, Ordering::Relaxed) != now {
        tracing::warn!(%err, "{what}, {}", shortage.remedy());
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn local_shortages_are_told_apart_from_the_origins_faults() {
        use rustix::io::Errno;
        let os = |errno: Errno| std::io::Error::from_raw_os_error(errno.raw_os_error());
        assert_eq!(Shortage::of(&os(Errno::ADDRNOTAVAIL)), Some(Shortage::Ports));
        assert!(Shortage::Ports.remedy().contains("ip_local_port_range"));
        assert_eq!(Shortage::of(&os(Errno::MFILE)), Some(Shortage::Descriptors));
        assert_eq!(Shortage::of(&os(Errno::NFILE)), Some(Shortage::Descriptors));
        assert!(Shortage::Descriptors.remedy().contains("LimitNOFILE"));
        for origin_fault in [Errno::CONNRESET, Errno::HOSTUNREACH, Errno::NETUNREACH, Errno::CONNREFUSED] {
            assert_eq!(Shortage::of(&os(origin_fault)), None, "{origin_fault:?}");
        }
        assert_eq!(Shortage::of(&std::io::Error::other("not an OS error")), None);
    }

    #[test]
    fn private_and_special_addresses_are_not_global() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
        ] {
            assert!(!is_global(s.parse().unwrap()), "{s} should not be global");
        }
    }

    #[test]
    fn public_addresses_are_global() {
        for s in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(is_global(s.parse().unwrap()), "{s} should be global");
        }
    }

    #[test]
    fn own_listener_is_refused_even_when_allowed() {
        let guard = Guard {
            block_private: true,
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            own: vec!["127.0.0.1:3128".parse().unwrap()],
        };
        assert!(!guard.permits("127.0.0.1:3128".parse().unwrap()));
        assert!(!guard.permits("127.0.0.2:3128".parse().unwrap()));
        assert!(guard.permits("127.0.0.1:8080".parse().unwrap()));
        assert!(!guard.permits("10.0.0.1:80".parse().unwrap()));
    }
}
