//! `extern ... __ksym` functions used as values (`bpf_ksym_exists(kfunc)`): the `ld_imm64` the
//! kernel receives from libbpf and the register `check_ld_imm()` gives it.
//!
//! libbpf (`bpf_object__resolve_ksym_func_btf_id()`): the extern's name without its `___flavour`
//! suffix (`bpf_core_essential_name_len()`) is looked up as a FUNC in vmlinux BTF, then in the
//! modules' (`find_ksym_btf_id()`); found, its prototype must be compatible with the local one
//! (`bpf_core_types_are_compat()`). Resolved, `bpf_object__relocate_data()` writes
//! `BPF_PSEUDO_BTF_ID` with the FUNC's id; not resolved and `__weak`, the constant 0; not resolved
//! and strong, libbpf refuses the object (no kernel load at all).
//!
//! The kernel (`check_pseudo_btf_id()`, same in 6.12, 7.2, 7.3): a FUNC is `PTR_TO_MEM |
//! MEM_RDONLY` with `mem_size` 0, never null (`reg_not_null()` lists `PTR_TO_MEM`), so
//! `if (r == 0)` on it is decided by `is_branch_taken()`; the constant 0 is a known scalar.

use super::scalar::Scalar;
use super::state::Reg;
use super::Stop;
use crate::kernel_btf::KernelBtf;

/// The name libbpf resolves: `name` up to its last `___flavour` separator
/// (`bpf_core_essential_name_len()`: `x___y` where neither `x` nor `y` ends/starts with `_`).
pub(super) fn essential_name(name: &str) -> &str {
    let b = name.as_bytes();
    let n = b.len();
    if n >= 5 {
        for i in (0..=n - 5).rev() {
            if b[i] != b'_' && &b[i + 1..i + 4] == b"___" && b[i + 4] != b'_' {
                return &name[..i + 1];
            }
        }
    }
    name
}

/// `name` (a kfunc call's), or the kfunc [`flavoured_kfunc`] resolves it to. Kept out of line:
/// the caller, `Machine::call()`, is on the walk's hot path (and calls it only for a case with a
/// flavoured kfunc, `Prepared::flavoured_kfuncs`).
#[inline(never)]
pub(super) fn resolved_kfunc_name<'n>(
    profile: &crate::profile::KernelProfile,
    program: &'n crate::asm::Program,
    name: Option<&'n str>,
) -> Result<Option<&'n str>, Stop> {
    let Some(n) = name.filter(|n| has_flavour_separator(n)) else { return Ok(name) };
    let kbtf = profile.kernel_btf.0.as_deref();
    Ok(Some(flavoured_kfunc(kbtf, program, n)?.unwrap_or(n)))
}

/// Whether `name` holds `___` (a candidate for [`essential_name`]), without the cost of a
/// substring search.
pub(super) fn has_flavour_separator(name: &str) -> bool {
    let mut run = 0;
    for &b in name.as_bytes() {
        run = if b == b'_' { run + 1 } else { 0 };
        if run == 3 {
            return true;
        }
    }
    false
}

/// The register an `ld_imm64` of the `__ksym` function `name` loads on the kernel `kbtf`
/// describes (`weak`: the extern is `__weak`; `proto`: its local prototype's
/// [`crate::import::btf::Btf::compat_shape`]).
pub(super) fn ksym_func_reg(
    kbtf: Option<&KernelBtf>,
    name: &str,
    weak: bool,
    proto: &str,
) -> Result<Reg, Stop> {
    let unsupported =
        |why: String| Stop::Unsupported(format!("__ksym function `{name}` used as a value: {why}"));
    let kbtf = kbtf.ok_or_else(|| unsupported("no kernel BTF to resolve it in".into()))?;
    let essent = essential_name(name);
    let found = kbtf
        .ksym_func(essent)
        .map_err(|()| unsupported(format!("`{essent}` is not a vmlinux FUNC and no module BTF was read")))?;
    let resolved = found.is_some_and(|(_, shape)| shape == proto);
    if resolved {
        return Ok(Reg::Mem { size: 0, rdonly: true, id: 0, parent: 0, null: false });
    }
    if !weak {
        return Err(unsupported("not resolved and not __weak (libbpf refuses the object)".into()));
    }
    Ok(Reg::Scalar(Scalar::known(0)))
}

