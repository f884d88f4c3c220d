//! Kernel profiles: what one kernel's verifier says and allows about bpf_spin_lock, as data.
//!
//! Each profile is a TOML file under `harness/lockstep-core/profiles/`, compiled in. Its messages
//! are the kernel's format strings (placeholders `{reg}`, `{map}`, `{off}`, `{lock_off}`, `{lock}`,
//! `{kind}`, `{size}`, `{value_size}` are filled in by the model); its call rules and kfunc lists
//! are taken from that kernel's `kernel/bpf/verifier.c` (each entry cites the function).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::case::ProgType;

/// How a kernel decides whether a kfunc may be called while a bpf_spin_lock is held
/// (`do_check_insn()` / `kfunc_spin_allowed()`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KfuncLockRule {
    /// Only vmlinux kfuncs (`insn->off == 0`) on a hard-coded list (6.12, 7.2).
    VmlinuxList,
    /// The hard-coded list, or any kfunc (vmlinux or module) whose BTF id-set flags carry
    /// `flag_bit` for the program's type (7.2 + the KF_SPIN_LOCK RFC).
    ListOrFlag,
    /// Only the flag (7.3's KF_SPINLOCK_SAFE; the old list is flagged instead).
    Flag,
}

/// The message catalogue of a profile (format strings with `{...}` placeholders).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    pub call_under_lock: String,
    pub global_call_under_lock: String,
    pub exit_with_lock: String,
    pub ld_abs_under_lock: String,
    pub double_lock: String,
    pub unlock_without_lock: String,
    pub unlock_different_lock: String,
    /// `process_spin_lock()` (7.x): an unlock of a held lock that is not the last taken.
    #[serde(default)]
    pub unlock_out_of_order: String,
    /// `process_spin_lock()` (7.x): a `bpf_res_spin_lock` already held on this path.
    #[serde(default)]
    pub aa_deadlock: String,
    /// `check_kfunc_args()`: a maybe-null pointer for a kfunc argument that must not be NULL.
    #[serde(default)]
    pub kfunc_arg_maybe_null: String,
    /// `check_kfunc_args()` (7.x): a `KF_RELEASE` kfunc's argument carries no reference.
    #[serde(default)]
    pub kfunc_release_unreferenced: String,
    pub non_const_offset: String,
    pub map_without_btf: String,
    pub no_lock_in_map: String,
    pub wrong_lock_offset: String,
    pub socket_filter_lock: String,
    pub tracing_lock: String,
    pub direct_access: String,
    /// `check_map_access()`, kptr fields (`{kind}`: `btf_field_type_name()`; 6.12 prints `kptr`).
    pub kptr_var_off: String,
    /// `check_map_access()`: `{expected}` is the field's offset, `{off}` the access's.
    pub kptr_misaligned: String,
    /// `check_map_access()`: a kptr load/store of another size than 8.
    pub kptr_size: String,
    pub reg_type_mismatch: String,
    /// `btf_check_func_arg_match()`: a global function's int argument is not a scalar.
    pub global_arg_not_scalar: String,
    pub not_read_ok: String,
    pub map_value_oob: String,
    /// `check_mem_region_access()`: the pointer's smin (plus the access offset) is negative.
    pub min_negative: String,
    /// `check_mem_region_access()`: the pointer's umax is at least `BPF_MAX_VAR_OFF`.
    pub unbounded_access: String,
    /// `check_generic_ptr_alignment()` for a map value under strict alignment (atomics).
    pub misaligned_access: String,
    pub invalid_mem_access: String,
    /// `check_func_arg()`: an unreferenced pointer passed to a release helper (`bpf_sk_release`).
    pub release_unreferenced: String,
    /// `mem_types` as `check_reg_type()` lists them after "expected=" (7.x adds `ctx`).
    pub mem_types: String,
    pub stack_read_uninit: String,
    pub stack_indirect_uninit: String,
    pub ptr_unbounded_min: String,
    /// `check_reg_sane_offset_scalar()`: the offset's smin is beyond `BPF_MAX_VAR_OFF`.
    pub ptr_offset_oob: String,
    pub ptr_arith_null: String,
    pub ld_abs_prog_type: String,
    pub ld_abs_r6: String,
    pub kfunc_not_allowed: String,
    pub helper_prog_type: String,
    pub syscall_not_sleepable: String,
    /// `check_kfunc_args()`: a `rdonly_buf_size` / `rdwr_buf_size` constant above `U32_MAX`
    /// (7.2: "rdonly/rdwr_buf_size exceeds u32 max"; 7.3: "allocation size exceeds u32 max", in
    /// `process_const_alloc_mem_size()`); empty: not read from this kernel, `unsupported`.
    #[serde(default)]
    pub kfunc_alloc_size_too_big: String,
    /// `process_iter_arg()` -> `is_iter_reg_valid_init()`: an iterator next / destroy on a stack
    /// slot holding no iterator ({name}: the iterator's type, `bits`; {reg}: `R1`, {arg}: `0`):
    /// "as arg #{arg}" in 6.12, "as {reg}" in 7.2 / 7.3. Empty: unsupported.
    #[serde(default)]
    pub iter_uninit: String,
}

