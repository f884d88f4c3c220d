//! Deriving a profile's lock rule for calls from a kernel's own source (`lockstep profiles derive`):
//! the shape of `kfunc_spin_allowed()` in `kernel/bpf/verifier.c` (a hard-coded list of
//! `is_bpf_*_kfunc()` predicates, a `KF_*` flag test, or both), the flag's value from
//! `include/linux/btf.h`, the kfuncs on the list (`special_kfunc_list[KF_<name>]` in the
//! predicates) or carrying the flag (`BTF_ID_FLAGS(func, <name>, ... FLAG ...)`), and the helpers
//! allowed by the lock check in `do_check_insn()`. A shape it does not know is an error quoting
//! the code, never a guess. Pure: the caller reads the files.

use std::collections::BTreeSet;

use crate::profile::KfuncLockRule;

/// What the source says about calls under a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedLockRule {
    pub rule: KfuncLockRule,
    /// The flag's name and value (`KF_SPINLOCK_SAFE`, `1 << 17`), for the flag shapes.
    pub flag: Option<(String, u32)>,
    /// The kfuncs on the hard-coded list, and (flag shapes) the vmlinux kfuncs carrying the flag.
    pub kfuncs_under_lock: BTreeSet<String>,
    /// The helpers the lock check lets through (`bpf_spin_unlock`, ...).
    pub helpers_under_lock: Vec<String>,
}

/// Why a derivation failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("verifier.c: no function {0}()")]
    NoFunction(String),
    #[error("verifier.c: unknown shape of {what}:\n{code}")]
    UnknownShape { what: String, code: String },
    #[error("btf.h: no #define {0} (1 << N)")]
    NoFlag(String),
}

/// The body (between the outer braces) of C function `name` defined in `src`.
fn function_body<'a>(src: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = src[from..].find(name).map(|i| i + from) {
        from = at + name.len();
        let before_ok =
            at == 0 || !src.as_bytes()[at - 1].is_ascii_alphanumeric() && src.as_bytes()[at - 1] != b'_';
        let rest = &src[from..];
        // A definition: `name(...)` then `{` with no `;` between (a declaration or a call has one).
        if !before_ok || !rest.starts_with('(') {
            continue;
        }
        let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
        if !src[line_start..at].trim_start().starts_with("static") && !src[line_start..at].contains("bool") {
            continue;
        }
        let open = rest.find('{')?;
        if rest[..open].contains(';') {
            continue;
        }
        let body_start = from + open + 1;
        let mut depth = 1;
        for (i, c) in src[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&src[body_start..body_start + i]);
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    None
}

/// Identifiers matching `prefix<word chars>suffix` in `text`, in order, without duplicates.
fn idents(text: &str, prefix: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix).map(|i| i + from) {
        let start = at + prefix.len();
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |i| start + i);
        from = end.max(start);
        let word_ok = at == 0 || !text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if word_ok && text[end..].starts_with(suffix) {
            let id = text[at..end].to_string();
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// The `KF_<name>` kfuncs a predicate accepts, following nested `is_*_kfunc()` predicates.
fn predicate_kfuncs(
    src: &str,
    pred: &str,
    seen: &mut BTreeSet<String>,
) -> Result<BTreeSet<String>, DeriveError> {
    let mut out = BTreeSet::new();
    if !seen.insert(pred.to_string()) {
        return Ok(out);
    }
    let body = function_body(src, pred).ok_or_else(|| DeriveError::NoFunction(pred.to_string()))?;
    for id in idents(body, "special_kfunc_list[KF_", "]") {
        out.insert(id.trim_start_matches("special_kfunc_list[KF_").to_string());
    }
    for id in idents(body, "KF_", "]") {
        out.insert(id.trim_start_matches("KF_").to_string());
    }
    for nested in idents(body, "is_", "(").into_iter().filter(|n| n.ends_with("_kfunc")) {
        out.extend(predicate_kfuncs(src, &nested, seen)?);
    }
    if out.is_empty() {
        return Err(DeriveError::UnknownShape {
            what: format!("{pred}() (no special_kfunc_list entries)"),
            code: body.trim().to_string(),
        });
    }
    Ok(out)
}

/// The value of `#define NAME (1 << N)` (or a plain number) in `btf_h`.
fn flag_value(btf_h: &str, name: &str) -> Option<u32> {
    btf_h.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("#define")?.trim_start().strip_prefix(name)?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let v = rest.split("/*").next()?.trim().trim_start_matches('(').trim_end_matches(')');
        match v.split_once("<<") {
            Some((a, b)) => Some(a.trim().parse::<u32>().ok()? << b.trim().parse::<u32>().ok()?),
            None if v.starts_with("0x") => u32::from_str_radix(&v[2..], 16).ok(),
            None => v.parse().ok(),
        }
    })
}

