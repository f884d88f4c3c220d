//! Integer constant expressions (`offsetof`, `sizeof`, casts, macros, enum constants, the usual
//! operators) as in `__imm_const(...)` and map definitions, evaluated against a [`Scope`] (the
//! definitions of `ctypes::CDefs`, which implements it: this module depends on no type code).

use super::clex::{lex, matching, show, split_commas, CError, Tok};

fn err<T>(s: impl Into<String>) -> Result<T, CError> {
    Err(CError(s.into()))
}

/// Constants the selftests use from headers this importer does not read (limits.h,
/// bpf_misc.h's `__retval` magic values, linux/numa.h).
const BUILTIN_CONSTANTS: &[(&str, i64)] = &[
    ("INT_MIN", i32::MIN as i64),
    ("INT_MAX", i32::MAX as i64),
    ("UINT_MAX", u32::MAX as i64),
    ("LLONG_MIN", i64::MIN),
    ("LLONG_MAX", i64::MAX),
    ("ULLONG_MAX", -1),
    ("_INT_MIN", i32::MIN as i64),
    ("POINTER_VALUE", 0xbadcafe),
    ("TEST_DATA_LEN", 64),
    ("NUMA_NO_NODE", -1),
    ("true", 1),
    ("false", 0),
    ("NULL", 0),
];

/// What an expression needs of the C definitions around it.
pub(super) trait Scope {
    /// The type `toks` name (an error if they name none).
    fn type_info(&self, toks: &[Tok]) -> Result<TypeInfo, CError>;
    /// `offsetof(ty, path)`.
    fn offsetof(&self, ty: &[Tok], path: &[Tok]) -> Result<i64, CError>;
    /// An enum constant's value.
    fn enum_value(&self, name: &str) -> Option<i64>;
    /// An object-like macro's text.
    fn macro_text(&self, name: &str) -> Option<&str>;
}

/// What a cast or `sizeof` needs of a type.
pub(super) struct TypeInfo {
    pub(super) size: u64,
    /// An integer type's size and signedness.
    pub(super) int: Option<(u64, bool)>,
}

