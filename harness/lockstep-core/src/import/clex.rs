//! Just enough C for the selftest sources: blanking comments and preprocessor lines, tokens,
//! string literals, and the top-level items (struct/map/variable declarations, function
//! definitions) of a file.

use std::collections::BTreeMap;

/// An error evaluating a type or an expression: what could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CError(pub String);

/// Tokens back to text (for messages).
pub fn show(toks: &[Tok]) -> String {
    let parts: Vec<String> = toks
        .iter()
        .map(|t| match t {
            Tok::Ident(s) | Tok::Num(s) | Tok::Punct(s) => s.clone(),
            Tok::Str(s) => format!("{s:?}"),
            Tok::Char(c) => format!("'{}'", char::from_u32(*c as u32).unwrap_or('?')),
        })
        .collect();
    parts.join(" ")
}

/// A C source with comments and preprocessor lines replaced by spaces (byte offsets and line
/// numbers unchanged), and the object-like `#define NAME VALUE` macros it defines.
#[derive(Clone, Debug)]
pub struct CSource {
    pub clean: String,
    /// `#define NAME VALUE` without parameters; the value with comments removed.
    pub defines: BTreeMap<String, String>,
    line_starts: Vec<usize>,
}

impl CSource {
    /// Blanks comments and directives of `src`.
    pub fn new(src: &str) -> CSource {
        let b = src.as_bytes();
        let mut out = b.to_vec();
        let mut defines = BTreeMap::new();
        let mut i = 0;
        let mut line_start = true;
        let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
            for c in &mut out[from..to] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        };
        while i < b.len() {
            let c = b[i];
            if line_start && c == b'#' {
                // A directive: to the end of the line, with backslash continuations.
                let start = i;
                let mut j = i;
                while j < b.len() && !(b[j] == b'\n' && (j == 0 || b[j - 1] != b'\\')) {
                    j += 1;
                }
                let text = strip_comments(&src[start..j]).replace("\\\n", " ");
                if let Some((name, value)) = parse_define(&text) {
                    defines.insert(name, value);
                }
                blank(&mut out, start, j);
                i = j;
                continue;
            }
            match c {
                b'\n' => {
                    line_start = true;
                    i += 1;
                    continue;
                }
                b' ' | b'\t' | b'\r' => {
                    i += 1;
                    continue;
                }
                _ => line_start = false,
            }
            if c == b'/' && b.get(i + 1) == Some(&b'/') {
                let j = src[i..].find('\n').map_or(b.len(), |k| i + k);
                blank(&mut out, i, j);
                i = j;
            } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                let j = src[i + 2..].find("*/").map_or(b.len(), |k| i + 2 + k + 2);
                blank(&mut out, i, j);
                i = j;
            } else if c == b'"' || c == b'\'' {
                i = skip_quoted(b, i);
            } else {
                i += 1;
            }
        }
        let clean = String::from_utf8(out).expect("only ASCII bytes were replaced");
        let mut line_starts = vec![0];
        line_starts.extend(clean.match_indices('\n').map(|(k, _)| k + 1));
        CSource { clean, defines, line_starts }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }
}

/// The index just past the string or char literal starting at `i`.
fn skip_quoted(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        if b[j] == b'\\' {
            j += 1;
        }
        j += 1;
    }
    (j + 1).min(b.len())
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i + 2..].find("*/").map_or("", |j| &rest[i + 2 + j + 2..]);
    }
    out.push_str(rest);
    match out.find("//") {
        Some(i) => out[..i].to_string(),
        None => out,
    }
}

fn parse_define(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start().strip_prefix("define")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let rest = rest.trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    let (name, value) = rest.split_at(end);
    if name.is_empty() || value.starts_with('(') {
        return None;
    }
    Some((name.to_string(), value.trim().to_string()))
}

/// A C token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    /// A number as written (suffixes included).
    Num(String),
    /// A string literal, decoded.
    Str(String),
    /// A character literal's value.
    Char(i64),
    /// Punctuation: one of `<< >> <= >= == != && || ->` or a single character.
    Punct(String),
}

