//! The kernel's naked-asm verifier selftests (`tools/testing/selftests/bpf/progs/verifier_*.c`)
//! as lockstep cases.
//!
//! A test is a function with `SEC("...")` whose body is one `asm volatile (...)` statement
//! (`__naked`). Its annotations (`__success`, `__failure`, `__msg`, ... see [`super::annot`]) give
//! the privileged-mode expectation for the profile of the kernel the file comes from; the
//! `%[name]` operands are replaced by what `__imm(name)` (a helper or kfunc name),
//! `__imm_addr(map)` (the map's name) and `__imm_const(name, expr)` (the value of the constant
//! expression, with `offsetof`/`sizeof` of uapi and file structs) stand for; static and global
//! subprograms called from the asm are appended under their names as labels; the maps used
//! come from the file's `struct { __uint(type, ...) ... } name SEC(".maps")` definitions.
//!
//! Only tests that call a lock helper or kfunc (`bpf_spin_lock`, `bpf_res_spin_lock`, ...) are
//! converted; the others in a file that has lock tests are listed as skipped, as is every test
//! that cannot be converted, each with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::annot::TestSpec;
use super::cfile::{parse_file, uses_lock_text, FileDefs, Func, Operand};
use super::clex::{lex, show, CSource, Tok};
use super::ctypes::{CDefs, CType};
use super::sec::prog_type_of_section;
use crate::asm::Program;
use crate::case::write::case_toml;
use crate::case::{Case, GlobalFunc, ProgType};

/// What an import is for: the profile the annotations are expectations of, and where the
/// sources come from (written into each case's `source`).
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Profile name (`7.3`).
    pub profile: String,
    /// Human-readable origin, e.g. `linux-source-7.3 7.3.4-1~bpo13+1`.
    pub origin: String,
    /// Kfunc names the case parser knows (others are listed in a case's `kfuncs`).
    pub known_kfuncs: Vec<String>,
}

/// A converted test.
#[derive(Clone, Debug)]
pub struct Converted {
    pub case: Case,
    /// 1-based line of the test function in the C file.
    pub line: usize,
}

/// A test that was not converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub line: usize,
    pub reason: String,
    /// Whether the test uses a lock (a lock test that could not be converted, as opposed to a
    /// test outside the lock rules).
    pub uses_lock: bool,
}

/// The result of importing one C file.
#[derive(Clone, Debug)]
pub struct FileImport {
    /// The path as given (e.g. `tools/testing/selftests/bpf/progs/verifier_spin_lock.c`).
    pub path: String,
    pub converted: Vec<Converted>,
    pub skipped: Vec<Skipped>,
    /// The case file (empty when nothing was converted).
    pub toml: String,
}

impl FileImport {
    /// The file name without directories.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    /// Number of tests that use a lock (converted or not).
    pub fn lock_tests(&self) -> usize {
        self.converted.len() + self.skipped.iter().filter(|s| s.uses_lock).count()
    }
}

/// Whether a file is worth importing: it is a verifier selftest that mentions a lock.
pub fn is_candidate(path: &str, text: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("verifier_") && name.ends_with(".c") && text.contains("spin_lock")
}

/// Imports one selftest C file. `base` holds the structs, enums and macros of the uapi headers.
pub fn import_file(path: &str, text: &str, base: &CDefs, opts: &ImportOptions) -> FileImport {
    let fd = parse_file(text, base);
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let mut converted = Vec::new();
    let mut skipped = Vec::new();
    for f in fd.funcs.iter().filter(|f| f.sec.is_some()) {
        match convert(&fd, f, file_name, opts) {
            Ok(Some(case)) => {
                // The case must read back: assemble it through the case parser.
                let rendered = case_toml(&case, &[]);
                match crate::case::parse::parse_cases(file_name, &rendered, &opts.known_kfuncs) {
                    Ok(mut cs) if cs.len() == 1 => {
                        let mut c = cs.remove(0);
                        c.line = f.line;
                        converted.push(Converted { case: c, line: f.line })
                    }
                    Ok(_) => unreachable!("one case rendered"),
                    Err(e) => skipped.push(Skipped {
                        name: f.name.clone(),
                        line: f.line,
                        reason: format!("does not assemble: {}", e.message),
                        uses_lock: true,
                    }),
                }
            }
            Ok(None) => skipped.push(Skipped {
                name: f.name.clone(),
                line: f.line,
                reason: "does not use a lock".into(),
                uses_lock: false,
            }),
            Err((reason, uses_lock)) => {
                skipped.push(Skipped { name: f.name.clone(), line: f.line, reason, uses_lock })
            }
        }
    }
    let mut toml = String::new();
    if !converted.is_empty() {
        let _ = writeln!(toml, "# Generated by `lockstep import-selftests` from {} ({}).", path, opts.origin);
        let _ = writeln!(
            toml,
            "# Expectations are the selftests' own annotations, for profile {}. Do not edit:",
            opts.profile
        );
        let _ = writeln!(toml, "# re-run the import instead (see README.md in this directory).");
        for c in &converted {
            let _ = writeln!(toml);
            toml.push_str(&case_toml(&c.case, &header_comment(&fd, &c.case.name, file_name)));
        }
    }
    FileImport { path: path.to_string(), converted, skipped, toml }
}