/// A kernel profile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelProfile {
    /// `6.12`, `7.2`, `7.2+kf-spin-lock`, `7.3`.
    pub name: String,
    /// The kernel's BTF, when the caller has it (`lockstep check --kernel-btf`, or the profile's
    /// cached kernel): the attach functions of tracing / LSM programs (`kernel_btf.rs`).
    #[serde(skip)]
    pub kernel_btf: crate::kernel_btf::KernelBtfRef,
    /// What kernel source the profile was taken from.
    pub source: String,
    /// The Debian kernel name whose verdicts this profile predicts (`debian:7.2`), if any.
    pub kernel: Option<String>,
    /// Helpers that may be called with a lock held (`do_check_insn()`).
    pub helpers_under_lock: Vec<String>,
    /// The kfunc rule (see [`KfuncLockRule`]).
    pub kfunc_rule: KfuncLockRule,
    /// The flag bit for lock-safe kfuncs (`KF_SPIN_LOCK` / `KF_SPINLOCK_SAFE`), where the rule uses one.
    pub kfunc_flag: Option<u32>,
    /// vmlinux kfuncs allowed under a lock: the hard-coded list (`kfunc_spin_allowed()`), or for
    /// [`KfuncLockRule::Flag`] the vmlinux kfuncs carrying the flag.
    pub kfuncs_under_lock: Vec<String>,
    /// Whether bpf-to-bpf calls to static subprograms are allowed with a lock held.
    pub static_calls_under_lock: bool,
    /// Whether `check_map_prog_compatibility()` refuses a map with a `bpf_res_spin_lock` in a
    /// tracing program as it does one with a `bpf_spin_lock` (7.2; 7.3 checks `BPF_SPIN_LOCK` only).
    pub tracing_res_spin_lock: bool,
    /// Program types that `is_tracing_prog_type()` names.
    pub tracing_prog_types: Vec<ProgType>,
    /// Whether `struct bpf_res_spin_lock` and its kfuncs exist.
    pub res_spin_lock: bool,
    /// Other kfuncs a case may name that this kernel has in neither vmlinux nor its own tree's
    /// `bpf_testmod` (the module's source of that kernel version, read by hand): a program calling
    /// one cannot be built for the kernel (`add_kfunc_call()` finds no BTF id), and the model says
    /// so instead of judging it.
    #[serde(default)]
    pub absent_kfuncs: Vec<String>,
    /// `bpf_map_lookup_elem()` on an array map with a constant in-range key returns a non-null
    /// `map_value` (`can_elide_value_nullness()`, 6.14+).
    pub elide_array_lookup_null: bool,
    /// A pointer's constant offset is part of its bounds and `var_off` (7.x: `reg->off` is gone),
    /// so `check_mem_region_access()` sees a negative constant offset as a huge `reg_umax()`.
    pub ptr_off_in_var_off: bool,
    /// The kernel prints a structured diagnostic block after the error line (7.3).
    pub structured_diagnostics: bool,
    /// `bpf_check()` refuses a program whose last slot starts an `ld_imm64` before any other pass
    /// ("invalid bpf_ld_imm64 insn", 7.3); elsewhere `check_subprogs()` sees it first.
    pub early_ld_imm64_check: bool,
    /// `check_insn_fields()` refuses reserved fields for every instruction before the walk
    /// (`check_and_resolve_insns()`, 7.x); 6.12 checks them where `do_check()` reaches the
    /// instruction (its `resolve_pseudo_ldimm64()` checks only `BPF_LDX`).
    pub insn_fields_in_prepass: bool,
    /// `bpf_opcode_in_insntable()` knows `BPF_JMP | BPF_JA | BPF_X` (gotox, 7.x).
    pub gotox: bool,
    /// `map_set_for_each_callback_args()` gives the callback's map value (R3) a fresh id (7.3;
    /// before, id 0: two callbacks' values of one map hold "the same" lock).
    #[serde(default)]
    pub callback_value_id: bool,
    /// `check_map_prog_compatibility()` refuses a map holding a `bpf_timer` / `bpf_wq` in a
    /// tracing program ("tracing progs cannot use bpf_timer yet", 6.12; gone in 7.2 and 7.3).
    #[serde(default)]
    pub tracing_timer_refused: bool,
    /// `btf_prepare_func_args()` refuses a global function returning neither void nor a scalar
    /// ("Global function %s() return value not void or scalar. ...") and an exception callback
    /// returning void ("exception cb cannot return void"): 7.2 and 7.3 (6.12 checks neither so).
    #[serde(default)]
    pub exception_cb_return_checks: bool,
    /// `check_func_call()`: a global function that may throw (`subprog_info.might_throw`, set by
    /// check_cfg() in cfg.c for a `bpf_throw` call in it or in a callee) pushes the path after the
    /// call and ends the current one in an exception exit (`process_bpf_exit_full(.., true)`: the
    /// reference and region checks of `bpf_throw`). 7.2 and 7.3; 6.12 has no `might_throw`.
    #[serde(default)]
    pub global_call_might_throw: bool,
    /// `check_alu_op()` refuses a 64-bit ALU instruction seen with an arena operand on one path
    /// and without on another ("same insn cannot be used with and without arena pointer", 7.3).
    #[serde(default)]
    pub arena_mixed_alu_check: bool,
    /// `save_aux_ptr_type()` records an atomic's pointer type whatever it is (7.2, 7.3; 6.12 only
    /// for an arena pointer).
    #[serde(default)]
    pub atomic_ptr_type_saved: bool,
    /// `BPF_LOAD_ACQ` / `BPF_STORE_REL` exist (`check_atomic_load()` / `check_atomic_store()`,
    /// 7.2 and 7.3; 6.12 refuses the opcodes).
    #[serde(default)]
    pub load_acquire_store_release: bool,
    /// `check_kfunc_call()` refuses `bpf_obj_drop()` / `bpf_percpu_obj_drop()` in a tracing
    /// program of a type with NMI-unsafe fields ("... cannot be used in tracing programs on types
    /// with NMI unsafe fields", 7.2 and 7.3; 6.12 has no such check, measured on debian:6.12).
    #[serde(default)]
    pub obj_drop_nmi_check: bool,
    /// `rcu_protected_types` (verifier.c, Debian's config): the kernel structs whose referenced
    /// kptrs load as `MEM_RCU` inside an RCU section (`rcu_safe_kptr()`); empty where the model
    /// leaves kptr loads unsupported (6.12).
    #[serde(default)]
    pub kptr_rcu_types: Vec<String>,
    /// `map_kptr_match_type()` requires `MEM_PERCPU` exactly when the kptr field is per-cpu (7.2,
    /// 7.3; 6.12 lets a plain pointer into a per-cpu field).
    #[serde(default)]
    pub kptr_percpu_match: bool,
    /// The `bpf_wq` kfuncs' argument checks as 7.2 and 7.3 have them (`check_kfunc_args()`:
    /// `KF_ARG_PTR_TO_WORKQUEUE` -> `check_map_field_pointer()`, `bpf_wq_set_callback` with
    /// `KF_IMPLICIT_ARGS`); false: not read from this kernel's verifier.c (6.12), `unsupported`.
    #[serde(default)]
    pub wq_kfunc_checks: bool,
    /// `bpf_arena_reserve_pages` exists (7.2 on).
    #[serde(default)]
    pub arena_reserve_pages: bool,
    /// Kfuncs described by the kernel's (and `bpf_testmod`'s) BTF are judged by their prototype
    /// and flags (`check_kfunc_args()` / `check_kfunc_call()` as read in 7.3's verifier.c,
    /// `model/kfunc_args.rs`); off: unsupported, as before.
    #[serde(default)]
    pub kfunc_btf_args: bool,
    /// The kernel config values libbpf writes into an object's `.kconfig` map (`__kconfig`
    /// externs, import/kconfig.rs) from the guest's `/boot/config-<release>`: the profile's
    /// Debian kernel's config, by option name. An option not listed leaves a load of it
    /// unsupported (model/conststr.rs).
    #[serde(default)]
    pub kconfig: std::collections::BTreeMap<String, i64>,
    /// `check_kfunc_call()`: a zero `rdonly_buf_size` / `rdwr_buf_size` gives a zero-sized
    /// `PTR_TO_MEM` (7.3's `meta.ret_mem.found`); false: 7.2's `!meta.r0_size` takes it for no
    /// size and sizes R0 by the pointee type, `MEM_RDONLY` (not modelled, `unsupported`).
    #[serde(default)]
    pub kfunc_ret_mem_zero_size: bool,
    /// `bpf_arena_alloc_pages` / `bpf_arena_free_pages` are `KF_SLEEPABLE` (6.12).
    #[serde(default)]
    pub arena_kfuncs_sleepable: bool,
    /// `kptr_xchg_dest_types` as `reg_type_str()` prints them in the "R1 type=... expected=..."
    /// message (6.12: `map_value, ptr_`; 7.x adds the non-owning forms).
    pub kptr_xchg_dest_types: String,
    /// Program types whose ctx allows `BPF_LD_[ABS|IND]` (`may_access_skb()`).
    pub ld_abs_prog_types: Vec<ProgType>,
    /// A non-GPL program's first kfunc call is refused ("cannot call kernel function from
    /// non-GPL compatible program", `bpf_add_kfunc_call()`) by `add_kfuncs()` after
    /// `check_and_resolve_insns()` (7.3); before, by `add_subprog_and_kfunc()`, before
    /// `check_subprogs()` (6.12, 7.2).
    #[serde(default)]
    pub kfunc_license_after_insns: bool,
    /// `is_branch_taken()` / `reg_not_null()` of 7.x: a 32-bit compare of a pointer against 0
    /// decides nothing (its low 32 bits may be zero), a pointer whose bounds reach
    /// `BPF_MAX_VAR_OFF` is not known non-null, and `PTR_TO_XDP_SOCK` / `PTR_TO_BUF` are (6.12:
    /// none of the three).
    #[serde(default)]
    pub pointer_branch_7x: bool,
    /// `btf_struct_access()` walks an allocated object's type with `walk_flex_arrays = false`
    /// (`!type_is_alloc(reg->type)`), so a load or store past its end is "access beyond struct
    /// %s at off %u size %u" even into a trailing flexible array (7.2, 7.3); 6.12's
    /// `btf_struct_walk()` walks the flexible array.
    #[serde(default)]
    pub alloc_no_flex_walk: bool,
    /// `check_helper_call()` for `bpf_tail_call`: in the main frame it keeps packet pointers
    /// (`changes_data = false`), in a subprogram's frame it pushes the path after the call and
    /// returns from the frame with the packet pointers cleared (7.2, 7.3). 6.12 clears them
    /// (`bpf_helper_changes_pkt_data()`) and goes on, in any frame (`pkt.rs`).
    #[serde(default)]
    pub tail_call_frame_exit: bool,
    pub messages: Messages,
    /// `check_attach_btf_id()`'s deny lists and messages (programs with an attach target).
    #[serde(default)]
    pub attach: AttachRules,
    /// Sleepable programs (`BPF_F_SLEEPABLE`): which may be, their attach targets, and what
    /// `in_sleepable()` changes in the walk (`model/sleep.rs`).
    pub sleep: SleepRules,
}

