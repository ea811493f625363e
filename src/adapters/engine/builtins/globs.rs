//! `regex.globs_match`: whether two globs (OPA's regex-like dialect: `.`, `[…]` classes,
//! `*` and `+` flags, `\` escapes) match a common string. A port of the
//! `github.com/yashtewari/glob-intersection` v0.2.0 module OPA v1.20 calls (`NonEmpty`):
//! the same tokenizer, simplification, trimming and intersection walk, so it answers as
//! OPA does, true positives and false negatives alike. A class keeps its characters as
//! ranges (Go expands `[\x00-\u{10ffff}]` into a million runes), and the walk, which Go
//! runs without memo or bound, stops with an error past a step budget or depth.

use regorus::Value;

use super::{string, Builtin};

pub const BUILTINS: &[Builtin] = &[("regex.globs_match", 2, globs_match)];

fn globs_match(a: &[Value]) -> Option<Value> {
    non_empty(string(&a[0])?, string(&a[1])?).ok().map(Value::from)
}

/// The walk's bounds: matches and calls counted, and how deep it recurses.
const MAX_STEPS: u32 = 1 << 20;
const MAX_DEPTH: u32 = 512;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flag {
    None,
    Plus,
    Star,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Char(char),
    Dot,
    /// Sorted, disjoint, non-adjacent inclusive ranges of code points.
    Set(Vec<(u32, u32)>),
}

impl Kind {
    /// Go's `TokenType` order (character, dot, set), which `Match` swaps its operands by.
    fn rank(&self) -> u8 {
        match self {
            Kind::Char(_) => 0,
            Kind::Dot => 1,
            Kind::Set(_) => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: Kind,
    flag: Flag,
}

/// Whether the intersection of the two globs is non-empty (`gintersect.NonEmpty`).
pub(super) fn non_empty(lhs: &str, rhs: &str) -> Result<bool, String> {
    let g1 = simplify(tokenize(&lhs.chars().collect::<Vec<_>>())?);
    let g2 = simplify(tokenize(&rhs.chars().collect::<Vec<_>>())?);
    let Some((g1, g2)) = trim(&g1, &g2) else { return Ok(false) };
    Walk { steps: 0, depth: 0 }.normal(g1, g2)
}

fn invalid(input: &[char], index: usize, message: &str) -> String {
    format!("input:{}, pos:{index}, {message}: the input provided is invalid", input.iter().collect::<String>())
}

/// `nextRune`: the rune at `index` (after a `\`, escaped), and where the next one starts;
/// `Ok(None)` at the end of the input.
fn next_rune(index: usize, input: &[char]) -> Result<Option<(usize, char, bool)>, String> {
    match input.get(index) {
        None => Ok(None),
        Some('\\') => match input.get(index + 1) {
            Some(&r) => Ok(Some((index + 2, r, true))),
            None => Err(invalid(input, index, "input ends with a \\ (escape) character")),
        },
        Some(&r) => Ok(Some((index + 1, r, false))),
    }
}

fn tokenize(input: &[char]) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut index = 0;
    while let Some((next, r, escaped)) = next_rune(index, input)? {
        index = next;
        let kind = match r {
            _ if escaped => Kind::Char(r),
            '.' => Kind::Dot,
            ']' => return Err(invalid(input, index, "set-close ']' with no preceding '['")),
            '[' => {
                let (next, set) = set(index, input)?;
                index = next;
                set
            }
            '+' | '*' => return Err(invalid(input, index, &format!("flag '{r}' must be preceded by a non-flag"))),
            _ => Kind::Char(r),
        };
        // `nextFlag`: an unescaped `+` or `*` right after the token.
        let flag = match next_rune(index, input)? {
            Some((next, '+', false)) => {
                index = next;
                Flag::Plus
            }
            Some((next, '*', false)) => {
                index = next;
                Flag::Star
            }
            _ => Flag::None,
        };
        tokens.push(Token { kind, flag });
    }
    Ok(tokens)
}

/// `nextTokenSet`: the class that starts after a `[` at `index`.
fn set(index: usize, input: &[char]) -> Result<(usize, Kind), String> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut prev: Option<char> = None;
    let mut index = index;
    while let Some((next, r, escaped)) = next_rune(index, input)? {
        index = next;
        match r {
            '-' if !escaped => {
                let Some(from) = prev else {
                    return Err(invalid(input, index, "range character '-' must be preceded by a Unicode character"));
                };
                if index + 1 >= input.len() {
                    return Err(invalid(input, index, "range character '-' must be followed by a Unicode character"));
                }
                let Some((next, to, escaped)) = next_rune(index, input)? else {
                    return Err(invalid(input, index, "range character '-' must be followed by a Unicode character"));
                };
                index = next;
                if !escaped && (to == ']' || to == '-') {
                    return Err(invalid(input, index, "range character '-' cannot be followed by a special symbol"));
                }
                if to < from {
                    return Err(invalid(input, index, &format!("range is out of order: '{to}' comes before '{from}' in Unicode")));
                }
                ranges.push((u32::from(from), u32::from(to)));
                prev = None;
            }
            ']' if !escaped => return Ok((index, Kind::Set(normalise(ranges)))),
            _ => {
                ranges.push((u32::from(r), u32::from(r)));
                prev = Some(r);
            }
        }
    }
    Err(invalid(input, index, "found [ without matching ]"))
}