fn header_comment(fd: &FileDefs, name: &str, file_name: &str) -> Vec<String> {
    let Some(f) = fd.funcs.iter().find(|f| f.name == name) else { return Vec::new() };
    let mut ann = Vec::new();
    if let Some(s) = &f.sec {
        ann.push(format!("SEC(\"{s}\")"));
    }
    ann.extend(f.c_annotations.iter().cloned());
    vec![format!("{file_name}:{}: {}", f.line, ann.join(" "))]
}

/// Converts one test: `Ok(None)` if it does not use a lock, `Err((reason, uses_lock))` if it
/// cannot be converted.
fn convert(
    fd: &FileDefs,
    f: &Func,
    file_name: &str,
    opts: &ImportOptions,
) -> Result<Option<Case>, (String, bool)> {
    let Some((asm, operands)) = &f.asm else {
        if f.body_mentions_lock {
            return Err((
                "C body, not naked asm (compile the file with clang and give lockstep the object)".into(),
                true,
            ));
        }
        return Ok(None);
    };
    let main_text = substitute(asm, operands, fd).map_err(|e| (e, uses_lock_text(asm)))?;
    // Subprograms reached through `call NAME` to functions of the file, transitively.
    let mut text = tidy(&main_text);
    let mut globals = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::from([f.name.clone()]);
    let mut queue: Vec<String> = called_names(&main_text);
    let mut calls: Vec<String> = queue.clone();
    let mut maps_used: Vec<String> = addr_names(operands);
    while let Some(n) = queue.pop() {
        let Some(callee) = fd.funcs.iter().find(|g| g.name == n) else { continue };
        if !done.insert(n.clone()) {
            continue;
        }
        let Some((casm, cops)) = &callee.asm else {
            return Err((format!("calls `{n}`, which is not naked asm"), true));
        };
        let ctext = substitute(casm, cops, fd).map_err(|e| (format!("in `{n}`: {e}"), true))?;
        if !callee.is_static {
            let args = scalar_params(fd, &callee.params)
                .map_err(|e| (format!("global function `{n}`: {e}"), true))?;
            globals.push(GlobalFunc { label: n.clone(), args, ctx_args: 0 });
        }
        let _ = write!(text, "{n}:\n{}", tidy(&ctext));
        let more = called_names(&ctext);
        calls.extend(more.iter().cloned());
        queue.extend(more);
        maps_used.extend(addr_names(cops));
    }
    let uses_lock = calls.iter().any(|c| is_lock_call(c));
    if !uses_lock {
        return Ok(None);
    }
    let spec = TestSpec::from_annotations(f.annotations.iter().map(String::as_str));
    if spec.auxiliary {
        return Err(("__auxiliary program (loaded for other tests, not a test itself)".into(), true));
    }
    if !spec.runs_on_x86_64() {
        return Err((format!("only for {}", spec.arch.join(", ")), true));
    }
    if let Some(p) = &spec.btf_path {
        return Err((format!("needs the separate BTF file {p}"), true));
    }
    if !spec.unknown.is_empty() {
        return Err((format!("unknown annotations: {}", spec.unknown.join(", ")), true));
    }
    let sec = f.sec.as_deref().unwrap_or_default();
    let st = prog_type_of_section(sec).map_err(|e| (e, true))?;
    // A text case is loaded by lockstep's own loader, which has no attach target to give.
    if ProgType::ATTACHED.contains(&st.prog_type) {
        return Err((
            format!("section `{sec}` is not a program type lockstep loads (needs an attach target or attach type)"),
            true,
        ));
    }
    let (flags, sleepable) = spec.prog_flags().map_err(|e| (e, true))?;
    let source = format!("selftest {file_name}:{} ({})", f.line, opts.origin);
    let expect = spec.expectations(&opts.profile, &source).map_err(|e| (e, true))?;
    if expect.is_empty() {
        return Err(("unprivileged-mode test only (lockstep loads privileged)".into(), true));
    }
    let mut maps = Vec::new();
    let mut seen = BTreeSet::new();
    for m in maps_used {
        if !seen.insert(m.clone()) {
            continue;
        }
        match fd.maps.get(&m) {
            Some(Ok(spec)) => maps.push(spec.clone()),
            Some(Err(why)) => return Err((format!("map `{m}`: {why}"), true)),
            None if fd.globals.contains_key(&m) => {
                return Err((
                    format!(
                        "uses global variable `{m}` (section {}): global data is not converted",
                        fd.globals[&m]
                    ),
                    true,
                ))
            }
            None => {}
        }
    }
    let mut kfuncs: Vec<String> = calls
        .iter()
        .filter(|c| {
            *c != "pc"
                && crate::helpers::helper_id(c).is_none()
                && !fd.funcs.iter().any(|g| &g.name == *c)
                && !opts.known_kfuncs.contains(c)
        })
        .cloned()
        .collect();
    kfuncs.sort();
    kfuncs.dedup();
    let mut tags = vec!["selftest".to_string(), file_name.trim_end_matches(".c").to_string()];
    tags.extend(spec.notes());
    Ok(Some(Case {
        name: f.name.clone(),
        file: file_name.to_string(),
        line: f.line,
        prog_type: st.prog_type,
        sleepable: st.sleepable || sleepable,
        prog_flags: st.prog_flags | flags,
        log_level: spec.log_level.as_deref().and_then(|l| l.parse().ok()).filter(|l| *l <= 2).unwrap_or(0),
        maps,
        globals,
        types: Vec::new(),
        extern_kfuncs: kfuncs,
        program: Program::default(),
        text,
        expect,
        description: spec.description.clone(),
        tags,
        object: None,
        model_unsupported: None,
        exception_cb: None,
        license: crate::case::DEFAULT_LICENSE.into(),
        non_struct_type_ids: Vec::new(),
    }))
}

