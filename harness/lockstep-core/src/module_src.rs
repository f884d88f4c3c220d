//! Reads the test module's kfuncs from its C source (`kernel-module/lockstep_test.c`): the
//! `BTF_ID_FLAGS(func, NAME, FLAGS)` lines of each `BTF_KFUNCS_START(set)` block, the
//! `register_btf_kfunc_id_set(BPF_PROG_TYPE_*, &set)` calls, and each `__bpf_kfunc` signature.
//!
//! This is the model's view when no built `.ko` is at hand; a built module's `.BTF_ids` section
//! gives the flags the kernel will really see.

use std::collections::BTreeMap;

use crate::case::ProgType;
use crate::profile::{ModuleKfunc, ModuleKfuncs};

/// The lock-safe flag bit: `KF_SPIN_LOCK` (RFC) and `KF_SPINLOCK_SAFE` (7.3) are both `1 << 17`.
pub const LOCK_SAFE_FLAG: u32 = 1 << 17;

/// Kfunc flag names and values (include/linux/btf.h, 7.x).
const FLAG_NAMES: &[(&str, u32)] = &[
    ("KF_ACQUIRE", 1 << 0),
    ("KF_RELEASE", 1 << 1),
    ("KF_RET_NULL", 1 << 2),
    ("KF_TRUSTED_ARGS", 1 << 4),
    ("KF_SLEEPABLE", 1 << 5),
    ("KF_DESTRUCTIVE", 1 << 6),
    ("KF_RCU", 1 << 7),
    ("KF_SPIN_LOCK", LOCK_SAFE_FLAG),
    ("KF_SPINLOCK_SAFE", LOCK_SAFE_FLAG),
    ("LOCKSTEP_LOCK_SAFE", LOCK_SAFE_FLAG),
];

/// Errors reading the module source.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleSourceError {
    #[error("line {line}: unknown kfunc flag `{flag}`")]
    UnknownFlag { line: usize, flag: String },
    #[error("line {line}: unknown program type `{ty}` in register_btf_kfunc_id_set")]
    UnknownProgType { line: usize, ty: String },
    #[error("no BTF_ID_FLAGS lines found")]
    Empty,
}

fn prog_type_of(uapi_name: &str) -> Option<ProgType> {
    let n = uapi_name.strip_prefix("BPF_PROG_TYPE_")?.to_ascii_lowercase();
    ProgType::ALL.into_iter().find(|p| p.name() == n)
}

