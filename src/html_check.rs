//! For tests: a small strict tokenizer for the pages socialgate writes, so
//! properties can check that data never became markup. It knows only what
//! the templates write: `<!DOCTYPE html>`, lowercase tags with
//! double-quoted attributes (SVG's `viewBox` and `/>` too), `<style>` raw text, and text
//! holding no `>` and no `&` but the five references `html::escape` writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// One piece of a page: a tag as written, text with its character
/// references read back, or the raw text of a `<style>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Tag(String),
    Text(String),
    Raw(String),
}

/// Splits a page into tags and text, strictly: a `<` must open a tag the
/// templates write, with attribute values in double quotes holding no `"`,
/// `<` or `>`; an error quotes where the page left that grammar.
pub(crate) fn tokenize(page: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = page;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            let end =
                tag_end(after).ok_or_else(|| format!("bad tag at {:?}", rest.chars().take(60).collect::<String>()))?;
            let tag = &rest[..end + 2];
            tokens.push(Token::Tag(tag.to_owned()));
            rest = &after[end + 1..];
            if tag.starts_with("<style") {
                let close = rest.find("</style>").ok_or("unclosed <style>")?;
                tokens.push(Token::Raw(rest[..close].to_owned()));
                rest = &rest[close..];
            }
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            tokens.push(Token::Text(unescape(&rest[..end])?));
            rest = &rest[end..];
        }
    }
    Ok(tokens)
}

/// Where a tag opened by `<` ends (the index of its `>` in `after`).
fn tag_end(after: &str) -> Option<usize> {
    if after.starts_with("!DOCTYPE html>") {
        return Some("!DOCTYPE html".len());
    }
    let bytes = after.as_bytes();
    let closing = bytes.first() == Some(&b'/');
    let mut i = usize::from(closing);
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_lowercase() || bytes[i].is_ascii_digit()) {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    loop {
        match bytes.get(i)? {
            b'>' => return Some(i),
            b'/' if !closing && bytes.get(i + 1) == Some(&b'>') => return Some(i + 1),
            b' ' if !closing => {
                // ` name="value"`
                i += 1;
                let attr = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
                    i += 1;
                }
                if i == attr || bytes.get(i) != Some(&b'=') || bytes.get(i + 1) != Some(&b'"') {
                    return None;
                }
                i += 2;
                while *bytes.get(i)? != b'"' {
                    if matches!(bytes[i], b'<' | b'>') {
                        return None;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => return None,
        }
    }
}

/// Text with its character references read back; anything but the five
/// `html::escape` writes (or a bare `>`) means data escaped the escaping.
pub(crate) fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['&', '>']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (entity, c) = [("&amp;", '&'), ("&lt;", '<'), ("&gt;", '>'), ("&quot;", '"'), ("&#39;", '\'')]
            .into_iter()
            .find(|(entity, _)| rest.starts_with(entity))
            .ok_or_else(|| format!("unescaped markup in text {text:?}"))?;
        out.push(c);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One well-formed page: the doctype, then `<html>` closing last, every
/// element closed in order (`meta` is void, `/>` closes itself), nothing
/// after `</html>` but a line break.
pub(crate) fn check_well_formed(tokens: &[Token]) -> Result<(), String> {
    if tokens.first() != Some(&Token::Tag("<!DOCTYPE html>".into())) {
        return Err("no doctype first".into());
    }
    let mut open: Vec<String> = Vec::new();
    let mut closed_html = false;
    for token in &tokens[1..] {
        match token {
            Token::Tag(tag) if closed_html => return Err(format!("{tag} after </html>")),
            Token::Text(text) | Token::Raw(text) if closed_html && text != "\n" => {
                return Err(format!("{text:?} after </html>"));
            }
            Token::Tag(tag) => {
                let inner = &tag[1..tag.len() - 1];
                let name = inner.trim_start_matches('/').split([' ', '/']).next().unwrap_or_default();
                if inner.starts_with('/') {
                    if open.pop().as_deref() != Some(name) {
                        return Err(format!("{tag} closes what it did not open"));
                    }
                    closed_html = open.is_empty();
                } else if open.is_empty() && name != "html" {
                    return Err(format!("{tag} outside <html>"));
                } else if name != "meta" && !inner.ends_with('/') {
                    open.push(name.to_owned());
                }
            }
            Token::Text(_) | Token::Raw(_) => {}
        }
    }
    if closed_html { Ok(()) } else { Err(format!("unclosed {open:?}")) }
}

/// The tags of a page, in order.
pub(crate) fn tags(tokens: &[Token]) -> Vec<&str> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Tag(tag) => Some(tag.as_str()),
            _ => None,
        })
        .collect()
}

/// The texts of a page, references read back, in order.
pub(crate) fn texts(tokens: &[Token]) -> Vec<&str> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// A string as a page shows it: `html::escape` writes control characters
/// other than line break and tab as U+FFFD (intended: they have no
/// business in a page).
pub(crate) fn as_shown(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '\u{FFFD}' } else { c }).collect()
}