/// Whether a call target is one of the lock helpers or kfuncs.
fn is_lock_call(name: &str) -> bool {
    matches!(
        name,
        "bpf_spin_lock"
            | "bpf_spin_unlock"
            | "bpf_res_spin_lock"
            | "bpf_res_spin_unlock"
            | "bpf_res_spin_lock_irqsave"
            | "bpf_res_spin_unlock_irqrestore"
    )
}

/// Names after `call` (not `call pc+N`, `call %[...]` is already substituted).
fn called_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let toks = lex(&strip_asm_comments(text));
    for w in toks.windows(2) {
        if w[0].ident() == Some("call") {
            if let Some(n) = w[1].ident() {
                out.push(n.to_string());
            }
        }
    }
    out
}

fn strip_asm_comments(text: &str) -> String {
    let src = CSource::new(text);
    src.clean
}

fn addr_names(ops: &BTreeMap<String, Operand>) -> Vec<String> {
    ops.values().filter_map(|o| if let Operand::Addr(n) = o { Some(n.clone()) } else { None }).collect()
}

/// The number of parameters of a global function, all of which must be integers.
fn scalar_params(fd: &FileDefs, params: &[Vec<Tok>]) -> Result<u8, String> {
    if params.len() == 1 && params[0].len() == 1 && params[0][0].ident() == Some("void") {
        return Ok(0);
    }
    for p in params {
        // Drop the parameter name.
        let ty = if p.len() > 1 && p.last().is_some_and(|t| t.ident().is_some()) {
            &p[..p.len() - 1]
        } else {
            &p[..]
        };
        match fd.defs.type_of(ty) {
            Ok(CType::Int { .. }) => {}
            _ => return Err(format!("parameter `{}` is not an integer", show(p))),
        }
    }
    u8::try_from(params.len()).map_err(|_| "too many parameters".to_string())
}