/// The same set of code points as sorted, merged ranges (so equal sets compare equal).
fn normalise(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        match out.last_mut() {
            Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

/// `Simplify`: neighbouring flagged tokens of equal content become one (`+` wins).
fn simplify(tokens: Vec<Token>) -> Vec<Token> {
    let mut simple: Vec<Token> = Vec::with_capacity(tokens.len());
    for token in tokens {
        if let Some(latest) = simple.last_mut() {
            if token.flag != Flag::None && latest.flag != Flag::None && token.kind == latest.kind {
                if token.flag == Flag::Plus || latest.flag == Flag::Plus {
                    latest.flag = Flag::Plus;
                } else {
                    latest.flag = Flag::Star;
                }
                continue;
            }
        }
        simple.push(token);
    }
    simple
}

/// `Match`: whether two tokens (flags aside) share a character.
fn matches(t1: &Token, t2: &Token) -> bool {
    let (a, b) = if t1.kind.rank() > t2.kind.rank() { (&t2.kind, &t1.kind) } else { (&t1.kind, &t2.kind) };
    match (a, b) {
        (Kind::Char(x), Kind::Char(y)) => x == y,
        (Kind::Char(_) | Kind::Dot, Kind::Dot) | (Kind::Dot, Kind::Set(_)) => true,
        (Kind::Char(c), Kind::Set(s)) => s.iter().any(|&(from, to)| (from..=to).contains(&u32::from(*c))),
        (Kind::Set(x), Kind::Set(y)) => x.iter().any(|&(a, b)| y.iter().any(|&(c, d)| a <= d && c <= b)),
        // The swap above leaves the lower rank first.
        _ => false,
    }
}

/// `trimGlobs`: equal unflagged prefixes and suffixes removed (one token of each kept), or
/// `None` when they do not match.
fn trim<'a>(g1: &'a [Token], g2: &'a [Token]) -> Option<(&'a [Token], &'a [Token])> {
    let mut l = 0;
    while l < g1.len() && l < g2.len() && g1[l].flag == Flag::None && g2[l].flag == Flag::None {
        if !matches(&g1[l], &g2[l]) {
            return None;
        }
        l += 1;
    }
    l = l.saturating_sub(1);
    // Go's signed indices, shifted by one: `r` here is Go's `r + 1`.
    let (mut r1, mut r2) = (g1.len(), g2.len());
    while r1 >= 1 && r1 > l && r2 >= 1 && r2 > l && g1[r1 - 1].flag == Flag::None && g2[r2 - 1].flag == Flag::None {
        if !matches(&g1[r1 - 1], &g2[r2 - 1]) {
            return None;
        }
        r1 -= 1;
        r2 -= 1;
    }
    if r1 < g1.len() {
        r1 += 1;
        r2 += 1;
    }
    Some((&g1[l..r1], &g2[l..r2]))
}

/// The intersection walk (`intersectNormal`, `intersectSpecial`, `intersectPlus`,
/// `intersectStar`), counting its steps and depth.
struct Walk {
    steps: u32,
    depth: u32,
}

impl Walk {
    fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err("regex.globs_match: the globs take too many steps to intersect".into());
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("regex.globs_match: the globs nest too deep to intersect".into());
        }
        self.step()
    }

    /// Runs `f` one nesting level down (bounded by `enter`).
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<bool, String>) -> Result<bool, String> {
        self.enter()?;
        let found = f(self);
        self.depth -= 1;
        found
    }

    fn normal(&mut self, g1: &[Token], g2: &[Token]) -> Result<bool, String> {
        self.nested(|s| s.normal_inner(g1, g2))
    }

    fn normal_inner(&mut self, g1: &[Token], g2: &[Token]) -> Result<bool, String> {
        let mut i = 0;
        while i < g1.len() && i < g2.len() {
            self.step()?;
            if g1[i].flag == Flag::None && g2[i].flag == Flag::None {
                if !matches(&g1[i], &g2[i]) {
                    return Ok(false);
                }
            } else {
                return self.special(&g1[i..], &g2[i..]);
            }
            i += 1;
        }
        Ok(i == g1.len() && i == g2.len())
    }

    fn special(&mut self, g1: &[Token], g2: &[Token]) -> Result<bool, String> {
        let (flagged, other) = if g1[0].flag != Flag::None { (g1, g2) } else { (g2, g1) };
        match flagged[0].flag {
            Flag::Plus => self.plus(flagged, other),
            Flag::Star => self.star(flagged, other),
            Flag::None => Ok(false),
        }
    }

    fn plus(&mut self, plussed: &[Token], other: &[Token]) -> Result<bool, String> {
        if !matches(&plussed[0], &other[0]) {
            return Ok(false);
        }
        if self.star(plussed, &other[1..])? {
            return Ok(true);
        }
        Ok(other[0].flag != Flag::None && self.normal(&plussed[1..], other)?)
    }

    fn star(&mut self, starred: &[Token], other: &[Token]) -> Result<bool, String> {
        self.nested(|s| s.star_inner(starred, other))
    }

    fn star_inner(&mut self, starred: &[Token], other: &[Token]) -> Result<bool, String> {
        let star = &starred[0];
        let next = starred.get(1);
        for (i, t) in other.iter().enumerate() {
            self.step()?;
            match next {
                Some(next) if matches(t, next) => {
                    if self.normal(&starred[1..], &other[i..])? {
                        return Ok(true);
                    }
                    if !matches(t, star) {
                        return Ok(false);
                    }
                }
                _ => {
                    if !matches(t, star) {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(next.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_globs_match_answers_as_opas_glob_intersection_does() {
        // OPA's conformance cases.
        assert_eq!(non_empty("a.a.[0-9]+z", ".b.b2359825792*594823z"), Ok(true));
        assert_eq!(non_empty("[a-z]+", "[0-9]*"), Ok(false));
        assert_eq!(non_empty("b.*", "bar"), Ok(true));
        assert_eq!(non_empty(r"[a-z]+\[[0-9]+\]", r"foo\[1\]"), Ok(true));
        assert_eq!(non_empty(r"[a-z]+\[[0-9]+\]", "foo[\"bar\"]"), Ok(false));
        // The module's own samples.
        assert_eq!(non_empty("abcd", "abcd"), Ok(true));
        assert_eq!(non_empty("a*", "b*"), Ok(false));
        assert_eq!(non_empty("a*b+c", "a+b*c"), Ok(true));
        assert_eq!(non_empty("[a-c]", "[d-f]"), Ok(false));
        assert_eq!(non_empty("", ""), Ok(true));
        assert_eq!(non_empty("", "a*"), Ok(false), "as the module answers");
        assert_eq!(globs_match(&["a+".into(), "aaa".into()]), Some(true.into()));
    }

    #[test]
    fn regex_globs_match_refuses_a_bad_pattern_with_the_modules_message() {
        assert_eq!(
            non_empty("pqrs]", "[a-b]+"),
            Err("input:pqrs], pos:5, set-close ']' with no preceding '[': the input provided is invalid".into())
        );
        assert!(non_empty("*a", "a").is_err());
        assert!(non_empty("[b-a]", "a").is_err());
        assert!(non_empty("[a-]", "a").is_err());
        assert!(non_empty("[abc", "a").is_err());
        assert!(non_empty("a\\", "a").is_err());
        assert_eq!(globs_match(&["pqrs]".into(), "a".into()]), None, "an error is undefined");
        assert_eq!(globs_match(&[Value::from(1), "a".into()]), None);
    }

    #[test]
    fn regex_globs_match_stays_bounded_on_hostile_globs() {
        let wide = non_empty("[\u{0}-\u{10ffff}]", "x");
        assert_eq!(wide, Ok(true), "a class over every code point is a range, not a million runes");
        let started = std::time::Instant::now();
        let stars = "a*b*".repeat(2000);
        let _ = non_empty(&format!("{stars}c"), &format!("{stars}d"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
