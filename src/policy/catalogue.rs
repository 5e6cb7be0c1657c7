//! The built-in service catalogue: Facebook, Twitter/X, LinkedIn, YouTube.
//!
//! `domains` match the name and every subdomain on a label boundary; `hosts`
//! match exactly (for shared infrastructure such as `googleapis.com`, which
//! must never be matched as a whole).
//!
//! The lists are ours. They were compiled in 2026-11 by comparing the public
//! lists named in each service's comment (v2fly/domain-list-community, the
//! AdGuard HostlistsRegistry "blocked services", StevenBlack's social hosts)
//! and keeping what the service itself uses or redirects to. Left out on
//! purpose:
//!
//! - typo-squatting and brand-protection registrations (`facebok.com`, ...):
//!   nobody browses them, and the few that resolve redirect to a listed name;
//! - open-source project sites a company happens to own (`reactjs.org`,
//!   `rocksdb.org`, ...): blocking them breaks developers, not social media;
//! - sister apps (Instagram, WhatsApp, Threads, Meta, xAI/Grok): admins decide
//!   those per policy by defining a service in `services.toml`;
//! - anything on shared infrastructure as a whole domain: CDN and cloud names
//!   (`akamaihd.net`, `googleapis.com`, `fastly.net`, ...) appear only as exact
//!   `hosts`, so blocking YouTube never blocks Google Drive.
//!
//! Keep every list sorted; the tests below check format, order, duplicates,
//! shared infrastructure and the SPEC 2.2 minimum entries.

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
pub static BUILTIN: &[BuiltinService] = &[FACEBOOK, LINKEDIN, TWITTER, YOUTUBE];

/// Facebook and Messenger (Meta's apps other than these are not included).
///
/// Sources, 2026-11: v2fly/domain-list-community `data/facebook` and
/// `data/messenger`; AdguardTeam/HostlistsRegistry `services/facebook.yml`;
/// the localized and infrastructure names noted in LANDSCAPE.md (`tfbnw.net`,
/// `facebook.de`, `facebook.fr`); StevenBlack `extensions/social` for the
/// legacy `*-a.akamaihd.net` image hosts (kept as exact hosts: they cost
/// nothing and old embeds still reference them).
///
/// Messenger is part of Facebook here: its web client runs on `facebook.com`
/// hosts (`edge-chat.`, `web-chat-e2ee.`), so the two cannot be told apart
/// by host name anyway. `graph.facebook.com` is in (it is the API that pages
/// and apps use); blocking it alone breaks Messenger, so never carve it out.
const FACEBOOK: BuiltinService = BuiltinService {
    name: "facebook",
    domains: &[
        "aboutfacebook.com",
        "careersatfb.com",
        "facebook.ca",
        "facebook.cc",
        "facebook.com",
        "facebook.de",
        "facebook.fr",
        "facebook.hu",
        "facebook.in",
        "facebook.net",
        "facebook.nl",
        "facebook.org",
        "facebook.se",
        "facebook.tv",
        "facebook.us",
        "facebookblueprint.net",
        "facebookbrand.com",
        "facebookcareer.com",
        "facebookmail.com",
        "fb.careers",
        "fb.com",
        "fb.gg",
        "fb.me",
        "fb.watch",
        "fbcdn.com",
        "fbcdn.net",
        "fbmessenger.com",
        "fbsbx.com",
        "fbsbx.net",
        "fburl.com",
        "fbwat.ch",
        "m.me",
        "messenger.com",
        "messengerdevelopers.com",
        "tfbnw.net",
        "thefacebook.com",
        "thefacebook.net",
    ],
    hosts: &[
        "fbcdn-a.akamaihd.net",
        "fbcdn-photos-a-a.akamaihd.net",
        "fbcdn-photos-b-a.akamaihd.net",
        "fbcdn-photos-c-a.akamaihd.net",
        "fbcdn-photos-d-a.akamaihd.net",
        "fbcdn-photos-e-a.akamaihd.net",
        "fbcdn-photos-f-a.akamaihd.net",
        "fbcdn-photos-g-a.akamaihd.net",
        "fbcdn-photos-h-a.akamaihd.net",
        "fbcdn-profile-a.akamaihd.net",
        "fbcdn-sphotos-a-a.akamaihd.net",
        "fbcdn-sphotos-b-a.akamaihd.net",
        "fbcdn-sphotos-c-a.akamaihd.net",
        "fbcdn-sphotos-d-a.akamaihd.net",
        "fbcdn-sphotos-e-a.akamaihd.net",
        "fbcdn-sphotos-f-a.akamaihd.net",
        "fbcdn-sphotos-g-a.akamaihd.net",
        "fbcdn-sphotos-h-a.akamaihd.net",
        "fbexternal-a.akamaihd.net",
        "fbstatic-a.akamaihd.net",
    ],
};