/// The kfuncs `BTF_ID_FLAGS(func, <name>, ...)` flags with `flag` in one C file.
pub fn flagged_kfuncs(c_src: &str, flag: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = c_src[from..].find("BTF_ID_FLAGS(").map(|i| i + from) {
        let start = at + "BTF_ID_FLAGS(".len();
        let Some(end) = c_src[start..].find(')').map(|i| start + i) else { break };
        from = end;
        let args: Vec<&str> = c_src[start..end].split(',').map(str::trim).collect();
        if args.len() >= 3
            && args[0] == "func"
            && args[2..].iter().any(|a| a.split('|').any(|f| f.trim() == flag))
        {
            out.insert(args[1].to_string());
        }
    }
    out
}

/// The helpers `do_check_insn()`'s lock check lets through: the `BPF_FUNC_*` it compares
/// `insn->imm` against just before "function calls are not allowed while holding a lock".
fn helpers_under_lock(verifier_c: &str) -> Result<Vec<String>, DeriveError> {
    const MSG: &str = "function calls are not allowed while holding a lock\\n";
    let at = verifier_c.find(MSG).ok_or_else(|| DeriveError::UnknownShape {
        what: "the lock check for calls".into(),
        code: format!("no \"{MSG}\" message"),
    })?;
    let before = &verifier_c[..at];
    let cond_start = before.rfind("if (").unwrap_or(0);
    let cond = &before[cond_start..];
    let helpers: Vec<String> = idents(cond, "BPF_FUNC_", "")
        .into_iter()
        .map(|h| format!("bpf_{}", &h["BPF_FUNC_".len()..]))
        .collect();
    if !cond.contains("insn->imm != BPF_FUNC_") || helpers.is_empty() {
        return Err(DeriveError::UnknownShape {
            what: "the helper allow-list of the lock check".into(),
            code: cond.trim().to_string(),
        });
    }
    Ok(helpers)
}

/// Derives the lock rule for calls from `verifier.c`, `btf.h` and the C files that define kfuncs
/// (`kernel/**/*.c`; only needed for the flag shapes).
pub fn derive(verifier_c: &str, btf_h: &str, kfunc_sources: &[&str]) -> Result<DerivedLockRule, DeriveError> {
    let body = function_body(verifier_c, "kfunc_spin_allowed")
        .ok_or_else(|| DeriveError::NoFunction("kfunc_spin_allowed".into()))?;
    let preds: Vec<String> = idents(body, "is_", "(").into_iter().filter(|n| n.ends_with("_kfunc")).collect();
    // The flag test: `... & KF_<FLAG>` on the kfunc's flags.
    let flags: Vec<String> =
        idents(body, "KF_", "").into_iter().filter(|f| body.contains(&format!("& {f}"))).collect();
    let unknown = |what: &str| DeriveError::UnknownShape { what: what.into(), code: body.trim().to_string() };
    if flags.len() > 1 {
        return Err(unknown("kfunc_spin_allowed() (several flags)"));
    }
    let flag = match flags.first() {
        Some(f) => Some((f.clone(), flag_value(btf_h, f).ok_or_else(|| DeriveError::NoFlag(f.clone()))?)),
        None => None,
    };
    let rule = match (preds.is_empty(), &flag) {
        (false, None) => KfuncLockRule::VmlinuxList,
        (false, Some(_)) => KfuncLockRule::ListOrFlag,
        (true, Some(_)) => KfuncLockRule::Flag,
        (true, None) => {
            return Err(unknown("kfunc_spin_allowed() (neither a predicate list nor a flag test)"))
        }
    };
    let mut kfuncs = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for p in &preds {
        kfuncs.extend(predicate_kfuncs(verifier_c, p, &mut seen)?);
    }
    if let Some((f, _)) = &flag {
        for src in kfunc_sources {
            kfuncs.extend(flagged_kfuncs(src, f));
        }
    }
    Ok(DerivedLockRule {
        rule,
        flag,
        kfuncs_under_lock: kfuncs,
        helpers_under_lock: helpers_under_lock(verifier_c)?,
    })
}

