//! Tests of the fuzzing pieces: the generator (determinism, well-formedness, supported share),
//! the IR round trips, case-file writing, comparison, and the minimiser on a synthetic
//! disagreement (a model with a rule switched off against the normal model).

use std::collections::{BTreeMap, BTreeSet};

use super::ir::{SymProgram, Target};
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::Case;
use crate::model::{check, check_with, ModelOptions, Rule};
use crate::module_src::bundled;
use crate::profile::KernelProfile;
use crate::verdict::{Verdict, VerdictKind};

fn symbols(c: &Case) -> Symbols {
    Symbols {
        maps: c.maps.iter().map(|m| m.name.clone()).collect(),
        kfuncs: crate::corpus::known_kfuncs(&bundled()),
    }
}

#[test]
fn generation_is_deterministic_per_seed_and_index() {
    let g = Generator::new(&bundled());
    for i in 0..50 {
        assert_eq!(g.case(3, i), g.case(3, i));
    }
    let a: Vec<String> = (0..20).map(|i| g.case(3, i).text).collect();
    let b: Vec<String> = (0..20).map(|i| g.case(4, i).text).collect();
    assert_ne!(a, b);
    let distinct: BTreeSet<&String> = a.iter().collect();
    assert!(distinct.len() > 15, "only {} distinct programs of 20", distinct.len());
}

#[test]
fn generated_programs_pass_the_kernels_static_cfg_checks() {
    let g = Generator::new(&bundled());
    for i in 0..3000 {
        let c = g.case(11, i);
        if let Err(e) = cfg::check(&c.program) {
            panic!("case {i}: {e}\n{}", c.text);
        }
    }
}

/// The share of generated programs inside the model's subset, per profile, on a fixed seed.
#[test]
fn most_generated_programs_are_inside_the_model_subset() {
    let module = bundled();
    let g = Generator::new(&module);
    let cases: Vec<Case> = (0..2000).map(|i| g.case(1, i)).collect();
    for p in KernelProfile::all() {
        let mut kinds: BTreeMap<VerdictKind, usize> = BTreeMap::new();
        for c in &cases {
            *kinds.entry(check(c, &p, &module).verdict).or_default() += 1;
        }
        let unsupported = kinds.get(&VerdictKind::Unsupported).copied().unwrap_or(0);
        let share = 1.0 - unsupported as f64 / cases.len() as f64;
        eprintln!("profile {}: {kinds:?}, supported share {share:.3}", p.name);
        assert!(share >= 0.70, "profile {}: supported share {share:.3} < 0.70", p.name);
        // Both verdicts occur in quantity: the generator is neither all-accept nor all-reject.
        assert!(
            kinds.get(&VerdictKind::Accept).copied().unwrap_or(0) >= 200,
            "profile {}: too few accepts",
            p.name
        );
        assert!(
            kinds.get(&VerdictKind::Reject).copied().unwrap_or(0) >= 200,
            "profile {}: too few rejects",
            p.name
        );
    }
}

/// The intended shares of programs using the constructs of `gen/extra.rs` (seed 9, 4000 programs):
/// a `bpf_res_spin_lock` section 6-25%, `may_goto` 8-25%, a map update or delete 10-35%; and
/// none of them pushes out the spin-lock core: 60% or more of the programs still call
/// `bpf_spin_lock`.
#[test]
fn new_constructs_have_their_intended_shares() {
    let g = Generator::new(&bundled());
    let n = 4000;
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..n {
        let c = g.case(9, i);
        for (key, has) in [
            ("res-lock", c.tags.iter().any(|t| t == "res-lock")),
            ("may-goto", c.tags.iter().any(|t| t == "may-goto")),
            ("map-write", c.tags.iter().any(|t| t == "map-update" || t == "map-delete")),
            ("spin-lock", c.text.contains("call bpf_spin_lock")),
        ] {
            *count.entry(key).or_default() += usize::from(has);
        }
    }
    let share = |k: &str| count[k] as f64 / n as f64;
    eprintln!("{count:?}");
    for (k, lo, hi) in [
        ("res-lock", 0.06, 0.25),
        ("may-goto", 0.08, 0.25),
        ("map-write", 0.10, 0.35),
        ("spin-lock", 0.60, 1.0),
    ] {
        assert!((lo..=hi).contains(&share(k)), "{k}: share {:.3} outside {lo}..={hi}", share(k));
    }
}

