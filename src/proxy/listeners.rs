//! The listening sockets (`[proxy] listen`, `[proxy.tls] listen`,
//! `[admin] listen`) and how a reload changes them: addresses that are new
//! are bound before anything is committed, so a reload that cannot bind one
//! changes nothing; unchanged ones are kept as they are (no rebind, no gap);
//! those no longer configured stop accepting, while the connections they
//! accepted carry on to their end. Proxy listeners also carry
//! `client_congestion_control` (see [`super::congestion`]) to the
//! connections they accept from then on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ReloadError;
use crate::config::Config;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `[proxy] listen`: the proxy, in plain HTTP.
    Proxy,
    /// `[proxy.tls] listen`: a TLS handshake, then the proxy.
    ProxyTls,
    /// `[admin] listen`: the admin endpoint.
    Admin,
}

impl Role {
    /// Whether the role's connections are proxy clients (and so get
    /// `client_congestion_control`).
    fn serves_clients(self) -> bool {
        matches!(self, Role::Proxy | Role::ProxyTls)
    }

    /// The name logged with a listener's address.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Proxy => "proxy",
            Role::ProxyTls => "proxy-tls",
            Role::Admin => "admin",
        }
    }
}

/// Every listener `config` asks for, in the order it names them.
pub(crate) fn wanted(config: &Config) -> Vec<(Role, SocketAddr)> {
    let plain = config.proxy.listen.iter().map(|addr| (Role::Proxy, *addr));
    let tls = config.proxy.tls.iter().flat_map(|tls| tls.listen.iter().map(|addr| (Role::ProxyTls, *addr)));
    let admin = config.admin.iter().map(|admin| (Role::Admin, admin.listen));
    plain.chain(tls).chain(admin).collect()
}

/// Starts the task accepting on a socket for a role; the task stops
/// accepting when its `watch` turns true.
pub(crate) type Spawn<'a> = &'a dyn Fn(Role, Arc<TcpListener>, watch::Receiver<bool>) -> JoinHandle<()>;

/// A bound listening socket and the task accepting on it.
#[derive(Debug)]
struct Listener {
    role: Role,
    /// As configured: port 0 means "any port".
    configured: SocketAddr,
    /// As bound (port 0 resolved).
    local: SocketAddr,
    socket: Arc<TcpListener>,
    /// The congestion control set on the socket, if one was.
    congestion: Option<String>,
    /// Set to true to stop accepting.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Whether this socket can serve `addr` as configured: the same
    /// configured address (port 0 included), or exactly the address it is
    /// bound to.
    fn serves(&self, addr: SocketAddr) -> bool {
        self.configured == addr || (addr.port() != 0 && self.local == addr)
    }
}

/// The listeners in force.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    live: Vec<Listener>,
}

/// One listener of a [`Plan`].
#[derive(Debug)]
enum Slot {
    /// A listener in force, kept (for `role`, which may be another one
    /// than it had: the same socket changes hands, with no gap).
    Kept { index: usize, role: Role, configured: SocketAddr, local: SocketAddr },
    /// A socket bound for this plan, not accepting yet (with the
    /// congestion control set on it, if any).
    Bound { role: Role, configured: SocketAddr, local: SocketAddr, socket: TcpListener, congestion: Option<String> },
}

impl Slot {
    fn role_and_local(&self) -> (Role, SocketAddr) {
        match self {
            Slot::Kept { role, local, .. } | Slot::Bound { role, local, .. } => (*role, *local),
        }
    }
}

/// The listeners a configuration wants, everything new already bound.
/// [`Listeners::commit`] puts it in force; dropping it instead closes what
/// it bound and leaves the listeners in force untouched.
#[derive(Debug)]
pub(crate) struct Plan {
    slots: Vec<Slot>,
    /// `client_congestion_control`.
    congestion: Option<String>,
}

impl Plan {
    /// Every address the plan listens on (ports resolved): the proxy's
    /// own addresses, which it must never connect to.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.slots.iter().map(|slot| slot.role_and_local().1).collect()
    }
}

impl Listeners {
    /// The addresses listened on for `role`, in configuration order.
    pub(crate) fn addrs(&self, role: Role) -> Vec<SocketAddr> {
        self.live.iter().filter(|listener| listener.role == role).map(|listener| listener.local).collect()
    }

