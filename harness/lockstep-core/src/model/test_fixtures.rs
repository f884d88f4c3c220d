//! Fixtures the model's unit tests share: the `{ int cnt; <lock> lock; }` map value most rules
//! are tested on, and a case's verdict on every profile.

use super::*;
use crate::case::{Case, Field, FieldKind, MapSpec, MapType, ValueLayout};

/// Map `name` of `map_type` with an 8-byte value `{ int cnt; <lock> lock; }` (the lock at offset 4,
/// of kind `lock`), one entry, 4-byte key; `btf`: whether the map has BTF for its value.
pub(super) fn cnt_lock_map(name: &str, map_type: MapType, lock: FieldKind, btf: bool) -> MapSpec {
    MapSpec {
        name: name.into(),
        map_type,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout {
            size: 8,
            fields: vec![
                Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None },
                Field { name: "lock".into(), kind: lock, offset: 4, size: 4, target: None },
            ],
        },
        btf,
        global_section: false,
        flags: 0,
        inner: None,
    }
}

/// The model's verdict on `c` under every profile, with the bundled test module.
pub(super) fn verdicts_on_all_profiles(c: &Case) -> Vec<(String, Verdict)> {
    let module = crate::module_src::bundled();
    KernelProfile::all().iter().map(|p| (p.name.clone(), check(c, p, &module))).collect()
}

/// A case of program `t` in section `sec` of an object (`t.bpf.o`, with BTF func_info), as the
/// import gives it: program type and sleepable from the section, `text` assembled with `symbols`.
pub(super) fn object_case_in(sec: &str, text: &str, symbols: &crate::asm::Symbols) -> Case {
    let st = crate::import::sec::prog_type_of_section(sec).expect("a section libbpf knows");
    let program = crate::asm::assemble(text, symbols).expect("test program assembles");
    let mut c = Case::new("t", st.prog_type, program, text);
    c.sleepable = st.sleepable;
    c.object = Some(crate::case::ObjectSource {
        file_name: "t.bpf.o".into(),
        bytes: std::sync::Arc::from(&[][..]),
        program: "t".into(),
        section: sec.into(),
        func_info: true,
        autoload: vec!["t".into()],
        log_level: 1,
        prog_flags: 0,
        test_run: false,
        struct_ops: None,
    });
    c
}