#[test]
fn generator_covers_its_features() {
    let g = Generator::new(&bundled());
    let mut tags = BTreeSet::new();
    let mut types = BTreeSet::new();
    for i in 0..4000 {
        let c = g.case(5, i);
        tags.extend(c.tags.clone());
        types.insert(c.prog_type);
    }
    for t in [
        "branch",
        "loop",
        "iter-loop",
        "spill",
        "ptr-arith",
        "static-call",
        "global-call",
        "ld_abs",
        "tail-call",
        "kfunc-module",
        "res-lock",
        "res-lock-unchecked",
        "res-lock-call",
        "res-lock-held",
        "may-goto",
        "map-update",
        "map-delete",
        "helper",
        "double-lock",
        "other-lock",
        "global-data",
        "early-exit",
        "lock-access",
        "var-offset",
        "kfunc-ref",
        "kfunc-ret-null",
        "ptr-null-branch",
    ] {
        assert!(tags.contains(t), "no generated program has tag {t}");
    }
    assert_eq!(types.len(), crate::case::ProgType::ALL.len(), "program types generated: {types:?}");
}

#[test]
fn ir_lowers_and_renders_back_to_the_same_program() {
    let g = Generator::new(&bundled());
    for i in 0..500 {
        let c = g.case(2, i);
        let sym = SymProgram::from_program(&c.program).unwrap();
        let low = sym.lower().unwrap();
        assert_eq!(low.insns, c.program.insns, "case {i}");
        assert_eq!(low.relocs, c.program.relocs, "case {i}");
        let text = sym.render().unwrap();
        let back = assemble(&text, &symbols(&c)).unwrap_or_else(|e| panic!("case {i}: {e}\n{text}"));
        assert_eq!(back.insns, c.program.insns, "case {i}:\n{text}");
        assert_eq!(back.relocs, c.program.relocs, "case {i}:\n{text}");
    }
}

#[test]
fn removal_retargets_jumps_and_keeps_ld_imm64_whole() {
    let text = "r1 = 0\nif r1 == 0 goto l\nr2 = .data ll\nl:\nr0 = 0\nexit\n";
    let syms = Symbols { maps: vec![".data".into()], kfuncs: vec![] };
    let p = assemble(text, &syms).unwrap();
    let mut sym = SymProgram::from_program(&p).unwrap();
    assert_eq!(sym.items.len(), 5);
    // Remove the target of the jump (r0 = 0): the jump goes to exit, the label moves with it.
    sym.remove(&[3].into_iter().collect());
    let low = sym.lower().unwrap();
    assert_eq!(low.insns.len(), 5);
    assert_eq!(low.insns[1].off, 2, "jump now skips the 2-slot ld_imm64 to the exit");
    assert!(low.insns[4].is_exit());
    assert_eq!(low.labels.get(&4).map(String::as_str), Some("l"));
    // Remove the exit as well: the jump has nowhere to go.
    sym.remove(&[3].into_iter().collect());
    assert_eq!(sym.items[1].target, Some(Target::End));
    assert!(cfg::check(&sym.lower().unwrap()).is_err());
}

