//! `uri.parse` and `uri.is_valid`, as OPA v1.20.2 defines them over Go's `net/url.Parse`
//! (Go 1.26, as OPA is built: strict colons in http(s) hosts). No crate parses as Go does
//! (the `url` crate follows WHATWG and normalises), so this follows Go's `url.go` step by
//! step, for the parts OPA reports.

use std::net::Ipv6Addr;

use regorus::Value;

use super::{string, Builtin};

pub const BUILTINS: &[Builtin] = &[("uri.parse", 1, parse_builtin), ("uri.is_valid", 1, is_valid)];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

/// Go's `shouldEscape` (its `encoding_table.go`).
fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if matches!(mode, Mode::Host | Mode::Zone)
        && matches!(
            c,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'[' | b']' | b'<' | b'>' | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::Fragment => false,
                Mode::Host | Mode::Zone => true,
            };
        }
        _ => {}
    }
    !(mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*'))
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Go's `unescape` (`+` stays `+`: no mode here is a query component).
fn unescape(s: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let (hi, lo) = (unhex(*s.get(i + 1)?)?, unhex(*s.get(i + 2)?)?);
                let v = hi << 4 | lo;
                let is_25 = &s[i..i + 3] == b"%25";
                if mode == Mode::Host && hi < 8 && !is_25 {
                    return None;
                }
                if mode == Mode::Zone && !is_25 && v != b' ' && should_escape(v, Mode::Host) {
                    return None;
                }
                out.push(v);
                i += 3;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode) {
                    return None;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Go's `escape` (as `setPath` and `setFragment` compare with it).
fn escape(s: &[u8], mode: Mode) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &c in s {
        if should_escape(c, mode) {
            out.extend_from_slice(format!("%{c:02X}").as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

fn valid_optional_port(port: &[u8]) -> bool {
    port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit))
}

fn find(s: &[u8], c: u8) -> Option<usize> {
    s.iter().position(|b| *b == c)
}

fn rfind(s: &[u8], c: u8) -> Option<usize> {
    s.iter().rposition(|b| *b == c)
}

/// What OPA reads of a parsed URL.
#[derive(Default)]
struct Url {
    scheme: String,
    host: Vec<u8>,
    path: Vec<u8>,
    raw_path: Vec<u8>,
    raw_query: Vec<u8>,
    fragment: Vec<u8>,
}

fn scheme(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return None,
            b':' => return Some((&raw[..i], &raw[i + 1..])),
            _ => return Some((b"", raw)),
        }
    }
    Some((b"", raw))
}

fn parse_host(scheme: &str, host: &[u8]) -> Option<Vec<u8>> {
    match rfind(host, b'[') {
        Some(i) if i > 0 => return None,
        Some(_) => {
            let close = rfind(host, b']')?;
            let colon_port = &host[close + 1..];
            if !valid_optional_port(colon_port) {
                return None;
            }
            let colon_port = unescape(colon_port, Mode::Host)?;
            let hostname = &host[1..close];
            let zone = hostname.windows(3).position(|w| w == b"%25");
            let unescaped = match zone {
                Some(z) => [unescape(&hostname[..z], Mode::Host)?, unescape(&hostname[z..], Mode::Zone)?].concat(),
                None => unescape(hostname, Mode::Host)?,
            };
            // netip.ParseAddr: an IPv6 address (an IPv4 one is refused here), with a zone.
            let text = std::str::from_utf8(&unescaped).ok()?;
            let (addr, zone) = text.split_once('%').map_or((text, None), |(a, z)| (a, Some(z)));
            if zone == Some("") || addr.parse::<Ipv6Addr>().is_err() {
                return None;
            }
            return Some([b"[".as_slice(), &unescaped, b"]", &colon_port].concat());
        }
        None => {
            if let Some(first) = find(host, b':') {
                let last = rfind(host, b':').unwrap_or(first);
                let i = if last != first && scheme != "http" && scheme != "https" { last } else { first };
                if !valid_optional_port(&host[i..]) {
                    return None;
                }
            }
        }
    }
    unescape(host, Mode::Host)
}

fn valid_userinfo(s: &[u8]) -> bool {
    std::str::from_utf8(s).is_ok_and(|s| s.chars().all(|r| r.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(r)))
}

fn parse_authority(scheme: &str, authority: &[u8]) -> Option<Vec<u8>> {
    let at = rfind(authority, b'@');
    let host = parse_host(scheme, &authority[at.map_or(0, |i| i + 1)..])?;
    if let Some(i) = at {
        let userinfo = &authority[..i];
        if !valid_userinfo(userinfo) {
            return None;
        }
        match find(userinfo, b':') {
            None => {
                unescape(userinfo, Mode::UserPassword)?;
            }
            Some(c) => {
                unescape(&userinfo[..c], Mode::UserPassword)?;
                unescape(&userinfo[c + 1..], Mode::UserPassword)?;
            }
        }
    }
    Some(host)
}

fn parse_without_fragment(raw: &[u8]) -> Option<Url> {
    if raw.iter().any(|b| *b < b' ' || *b == 0x7f) {
        return None;
    }
    let mut url = Url::default();
    if raw == b"*" {
        url.path = b"*".to_vec();
        return Some(url);
    }
    let (scheme, rest) = scheme(raw)?;
    url.scheme = String::from_utf8_lossy(scheme).to_lowercase();
    let mut rest = rest;
    let questions = rest.iter().filter(|b| **b == b'?').count();
    if rest.ends_with(b"?") && questions == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some(q) = find(rest, b'?') {
        url.raw_query = rest[q + 1..].to_vec();
        rest = &rest[..q];
    }
    if !rest.starts_with(b"/") {
        if !url.scheme.is_empty() {
            // Opaque: OPA reports only the scheme (and query, fragment).
            return Some(url);
        }
        let segment = find(rest, b'/').map_or(rest, |i| &rest[..i]);
        if find(segment, b':').is_some() {
            return None;
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with(b"///")) && rest.starts_with(b"//") {
        let authority = &rest[2..];
        let (authority, tail) = find(authority, b'/').map_or((authority, &b""[..]), |i| (&authority[..i], &authority[i..]));
        url.host = parse_authority(&url.scheme, authority)?;
        rest = tail;
    }
    url.path = unescape(rest, Mode::Path)?;
    if escape(&url.path, Mode::Path) != rest {
        url.raw_path = rest.to_vec();
    }
    Some(url)
}

fn parse(raw: &str) -> Option<Url> {
    let raw = raw.as_bytes();
    let (u, frag) = find(raw, b'#').map_or((raw, &b""[..]), |i| (&raw[..i], &raw[i + 1..]));
    let mut url = parse_without_fragment(u)?;
    if !frag.is_empty() {
        url.fragment = unescape(frag, Mode::Fragment)?;
    }
    Some(url)
}

/// What `providers.aws.sign_req` reads of a URL (Go's `url.Parse`): the host as written,
/// the path as Go's `URL.EscapedPath` gives it, and the raw query.
pub(super) fn host_path_query(raw: &str) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let url = parse(raw)?;
    // `EscapedPath`: the path as written when it is a valid encoding of the path.
    let valid = |s: &[u8]| {
        s.iter().all(|&c| {
            matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@' | b'[' | b']' | b'%')
                || !should_escape(c, Mode::Path)
        })
    };
    let path = if !url.raw_path.is_empty() && valid(&url.raw_path) && unescape(&url.raw_path, Mode::Path).as_deref() == Some(&url.path[..])
    {
        url.raw_path.clone()
    } else if url.path == b"*" {
        url.path.clone()
    } else {
        escape(&url.path, Mode::Path)
    };
    Some((url.host, path, url.raw_query))
}

/// Go's `splitHostPort`: the hostname (without IPv6 brackets) and a numeric port.
fn split_host_port(host: &[u8]) -> (&[u8], &[u8]) {
    let (mut h, mut port) = (host, &b""[..]);
    if let Some(c) = rfind(host, b':') {
        if valid_optional_port(&host[c..]) {
            (h, port) = (&host[..c], &host[c + 1..]);
        }
    }
    if h.len() >= 2 && h.starts_with(b"[") && h.ends_with(b"]") {
        h = &h[1..h.len() - 1];
    }
    (h, port)
}

fn parse_builtin(a: &[Value]) -> Option<Value> {
    let url = parse(string(&a[0])?)?;
    let text = |b: &[u8]| Value::from(String::from_utf8_lossy(b).into_owned());
    let mut out = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        out.insert(Value::from(k), v);
    };
    if !url.scheme.is_empty() {
        put("scheme", Value::from(url.scheme.clone()));
    }
    let (hostname, port) = split_host_port(&url.host);
    if !hostname.is_empty() {
        put("hostname", text(hostname));
    }
    if !port.is_empty() {
        put("port", text(port));
    }
    if !url.path.is_empty() {
        put("path", text(&url.path));
        put("raw_path", text(if url.raw_path.is_empty() { &url.path } else { &url.raw_path }));
    }
    if !url.raw_query.is_empty() {
        put("raw_query", text(&url.raw_query));
    }
    if !url.fragment.is_empty() {
        put("fragment", text(&url.fragment));
    }
    Some(Value::from(out))
}