/// LinkedIn, including its short links, CDN and ads measurement.
///
/// Sources, 2026-11: v2fly/domain-list-community `data/linkedin` (incl. its
/// "platform domain" exact hosts); AdguardTeam/HostlistsRegistry
/// `services/linkedin.yml` (adds `linkedin.be`, `linkedin.nl` and the
/// `msedge`/`qtlcdn`/`epsiloncdn` hosts). The exact hosts are CDN names that
/// LinkedIn's own names resolve through; a proxy only sees them when a client
/// asks for them directly, so they are harmless and cheap to keep.
/// `linkedin.cn` / `licdn.cn` are the former China service (closed 2023),
/// kept because old links still point there.
const LINKEDIN: BuiltinService = BuiltinService {
    name: "linkedin",
    domains: &[
        "bizographics.com",
        "licdn.cn",
        "licdn.com",
        "linkedin.at",
        "linkedin.be",
        "linkedin.cn",
        "linkedin.com",
        "linkedin.nl",
        "lnkd.in",
    ],
    hosts: &[
        "cs1404.wpc.epsiloncdn.net",
        "cs767.wpc.epsiloncdn.net",
        "e122475.dscg.akamaiedge.net",
        "l-0005.dc-msedge.net",
        "l-0005.l-dc-msedge.net",
        "l-0005.l-msedge.net",
        "l-0015.l-msedge.net",
        "licdn.cn.cdn20.com",
        "linkedin.qtlcdn.com",
        "linkedin.sc.omtrdc.net",
    ],
};

/// Twitter / X, including `t.co` links, media, ads and the retired side
/// products that still redirect (Periscope, Vine, TweetDeck, Twitpic).
///
/// Sources, 2026-11: v2fly/domain-list-community `data/twitter` (`data/x`
/// includes it); AdguardTeam/HostlistsRegistry `services/twitter.yml`
/// ("X (formerly Twitter)", adds `x.com`, `twvid.com`, `twttr.net`,
/// `cms-twdigitalassets.com` and the community/flight-school sites).
/// `t.co` is X's link wrapper: blocking X blocks every link shared there.
/// xAI/Grok (`x.ai`, `grok.com`) is a separate product and not included.
const TWITTER: BuiltinService = BuiltinService {
    name: "twitter",
    domains: &[
        "ads-twitter.com",
        "cms-twdigitalassets.com",
        "periscope.tv",
        "pscp.tv",
        "t.co",
        "tellapart.com",
        "tweetdeck.com",
        "twimg.com",
        "twitpic.com",
        "twitter.biz",
        "twitter.com",
        "twitter.jp",
        "twittercommunity.com",
        "twitterflightschool.com",
        "twitterinc.com",
        "twitteroauth.com",
        "twitterstat.us",
        "twtrdns.net",
        "twttr.com",
        "twttr.net",
        "twvid.com",
        "vine.co",
        "x.com",
    ],
    hosts: &["twitter.map.fastly.net"],
};