impl Tok {
    /// Whether this is the punctuation `p`.
    pub fn is(&self, p: &str) -> bool {
        matches!(self, Tok::Punct(q) if q == p)
    }
    /// The identifier, if this is one.
    pub fn ident(&self) -> Option<&str> {
        match self {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }
}

/// Decodes the body of a C string literal. A backslash-newline (a line splice) becomes a
/// newline so that the selftests' one-statement-per-line asm keeps its lines.
pub fn decode_string(body: &str) -> String {
    let mut out = String::new();
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') | Some('\n') => out.push('\n'),
            Some('\r') => {
                if it.peek() == Some(&'\n') {
                    it.next();
                }
                out.push('\n');
            }
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// Tokenizes `s` (comments must already be blanked). Adjacent string literals are joined.
pub fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() || c == b'\\' {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j =
                i + s[i..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).unwrap_or(s.len() - i);
            toks.push(Tok::Ident(s[i..j].to_string()));
            i = j;
        } else if c.is_ascii_digit() {
            let j =
                i + s[i..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.')).unwrap_or(s.len() - i);
            toks.push(Tok::Num(s[i..j].to_string()));
            i = j;
        } else if c == b'"' {
            let j = skip_quoted(b, i);
            let body = decode_string(&s[i + 1..j.saturating_sub(1).max(i + 1)]);
            if let Some(Tok::Str(prev)) = toks.last_mut() {
                prev.push_str(&body);
            } else {
                toks.push(Tok::Str(body));
            }
            i = j;
        } else if c == b'\'' {
            let j = skip_quoted(b, i);
            let body = decode_string(&s[i + 1..j.saturating_sub(1).max(i + 1)]);
            toks.push(Tok::Char(body.chars().next().map_or(0, |ch| ch as i64)));
            i = j;
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            if ["<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "->"].contains(&two) {
                toks.push(Tok::Punct(two.to_string()));
                i += 2;
            } else {
                toks.push(Tok::Punct((c as char).to_string()));
                i += 1;
            }
        }
    }
    toks
}

/// Splits tokens at top-level commas (outside parentheses, brackets and braces).
pub fn split_commas(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut out = vec![Vec::new()];
    let mut depth = 0i32;
    for t in toks {
        match t {
            Tok::Punct(p) if p == "(" || p == "[" || p == "{" => depth += 1,
            Tok::Punct(p) if p == ")" || p == "]" || p == "}" => depth -= 1,
            Tok::Punct(p) if p == "," && depth == 0 => {
                out.push(Vec::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().expect("never empty").push(t.clone());
    }
    if out.len() == 1 && out[0].is_empty() {
        out.clear();
    }
    out
}

/// The index of the token closing the bracket opened at `open` (`(`, `[` or `{`).
pub fn matching(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Punct(p) if p == "(" || p == "[" || p == "{" => depth += 1,
            Tok::Punct(p) if p == ")" || p == "]" || p == "}" => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// A top-level item of a C file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Byte range of the whole item in the source.
    pub start: usize,
    pub end: usize,
    /// For a function definition: the byte range of its body, inside the braces.
    pub body: Option<(usize, usize)>,
}

/// Splits the cleaned source into top-level items: declarations end at a `;` outside brackets,
/// a function definition at the `}` closing its body (its head, before the body, ends in `)`).
pub fn items(src: &CSource) -> Vec<Item> {
    let b = src.clean.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    let mut depth = 0i32;
    let mut first_brace: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        if start.is_none() && !c.is_ascii_whitespace() {
            start = Some(i);
            first_brace = None;
        }
        match c {
            b'"' | b'\'' => {
                i = skip_quoted(b, i);
                continue;
            }
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' => {
                if depth == 0 && first_brace.is_none() {
                    first_brace = Some(i);
                }
                depth += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    if let (Some(s), Some(fb)) = (start, first_brace) {
                        if src.clean[s..fb].trim_end().ends_with(')') {
                            out.push(Item { start: s, end: i + 1, body: Some((fb + 1, i)) });
                            start = None;
                        }
                    }
                }
            }
            b';' if depth == 0 => {
                if let Some(s) = start {
                    out.push(Item { start: s, end: i + 1, body: None });
                }
                start = None;
            }
            _ => {}
        }
        i += 1;
    }
    out
}
