//! The spin-lock verifier model: an abstract interpreter over a documented subset of eBPF that
//! follows the verifier's exploration order (fall-through first, pushed branches popped last-in
//! first-out) and predicts its verdict on the lock rules for one [`KernelProfile`].
//!
//! Outside the subset it answers [`VerdictKind::Unsupported`](crate::verdict::VerdictKind) with
//! the reason, never a guess. Each lock rule, with the verifier.c function it comes from, is in
//! `docs/verifier-lock-rules.md`.

// `Reg` became `Copy` (branch speed3); the `.clone()` calls on registers written before stay,
// rather than an edit in every module while other branches add rules to them.
#![allow(clippy::clone_on_copy)]

mod access;
mod alloc;
mod arena;
mod attach;
mod btf_access;
mod callback_walk;
mod callbacks;
mod calls;
mod cfg;
mod conststr;
mod ctx;
mod exception_cb;
mod exec;
mod fields;
mod graph;
mod helpers_more;
mod helpers_plain;
mod inner;
mod irq;
mod kfunc_args;
mod kmem_arg;
mod kobj;
mod kptr;
mod kptr_store;
mod ksym;
mod license;
mod loops;
mod map_compat;
mod pkt;
mod precise;
mod prepared;
mod prune;
mod rbtree;
mod rcu;
mod scalar;
mod sleep;
mod sock;
mod special;
mod state;
mod structops;
mod throw;
mod timer;
mod tracing;
mod varoff;
mod vecmap;

pub use calls::kfunc_allowed_under_lock;
pub use prepared::Prepared;
pub use scalar::{CmpOp, Scalar};
pub use sock::SockKind;
pub use state::{ActiveLock, Frame, IrqFlag, LockKind, Reg, Stack, StackBytes, State, Trust};
pub use vecmap::VecMap;

use crate::case::Case;
use crate::profile::{KernelProfile, ModuleKfuncs};
use crate::verdict::Verdict;

/// Why a path stopped early.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// The verifier rejects at this instruction (None: before the main walk).
    Reject(Option<usize>, String),
    /// Outside the modelled subset.
    Unsupported(String),
}

pub(crate) type Step<T> = Result<T, Stop>;

/// At most this many instructions are walked over all paths before the model gives up.
pub const STEP_BUDGET: usize = 50_000;

