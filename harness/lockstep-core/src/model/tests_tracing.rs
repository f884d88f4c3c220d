//! Tracing / LSM programs (`tracing.rs`): ctx arguments typed by the attach function's BTF
//! (`btf_ctx_access()`), on a small kernel BTF (`kernel_btf::fixture`: `btf_trace_task_newtask`
//! (void *__data, struct task_struct *p, int x), `free_task(struct task_struct *p, int
//! clone_flags)`, `bpf_lsm_task_free(struct task_struct *task__nullable)`). The messages are
//! btf.c's and check_ctx_access()'s (7.3 source; the same lines in 6.12 and 7.2).

use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::Case;
use crate::import::sec::prog_type_of_section;
use crate::verdict::VerdictKind;

fn object_case(sec: &str, text: &str) -> Case {
    super::test_fixtures::object_case_in(sec, text, &Symbols::default())
}

/// `c`'s verdict on every profile given the sample kernel BTF (or none).
fn verdicts(c: &Case, with_btf: bool) -> Vec<(String, Verdict)> {
    let k = super::test_fixtures::sample_kernel_btf();
    super::test_fixtures::verdicts_with_kernel_btf(c, with_btf.then_some(&k))
}

fn all_reject(sec: &str, text: &str, insn: usize, msg: &str) {
    for (p, v) in verdicts(&object_case(sec, text), true) {
        assert_eq!(v, Verdict::reject(Some(insn), msg), "{p}");
    }
}

#[test]
fn tp_btf_arguments_load_as_a_trusted_pointer_and_a_scalar() {
    let text = "r2 = *(u64 *)(r1 + 8)\n r1 = *(u64 *)(r1 + 0)\n if r1 == 0 goto out\n r0 = 0\nout:\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&object_case("tp_btf/task_newtask", text), true) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

#[test]
fn without_kernel_btf_the_model_names_what_is_missing() {
    let text = "r1 = *(u64 *)(r1 + 0)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&object_case("tp_btf/task_newtask", text), false) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
        assert!(v.message.as_deref().unwrap_or("").contains("needs the kernel's BTF"), "{p}: {v:?}");
    }
}

#[test]
fn an_argument_past_the_prototype_is_refused() {
    // btf_ctx_access(): arg 3 of a 2-argument tracepoint ("arg > nr_args"), and arg 2 == nr_args
    // on a raw tracepoint (no return value to read), each followed by check_ctx_access()'s line.
    all_reject(
        "tp_btf/task_newtask",
        "r1 = *(u64 *)(r1 + 24)\n r0 = 0\n exit\n",
        0,
        "func 'btf_trace_task_newtask' doesn't have 4-th argument\ninvalid bpf_context access off=24 size=8",
    );
    all_reject(
        "tp_btf/task_newtask",
        "r1 = *(u64 *)(r1 + 16)\n r0 = 0\n exit\n",
        0,
        "func 'btf_trace_task_newtask' doesn't have 3-th argument\ninvalid bpf_context access off=16 size=8",
    );
}

#[test]
fn offsets_and_sizes_btf_ctx_access_refuses() {
    all_reject(
        "fentry/free_task",
        "r1 = *(u32 *)(r1 + 4)\n r0 = 0\n exit\n",
        0,
        "func 'free_task' offset 4 is not multiple of 8\ninvalid bpf_context access off=4 size=4",
    );
    all_reject(
        "fentry/free_task",
        "r1 = *(u32 *)(r1 + 0)\n r0 = 0\n exit\n",
        0,
        "func 'free_task' size 4 must be 8\ninvalid bpf_context access off=0 size=4",
    );
    // bpf_tracing_ctx_access(): past MAX_BPF_FUNC_ARGS slots, or misaligned for the size, before
    // btf_ctx_access() logs anything.
    all_reject(
        "fentry/free_task",
        "r1 = *(u64 *)(r1 + 96)\n r0 = 0\n exit\n",
        0,
        "invalid bpf_context access off=96 size=8",
    );
    all_reject(
        "fentry/free_task",
        "r1 = *(u64 *)(r1 + 4)\n r0 = 0\n exit\n",
        0,
        "invalid bpf_context access off=4 size=8",
    );
}

