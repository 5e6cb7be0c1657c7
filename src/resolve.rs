//! Name resolution for upstream connections: the hosts file first, then
//! async DNS (configured nameservers or the system's resolver), and the
//! private-destination guard applied to the address actually connected to.