#[test]
fn written_case_files_parse_back_to_the_same_case() {
    let module = bundled();
    let g = Generator::new(&module);
    let cases: Vec<Case> = (0..300).map(|i| g.case(9, i)).collect();
    let src = crate::case::write::case_file("header", &cases);
    let parsed = crate::corpus::load_text("fuzz", &src, &module).unwrap();
    assert_eq!(parsed.len(), cases.len());
    for (a, b) in cases.iter().zip(&parsed) {
        assert_eq!(a.program.insns, b.program.insns, "{}", a.name);
        assert_eq!(a.program.relocs, b.program.relocs, "{}", a.name);
        assert_eq!(a.maps, b.maps, "{}", a.name);
        assert_eq!(a.globals, b.globals, "{}", a.name);
        assert_eq!((a.prog_type, a.sleepable), (b.prog_type, b.sleepable), "{}", a.name);
        assert_eq!(a.tags, b.tags);
    }
}

fn result(v: Verdict) -> crate::proto::KernelResult {
    crate::proto::test_support::kernel_result("c", v)
}

#[test]
fn compare_classifies_mismatches() {
    let rej = |i, m: &str| Verdict::reject(Some(i), m);
    assert_eq!(compare("k", "p", &Verdict::accept(), &result(Verdict::accept())), Comparison::Agree);
    assert_eq!(compare("k", "p", &rej(3, "x 4"), &result(rej(3, "x 4\nmore"))), Comparison::Agree);
    let Comparison::Disagree(s) = compare("k", "p", &Verdict::accept(), &result(rej(3, "off 8 bad"))) else {
        panic!()
    };
    assert_eq!(
        (s.mismatch, s.model, s.kernel_verdict, s.kernel_message.as_str()),
        (Agreement::Verdict, VerdictKind::Accept, VerdictKind::Reject, "off N bad")
    );
    let Comparison::Disagree(s) = compare("k", "p", &rej(3, "a"), &result(rej(3, "b"))) else { panic!() };
    assert_eq!(s.mismatch, Agreement::Message);
    let Comparison::Disagree(s) = compare("k", "p", &rej(3, "a"), &result(rej(4, "a"))) else { panic!() };
    assert_eq!(s.mismatch, Agreement::Insn);
    assert!(matches!(
        compare("k", "p", &Verdict::unsupported("why"), &result(Verdict::accept())),
        Comparison::ModelUnsupported(_)
    ));
    let mut r = result(Verdict::reject(None, "x"));
    r.setup_error = Some("map create".into());
    assert!(matches!(compare("k", "p", &Verdict::accept(), &r), Comparison::KernelInconclusive(_)));
}

#[test]
fn model_oracle_parses_its_spec() {
    let m = bundled();
    let o = ModelOracle::parse("model:7.3:-call_under_lock,-exit_with_lock", &m).unwrap();
    assert_eq!(o.kernel(), "model:7.3:-call_under_lock,-exit_with_lock");
    assert_eq!(o.profile().name, "7.3");
    assert!(ModelOracle::parse("model:7.3:-nope", &m).unwrap_err().contains("unknown rule"));
    assert!(ModelOracle::parse("model:9.9", &m).is_err());
    assert!(ModelOracle::parse("debian:7.2", &m).is_err());
}