#[test]
fn a_missing_attach_function_is_unsupported() {
    let text = "r1 = *(u64 *)(r1 + 0)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&object_case("fentry/no_such_function", text), true) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
        assert!(v.message.as_deref().unwrap_or("").contains("no_such_function"), "{p}: {v:?}");
    }
}

/// `object_case` with the kernel-object kfuncs declared (the assembler resolves them by name).
fn kfunc_case(sec: &str, text: &str) -> Case {
    let kfuncs: Vec<String> =
        ["bpf_task_acquire", "bpf_task_release", "bpf_task_from_pid"].map(String::from).to_vec();
    let st = prog_type_of_section(sec).expect("a section libbpf knows");
    let symbols = Symbols { maps: vec![], kfuncs: kfuncs.to_vec() };
    let program = assemble(text, &symbols).expect("test program assembles");
    let mut c = object_case(sec, "r0 = 0\nexit\n");
    c.prog_type = st.prog_type;
    c.program = program;
    c.text = text.into();
    c.extern_kfuncs = kfuncs;
    c
}

/// The verdicts on the 7.x profiles (6.12's kfunc argument rules are left unsupported).
fn on_7x(sec: &str, text: &str) -> Vec<(String, Verdict)> {
    verdicts(&kfunc_case(sec, text), true).into_iter().filter(|(p, _)| p != "6.12").collect()
}

const ACQUIRE: &str = "r1 = *(u64 *)(r1 + 0)\n call bpf_task_acquire\n";

#[test]
fn an_acquired_task_not_released_leaks() {
    // task_kfunc_failure's task_kfunc_acquire_unreleased on debian:7.3: "Unreleased reference
    // id=2 alloc_insn=1" (the NULL-check id 1, the reference 2, the call at insn 1).
    for (p, v) in on_7x("tp_btf/task_newtask", &format!("{ACQUIRE} r0 = 0\n exit\n")) {
        assert_eq!(v, Verdict::reject(Some(3), "Unreleased reference id=2 alloc_insn=1"), "{p}");
    }
}

#[test]
fn acquire_check_release_is_accepted_and_the_release_needs_the_check() {
    let checked =
        format!("{ACQUIRE} if r0 == 0 goto out\n r1 = r0\n call bpf_task_release\nout:\n r0 = 0\n exit\n");
    for (p, v) in on_7x("tp_btf/task_newtask", &checked) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // task_kfunc_acquire_release_no_null_check (7.3's message).
    let unchecked = format!("{ACQUIRE} r1 = r0\n call bpf_task_release\n r0 = 0\n exit\n");
    for (p, v) in on_7x("tp_btf/task_newtask", &unchecked) {
        assert_eq!(v, Verdict::reject(Some(3), "Possibly NULL pointer passed to trusted R1"), "{p}");
    }
}

#[test]
fn releasing_what_was_not_acquired_and_acquiring_untrusted_pointers() {
    // task_kfunc_release_unacquired: the tracepoint's own argument.
    let text = "r1 = *(u64 *)(r1 + 0)\n call bpf_task_release\n r0 = 0\n exit\n";
    for (p, v) in on_7x("tp_btf/task_newtask", text) {
        let msg = "release kfunc bpf_task_release expects referenced PTR_TO_BTF_ID passed to R1";
        assert_eq!(v, Verdict::reject(Some(1), msg), "{p}");
    }
    // An fentry argument is neither trusted nor MEM_RCU: bpf_task_acquire (KF_RCU) refuses it,
    // as task_kfunc_from_lsm_task_free's untrusted LSM hook argument on debian:7.3.
    for (p, v) in on_7x("fentry/free_task", &format!("{ACQUIRE} r0 = 0\n exit\n")) {
        assert_eq!(v, Verdict::reject(Some(1), "R1 must be a rcu pointer"), "{p}");
    }
    // A NULL argument (task_kfunc_acquire_null) and a stack pointer (task_kfunc_acquire_fp).
    for (p, v) in on_7x("tp_btf/task_newtask", "r1 = 0\n call bpf_task_acquire\n r0 = 0\n exit\n") {
        assert_eq!(v, Verdict::reject(Some(1), "Possibly NULL pointer passed to trusted R1"), "{p}");
    }
    for (p, v) in
        on_7x("tp_btf/task_newtask", "r1 = r10\n r1 += -8\n call bpf_task_acquire\n r0 = 0\n exit\n")
    {
        assert_eq!(v, Verdict::reject(Some(2), "R1 is fp expected STRUCT task_struct"), "{p}");
    }
}