/// Sleepable programs, per kernel (`model/sleep.rs`; each key cites its verifier.c function).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepRules {
    /// `can_be_sleepable()`: the program types without an attach type that may be sleepable
    /// (kprobe for uprobes; 7.x adds tracepoint and raw_tracepoint). Syscall programs must be
    /// (`check_attach_btf_id()`); tracing and LSM programs follow `sleepable_raw_tp` and the
    /// attach checks.
    pub prog_types: Vec<ProgType>,
    /// `can_be_sleepable()` lets a `BPF_TRACE_RAW_TP` (`tp_btf.s/`) program be sleepable (7.x).
    pub raw_tp: bool,
    /// `check_attach_btf_id()`: "Program of this type cannot be sleepable" (7.x; 6.12 names the
    /// types: "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can be
    /// sleepable").
    pub prog_type_message: String,
    /// `check_map_prog_compatibility()`: the map types a sleepable program may use (6.12 lacks
    /// prog_array), and the message for the others.
    pub map_types: Vec<crate::case::MapType>,
    pub map_message: String,
    /// `CONFIG_FUNCTION_ERROR_INJECTION` in the kernel's config: with it, `check_attach_sleepable()`
    /// asks `within_error_injection_list()` (the `ALLOW_ERROR_INJECTION` list, not in BTF: the
    /// model stops); without it (Debian's), a target may sleep when it has the arch syscall
    /// prefix (`has_arch_syscall_prefix()`: `__x64_`).
    pub error_injection: bool,
    /// Without it: 7.x's `check_attach_sleepable()` takes `has_arch_syscall_prefix()` (`__x64_`);
    /// 6.12 has no such branch (the stub `within_error_injection_list()` says no).
    pub syscall_prefix: bool,
    /// `btf_id_allow_sleepable()`: the fmodret id sets' `KF_SLEEPABLE` functions
    /// (`btf_kfunc_is_modify_return()`; net/bpf/test_run.c `bpf_test_modify_return_ids`).
    pub fmodret_sleepable: Vec<String>,
    /// `sleepable_lsm_hooks` (kernel/bpf/bpf_lsm.c, `bpf_lsm_is_sleepable_hook()`), as
    /// `bpf_lsm_<hook>` names, with Debian's `CONFIG_SECURITY_PATH` and `CONFIG_SECURITY_NETWORK`.
    pub lsm_hooks: Vec<String>,
    /// `bpf_check_attach_target()`: "%s is not sleepable" (`{name}`: the target).
    pub target_message: String,
    /// `in_rcu_cs()` counts preemption-disabled and IRQ-disabled regions too (7.3), not only RCU
    /// read locks and spin locks.
    pub rcu_cs_all_regions: bool,
    /// `in_sleepable()` is `prog->sleepable || state->in_sleepable` (6.12): an async callback of
    /// a sleepable program is sleepable; 7.x takes the callback's own (`is_async_cb_sleepable()`).
    pub prog_sleepable_everywhere: bool,
    /// `in_sleepable_context()` and `non_sleepable_context_description()` decide the sleep
    /// checks of helpers and kfuncs (7.2, 7.3); 6.12 checks the program's `sleepable` and each
    /// region on its own.
    pub sleepable_context: bool,
    /// `check_func_call()` refuses a global function that may sleep (`subprog_info->might_sleep`,
    /// from `check_cfg()`) outside a sleepable context (7.2, 7.3).
    pub global_might_sleep: bool,
    /// `do_check_subprogs()` verifies a global function once per context it was called in,
    /// sleepable or not (`sub_aux->called[in_sleepable_context()]`, 7.3); before, with the
    /// program's `sleepable`.
    pub global_contexts: bool,
    /// `check_helper_call()`: a `might_sleep` helper outside a sleepable context (`{name}`,
    /// `{id}`, `{where}`: `non_sleepable_context_description()`); 6.12 has one line for a
    /// non-sleepable program ("helper call might sleep in a non-sleepable prog").
    pub helper_message: String,
    /// `check_kfunc_call()`: a `KF_SLEEPABLE` kfunc in a non-sleepable program (`{name}`).
    pub kfunc_prog_message: String,
    /// `check_kfunc_call()`: a `KF_SLEEPABLE` kfunc in a region (`{name}`, `{where}`).
    pub kfunc_region_message: String,
    /// `check_func_call()`: "sleepable global function %s() called in %s" (`{name}`, `{where}`).
    pub global_message: String,
}

