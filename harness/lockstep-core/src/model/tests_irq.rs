//! Unit tests for IRQ flags (`process_irq_flag()` and its helpers, `check_resource_leak()`),
//! from the 7.2 and 7.3 verifier sources; 6.12 has no irq kfuncs.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 6] = [
    "bpf_local_irq_save",
    "bpf_local_irq_restore",
    "bpf_res_spin_lock",
    "bpf_res_spin_unlock",
    "bpf_res_spin_lock_irqsave",
    "bpf_res_spin_unlock_irqrestore",
];

/// `body` then `r0 = 0; exit`, over map `a` (a res lock at offset 4).
fn case(body: &str) -> Case {
    let text = format!("{body}\nout:\n r0 = 0\n exit\n");
    let kfuncs: Vec<String> = KFUNCS.map(String::from).into_iter().collect();
    let symbols = Symbols { maps: vec!["a".into()], kfuncs: kfuncs.clone() };
    let program = assemble(&text, &symbols).expect("test program assembles");
    let map = cnt_lock_map("a", MapType::Array, FieldKind::ResSpinLock, true);
    let mut c = Case { maps: vec![map], ..Case::new("t", ProgType::SchedCls, program, &text) };
    c.extern_kfuncs = kfuncs;
    c
}

fn save(off: i64) -> String {
    format!("r1 = r10\n r1 += {off}\n call bpf_local_irq_save\n")
}
fn restore(off: i64) -> String {
    format!("r1 = r10\n r1 += {off}\n call bpf_local_irq_restore\n")
}

/// Verdicts on the profiles with irq kfuncs (those with res locks: 7.2, 7.2+kf-spin-lock, 7.3).
fn verdicts(c: &Case) -> Vec<(String, Verdict)> {
    verdicts_on_all_profiles(c)
        .into_iter()
        .filter(|(p, _)| KernelProfile::all().iter().any(|k| &k.name == p && k.res_spin_lock))
        .collect()
}

fn assert_all(c: &Case, want: Verdict) {
    let v = verdicts(c);
    assert_eq!(v.len(), 3);
    for (p, v) in v {
        assert_eq!(v, want, "{p}");
    }
}

#[test]
fn balanced_save_and_restore_is_accepted_and_6_12_unsupported() {
    let c = case(&format!("{}{}{}{}", save(-8), save(-16), restore(-16), restore(-8)));
    assert_all(&c, Verdict::accept());
    let v = verdicts_on_all_profiles(&c);
    assert_eq!(v.iter().find(|(p, _)| p == "6.12").unwrap().1.verdict, VerdictKind::Unsupported);
}

#[test]
fn exit_with_a_saved_flag_is_refused() {
    let c = case(&save(-8));
    let msg = "BPF_EXIT instruction in main prog cannot be used inside bpf_local_irq_save-ed region";
    assert_all(&c, Verdict::reject(Some(4), msg));
}

#[test]
fn a_flag_outside_the_stack_is_refused() {
    // KF_ARG_PTR_TO_IRQ_FLAG: "R1 doesn't point to an irq flag on stack".
    let c = case("r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = a ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n r1 = r0\n call bpf_local_irq_save");
    assert_all(&c, Verdict::reject(Some(9), "R1 doesn't point to an irq flag on stack"));
}

#[test]
fn saving_twice_into_one_slot_and_restoring_an_unsaved_slot_are_refused() {
    let c = case(&format!("{}{}", save(-8), save(-8)));
    assert_all(&c, Verdict::reject(Some(5), "expected uninitialized irq flag as R1"));
    let c = case(&format!("{}{}", save(-8), restore(-16)));
    assert_all(&c, Verdict::reject(Some(5), "expected an initialized irq flag as R1"));
}

#[test]
fn a_store_into_the_flag_slot_scrubs_it() {
    // scrub_special_slot(): the slot is no flag any more, the reference stays.
    let c = case(&format!("{}r1 = 7\n *(u64 *)(r10 - 8) = r1\n{}", save(-8), restore(-8)));
    assert_all(&c, Verdict::reject(Some(7), "expected an initialized irq flag as R1"));
}

#[test]
fn the_lock_kfunc_restore_unlocks_first_and_out_of_order_names_the_active_flag() {
    let lock = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = a ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n";
    let body = format!(
        "{lock}{}r1 = r6\n r1 += 4\n r2 = r10\n r2 += -16\n call bpf_res_spin_unlock_irqrestore\n",
        save(-16)
    );
    // The unlock fails first: the res lock is not held.
    assert_all(&case(&body), Verdict::reject(Some(16), "bpf_res_spin_unlock without taking a lock"));
    // release_irq_state(): the active flag is id 2, saved at insn 5 (ids as env->id_gen).
    let c = case(&format!("{}{}{}", save(-8), save(-16), restore(-8)));
    let msg = "cannot restore irq state out of order, expected id=2 acquired at insn_idx=5";
    assert_all(&c, Verdict::reject(Some(8), msg));
    // A move of an unknown scalar may take an id in the kernel (assign_scalar_id_before_mov()):
    // the ids are no longer the kernel's, the message is unsupported.
    let c = case(&format!("call bpf_get_prandom_u32\n r2 = r0\n{}{}{}", save(-8), save(-16), restore(-8)));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn res_lock_irqsave_takes_lock_and_flag_and_native_restore_under_it_meets_the_call_rule() {
    let lock = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = a ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n";
    let irqsave =
        "r1 = r6\n r1 += 4\n r2 = r10\n r2 += -16\n call bpf_res_spin_lock_irqsave\n if w0 != 0 goto out\n";
    let balanced = format!(
        "{lock}{irqsave}r1 = r6\n r1 += 4\n r2 = r10\n r2 += -16\n call bpf_res_spin_unlock_irqrestore\n"
    );
    assert_all(&case(&balanced), Verdict::accept());
    let wrong = format!("{lock}{irqsave}{}", restore(-16));
    assert_all(
        &case(&wrong),
        Verdict::reject(Some(17), "function calls are not allowed while holding a lock"),
    );
    // The irqsave lock is REF_TYPE_RES_LOCK_IRQ: plain bpf_res_spin_unlock does not find it.
    let plain = format!("{lock}{irqsave}r1 = r6\n r1 += 4\n call bpf_res_spin_unlock\n");
    assert_all(&case(&plain), Verdict::reject(Some(17), "bpf_res_spin_unlock of different lock"));
}