/// The kfunc a call to the `extern ... __ksym` function `name` reaches the verifier as, when
/// `name` carries a `___flavour` suffix (`None`: it carries none, the call is `name` itself).
///
/// libbpf (`bpf_object__resolve_ksym_func_btf_id()`, the same code as for a value above): the
/// essential name is looked up in vmlinux, then module BTF, and the FUNC's prototype must be
/// compatible with the extern's local one (`bpf_core_types_are_compat()`); resolved,
/// `bpf_object__relocate_data()` gives the call the kernel FUNC's id, so `check_kfunc_call()`
/// judges the essential kfunc. Not resolved, a `__weak` extern's call is poisoned into a call of
/// an invalid helper (`poison_kfunc_call()`) and a strong one fails the load: neither is
/// modelled. The local prototype is the one of an `ld_imm64` of the same extern in `program`
/// (`bpf_ksym_exists()`, how a flavoured kfunc is guarded); a case without one is unsupported.
pub(super) fn flavoured_kfunc<'n>(
    kbtf: Option<&KernelBtf>,
    program: &crate::asm::Program,
    name: &'n str,
) -> Result<Option<&'n str>, Stop> {
    let essent = essential_name(name);
    if essent.len() == name.len() {
        return Ok(None);
    }
    let unsupported =
        |why: &str| Stop::Unsupported(format!("kfunc call to `{name}` (a ___flavour name): {why}"));
    let proto = program.relocs.values().find_map(|r| match r {
        crate::asm::Reloc::KsymFunc { name: n, proto, .. } if n == name => Some(proto),
        _ => None,
    });
    let proto = proto.ok_or_else(|| unsupported("no ld_imm64 of the extern gives its local prototype"))?;
    let kbtf = kbtf.ok_or_else(|| unsupported("no kernel BTF to resolve it in"))?;
    match kbtf.ksym_func(essent) {
        Ok(Some((_, shape))) if shape == *proto => Ok(Some(essent)),
        Ok(_) => Err(unsupported("not resolved (libbpf poisons the call or refuses the object)")),
        Err(()) => Err(unsupported("not a vmlinux FUNC and no module BTF was read")),
    }
}

/// The register an `ld_imm64` of the typed `__ksym` variable `name` loads (`weak`: the extern is
/// `__weak`; `shape`: its local type's [`crate::import::btf::Btf::compat_shape`]).
///
/// libbpf (`bpf_object__resolve_ksym_var_btf_id()`): the VAR `name` in vmlinux BTF (modules'
/// variables are not looked up here: unsupported); found, its type must be compatible with the
/// local one (`bpf_core_types_are_compat()`, else libbpf refuses the object); not found and
/// `__weak`, the constant 0 (`bpf_object__relocate_data()`: an unresolved typed ksym is loaded
/// as its address, 0). The kernel (`__check_pseudo_btf_id()`, same in 6.12, 7.2, 7.3): a variable
/// of the `.data..percpu` DATASEC is `PTR_TO_BTF_ID | MEM_PERCPU` of the VAR's type
/// ([`Reg::Percpu`]); another non-struct one `PTR_TO_MEM | MEM_RDONLY` of its size; a struct
/// `PTR_TO_BTF_ID` (not modelled here).
pub(super) fn ksym_var_reg(
    kbtf: Option<&KernelBtf>,
    name: &str,
    weak: bool,
    shape: &str,
) -> Result<Reg, Stop> {
    let unsupported =
        |why: String| Stop::Unsupported(format!("typed __ksym variable `{name}`: {why} is not modelled"));
    let kbtf = kbtf.ok_or_else(|| unsupported("without the kernel's BTF to resolve it in".into()))?;
    let Some(var) = kbtf.ksym_var(name) else {
        if weak {
            return Ok(Reg::Scalar(Scalar::known(0)));
        }
        return Err(unsupported("a variable not in vmlinux BTF (a module's, or libbpf refuses it)".into()));
    };
    if var.shape != shape {
        return Err(unsupported(format!(
            "a local type ({shape}) other than the kernel's ({}) (bpf_core_types_are_compat())",
            var.shape
        )));
    }
    if var.percpu {
        return Ok(Reg::Percpu { btf_id: var.ty });
    }
    match (var.is_struct, var.size) {
        (false, Some(size)) => Ok(Reg::Mem { size, rdonly: true, id: 0, parent: 0, null: false }),
        (true, _) => Err(unsupported("a struct (check_pseudo_btf_id(): PTR_TO_BTF_ID)".into())),
        (false, None) => {
            Err(unsupported("a type whose size the model does not resolve (btf_resolve_size())".into()))
        }
    }
}
