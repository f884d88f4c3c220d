//! Unit tests for the hot path: a case prepared once for every profile, `check_cfg()` past its inline
//! buffers, the fixed-array stack bytes and one-pass message rendering. Expectations from the
//! verifier sources (`check_cfg()`: "unreachable insn %d"; `check_stack_write_fixed_off()`).

use super::state::{StackByte, StackBytes};
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, ProgType};
use crate::insn::{BPF_JA, BPF_JMP, BPF_X};
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

/// Each profile's verdict on `case` through one [`Prepared`] shared by all profiles (in both
/// orders, so a result cached under one profile is met by the others) equals a fresh [`check`].
fn assert_prepared_matches_fresh(case: &Case) {
    let module = crate::module_src::bundled();
    let profiles = KernelProfile::all();
    let fresh: Vec<_> = profiles.iter().map(|p| check(case, p, &module)).collect();
    for order in [profiles.iter().collect::<Vec<_>>(), profiles.iter().rev().collect()] {
        let prep = Prepared::new(case);
        for p in order {
            let i = profiles.iter().position(|q| q.name == p.name).expect("a profile");
            let got = check_prepared(&prep, p, &module, &ModelOptions::default());
            assert_eq!(got, fresh[i], "{}: {}", case.name, p.name);
        }
    }
}

#[test]
fn a_prepared_case_gives_each_profile_the_verdict_of_a_fresh_check() {
    // check_cfg() ("unreachable insn 2"), the layout passes ("jump out of range from insn 0 to
    // 5"), a lock program (accepted), an opcode the 6.12 table lacks and 7.x has (gotox).
    let mut programs = vec![
        long_case("r0 = 0\nexit\nr0 = 1\nexit\n"),
        long_case("if r1 == 0 goto +4\nr0 = 0\nexit\n"),
        long_case("r0 = 0\nexit\n"),
    ];
    let mut gotox = long_case("r0 = 0\nexit\n");
    gotox.program.insns[0].code = BPF_JMP | BPF_JA | BPF_X;
    programs.push(gotox);
    // BPF_EXIT with a reserved field: refused in the pre-pass on 7.x (check_insn_fields()), where
    // do_check() meets it on 6.12, so the two profile groups differ on the same prepared case.
    let mut reserved = long_case("r0 = 0\nexit\n");
    reserved.program.insns[1].dst = 1;
    programs.push(reserved);
    for case in &programs {
        assert_prepared_matches_fresh(case);
    }
    let module = crate::module_src::bundled();
    let verdict = |c: &Case, p: &str| check(c, &KernelProfile::by_name(p).expect("profile"), &module);
    assert_eq!(verdict(&programs[0], "7.3").message.as_deref(), Some("unreachable insn 2"));
    assert_eq!(verdict(&programs[1], "7.3").message.as_deref(), Some("jump out of range from insn 0 to 5"));
    let (old, new) = (verdict(&programs[4], "6.12"), verdict(&programs[4], "7.3"));
    assert_eq!((old.insn, new.insn), (Some(1), None), "{old:?} {new:?}");
}
