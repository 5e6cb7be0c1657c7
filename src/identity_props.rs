//! Property tests for Basic credentials and the verified-credential cache:
//! `Proxy-Authorization` decoding never panics and agrees with a model of
//! RFC 7617 built on the `base64` crate, well-formed credentials come back
//! as written, and no sequence of attempts and htpasswd reloads lets a
//! cached success answer for another user or password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::config::Secret;

/// RFC 7617 over RFC 9110 11.4: `credentials = auth-scheme [ 1*SP token68 ]`,
/// the scheme case-insensitive, the token the padded base64 (RFC 4648 4) of
/// `user-id ":" password` in UTF-8 (the only charset Basic defines); the
/// user-id has no colon, the password may. An empty user-id, a token that
/// is not canonical base64 and text that is not UTF-8 are no credentials
/// (SECURITY.md: "no colon, bad base64, a non-UTF-8 or empty user … gets
/// the same 407").
///
/// Lenient where the code is, on purpose: blanks (SP, HTAB) around the
/// value and between scheme and token are skipped, as a value may reach the
/// proxy with them (hyper keeps inner ones) and nothing is gained by a 407.
fn model(header: &[u8]) -> Option<(String, String)> {
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = header.iter().position(|b| !blank(b))?;
    let end = header.iter().rposition(|b| !blank(b))? + 1;
    let value = &header[start..end];
    let space = value.iter().position(|&b| b == b' ')?;
    if !value[..space].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let token = &value[space..];
    let token = &token[token.iter().position(|b| !blank(b))?..];
    let decoded = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

fn parsed(header: &[u8]) -> Option<(String, String)> {
    Credentials::parse_basic(header).map(|c| (c.user, c.password))
}

/// A user-id as RFC 7617 allows it: no colon, not empty; Unicode and
/// blanks included.
fn user() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._@\\-é中]{1,12}"
}

fn password() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 :._@%\\-é中\t]{0,16}"
}

/// Scheme spellings, blanks and padding a client might send, and ones it
/// should not.
fn scheme() -> impl Strategy<Value = &'static str> {
    select(vec!["Basic", "basic", "BASIC", "bAsIc", "Basic ", "Basic\t", "Bearer", "Digest", "Basi", "Basicx", ""])
}

fn gap() -> impl Strategy<Value = &'static str> {
    select(vec![" ", "  ", " \t", "\t", "", " \u{a0}", "\u{3000}"])
}

fn around() -> impl Strategy<Value = &'static str> {
    select(vec!["", " ", "\t", "  \t", "\u{85}", "\u{3000}", "\u{feff}", "\r", "\0", ","])
}

/// How the base64 token is written: canonical, unpadded, URL-safe, with
/// a stray or non-canonical character.
fn token(text: &[u8], how: u8) -> String {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
    match how % 6 {
        0 | 1 => STANDARD.encode(text),
        2 => STANDARD_NO_PAD.encode(text),
        3 => URL_SAFE.encode(text),
        4 => format!("{}=", STANDARD.encode(text)),
        _ => {
            let mut t = STANDARD.encode(text);
            t.insert(t.len() / 2, ' ');
            t
        }
    }
}

/// The `user:password` text inside the token, sometimes not as Basic wants
/// it: no colon, an empty user, bytes that are not UTF-8.
fn inner() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (user(), password()).prop_map(|(u, p)| format!("{u}:{p}").into_bytes()),
        1 => user().prop_map(String::into_bytes),
        1 => password().prop_map(|p| format!(":{p}").into_bytes()),
        1 => (user(), vec(any::<u8>(), 0..6)).prop_map(|(u, junk)| [u.as_bytes(), b":", &junk].concat()),
        1 => vec(any::<u8>(), 0..12),
    ]
}

/// A header value near the well-formed ones.
fn near_header() -> impl Strategy<Value = Vec<u8>> {
    (around(), scheme(), gap(), inner(), any::<u8>(), around()).prop_map(|(pre, scheme, gap, inner, how, post)| {
        format!("{pre}{scheme}{gap}{}{post}", token(&inner, how)).into_bytes()
    })
}

/// A password table (one htpasswd file) over a few users.
type Table = Vec<(String, usize)>;

/// Passwords the properties use, with one bcrypt hash each (two for the
/// first: the same password under a new hash, as after `htpasswd -B` again).
/// Two share their first 72 bytes: bcrypt ignores what follows (as Apache
/// does), which the model says.
fn passwords() -> &'static [String] {
    static PASSWORDS: OnceLock<Vec<String>> = OnceLock::new();
    PASSWORDS.get_or_init(|| {
        let long = "L".repeat(72);
        ["secret", "Secret", "sec:ret", "", &format!("{long}1"), &format!("{long}2"), "hunter2"]
            .map(str::to_owned)
            .to_vec()
    })
}

