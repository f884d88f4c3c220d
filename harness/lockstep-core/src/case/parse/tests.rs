use super::*;

fn parse(src: &str) -> Result<Vec<Case>, CaseError> {
    parse_cases("t.toml", src, &["lockstep_safe".to_string()])
}

const GOOD: &str = r#"
[[case]]
name = "ok"
prog_type = "sched_cls"
text = '''
r0 = 0
exit
'''

[[case.map]]
name = "m"
fields = [{ name = "cnt", kind = "int" }, { name = "lock", kind = "spin_lock" }]

[case.expect."7.3"]
verdict = "accept"
"#;

#[test]
fn parses_a_case_with_a_map() {
    let cases = parse(GOOD).unwrap();
    assert_eq!(cases.len(), 1);
    let c = &cases[0];
    assert_eq!((c.name.as_str(), c.line, c.prog_type), ("ok", 3, ProgType::SchedCls));
    assert_eq!(c.maps[0].value.size, 8);
    assert_eq!(c.maps[0].value.field_of(FieldKind::SpinLock).unwrap().offset, 4);
    assert_eq!(c.program.insns.len(), 2);
}

#[test]
fn text_after_map_table_is_a_located_error() {
    // TOML puts keys written after [[case.map]] into the map table.
    let src = "[[case]]\nname = \"x\"\nprog_type = \"xdp\"\n[[case.map]]\nname = \"m\"\ntext = 'exit'\n";
    let e = parse(src).unwrap_err();
    assert!(e.message.contains("unknown field `text`"), "{e}");
    assert_eq!(e.line, 6);
}

#[test]
fn asm_error_is_located_in_the_file() {
    let src = "[[case]]\nname = \"x\"\nprog_type = \"xdp\"\ntext = '''\nr0 = 0\nr0 = bogus +\nexit\n'''\n";
    let e = parse(src).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.to_string().starts_with("t.toml:6:"), "{e}");
}

#[test]
fn unknown_prog_type_is_located() {
    let src = "[[case]]\nname = \"x\"\nprog_type = \"nope\"\ntext = 'exit'\n";
    let e = parse(src).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("unknown prog_type `nope`"), "{e}");
}

#[test]
fn unknown_call_is_an_error() {
    let src = "[[case]]\nname = \"x\"\nprog_type = \"xdp\"\ntext = '''\ncall no_such_kfunc\nexit\n'''\n";
    let e = parse(src).unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("no_such_kfunc"), "{e}");
}

#[test]
fn toml_syntax_error_is_located() {
    let e = parse("[[case]]\nname = \"x\nprog_type = 1\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn misaligned_lock_is_rejected() {
    let src = "[[case]]\nname = \"x\"\nprog_type = \"xdp\"\ntext = 'exit'\n[[case.map]]\nname = \"m\"\nfields = [{ name = \"l\", kind = \"spin_lock\", offset = 2 }]\n";
    let e = parse(src).unwrap_err();
    assert!(e.message.contains("not 4-byte aligned"), "{e}");
}

#[test]
fn duplicate_case_names_are_rejected() {
    let src = "[[case]]\nname = \"x\"\nprog_type = \"xdp\"\ntext = 'exit'\n[[case]]\nname = \"x\"\nprog_type = \"xdp\"\ntext = 'exit'\n";
    let e = parse(src).unwrap_err();
    assert_eq!(e.line, 6);
}

#[test]
fn an_expectation_for_an_unknown_profile_is_located() {
    let src = GOOD.replace("[case.expect.\"7.3\"]", "[case.expect.\"9.9\"]");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, 14, "{e}");
    assert!(e.message.contains("unknown profile `9.9`") && e.message.contains("7.2+kf-spin-lock"), "{e}");
    let star = GOOD.replace("[case.expect.\"7.3\"]", "[case.expect.\"*\"]");
    assert!(parse(&star).is_ok());
}

proptest::proptest! {
    #[test]
    fn arbitrary_input_never_panics(s in "\\PC{0,400}") {
        let _ = parse(&s);
    }

    #[test]
    fn mutated_case_never_panics(cut in 0usize..300, ins in "\\PC{0,8}") {
        let mut src = GOOD.to_string();
        let at = src.char_indices().map(|(i, _)| i).nth(cut % GOOD.chars().count()).unwrap_or(0);
        src.insert_str(at, &ins);
        let _ = parse(&src);
    }
}

const GRAPH: &str = r#"
[[case]]
name = "graph"
prog_type = "sched_cls"
text = '''
r0 = 0
exit
'''

[[case.map]]
name = "m"
fields = [
    { name = "lock", kind = "spin_lock" },
    { name = "obj", kind = "kptr", pointee = "node_data" },
    { name = "head", kind = "list_head", contains = "node_data:l" },
    { name = "root", kind = "rb_root", contains = "node_data:r" },
]