/// The minimiser's acceptance test: the "kernel" is the normal model, the "model" has the rule for
/// calls under a lock switched off. Fuzzing finds disagreements; the minimiser shrinks one of each
/// signature while keeping the signature. A global-data lock needs no lookup, so that class
/// shrinks to a handful of instructions; a map lock keeps the lookup (key pointer, map, call,
/// null check: 6 slots).
#[test]
fn minimiser_shrinks_a_synthetic_disagreement() {
    let module = bundled();
    let profile = KernelProfile::by_name("7.2").unwrap();
    let broken = ModelOptions { disabled: vec![Rule::CallUnderLock] };
    let kernel = ModelOracle::new(profile.clone(), module.clone(), ModelOptions::default());
    let g = Generator::new(&module);
    let mut sig_of = |c: &Case| match compare(
        "model:7.2",
        "7.2",
        &check_with(c, &profile, &module, &broken),
        &kernel.result(c),
    ) {
        Comparison::Disagree(s) => Some(s),
        _ => None,
    };
    let mut found: BTreeMap<Signature, Case> = BTreeMap::new();
    let mut total = 0;
    for i in 0..3000 {
        let c = g.case(1, i);
        if let Some(s) = sig_of(&c) {
            total += 1;
            found.entry(s).or_insert(c);
        }
    }
    eprintln!("{total} disagreements in 3000 programs, {} signatures", found.len());
    assert!(total >= 20, "fuzzing found only {total} disagreements");
    let mut sizes = Vec::new();
    for (s, c) in &found {
        assert_eq!(s.kernel_message, "function calls are not allowed while holding a lock");
        let m = minimize(c, &mut sig_of, 5000);
        assert!(m.reproduced && !m.budget_exhausted);
        assert_eq!(sig_of(&m.case).as_ref(), Some(s), "the minimised case keeps the signature");
        assert!(m.case.program.insns.iter().any(|i| i.is_call()));
        eprintln!(
            "{}: {} -> {} slots in {} oracle calls ({})\n{}",
            c.name,
            m.slots_before,
            m.slots_after,
            m.oracle_calls,
            s.describe(),
            m.case.text
        );
        assert!(m.slots_after < m.slots_before);
        sizes.push(m.slots_after);
        if s.mismatch == Agreement::Verdict {
            // Lookup (6 slots) + r7 = r0 + lock (3) + call + unlock (3) + r0 = 0; exit, or less;
            // a map update or delete as the call adds its map (2) and key pointer (2) arguments,
            // a reference release its acquisition, null check, spill and fill (5).
            let wider =
                ["call bpf_map_update_elem", "call bpf_map_delete_elem", "call lockstep_safe_release"]
                    .iter()
                    .any(|c| m.case.text.contains(c));
            let most = if wider { 21 } else { 16 };
            assert!(m.slots_after <= most, "accept-vs-reject class minimised to {} slots", m.slots_after);
        }
    }
    // The main class on a program whose lock is in a global section (no lookup needed):
    // `r7 = .data ll; r1 = r7; call bpf_spin_lock; call <helper>; r1 = r7; call bpf_spin_unlock;
    // r0 = 0; exit` is 9 slots with the lock at offset 0, 11 with an `r1 += off` before each call.
    let (c, s) = (0..3000)
        .map(|i| g.case(1, i))
        .filter(|c| c.maps.iter().all(|m| m.global_section))
        // A released kfunc reference adds its acquisition, null check, spill and fill (7 slots).
        .filter(|c| !c.text.contains("call lockstep_safe_release"))
        .find_map(|c| sig_of(&c).filter(|s| s.mismatch == Agreement::Verdict).map(|s| (c, s)))
        .expect("an accept-vs-reject disagreement on global data");
    let m = minimize(&c, &mut sig_of, 5000);
    assert_eq!(sig_of(&m.case), Some(s));
    eprintln!("{}: {} -> {} slots\n{}", c.name, m.slots_before, m.slots_after, m.case.text);
    assert!(
        m.slots_after <= 11,
        "global-data accept-vs-reject class minimised to {} slots:\n{}",
        m.slots_after,
        m.case.text
    );
    sizes.sort_unstable();
    eprintln!("minimised sizes: {sizes:?}");
    // The largest classes carry a reference pattern or a map write besides the lock (measured:
    // 23 slots with the res-lock / may_goto / map-write generator, 21 before).
    assert!(sizes[sizes.len() - 1] <= 24, "largest minimised case: {sizes:?}");
    // The 7.x bounds classes ("unbounded memory access", "misaligned value access") need a lookup,
    // pointer arithmetic and an access besides the lock and call: 14 slots each.
    assert!(sizes[sizes.len() / 2] <= 14, "median minimised case: {sizes:?}");
    assert!(sizes[0] <= 8, "no disagreement shrank to 8 slots or fewer: {sizes:?}");
}

