//! Comment stripping and tokenizing for the assembler. Works on `char` vectors so that
//! columns (1-based, one per character) survive comment removal.

use super::AsmError;

/// One token of a source line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    /// A name: register, mnemonic, label (may contain `.`, `$` and the inline-asm `%=`).
    Ident(String),
    /// An unsigned number (decimal or `0x` hex); signs are separate tokens.
    Num(u64),
    /// An inline-asm operand reference `%[name]`.
    Subst(String),
    /// An operator or punctuation.
    Punct(&'static str),
}

/// A token and the 1-based column where it starts.
#[derive(Clone, Debug)]
pub(super) struct Token {
    pub tok: Tok,
    pub col: usize,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(n) => format!("`{n}`"),
            Tok::Subst(s) => format!("`%[{s}]`"),
            Tok::Punct(p) => format!("`{p}`"),
        }
    }
}

const PUNCTS: &[&str] = &[
    "<<=", ">>=", "+=", "-=", "*=", "/=", "|=", "&=", "%=", "^=", "==", "!=", ">=", "<=", ">", "<", "=", "(",
    ")", "[", "]", "*", ",", "+", "-", ":", "#", "&", ";",
];
const SIGNED_PUNCTS: &[&str] = &["s>>=", "s>=", "s<=", "s/=", "s%=", "s>", "s<"];

/// Splits `text` into lines with comments blanked out (`//`, `/* */` across lines, `#` at the
/// start of a line or after whitespace) and a trailing `\` (C string continuation) removed.
pub(super) fn strip_comments(text: &str) -> Result<Vec<Vec<char>>, AsmError> {
    let mut out = Vec::new();
    let mut block_start: Option<(usize, usize)> = None;
    for (ln, raw) in text.split('\n').enumerate() {
        let mut line: Vec<char> = raw.strip_suffix('\r').unwrap_or(raw).chars().collect();
        let mut i = 0;
        while i < line.len() {
            if block_start.is_some() {
                if line[i] == '*' && line.get(i + 1) == Some(&'/') {
                    line[i] = ' ';
                    line[i + 1] = ' ';
                    i += 2;
                    block_start = None;
                } else {
                    line[i] = ' ';
                    i += 1;
                }
                continue;
            }
            let c = line[i];
            let next = line.get(i + 1).copied();
            if c == '/' && next == Some('*') {
                block_start = Some((ln + 1, i + 1));
                line[i] = ' ';
                line[i + 1] = ' ';
                i += 2;
            } else if (c == '/' && next == Some('/')) || (c == '#' && (i == 0 || line[i - 1].is_whitespace()))
            {
                for ch in line.iter_mut().skip(i) {
                    *ch = ' ';
                }
                break;
            } else {
                i += 1;
            }
        }
        if let Some(last) = line.iter().rposition(|c| !c.is_whitespace()) {
            if line[last] == '\\' {
                line[last] = ' ';
            }
        }
        out.push(line);
    }
    if let Some((line, column)) = block_start {
        return Err(AsmError { line, column, message: "unterminated `/*` comment".into() });
    }
    Ok(out)
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '.'
}

fn is_ident_cont(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'
}

/// True for `r0`..`r15` and `w0`..`w15` style names (any digits).
pub(super) fn looks_like_reg(s: &str) -> bool {
    let mut it = s.chars();
    matches!(it.next(), Some('r' | 'w')) && s.len() > 1 && it.all(|c| c.is_ascii_digit())
}

fn starts_with(line: &[char], i: usize, p: &str) -> bool {
    p.chars().enumerate().all(|(k, pc)| line.get(i + k) == Some(&pc))
}

/// Tokenizes one comment-free line (`line_no` is 1-based, for errors).
pub(super) fn tokenize(line: &[char], line_no: usize) -> Result<Vec<Token>, AsmError> {
    let err = |col: usize, message: String| AsmError { line: line_no, column: col, message };
    let mut toks = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == 's' && matches!(line.get(i + 1), Some('>' | '<' | '/' | '%')) {
            if let Some(p) = SIGNED_PUNCTS.iter().find(|p| starts_with(line, i, p)) {
                toks.push(Token { tok: Tok::Punct(p), col });
                i += p.len();
                continue;
            }
        }
        if is_ident_start(c) {
            let mut s = String::new();
            loop {
                while i < line.len() && is_ident_cont(line[i]) {
                    s.push(line[i]);
                    i += 1;
                }
                if !looks_like_reg(&s) && starts_with(line, i, "%=") {
                    s.push_str("%=");
                    i += 2;
                    continue;
                }
                if s == "kernel" && starts_with(line, i, "-function") {
                    s.push_str("-function");
                    i += "-function".len();
                }
                break;
            }
            toks.push(Token { tok: Tok::Ident(s), col });
            continue;
        }
        if c.is_ascii_digit() {
            let hex = c == '0' && matches!(line.get(i + 1), Some('x' | 'X'));
            let start = if hex { i + 2 } else { i };
            let mut j = start;
            while j < line.len() && (if hex { line[j].is_ascii_hexdigit() } else { line[j].is_ascii_digit() })
            {
                j += 1;
            }
            if j < line.len() && is_ident_cont(line[j]) {
                return Err(err(col, format!("malformed number (unexpected `{}`)", line[j])));
            }
            let digits: String = line[start..j].iter().collect();
            if digits.is_empty() {
                return Err(err(col, "expected hex digits after `0x`".into()));
            }
            let v = u64::from_str_radix(&digits, if hex { 16 } else { 10 }).map_err(|_| {
                err(
                    col,
                    format!("number `{}` does not fit in 64 bits", &line[i..j].iter().collect::<String>()),
                )
            })?;
            toks.push(Token { tok: Tok::Num(v), col });
            i = j;
            continue;
        }
        if c == '%' && line.get(i + 1) == Some(&'[') {
            let close = line[i..].iter().position(|&c| c == ']').map(|p| p + i);
            let Some(close) = close else {
                return Err(err(col, "unterminated `%[`".into()));
            };
            let name: String = line[i + 2..close].iter().collect::<String>().trim().to_string();
            if name.is_empty()
                || !name.chars().next().is_some_and(is_ident_start)
                || !name.chars().all(is_ident_cont)
            {
                return Err(err(col, format!("expected a name inside `%[...]`, found `{name}`")));
            }
            toks.push(Token { tok: Tok::Subst(name), col });
            i = close + 1;
            continue;
        }
        if let Some(p) = PUNCTS.iter().find(|p| starts_with(line, i, p)) {
            toks.push(Token { tok: Tok::Punct(p), col });
            i += p.len();
            continue;
        }
        return Err(err(col, format!("unexpected character `{c}`")));
    }
    Ok(toks)
}
