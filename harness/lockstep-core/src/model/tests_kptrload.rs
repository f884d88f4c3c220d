//! Unit tests of branch "kptrload" (issue 14, items 1-2): a map value's referenced kptr whose
//! pointee is a local type, loaded in an RCU section (`btf_ld_kptr_type()`: `MEM_ALLOC | MEM_RCU`,
//! `| NON_OWN_REF` for a graph node type), `bpf_refcount_acquire()` of it, its invalidation at
//! `bpf_rcu_read_unlock` (`PTR_UNTRUSTED`) and at `bpf_spin_unlock` (non-owning), and
//! `bpf_kptr_xchg()` into a non-owning node or of a plain object into a per-cpu kptr. The cases
//! are tests/corpus/kptrload-local.toml's, whose expectations come from real debian:6.12 / 7.2 /
//! 7.3 runs; here the model's verdict per profile.

use super::test_fixtures::*;
use crate::case::Case;
use crate::verdict::{Verdict, VerdictKind};

const CORPUS: &str = include_str!("../../../../tests/corpus/kptrload-local.toml");

fn corpus_case(name: &str) -> Case {
    let module = crate::module_src::bundled();
    let cases = crate::corpus::load_text("kptrload-local.toml", CORPUS, &module).expect("corpus parses");
    cases.into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("case {name}"))
}

fn verdict_on(name: &str, profile: &str) -> Verdict {
    verdicts_on_all_profiles(&corpus_case(name))
        .into_iter()
        .find(|(p, _)| p == profile)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("profile {profile}"))
}

const SEVEN: [&str; 2] = ["7.2", "7.3"];

fn assert_7x(name: &str, want: Option<(usize, &str)>) {
    for p in SEVEN {
        let v = verdict_on(name, p);
        match want {
            None => assert_eq!(v.verdict, VerdictKind::Accept, "{name} on {p}: {v:?}"),
            Some((insn, msg)) => assert_eq!(v, Verdict::reject(Some(insn), msg), "{name} on {p}"),
        }
    }
}

#[test]
fn a_loaded_local_kptr_is_an_rcu_allocated_object() {
    // 6.12's kptr loads are not modelled.
    let v = verdict_on("kptrload_refcount_acquire_checked", "6.12");
    assert_eq!(v.verdict, VerdictKind::Unsupported, "{v:?}");
    assert_7x("kptrload_refcount_acquire_checked", None);
    assert_7x("kptrload_read_write_member", None);
    assert_7x("kptrload_syscall_acquire_in_rcu", None);
    // PTR_MAYBE_NULL until checked; reg_type_str() prints MEM_RCU, not MEM_ALLOC.
    assert_7x("kptrload_deref_unchecked", Some((9, "R1 invalid mem access 'rcu_ptr_or_null_'")));
    assert_7x(
        "kptrload_refcount_acquire_maybe_null",
        Some((10, "Possibly NULL pointer passed to trusted R1")),
    );
    // btf_struct_access(): the pointee's record still guards its special fields.
    assert_7x("kptrload_refcount_field_access", Some((10, "direct access to bpf_refcount is disallowed")));
}

#[test]
fn refcount_acquire_of_a_loaded_kptr_may_return_null() {
    // No owning argument (meta->arg_owning_ref): R0 is maybe-NULL.
    assert_7x(
        "kptrload_refcount_acquire_unchecked_drop",
        Some((14, "Possibly NULL pointer passed to trusted R1")),
    );
}

#[test]
fn the_end_of_the_rcu_section_or_the_lock_invalidates_it() {
    // invalidate_rcu_protected_refs(): MEM_ALLOC | PTR_UNTRUSTED is no allocated object.
    assert_7x(
        "kptrload_syscall_acquire_after_rcu_unlock",
        Some((15, "R1 is neither owning or non-owning ref")),
    );
    // invalidate_non_owning_refs(): a graph node type's load under the lock is NON_OWN_REF.
    assert_7x("kptrload_graph_node_after_spin_unlock", Some((15, "R7 invalid mem access 'scalar'")));
    assert_7x("kptrload_graph_node_outside_lock", None);
}

#[test]
fn kptr_xchg_into_a_non_owning_node_and_plain_into_percpu() {
    // kptr_xchg_dest_types lists MEM_ALLOC | NON_OWN_REF in 7.x (6.12 refuses the helper
    // under the lock first).
    assert_7x("kptrload_xchg_into_non_owning_node", None);
    assert_7x("kptrload_xchg_owned_into_non_owning_node", None);
    let v = verdict_on("kptrload_xchg_into_non_owning_node", "6.12");
    assert_eq!(v, Verdict::reject(Some(27), "function calls are not allowed while holding a lock"));
    // map_kptr_match_type(), kptr_percpu_match: MEM_PERCPU exactly for a per-cpu field.
    assert_7x(
        "kptrload_xchg_plain_into_percpu",
        Some((16, "invalid kptr access, R2 type=ptr_ expected=ptr_vobj")),
    );
    let v = verdict_on("kptrload_xchg_plain_into_percpu", "6.12");
    assert_eq!(v.verdict, VerdictKind::Unsupported, "{v:?}");
}
