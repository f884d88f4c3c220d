//! On excerpts of the real files: verifier_spin_lock.c and include/uapi/linux/bpf.h (7.3).

use super::*;
use crate::case::{Field, FieldKind, MapType};
use crate::corpus::known_kfuncs;
use crate::import::cfile::Operand;
use crate::import::uapi_defs;
use crate::verdict::VerdictKind;

const FILE: &str = include_str!("verifier_spin_lock_excerpt.c");
const UAPI: &str = include_str!("uapi_bpf_excerpt.h");

fn opts() -> ImportOptions {
    ImportOptions {
        profile: "7.3".into(),
        origin: "linux-source-7.3 test excerpt".into(),
        known_kfuncs: known_kfuncs(&crate::module_src::bundled()),
    }
}

fn import() -> FileImport {
    import_file("tools/testing/selftests/bpf/progs/verifier_spin_lock.c", FILE, &uapi_defs(UAPI), &opts())
}

#[test]
fn sk_buff_offsets_follow_the_uapi_layout() {
    let d = uapi_defs(UAPI);
    let off = |f: &str| d.eval_str(&format!("offsetof(struct __sk_buff, {f})")).unwrap();
    assert_eq!(off("mark"), 8);
    assert_eq!(off("cb[0]"), 48);
    assert_eq!(off("cb[4]"), 64);
    assert_eq!(off("data"), 76);
    assert_eq!(off("data_end"), 80);
    // __bpf_md_ptr: 8 bytes, 8-aligned (after data_meta at 140)
    assert_eq!(off("flow_keys"), 144);
    assert_eq!(off("sk"), 168);
    // __u8 tstamp_type; __u32 :24; then an 8-aligned __u64
    assert_eq!(off("tstamp_type"), 180);
    assert_eq!(off("hwtstamp"), 184);
    assert_eq!(d.eval_str("sizeof(struct __sk_buff)").unwrap(), 192);
    assert!(d.eval_str("offsetof(struct __sk_buff, nope)").is_err());
}

#[test]
fn constant_expressions() {
    let d = uapi_defs("#define MAX_ENTRIES 11\nenum e { A, B = 5, C };\n");
    assert_eq!(d.eval_str("MAX_ENTRIES - 1").unwrap(), 10);
    assert_eq!(d.eval_str("(1 << 29) | C").unwrap(), (1 << 29) | 6);
    assert_eq!(d.eval_str("0xffffffff - 1").unwrap(), 0xfffffffe);
    assert_eq!(d.eval_str("~0").unwrap(), -1);
    assert_eq!(d.eval_str("INT_MIN").unwrap(), i32::MIN as i64);
    assert_eq!(d.eval_str("sizeof(__u64) * 2 + 1").unwrap(), 17);
    assert!(d.eval_str("UNKNOWN_THING").unwrap_err().0.contains("UNKNOWN_THING"));
}

#[test]
fn map_with_lock_in_value() {
    let fd = parse_file(FILE, &uapi_defs(UAPI));
    let m = fd.maps["map_spin_lock"].as_ref().unwrap();
    assert_eq!(m.map_type, MapType::Array);
    assert_eq!((m.key_size, m.max_entries, m.value.size), (4, 1, 8));
    assert!(m.btf);
    // struct val { int cnt; struct bpf_spin_lock l; };
    assert_eq!(
        m.value.fields[0],
        Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None }
    );
    assert_eq!(
        m.value.fields[1],
        Field { name: "l".into(), kind: FieldKind::SpinLock, offset: 4, size: 4, target: None }
    );
}

#[test]
fn functions_and_annotations() {
    let fd = parse_file(FILE, &uapi_defs(UAPI));
    let names: Vec<_> = fd.funcs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "spin_lock_test1_success",
            "lock_in_subprog_without_unlock",
            "lock_in_subprog_without_unlock__1",
            "reg_id_for_map_value",
            "bpf_loop_inside_locked_region"
        ]
    );
    let t1 = &fd.funcs[0];
    assert_eq!(t1.sec.as_deref(), Some("cgroup/skb"));
    assert_eq!(
        t1.annotations,
        [
            "test_description=spin_lock: test1 success",
            "test_expect_success",
            "test_expect_failure_unpriv",
            "test_expect_msg_unpriv=",
            "test_retval=0"
        ]
    );
    assert_eq!(t1.c_annotations[0], "__description(\"spin_lock: test1 success\")");
    let (asm, ops) = t1.asm.as_ref().unwrap();
    assert!(asm.contains("l0_%=:\tr6 = r0;"), "{asm}");
    assert_eq!(ops["map_spin_lock"], Operand::Addr("map_spin_lock".into()));
    assert_eq!(ops["bpf_spin_lock"], Operand::Imm("bpf_spin_lock".into()));
    let sub = &fd.funcs[2];
    assert!(sub.is_static && sub.sec.is_none());
    assert!(fd.funcs[4].asm.is_none() && fd.funcs[4].body_mentions_lock);
}