[[case.type]]
name = "node_data"
fields = [
    { name = "key", kind = "int", size = 8 },
    { name = "ref", kind = "refcount" },
    { name = "l", kind = "list_node" },
    { name = "r", kind = "rb_node" },
    { name = "u", kind = "kptr_untrusted", pointee = "task_struct" },
    { name = "p", kind = "percpu_kptr", pointee = "val_t" },
]
"#;

#[test]
fn graph_roots_kptrs_and_local_types_take_their_uapi_sizes_and_alignments() {
    let c = &parse(GRAPH).unwrap()[0];
    let offs: Vec<(FieldKind, u32, u32)> =
        c.maps[0].value.fields.iter().map(|f| (f.kind, f.offset, f.size)).collect();
    // include/uapi/linux/bpf.h: bpf_list_head / bpf_rb_root are 16 bytes, 8-aligned.
    assert_eq!(
        offs,
        [
            (FieldKind::SpinLock, 0, 4),
            (FieldKind::Kptr, 8, 8),
            (FieldKind::ListHead, 16, 16),
            (FieldKind::RbRoot, 32, 16)
        ]
    );
    assert_eq!(c.maps[0].value.size, 48);
    let head = &c.maps[0].value.fields[2];
    assert_eq!(head.target, Some(FieldTarget::Contains { type_name: "node_data".into(), node: "l".into() }));
    assert_eq!(c.maps[0].value.fields[1].target, Some(FieldTarget::Pointee("node_data".into())));
    let t = &c.types[0];
    assert_eq!(t.name, "node_data");
    let offs: Vec<(FieldKind, u32)> = t.layout.fields.iter().map(|f| (f.kind, f.offset)).collect();
    // bpf_refcount is 4 bytes, bpf_list_node 24, bpf_rb_node 32 (8-aligned).
    assert_eq!(
        offs,
        [
            (FieldKind::Int, 0),
            (FieldKind::Refcount, 8),
            (FieldKind::ListNode, 16),
            (FieldKind::RbNode, 40),
            (FieldKind::KptrUntrusted, 72),
            (FieldKind::PercpuKptr, 80),
        ]
    );
    assert_eq!(t.layout.size, 88);
}

#[test]
fn graph_fields_round_trip_through_the_writer() {
    let c = &parse(GRAPH).unwrap()[0];
    let again = parse(&crate::case::write::case_toml(c, &[])).unwrap();
    assert_eq!((&again[0].maps, &again[0].types), (&c.maps, &c.types));
}

#[test]
fn a_graph_root_without_contains_and_misplaced_targets_are_located_errors() {
    let field = |f: &str| GOOD.replace(r#"{ name = "lock", kind = "spin_lock" }"#, f);
    let e = parse(&field(r#"{ name = "h", kind = "list_head" }"#)).unwrap_err();
    assert!(e.message.contains("needs `contains"), "{e}");
    assert_eq!(e.line, 12, "the `fields` line");
    let e = parse(&field(r#"{ name = "h", kind = "list_head", contains = "foo" }"#)).unwrap_err();
    assert!(e.message.contains("expected \"type:node_field\""), "{e}");
    let e = parse(&field(r#"{ name = "k", kind = "kptr" }"#)).unwrap_err();
    assert!(e.message.contains("needs `pointee"), "{e}");
    let e = parse(&field(r#"{ name = "l", kind = "spin_lock", pointee = "x" }"#)).unwrap_err();
    assert!(e.message.contains("`pointee` is for kptr"), "{e}");
    let e = parse(&field(r#"{ name = "l", kind = "list_node", size = 16 }"#)).unwrap_err();
    assert!(e.message.contains("a list_node is 24 bytes"), "{e}");
    let e = parse(&field(r#"{ name = "l", kind = "list_nod" }"#)).unwrap_err();
    assert!(e.message.contains("unknown field kind `list_nod`"), "{e}");
}

#[test]
fn a_type_declared_twice_is_an_error() {
    let src = format!("{GOOD}\n[[case.type]]\nname = \"t\"\n\n[[case.type]]\nname = \"t\"\n");
    // The [[case.type]] tables after [case.expect."7.3"] still belong to the case.
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("type `t` declared twice"), "{e}");
}

#[test]
fn a_kptr_to_its_own_or_a_later_local_type_is_an_error() {
    let t = |ty: &str, pointee: &str| {
        format!("\n[[case.type]]\nname = \"{ty}\"\nfields = [{{ name = \"k\", kind = \"kptr\", pointee = \"{pointee}\" }}]\n")
    };
    let ok = format!("{GOOD}{}{}", t("a", "task_struct"), t("b", "a"));
    assert!(parse(&ok).is_ok());
    let e = parse(&format!("{GOOD}{}", t("a", "a"))).unwrap_err();
    assert!(e.message.contains("type `a`: kptr `k` points to `a`, which is not declared before `a`"), "{e}");
    let e = parse(&format!("{GOOD}{}{}", t("a", "b"), t("b", "task_struct"))).unwrap_err();
    assert!(e.message.contains("points to `b`"), "{e}");
}