/// The IR handles hand-written programs too: every corpus program lowers back to itself and its
/// rendered text assembles to the same instructions.
#[test]
fn ir_round_trips_the_corpus() {
    let module = bundled();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for c in crate::corpus::load_text("corpus", &src, &module).unwrap() {
            // Programs that jump outside themselves or into an ld_imm64 (tests/corpus/insns-cfg.toml)
            // have no IR form: the IR names every target by label.
            if c.tags.iter().any(|t| t == "malformed-cfg") {
                continue;
            }
            let sym = SymProgram::from_program(&c.program).unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
            assert_eq!(sym.lower().unwrap().insns, c.program.insns, "{}", c.name);
            let text = sym.render().unwrap();
            let mut syms = symbols(&c);
            syms.kfuncs.extend(c.extern_kfuncs.iter().cloned());
            let back = assemble(&text, &syms).unwrap_or_else(|e| panic!("{}: {e}\n{text}", c.name));
            assert_eq!(back.insns, c.program.insns, "{}:\n{text}", c.name);
            assert_eq!(back.relocs, c.program.relocs, "{}:\n{text}", c.name);
            n += 1;
        }
    }
    assert!(n >= 100, "only {n} corpus cases");
}

/// Random removals keep programs well-formed: whatever `rebuild` accepts passes the static CFG
/// checks, keeps every `ld_imm64` whole, refers only to declared maps, and its text assembles
/// back to the same program.
#[test]
fn random_removals_keep_programs_well_formed() {
    let module = bundled();
    let g = Generator::new(&module);
    let mut rng = rng::Rng::for_case(99, 0);
    let mut accepted = 0;
    let mut attempts = 0;
    for i in 0..200 {
        let c = g.case(8, i);
        let sym = SymProgram::from_program(&c.program).unwrap();
        for _ in 0..15 {
            attempts += 1;
            let k = rng.range(1, 4) as usize;
            let picks: BTreeSet<usize> = (0..k).map(|_| rng.below(sym.items.len() as u64) as usize).collect();
            let mut cand = sym.clone();
            cand.remove(&picks);
            let Some(m) = minimize::rebuild(&cand, &c) else { continue };
            accepted += 1;
            assert_eq!(cfg::check(&m.program), Ok(()));
            for (pc, insn) in m.program.insns.iter().enumerate() {
                if insn.is_ld_imm64() {
                    assert_eq!(m.program.insns[pc + 1].code, 0, "{}: ld_imm64 at {pc} split", c.name);
                }
            }
            for r in m.program.relocs.values() {
                if let crate::asm::Reloc::Map { name } | crate::asm::Reloc::MapValue { name, .. } = r {
                    assert!(m.maps.iter().any(|mm| &mm.name == name));
                }
            }
            assert!(m.maps.len() <= c.maps.len());
            let back = assemble(&m.text, &symbols(&c)).unwrap_or_else(|e| panic!("{e}\n{}", m.text));
            assert_eq!(back.insns, m.program.insns, "{}:\n{}", c.name, m.text);
        }
    }
    eprintln!("{accepted} of {attempts} random removals well-formed");
    assert!(accepted * 6 > attempts, "only {accepted} of {attempts} random removals were well-formed");
}

/// Split pointer arithmetic is folded: `r1 += -2; r1 += 6` becomes `r1 += 4`.
#[test]
fn minimiser_folds_split_additions() {
    let module = bundled();
    let profile = KernelProfile::by_name("7.2").unwrap();
    let broken = ModelOptions { disabled: vec![Rule::CallUnderLock] };
    let g = Generator::new(&module);
    let mut c = (0..3000)
        .map(|i| g.case(1, i))
        .find(|c| {
            c.maps
                .iter()
                .any(|m| m.global_section && m.value.fields.iter().any(|f| f.name == "lock" && f.offset == 4))
        })
        .unwrap();
    c.maps.retain(|m| m.global_section);
    c.maps.truncate(1);
    let sec = c.maps[0].name.clone();
    c.text = format!("r7 = {sec} ll\nr1 = r7\nr1 += -2\nr1 += 6\ncall bpf_spin_lock\ncall bpf_ktime_get_ns\nr1 = r7\nr1 += 4\ncall bpf_spin_unlock\nr0 = 0\nexit\n");
    c.program = assemble(&c.text, &symbols(&c)).unwrap();
    c.globals.clear();
    let mut sig_of = |c: &Case| match compare(
        "k",
        "7.2",
        &check_with(c, &profile, &module, &broken),
        &ModelOracle::new(profile.clone(), module.clone(), ModelOptions::default()).result(c),
    ) {
        Comparison::Disagree(s) => Some(s),
        _ => None,
    };
    let m = minimize(&c, &mut sig_of, 1000);
    assert!(m.reproduced);
    assert_eq!(m.slots_after, 11, "{}", m.case.text);
    assert!(m.case.text.contains("r1 += 4\n    call bpf_spin_lock"), "{}", m.case.text);
}