#[test]
fn kernel_object_kfuncs_outside_their_program_types() {
    // task_kfunc_acquire_unsafe_kretprobe on debian:7.3: the kprobe hook has no generic set.
    let text = "r6 = r1\n r1 = 0\n call bpf_task_from_pid\n r0 = 0\n exit\n";
    for (p, v) in on_7x("kretprobe/free_task", text) {
        assert_eq!(
            v,
            Verdict::reject(Some(2), "calling kernel function bpf_task_from_pid is not allowed"),
            "{p}"
        );
    }
}

#[test]
fn current_task_btf_is_trusted_and_never_null() {
    let text = "call bpf_get_current_task_btf\n r1 = r0\n call bpf_task_acquire\n if r0 == 0 goto out\n r1 = r0\n call bpf_task_release\nout:\n r0 = 0\n exit\n";
    for (p, v) in on_7x("tp_btf/task_newtask", text) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

/// `kfunc_case` with map `m`: an array of `{ long cnt; struct task_struct <kind> *task; }`.
fn kptr_map_case(sec: &str, kind: crate::case::FieldKind, text: &str) -> Case {
    let map = super::test_fixtures::task_kptr_map(kind);
    let kfuncs: Vec<String> = ["bpf_task_acquire", "bpf_task_release"].map(String::from).to_vec();
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: kfuncs.clone() };
    let mut c = kfunc_case(sec, "r0 = 0\nexit\n");
    c.program = assemble(text, &symbols).expect("test program assembles");
    c.text = text.into();
    c.maps = vec![map];
    c.extern_kfuncs = kfuncs;
    c
}

/// Looks up `m`'s value into r6 (insns 0-7), loads its kptr into r1 (insn 8).
const LOAD_KPTR: &str = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
     call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n r1 = *(u64 *)(r6 + 8)\n";

#[test]
fn a_referenced_task_kptr_loads_as_rcu_in_a_non_sleepable_program() {
    use crate::case::FieldKind;
    // btf_ld_kptr_type(): task_struct is in rcu_protected_types and an fentry program is not
    // sleepable: PTR_TO_BTF_ID | MEM_RCU | PTR_MAYBE_NULL (task_kfunc_success's
    // task_kfunc_acquire_after_spin_unlock_non_sleepable loads on debian:7.3).
    let checked = format!(
        "{LOAD_KPTR} if r1 == 0 goto out\n call bpf_task_acquire\n if r0 == 0 goto out\n \
         r1 = r0\n call bpf_task_release\nout:\n r0 = 0\n exit\n"
    );
    for (p, v) in verdicts(&kptr_map_case("fentry/free_task", FieldKind::Kptr, &checked), true) {
        let want = if p == "6.12" { VerdictKind::Unsupported } else { VerdictKind::Accept };
        assert_eq!(v.verdict, want, "{p}: {v:?}");
    }
    let unchecked = format!("{LOAD_KPTR} call bpf_task_acquire\nout:\n r0 = 0\n exit\n");
    for (p, v) in verdicts(&kptr_map_case("fentry/free_task", FieldKind::Kptr, &unchecked), true) {
        if p != "6.12" {
            assert_eq!(v, Verdict::reject(Some(10), "Possibly NULL pointer passed to trusted R1"), "{p}");
        }
    }
    // An unreferenced kptr is PTR_UNTRUSTED: not an RCU pointer for bpf_task_acquire (KF_RCU).
    for (p, v) in verdicts(&kptr_map_case("fentry/free_task", FieldKind::KptrUntrusted, &checked), true) {
        if p != "6.12" {
            assert_eq!(v, Verdict::reject(Some(11), "R1 must be a rcu pointer"), "{p}");
        }
    }
}

