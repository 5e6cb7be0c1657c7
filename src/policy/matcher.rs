//! The compiled name index: which services and which rules a host matches.
//!
//! Two hash maps, keyed by normalised names: `exact` for `hosts` entries and
//! `suffix` for `domains` entries. A lookup probes the whole host in
//! `exact`, then every label-boundary suffix of it in `suffix`, longest
//! first (`a.b.c` probes `a.b.c`, `b.c`, `c`), using slices of the host
//! string: no allocation, no regex, and `notfacebook.com` can never match
//! `facebook.com` because `tfacebook.com` is not a label boundary. IP
//! literals only probe `exact`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Host;

/// A rule: its department and its index in that department's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleRef {
    pub(crate) dept: u32,
    pub(crate) rule: u32,
}

/// What one name in the index stands for.
#[derive(Debug, Default)]
pub(crate) struct Target {
    /// The catalogue service listing it (the first one, if several did).
    pub(crate) service: Option<u32>,
    /// Every rule listing it, in any department.
    pub(crate) rules: Vec<RuleRef>,
}

/// Exact and suffix maps.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    exact: FastMap<Box<str>, Target>,
    suffix: FastMap<Box<str>, Target>,
    /// Bit `n` is set when some `suffix` key has `n` labels (bit 63: 63 or
    /// more), so a lookup only probes suffixes of a length that exists:
    /// with a catalogue of two- and three-label domains, `a.b.c.d.e.f`
    /// costs two probes, not six.
    suffix_labels: u64,
}

fn label_bit(labels: usize) -> u64 {
    1u64 << labels.min(63)
}

fn label_count(name: &str) -> usize {
    name.bytes().filter(|&b| b == b'.').count() + 1
}

/// Which map a [`Target`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchKind {
    /// A `hosts` entry equal to the host.
    Exact,
    /// A `domains` entry equal to the host or a parent domain of it.
    Suffix,
}

impl NameIndex {
    /// Adds a catalogue `domains` entry (IP literals are never domains and
    /// are skipped); the first service to list a name keeps it.
    pub(crate) fn add_service_domain(&mut self, host: &Host, service: u32) {
        if host.ip().is_none() {
            self.suffix_labels |= label_bit(label_count(host.as_str()));
            self.suffix.entry(host.as_str().into()).or_default().service.get_or_insert(service);
        }
    }

    /// Adds a catalogue `hosts` entry.
    pub(crate) fn add_service_host(&mut self, host: &Host, service: u32) {
        self.exact.entry(host.as_str().into()).or_default().service.get_or_insert(service);
    }

    /// Adds a rule's `domains` entry (IP literals skipped).
    pub(crate) fn add_rule_domain(&mut self, host: &Host, rule: RuleRef) {
        if host.ip().is_none() {
            self.suffix_labels |= label_bit(label_count(host.as_str()));
            push_rule(self.suffix.entry(host.as_str().into()).or_default(), rule);
        }
    }

    /// Adds a rule's `hosts` entry.
    pub(crate) fn add_rule_host(&mut self, host: &Host, rule: RuleRef) {
        push_rule(self.exact.entry(host.as_str().into()).or_default(), rule);
    }

    /// Frees spare capacity once everything is added.
    pub(crate) fn shrink(&mut self) {
        self.exact.shrink_to_fit();
        self.suffix.shrink_to_fit();
    }

    /// Calls `visit` for every entry matching `host`: the exact one first,
    /// then suffix entries from the longest to the shortest.
    #[inline]
    pub(crate) fn for_each_match<'a>(&'a self, host: &Host, mut visit: impl FnMut(MatchKind, &'a Target)) {
        let name = host.as_str();
        if let Some(target) = self.exact.get(name) {
            visit(MatchKind::Exact, target);
        }
        if host.ip().is_some() || self.suffix.is_empty() {
            return;
        }
        let mut rest = name;
        let mut labels = label_count(name);
        loop {
            if self.suffix_labels & label_bit(labels) != 0 {
                if let Some(target) = self.suffix.get(rest) {
                    visit(MatchKind::Suffix, target);
                }
            }
            match rest.find('.') {
                Some(dot) => rest = rest.get(dot + 1..).unwrap_or_default(),
                None => break,
            }
            labels -= 1;
        }
    }

    /// The service `host` belongs to: an exact entry first, else the
    /// longest matching suffix.
    pub(crate) fn service_of(&self, host: &Host) -> Option<u32> {
        let name = host.as_str();
        if let Some(service) = self.exact.get(name).and_then(|t| t.service) {
            return Some(service);
        }
        if host.ip().is_some() {
            return None;
        }
        let mut rest = name;
        let mut labels = label_count(name);
        loop {
            if self.suffix_labels & label_bit(labels) != 0 {
                if let Some(service) = self.suffix.get(rest).and_then(|t| t.service) {
                    return Some(service);
                }
            }
            match rest.find('.') {
                Some(dot) => rest = rest.get(dot + 1..).unwrap_or_default(),
                None => return None,
            }
            labels -= 1;
        }
    }
}

fn push_rule(target: &mut Target, rule: RuleRef) {
    if !target.rules.contains(&rule) {
        target.rules.push(rule);
    }
}

/// A `HashMap` with a fast non-cryptographic hash. Keys come from the
/// config, never from clients (lookups do not insert), so hash flooding is
/// not a concern and SipHash's cost per probe is not worth paying.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The multiply-rotate hash rustc uses (FxHash), eight bytes at a time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown takes its control byte from the
        // top bits and the bucket from the low ones.
        self.hash ^ (self.hash >> 29)
    }
}
