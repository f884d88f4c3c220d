//! The assembler: one statement at a time into [`Stmt`]s with unresolved names, then
//! name resolution into a [`Program`]. See `docs/asm.md` for the accepted syntax.

use std::collections::{BTreeMap, HashMap};

use super::lex::{looks_like_reg, strip_comments, tokenize, Tok, Token};
use super::{AsmError, Program, Reloc, Symbols};
use crate::helpers::{helper_id, helper_name};
use crate::insn::*;

/// What a statement assembles to before names are resolved.
#[derive(Clone, Debug)]
enum Kind {
    /// A single slot.
    One(Insn),
    /// An `ld_imm64`: the first slot and the second slot's imm.
    Wide(Insn, i32),
    /// `rX = N` / `rX = N ll`: a mov or an `ld_imm64`, decided by `ll` or the `(18)` opcode.
    MovImm { dst: u8, wide: bool, value: i128, ll: bool },
}

/// A name the statement refers to, resolved once all labels are known.
#[derive(Clone, Debug)]
enum Sym {
    None,
    /// A jump label for `off`.
    JumpOff(String),
    /// A jump label for `imm` (`gotol`).
    JumpImm(String),
    /// `call NAME` or `call NAME#ID`.
    Call(String, Option<i128>),
    /// A literal bpf-to-bpf reference (`call pc+N`, `subprog[+N]`): name the target.
    SubprogAt,
    /// `rX = NAME ll` / `rX = NAME + OFF ll` / `rX = %[NAME] ll`.
    LdName(String, Option<u32>),
    /// `rX = map[id:NAME]` / `rX = map[id:NAME][0]+OFF`.
    MapRef(String, Option<u32>),
}

struct Stmt {
    kind: Kind,
    sym: Sym,
    line: usize,
    /// Column of the name in `sym` (or of the statement).
    col: usize,
}

fn err(line: usize, column: usize, message: impl Into<String>) -> AsmError {
    AsmError { line, column, message: message.into() }
}

/// Assembles `text` (see the module docs); names resolve against `symbols`.
pub fn assemble(text: &str, symbols: &Symbols) -> Result<Program, AsmError> {
    let lines = strip_comments(text)?;
    let mut stmts: Vec<Stmt> = Vec::new();
    // Label definitions: scoped name -> (index, display name, line, col).
    let mut defs: HashMap<String, (usize, String, usize, usize)> = HashMap::new();
    let mut label_order: Vec<(usize, String)> = Vec::new();
    let mut scope = 0usize;
    let mut idx = 0usize;
    for (n, chars) in lines.iter().enumerate() {
        let line_no = n + 1;
        let mut chars = chars.clone();
        let first = chars.iter().position(|c| !c.is_whitespace());
        if first.is_none_or(|f| chars[f] == ';') {
            continue;
        }
        let (kernel, opcode) = kernel_prefix(&mut chars);
        if kernel {
            if let Some(semi) = chars.iter().position(|&c| c == ';') {
                chars.truncate(semi);
            }
        }
        if kernel && opcode.is_none() && is_state_line(&chars) {
            continue;
        }
        let toks = tokenize(&chars, line_no)?;
        let segments: Vec<&[Token]> = toks.split(|t| t.tok == Tok::Punct(";")).collect();
        for mut seg in segments {
            while let [Token { tok: Tok::Ident(name), col }, Token { tok: Tok::Punct(":"), .. }, rest @ ..] =
                seg
            {
                if looks_like_reg(name) || is_keyword(name) {
                    return Err(err(line_no, *col, format!("`{name}` is reserved and cannot be a label")));
                }
                if !name.contains("%=") {
                    scope += 1;
                }
                let key = scoped(name, scope);
                if let Some((_, _, l, _)) = defs.get(&key) {
                    return Err(err(line_no, *col, format!("label `{name}` is already defined on line {l}")));
                }
                defs.insert(key, (idx, name.clone(), line_no, *col));
                label_order.push((idx, name.clone()));
                seg = rest;
            }
            if seg.is_empty() {
                if opcode.is_some() {
                    return Err(err(
                        line_no,
                        chars.len() + 1,
                        "expected an instruction after the opcode comment",
                    ));
                }
                continue;
            }
            let mut p = Parser { toks: seg, pos: 0, line: line_no, end_col: chars.len() + 1, scope };
            let mut st = p.statement()?;
            if let Some((code, col)) = opcode {
                st.kind = check_opcode(st.kind, code, line_no, col)?;
            }
            st.kind = lower_mov(st.kind, line_no, st.col)?;
            idx += match st.kind {
                Kind::Wide(..) => 2,
                _ => 1,
            };
            stmts.push(st);
        }
    }
    resolve(stmts, defs, label_order, symbols)
}

/// `l0_%=` labels are local to the stretch between two plain labels (one inline-asm block).
fn scoped(name: &str, scope: usize) -> String {
    if name.contains("%=") {
        format!("{name}@{scope}")
    } else {
        name.to_string()
    }
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "if" | "goto"
            | "gotol"
            | "gotox"
            | "may_goto"
            | "call"
            | "exit"
            | "lock"
            | "ll"
            | "pc"
            | "map"
            | "skb"
    )
}

