//! lockstep's C examples (`tests/c/*.bpf.c`) compiled with the system clang (`clang -O2 -g
//! -target bpf -c`), read back as cases through aya-obj, and checked by the model against the
//! expectations written in the C files (`__success`, `__failure`, `__msg`, `__expect_on`).
//! Skipped, with a message, when clang is not installed (scripts/setup.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_core::asm::{assemble, Reloc, Symbols};
use lockstep_core::case::{Case, FieldKind, FieldTarget, MapType};
use lockstep_core::corpus::{check_all, known_kfuncs};
use lockstep_core::import::elf::cases_from_object;
use lockstep_core::module_src::bundled;
use lockstep_core::profile::KernelProfile;

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/c")
}

/// (file stem, object bytes) of each compiled example.
type Objects = Vec<(String, Vec<u8>)>;

/// The compiled examples (once per test binary); None when clang is missing.
fn compile_all() -> Option<&'static [(String, Vec<u8>)]> {
    static OBJS: std::sync::OnceLock<Option<Objects>> = std::sync::OnceLock::new();
    OBJS.get_or_init(compile).as_deref()
}

fn compile() -> Option<Objects> {
    if Command::new("clang").arg("--version").output().is_err() {
        eprintln!("SKIPPED: clang not found; install it (scripts/setup.sh) to compile tests/c/*.bpf.c");
        return None;
    }
    let out = std::env::temp_dir().join(format!("lockstep-c-objects-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut objs = Vec::new();
    let mut srcs: Vec<PathBuf> = std::fs::read_dir(c_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    srcs.sort();
    assert!(srcs.len() >= 4, "tests/c has the examples");
    for src in srcs {
        let stem = src.file_name().unwrap().to_string_lossy().trim_end_matches(".c").to_string();
        let obj = out.join(format!("{stem}.o"));
        // Compiled from tests/c by file name with a fixed debug directory: the object's bytes do
        // not depend on where the repository is cloned, so the mutation test below mutates the
        // same bytes on every machine with the same clang.
        let st = Command::new("clang")
            .current_dir(c_dir())
            .args(["-O2", "-g", "-target", "bpf", "-fdebug-compilation-dir=/lockstep", "-c"])
            .arg(src.file_name().unwrap())
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap();
        assert!(st.success(), "clang failed on {}", src.display());
        objs.push((stem, std::fs::read(&obj).unwrap()));
    }
    let _ = std::fs::remove_dir_all(&out);
    Some(objs)
}

fn cases(objs: &[(String, Vec<u8>)], stem: &str) -> Vec<Case> {
    let (_, bytes) = objs.iter().find(|(s, _)| s == stem).unwrap_or_else(|| panic!("{stem} compiled"));
    let got = cases_from_object(stem, bytes, &known_kfuncs(&bundled())).unwrap();
    assert!(got.skipped.is_empty(), "{stem}: {:?}", got.skipped);
    got.cases
}

fn case<'a>(cs: &'a [Case], name: &str) -> &'a Case {
    cs.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("program {name}"))
}

#[test]
fn model_meets_the_expectations_written_in_the_c_files() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let module = bundled();
    let profiles = KernelProfile::all();
    for (stem, _) in objs {
        let cs = cases(objs, stem);
        assert!(!cs.is_empty(), "{stem} has programs");
        for r in check_all(&cs, &profiles, &module) {
            assert_eq!(
                r.expected,
                Some(true),
                "{stem}: {} on {}: model says {:?} {:?}",
                r.case,
                r.profile,
                r.verdict,
                r.message
            );
        }
    }
}

#[test]
fn map_value_lock_and_btf_layout() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let cs = cases(objs, "map_lock.bpf");
    let c = case(&cs, "map_lock_ok");
    assert_eq!(c.prog_type, lockstep_core::case::ProgType::SchedCls);
    let m = &c.maps[0];
    assert_eq!(
        (m.name.as_str(), m.map_type, m.key_size, m.max_entries, m.value.size, m.btf),
        ("vals", MapType::Array, 4, 1, 8, true)
    );
    let lock = m.value.field_of(FieldKind::SpinLock).unwrap();
    assert_eq!((lock.name.as_str(), lock.offset), ("lock", 4));
    assert!(c.program.relocs.values().any(|r| *r == Reloc::Map { name: "vals".into() }));
    assert!(c.program.relocs.values().any(|r| *r == Reloc::Helper { name: "bpf_spin_lock".into() }));
    assert_eq!(case(&cs, "map_lock_kprobe").prog_type, lockstep_core::case::ProgType::Kprobe);
    assert_eq!(c.description.as_deref(), Some("lock, update, unlock"));
}