    /// Matches `wanted` against the listeners in force and binds the
    /// addresses that are new, proxy ones with `congestion` (the
    /// `client_congestion_control`). Must run inside the tokio runtime.
    /// Fails, having changed nothing, if any new address cannot be bound.
    pub(crate) fn plan(&self, wanted: &[(Role, SocketAddr)], congestion: Option<&str>) -> Result<Plan, ReloadError> {
        let mut taken = vec![false; self.live.len()];
        let mut slots: Vec<Option<Slot>> = wanted.iter().map(|_| None).collect();
        // Same role first, then a socket changing role (e.g. a port moved
        // from `[proxy] listen` to `[proxy.tls] listen`).
        for same_role in [true, false] {
            for (slot, &(role, addr)) in slots.iter_mut().zip(wanted) {
                if slot.is_some() || (!same_role && addr.port() == 0) {
                    continue;
                }
                let found = self.live.iter().enumerate().find(|(index, listener)| {
                    !taken[*index] && (!same_role || listener.role == role) && listener.serves(addr)
                });
                if let Some((index, listener)) = found {
                    taken[index] = true;
                    *slot = Some(Slot::Kept { index, role, configured: addr, local: listener.local });
                }
            }
        }
        let mut plan = Plan { slots: Vec::with_capacity(wanted.len()), congestion: congestion.map(str::to_owned) };
        for (slot, &(role, addr)) in slots.into_iter().zip(wanted) {
            let slot = match slot {
                Some(kept) => kept,
                None => {
                    let congestion = congestion.filter(|_| role.serves_clients());
                    let socket = bind(addr, congestion).map_err(|source| self.bind_error(addr, source, &taken))?;
                    let local = socket.local_addr().map_err(|error| ReloadError::Bind { addr, error })?;
                    Slot::Bound { role, configured: addr, local, socket, congestion: congestion.map(str::to_owned) }
                }
            };
            plan.slots.push(slot);
        }
        Ok(plan)
    }

    /// Why `addr` could not be bound; says so when a listener this plan
    /// would stop holds the same port (binding comes before closing).
    fn bind_error(&self, addr: SocketAddr, source: std::io::Error, taken: &[bool]) -> ReloadError {
        let overlap = (source.kind() == std::io::ErrorKind::AddrInUse)
            .then(|| {
                self.live
                    .iter()
                    .zip(taken)
                    .find(|(listener, taken)| !**taken && listener.local.port() == addr.port())
                    .map(|(listener, _)| listener.local)
            })
            .flatten();
        match overlap {
            Some(overlaps) => ReloadError::Overlap { addr, overlaps, error: source },
            None => ReloadError::Bind { addr, error: source },
        }
    }

    /// Puts `plan` (made by [`Listeners::plan`] on these listeners) in
    /// force: starts accepting on what it bound, hands kept sockets to
    /// their new role, and stops accepting on what it does not keep.
    /// With `announce`, each change is logged.
    pub(crate) fn commit(&mut self, plan: Plan, spawn: Spawn<'_>, announce: bool) {
        let mut old: Vec<Option<Listener>> = std::mem::take(&mut self.live).into_iter().map(Some).collect();
        for slot in plan.slots {
            match slot {
                Slot::Kept { index, role, configured, .. } => {
                    let Some(mut listener) = old.get_mut(index).and_then(Option::take) else { continue };
                    listener.configured = configured;
                    if listener.role != role {
                        listener.stop.send_replace(true);
                        if announce {
                            tracing::info!(
                                from = listener.role.name(),
                                to = role.name(),
                                "{} changes role, without closing",
                                listener.local
                            );
                        }
                        let (stop, stopped) = watch::channel(false);
                        listener.task = spawn(role, listener.socket.clone(), stopped);
                        listener.stop = stop;
                        listener.role = role;
                    }
                    if role.serves_clients() && listener.congestion != plan.congestion {
                        follow_congestion(&mut listener, plan.congestion.as_deref());
                    }
                    self.live.push(listener);
                }
                Slot::Bound { role, configured, local, socket, congestion } => {
                    let socket = Arc::new(socket);
                    let (stop, stopped) = watch::channel(false);
                    let task = spawn(role, socket.clone(), stopped);
                    if announce {
                        tracing::info!(listener = role.name(), "now listening on {local}");
                    }
                    self.live.push(Listener { role, configured, local, socket, congestion, stop, task });
                }
            }
        }
        for listener in old.into_iter().flatten() {
            // The task drops its socket when it sees this; connections it
            // accepted are tasks of their own and carry on.
            listener.stop.send_replace(true);
            tracing::info!(listener = listener.role.name(), "stopped listening on {}", listener.local);
        }
    }

