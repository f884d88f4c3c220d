//! Unit tests for `bpf_kptr_xchg()`'s destination type check (`model/kptr.rs`,
//! `check_reg_type()` with `kptr_xchg_dest_types`: verifier.c of 6.12, 7.2 and 7.3; the 7.x
//! message as debian:7.2 and 7.3 printed it for `non_own_ref_kptr_xchg_no_lock`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};

#[test]
fn kptr_xchg_refuses_a_destination_that_is_no_map_value_or_object() {
    let text = "r1 = 0\n r2 = 0\n call bpf_kptr_xchg\n r0 = 0\n exit";
    let symbols = Symbols { maps: vec![], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let m = cnt_lock_map("m", MapType::Array, FieldKind::SpinLock, true);
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    for (p, v) in verdicts_on_all_profiles(&c) {
        let expected = if p == "6.12" { "map_value, ptr_" } else { "map_value, ptr_, ptr_, rcu_ptr_" };
        assert_eq!(v, Verdict::reject(Some(2), format!("R1 type=scalar expected={expected}")), "{p}");
    }
}