#[test]
fn global_data_lock() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let cs = cases(objs, "global_lock.bpf");
    let c = case(&cs, "global_lock_ok");
    let m = &c.maps[0];
    assert!(m.global_section && m.btf);
    assert_eq!((m.name.as_str(), m.value.size), (".data.lock", 8));
    let lock = m.value.field_of(FieldKind::SpinLock).unwrap();
    let counter = m.value.field_of(FieldKind::Int).unwrap();
    // the offsets come from the symbol table (clang leaves them 0 in the DATASEC)
    assert_eq!(lock.offset + counter.offset, 4);
    assert!(c
        .program
        .relocs
        .values()
        .any(|r| *r == Reloc::MapValue { name: ".data.lock".into(), offset: lock.offset }));
}

#[test]
fn graph_roots_contains_and_local_types_come_from_the_btf() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let cs = cases(objs, "graph_fields.bpf");
    let c = case(&cs, "graph_map_lock_ok");
    let m = c.maps.iter().find(|m| m.name == "gvals").unwrap();
    let kinds: Vec<(FieldKind, u32)> = m.value.fields.iter().map(|f| (f.kind, f.offset)).collect();
    // struct gval: lock, cnt, then the 8-aligned 16-byte bpf_list_head and bpf_rb_root.
    assert_eq!(
        kinds,
        [(FieldKind::SpinLock, 0), (FieldKind::Int, 4), (FieldKind::ListHead, 8), (FieldKind::RbRoot, 24)]
    );
    assert_eq!(
        m.value.fields[2].target,
        Some(FieldTarget::Contains { type_name: "ls_obj".into(), node: "lnode".into() })
    );
    assert_eq!(
        m.value.fields[3].target,
        Some(FieldTarget::Contains { type_name: "ls_obj".into(), node: "rnode".into() })
    );
    // The contained type, with its nodes and bpf_refcount, is a local type of the case.
    let t = c.types.iter().find(|t| t.name == "ls_obj").expect("ls_obj is a local type");
    let kinds: Vec<(FieldKind, u32)> = t.layout.fields.iter().map(|f| (f.kind, f.offset)).collect();
    assert_eq!(
        kinds,
        [(FieldKind::Int, 0), (FieldKind::Refcount, 4), (FieldKind::ListNode, 8), (FieldKind::RbNode, 32)]
    );
}

#[test]
fn module_kfunc_externs_become_kfunc_calls() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let cs = cases(objs, "module_kfunc.bpf");
    let c = case(&cs, "safe_kfunc_under_lock");
    let (at, _) = c
        .program
        .relocs
        .iter()
        .find(|(_, r)| **r == Reloc::Kfunc { name: "lockstep_safe".into() })
        .expect("kfunc reloc");
    let insn = c.program.insns[*at];
    assert!(insn.is_kfunc_call() && insn.imm == 0 && insn.off == 0, "{insn:?}");
    // a test-module kfunc the model knows: not an extern one
    assert!(c.extern_kfuncs.is_empty());
    assert_eq!(c.expect["7.3"].verdict, lockstep_core::verdict::VerdictKind::Accept);
    assert_eq!(c.expect["*"].verdict, lockstep_core::verdict::VerdictKind::Reject);
}

#[test]
fn subprograms_are_linked_with_their_linkage() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let cs = cases(objs, "subprog.bpf");
    let s = case(&cs, "static_call_under_lock");
    assert!(s.globals.is_empty());
    assert_eq!(s.program.subprog_starts().len(), 2);
    assert!(s.program.labels.values().any(|l| l == "bump"), "{:?}", s.program.labels);
    let g = case(&cs, "global_call_under_lock");
    assert_eq!(g.globals.len(), 1);
    assert_eq!((g.globals[0].label.as_str(), g.globals[0].args), ("global_bump", 1));
}

#[test]
fn disassembly_reassembles_to_the_same_instructions() {
    let Some(objs) = compile_all() else { return };
    let objs: &[(String, Vec<u8>)] = objs;
    let kfuncs = known_kfuncs(&bundled());
    for (stem, _) in objs {
        for c in cases(objs, stem) {
            // The kfuncs the model does not know (bpf_throw, ...) are named in the case too.
            let kfuncs = kfuncs.iter().chain(&c.extern_kfuncs).cloned().collect();
            let symbols = Symbols { maps: c.maps.iter().map(|m| m.name.clone()).collect(), kfuncs };
            let back =
                assemble(&c.text, &symbols).unwrap_or_else(|e| panic!("{stem}/{}: {e}\n{}", c.name, c.text));
            assert_eq!(back.insns, c.program.insns, "{stem}/{}", c.name);
        }
    }
}

