//! Fixtures the model's unit tests share: the `{ int cnt; <lock> lock; }` map value most rules
//! are tested on, and a case's verdict on every profile.

use super::*;
use crate::case::{Case, Field, FieldKind, FieldTarget, MapSpec, MapType, ObjType, ProgType, ValueLayout};

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

/// The model's verdict on `c` under every profile, each given `btf` as its kernel BTF (or none).
pub(super) fn verdicts_with_kernel_btf(
    c: &Case,
    btf: Option<&std::sync::Arc<crate::kernel_btf::KernelBtf>>,
) -> Vec<(String, Verdict)> {
    let module = crate::module_src::bundled();
    KernelProfile::all()
        .into_iter()
        .map(|mut p| {
            p.kernel_btf = crate::kernel_btf::KernelBtfRef(btf.cloned());
            (p.name.clone(), check(c, &p, &module))
        })
        .collect()
}

/// The sample kernel BTF (`kernel_btf::fixture::sample`), parsed.
pub(super) fn sample_kernel_btf() -> std::sync::Arc<crate::kernel_btf::KernelBtf> {
    let bytes = crate::kernel_btf::fixture::sample();
    std::sync::Arc::new(crate::kernel_btf::KernelBtf::parse("sample", &bytes).expect("sample BTF parses"))
}

/// Asserts `want` on every profile.
pub(super) fn assert_on_all_profiles(c: &Case, want: &Verdict) {
    for (p, v) in verdicts_on_all_profiles(c) {
        assert_eq!(&v, want, "{p}");
    }
}

/// Asserts `want` on the 7.x profiles and `unsupported` on 6.12 (whose messages differ).
pub(super) fn assert_on_7x_unsupported_on_612(c: &Case, want: &Verdict) {
    for (p, v) in verdicts_on_all_profiles(c) {
        if p == "6.12" {
            assert_eq!(v.verdict, crate::verdict::VerdictKind::Unsupported, "{p}: {v:?}");
        } else {
            assert_eq!(&v, want, "{p}");
        }
    }
}

/// The verdicts on every profile of a program of `prog_type` assembled from `text` (no maps, no kfuncs).
pub(super) fn text_verdicts(prog_type: ProgType, text: &str) -> Vec<(String, Verdict)> {
    let program =
        crate::asm::assemble(text, &crate::asm::Symbols::default()).expect("test program assembles");
    verdicts_on_all_profiles(&Case::new("t", prog_type, program, text))
}

/// Asserts `want` on every profile for the program [`text_verdicts`] builds.
pub(super) fn assert_text_on_all_profiles(prog_type: ProgType, text: &str, want: &Verdict) {
    for (p, v) in text_verdicts(prog_type, text) {
        assert_eq!(&v, want, "{text} on {p}");
    }
}

/// An array map `m` (4-byte key, one entry, with BTF) of `{ long cnt; <kind> task; }` where `task`
/// (at 8) points to a kernel `task_struct` (`__kptr`, `__kptr_untrusted`, ...).
pub(super) fn task_kptr_map(kind: FieldKind) -> MapSpec {
    let task =
        Field { target: Some(FieldTarget::Pointee("task_struct".into())), ..Field::new("task", kind, 8, 8) };
    MapSpec {
        inner: None,
        name: "m".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size: 16, fields: vec![Field::new("cnt", FieldKind::Int, 0, 8), task] },
        btf: true,
        global_section: false,
        flags: 0,
    }
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

/// Map `m`, one entry of `{ struct bpf_spin_lock lock; <root> head __contains(obj, node); }` (head
/// at 8, value size 24), with BTF; a global data section's when `global_section`.
pub(super) fn graph_map(root: FieldKind, global_section: bool) -> MapSpec {
    let head = Field {
        target: Some(FieldTarget::Contains { type_name: "obj".into(), node: "node".into() }),
        ..Field::new("head", root, 8, 16)
    };
    MapSpec {
        name: "m".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size: 24, fields: vec![Field::new("lock", FieldKind::SpinLock, 0, 4), head] },
        btf: true,
        global_section,
        flags: 0,
        inner: None,
    }
}

/// A graph case (sched_cls): map `m` with the value `{ struct bpf_spin_lock lock; <root> head
/// __contains(obj, node); }` (head at 8), and `struct obj { long key; <node> node; }` (node at 8),
/// BTF id 30; the program puts the map value in r7 (insns 0-7) and a new obj in r6 (8-13), then
/// runs `body`, then `out: r0 = 0; exit`, then `tail` (callback subprograms).
pub(super) fn graph_case(root: FieldKind, node: FieldKind, kfuncs: &[&str], body: &str, tail: &str) -> Case {
    let map = graph_map(root, false);
    let obj = ObjType {
        btf_id: Some(30),
        ..ObjType::new(
            "obj",
            ValueLayout {
                size: 32,
                fields: vec![Field::new("key", FieldKind::Int, 0, 8), Field::new("node", node, 8, 24)],
            },
        )
    };
    let text = format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n\
         if r0 == 0 goto out\n r7 = r0\n r1 = 30 ll\n r2 = 0\n call bpf_obj_new_impl\n\
         if r0 == 0 goto out\n r6 = r0\n{body}\nout:\n r0 = 0\n exit\n{tail}"
    );
    let kfuncs: Vec<String> = kfuncs.iter().map(|k| k.to_string()).collect();
    let symbols = crate::asm::Symbols { maps: vec!["m".into()], kfuncs: kfuncs.to_vec() };
    let program = crate::asm::assemble(&text, &symbols).expect("test program assembles");
    Case {
        maps: vec![map],
        types: vec![obj],
        extern_kfuncs: kfuncs,
        ..Case::new("t", ProgType::SchedCls, program, text)
    }
}

/// Asserts the same verdict on every profile, but for 6.12's "arg#1" where 7.x says "R2" in
/// "R2 expected pointer to allocated object" (the one graph line that differs).
pub(super) fn assert_graph_verdict_7x(c: &Case, want: &Verdict) {
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        let v = check(c, &p, &module);
        let mut want = want.clone();
        if !p.res_spin_lock && want.message.as_deref() == Some("R2 expected pointer to allocated object") {
            want.message = Some("arg#1 expected pointer to allocated object".into());
        }
        assert_eq!(v, want, "{}", p.name);
    }
}