/// Replaces `%[name]` operands.
fn substitute(asm: &str, ops: &BTreeMap<String, Operand>, fd: &FileDefs) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = asm;
    while let Some(i) = rest.find("%[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find(']').ok_or("unterminated %[")?;
        let name = &after[..end];
        let rep = match ops.get(name) {
            Some(Operand::Imm(n)) | Some(Operand::Addr(n)) => n.clone(),
            Some(Operand::Const(expr)) => fd
                .defs
                .eval(expr)
                .map_err(|e| format!("__imm_const({name}, {}): {e}", show(expr)))?
                .to_string(),
            Some(Operand::Other(form)) => return Err(format!("operand `{name}` is {form} (not converted)")),
            None => return Err(format!("`%[{name}]` has no input operand")),
        };
        out.push_str(&rep);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One statement or label per line, trimmed; labels flush left, the rest indented.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let is_label = l.split_once(':').is_some_and(|(a, _)| {
            !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '%' || c == '=')
        });
        if is_label {
            let (label, rest) = l.split_once(':').expect("checked");
            let rest = rest.trim();
            let _ =
                if rest.is_empty() { writeln!(out, "{label}:") } else { writeln!(out, "{label}: {rest}") };
        } else {
            let _ = writeln!(out, "    {l}");
        }
    }
    out
}

/// The summary of an import (Markdown), for the generated README and the command's output.
pub fn summary(imports: &[FileImport], opts: &ImportOptions, files_scanned: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Imported kernel selftests for profile {}\n", opts.profile);
    let _ = writeln!(
        o,
        "Generated by `lockstep import-selftests` from {}: the naked-asm verifier tests",
        opts.origin
    );
    let _ = writeln!(o, "(`tools/testing/selftests/bpf/progs/verifier_*.c`) that take a bpf_spin_lock or");
    let _ = writeln!(o, "bpf_res_spin_lock, with their own `__success`/`__failure`/`__msg` annotations as");
    let _ = writeln!(
        o,
        "expectations for profile `{}`. Do not edit the case files: re-run the import.\n",
        opts.profile
    );
    let total_lock: usize = imports.iter().map(|f| f.lock_tests()).sum();
    let total_conv: usize = imports.iter().map(|f| f.converted.len()).sum();
    let _ = writeln!(
        o,
        "{files_scanned} verifier_*.c files mention `spin_lock`; {} have tests that take a lock: {total_lock} tests, {total_conv} converted.",
        imports.len()
    );
    let _ = writeln!(
        o,
        "C-bodied tests can be checked as objects: `scripts/build-selftest-objects.sh {}`.\n",
        opts.profile
    );
    let _ = writeln!(o, "| file | tests | use a lock | converted |");
    let _ = writeln!(o, "|---|---|---|---|");
    for f in imports {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            f.file_name(),
            f.converted.len() + f.skipped.len(),
            f.lock_tests(),
            f.converted.len()
        );
    }
    for f in imports {
        let _ = writeln!(o, "\n## {}", f.file_name());
        if !f.converted.is_empty() {
            let _ = writeln!(o, "\nConverted:\n");
            for c in &f.converted {
                let e = c.case.expect.get(&opts.profile);
                let exp = e.map_or("-".to_string(), |e| {
                    if e.msgs.is_empty() {
                        e.verdict.as_str().to_string()
                    } else {
                        format!(
                            "{} {}",
                            e.verdict.as_str(),
                            e.msgs.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(" ")
                        )
                    }
                });
                let _ = writeln!(o, "- `{}` (line {}): {}", c.case.name, c.line, exp);
            }
        }
        let lock_skips: Vec<_> = f.skipped.iter().filter(|s| s.uses_lock).collect();
        if !lock_skips.is_empty() {
            let _ = writeln!(o, "\nNot converted (use a lock):\n");
            for s in lock_skips {
                let _ = writeln!(o, "- `{}` (line {}): {}", s.name, s.line, s.reason);
            }
        }
        let others = f.skipped.iter().filter(|s| !s.uses_lock).count();
        if others > 0 {
            let _ = writeln!(o, "\n{others} other tests in the file do not take a lock (not converted).");
        }
    }
    o
}

#[cfg(test)]
mod tests;