/// Parses the module source into its kfuncs (module name `lockstep_test`).
pub fn parse_module_source(src: &str) -> Result<ModuleKfuncs, ModuleSourceError> {
    let mut set_of: BTreeMap<String, String> = BTreeMap::new(); // kfunc -> id set
    let mut flags: BTreeMap<String, u32> = BTreeMap::new();
    let mut sigs: BTreeMap<String, (u8, bool, bool)> = BTreeMap::new();
    let mut kfunc_set_struct: BTreeMap<String, String> = BTreeMap::new(); // struct name -> id set
    let mut registered: BTreeMap<String, Vec<ProgType>> = BTreeMap::new(); // id set -> types
    let mut cur_set: Option<String> = None;
    let mut cur_struct: Option<String> = None;
    for (i, raw) in src.lines().enumerate() {
        let line = raw.trim();
        let ln = i + 1;
        if let Some(rest) =
            line.strip_prefix("BTF_KFUNCS_START(").or_else(|| line.strip_prefix("BTF_SET8_START("))
        {
            cur_set = Some(rest.trim_end_matches(')').trim().to_string());
        } else if line.starts_with("BTF_KFUNCS_END(") || line.starts_with("BTF_SET8_END(") {
            cur_set = None;
        } else if let Some(rest) = line.strip_prefix("BTF_ID_FLAGS(") {
            let parts: Vec<&str> = rest.trim_end_matches(')').splitn(3, ',').map(str::trim).collect();
            if parts.len() < 2 || parts[0] != "func" {
                continue;
            }
            let mut f = 0u32;
            for flag in parts
                .get(2)
                .map_or("", |s| s)
                .split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "0")
            {
                let v = FLAG_NAMES.iter().find(|(n, _)| *n == flag).map(|(_, v)| *v);
                f |= v.ok_or_else(|| ModuleSourceError::UnknownFlag { line: ln, flag: flag.to_string() })?;
            }
            flags.insert(parts[1].to_string(), f);
            if let Some(s) = &cur_set {
                set_of.insert(parts[1].to_string(), s.clone());
            }
        } else if let Some(rest) = line.strip_prefix("__bpf_kfunc ") {
            if let (Some(open), Some(close)) = (rest.find('('), rest.rfind(')')) {
                let head = &rest[..open];
                let name = head.rsplit([' ', '*']).next().unwrap_or("").to_string();
                let ret = head[..head.len() - name.len()].trim();
                let args = rest[open + 1..close].trim();
                let nargs = if args.is_empty() || args == "void" { 0 } else { args.split(',').count() as u8 };
                let scalar = !ret.contains('*') && ret != "void";
                sigs.insert(name, (nargs, scalar, ret == "void"));
            }
        } else if line.starts_with("static const struct btf_kfunc_id_set ") {
            cur_struct = line.split_whitespace().nth(4).map(str::to_string);
        } else if let (Some(st), Some(rest)) = (&cur_struct, line.strip_prefix(".set")) {
            let set = rest.trim_start_matches([' ', '=', '&']).trim_end_matches(',').trim().to_string();
            kfunc_set_struct.insert(st.clone(), set);
            cur_struct = None;
        } else if let Some(pos) = line.find("register_btf_kfunc_id_set(") {
            let rest = &line[pos + "register_btf_kfunc_id_set(".len()..];
            let parts: Vec<&str> =
                rest.trim_end_matches(';').trim_end_matches(')').split(',').map(str::trim).collect();
            if parts.len() == 2 {
                let ty = prog_type_of(parts[0]).ok_or_else(|| ModuleSourceError::UnknownProgType {
                    line: ln,
                    ty: parts[0].to_string(),
                })?;
                let st = parts[1].trim_start_matches('&').to_string();
                let set = kfunc_set_struct.get(&st).cloned().unwrap_or(st);
                registered.entry(set).or_default().push(ty);
            }
        }
    }
    if flags.is_empty() {
        return Err(ModuleSourceError::Empty);
    }
    let kfuncs = flags
        .into_iter()
        .map(|(name, f)| {
            let (args, returns_scalar, returns_void) = sigs.get(&name).copied().unwrap_or((0, false, false));
            let prog_types = set_of.get(&name).and_then(|s| registered.get(s)).cloned().unwrap_or_default();
            (name.clone(), ModuleKfunc { name, flags: f, prog_types, args, returns_scalar, returns_void })
        })
        .collect();
    Ok(ModuleKfuncs { module: "lockstep_test".into(), kfuncs })
}

/// The bundled test module's kfuncs, from the source compiled into this crate.
pub fn bundled() -> ModuleKfuncs {
    parse_module_source(include_str!("../../../kernel-module/lockstep_test.c"))
        .expect("bundled module source parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_module_has_flagged_and_unflagged_kfuncs() {
        let m = bundled();
        let safe = &m.kfuncs["lockstep_safe"];
        assert_eq!(safe.flags & LOCK_SAFE_FLAG, LOCK_SAFE_FLAG);
        assert!(safe.prog_types.contains(&ProgType::SchedCls));
        assert_eq!((safe.args, safe.returns_scalar), (1, true));
        assert_eq!(m.kfuncs["lockstep_unsafe"].flags, 0);
        let xdp = &m.kfuncs["lockstep_xdp_only_safe"];
        assert_eq!(xdp.prog_types, vec![ProgType::Xdp]);
        assert!(!m.kfuncs["lockstep_safe_ret_null"].returns_scalar);
        let release = &m.kfuncs["lockstep_safe_release"];
        assert!(release.returns_void && !release.returns_scalar);
        assert_eq!(
            release.flags & (crate::profile::KF_RELEASE | crate::profile::KF_ACQUIRE),
            crate::profile::KF_RELEASE
        );
        assert_eq!(
            m.kfuncs["lockstep_safe_acquire"].flags & 0x7,
            crate::profile::KF_ACQUIRE | crate::profile::KF_RET_NULL
        );
    }

    #[test]
    fn changing_a_flag_in_the_source_changes_the_result() {
        let src = include_str!("../../../kernel-module/lockstep_test.c").replace(
            "BTF_ID_FLAGS(func, lockstep_unsafe, 0)",
            "BTF_ID_FLAGS(func, lockstep_unsafe, LOCKSTEP_LOCK_SAFE)",
        );
        let m = parse_module_source(&src).unwrap();
        assert_eq!(m.kfuncs["lockstep_unsafe"].flags, LOCK_SAFE_FLAG);
    }

    #[test]
    fn unknown_flag_is_located() {
        let e = parse_module_source("x\nBTF_ID_FLAGS(func, f, KF_BOGUS)\n").unwrap_err();
        assert_eq!(e, ModuleSourceError::UnknownFlag { line: 2, flag: "KF_BOGUS".into() });
    }
}