pub(super) struct Parser<'a> {
    pub(super) defs: &'a dyn Scope,
    pub(super) toks: &'a [Tok],
    pub(super) pos: usize,
    pub(super) depth: u32,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn binop(t: &Tok) -> Option<(u8, &str)> {
        let Tok::Punct(p) = t else { return None };
        let prec = match p.as_str() {
            "||" => 1,
            "&&" => 2,
            "|" => 3,
            "^" => 4,
            "&" => 5,
            "==" | "!=" => 6,
            "<" | ">" | "<=" | ">=" => 7,
            "<<" | ">>" => 8,
            "+" | "-" => 9,
            "*" | "/" | "%" => 10,
            _ => return None,
        };
        Some((prec, p.as_str()))
    }

    pub(super) fn expr(&mut self, min: u8) -> Result<i64, CError> {
        let mut lhs = self.unary()?;
        while let Some((prec, op)) = self.peek().and_then(Self::binop) {
            if prec <= min {
                break;
            }
            let op = op.to_string();
            self.pos += 1;
            let rhs = self.expr(prec)?;
            lhs = match op.as_str() {
                "||" => ((lhs != 0) || (rhs != 0)) as i64,
                "&&" => ((lhs != 0) && (rhs != 0)) as i64,
                "|" => lhs | rhs,
                "^" => lhs ^ rhs,
                "&" => lhs & rhs,
                "==" => (lhs == rhs) as i64,
                "!=" => (lhs != rhs) as i64,
                "<" => (lhs < rhs) as i64,
                ">" => (lhs > rhs) as i64,
                "<=" => (lhs <= rhs) as i64,
                ">=" => (lhs >= rhs) as i64,
                "<<" => lhs.wrapping_shl(rhs as u32),
                ">>" => lhs.wrapping_shr(rhs as u32),
                "+" => lhs.wrapping_add(rhs),
                "-" => lhs.wrapping_sub(rhs),
                "*" => lhs.wrapping_mul(rhs),
                "/" if rhs != 0 => lhs.wrapping_div(rhs),
                "%" if rhs != 0 => lhs.wrapping_rem(rhs),
                _ => return err("division by zero in a constant expression"),
            };
        }
        Ok(lhs)
    }

    /// Whether the tokens from `self.pos` (just after a `(`) up to `close` name a type.
    fn is_type(&self, from: usize, close: usize) -> bool {
        let t = &self.toks[from..close];
        !t.is_empty()
            && self.defs.type_info(t).is_ok()
            && t[0]
                .ident()
                .is_some_and(|s| self.defs.macro_text(s).is_none() && self.defs.enum_value(s).is_none())
    }

    fn unary(&mut self) -> Result<i64, CError> {
        let Some(t) = self.peek().cloned() else { return err("expression ends early") };
        self.pos += 1;
        match t {
            Tok::Num(n) => parse_number(&n),
            Tok::Char(c) => Ok(c),
            Tok::Punct(p) if p == "-" => Ok(self.unary()?.wrapping_neg()),
            Tok::Punct(p) if p == "+" => self.unary(),
            Tok::Punct(p) if p == "~" => Ok(!self.unary()?),
            Tok::Punct(p) if p == "!" => Ok((self.unary()? == 0) as i64),
            Tok::Punct(p) if p == "(" => {
                let close = matching(self.toks, self.pos - 1)
                    .ok_or_else(|| CError("unbalanced parentheses".into()))?;
                if self.is_type(self.pos, close) {
                    // A cast: truncate to the type's width.
                    let ty = self.defs.type_info(&self.toks[self.pos..close])?;
                    self.pos = close + 1;
                    let v = self.unary()?;
                    return Ok(match ty.int {
                        Some((size, signed)) if size < 8 => {
                            let bits = size * 8;
                            let m = v & ((1i64 << bits) - 1);
                            if signed && m >> (bits - 1) & 1 == 1 {
                                m - (1i64 << bits)
                            } else {
                                m
                            }
                        }
                        _ => v,
                    });
                }
                let v = self.expr(0)?;
                if !self.peek().is_some_and(|t| t.is(")")) {
                    return err("missing `)`");
                }
                self.pos += 1;
                Ok(v)
            }
            Tok::Ident(id) if id == "sizeof" => {
                if !self.peek().is_some_and(|t| t.is("(")) {
                    return err("sizeof without parentheses");
                }
                let close =
                    matching(self.toks, self.pos).ok_or_else(|| CError("unbalanced sizeof".into()))?;
                let ty = self.defs.type_info(&self.toks[self.pos + 1..close])?;
                self.pos = close + 1;
                Ok(ty.size as i64)
            }
            Tok::Ident(id) if id == "offsetof" || id == "__builtin_offsetof" => {
                if !self.peek().is_some_and(|t| t.is("(")) {
                    return err("offsetof without parentheses");
                }
                let close =
                    matching(self.toks, self.pos).ok_or_else(|| CError("unbalanced offsetof".into()))?;
                let args = split_commas(&self.toks[self.pos + 1..close]);
                if args.len() != 2 {
                    return err("offsetof takes two arguments");
                }
                self.pos = close + 1;
                self.defs.offsetof(&args[0], &args[1])
            }
            Tok::Ident(id) => {
                if let Some(v) = self.defs.enum_value(&id) {
                    return Ok(v);
                }
                if let Some(body) = self.defs.macro_text(&id) {
                    if self.depth > 16 {
                        return err(format!("macro `{id}` expands too deeply"));
                    }
                    let toks = lex(body);
                    let mut p = Parser { defs: self.defs, toks: &toks, pos: 0, depth: self.depth + 1 };
                    let v = p.expr(0)?;
                    if p.pos != toks.len() {
                        return err(format!("cannot evaluate macro `{id}` = `{body}`"));
                    }
                    return Ok(v);
                }
                if let Some((_, v)) = BUILTIN_CONSTANTS.iter().find(|(n, _)| *n == id) {
                    return Ok(*v);
                }
                err(format!("unknown name `{id}`"))
            }
            other => err(format!("unexpected `{}`", show(&[other]))),
        }
    }
}

/// A C integer literal (decimal, hex, octal, binary; `u`/`l` suffixes).
pub fn parse_number(n: &str) -> Result<i64, CError> {
    let t = n.trim_end_matches(['u', 'U', 'l', 'L']);
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if let Some(b) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        u64::from_str_radix(b, 2)
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8)
    } else {
        t.parse::<u64>()
    };
    r.map(|v| v as i64).map_err(|_| CError(format!("bad number `{n}`")))
}
