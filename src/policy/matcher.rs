//! The compiled name index: which services and which rules a host matches.
//!
//! Two maps, keyed by normalised names: `exact` for `hosts` entries and
//! `suffix` for `domains` entries. A lookup probes the whole host in
//! `exact`, then every label-boundary suffix of it in `suffix`, longest
//! first (`a.b.c` probes `a.b.c`, `b.c`, `c`), using slices of the host
//! string: no allocation, no regex, and `notfacebook.com` can never match
//! `facebook.com` because `tfacebook.com` is not a label boundary. IP
//! literals only probe `exact`.
//!
//! A catalogue holds 100,000 names or more, and nearly all of them only
//! name a service, so a map is two large blocks rather than a hash map of
//! boxed strings: the names back to back in one string, and a hash table of
//! 12-byte slots (offset, length, service) into it; about 40 bytes per name
//! in all. The few names that rules list keep their rules in a side table,
//! flagged in the service word.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::Host;

/// A rule: its department and its index in that department's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RuleRef {
    pub(crate) dept: u32,
    pub(crate) rule: u32,
}

/// What one name in the index stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The catalogue service listing it (the first one, if several did).
    pub(crate) service: Option<u32>,
    /// Every rule listing it, in any department.
    pub(crate) rules: &'a [RuleRef],
}

/// The service word of a name no service lists.
const NO_SERVICE: u32 = u32::MAX >> 1;
/// Set in the service word of a name that rules list.
const HAS_RULES: u32 = 1 << 31;

/// One map: names interned back to back in one string, and a hash table of
/// small slots pointing into it.
#[derive(Debug, Default)]
struct Names {
    /// Every name, back to back.
    text: String,
    /// One slot per name, hashed by the name's text.
    table: HashTable<Slot>,
    /// `(name start, rule)` for every rule entry, sorted by `finish`.
    rules: Vec<(u32, RuleRef)>,
    /// `rules` split in two, for slices: the name starts...
    rule_names: Vec<u32>,
    /// ...and the rules.
    rule_refs: Vec<RuleRef>,
}

/// A name in [`Names`]: where it is in `text`, and what it stands for. The
/// length and the service are kept here, not beside the text, so a probe
/// touches the table and, on a length match, the text: two cache lines.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Where the name starts in `text` (also its id in the rule table).
    start: u32,
    /// Its length in bytes.
    len: u32,
    /// Its service id or `NO_SERVICE`, plus `HAS_RULES`.
    word: u32,
}

fn hash(name: &str) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(name.as_bytes());
    hasher.finish()
}

impl Slot {
    /// The name, from the text it points into (empty if out of range).
    #[inline]
    fn name<'t>(&self, text: &'t str) -> &'t str {
        let start = self.start as usize;
        text.get(start..start + self.len as usize).unwrap_or_default()
    }

    #[inline]
    fn is(&self, text: &str, name: &str) -> bool {
        self.len as usize == name.len() && self.name(text) == name
    }
}

impl Names {
    fn reserve(&mut self, names: usize, bytes: usize) {
        self.text.reserve(bytes);
        let Names { text, table, .. } = self;
        table.reserve(names, |slot| hash(slot.name(text)));
    }

    /// The slot of `name`, added if new (`None` only past 4 GiB of names).
    fn intern(&mut self, name: &str) -> Option<&mut Slot> {
        let Names { text, table, .. } = self;
        match table.entry(hash(name), |slot| slot.is(text, name), |slot| hash(slot.name(text))) {
            Entry::Occupied(entry) => Some(entry.into_mut()),
            Entry::Vacant(entry) => {
                let start = u32::try_from(text.len()).ok()?;
                let len = u32::try_from(name.len()).ok()?;
                start.checked_add(len)?;
                text.push_str(name);
                Some(entry.insert(Slot { start, len, word: NO_SERVICE }).into_mut())
            }
        }
    }

    fn add_service(&mut self, name: &str, service: u32) {
        if let Some(slot) = self.intern(name)
            && slot.word & !HAS_RULES == NO_SERVICE
        {
            slot.word = (slot.word & HAS_RULES) | (service & NO_SERVICE);
        }
    }

    fn add_rule(&mut self, name: &str, rule: RuleRef) {
        if let Some(slot) = self.intern(name) {
            slot.word |= HAS_RULES;
            let start = slot.start;
            self.rules.push((start, rule));
        }
    }