#[test]
fn converts_test1_with_its_expectation() {
    let imp = import();
    let c = &imp.converted.iter().find(|c| c.case.name == "spin_lock_test1_success").unwrap().case;
    assert_eq!(c.prog_type, crate::case::ProgType::CgroupSkb);
    assert_eq!(c.description.as_deref(), Some("spin_lock: test1 success"));
    assert_eq!(c.expect["7.3"].verdict, VerdictKind::Accept);
    assert!(c.tags.contains(&"unpriv:failure".to_string()) && c.tags.contains(&"retval:0".to_string()));
    assert!(
        c.text.contains("    r1 = map_spin_lock ll;") && c.text.contains("    call bpf_spin_lock;"),
        "{}",
        c.text
    );
    // 18 instructions, the ld_imm64 taking two slots
    assert_eq!(c.program.insns.len(), 19);
    assert_eq!(c.maps.len(), 1);
}

#[test]
fn appends_the_static_subprogram() {
    let imp = import();
    let c = &imp.converted.iter().find(|c| c.case.name == "lock_in_subprog_without_unlock").unwrap().case;
    assert!(c.text.contains("\nlock_in_subprog_without_unlock__1:\n    call bpf_spin_lock;"), "{}", c.text);
    assert!(c.globals.is_empty());
    assert_eq!(c.program.subprog_starts().len(), 2);
    // the subprogram is not a test itself
    assert!(!imp.converted.iter().any(|c| c.case.name == "lock_in_subprog_without_unlock__1"));
}

#[test]
fn evaluates_imm_const_and_keeps_the_flag() {
    let imp = import();
    let c = &imp.converted.iter().find(|c| c.case.name == "reg_id_for_map_value").unwrap().case;
    assert!(c.text.contains("r6 = *(u32*)(r6 + 8);"), "{}", c.text);
    assert_eq!(c.prog_flags, 1 << 3, "BPF_F_TEST_STATE_FREQ");
    assert_eq!(c.prog_type, crate::case::ProgType::SchedCls);
    let e = &c.expect["7.3"];
    assert_eq!(
        (e.verdict, e.msgs.as_slice()),
        (VerdictKind::Reject, &["bpf_spin_unlock of different lock".to_string()][..])
    );
}

#[test]
fn lists_the_c_test_as_not_converted() {
    let imp = import();
    assert_eq!(imp.converted.len(), 3);
    assert_eq!(imp.skipped.len(), 1);
    let s = &imp.skipped[0];
    assert_eq!(s.name, "bpf_loop_inside_locked_region");
    assert!(s.uses_lock && s.reason.contains("C body"), "{s:?}");
    assert_eq!(imp.lock_tests(), 4);
}

#[test]
fn the_case_file_reads_back() {
    let imp = import();
    let cases = crate::case::parse::parse_cases("x", &imp.toml, &opts().known_kfuncs).unwrap();
    assert_eq!(cases.len(), 3);
    for (a, b) in cases.iter().zip(&imp.converted) {
        assert_eq!(a.program, b.case.program);
        assert_eq!(a.expect, b.case.expect);
        assert_eq!(a.maps, b.case.maps);
    }
    assert!(imp.toml.contains("# verifier_spin_lock.c:"), "{}", imp.toml);
}

#[test]
fn non_lock_tests_are_listed_but_not_converted() {
    let src = format!(
        "{}\n{}",
        &FILE[..FILE.find("SEC(\"cgroup/skb\")").unwrap()],
        r#"SEC("kprobe")
__description("bpf_ktime_get_coarse_ns is forbidden in BPF_PROG_TYPE_KPROBE")
__failure __msg("program of this type cannot use helper bpf_ktime_get_coarse_ns")
__naked void in_bpf_prog_type_kprobe_1(void)
{
	asm volatile ("					\
	call %[bpf_ktime_get_coarse_ns];		\
	r0 = 0;						\
	exit;						\
"	:
	: __imm(bpf_ktime_get_coarse_ns)
	: __clobber_all);
}
"#
    );
    let imp = import_file("verifier_helper_restricted.c", &src, &uapi_defs(UAPI), &opts());
    assert!(imp.converted.is_empty());
    assert_eq!(imp.skipped[0].reason, "does not use a lock");
    assert!(!imp.skipped[0].uses_lock);
    assert!(imp.toml.is_empty());
}

#[test]
fn candidates() {
    assert!(is_candidate("a/progs/verifier_spin_lock.c", "bpf_spin_lock"));
    assert!(!is_candidate("a/progs/test_spin_lock.c", "bpf_spin_lock"));
    assert!(!is_candidate("a/progs/verifier_and.c", "r0 = 0"));
}
