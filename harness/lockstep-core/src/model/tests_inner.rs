//! Unit tests for map-in-map inner maps (`inner.rs`): the case-file form, the outer lookup's
//! CONST_PTR_TO_MAP, and lock identity across inner lookups (`process_spin_lock()`: map and id).

use super::test_fixtures::*;
use crate::case::parse::parse_cases;
use crate::case::{Case, MapType};
use crate::verdict::VerdictKind;

const KEY: &str = "r1 = 0\n*(u32 *)(r10 - 4) = r1\n";
const TAIL: &str = "out:\nr0 = 0\nexit\n";
const INNER: &str =
    "[case.map.inner]\ntype = \"array\"\nfields = [{ name = \"lock\", kind = \"spin_lock\" }, { name = \"cnt\", kind = \"int\" }]\n";

/// A lookup in `outer` into `map`, then in that inner map into `val`.
fn lookups(outer: &str, map: &str, val: &str) -> String {
    format!(
        "r2 = r10\nr2 += -4\nr1 = {outer} ll\ncall bpf_map_lookup_elem\nif r0 == 0 goto out\n{map} = r0\n\
         r2 = r10\nr2 += -4\nr1 = {map}\ncall bpf_map_lookup_elem\nif r0 == 0 goto out\n{val} = r0\n"
    )
}

fn outer(name: &str) -> String {
    format!("[[case.map]]\nname = \"{name}\"\ntype = \"array_of_maps\"\n{INNER}")
}

fn case(text: &str, maps: &str) -> Case {
    let src = format!("[[case]]\nname = \"t\"\nprog_type = \"sched_cls\"\ntext = '''\n{text}'''\n{maps}");
    parse_cases("t.toml", &src, &[]).expect("test case parses").remove(0)
}

fn lock_unlock(a: &str, b: &str) -> String {
    format!("r1 = {a}\ncall bpf_spin_lock\nr1 = {b}\ncall bpf_spin_unlock\n")
}

fn assert_all(c: &Case, verdict: VerdictKind, msg: Option<&str>) {
    for (p, v) in verdicts_on_all_profiles(c) {
        assert_eq!(v.verdict, verdict, "{p}: {v:?}");
        if let Some(m) = msg {
            assert_eq!(v.message.as_deref(), Some(m), "{p}");
        }
    }
}

#[test]
fn case_file_inner_map_is_parsed_and_checked() {
    let c = case(&format!("{KEY}{}{TAIL}", lookups("o", "r6", "r7")), &outer("o"));
    let m = &c.maps[0];
    assert_eq!(m.map_type, MapType::ArrayOfMaps);
    assert!(!m.btf, "libbpf creates a map-in-map without BTF");
    let inner = m.inner.as_deref().expect("inner map");
    assert_eq!((inner.name.as_str(), inner.map_type), ("o.inner", MapType::Array));
    assert!(inner.value.has_lock());
    let src = "[[case]]\nname = \"t\"\nprog_type = \"sched_cls\"\ntext = '''\nr0 = 0\nexit\n'''\n\n[[case.map]]\nname = \"o\"\ntype = \"array_of_maps\"\n";
    let e = parse_cases("t.toml", src, &[]).unwrap_err();
    assert!(e.to_string().contains("needs its inner map") && e.line == 10, "{e}");
    let src = format!("[[case]]\nname = \"t\"\nprog_type = \"sched_cls\"\ntext = '''\nr0 = 0\nexit\n'''\n\n[[case.map]]\nname = \"o\"\n{INNER}");
    let e = parse_cases("t.toml", &src, &[]).unwrap_err();
    assert!(e.to_string().contains("only an array_of_maps or hash_of_maps"), "{e}");
}

#[test]
fn one_inner_value_locks_and_unlocks() {
    let c = case(&format!("{KEY}{}{}{TAIL}", lookups("o", "r6", "r7"), lock_unlock("r7", "r7")), &outer("o"));
    assert_all(&c, VerdictKind::Accept, None);
}

#[test]
fn two_lookups_in_one_inner_map_are_different_locks() {
    let second = "r2 = r10\nr2 += -4\nr1 = r6\ncall bpf_map_lookup_elem\nif r0 == 0 goto out\nr8 = r0\n";
    let c = case(
        &format!("{KEY}{}{second}{}{TAIL}", lookups("o", "r6", "r7"), lock_unlock("r7", "r8")),
        &outer("o"),
    );
    assert_all(&c, VerdictKind::Reject, Some("bpf_spin_unlock of different lock"));
}

#[test]
fn inner_values_of_two_outer_maps_are_different_locks() {
    let text = format!(
        "{KEY}{}{}{}{TAIL}",
        lookups("a", "r6", "r7"),
        lookups("b", "r8", "r9"),
        lock_unlock("r7", "r9")
    );
    let c = case(&text, &format!("{}\n{}", outer("a"), outer("b")));
    assert_all(&c, VerdictKind::Reject, Some("bpf_spin_unlock of different lock"));
}

#[test]
fn outer_map_takes_only_lookups() {
    let text = format!(
        "{KEY}r2 = r10\nr2 += -4\nr3 = r10\nr3 += -4\nr4 = 0\nr1 = o ll\ncall bpf_map_update_elem\n{TAIL}"
    );
    let c = case(&text, &outer("o"));
    assert_all(&c, VerdictKind::Reject, Some("cannot pass map_type 12 into func bpf_map_update_elem#2"));
}

#[test]
fn inner_map_pointer_is_not_a_lock() {
    let c =
        case(&format!("{KEY}{}r1 = r6\ncall bpf_spin_lock\n{TAIL}", lookups("o", "r6", "r7")), &outer("o"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert!(
            v.message.as_deref().is_some_and(|m| m.starts_with("R1 type=map_ptr expected=")),
            "{p}: {v:?}"
        );
    }
}