fn is_valid(a: &[Value]) -> Option<Value> {
    Some(Value::from(string(&a[0]).is_some_and(|s| !s.is_empty() && parse(s).is_some())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> serde_json::Value {
        serde_json::from_str(&parse_builtin(&[s.into()]).map(|v| v.to_json_str().unwrap()).unwrap_or_else(|| "null".into())).unwrap()
    }

    #[test]
    fn urls_parse_into_the_parts_go_finds() {
        assert_eq!(
            parsed("HTTPS://user:pw@Example.com:8443/a%20b/c?x=1&y#frag%21"),
            serde_json::json!({"scheme": "https", "hostname": "Example.com", "port": "8443", "path": "/a b/c", "raw_path": "/a b/c", "raw_query": "x=1&y", "fragment": "frag!"})
        );
        assert_eq!(
            parsed("http://[::1%25eth0]:80/"),
            serde_json::json!({"scheme": "http", "hostname": "::1%eth0", "port": "80", "path": "/", "raw_path": "/"})
        );
        assert_eq!(parsed("mailto:a@b.c"), serde_json::json!({"scheme": "mailto"}));
        assert_eq!(parsed(""), serde_json::json!({}));
        for bad in ["http://a b.com/", "http://[1.2.3.4]/", "http://h:1:2/", "%zz", "a:b/c:d".trim_start_matches('a'), "http://x/\u{7}"] {
            assert_eq!(parsed(bad), serde_json::Value::Null, "{bad}");
            assert_eq!(is_valid(&[bad.into()]), Some(false.into()), "{bad}");
        }
        assert_eq!(is_valid(&["".into()]), Some(false.into()));
        assert_eq!(parsed("/a%2Fb?q#"), serde_json::json!({"path": "/a/b", "raw_path": "/a%2Fb", "raw_query": "q"}));
        assert_eq!(parsed("ftp://h:1:2/")["port"], "2", "only http(s) hosts are strict about colons");
        assert_eq!(is_valid(&[Value::from(1)]), Some(false.into()));
    }
}