/// Section names aya-obj 0.3 does not know (`tc`, `?tc`, `syscall`) load; programs of types a
/// case cannot carry are listed as skipped with the reason; programs without annotations get
/// no expectation.
#[test]
fn section_names_and_skipped_programs() {
    if compile_all().is_none() {
        return;
    }
    let src = r#"
#include "lockstep.h"
SEC("?tc") int autoload_off(struct __sk_buff *skb) { return 0; }
SEC("syscall") int sys(void *ctx) { return 0; }
SEC("fentry/bpf_fentry_test1") int traced(void *ctx) { return 0; }
SEC("xdp") int plain_xdp(void *ctx) { return 2; }
char _license[] SEC("license") = "GPL";
"#;
    let dir = std::env::temp_dir().join(format!("lockstep-c-sections-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, o) = (dir.join("s.bpf.c"), dir.join("s.bpf.o"));
    std::fs::write(&c, src).unwrap();
    let st = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-I"])
        .arg(c_dir())
        .arg("-c")
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .unwrap();
    assert!(st.success());
    let got = cases_from_object("s.bpf.o", &std::fs::read(&o).unwrap(), &[]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<_> =
        got.cases.iter().map(|c| (c.name.as_str(), c.prog_type.name(), c.sleepable)).collect();
    assert_eq!(
        names,
        [
            ("autoload_off", "sched_cls", false),
            ("sys", "syscall", true),
            ("traced", "tracing", false),
            ("plain_xdp", "xdp", false)
        ]
    );
    // Every program is a case (the kernel loads each through libbpf); the fentry one is a
    // tracing program whose section the model reads its attach target from.
    let traced = &got.cases[2];
    assert_eq!(traced.model_unsupported, None);
    assert_eq!(traced.object.as_ref().unwrap().section, "fentry/bpf_fentry_test1");
    assert!(got.cases.iter().all(|c| c.object.as_ref().unwrap().autoload == [c.name.clone()]));
    assert!(got.cases.iter().all(|c| c.object.as_ref().unwrap().func_info));
    assert!(got.skipped.is_empty(), "{:?}", got.skipped);
    assert!(got.cases.iter().all(|c| c.expect.is_empty()));
}

/// The importer's cases (tests/corpus/selftests-VER, from the C source's asm text) against clang's
/// compilation of the same selftest file (scripts/build-selftest-objects.sh VER): the same
/// instructions, maps and expectations. Skipped for versions whose objects are not built.
#[test]
fn imported_selftests_match_the_compiled_selftest_objects() {
    let Some(home) = std::env::var_os("LOCKSTEP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lockstep")))
    else {
        return;
    };
    let kfuncs = known_kfuncs(&bundled());
    for v in ["6.12", "7.2", "7.3"] {
        for file in ["verifier_spin_lock", "verifier_helper_restricted"] {
            let obj = home.join(format!("selftest-objs/{v}/{file}.bpf.o"));
            let Ok(bytes) = std::fs::read(&obj) else {
                eprintln!(
                    "SKIPPED {v}/{file}: {} not built (scripts/build-selftest-objects.sh {v})",
                    obj.display()
                );
                continue;
            };
            let toml = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../tests/corpus/selftests-{v}/{file}.toml"));
            let imported = lockstep_core::case::parse::parse_cases(
                "t",
                &std::fs::read_to_string(&toml).unwrap(),
                &kfuncs,
            )
            .unwrap();
            let compiled = cases_from_object("o", &bytes, &kfuncs).unwrap().cases;
            for i in &imported {
                let c = case(&compiled, &i.name);
                assert_eq!(i.program.insns, c.program.insns, "{v} {}", i.name);
                assert_eq!(i.maps, c.maps, "{v} {}", i.name);
                assert_eq!(
                    (i.prog_type, i.prog_flags, i.log_level),
                    (c.prog_type, c.prog_flags, c.log_level),
                    "{v} {}",
                    i.name
                );
                let (ei, ec) = (&i.expect[v], &c.expect["*"]);
                assert_eq!((ei.verdict, &ei.msgs), (ec.verdict, &ec.msgs), "{v} {}", i.name);
            }
        }
    }
}

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

/// One to four bytes of `obj` changed: a random byte, a flipped bit, or an "interesting" value
/// (0, 0xff, 0x7f, 0x80) that tends to turn sizes and offsets into edge cases.
fn mutate(obj: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut m = obj.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(m.len());
        m[at] = match rng.below(3) {
            0 => rng.next() as u8,
            1 => m[at] ^ (1 << rng.below(8)),
            _ => [0, 0xff, 0x7f, 0x80][rng.below(4)],
        };
    }
    m
}