    /// The accept tasks of the proxy listeners (they end when shutdown
    /// begins), leaving the admin listener serving.
    pub(crate) fn take_proxy_tasks(&mut self) -> Vec<JoinHandle<()>> {
        let (proxy, admin): (Vec<Listener>, Vec<Listener>) =
            std::mem::take(&mut self.live).into_iter().partition(|listener| listener.role != Role::Admin);
        self.live = admin;
        proxy.into_iter().map(|listener| listener.task).collect()
    }
}

/// Gives a kept listener a changed `client_congestion_control` (`None`:
/// back to the system's default) for the connections it accepts from now
/// on. The name was tried when the config was loaded, so failing here is
/// unlikely; if it does, the listener carries on as it was, and says so.
fn follow_congestion(listener: &mut Listener, wanted: Option<&str>) {
    let Some(name) = wanted.map(str::to_owned).or_else(super::congestion::system_default) else {
        tracing::warn!(
            listener = listener.role.name(),
            "{}: cannot read the system's default congestion control; new connections keep `{}`",
            listener.local,
            listener.congestion.as_deref().unwrap_or_default()
        );
        return;
    };
    match super::congestion::set(&*listener.socket, &name) {
        Ok(()) => {
            tracing::info!(
                listener = listener.role.name(),
                "{}: new connections use congestion control `{name}`",
                listener.local
            );
            listener.congestion = wanted.map(str::to_owned);
        }
        Err(error) => tracing::warn!(
            listener = listener.role.name(),
            "{}: cannot set congestion control `{name}` ({error}); new connections keep the one they had",
            listener.local
        ),
    }
}

/// Listen backlog: connections the kernel completes before they are
/// accepted (a burst of browsers opening theirs at once).
const BACKLOG: u32 = 1024;

