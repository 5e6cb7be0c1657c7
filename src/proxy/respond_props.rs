//! Property tests for the pages and headers the proxy writes itself: for
//! any string in any field a refusal page shows (host, service, department,
//! rule, `block_page.contact`), the page has exactly the template's tags
//! (checked by a small strict tokenizer), shows each string as text, and
//! stays one well-formed page; `Proxy-Status` is a valid header value and
//! an RFC 8941 item whose `details` sf-string reads back as the rule; the
//! block page served over intercepted TLS is one whole HTTP response.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::html::check::{as_shown, check_well_formed, tags, texts, tokenize, unescape};

/// Pieces that break markup, quoting, headers or terminals, and some
/// ordinary text, put together in any order.
fn hostile() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "<",
        ">",
        "&",
        "\"",
        "'",
        "\\",
        "</script>",
        "<script>alert(1)</script>",
        "</style",
        "<!--",
        "-->",
        "&amp;",
        "&#39;",
        "&lt",
        "<a href=\"x\" onclick='y'>",
        "]]>",
        "\r",
        "\n",
        "\r\n",
        "\t",
        "\0",
        "\u{7f}",
        "\u{85}",
        "\u{9b}",
        "\u{202e}",
        "\u{feff}",
        "é",
        "日本",
        " ",
        "=",
        ";",
        ",",
        "services.facebook",
    ];
    vec(
        prop_oneof![
            3 => select(PIECES).prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
            2 => "[a-z0-9.-]{1,6}",
        ],
        0..10,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Every way the proxy refuses a request with a page.
fn refusal() -> impl Strategy<Value = Refusal> {
    use Upstream::*;
    prop_oneof![
        Just(Refusal::Blocked),
        Just(Refusal::ConnectPort),
        Just(Refusal::PrivateDestination),
        Just(Refusal::AuthRequired),
        Just(Refusal::BadRequest("request target is not absolute")),
        Just(Refusal::HeadTooLarge),
        any::<bool>().prop_map(Refusal::ClientBody),
        select(vec![Dns, Refused, Unreachable, ConnectTimeout, ResponseTimeout, Protocol, HeadTooLarge])
            .prop_map(Refusal::Upstream),
    ]
}

#[derive(Debug, Clone)]
struct Fields {
    host: String,
    service: Option<String>,
    department: String,
    rule: String,
    contact: String,
}

impl Fields {
    fn shown(&self) -> Shown<'_> {
        Shown {
            host: &self.host,
            service: self.service.as_deref(),
            department: &self.department,
            rule: &self.rule,
            contact: &self.contact,
        }
    }

    /// The same page's shape with harmless text in every field (an empty
    /// contact stays empty: it leaves its paragraph out).
    fn harmless(&self) -> Fields {
        Fields {
            host: "x".into(),
            service: self.service.as_ref().map(|_| "x".into()),
            department: "x".into(),
            rule: "x".into(),
            contact: if self.contact.is_empty() { String::new() } else { "x".into() },
        }
    }
}

fn fields() -> impl Strategy<Value = Fields> {
    (hostile(), proptest::option::of(hostile()), hostile(), hostile(), hostile())
        .prop_map(|(host, service, department, rule, contact)| Fields { host, service, department, rule, contact })
}

/// The parts of `socialgate; error=<token>; details="<sf-string>"` as an
/// RFC 8941 list member: the item's token and its parameters, strings
/// unescaped; an error names the first byte outside the grammar.
fn parse_sf_item(value: &str) -> Result<(String, Vec<(String, String)>), String> {
    let b = value.as_bytes();
    let mut i = 0;
    let token = |i: &mut usize| -> Result<String, String> {
        let start = *i;
        if !b.get(*i).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'*') {
            return Err(format!("no token at {start} in {value:?}"));
        }
        while b.get(*i).is_some_and(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(c)) {
            *i += 1;
        }
        Ok(value[start..*i].to_owned())
    };
    let item = token(&mut i)?;
    let mut params = Vec::new();
    while i < b.len() {
        if b[i] != b';' {
            return Err(format!("byte {} at {i} in {value:?}", b[i]));
        }
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        let start = i;
        if !b.get(i).is_some_and(|c| c.is_ascii_lowercase() || *c == b'*') {
            return Err(format!("no key at {i} in {value:?}"));
        }
        while b.get(i).is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(c)) {
            i += 1;
        }
        let key = value[start..i].to_owned();
        if b.get(i) != Some(&b'=') {
            params.push((key, "?1".into()));
            continue;
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut s = String::new();
            loop {
                match b.get(i) {
                    None => return Err(format!("unterminated string in {value:?}")),
                    Some(b'"') => break,
                    Some(b'\\') if matches!(b.get(i + 1), Some(b'"' | b'\\')) => {
                        s.push(char::from(b[i + 1]));
                        i += 2;
                    }
                    Some(&c) if (0x20..=0x7e).contains(&c) && c != b'\\' => {
                        s.push(char::from(c));
                        i += 1;
                    }
                    Some(c) => return Err(format!("byte {c:#x} at {i} in an sf-string: {value:?}")),
                }
            }
            i += 1;
            params.push((key, s));
        } else {
            params.push((key, token(&mut i)?));
        }
    }
    Ok((item, params))
}