/// Byte-mutated objects are bad input, never a panic: every mutation of every compiled example
/// either reads (a byte that does not matter) or is an `ElfError` naming the file. Bounded: a
/// fixed number of mutations per object, a fixed seed (a failure names the seed and the byte).
#[test]
fn mutated_objects_never_panic() {
    let Some(objs) = compile_all() else { return };
    let known = known_kfuncs(&bundled());
    let mut rng = Rng(0x6c6f_636b_7374_6570);
    let (mut read, mut refused, mut panics) = (0, 0, Vec::new());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if std::env::var_os("LOCKSTEP_FUZZ_WHERE").is_some() {
            eprintln!("panic at {:?}", info.location());
        }
    }));
    for (stem, obj) in objs {
        for i in 0..1500 {
            let m = mutate(obj, &mut rng);
            let file = format!("{stem}.o#{i}");
            match std::panic::catch_unwind(|| cases_from_object(&file, &m, &known)) {
                Ok(Ok(_)) => read += 1,
                Ok(Err(e)) => {
                    assert!(e.0.starts_with(&file), "{e}");
                    if e.0.contains("panicked") {
                        panics.push(e.0.clone());
                    }
                    refused += 1;
                }
                Err(p) => panics.push(format!(
                    "{file}: panic escaped: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!("mutated objects: {read} read, {refused} refused, {} panics", panics.len());
    assert!(panics.is_empty(), "{} panics, first: {:#?}", panics.len(), &panics[..panics.len().min(10)]);
    assert!(refused > 0 && read > 0, "mutations both hit and miss what matters");
}

/// A relocation whose offset lies past the end of the code section it patches is an error naming
/// that section (it used to be dropped silently).
#[test]
fn relocation_past_its_section_is_an_error() {
    use object::{Object as _, ObjectSection as _};
    let Some(objs) = compile_all() else { return };
    let (_, obj) = objs.iter().find(|(s, _)| s == "map_lock.bpf").expect("map_lock example");
    let elf = object::File::parse(&obj[..]).unwrap();
    // The first `.rel<prog section>` (Elf64_Rel: r_offset u64, r_info u64).
    let rel = elf
        .sections()
        .find(|s| s.name().is_ok_and(|n| n.starts_with(".rel") && n != ".rel.BTF" && n != ".rel.BTF.ext"))
        .expect("a code relocation section");
    let target = rel.name().unwrap().trim_start_matches(".rel").to_string();
    let (start, _) = rel.file_range().unwrap();
    let mut bad = obj.clone();
    bad[start as usize..start as usize + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let err = cases_from_object("map_lock.bpf.o", &bad, &[]).unwrap_err().0;
    assert!(err.starts_with("map_lock.bpf.o: malformed object: a relocation at offset 1048576"), "{err}");
    assert!(err.contains(&format!("past the end of section `{target}`")), "{err}");
}

/// A call through a section symbol whose `imm` points before or past the callee's section is an
/// error naming both sections (aya-obj computed the callee from it with unchecked arithmetic and
/// panicked in debug builds: the CI failure of 2026-12-03).
#[test]
fn call_past_its_callee_section_is_an_error() {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    let Some(objs) = compile_all() else { return };
    let (_, obj) = objs.iter().find(|(s, _)| s == "subprog.bpf").expect("subprog example");
    let elf = object::File::parse(&obj[..]).unwrap();
    // The call to the static subprogram: an R_BPF_64_32 against the `.text` section symbol.
    let (sec, off) = elf
        .sections()
        .filter(|s| s.kind() == object::SectionKind::Text)
        .find_map(|s| {
            let (off, _) = s.relocations().find(|(_, r)| match r.target() {
                object::RelocationTarget::Symbol(i) => {
                    elf.symbol_by_index(i).is_ok_and(|y| y.kind() == object::SymbolKind::Section)
                }
                _ => false,
            })?;
            Some((s, off))
        })
        .expect("a call through the .text section symbol");
    let (start, _) = sec.file_range().unwrap();
    let name = sec.name().unwrap().to_string();
    for imm in [-5i32, i32::MAX, 0x10_0000] {
        let mut bad = obj.clone();
        let at = (start + off + 4) as usize;
        bad[at..at + 4].copy_from_slice(&imm.to_le_bytes());
        let err = cases_from_object("subprog.bpf.o", &bad, &[]).unwrap_err().0;
        assert!(
            err.contains(&format!("a relocation in section `{name}` at offset {off} (imm {imm}) points past the code of section `.text`")),
            "{err}"
        );
    }
}