/// One lock rule of the model, as a switch for [`ModelOptions::disabled`] (e.g. to give the
/// fuzzer's minimiser a deliberately wrong model to catch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Helper and kfunc calls with a lock held (`do_check_insn()`).
    CallUnderLock,
    /// Global subprogram calls with a lock held (`check_func_call()`).
    GlobalCallUnderLock,
    /// `BPF_EXIT` of the main program (or a global function) with a lock held.
    ExitWithLock,
    /// `BPF_LD_[ABS|IND]` with a lock held (`check_ld_abs()`).
    LdAbsUnderLock,
    /// A second `bpf_spin_lock` with one held (`process_spin_lock()`).
    DoubleLock,
    /// `bpf_spin_unlock` without a lock held (`process_spin_lock()`).
    UnlockWithoutLock,
    /// `bpf_spin_unlock` of another lock than the one held (`process_spin_lock()`).
    UnlockDifferentLock,
    /// The lock argument must point at the lock field with a constant offset (`process_spin_lock()`).
    LockOffset,
    /// Loads, stores and atomics must not touch the lock field (`check_map_access()`).
    DirectAccess,
    /// Socket-filter and tracing programs may not use maps with a lock (`check_map_prog_compatibility()`).
    ProgTypeCompat,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 10] = [
        Rule::CallUnderLock,
        Rule::GlobalCallUnderLock,
        Rule::ExitWithLock,
        Rule::LdAbsUnderLock,
        Rule::DoubleLock,
        Rule::UnlockWithoutLock,
        Rule::UnlockDifferentLock,
        Rule::LockOffset,
        Rule::DirectAccess,
        Rule::ProgTypeCompat,
    ];

    /// The snake_case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Rule::CallUnderLock => "call_under_lock",
            Rule::GlobalCallUnderLock => "global_call_under_lock",
            Rule::ExitWithLock => "exit_with_lock",
            Rule::LdAbsUnderLock => "ld_abs_under_lock",
            Rule::DoubleLock => "double_lock",
            Rule::UnlockWithoutLock => "unlock_without_lock",
            Rule::UnlockDifferentLock => "unlock_different_lock",
            Rule::LockOffset => "lock_offset",
            Rule::DirectAccess => "direct_access",
            Rule::ProgTypeCompat => "prog_type_compat",
        }
    }

    /// The rule named `name` (see [`Rule::name`]).
    pub fn by_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Options of [`check_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelOptions {
    /// Rules switched off: their check is skipped as if it passed.
    pub disabled: Vec<Rule>,
}

impl ModelOptions {
    /// Whether `rule` is checked.
    pub fn enabled(&self, rule: Rule) -> bool {
        !self.disabled.contains(&rule)
    }
}

/// vmlinux kfuncs the model handles by name that no profile's `kfuncs_under_lock` lists (so a case
/// may call them without declaring them unknown): the open-coded iterators of
/// [`loops::ITER_TYPES`], `bpf_timer_cancel_async` and the `bpf_wq` kfuncs.
pub fn modelled_kfuncs() -> Vec<String> {
    let mut v: Vec<String> = loops::ITER_TYPES
        .iter()
        .flat_map(|t| ["new", "next", "destroy"].map(|op| format!("bpf_iter_{}_{op}", t.name)))
        .collect();
    v.extend(
        ["bpf_timer_cancel_async", "bpf_wq_init", "bpf_wq_start", "bpf_wq_set_callback"].map(String::from),
    );
    v
}

/// Predicts the verdict of `profile`'s verifier on `case`. `module` holds the test module's kfuncs.
pub fn check(case: &Case, profile: &KernelProfile, module: &ModuleKfuncs) -> Verdict {
    check_with(case, profile, module, &ModelOptions::default())
}

/// [`check`] with options (rules switched off).
pub fn check_with(
    case: &Case,
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
) -> Verdict {
    check_prepared(&Prepared::new(case), profile, module, opts)
}

/// [`check_with`] on a case [`Prepared`] once for the checks under several profiles (the passes
/// that do not depend on the profile run once).
pub fn check_prepared(
    prep: &Prepared<'_>,
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
) -> Verdict {
    // A program of an object whose import found a construct lockstep does not represent.
    if let Some(why) = &prep.case().model_unsupported {
        return Verdict::unsupported(why.clone());
    }
    // btf_parse_fields() failed for a map (`special::record_error`): map_check_btf() (syscall.c,
    // the same in 6.12, 7.2 and 7.3) keeps the error record and creates the map without its
    // map-type checks, and every btf_record_has_field() on it is false afterwards (no lock, no
    // graph root, no kptr: check_map_access() sees plain memory, process_spin_lock() "map '%s'
    // has no valid bpf_spin_lock"). The model runs on a copy of the case whose such maps have no
    // special field (their integer members stay). Only a global data section's: a struct
    // with a special member and an error record fails BPF_BTF_LOAD already
    // (btf_parse_struct_metas(), the same three kernels), which exec.rs leaves unsupported.
    if prep.error_record_globals {
        let case = prepared::without_error_records(prep);
        return check_prepared(&Prepared::new(&case), profile, module, opts);
    }
    // Registers' interned values live as long as the outermost check on this thread.
    let _scope = state::interned::CheckScope::enter();
    match exec::Machine::new(prep, profile, module, opts).run() {
        Ok(()) => Verdict::accept(),
        Err(Stop::Reject(insn, msg)) => Verdict::reject(insn, msg),
        Err(Stop::Unsupported(why)) => Verdict::unsupported(why),
    }
}

#[cfg(test)]
mod test_fixtures;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_alloc;
#[cfg(test)]
mod tests_arena;
#[cfg(test)]
mod tests_async;
#[cfg(test)]
mod tests_attach;
#[cfg(test)]
mod tests_bitsiter;
#[cfg(test)]
mod tests_btf_access;
#[cfg(test)]
mod tests_callbacks;
#[cfg(test)]
mod tests_conststr;
#[cfg(test)]
mod tests_ctx;
#[cfg(test)]
mod tests_excb;
#[cfg(test)]
mod tests_externs;
#[cfg(test)]
mod tests_flow;
#[cfg(test)]
mod tests_graph;
#[cfg(test)]
mod tests_graph_records;
#[cfg(test)]
mod tests_helpers_more;
#[cfg(test)]
mod tests_helpers_plain;
#[cfg(test)]
mod tests_inner;
#[cfg(test)]
mod tests_insns;
#[cfg(test)]
mod tests_irq;
#[cfg(test)]
mod tests_kfunc_args;
#[cfg(test)]
mod tests_kptr_xchg;
#[cfg(test)]
mod tests_kptrload;
#[cfg(test)]
mod tests_ksymvar;
#[cfg(test)]
mod tests_license;
#[cfg(test)]
mod tests_localkptr;
#[cfg(test)]
mod tests_loops;
#[cfg(test)]
mod tests_loops73;
#[cfg(test)]
mod tests_loops73b;
#[cfg(test)]
mod tests_loops_cb;
#[cfg(test)]
mod tests_pktmisc;
#[cfg(test)]
mod tests_qdisc73;
#[cfg(test)]
mod tests_qdisc73b;
#[cfg(test)]
mod tests_rbtree;
#[cfg(test)]
mod tests_rcu;
#[cfg(test)]
mod tests_refs_atomics;
#[cfg(test)]
mod tests_res_lock;
#[cfg(test)]
mod tests_singles14;
#[cfg(test)]
mod tests_sleep;
#[cfg(test)]
mod tests_speed;
#[cfg(test)]
mod tests_structops;
#[cfg(test)]
mod tests_tasks;
#[cfg(test)]
mod tests_tracing;
