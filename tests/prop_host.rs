//! Property tests for host normalisation and catalogue matching: parsing
//! never panics and is idempotent; every case, trailing-dot and
//! internationalised (fullwidth, ideographic dot) spelling of a catalogue
//! domain or of a subdomain of it belongs to its service; and a host never
//! belongs to a service except on a label boundary — checked against a
//! small reference model of the SPEC 2.2 matching rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use socialgate::policy::Host;
use socialgate::policy::catalogue::BUILTIN;

/// A minimal config (built-in catalogue only), loaded once.
fn policy() -> &'static socialgate::policy::Policy {
    static CONFIG: OnceLock<(tempfile::TempDir, socialgate::config::Config)> = OnceLock::new();
    let (_, config) = CONFIG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("departments")).unwrap();
        std::fs::write(dir.path().join("departments/default.toml"), "default = \"allow\"\n").unwrap();
        let main = dir.path().join("socialgate.toml");
        std::fs::write(&main, "[proxy]\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
        let config = socialgate::config::load(&main).unwrap_or_else(|d| panic!("{d}"));
        (dir, config)
    });
    &config.policy
}

/// SPEC 2.2 as a model: an exact `hosts` entry first, else the longest
/// `domains` entry equal to the name or a parent domain of it.
fn model(name: &str) -> Option<&'static str> {
    if let Some(s) = BUILTIN.iter().find(|s| s.hosts.contains(&name)) {
        return Some(s.name);
    }
    BUILTIN
        .iter()
        .flat_map(|s| s.domains.iter().map(move |d| (s.name, *d)))
        .filter(|(_, d)| name == *d || name.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
        .max_by_key(|(_, d)| d.len())
        .map(|(s, _)| s)
}

/// Every built-in domain with its service.
fn domains() -> Vec<(&'static str, &'static str)> {
    BUILTIN.iter().flat_map(|s| s.domains.iter().map(move |d| (s.name, *d))).collect()
}

fn catalogue_domain() -> impl Strategy<Value = (&'static str, &'static str)> {
    proptest::sample::select(domains())
}

/// A DNS label unlikely to be a catalogue name.
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

/// Spells an ASCII name the way a hostile client might: each letter or
/// digit in either case, fullwidth or not; each dot as `.`, `。`, `．` or `｡`;
/// optionally a trailing dot.
fn spell(name: &str, choices: &[u8], trailing_dot: bool) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        let pick = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        let spelled = match c {
            '.' => ['.', '。', '．', '｡'][usize::from(pick % 4)],
            c if c.is_ascii_alphanumeric() => {
                let c = if pick & 1 == 1 { c.to_ascii_uppercase() } else { c };
                if pick & 2 == 2 { char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap() } else { c }
            }
            c => c,
        };
        out.push(spelled);
    }
    if trailing_dot {
        out.push('.');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_and_is_idempotent(input in "\\PC{0,80}") {
        if let Ok(host) = Host::parse(&input) {
            let name = host.as_str();
            prop_assert!(name.is_ascii(), "{name:?}");
            prop_assert!(!name.ends_with('.'), "{name:?}");
            prop_assert_eq!(name.to_ascii_lowercase(), name);
            prop_assert_eq!(Host::parse(name).unwrap(), host.clone());
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_as_lossy_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = Host::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn every_spelling_of_a_catalogue_domain_matches_its_service(
        (service, domain) in catalogue_domain(),
        subdomains in proptest::collection::vec(label(), 0..3),
        choices in proptest::collection::vec(any::<u8>(), 1..16),
        trailing_dot in any::<bool>(),
    ) {
        let mut name = subdomains.join(".");
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(domain);
        // The model may prefer a longer entry (e.g. an exact host); it must
        // still be this service or a more specific catalogue entry.
        let want = model(&name);
        prop_assert!(want.is_some());
        let spelled = spell(&name, &choices, trailing_dot);
        let host = Host::parse(&spelled).map_err(|e| TestCaseError::fail(format!("{spelled:?}: {e}")))?;
        prop_assert_eq!(host.as_str(), name.as_str(), "{:?}", spelled);
        prop_assert_eq!(policy().service_of(&host), want, "{:?} ({})", spelled, service);
    }

    #[test]
    fn a_host_belongs_to_a_service_only_on_a_label_boundary(
        (_, domain) in catalogue_domain(),
        prefix in "[a-z0-9-]{1,6}",
        suffix in proptest::option::of(label()),
        cut in 0usize..4,
    ) {
        // Look-alikes: glued prefix (`notfacebook.com`), an extra label after
        // (`facebook.com.evil`), a truncated first label (`acebook.com`).
        let glued = format!("{prefix}{domain}");
        let after = format!("{domain}.{}", suffix.clone().unwrap_or_else(|| "evil".into()));
        let truncated: String = domain.chars().skip(cut.min(domain.find('.').unwrap_or(0))).collect();
        for candidate in [glued, after, truncated] {
            if let Ok(host) = Host::parse(&candidate) {
                prop_assert_eq!(policy().service_of(&host), model(host.as_str()), "{}", candidate);
            }
        }
    }

    #[test]
    fn ip_literals_never_belong_to_a_domain_service(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
        for spelled in [format!("{a}.{b}.{c}.{d}"), format!("[::ffff:{a}.{b}.{c}.{d}]"), format!("{}", u32::from_be_bytes([a, b, c, d]))] {
            let host = Host::parse(&spelled).unwrap();
            prop_assert!(host.ip().is_some(), "{}", spelled);
            prop_assert_eq!(policy().service_of(&host), model(host.as_str()), "{}", spelled);
        }
    }
}

#[test]
fn the_model_agrees_on_every_catalogue_entry() {
    for service in BUILTIN {
        for name in service.domains.iter().chain(service.hosts) {
            let host = Host::parse(name).unwrap();
            assert_eq!(policy().service_of(&host), model(name), "{name}");
        }
    }
}