/// A profile file: `base_toml` (a bundled profile's text) with the derived lock-rule keys
/// (`helpers_under_lock`, `kfunc_rule`, `kfunc_flag`, `kfuncs_under_lock`) and `name`, `source`,
/// `kernel` replaced; everything else is the base's, as the header says.
pub fn render_profile(
    base_toml: &str,
    base_name: &str,
    name: &str,
    source: &str,
    d: &DerivedLockRule,
) -> String {
    const REPLACED: [&str; 7] =
        ["name", "source", "kernel", "helpers_under_lock", "kfunc_rule", "kfunc_flag", "kfuncs_under_lock"];
    let quote = |v: &[String]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let rule = match d.rule {
        KfuncLockRule::VmlinuxList => "vmlinux_list",
        KfuncLockRule::ListOrFlag => "list_or_flag",
        KfuncLockRule::Flag => "flag",
    };
    let mut out = format!(
        "# Derived by `lockstep profiles derive` from {source}: review before use.\n\
         # Derived from the source: helpers_under_lock, kfunc_rule, kfunc_flag, kfuncs_under_lock.\n\
         # Everything else is copied from the bundled profile {base_name} (not derived).\n\
         name = \"{name}\"\nsource = \"{source}\"\n\
         # do_check_insn(): the helpers the lock check lets through\n\
         helpers_under_lock = [{}]\n\
         # kfunc_spin_allowed()\n\
         kfunc_rule = \"{rule}\"\n",
        quote(&d.helpers_under_lock)
    );
    if let Some((f, v)) = &d.flag {
        out.push_str(&format!("# {f} in include/linux/btf.h\nkfunc_flag = {v}\n"));
    }
    let kf: Vec<String> = d.kfuncs_under_lock.iter().cloned().collect();
    out.push_str("kfuncs_under_lock = [\n");
    for chunk in kf.chunks(4) {
        out.push_str(&format!("  {},\n", quote(chunk)));
    }
    out.push_str("]\n");
    // The base's other keys, without its header comments, the replaced keys and their comments.
    let mut skipping = false;
    let mut depth = 0i32;
    let mut started = false;
    let mut pending: Vec<&str> = Vec::new();
    for line in base_toml.lines() {
        let t = line.trim_start();
        if !started {
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
            started = true;
        }
        if depth == 0 && t.starts_with('#') {
            pending.push(line);
            continue;
        }
        if depth == 0 {
            let key = t.split('=').next().unwrap_or("").trim();
            skipping = t.contains('=') && REPLACED.contains(&key) && !t.starts_with('[');
            if !skipping {
                for p in pending.drain(..) {
                    out.push_str(p);
                    out.push('\n');
                }
            }
            pending.clear();
        }
        let code = line.split('#').next().unwrap_or("");
        depth += code.matches('[').count() as i32 - code.matches(']').count() as i32;
        if line.starts_with('[') {
            depth = 0;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_SHAPE: &str = r#"
static bool is_bpf_list_api_kfunc(u32 btf_id)
{
	return btf_id == special_kfunc_list[KF_bpf_list_pop_front] ||
	       btf_id == special_kfunc_list[KF_bpf_list_pop_back];
}

static bool is_bpf_graph_api_kfunc(u32 btf_id)
{
	return is_bpf_list_api_kfunc(btf_id) ||
	       btf_id == special_kfunc_list[KF_bpf_refcount_acquire_impl];
}

static bool kfunc_spin_allowed(u32 btf_id)
{
	return is_bpf_graph_api_kfunc(btf_id);
}

static int do_check_insn(struct bpf_verifier_env *env, bool *do_print_state)
{
			if (env->cur_state->active_locks) {
				if ((insn->src_reg == BPF_REG_0 &&
				     insn->imm != BPF_FUNC_spin_unlock &&
				     insn->imm != BPF_FUNC_kptr_xchg) ||
				    (insn->src_reg == BPF_PSEUDO_KFUNC_CALL &&
				     (insn->off != 0 || !kfunc_spin_allowed(insn->imm)))) {
					verbose(env,
						"function calls are not allowed while holding a lock\n");
"#;

    const FLAG_SHAPE: &str = r#"
static bool kfunc_spin_allowed(struct bpf_verifier_env *env, s32 func_id, s16 offset)
{
	struct bpf_kfunc_meta kfunc;
	int err;

	err = fetch_kfunc_meta(env, func_id, offset, &kfunc);
	if (err || !kfunc.flags)
		return false;

	return *kfunc.flags & KF_SPINLOCK_SAFE;
}
			if (env->cur_state->active_locks) {
				if ((insn->src_reg == BPF_REG_0 &&
				     insn->imm != BPF_FUNC_spin_unlock) ||
				    (insn->src_reg == BPF_PSEUDO_KFUNC_CALL &&
				     !kfunc_spin_allowed(env, insn->imm, insn->off))) {
					verbose(env,
						"function calls are not allowed while holding a lock\n");
"#;

    const BTF_H: &str = "#define KF_RCU (1 << 7)\n#define KF_SPINLOCK_SAFE (1 << 17) /* allowed */\n";

    #[test]
    fn the_list_shape() {
        let d = derive(LIST_SHAPE, BTF_H, &[]).unwrap();
        assert_eq!(d.rule, KfuncLockRule::VmlinuxList);
        assert_eq!(d.flag, None);
        assert_eq!(
            d.kfuncs_under_lock.iter().map(String::as_str).collect::<Vec<_>>(),
            ["bpf_list_pop_back", "bpf_list_pop_front", "bpf_refcount_acquire_impl"]
        );
        assert_eq!(d.helpers_under_lock, ["bpf_spin_unlock", "bpf_kptr_xchg"]);
    }

    #[test]
    fn the_flag_shape_reads_the_flag_and_the_flagged_kfuncs() {
        let helpers_c = "BTF_ID_FLAGS(func, bpf_list_push_front, KF_IMPLICIT_ARGS | KF_SPINLOCK_SAFE)\n\
                         BTF_ID_FLAGS(func, bpf_obj_new,\n\t     KF_ACQUIRE | KF_RET_NULL)\n\
                         BTF_ID_FLAGS(func, bpf_refcount_acquire_impl,\n\t     KF_ACQUIRE | KF_SPINLOCK_SAFE)\n";
        let d = derive(FLAG_SHAPE, BTF_H, &[helpers_c]).unwrap();
        assert_eq!(d.rule, KfuncLockRule::Flag);
        assert_eq!(d.flag, Some(("KF_SPINLOCK_SAFE".into(), 1 << 17)));
        assert_eq!(
            d.kfuncs_under_lock.iter().map(String::as_str).collect::<Vec<_>>(),
            ["bpf_list_push_front", "bpf_refcount_acquire_impl"]
        );
        assert_eq!(d.helpers_under_lock, ["bpf_spin_unlock"]);
    }

    #[test]
    fn unknown_shapes_are_reported() {
        let odd = LIST_SHAPE.replace("return is_bpf_graph_api_kfunc(btf_id);", "return btf_id < 100;");
        let e = derive(&odd, BTF_H, &[]).unwrap_err();
        assert!(matches!(&e, DeriveError::UnknownShape { code, .. } if code.contains("btf_id < 100")), "{e}");
        assert_eq!(
            derive("int x;", BTF_H, &[]).unwrap_err(),
            DeriveError::NoFunction("kfunc_spin_allowed".into())
        );
        assert_eq!(derive(FLAG_SHAPE, "", &[]).unwrap_err(), DeriveError::NoFlag("KF_SPINLOCK_SAFE".into()));
    }

    #[test]
    fn the_rendered_profile_parses_and_carries_the_derived_rule() {
        let base = crate::profile::KernelProfile::by_name("7.2").unwrap();
        let src = include_str!("../profiles/7.2.toml");
        let d = derive(FLAG_SHAPE, BTF_H, &["BTF_ID_FLAGS(func, bpf_list_push_front, KF_SPINLOCK_SAFE)"])
            .unwrap();
        let text = render_profile(src, "7.2", "derived", "a tree", &d);
        let p = crate::profile::KernelProfile::from_toml("derived", &text).unwrap();
        assert_eq!((p.name.as_str(), p.kernel.as_deref()), ("derived", None));
        assert_eq!((p.kfunc_rule.clone(), p.kfunc_flag), (KfuncLockRule::Flag, Some(1 << 17)));
        assert_eq!(p.kfuncs_under_lock, ["bpf_list_push_front"]);
        assert_eq!(p.helpers_under_lock, ["bpf_spin_unlock"]);
        assert_eq!(p.messages, base.messages);
        assert_eq!(p.tracing_res_spin_lock, base.tracing_res_spin_lock);
    }
}