    fn finish(&mut self) {
        self.rules.sort_unstable();
        self.rules.dedup();
        self.rule_names = self.rules.iter().map(|&(start, _)| start).collect();
        self.rule_refs = self.rules.iter().map(|&(_, rule)| rule).collect();
        self.rules = Vec::new();
        self.text.shrink_to_fit();
        let Names { text, table, .. } = self;
        table.shrink_to_fit(|slot| hash(slot.name(text)));
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[inline]
    fn get(&self, name: &str) -> Option<Target<'_>> {
        let slot = self.table.find(hash(name), |slot| slot.is(&self.text, name))?;
        let service = (slot.word & !HAS_RULES != NO_SERVICE).then_some(slot.word & NO_SERVICE);
        let rules = if slot.word & HAS_RULES == 0 {
            &[][..]
        } else {
            let from = self.rule_names.partition_point(|&n| n < slot.start);
            let to = self.rule_names.partition_point(|&n| n <= slot.start);
            self.rule_refs.get(from..to).unwrap_or_default()
        };
        Some(Target { service, rules })
    }

    /// The service of `name`, without looking at rules.
    #[inline]
    fn service(&self, name: &str) -> Option<u32> {
        let slot = self.table.find(hash(name), |slot| slot.is(&self.text, name))?;
        let word = slot.word & !HAS_RULES;
        (word != NO_SERVICE).then_some(word)
    }
}

/// Exact and suffix maps.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    exact: Names,
    suffix: Names,
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
    /// Makes room for `exact` host names and `suffix` domain names of
    /// `exact_bytes` and `suffix_bytes` in all, so that the maps are
    /// allocated once, at their final size.
    pub(crate) fn reserve(&mut self, exact: usize, exact_bytes: usize, suffix: usize, suffix_bytes: usize) {
        self.exact.reserve(exact, exact_bytes);
        self.suffix.reserve(suffix, suffix_bytes);
    }

    /// Adds a catalogue `domains` entry (IP literals are never domains and
    /// are skipped); the first service to list a name keeps it.
    pub(crate) fn add_service_domain(&mut self, host: &Host, service: u32) {
        if host.ip().is_none() {
            self.suffix_labels |= label_bit(label_count(host.as_str()));
            self.suffix.add_service(host.as_str(), service);
        }
    }

    /// Adds a catalogue `hosts` entry.
    pub(crate) fn add_service_host(&mut self, host: &Host, service: u32) {
        self.exact.add_service(host.as_str(), service);
    }

    /// Adds a rule's `domains` entry (IP literals skipped).
    pub(crate) fn add_rule_domain(&mut self, host: &Host, rule: RuleRef) {
        if host.ip().is_none() {
            self.suffix_labels |= label_bit(label_count(host.as_str()));
            self.suffix.add_rule(host.as_str(), rule);
        }
    }

    /// Adds a rule's `hosts` entry.
    pub(crate) fn add_rule_host(&mut self, host: &Host, rule: RuleRef) {
        self.exact.add_rule(host.as_str(), rule);
    }

    /// Sorts the rule tables and frees spare capacity once everything is
    /// added.
    pub(crate) fn shrink(&mut self) {
        self.exact.finish();
        self.suffix.finish();
    }

    /// Calls `visit` for every entry matching `host`: the exact one first,
    /// then suffix entries from the longest to the shortest.
    #[inline]
    pub(crate) fn for_each_match<'a>(&'a self, host: &Host, mut visit: impl FnMut(MatchKind, Target<'a>)) {
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
            if self.suffix_labels & label_bit(labels) != 0
                && let Some(target) = self.suffix.get(rest)
            {
                visit(MatchKind::Suffix, target);
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
        if let Some(service) = self.exact.service(name) {
            return Some(service);
        }
        if host.ip().is_some() {
            return None;
        }
        let mut rest = name;
        let mut labels = label_count(name);
        loop {
            if self.suffix_labels & label_bit(labels) != 0
                && let Some(service) = self.suffix.service(rest)
            {
                return Some(service);
            }
            match rest.find('.') {
                Some(dot) => rest = rest.get(dot + 1..).unwrap_or_default(),
                None => return None,
            }
            labels -= 1;
        }
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