/// bcrypt hashes (cost 4): index `i` hashes `passwords()[i]`; the last one
/// hashes `passwords()[0]` again with another salt.
fn hashes() -> &'static [String] {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        let mut hashes: Vec<String> = passwords().iter().map(|p| bcrypt::hash(p, 4).unwrap()).collect();
        hashes.push(bcrypt::hash(&passwords()[0], 4).unwrap());
        hashes
    })
}

fn password_of(hash: usize) -> &'static str {
    &passwords()[if hash == passwords().len() { 0 } else { hash }]
}

/// Whether bcrypt takes `given` for `stored`: equal after truncation to
/// 72 bytes (bcrypt's key length).
fn bcrypt_equal(given: &str, stored: &str) -> bool {
    let cut = |s: &str| s.as_bytes()[..s.len().min(72)].to_vec();
    cut(given) == cut(stored)
}

const USERS: [&str; 4] = ["alice", "bob", "Alice", "alice2"];

/// One htpasswd table: some of the users, each with one of the hashes.
fn table() -> impl Strategy<Value = Table> {
    vec((select(USERS.to_vec()), 0..=passwords().len()), 0..4).prop_map(|entries| {
        let mut table: Table = Vec::new();
        for (user, hash) in entries {
            if !table.iter().any(|(u, _)| u == user) {
                table.push((user.to_owned(), hash));
            }
        }
        table
    })
}

#[derive(Debug, Clone)]
enum Step {
    /// A request with these credentials (indexes into USERS, passwords()).
    Try(usize, usize),
    /// The htpasswd file is reloaded with this table.
    Reload(Table),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..USERS.len(), 0..passwords().len()).prop_map(|(u, p)| Step::Try(u, p)),
        1 => table().prop_map(Step::Reload),
    ]
}

fn identity(table: &Table) -> IdentityConfig {
    IdentityConfig {
        auth: AuthMode::Basic,
        users: table.iter().map(|(user, hash)| (user.clone(), Secret(hashes()[*hash].clone()))).collect(),
        realm: "socialgate".into(),
        auth_exempt_networks: Vec::new(),
    }
}

fn header(user: &str, password: &str) -> Vec<u8> {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes at all: no panic, and the model's answer.
    #[test]
    fn arbitrary_header_bytes_are_decoded_as_rfc_7617_says(header in vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(parsed(&header), model(&header));
    }

    /// Headers close to well-formed ones (scheme spelling, blanks, token
    /// encodings, what the token holds): the model's answer.
    #[test]
    fn headers_near_basic_are_decoded_as_rfc_7617_says(header in near_header()) {
        prop_assert_eq!(parsed(&header), model(&header), "{:?}", String::from_utf8_lossy(&header));
    }

    /// What a client encodes comes back as it was written: the first colon
    /// ends the user-id, the password keeps the rest.
    #[test]
    fn well_formed_credentials_come_back_as_written(user in user(), password in password()) {
        let header = header(&user, &password);
        prop_assert_eq!(parsed(&header), Some((user, password)));
    }

    /// A run of attempts from always-new clients (so the failure limit never
    /// answers) across htpasswd reloads: each gets exactly what the table in
    /// force says, whatever was verified and cached before, and a repeated
    /// attempt costs no bcrypt run.
    #[test]
    fn a_cached_answer_never_outlives_its_user_password_or_hash(first in table(), steps in vec(step(), 1..12)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let auth = Authenticator::default();
        let mut table = first;
        let mut config = identity(&table);
        let mut seen = std::collections::HashSet::new();
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Reload(next) => {
                    table = next;
                    config = identity(&table);
                }
                Step::Try(u, p) => {
                    let (user, password) = (USERS[u], &passwords()[p]);
                    let stored = table.iter().find(|(name, _)| name == user).map(|(_, hash)| *hash);
                    let expected = match stored {
                        Some(hash) if bcrypt_equal(password, password_of(hash)) => AuthOutcome::User(user.to_owned()),
                        _ => AuthOutcome::Invalid,
                    };
                    let client = IpAddr::from([127, 1, (i >> 8) as u8, i as u8]);
                    let before = auth.verifications();
                    let got = runtime.block_on(auth.authenticate(&config, client, Some(&header(user, password))));
                    prop_assert_eq!(&got, &expected, "{} with password #{} under {:?}", user, p, table);
                    // The same credentials against the same stored hash again: answered from the cache.
                    let again = (user, p, stored);
                    if !seen.insert(again) {
                        prop_assert_eq!(auth.verifications(), before, "{:?} was verified twice", again);
                    }
                }
            }
        }
    }
}