#[test]
fn a_kernel_pointer_into_a_percpu_kptr_is_refused() {
    use crate::case::FieldKind;
    // map_kptr_match_type(): MEM_PERCPU must match the field (percpu_alloc_fail's
    // reject_kernel_ptr_into_percpu_kptr on debian:7.3, the register type name left empty).
    let text = "call bpf_get_current_task_btf\n r7 = r0\n r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n \
         r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n r1 = r0\n r1 += 8\n \
         r2 = r7\n call bpf_kptr_xchg\n if r0 == 0 goto out\n r1 = r0\n call bpf_task_release\n\
         out:\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&kptr_map_case("fentry/free_task", FieldKind::PercpuKptr, text), true) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        } else {
            let msg = "invalid kptr access, R2 type=trusted_ptr_ expected=ptr_task_struct";
            assert_eq!(v, Verdict::reject(Some(13), msg), "{p}");
        }
    }
}

// bpf_throw in an fentry program: check_return_code(env, BPF_REG_1, "R1") with the program's
// range [0, 0] (exceptions_fail reject_set_exception_cb_bad_ret2 on debian:7.2 / 7.3: "At program
// exit the register R1 has smin=64 smax=64 should have been in [0, 0]" at the call).
#[test]
fn bpf_throw_cookie_in_fentry_follows_the_exit_range() {
    let symbols = Symbols { maps: vec![], kfuncs: vec!["bpf_throw".into()] };
    let case = |text: &str| {
        let mut c = super::test_fixtures::object_case_in("fentry/free_task", text, &symbols);
        c.extern_kfuncs = vec!["bpf_throw".into()];
        c
    };
    let msg = "At program exit the register R1 has smin=64 smax=64 should have been in [0, 0]";
    for (p, v) in verdicts(&case("r1 = 64\n call bpf_throw\n r0 = 0\n exit\n"), true) {
        assert_eq!(v, Verdict::reject(Some(1), msg), "{p}");
    }
    for (p, v) in verdicts(&case("r1 = 0\n call bpf_throw\n r0 = 0\n exit\n"), true) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

// Iterator programs (`iter/<target>`): bpf_iter_prog_supported() finds the target by its
// `bpf_iter_<target>` FUNC (the sample BTF's bpf_iter_task(meta, task)); the ctx is that FUNC's
// arguments, `meta` a trusted pointer; the target's own argument (ctx_arg_info) is not modelled.

#[test]
fn an_iterator_program_on_a_known_target_is_verified() {
    let text = "r2 = *(u64 *)(r1 + 0)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&object_case("iter/task", text), true) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // check_return_code(): BPF_TRACE_ITER keeps the default range [0, 1].
    for (p, v) in verdicts(&object_case("iter/task", "r0 = 1\n exit\n"), true) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

#[test]
fn an_iterator_target_argument_or_unknown_target_is_unsupported() {
    let text = "r2 = *(u64 *)(r1 + 8)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&object_case("iter/task", text), true) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
        assert!(v.message.as_deref().unwrap_or("").contains("ctx_arg_info"), "{p}: {v:?}");
    }
    for (p, v) in verdicts(&object_case("iter/nope", "r0 = 0\n exit\n"), true) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
        assert!(v.message.as_deref().unwrap_or("").contains("bpf_iter_nope"), "{p}: {v:?}");
    }
    for (p, v) in verdicts(&object_case("iter/task", "r0 = 0\n exit\n"), false) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
    }
    // One past the prototype: btf_ctx_access()'s default case (no return value to read).
    all_reject(
        "iter/task",
        "r1 = *(u64 *)(r1 + 16)\n r0 = 0\n exit\n",
        0,
        "func 'bpf_iter_task' doesn't have 3-th argument\ninvalid bpf_context access off=16 size=8",
    );
}