/// The test module's reference kfuncs appear in every form: a `KF_RET_NULL` pointer, an acquired
/// reference released on its non-null path (under a lock too, and across one), rarely leaked on
/// one arm, and (wild) rule-breaking. Rule-following reference patterns stay inside the model's
/// subset: no chaos-0 program is left out of it because of a reference.
#[test]
fn generator_emits_kfunc_reference_patterns() {
    let module = bundled();
    let g = Generator::new(&module);
    let profile = KernelProfile::by_name("7.2+kf-spin-lock").unwrap();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut well_formed, mut supported, mut accepted) = (0, 0, 0);
    let mut leaks = (0, 0);
    for i in 0..4000 {
        let c = g.case(5, i);
        for t in ["kfunc-ref", "kfunc-ret-null", "kfunc-ref-lock", "kfunc-ref-leak", "kfunc-ref-wild"] {
            if c.tags.iter().any(|x| x == t) {
                *count.entry(t).or_default() += 1;
            }
        }
        let has = |t: &str| c.tags.iter().any(|x| x == t);
        if has("kfunc-ref") {
            let acq = c.text.find("call lockstep_safe_acquire").expect("acquire");
            assert!(c.text[acq..].contains("call lockstep_safe_release"), "{}", c.text);
        }
        if has("kfunc-ret-null") {
            assert!(c.text.contains("call lockstep_safe_ret_null"), "{}", c.text);
        }
        let chaos0 = c.description.as_deref().is_some_and(|d| d.ends_with("(chaos 0%)"));
        if chaos0 && has("kfunc-ref") && !has("kfunc-ref-leak") {
            well_formed += 1;
            let v = check(&c, &profile, &module);
            let msg = v.message.clone().unwrap_or_default();
            assert!(
                !(v.verdict == VerdictKind::Unsupported
                    && (msg.contains("reference") || msg.contains("lockstep_safe"))),
                "{}: {msg}\n{}",
                c.name,
                c.text
            );
            supported += usize::from(v.verdict != VerdictKind::Unsupported);
            accepted += usize::from(v.verdict == VerdictKind::Accept);
        }
        if has("kfunc-ref-leak") && !has("kfunc-ref-wild") {
            // Not accepted unless the leaking arm is dead code (a branch on a known constant).
            leaks.0 += 1;
            leaks.1 += usize::from(check(&c, &profile, &module).verdict != VerdictKind::Accept);
        }
    }
    eprintln!("{count:?}; chaos-0 reference programs: {well_formed}, {supported} supported, {accepted} accepted on 7.2+kf-spin-lock; leaks {leaks:?}");
    assert!(leaks.1 * 2 > leaks.0, "leaked references accepted: {leaks:?} (programs, not accepted)");
    for t in ["kfunc-ref", "kfunc-ret-null", "kfunc-ref-lock", "kfunc-ref-leak", "kfunc-ref-wild"] {
        assert!(count.get(t).copied().unwrap_or(0) > 0, "no generated program has tag {t}");
    }
    // Common enough to matter, the rule breakers rare.
    assert!(count["kfunc-ref"] >= 200, "{count:?}");
    assert!(count["kfunc-ref-wild"] * 5 < count["kfunc-ref"], "{count:?}");
    assert!(count["kfunc-ref-leak"] * 10 < count["kfunc-ref"], "{count:?}");
    assert!(
        accepted * 2 > well_formed,
        "only {accepted} of {well_formed} chaos-0 reference programs accepted"
    );
}

