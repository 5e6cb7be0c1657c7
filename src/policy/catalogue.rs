//! The built-in service catalogue: Facebook, Twitter/X, LinkedIn, YouTube.
//!
//! `domains` match the name and every subdomain on a label boundary; `hosts`
//! match exactly (for shared infrastructure such as `googleapis.com`, which
//! must never be matched as a whole).

/// One built-in service.
#[derive(Debug)]
pub struct BuiltinService {
    /// Service name as used in department files.
    pub name: &'static str,
    /// Suffix-matched domains.
    pub domains: &'static [&'static str],
    /// Exactly-matched hosts.
    pub hosts: &'static [&'static str],
}

/// The built-in services, sorted by name.
pub static BUILTIN: &[BuiltinService] = &[];