/// `check_attach_btf_id()`: attach targets a tracing program may not have, as the kernel's
/// config builds the `BTF_SET`s (Debian's: `CONFIG_SMP`, `CONFIG_PREEMPT_RCU`,
/// `CONFIG_IA32_EMULATION`, `CONFIG_MODULES`; no `CONFIG_DEBUG_PREEMPT`, `CONFIG_KUNIT`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRules {
    /// `btf_id_deny`: functions no `BPF_PROG_TYPE_TRACING` program attaches to.
    pub tracing_deny: Vec<String>,
    /// Its message (`{name}`: the function); empty where the kernel logs none (6.12).
    pub tracing_deny_message: String,
    /// `noreturn_deny`: `__noreturn` functions no fexit / fmod_ret program attaches to.
    pub noreturn_deny: Vec<String>,
    /// Its message (`{name}`: the function).
    pub noreturn_deny_message: String,
    /// `untrusted_lsm_hooks` (bpf_lsm.c): LSM hooks whose arguments are not `PTR_TRUSTED`
    /// (`bpf_lsm_is_trusted()`), as `bpf_lsm_<hook>` names.
    #[serde(default)]
    pub untrusted_lsm_hooks: Vec<String>,
    /// `raw_tp_null_args[]` (btf.c): tracepoints whose pointer arguments may be NULL (bit 0x1 of
    /// argument i's nibble, `mask >> 4*i`) or an error pointer (bit 0x2), with the mask.
    #[serde(default)]
    pub raw_tp_null_args: Vec<(String, u64)>,
    /// struct_ops members (`"<type>.<member>"`) the kernel registers with a cfi stub
    /// (`bpf_struct_ops_supported()`), for the struct_ops types the model knows (structops.rs).
    #[serde(default)]
    pub struct_ops_members: Vec<String>,
    /// Those of `struct_ops_members` with a `__ref` stub argument (`ctx_arg_info` refcounted:
    /// do_check_common() acquires a reference for it).
    #[serde(default)]
    pub struct_ops_refcounted: Vec<String>,
}

