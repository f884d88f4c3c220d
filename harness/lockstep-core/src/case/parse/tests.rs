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