/// A verifier-log register-state line such as `0: R1=ctx() R10=fp0` or `4: frame1: ...`.
fn is_state_line(chars: &[char]) -> bool {
    let rest: String = chars.iter().collect::<String>().trim_start().to_string();
    rest.starts_with("frame")
        || (rest.starts_with('R') && rest[1..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Blanks out a kernel-log `N: ` index and `(xx) ` opcode comment at the start of the line;
/// returns whether either was there and the opcode with its column.
fn kernel_prefix(chars: &mut [char]) -> (bool, Option<(u8, usize)>) {
    let mut i = chars.iter().position(|c| !c.is_whitespace()).unwrap_or(chars.len());
    let mut kernel = false;
    let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && chars.get(i + digits) == Some(&':') {
        for c in &mut chars[i..=i + digits] {
            *c = ' ';
        }
        kernel = true;
        i += digits + 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
    }
    let mut opcode = None;
    if chars.get(i) == Some(&'(') && chars.get(i + 3) == Some(&')') {
        let hex: String = chars[i + 1..i + 3].iter().collect();
        if hex.chars().all(|c| c.is_ascii_hexdigit()) {
            if let Ok(code) = u8::from_str_radix(&hex, 16) {
                opcode = Some((code, i + 1));
                kernel = true;
                for c in &mut chars[i..i + 4] {
                    *c = ' ';
                }
            }
        }
    }
    (kernel, opcode)
}

fn check_opcode(kind: Kind, code: u8, line: usize, col: usize) -> Result<Kind, AsmError> {
    let kind = match kind {
        Kind::MovImm { dst, wide: true, value, .. } if code == BPF_LD | BPF_DW | BPF_IMM => {
            Kind::MovImm { dst, wide: true, value, ll: true }
        }
        k => k,
    };
    let actual = match &kind {
        Kind::One(i) | Kind::Wide(i, _) => i.code,
        Kind::MovImm { ll: true, .. } => BPF_LD | BPF_DW | BPF_IMM,
        Kind::MovImm { wide, .. } => (if *wide { BPF_ALU64 } else { BPF_ALU }) | BPF_MOV | BPF_K,
    };
    if actual != code {
        return Err(err(
            line,
            col,
            format!("opcode comment ({code:02x}) does not match the instruction, which is ({actual:02x})"),
        ));
    }
    Ok(kind)
}

fn lower_mov(kind: Kind, line: usize, col: usize) -> Result<Kind, AsmError> {
    match kind {
        Kind::MovImm { dst, wide, value, ll: true } => {
            if !wide {
                return Err(err(line, col, "a 64-bit load (`ll`) needs an `r` register"));
            }
            if !(-(1i128 << 63)..(1i128 << 64)).contains(&value) {
                return Err(err(line, col, "immediate does not fit in 64 bits"));
            }
            let v = value as u64;
            Ok(Kind::Wide(
                Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst, 0, 0, v as u32 as i32),
                (v >> 32) as u32 as i32,
            ))
        }
        Kind::MovImm { dst, wide, value, ll: false } => {
            let imm = imm32(value).ok_or_else(|| {
                err(
                    line,
                    col,
                    format!("immediate {value} does not fit in 32 bits (add `ll` for a 64-bit load)"),
                )
            })?;
            let cls = if wide { BPF_ALU64 } else { BPF_ALU };
            Ok(Kind::One(Insn::new(cls | BPF_MOV | BPF_K, dst, 0, 0, imm)))
        }
        k => Ok(k),
    }
}

/// A 32-bit immediate: any value in `[-2^31, 2^32)`, wrapped to `i32`.
fn imm32(v: i128) -> Option<i32> {
    if (-(1i128 << 31)..(1i128 << 32)).contains(&v) {
        Some(v as i64 as u32 as i32)
    } else {
        None
    }
}

fn resolve(
    stmts: Vec<Stmt>,
    defs: HashMap<String, (usize, String, usize, usize)>,
    label_order: Vec<(usize, String)>,
    symbols: &Symbols,
) -> Result<Program, AsmError> {
    let mut prog = Program::default();
    for (i, name) in &label_order {
        prog.labels.entry(*i).or_insert_with(|| name.clone());
    }
    let mut call_targets: BTreeMap<usize, String> = BTreeMap::new();
    for st in stmts {
        let idx = prog.insns.len();
        let (mut first, second) = match st.kind {
            Kind::One(i) => (i, None),
            Kind::Wide(i, hi) => (i, Some(hi)),
            Kind::MovImm { .. } => return Err(err(st.line, st.col, "internal: unlowered mov")),
        };
        let target = |label: &str, scope_key: &str| -> Result<(usize, String), AsmError> {
            defs.get(scope_key)
                .map(|(t, name, _, _)| (*t, name.clone()))
                .ok_or_else(|| err(st.line, st.col, format!("undefined label `{label}`")))
        };
        let rel = |t: usize| -> i64 { t as i64 - idx as i64 - 1 };
        match &st.sym {
            Sym::None => {}
            Sym::JumpOff(key) => {
                let label = key.split('@').next().unwrap_or(key);
                let (t, _) = target(label, key)?;
                first.off = i16::try_from(rel(t)).map_err(|_| {
                    err(st.line, st.col, format!("jump to `{label}` is {} instructions away, beyond the 16-bit offset (use `gotol`)", rel(t)))
                })?;
            }
            Sym::JumpImm(key) => {
                let label = key.split('@').next().unwrap_or(key);
                let (t, _) = target(label, key)?;
                first.imm =
                    i32::try_from(rel(t)).map_err(|_| err(st.line, st.col, "jump offset out of range"))?;
            }
            Sym::Call(name, id) => {
                if let Some((t, label)) = defs.get(name.as_str()).map(|(t, l, _, _)| (*t, l.clone())) {
                    if id.is_some() {
                        return Err(err(
                            st.line,
                            st.col,
                            format!("`{name}` is a label: call it as `call {name}` or `call pc{:+}`", rel(t)),
                        ));
                    }
                    first.src = BPF_PSEUDO_CALL;
                    first.imm = i32::try_from(rel(t))
                        .map_err(|_| err(st.line, st.col, "call offset out of range"))?;
                    call_targets.insert(t, label.clone());
                    prog.relocs.insert(idx, Reloc::Subprog { label });
                } else if let Some(hid) = helper_id(name).or_else(|| (name == "bpf_unspec").then_some(0)) {
                    if let Some(given) = id {
                        if *given != hid as i128 {
                            return Err(err(
                                st.line,
                                st.col,
                                format!("`{name}` is helper #{hid}, not #{given}"),
                            ));
                        }
                    }
                    first.imm = hid;
                    let full = helper_name(hid).unwrap_or("bpf_unspec").to_string();
                    prog.relocs.insert(idx, Reloc::Helper { name: full });
                } else if name == "unknown" && id.is_some() {
                    first.imm = imm32(id.unwrap_or(0))
                        .ok_or_else(|| err(st.line, st.col, "helper id out of range"))?;
                } else if name == "kernel-function" && id.is_some() {
                    first.src = BPF_PSEUDO_KFUNC_CALL;
                    first.imm =
                        imm32(id.unwrap_or(0)).ok_or_else(|| err(st.line, st.col, "BTF id out of range"))?;
                } else if symbols.kfuncs.iter().any(|k| k == name) {
                    first.src = BPF_PSEUDO_KFUNC_CALL;
                    first.imm = match id {
                        Some(v) => imm32(*v).ok_or_else(|| err(st.line, st.col, "BTF id out of range"))?,
                        None => 0,
                    };
                    prog.relocs.insert(idx, Reloc::Kfunc { name: name.clone() });
                } else {
                    return Err(err(st.line, st.col, format!("unknown helper or kfunc `{name}`")));
                }
            }
            Sym::SubprogAt => {
                let t = idx as i64 + first.imm as i64 + 1;
                let t = usize::try_from(t)
                    .map_err(|_| err(st.line, st.col, "bpf-to-bpf target is before the program start"))?;
                let label = prog.labels.get(&t).cloned().unwrap_or_else(|| format!("subprog_{t}"));
                call_targets.insert(t, label.clone());
                prog.relocs.insert(idx, Reloc::Subprog { label });
            }
            Sym::LdName(name, off) => {
                if symbols.maps.iter().any(|m| m == name) {
                    match off {
                        None if !name.starts_with('.') => {
                            first.src = BPF_PSEUDO_MAP_FD;
                            prog.relocs.insert(idx, Reloc::Map { name: name.clone() });
                        }
                        _ => {
                            let offset = off.unwrap_or(0);
                            first.src = BPF_PSEUDO_MAP_VALUE;
                            prog.relocs.insert(idx, Reloc::MapValue { name: name.clone(), offset });
                            return_second(&mut prog, idx, first, offset as i32, st.line);
                            continue;
                        }
                    }
                } else if let (Some((t, label)), None) =
                    (defs.get(name.as_str()).map(|(t, l, _, _)| (*t, l.clone())), off)
                {
                    first.src = BPF_PSEUDO_FUNC;
                    first.imm =
                        i32::try_from(rel(t)).map_err(|_| err(st.line, st.col, "offset out of range"))?;
                    call_targets.insert(t, label.clone());
                    prog.relocs.insert(idx, Reloc::Subprog { label });
                } else {
                    return Err(err(st.line, st.col, format!("unknown map `{name}`")));
                }
            }
            Sym::MapRef(name, off) => {
                let known = symbols.maps.iter().any(|m| m == name);
                if known {
                    prog.relocs.insert(
                        idx,
                        match off {
                            None => Reloc::Map { name: name.clone() },
                            Some(o) => Reloc::MapValue { name: name.clone(), offset: *o },
                        },
                    );
                } else if let Ok(v) = name.parse::<i128>() {
                    first.imm = imm32(v).ok_or_else(|| err(st.line, st.col, "map id out of range"))?;
                } else {
                    return Err(err(st.line, st.col, format!("unknown map `{name}`")));
                }
            }
        }
        match second {
            Some(hi) => return_second(&mut prog, idx, first, hi, st.line),
            None => {
                prog.insns.push(first);
                prog.lines.push(st.line);
            }
        }
    }
    // A label that is a call target names its subprogram.
    for (t, label) in call_targets {
        prog.labels.insert(t, label);
    }
    Ok(prog)
}

fn return_second(prog: &mut Program, _idx: usize, first: Insn, hi: i32, line: usize) {
    prog.insns.push(first);
    prog.insns.push(Insn::new(0, 0, 0, 0, hi));
    prog.lines.push(line);
    prog.lines.push(0);
}

/// Recursive-descent parser over one statement's tokens.
struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    line: usize,
    end_col: usize,
    scope: usize,
}

#[derive(Clone, Copy)]
struct Reg {
    n: u8,
    wide: bool,
}

const ALU_OPS: &[(&str, u8)] = &[
    ("+=", BPF_ADD),
    ("-=", BPF_SUB),
    ("*=", BPF_MUL),
    ("/=", BPF_DIV),
    ("|=", BPF_OR),
    ("&=", BPF_AND),
    ("<<=", BPF_LSH),
    (">>=", BPF_RSH),
    ("%=", BPF_MOD),
    ("^=", BPF_XOR),
    ("s>>=", BPF_ARSH),
    ("s/=", BPF_DIV),
    ("s%=", BPF_MOD),
];

const JMP_OPS: &[(&str, u8)] = &[
    ("==", BPF_JEQ),
    ("!=", BPF_JNE),
    (">", BPF_JGT),
    (">=", BPF_JGE),
    ("<", BPF_JLT),
    ("<=", BPF_JLE),
    ("&", BPF_JSET),
    ("s>", BPF_JSGT),
    ("s>=", BPF_JSGE),
    ("s<", BPF_JSLT),
    ("s<=", BPF_JSLE),
];

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn peek_at(&self, k: usize) -> Option<&'a Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }
    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_col, |t| t.col)
    }
    fn bump(&mut self) -> Option<&'a Tok> {
        let t = self.peek();
        self.pos += 1;
        t
    }
    fn found(&self) -> String {
        self.peek().map_or_else(|| "end of statement".to_string(), |t| t.describe())
    }
    fn fail<T>(&self, expected: &str) -> Result<T, AsmError> {
        Err(err(self.line, self.col(), format!("expected {expected}, found {}", self.found())))
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(q)) if q == s)
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        let yes = self.is_punct(p);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn expect_punct(&mut self, p: &str) -> Result<(), AsmError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.fail(&format!("`{p}`"))
        }
    }
    fn expect_ident(&mut self, s: &str) -> Result<(), AsmError> {
        if self.is_ident(s) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(&format!("`{s}`"))
        }
    }
    fn end(&self) -> Result<(), AsmError> {
        if self.pos < self.toks.len() {
            self.fail("end of statement")
        } else {
            Ok(())
        }
    }

    fn try_reg(&self) -> Option<Reg> {
        let Some(Tok::Ident(s)) = self.peek() else { return None };
        if !looks_like_reg(s) {
            return None;
        }
        let n: u8 = s[1..].parse().ok()?;
        (n <= 15).then_some(Reg { n, wide: s.starts_with('r') })
    }
    fn reg(&mut self) -> Result<Reg, AsmError> {
        match self.try_reg() {
            Some(r) => {
                self.pos += 1;
                Ok(r)
            }
            None => self.fail("a register (r0-r10, w0-w10)"),
        }
    }
    fn reg_width(&mut self, wide: bool) -> Result<Reg, AsmError> {
        let col = self.col();
        let r = self.reg()?;
        if r.wide != wide {
            return Err(err(
                self.line,
                col,
                format!(
                    "expected a {} register, found `{}{}`",
                    if wide { "64-bit `r`" } else { "32-bit `w`" },
                    if r.wide { 'r' } else { 'w' },
                    r.n
                ),
            ));
        }
        Ok(r)
    }

    /// A signed number: optional `+`/`-` then a number.
    fn try_num(&mut self) -> Option<i128> {
        let save = self.pos;
        let neg = if self.eat_punct("-") {
            true
        } else {
            self.eat_punct("+");
            false
        };
        if let Some(Tok::Num(n)) = self.peek() {
            self.pos += 1;
            let v = *n as i128;
            return Some(if neg { -v } else { v });
        }
        self.pos = save;
        None
    }
    fn num(&mut self, what: &str) -> Result<i128, AsmError> {
        let signed = usize::from(self.is_punct("-") || self.is_punct("+"));
        if let Some(Tok::Subst(s)) = self.peek_at(signed) {
            let col = self.toks.get(self.pos + signed).map_or(self.end_col, |t| t.col);
            return Err(err(
                self.line,
                col,
                format!("`%[{s}]` constants are not supported: write the number"),
            ));
        }
        match self.try_num() {
            Some(v) => Ok(v),
            None => self.fail(what),
        }
    }
    fn imm32(&mut self) -> Result<i32, AsmError> {
        let col = self.col();
        let v = self.num("an immediate")?;
        imm32(v).ok_or_else(|| err(self.line, col, format!("immediate {v} does not fit in 32 bits")))
    }
    fn off16(&mut self, v: i128, col: usize) -> Result<i16, AsmError> {
        i16::try_from(v).map_err(|_| err(self.line, col, format!("offset {v} does not fit in 16 bits")))
    }

    /// `(u32 *)` or `(u32*)`; returns (size bits, signed).
    fn size_cast(&mut self) -> Result<(u8, bool), AsmError> {
        self.expect_punct("(")?;
        let col = self.col();
        let s = match self.bump() {
            Some(Tok::Ident(s)) => s.as_str(),
            _ => return Err(err(self.line, col, "expected a size (u8, u16, u32, u64, s8, s16, s32)")),
        };
        let r = match s {
            "u8" => (BPF_B, false),
            "u16" => (BPF_H, false),
            "u32" => (BPF_W, false),
            "u64" => (BPF_DW, false),
            "s8" => (BPF_B, true),
            "s16" => (BPF_H, true),
            "s32" => (BPF_W, true),
            _ => {
                return Err(err(
                    self.line,
                    col,
                    format!("expected a size (u8, u16, u32, u64, s8, s16, s32), found `{s}`"),
                ))
            }
        };
        self.expect_punct("*")?;
        self.expect_punct(")")?;
        Ok(r)
    }
    fn unsigned_size(&mut self) -> Result<u8, AsmError> {
        let col = self.col() + 1;
        let (sz, signed) = self.size_cast()?;
        if signed {
            return Err(err(self.line, col, "a signed size is only valid for loads"));
        }
        Ok(sz)
    }
    /// `(r1 +0)`, `(r10 - 4)`, `(r1)`.
    fn mem_operand(&mut self) -> Result<(Reg, i16), AsmError> {
        self.expect_punct("(")?;
        let r = self.reg()?;
        let off = if self.is_punct(")") {
            0
        } else {
            let col = self.col();
            if !(self.is_punct("+") || self.is_punct("-")) {
                return self.fail("`+` or `-` and an offset");
            }
            let v = self.num("an offset")?;
            self.off16(v, col)?
        };
        self.expect_punct(")")?;
        Ok((r, off))
    }
    /// LLVM's `r1 + 0` operand of `xchg_64`/`cmpxchg_64`.
    fn bare_mem_operand(&mut self) -> Result<(Reg, i16), AsmError> {
        let r = self.reg()?;
        let col = self.col();
        let v = if self.is_punct("+") || self.is_punct("-") { self.num("an offset")? } else { 0 };
        Ok((r, self.off16(v, col)?))
    }

    /// A jump target: `pc+N`, `+N`, `-N`, or a label. Sets `off` (or `imm` for `gotol`).
    fn jump_target(&mut self, insn: &mut Insn, long: bool) -> Result<Sym, AsmError> {
        let col = self.col();
        if self.is_ident("pc") {
            self.pos += 1;
            if !(self.is_punct("+") || self.is_punct("-")) {
                return self.fail("`+` or `-` after `pc`");
            }
        }
        if let Some(v) = self.try_num() {
            if long {
                insn.imm = i32::try_from(v)
                    .map_err(|_| err(self.line, col, format!("jump offset {v} does not fit in 32 bits")))?;
            } else {
                insn.off = self.off16(v, col)?;
            }
            self.skip_annotation();
            return Ok(Sym::None);
        }
        match self.peek() {
            Some(Tok::Ident(name)) if !looks_like_reg(name) => {
                self.pos += 1;
                let key = scoped(name, self.scope);
                Ok(if long { Sym::JumpImm(key) } else { Sym::JumpOff(key) })
            }
            _ => self.fail("a jump target (`pc+N` or a label)"),
        }
    }
    /// llvm-objdump's `<LBB0_2>` after a numeric target.
    fn skip_annotation(&mut self) {
        if self.is_punct("<") {
            if let Some(end) = self.toks[self.pos..].iter().position(|t| t.tok == Tok::Punct(">")) {
                self.pos += end + 1;
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt, AsmError> {
        let col = self.col();
        let line = self.line;
        let (kind, sym, scol) = self.statement_inner()?;
        self.end()?;
        Ok(Stmt { kind, sym, line, col: scol.unwrap_or(col) })
    }

    fn statement_inner(&mut self) -> Result<(Kind, Sym, Option<usize>), AsmError> {
        let one = |i: Insn| Ok((Kind::One(i), Sym::None, None));
        let col = self.col();
        match self.peek() {
            Some(Tok::Ident(w)) => match w.as_str() {
                "exit" => {
                    self.pos += 1;
                    return one(Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
                }
                "goto" | "gotol" | "may_goto" => {
                    self.pos += 1;
                    let mut insn = match w.as_str() {
                        "goto" => Insn::new(BPF_JMP | BPF_JA, 0, 0, 0, 0),
                        "gotol" => Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, 0),
                        _ => Insn::new(BPF_JMP | BPF_JCOND, 0, 0, 0, 0),
                    };
                    let tcol = self.col();
                    let sym = self.jump_target(&mut insn, w == "gotol")?;
                    return Ok((Kind::One(insn), sym, Some(tcol)));
                }
                "gotox" => {
                    self.pos += 1;
                    let r = self.reg_width(true)?;
                    return one(Insn::new(BPF_JMP | BPF_JA | BPF_X, r.n, 0, 0, 0));
                }
                "call" => {
                    self.pos += 1;
                    return self.call();
                }
                "if" => {
                    self.pos += 1;
                    return self.cond_jump();
                }
                "lock" => {
                    self.pos += 1;
                    self.expect_punct("*")?;
                    let sz = self.unsigned_size()?;
                    let (dst, off) = self.mem_operand()?;
                    let ocol = self.col();
                    let op = match self.bump() {
                        Some(Tok::Punct("+=")) => BPF_ADD,
                        Some(Tok::Punct("&=")) => BPF_AND,
                        Some(Tok::Punct("|=")) => BPF_OR,
                        Some(Tok::Punct("^=")) => BPF_XOR,
                        _ => {
                            return Err(err(
                                self.line,
                                ocol,
                                "expected `+=`, `&=`, `|=` or `^=` after `lock *(..)`",
                            ))
                        }
                    };
                    let src = self.reg()?;
                    return one(Insn::new(BPF_STX | BPF_ATOMIC | sz, dst.n, src.n, off, op as i32));
                }
                "store_release" => {
                    self.pos += 1;
                    self.expect_punct("(")?;
                    let sz = self.unsigned_size()?;
                    let (dst, off) = self.mem_operand()?;
                    self.expect_punct(",")?;
                    let src = self.reg()?;
                    self.expect_punct(")")?;
                    return one(Insn::new(BPF_STX | BPF_ATOMIC | sz, dst.n, src.n, off, BPF_STORE_REL));
                }
                s if s.starts_with('.') => {
                    return Err(err(self.line, col, format!("assembler directive `{s}` is not supported")));
                }
                _ => {}
            },
            Some(Tok::Punct("*")) => {
                self.pos += 1;
                let sz = self.unsigned_size()?;
                let (dst, off) = self.mem_operand()?;
                self.expect_punct("=")?;
                if let Some(src) = self.try_reg() {
                    self.pos += 1;
                    return one(Insn::new(BPF_STX | BPF_MEM | sz, dst.n, src.n, off, 0));
                }
                let imm = self.imm32()?;
                return one(Insn::new(BPF_ST | BPF_MEM | sz, dst.n, 0, off, imm));
            }
            _ => {}
        }
        let Some(dst) = self.try_reg() else {
            return self.fail("an instruction");
        };
        self.pos += 1;
        let cls = if dst.wide { BPF_ALU64 } else { BPF_ALU };
        if self.eat_punct("=") {
            return self.assign(dst);
        }
        let ocol = self.col();
        let Some(Tok::Punct(op)) = self.peek() else {
            return self.fail("`=` or an ALU operator (`+=`, `s>>=`, ...)");
        };
        let Some(&(_, code)) = ALU_OPS.iter().find(|(s, _)| s == op) else {
            return Err(err(self.line, ocol, format!("expected `=` or an ALU operator, found `{op}`")));
        };
        self.pos += 1;
        let off = if op.starts_with("s/") || op.starts_with("s%") { 1 } else { 0 };
        if let Some(src) = self.try_reg() {
            let scol = self.col();
            self.pos += 1;
            if src.wide != dst.wide {
                return Err(err(self.line, scol, "both registers must be `r` (64-bit) or both `w` (32-bit)"));
            }
            return one(Insn::new(cls | code | BPF_X, dst.n, src.n, off, 0));
        }
        let imm = self.imm32()?;
        one(Insn::new(cls | code | BPF_K, dst.n, 0, off, imm))
    }

    fn call(&mut self) -> Result<(Kind, Sym, Option<usize>), AsmError> {
        let mut insn = Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, 0);
        let col = self.col();
        if self.is_ident("pc") {
            self.pos += 1;
            if !(self.is_punct("+") || self.is_punct("-")) {
                return self.fail("`+` or `-` after `pc`");
            }
            let v = self.num("an offset")?;
            insn.src = BPF_PSEUDO_CALL;
            insn.imm = i32::try_from(v).map_err(|_| err(self.line, col, "call offset out of range"))?;
            return Ok((Kind::One(insn), Sym::SubprogAt, Some(col)));
        }
        let name = match self.peek() {
            Some(Tok::Num(_)) => {
                let v = self.num("a helper id")?;
                let id = imm32(v).ok_or_else(|| err(self.line, col, "helper id out of range"))?;
                return match helper_name(id) {
                    Some(name) if id > 0 => {
                        Ok((Kind::One(insn), Sym::Call(name.to_string(), Some(v)), Some(col)))
                    }
                    _ => {
                        insn.imm = id;
                        Ok((Kind::One(insn), Sym::None, Some(col)))
                    }
                };
            }
            Some(Tok::Ident(s)) if !looks_like_reg(s) => s.clone(),
            Some(Tok::Subst(s)) => s.clone(),
            _ => return self.fail("a helper, kfunc or label name, or `pc+N`"),
        };
        self.pos += 1;
        let id = if self.eat_punct("#") { Some(self.num("an id after `#`")?) } else { None };
        Ok((Kind::One(insn), Sym::Call(name, id), Some(col)))
    }

    fn cond_jump(&mut self) -> Result<(Kind, Sym, Option<usize>), AsmError> {
        let dst = self.reg()?;
        let cls = if dst.wide { BPF_JMP } else { BPF_JMP32 };
        let ocol = self.col();
        let op = match self.peek() {
            Some(Tok::Punct(p)) => JMP_OPS.iter().find(|(s, _)| s == p).map(|&(_, c)| c),
            _ => None,
        };
        let Some(op) = op else {
            return Err(err(
                self.line,
                ocol,
                format!("expected a comparison (`==`, `!=`, `>`, `s<=`, `&`, ...), found {}", self.found()),
            ));
        };
        self.pos += 1;
        let mut insn = if let Some(src) = self.try_reg() {
            let scol = self.col();
            self.pos += 1;
            if src.wide != dst.wide {
                return Err(err(self.line, scol, "both registers must be `r` (64-bit) or both `w` (32-bit)"));
            }
            Insn::new(cls | op | BPF_X, dst.n, src.n, 0, 0)
        } else {
            let imm = self.imm32()?;
            Insn::new(cls | op | BPF_K, dst.n, 0, 0, imm)
        };
        self.expect_ident("goto")?;
        let tcol = self.col();
        let sym = self.jump_target(&mut insn, false)?;
        Ok((Kind::One(insn), sym, Some(tcol)))
    }

    /// Everything of the form `REG = ...`.
    fn assign(&mut self, dst: Reg) -> Result<(Kind, Sym, Option<usize>), AsmError> {
        let one = |i: Insn| Ok((Kind::One(i), Sym::None, None));
        let cls = if dst.wide { BPF_ALU64 } else { BPF_ALU };
        let col = self.col();
        // rX = -rX
        if self.is_punct("-") && matches!(self.peek_at(1), Some(Tok::Ident(s)) if looks_like_reg(s)) {
            self.pos += 1;
            let scol = self.col();
            let src = self.reg()?;
            if src.n != dst.n || src.wide != dst.wide {
                return Err(err(
                    self.line,
                    scol,
                    "negation works in place: expected the destination register",
                ));
            }
            return one(Insn::new(cls | BPF_NEG | BPF_K, dst.n, 0, 0, 0));
        }
        if let Some(v) = self.try_num() {
            let ll = self.is_ident("ll");
            if ll {
                self.pos += 1;
            }
            return Ok((Kind::MovImm { dst: dst.n, wide: dst.wide, value: v, ll }, Sym::None, Some(col)));
        }
        if let Some(src) = self.try_reg() {
            self.pos += 1;
            if src.wide != dst.wide {
                return Err(err(self.line, col, "both registers must be `r` (64-bit) or both `w` (32-bit)"));
            }
            return one(Insn::new(cls | BPF_MOV | BPF_X, dst.n, src.n, 0, 0));
        }
        // rX = (s8)rY
        if self.is_punct("(") {
            if let Some(Tok::Ident(s)) = self.peek_at(1) {
                let off = match s.as_str() {
                    "s8" => 8,
                    "s16" => 16,
                    "s32" => 32,
                    _ => 0,
                };
                if off != 0 && matches!(self.peek_at(2), Some(Tok::Punct(")"))) {
                    self.pos += 3;
                    let src = self.reg_width(dst.wide)?;
                    return one(Insn::new(cls | BPF_MOV | BPF_X, dst.n, src.n, off, 0));
                }
            }
        }
        // rX = *(u32 *)(rY +off), rX = *(u8 *)skb[...]
        if self.eat_punct("*") {
            let (sz, signed) = self.size_cast()?;
            if self.is_ident("skb") {
                self.pos += 1;
                if signed {
                    return Err(err(self.line, col, "packet loads take an unsigned size"));
                }
                if dst.n != 0 {
                    return Err(err(self.line, col, "packet loads (ld_abs/ld_ind) always write r0"));
                }
                self.expect_punct("[")?;
                let insn = if let Some(src) = self.try_reg() {
                    self.pos += 1;
                    self.eat_punct("+");
                    let imm = if self.is_punct("]") { 0 } else { self.imm32()? };
                    Insn::new(BPF_LD | BPF_IND | sz, 0, src.n, 0, imm)
                } else {
                    let imm = self.imm32()?;
                    Insn::new(BPF_LD | BPF_ABS | sz, 0, 0, 0, imm)
                };
                self.expect_punct("]")?;
                return one(insn);
            }
            let (src, off) = self.mem_operand()?;
            let mode = if signed { BPF_MEMSX } else { BPF_MEM };
            return one(Insn::new(BPF_LDX | mode | sz, dst.n, src.n, off, 0));
        }
        if let Some(Tok::Subst(name)) = self.peek() {
            self.pos += 1;
            self.expect_ident("ll")?;
            return self.ld_name(dst, name.clone(), None, col);
        }
        let Some(Tok::Ident(word)) = self.peek() else {
            return self.fail("a register, number, memory operand or name");
        };
        let word = word.as_str();
        // Endianness: be16/le32/bswap64.
        if let Some((pfx, bits)) = split_endian(word) {
            self.pos += 1;
            let scol = self.col();
            let src = self.reg()?;
            if src.n != dst.n {
                return Err(err(
                    self.line,
                    scol,
                    "byte swaps work in place: expected the destination register",
                ));
            }
            let code = match pfx {
                "be" => BPF_ALU | BPF_END | BPF_X,
                "le" => BPF_ALU | BPF_END | BPF_K,
                _ => BPF_ALU64 | BPF_END | BPF_K,
            };
            return one(Insn::new(code, dst.n, 0, 0, bits));
        }
        if let Some(rest) = word.strip_prefix("atomic") {
            self.pos += 1;
            return self.atomic_fn(dst, rest, col);
        }
        match word {
            "xchg_64" | "xchg32_32" | "cmpxchg_64" | "cmpxchg32_32" => {
                self.pos += 1;
                let sz = if word.ends_with("_64") { BPF_DW } else { BPF_W };
                self.expect_punct("(")?;
                let (ptr, off) = self.bare_mem_operand()?;
                self.expect_punct(",")?;
                let insn = if word.starts_with("cmp") {
                    if dst.n != 0 {
                        return Err(err(self.line, col, "cmpxchg always writes r0"));
                    }
                    let rcol = self.col();
                    let r0 = self.reg()?;
                    if r0.n != 0 {
                        return Err(err(self.line, rcol, "cmpxchg compares with r0"));
                    }
                    self.expect_punct(",")?;
                    let src = self.reg()?;
                    Insn::new(BPF_STX | BPF_ATOMIC | sz, ptr.n, src.n, off, BPF_CMPXCHG)
                } else {
                    let scol = self.col();
                    let src = self.reg()?;
                    if src.n != dst.n {
                        return Err(err(
                            self.line,
                            scol,
                            "xchg returns into its source register: expected the destination register",
                        ));
                    }
                    Insn::new(BPF_STX | BPF_ATOMIC | sz, ptr.n, src.n, off, BPF_XCHG)
                };
                self.expect_punct(")")?;
                return one(insn);
            }
            "load_acquire" => {
                self.pos += 1;
                self.expect_punct("(")?;
                let sz = self.unsigned_size()?;
                let (src, off) = self.mem_operand()?;
                self.expect_punct(")")?;
                return one(Insn::new(BPF_STX | BPF_ATOMIC | sz, dst.n, src.n, off, BPF_LOAD_ACQ));
            }
            "addr_space_cast" => {
                self.pos += 1;
                self.expect_punct("(")?;
                let src = self.reg_width(true)?;
                self.expect_punct(",")?;
                let ncol = self.col();
                let a = self.num("an address space")?;
                self.expect_punct(",")?;
                let b = self.num("an address space")?;
                self.expect_punct(")")?;
                let (Ok(a), Ok(b)) = (u16::try_from(a), u16::try_from(b)) else {
                    return Err(err(self.line, ncol, "address spaces are 16-bit"));
                };
                let imm = ((a as u32) << 16 | b as u32) as i32;
                return one(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst.n, src.n, 1, imm));
            }
            "map" => {
                self.pos += 1;
                self.expect_punct("[")?;
                self.expect_ident("id")?;
                self.expect_punct(":")?;
                let ncol = self.col();
                let name = match self.bump() {
                    Some(Tok::Ident(s)) => s.clone(),
                    Some(Tok::Num(n)) => n.to_string(),
                    Some(Tok::Punct("-")) => match self.bump() {
                        Some(Tok::Num(n)) => format!("-{n}"),
                        _ => return Err(err(self.line, ncol, "expected a map name or id")),
                    },
                    _ => return Err(err(self.line, ncol, "expected a map name or id")),
                };
                self.expect_punct("]")?;
                let mut insn = Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst.n, BPF_PSEUDO_MAP_FD, 0, 0);
                let mut off = None;
                if self.eat_punct("[") {
                    let zcol = self.col();
                    if self.num("`0`")? != 0 {
                        return Err(err(
                            self.line,
                            zcol,
                            "only element [0] of a map value can be referenced",
                        ));
                    }
                    self.expect_punct("]")?;
                    self.expect_punct("+")?;
                    let ocol = self.col();
                    let v = self.num("a value offset")?;
                    off =
                        Some(u32::try_from(v).map_err(|_| {
                            err(self.line, ocol, "value offset must fit in 32 bits unsigned")
                        })?);
                    insn.src = BPF_PSEUDO_MAP_VALUE;
                }
                return Ok((Kind::Wide(insn, off.unwrap_or(0) as i32), Sym::MapRef(name, off), Some(ncol)));
            }
            "subprog" => {
                self.pos += 1;
                self.expect_punct("[")?;
                let ncol = self.col();
                let v = self.num("an offset")?;
                self.expect_punct("]")?;
                let imm = i32::try_from(v).map_err(|_| err(self.line, ncol, "offset out of range"))?;
                let insn = Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst.n, BPF_PSEUDO_FUNC, 0, imm);
                return Ok((Kind::Wide(insn, 0), Sym::SubprogAt, Some(ncol)));
            }
            _ => {}
        }
        // rX = NAME ll / rX = NAME + OFF ll
        let name = word.to_string();
        self.pos += 1;
        let off = if self.is_punct("+") {
            let ocol = self.col();
            let v = self.num("a value offset")?;
            Some(
                u32::try_from(v)
                    .map_err(|_| err(self.line, ocol, "value offset must fit in 32 bits unsigned"))?,
            )
        } else {
            None
        };
        if !self.is_ident("ll") {
            return self.fail("`ll` (a named 64-bit load is `rX = NAME ll`)");
        }
        self.pos += 1;
        self.ld_name(dst, name, off, col)
    }

    fn ld_name(
        &mut self,
        dst: Reg,
        name: String,
        off: Option<u32>,
        col: usize,
    ) -> Result<(Kind, Sym, Option<usize>), AsmError> {
        if !dst.wide {
            return Err(err(self.line, col, "a 64-bit load (`ll`) needs an `r` register"));
        }
        let insn = Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst.n, 0, 0, 0);
        Ok((Kind::Wide(insn, 0), Sym::LdName(name, off), Some(col)))
    }

    /// After `rX = atomic`: `_fetch_add(...)`, `64_xchg(...)`, `_cmpxchg(...)`.
    fn atomic_fn(
        &mut self,
        dst: Reg,
        rest: &str,
        col: usize,
    ) -> Result<(Kind, Sym, Option<usize>), AsmError> {
        let (is64, op) = match rest.strip_prefix("64") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let imm = match op {
            "_fetch_add" => BPF_ADD as i32 | BPF_FETCH,
            "_fetch_and" => BPF_AND as i32 | BPF_FETCH,
            "_fetch_or" => BPF_OR as i32 | BPF_FETCH,
            "_fetch_xor" => BPF_XOR as i32 | BPF_FETCH,
            "_xchg" => BPF_XCHG,
            "_cmpxchg" => BPF_CMPXCHG,
            _ => return Err(err(self.line, col, format!("unknown atomic operation `atomic{rest}`"))),
        };
        self.expect_punct("(")?;
        let scol = self.col() + 1;
        let sz = self.unsigned_size()?;
        if is64 && sz != BPF_DW {
            return Err(err(self.line, scol, "`atomic64_` operations take a `u64` operand"));
        }
        let (ptr, off) = self.mem_operand()?;
        self.expect_punct(",")?;
        if imm == BPF_CMPXCHG {
            if dst.n != 0 {
                return Err(err(self.line, col, "cmpxchg always writes r0"));
            }
            let rcol = self.col();
            if self.reg()?.n != 0 {
                return Err(err(self.line, rcol, "cmpxchg compares with r0"));
            }
            self.expect_punct(",")?;
        }
        let rcol = self.col();
        let src = self.reg()?;
        if imm != BPF_CMPXCHG && src.n != dst.n {
            return Err(err(
                self.line,
                rcol,
                "the old value goes to the source register: expected the destination register",
            ));
        }
        self.expect_punct(")")?;
        Ok((Kind::One(Insn::new(BPF_STX | BPF_ATOMIC | sz, ptr.n, src.n, off, imm)), Sym::None, None))
    }
}

/// `be16` -> ("be", 16); `bswap64` -> ("bswap", 64).
fn split_endian(w: &str) -> Option<(&'static str, i32)> {
    for pfx in ["bswap", "be", "le"] {
        if let Some(d) = w.strip_prefix(pfx) {
            if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()) {
                return d.parse().ok().map(|b| (pfx, b));
            }
        }
    }
    None
}