/// A disagreement inside a reference pattern minimises to a program that still assembles, passes
/// the static CFG checks and keeps the pattern's null check before the release.
#[test]
fn minimiser_keeps_reference_patterns_well_formed() {
    let module = bundled();
    let profile = KernelProfile::by_name("7.2").unwrap();
    let broken = ModelOptions { disabled: vec![Rule::CallUnderLock] };
    let kernel = ModelOracle::new(profile.clone(), module.clone(), ModelOptions::default());
    let g = Generator::new(&module);
    let mut sig_of = |c: &Case| match compare(
        "model:7.2",
        "7.2",
        &check_with(c, &profile, &module, &broken),
        &kernel.result(c),
    ) {
        Comparison::Disagree(s) => Some(s),
        _ => None,
    };
    let mut n = 0;
    for i in 0..3000 {
        let c = g.case(1, i);
        if !c.tags.iter().any(|t| t == "kfunc-ref") || c.tags.iter().any(|t| t == "kfunc-ref-wild") {
            continue;
        }
        let Some(s) = sig_of(&c) else { continue };
        let m = minimize(&c, &mut sig_of, 3000);
        assert_eq!(sig_of(&m.case).as_ref(), Some(&s));
        assert_eq!(cfg::check(&m.case.program), Ok(()));
        let back = assemble(&m.case.text, &symbols(&c)).unwrap_or_else(|e| panic!("{e}\n{}", m.case.text));
        assert_eq!(back.insns, m.case.program.insns, "{}:\n{}", c.name, m.case.text);
        if let Some(rel) = m.case.text.find("call lockstep_safe_release") {
            // The model leaves a release of a maybe-null pointer out, so a reproducing case
            // keeps the acquire and its null check.
            let before = &m.case.text[..rel];
            assert!(
                before.contains("call lockstep_safe_acquire") && before.contains("if r0 "),
                "{}:\n{}",
                c.name,
                m.case.text
            );
        }
        eprintln!("{}: {} -> {} slots\n{}", c.name, m.slots_before, m.slots_after, m.case.text);
        n += 1;
        if n == 5 {
            break;
        }
    }
    assert!(n >= 1, "no reference program disagreed with the broken model");
}

/// Without the lock-safe flag (a module built against headers that lack it, as for debian:7.2)
/// no rule-following program calls a reference kfunc with a lock held, nor releases inside one.
#[test]
fn reference_kfuncs_stay_outside_a_lock_unless_lock_safe() {
    let mut module = bundled();
    for k in module.kfuncs.values_mut() {
        k.flags &= !crate::module_src::LOCK_SAFE_FLAG;
    }
    let g = Generator::new(&module);
    let profile = KernelProfile::by_name("7.2").unwrap();
    let mut refs = 0;
    for i in 0..3000 {
        let c = g.case(5, i);
        assert!(!c.tags.iter().any(|t| t == "kfunc-ref-lock"), "{}:\n{}", c.name, c.text);
        let chaos0 = c.description.as_deref().is_some_and(|d| d.ends_with("(chaos 0%)"));
        if chaos0 && c.tags.iter().any(|t| t.starts_with("kfunc-re")) {
            refs += 1;
            let v = check(&c, &profile, &module);
            let msg = v.message.unwrap_or_default();
            assert!(
                !msg.contains("function calls are not allowed") && !msg.contains("not allowed while holding"),
                "{}: {msg}\n{}",
                c.name,
                c.text
            );
        }
    }
    assert!(refs >= 50, "only {refs} chaos-0 reference programs");
}