/// Binds a listening socket as `tokio::net::TcpListener::bind` does
/// (`SO_REUSEADDR` on Unix, so a port just closed can be bound again at
/// once; it does not let two sockets listen on one address). It also sets
/// `TCP_NODELAY` and, if given, the congestion control, which Linux copies
/// to every accepted connection: one system call per listener rather than
/// one per client.
fn bind(addr: SocketAddr, congestion: Option<&str>) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    if let Some(name) = congestion {
        super::congestion::set(&socket, name).map_err(|err| {
            std::io::Error::new(err.kind(), format!("cannot set client_congestion_control `{name}`: {err}"))
        })?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Resolves when `stop` turns true. Never resolves if its sender is gone
/// first: dropping the handle does not stop the proxy.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A spawn that accepts nothing: these tests look at sockets only.
    fn idle(_: Role, _: Arc<TcpListener>, _: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async {})
    }

    fn kinds(plan: &Plan) -> Vec<(&'static str, Role)> {
        let kind = |slot: &Slot| match slot {
            Slot::Kept { .. } => "kept",
            Slot::Bound { .. } => "bound",
        };
        plan.slots.iter().map(|slot| (kind(slot), slot.role_and_local().0)).collect()
    }

    /// Connections accepted on a listener start with `TCP_NODELAY` set, so
    /// `serve` need not set it on each (Linux copies it from the listener).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        assert!(!client.nodelay().unwrap(), "an unset socket reads false, so the check above can fail");
    }

    /// `client_congestion_control` reaches the connections proxy listeners
    /// accept, new and kept listeners alike; a reload that unsets it puts
    /// the system's default back; admin listeners never get it.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_get_the_client_congestion_control() {
        use crate::proxy::congestion;
        let default = congestion::system_default().unwrap();
        // An algorithm other than the default, so that the check can fail.
        let chosen = if default == "reno" { "cubic" } else { "reno" };
        congestion::usable(chosen).unwrap();
        async fn accepted_cc(listener: &TcpListener) -> String {
            let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            congestion::get(&accepted).unwrap()
        }
        let mut listeners = Listeners::default();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let wanted = [(Role::Proxy, any), (Role::Admin, any)];
        let plan = listeners.plan(&wanted, Some(chosen)).unwrap();
        listeners.commit(plan, &idle, false);
        assert_eq!(accepted_cc(&listeners.live[0].socket).await, chosen, "a new proxy listener");
        assert_eq!(accepted_cc(&listeners.live[1].socket).await, default, "the admin listener");

        let plan = listeners.plan(&wanted, None).unwrap();
        listeners.commit(plan, &idle, false);
        assert_eq!(accepted_cc(&listeners.live[0].socket).await, default, "kept, setting removed");

        let plan = listeners.plan(&wanted, Some(chosen)).unwrap();
        listeners.commit(plan, &idle, false);
        assert_eq!(accepted_cc(&listeners.live[0].socket).await, chosen, "kept, setting added");
        assert_eq!(accepted_cc(&listeners.live[1].socket).await, default, "the admin listener, kept");
    }

    /// Which wanted addresses reuse the socket in force, and which bind.
    #[tokio::test]
    async fn a_socket_is_kept_for_its_configured_or_its_bound_address() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut listeners = Listeners::default();
        let plan = listeners.plan(&[(Role::Proxy, any)], None).unwrap();
        listeners.commit(plan, &idle, false);
        let bound = listeners.addrs(Role::Proxy)[0];
        assert_ne!(bound.port(), 0);

        type Case<'a> = (&'a [(Role, SocketAddr)], &'a [(&'a str, Role)]);
        let cases: [Case<'_>; 5] = [
            // The same configured address, port 0 included.
            (&[(Role::Proxy, any)], &[("kept", Role::Proxy)]),
            // The address it was bound to, named explicitly.
            (&[(Role::Proxy, bound)], &[("kept", Role::Proxy)]),
            // Named for TLS: the socket changes role.
            (&[(Role::ProxyTls, bound)], &[("kept", Role::ProxyTls)]),
            // Port 0 for another role: a new socket.
            (&[(Role::ProxyTls, any)], &[("bound", Role::ProxyTls)]),
            // Two listeners on any port: one kept, one new.
            (&[(Role::Proxy, any), (Role::Proxy, any)], &[("kept", Role::Proxy), ("bound", Role::Proxy)]),
        ];
        for (wanted, expected) in cases {
            let plan = listeners.plan(wanted, None).unwrap();
            assert_eq!(kinds(&plan), expected, "{wanted:?}");
            assert_eq!(plan.addrs()[0].port() == bound.port(), expected[0].0 == "kept", "{wanted:?}");
        }
    }

    /// Binding comes before closing: a new address refused because it
    /// overlaps one the plan would close says so (checked without binding
    /// the wildcard address: the tests stay on loopback).
    #[tokio::test]
    async fn a_refused_address_that_overlaps_a_closing_one_names_it() {
        let mut listeners = Listeners::default();
        let plan = listeners.plan(&[(Role::Proxy, "127.0.0.1:0".parse().unwrap())], None).unwrap();
        listeners.commit(plan, &idle, false);
        let bound = listeners.addrs(Role::Proxy)[0];
        let wildcard = SocketAddr::new("0.0.0.0".parse().unwrap(), bound.port());
        let in_use = || std::io::Error::from(std::io::ErrorKind::AddrInUse);

        let closing = listeners.bind_error(wildcard, in_use(), &[false]);
        assert!(
            matches!(closing, ReloadError::Overlap { addr, overlaps, .. } if addr == wildcard && overlaps == bound)
        );
        assert!(closing.to_string().contains("needs a restart"), "{closing}");
        let kept = listeners.bind_error(wildcard, in_use(), &[true]);
        assert!(matches!(kept, ReloadError::Bind { addr, .. } if addr == wildcard), "{kept}");
    }
}