/// What `details` carries for a rule: an sf-string holds printable ASCII
/// only (RFC 8941 3.3.3), so control characters are left out and any
/// other character outside it is written `?` (rules are built from
/// ASCII-only names today; this keeps the header parseable whatever a
/// future rule name holds).
fn details_for(rule: &str) -> String {
    rule.chars().filter(|c| !c.is_control()).map(|c| if c.is_ascii() { c } else { '?' }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For any strings in any field, every refusal page has the template's
    /// tags and nothing else, shows each string as its text, and is one
    /// well-formed page.
    #[test]
    fn refusal_pages_show_any_string_as_text_and_keep_their_shape(fields in fields(), refusal in refusal()) {
        let page = page(&fields.shown(), &refusal);
        let tokens = tokenize(&page).map_err(|e| TestCaseError::fail(format!("{e}\n{page}")))?;
        check_well_formed(&tokens).map_err(|e| TestCaseError::fail(format!("{e}\n{page}")))?;
        prop_assert!(!page.contains("</script") && !page.contains("</style") && !page.contains("<!--"), "{page}");
        let harmless = fields.harmless();
        let expected = tokenize(&super::page(&harmless.shown(), &refusal)).unwrap();
        prop_assert_eq!(tags(&tokens), tags(&expected), "{}", page);

        let texts = texts(&tokens);
        // An empty field leaves no text of its own between its tags.
        let has = |text: String| text.is_empty() || texts.contains(&text.as_str());
        prop_assert!(has(refusal.summary().to_owned()), "title: {page}");
        match refusal {
            Refusal::Blocked => {
                prop_assert!(has(as_shown(&fields.host)), "host: {page}");
                let service = fields.service.as_deref().unwrap_or("(none)");
                prop_assert!(has(format!("Service: {}", as_shown(service))), "service: {page}");
                prop_assert!(has(format!("Department: {}", as_shown(&fields.department))), "department: {page}");
                prop_assert!(has(format!("Reason: {}", as_shown(&fields.rule))), "rule: {page}");
                if !fields.contact.is_empty() {
                    let contact = format!("If you need access, contact {}.", as_shown(&fields.contact));
                    prop_assert!(has(contact), "contact: {page}");
                }
            }
            Refusal::BadRequest(_) | Refusal::AuthRequired => {}
            _ => prop_assert!(has(format!("{} ({}).", refusal.summary(), as_shown(&fields.host))), "host: {page}"),
        }
    }

    /// `Proxy-Status` for any rule is a valid header value and an RFC 8941
    /// item `socialgate` with `error` and a `details` sf-string that reads
    /// back as the rule.
    #[test]
    fn proxy_status_is_a_structured_field_for_any_rule(rule in hostile(), error in select(vec![
        "http_request_denied", "dns_error", "http_request_error", "connection_limit_reached",
    ])) {
        let value = proxy_status(error, &rule);
        prop_assert!(HeaderValue::from_str(&value).is_ok(), "{value:?}");
        let (item, params) = parse_sf_item(&value).map_err(TestCaseError::fail)?;
        prop_assert_eq!(item, "socialgate");
        prop_assert_eq!(params, vec![("error".to_owned(), error.to_owned()), ("details".to_owned(), details_for(&rule))]);
    }

    /// The block page over intercepted TLS is one whole HTTP/1.1 response
    /// whatever the fields hold: every header value valid, `Proxy-Status`
    /// structured, `Content-Length` the body's length, the body the page.
    #[test]
    fn the_intercepted_block_page_is_one_whole_response(fields in fields()) {
        let bytes = block_page_response(&fields.shown());
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = response.parse(&bytes).unwrap() else {
            return Err(TestCaseError::fail("incomplete head"));
        };
        prop_assert_eq!(response.code, Some(403));
        let mut length = None;
        for header in response.headers.iter() {
            prop_assert!(HeaderValue::from_bytes(header.value).is_ok(), "{header:?}");
            let value = std::str::from_utf8(header.value).unwrap();
            match header.name {
                "Content-Length" => length = value.parse::<usize>().ok(),
                "Proxy-Status" => {
                    let (_, params) = parse_sf_item(value).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(&params[1].1, &details_for(&fields.rule));
                }
                _ => {}
            }
        }
        prop_assert_eq!(length, Some(bytes.len() - head));
        let body = page(&fields.shown(), &Refusal::Blocked);
        prop_assert_eq!(&bytes[head..], body.as_bytes());
    }

    /// The `Proxy-Authenticate` challenge for any realm is a valid header
    /// value whose realm is one quoted-string (RFC 9110 5.6.4) reading back
    /// as the realm less its control characters (config refuses quotes and
    /// control characters in `realm`; this holds whatever it lets through).
    #[test]
    fn the_basic_challenge_quotes_any_realm(realm in hostile()) {
        let value = basic_challenge(&realm).expect("a header value");
        let text = value.to_str().map(str::to_owned).unwrap_or_else(|_| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let quoted = text.strip_prefix("Basic realm=\"").and_then(|q| q.strip_suffix('"')).expect("one quoted realm");
        let mut back = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => back.push(chars.next().expect("an escaped character")),
                '"' => return Err(TestCaseError::fail(format!("unescaped quote in {text:?}"))),
                c => back.push(c),
            }
        }
        prop_assert_eq!(back, realm.chars().filter(|c| !c.is_control()).collect::<String>());
    }

    /// `html::escape` leaves no character that starts or ends markup or an
    /// attribute, and reads back as the text (controls as U+FFFD).
    #[test]
    fn escaped_text_reads_back_and_holds_no_markup(s in hostile()) {
        let escaped = html_escape(&s);
        prop_assert!(!escaped.contains(['<', '>', '"', '\'']), "{escaped:?}");
        prop_assert_eq!(unescape(&escaped).map_err(TestCaseError::fail)?, as_shown(&s));
    }
}