/// YouTube, YouTube Music, Kids, Gaming, Go and the localized domains.
///
/// Sources, 2026-11: v2fly/domain-list-community `data/youtube`;
/// AdguardTeam/HostlistsRegistry `services/youtube.yml` (adds
/// `youtube.googleapis.com`, `youtubeembeddedplayer.googleapis.com` and the
/// `*.l.google.com` front ends); the nextdns/services fork for `yt3.ggpht.com`;
/// public client code for `yt4.ggpht.com` / `yt4.googleusercontent.com`
/// (channel and comment avatars) and the `ytimg`/`ytstatic` front ends.
///
/// `googlevideo.com` carries the video segments under unbounded host names
/// (`rr3---sn-....googlevideo.com`), so it must be a suffix entry. Everything
/// on shared Google infrastructure (`googleapis.com`, `ggpht.com`,
/// `googleusercontent.com`, `google.com`) is an exact host: `ggpht.com` is a
/// whole domain in v2fly/AdGuard, but it also serves other Google products.
/// The single-label `youtube` entry is Google's `.youtube` top-level domain.
const YOUTUBE: BuiltinService = BuiltinService {
    name: "youtube",
    domains: &[
        "googlevideo.com",
        "withyoutube.com",
        "youtu.be",
        "youtube",
        "youtube-nocookie.com",
        "youtube.ae",
        "youtube.al",
        "youtube.am",
        "youtube.at",
        "youtube.az",
        "youtube.ba",
        "youtube.be",
        "youtube.bg",
        "youtube.bh",
        "youtube.bo",
        "youtube.by",
        "youtube.ca",
        "youtube.cat",
        "youtube.ch",
        "youtube.cl",
        "youtube.co",
        "youtube.co.ae",
        "youtube.co.at",
        "youtube.co.cr",
        "youtube.co.hu",
        "youtube.co.id",
        "youtube.co.il",
        "youtube.co.in",
        "youtube.co.jp",
        "youtube.co.ke",
        "youtube.co.kr",
        "youtube.co.ma",
        "youtube.co.nz",
        "youtube.co.th",
        "youtube.co.tz",
        "youtube.co.ug",
        "youtube.co.uk",
        "youtube.co.ve",
        "youtube.co.za",
        "youtube.co.zw",
        "youtube.com",
        "youtube.com.ar",
        "youtube.com.au",
        "youtube.com.az",
        "youtube.com.bd",
        "youtube.com.bh",
        "youtube.com.bo",
        "youtube.com.br",
        "youtube.com.by",
        "youtube.com.co",
        "youtube.com.do",
        "youtube.com.ec",
        "youtube.com.ee",
        "youtube.com.eg",
        "youtube.com.es",
        "youtube.com.gh",
        "youtube.com.gr",
        "youtube.com.gt",
        "youtube.com.hk",
        "youtube.com.hn",
        "youtube.com.hr",
        "youtube.com.jm",
        "youtube.com.jo",
        "youtube.com.kw",
        "youtube.com.lb",
        "youtube.com.lv",
        "youtube.com.ly",
        "youtube.com.mk",
        "youtube.com.mt",
        "youtube.com.mx",
        "youtube.com.my",
        "youtube.com.ng",
        "youtube.com.ni",
        "youtube.com.om",
        "youtube.com.pa",
        "youtube.com.pe",
        "youtube.com.ph",
        "youtube.com.pk",
        "youtube.com.pt",
        "youtube.com.py",
        "youtube.com.qa",
        "youtube.com.ro",
        "youtube.com.sa",
        "youtube.com.sg",
        "youtube.com.sv",
        "youtube.com.tn",
        "youtube.com.tr",
        "youtube.com.tw",
        "youtube.com.ua",
        "youtube.com.uy",
        "youtube.com.ve",
        "youtube.cr",
        "youtube.cz",
        "youtube.de",
        "youtube.dk",
        "youtube.ee",
        "youtube.es",
        "youtube.fi",
        "youtube.fr",
        "youtube.ge",
        "youtube.gr",
        "youtube.gt",
        "youtube.hk",
        "youtube.hr",
        "youtube.hu",
        "youtube.ie",
        "youtube.in",
        "youtube.iq",
        "youtube.is",
        "youtube.it",
        "youtube.jo",
        "youtube.jp",
        "youtube.kr",
        "youtube.kz",
        "youtube.la",
        "youtube.lk",
        "youtube.lt",
        "youtube.lu",
        "youtube.lv",
        "youtube.ly",
        "youtube.ma",
        "youtube.md",
        "youtube.me",
        "youtube.mk",
        "youtube.mn",
        "youtube.mx",
        "youtube.my",
        "youtube.ng",
        "youtube.ni",
        "youtube.nl",
        "youtube.no",
        "youtube.pa",
        "youtube.pe",
        "youtube.ph",
        "youtube.pk",
        "youtube.pl",
        "youtube.pr",
        "youtube.pt",
        "youtube.qa",
        "youtube.ro",
        "youtube.rs",
        "youtube.ru",
        "youtube.sa",
        "youtube.se",
        "youtube.sg",
        "youtube.si",
        "youtube.sk",
        "youtube.sn",
        "youtube.soy",
        "youtube.sv",
        "youtube.tn",
        "youtube.tv",
        "youtube.ua",
        "youtube.ug",
        "youtube.uy",
        "youtube.vn",
        "youtubeeducation.com",
        "youtubefanfest.com",
        "youtubegaming.com",
        "youtubego.co.id",
        "youtubego.co.in",
        "youtubego.com",
        "youtubego.com.br",
        "youtubego.id",
        "youtubego.in",
        "youtubekids.com",
        "youtubemobilesupport.com",
        "yt.be",
        "ytimg.com",
    ],
    hosts: &[
        "wide-youtube.l.google.com",
        "youtube-ui.l.google.com",
        "youtube.googleapis.com",
        "youtubeembeddedplayer.googleapis.com",
        "youtubei.googleapis.com",
        "yt3.ggpht.com",
        "yt3.googleusercontent.com",
        "yt4.ggpht.com",
        "yt4.googleusercontent.com",
        "ytimg.l.google.com",
        "ytstatic.l.google.com",
    ],
};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::{BUILTIN, BuiltinService};
    use crate::policy::Host;

    /// Shared infrastructure: never a `domains` entry, nor a parent or child
    /// of one (a child such as `wpc.epsiloncdn.net` is still shared by many
    /// customers). Exact `hosts` below these are fine.
    const SHARED_INFRA: &[&str] = &[
        "akadns.net",
        "akamai.net",
        "akamaiedge.net",
        "akamaihd.net",
        "akamaized.net",
        "amazonaws.com",
        "app.link",
        "appspot.com",
        "azureedge.net",
        "cdn20.com",
        "cloudflare.com",
        "cloudflare.net",
        "cloudfront.net",
        "doubleclick.net",
        "edgekey.net",
        "edgesuite.net",
        "epsiloncdn.net",
        "fastly.net",
        "fastlylb.net",
        "ggpht.com",
        "google.com",
        "googleapis.com",
        "googleusercontent.com",
        "gstatic.com",
        "gvt1.com",
        "msedge.net",
        "omtrdc.net",
        "qtlcdn.com",
        "trafficmanager.net",
    ];

    /// The SPEC 2.2 minimum lists.
    const SPEC_MINIMUM: &[(&str, &[&str], &[&str])] = &[
        (
            "facebook",
            &[
                "facebook.com",
                "fb.com",
                "fb.me",
                "fb.watch",
                "fbcdn.net",
                "facebook.net",
                "fbsbx.com",
                "messenger.com",
                "m.me",
            ],
            &[],
        ),
        ("twitter", &["twitter.com", "x.com", "t.co", "twimg.com", "twttr.com"], &[]),
        ("linkedin", &["linkedin.com", "licdn.com", "lnkd.in"], &[]),
        (
            "youtube",
            &["youtube.com", "youtu.be", "ytimg.com", "googlevideo.com", "youtube-nocookie.com"],
            &["youtubei.googleapis.com", "yt3.ggpht.com", "yt3.googleusercontent.com"],
        ),
    ];

    fn service(name: &str) -> &'static BuiltinService {
        BUILTIN.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no built-in service `{name}`"))
    }

    /// Every entry with its service and kind.
    fn entries() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
        BUILTIN.iter().flat_map(|s| {
            s.domains
                .iter()
                .map(move |d| (s.name, "domain", *d))
                .chain(s.hosts.iter().map(move |h| (s.name, "host", *h)))
        })
    }

    /// `child` equals `parent` or lies under it on a label boundary.
    fn within(child: &str, parent: &str) -> bool {
        child == parent || child.strip_suffix(parent).is_some_and(|rest| rest.ends_with('.'))
    }

    #[test]
    fn services_are_the_four_sorted_by_name() {
        let names: Vec<&str> = BUILTIN.iter().map(|s| s.name).collect();
        assert_eq!(names, ["facebook", "linkedin", "twitter", "youtube"]);
    }

    #[test]
    fn entries_are_lowercase_ascii_names_without_dot_scheme_port_or_wildcard() {
        for (service, kind, entry) in entries() {
            let ctx = format!("{service} {kind} `{entry}`");
            assert!(!entry.is_empty(), "{ctx}: empty");
            assert!(
                entry.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
                "{ctx}: only lowercase ASCII letters, digits, `-` and `.` are allowed (use punycode)"
            );
            assert!(!entry.starts_with('.') && !entry.ends_with('.'), "{ctx}: leading or trailing dot");
            for label in entry.split('.') {
                assert!(!label.is_empty() && label.len() <= 63, "{ctx}: bad label length");
                assert!(!label.starts_with('-') && !label.ends_with('-'), "{ctx}: label starts or ends with `-`");
            }
            assert!(entry.len() <= 253, "{ctx}: too long");
            // Not an IP literal (all-numeric last label).
            let last = entry.rsplit('.').next().unwrap_or(entry);
            assert!(!last.bytes().all(|b| b.is_ascii_digit()), "{ctx}: looks like an IP address");
        }
    }

    #[test]
    fn entries_are_already_normalised_hosts() {
        for (service, kind, entry) in entries() {
            let host = Host::parse(entry).unwrap_or_else(|e| panic!("{service} {kind} `{entry}`: {e}"));
            assert_eq!(host.as_str(), entry, "{service} {kind} `{entry}` is not in normal form");
            assert!(host.ip().is_none(), "{service} {kind} `{entry}` is an IP literal");
        }
    }

    #[test]
    fn every_list_is_sorted_without_duplicates() {
        for s in BUILTIN {
            for (kind, list) in [("domains", s.domains), ("hosts", s.hosts)] {
                for pair in list.windows(2) {
                    assert!(pair[0] < pair[1], "{}.{kind}: `{}` must come before `{}`", s.name, pair[1], pair[0]);
                }
            }
        }
    }

    #[test]
    fn no_entry_appears_twice_in_or_across_services() {
        let mut seen: HashMap<&str, (&str, &str)> = HashMap::new();
        for (service, kind, entry) in entries() {
            if let Some((other, other_kind)) = seen.insert(entry, (service, kind)) {
                panic!("`{entry}` is both a {other} {other_kind} and a {service} {kind}");
            }
        }
    }

    #[test]
    fn no_domain_lies_inside_another_domain() {
        // Overlapping suffix entries would make "which service" depend on
        // longest-match subtleties; built-ins stay disjoint.
        let domains: Vec<(&str, &str)> = entries().filter(|e| e.1 == "domain").map(|e| (e.0, e.2)).collect();
        for (s1, d1) in &domains {
            for (s2, d2) in &domains {
                if d1 != d2 {
                    assert!(!within(d1, d2), "{s1} domain `{d1}` is inside {s2} domain `{d2}`");
                }
            }
        }
    }

    #[test]
    fn no_host_is_already_covered_by_a_domain() {
        let domains: Vec<(&str, &str)> = entries().filter(|e| e.1 == "domain").map(|e| (e.0, e.2)).collect();
        for (service, _, host) in entries().filter(|e| e.1 == "host") {
            for (other, domain) in &domains {
                assert!(
                    !within(host, domain),
                    "{service} host `{host}` is already covered by {other} domain `{domain}`"
                );
            }
        }
    }

    #[test]
    fn no_domain_is_shared_infrastructure_or_its_parent_or_child() {
        for (service, _, domain) in entries().filter(|e| e.1 == "domain") {
            for infra in SHARED_INFRA {
                assert!(
                    !within(infra, domain) && !within(domain, infra),
                    "{service} domain `{domain}` overlaps shared infrastructure `{infra}`: use exact `hosts`"
                );
            }
        }
    }

    #[test]
    fn denylist_check_catches_parents_and_children() {
        // The helper the test above relies on.
        assert!(within("googleapis.com", "googleapis.com"));
        assert!(within("youtubei.googleapis.com", "googleapis.com"));
        assert!(within("googleapis.com", "com"));
        assert!(!within("notgoogleapis.com", "googleapis.com"));
        assert!(!within("googleapis.com.evil.test", "googleapis.com"));
    }

    #[test]
    fn spec_minimum_entries_are_present() {
        for (name, domains, hosts) in SPEC_MINIMUM {
            let s = service(name);
            for d in *domains {
                assert!(s.domains.contains(d), "{name}: missing domain `{d}`");
            }
            for h in *hosts {
                assert!(s.hosts.contains(h), "{name}: missing host `{h}`");
            }
        }
    }

    #[test]
    fn shipped_services_toml_repeats_no_builtin_entry() {
        // The example config extends built-ins and adds services; an entry
        // in two services is a config error, so it must never repeat ours.
        let text = include_str!("../../config/services.toml");
        let table: toml::Table = toml::from_str(text).expect("config/services.toml parses");
        let builtin: Vec<&str> = entries().map(|e| e.2).collect();
        let mut seen: HashMap<String, String> = HashMap::new();
        for (name, service) in &table {
            for key in ["domains", "hosts"] {
                let Some(list) = service.get(key).and_then(|v| v.as_array()) else { continue };
                for entry in list {
                    let entry = entry.as_str().expect("entries are strings");
                    assert!(!builtin.contains(&entry), "services.toml {name}.{key}: `{entry}` is built in");
                    if let Some(other) = seen.insert(entry.to_owned(), name.clone()) {
                        panic!("services.toml: `{entry}` is in both {other} and {name}");
                    }
                }
            }
        }
        assert!(table.contains_key("tiktok") && table.contains_key("instagram") && table.contains_key("reddit"));
    }

    #[test]
    fn sister_apps_stay_out_of_facebook() {
        // Instagram, WhatsApp and Threads are decided per policy (services.toml).
        let all: Vec<&str> = entries().map(|e| e.2).collect();
        for sister in
            ["instagram.com", "cdninstagram.com", "whatsapp.com", "whatsapp.net", "wa.me", "threads.net", "threads.com"]
        {
            assert!(!all.contains(&sister), "`{sister}` must not be built in");
        }
    }
}
