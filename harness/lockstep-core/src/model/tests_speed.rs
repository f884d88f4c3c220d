//! Unit tests for the allocation-free forms of the hot path: `check_cfg()` past its inline
//! buffers, the fixed-array stack bytes and one-pass message rendering. Expectations from the
//! verifier sources (`check_cfg()`: "unreachable insn %d"; `check_stack_write_fixed_off()`).

use super::state::{StackByte, StackBytes};
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, ProgType};
use crate::profile::render;
use crate::verdict::VerdictKind;

fn long_case(body: &str) -> Case {
    let program = assemble(body, &Symbols::default()).expect("test program assembles");
    Case::new("t", ProgType::SchedCls, program, body)
}

#[test]
fn check_cfg_on_a_program_longer_than_its_inline_buffers() {
    // 300 straight-line instructions, an exit, then one instruction nothing reaches.
    let mut text = "r0 = 0\n".repeat(300);
    text.push_str("exit\nr0 = 1\nexit\n");
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        let v = check(&long_case(&text), &p, &module);
        assert_eq!(v.verdict, VerdictKind::Reject, "{}: {v:?}", p.name);
        assert_eq!(v.message.as_deref(), Some("unreachable insn 301"), "{}", p.name);
    }
    // The same program without the unreachable tail is accepted.
    let mut text = "r0 = 0\n".repeat(300);
    text.push_str("exit\n");
    for p in KernelProfile::all() {
        assert_eq!(check(&long_case(&text), &p, &module).verdict, VerdictKind::Accept, "{}", p.name);
    }
}

#[test]
fn stack_bytes_behave_as_a_map_by_offset() {
    let mut b = StackBytes::default();
    assert!(!b.contains_key(&-8));
    b.insert(-8, StackByte::Zero);
    b.insert(-512, StackByte::Misc);
    b.insert(-1, StackByte::Spill);
    assert_eq!(b.get(&-8), Some(&StackByte::Zero));
    assert_eq!(b.get(&-7), None);
    // Offsets outside -512..0 hold nothing.
    assert_eq!(b.get(&0), None);
    assert_eq!(b.get(&-513), None);
    let got: Vec<_> = b.range(-512..0).map(|(o, v)| (o, *v)).collect();
    assert_eq!(got, vec![(-512, StackByte::Misc), (-8, StackByte::Zero), (-1, StackByte::Spill)]);
    assert_eq!(b.range(-7..-1).count(), 0);
}

#[test]
fn render_fills_placeholders_in_one_pass() {
    let args = [("reg", "R1".to_string()), ("off", "{reg}".to_string())];
    assert_eq!(render("{reg} invalid mem access at {off}", &args), "R1 invalid mem access at {reg}");
    // Unknown placeholders and lone braces stay as they are.
    assert_eq!(render("{x} {reg} {", &args), "{x} R1 {");
    assert_eq!(render("no placeholder", &[]), "no placeholder");
}