/// Errors loading a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profile {name}: {source}")]
    Parse { name: String, source: toml::de::Error },
    #[error("unknown profile `{0}` (known: {1})")]
    Unknown(String, String),
}

const BUILTIN: &[(&str, &str)] = &[
    ("6.12", include_str!("../profiles/6.12.toml")),
    ("7.2", include_str!("../profiles/7.2.toml")),
    ("7.2+kf-spin-lock", include_str!("../profiles/7.2+kf-spin-lock.toml")),
    ("7.3", include_str!("../profiles/7.3.toml")),
];

/// The TOML text of built-in profile `name`.
pub fn builtin_toml(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, src)| *src)
}

impl KernelProfile {
    /// Every built-in profile, in version order.
    pub fn all() -> Vec<KernelProfile> {
        BUILTIN
            .iter()
            .map(|(name, src)| {
                let p: KernelProfile = toml::from_str(src)
                    .unwrap_or_else(|e| panic!("built-in profile {name} is malformed: {e}"));
                assert_eq!(&p.name, name, "built-in profile file name and `name` differ");
                p
            })
            .collect()
    }

    /// The built-in profile named `name`.
    pub fn by_name(name: &str) -> Result<KernelProfile, ProfileError> {
        Self::all().into_iter().find(|p| p.name == name).ok_or_else(|| {
            ProfileError::Unknown(
                name.to_string(),
                BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            )
        })
    }

