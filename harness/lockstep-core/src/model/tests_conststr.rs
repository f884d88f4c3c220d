//! Unit tests for constant strings (`model/conststr.rs`): `bpf_strncmp`'s
//! `ARG_PTR_TO_CONST_STR`, judged by `check_arg_const_str()` (kernel/bpf/verifier.c) on the
//! contents of an object's `.rodata` section. The same rules, compiled by clang, are in
//! `tests/c/conststr.bpf.c` (run on debian:6.12, 7.2 and 7.3).

use super::test_fixtures::*;
use super::*;
use crate::asm::Symbols;
use crate::case::{Case, FieldKind, MapSpec, MapType, ValueLayout};
use crate::verdict::VerdictKind;

/// A relocatable ELF64 (EM_BPF) holding only `sections` (name, bytes) and `.shstrtab`.
fn elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut shstr = vec![0u8];
    let mut names = Vec::new();
    for (n, _) in sections.iter().map(|(n, d)| (*n, *d)).chain([(".shstrtab", &[][..])]) {
        names.push(shstr.len() as u32);
        shstr.extend_from_slice(n.as_bytes());
        shstr.push(0);
    }
    let mut body = Vec::new();
    let mut offs = Vec::new();
    for (_, d) in sections {
        offs.push(64 + body.len() as u64);
        body.extend_from_slice(d);
    }
    let shstr_off = 64 + body.len() as u64;
    body.extend_from_slice(&shstr);
    while body.len() % 8 != 0 {
        body.push(0);
    }
    let shoff = 64 + body.len() as u64;
    let shnum = sections.len() as u16 + 2;
    let mut out = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    out.extend_from_slice(&247u16.to_le_bytes()); // EM_BPF
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&shoff.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 0, 0, 64, shnum, shnum - 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&body);
    let mut sh = |name: u32, ty: u32, flags: u64, off: u64, size: u64| {
        for v in [name, ty] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [flags, 0, off, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
    };
    sh(0, 0, 0, 0, 0);
    for (i, (_, d)) in sections.iter().enumerate() {
        sh(names[i], 1, 2, offs[i], d.len() as u64); // SHT_PROGBITS, SHF_ALLOC
    }
    sh(names[sections.len()], 3, 0, shstr_off, shstr.len() as u64); // SHT_STRTAB
    out
}

fn global(name: &str, size: u32, flags: u32) -> MapSpec {
    MapSpec {
        name: name.into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size, fields: vec![] },
        btf: true,
        global_section: true,
        flags,
        inner: None,
    }
}

const RODATA: &[u8] = b"foo\0xyz";

/// `bpf_strncmp(m value, 4, R3)` with R3 set by `r3`, in an object whose `.rodata` is [`RODATA`].
fn strncmp_case(r3: &str) -> Case {
    let text = format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
         if r0 == 0 goto out\n r1 = r0\n r2 = 4\n {r3}\n call bpf_strncmp\n out:\n r0 = 0\n exit"
    );
    let symbols = Symbols { maps: vec!["m".into(), ".rodata".into(), ".data".into()], kfuncs: vec![] };
    let mut c = object_case_in("tc", &text, &symbols);
    c.maps = vec![
        cnt_lock_map("m", MapType::Array, FieldKind::Int, true),
        global(".rodata", RODATA.len() as u32, 1 << 7),
        global(".data", 4, 0),
    ];
    if let Some(o) = c.object.as_mut() {
        o.bytes = std::sync::Arc::from(&elf(&[(".rodata", RODATA), (".data", b"bar\0")])[..]);
    }
    c
}

#[test]
fn strncmp_takes_a_nul_terminated_rodata_string() {
    for (p, v) in verdicts_on_all_profiles(&strncmp_case("r3 = .rodata ll")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // "xyz" runs to the value's end without a NUL: strnchr() finds none.
    for (p, v) in verdicts_on_all_profiles(&strncmp_case("r3 = .rodata ll\n r3 += 4")) {
        assert_eq!(v, Verdict::reject(Some(13), "string is not zero-terminated"), "{p}");
    }
}

#[test]
fn strncmp_refuses_a_scalar_string() {
    // check_reg_type(): ARG_PTR_TO_CONST_STR takes PTR_TO_MAP_VALUE alone, and 0 is no NULL for
    // it (not nullable); insn 11 is the call.
    for (p, v) in verdicts_on_all_profiles(&strncmp_case("r3 = 0")) {
        assert_eq!(v, Verdict::reject(Some(11), "R3 type=scalar expected=map_value"), "{p}");
    }
}

#[test]
fn strncmp_refuses_a_string_of_a_writable_map() {
    for (p, v) in verdicts_on_all_profiles(&strncmp_case("r3 = .data ll")) {
        assert_eq!(v, Verdict::reject(Some(12), "R3 does not point to a readonly map'"), "{p}");
    }
}

#[test]
fn what_the_model_does_not_know_stays_unsupported() {
    // A case file's maps: lockstep creates them without contents, unfrozen.
    let mut c = strncmp_case("r3 = .rodata ll");
    c.object = None;
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("bpf_strncmp"), "{p}: {v:?}");
    }
    // A variable offset, and a first argument on the stack.
    for r3 in [
        "r3 = .rodata ll\n r4 = *(u32 *)(r0 + 0)\n r4 &= 1\n r3 += r4",
        "r3 = .rodata ll\n r1 = r10\n r1 += -4",
    ] {
        for (p, v) in verdicts_on_all_profiles(&strncmp_case(r3)) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
            assert!(v.message.as_deref().unwrap_or("").contains("bpf_strncmp"), "{p}: {v:?}");
        }
    }
}
