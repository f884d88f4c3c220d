//! Callbacks: the address of a subprogram loaded with `ld_imm64` (`BPF_PSEUDO_FUNC`,
//! `check_ld_imm()` -> `PTR_TO_FUNC`) and the helpers that take one (`bpf_loop`,
//! `bpf_for_each_map_elem`, `bpf_timer_set_callback`, ...; `check_helper_call()` ->
//! `push_callback_call()`).
//!
//! The lock rule for these calls is the one for every helper (`do_check_insn()`: a call with a
//! lock held is refused before `check_helper_call()` looks at the callback), which
//! `calls.rs` applies. The bodies of `bpf_loop` and `bpf_for_each_map_elem` callbacks are walked
//! (`callback_walk.rs`), `bpf_timer_set_callback`'s async callback too (`timer.rs`); the other
//! callback helpers called without a lock held are `unsupported`, naming the helper.

use super::state::Reg;
use super::{Step, Stop};
use crate::insn::Insn;

/// Helpers whose argument is a callback (`is_callback_calling_function()` in verifier.c, the
/// same five in 6.12, 7.2 and 7.3: the sync ones, then `bpf_timer_set_callback`).
const CALLBACK_HELPERS: [&str; 5] =
    ["bpf_for_each_map_elem", "bpf_find_vma", "bpf_loop", "bpf_user_ringbuf_drain", "bpf_timer_set_callback"];

/// Whether helper `name` takes a callback.
pub(crate) fn takes_callback(name: &str) -> bool {
    CALLBACK_HELPERS.contains(&name)
}

/// The `unsupported` reason for a callback helper the walk reaches without a lock held.
pub(crate) fn callback_unsupported(name: &str) -> Stop {
    Stop::Unsupported(format!(
        "helper {name}: its callback (push_callback_call()) is not modelled, only the lock rule for the call"
    ))
}

/// Whether the kernel gets BTF func_info with `case`: lockstep's loader passes it for a case with
/// global functions or one naming a local type's id (lockstep-bpf's `progbtf`); libbpf passes an
/// object's `.BTF.ext` func_info for every program whenever the object has it.
pub(crate) fn has_btf_func_info(case: &crate::case::Case) -> bool {
    !case.globals.is_empty()
        || case.object.as_ref().is_some_and(|o| o.func_info)
        || case.types.iter().any(|t| t.btf_id.is_some())
}

/// `check_ld_imm()` for `BPF_PSEUDO_FUNC` (the same in 6.12, 7.2 and 7.3): without BTF
/// func_info ([`has_btf_func_info`]) "missing btf
/// func_info"; a global target "callback function not static"; the main program "callback
/// function cannot be the main program"; else `PTR_TO_FUNC` pointing at the subprogram
/// `pc + imm + 1` (`add_subprog()` checked the target before the walk). `has_func_info`: the
/// case has global functions; `is_global`: whether a start instruction is a global function's.
pub(crate) fn func_ref(
    pc: usize,
    insn: Insn,
    has_func_info: bool,
    is_global: impl Fn(usize) -> bool,
) -> Step<Reg> {
    let reject = |msg: &str| Err(Stop::Reject(Some(pc), msg.to_string()));
    if !has_func_info {
        return reject("missing btf func_info");
    }
    let start = usize::try_from(pc as i64 + insn.imm as i64 + 1)
        .map_err(|_| Stop::Unsupported(format!("callback reference at {pc} before the program")))?;
    if is_global(start) {
        return reject("callback function not static");
    }
    if start == 0 {
        return reject("callback function cannot be the main program");
    }
    Ok(Reg::Func { start })
}