    /// Names of the built-in profiles.
    pub fn names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// Parses a profile from TOML (for user-supplied profiles).
    pub fn from_toml(name: &str, src: &str) -> Result<KernelProfile, ProfileError> {
        toml::from_str(src).map_err(|source| ProfileError::Parse { name: name.to_string(), source })
    }
}

/// Fills `{key}` placeholders of a message template in one pass (a placeholder without an
/// argument stays as it is; an argument's value is not searched for placeholders).
pub fn render(template: &str, args: &[(&str, String)]) -> String {
    let extra: usize = args.iter().map(|(_, v)| v.len()).sum();
    let mut out = String::with_capacity(template.len() + extra);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after
            .find('}')
            .and_then(|close| args.iter().find(|(k, _)| *k == &after[..close]).map(|(_, v)| (close, v)));
        match value {
            Some((close, v)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A kfunc of the test module: name, lock-safe flags, and what the model needs of its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleKfunc {
    pub name: String,
    /// The `BTF_ID_FLAGS` flags (bit values as the kernel defines them, e.g. `1 << 17`).
    pub flags: u32,
    /// Program types whose kfunc id set contains it.
    pub prog_types: Vec<ProgType>,
    /// Number of arguments (scalars, or for a `KF_RELEASE` kfunc the referenced pointer first).
    pub args: u8,
    /// Whether the kfunc returns a scalar.
    pub returns_scalar: bool,
    /// Whether it returns nothing (`void`); neither: it returns a pointer.
    pub returns_void: bool,
}

/// `KF_ACQUIRE` (include/linux/btf.h, the same bit in 6.12, 7.2 and 7.3): returns a reference.
pub const KF_ACQUIRE: u32 = 1 << 0;
/// `KF_RELEASE`: releases the reference passed as its first argument.
pub const KF_RELEASE: u32 = 1 << 1;
/// `KF_RET_NULL`: the returned pointer may be NULL.
pub const KF_RET_NULL: u32 = 1 << 2;

/// The test module's kfuncs, read from the module itself (its C source or its built .ko).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleKfuncs {
    pub module: String,
    pub kfuncs: BTreeMap<String, ModuleKfunc>,
}
