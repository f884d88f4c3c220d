//! The pure bookkeeping of one kernel's census: which kfuncs to probe (the guest's listing, the
//! module's `.ko`, the headers' `.BTF_ids`), which probes each round runs, and the warnings drawn
//! from the answers, and what each answer says of its kfunc. [`super::census_kernel`] is the I/O
//! loop around it.

use std::collections::BTreeMap;

use lockstep_core::case::{Case, ProgType};
use lockstep_core::profile::ModuleKfuncs;
use lockstep_core::proto::{KernelResult, KfuncEntry, KfuncListing, ModuleStatus};

use super::probe::{
    call_insn, probe_case, read_lock_probe, read_registration, LockStatus, Probe, Registration, LOCKABLE,
};
use super::result::KfuncRow;

/// Kfunc name -> id set -> flags word (the compiled flags of a kernel's vmlinux).
pub type StaticFlags = BTreeMap<String, BTreeMap<String, u32>>;

/// One kfunc being probed: its registration per program type, then the lock probe's answers.
pub struct Probing {
    pub entry: KfuncEntry,
    pub registration: BTreeMap<ProgType, Registration>,
    pub per_type: BTreeMap<ProgType, (LockStatus, String)>,
}

impl Probing {
    /// A kfunc not probed yet.
    pub fn new(entry: KfuncEntry) -> Self {
        Probing { entry, registration: BTreeMap::new(), per_type: BTreeMap::new() }
    }

    /// The lockable program types that register the kfunc, in [`LOCKABLE`] order.
    pub fn registered_lockable(&self) -> Vec<ProgType> {
        LOCKABLE.into_iter().filter(|t| self.registration.get(t) == Some(&Registration::Registered)).collect()
    }
}

/// The kfuncs to probe, with warnings: the guest's listing (its BTF errors become warnings), the
/// test module's kfuncs the guest's BTF does not tag (taken from the `.ko`), the headers' kfuncs
/// when vmlinux BTF has no tags at all, narrowed to `only` when it is not empty.
pub fn kfunc_entries(
    listing: &KfuncListing,
    module_kfuncs: &ModuleKfuncs,
    module: &ModuleStatus,
    static_flags: &Result<StaticFlags, String>,
    only: &[String],
) -> (Vec<KfuncEntry>, Vec<String>) {
    let mut warnings = listing.warnings.clone();
    let mut entries = listing.kfuncs.clone();
    for s in listing.sources.iter().filter(|s| s.error.is_some()) {
        warnings.push(format!("BTF of {}: {}", s.object, s.error.as_deref().unwrap_or("")));
    }
    if let ModuleStatus::Loaded { name, .. } = module {
        let missing: Vec<&String> =
            module_kfuncs.kfuncs.keys().filter(|k| !entries.iter().any(|e| &e.name == *k)).collect();
        for k in missing {
            warnings.push(format!(
                "{k}: not tagged {} in the module's BTF; taken from the .ko's .BTF_ids",
                lockstep_core::btf::KFUNC_TAG
            ));
            entries.push(KfuncEntry { name: k.clone(), btf_id: 0, module: Some(name.clone()) });
        }
    }
    match static_flags {
        Err(e) => warnings.push(format!("compiled kfunc flags not read: {e}")),
        Ok(f) if !entries.iter().any(|e| e.module.is_none()) => {
            warnings.push(format!(
                "vmlinux kfuncs taken from the headers' .BTF_ids ({} names): its BTF has no {} tags",
                f.len(),
                lockstep_core::btf::KFUNC_TAG
            ));
            entries.extend(f.keys().map(|n| KfuncEntry { name: n.clone(), btf_id: 0, module: None }));
        }
        Ok(_) => {}
    }
    if !only.is_empty() {
        for o in only.iter().filter(|o| !entries.iter().any(|e| &e.name == *o)) {
            warnings.push(format!("{o}: not a kfunc of this kernel"));
        }
        entries.retain(|e| only.contains(&e.name));
    }
    (entries, warnings)
}

/// The kfuncs whose registration is probed on type `t`: on a lockable type those no lockable
/// type registers yet (every one with `all_types`), on another type those no lockable type takes.
pub fn registration_round(kf: &[Probing], t: ProgType, all_types: bool) -> Vec<usize> {
    let lockable = LOCKABLE.contains(&t);
    (0..kf.len())
        .filter(|&i| {
            let reg = kf[i].registered_lockable();
            if lockable {
                all_types || reg.is_empty()
            } else {
                reg.is_empty()
            }
        })
        .collect()
}

/// The lock probes: each kfunc on the first lockable type that registers it (every one with
/// `all_types`).
pub fn lock_round(kf: &[Probing], all_types: bool) -> Vec<(usize, ProgType)> {
    let mut todo = Vec::new();
    for (i, k) in kf.iter().enumerate() {
        let reg = k.registered_lockable();
        let n = if all_types { reg.len() } else { reg.len().min(1) };
        todo.extend(reg.into_iter().take(n).map(|t| (i, t)));
    }
    todo
}

/// The probe programs of a round: `probe` of each kfunc `todo` names, on its program type.
pub fn probe_cases(kf: &[Probing], todo: &[(usize, ProgType)], probe: Probe) -> Vec<Case> {
    todo.iter().map(|&(i, t)| probe_case(&kf[i].entry.name, t, probe)).collect()
}

/// Records a round's answers on their kfunc and program type: registrations (no answer:
/// refused) or lock probes (no answer: not callable). `Err` in `results`: why a probe gave none.
pub fn record_answers(
    kf: &mut [Probing],
    todo: &[(usize, ProgType)],
    cases: &[Case],
    results: Vec<Result<KernelResult, String>>,
    probe: Probe,
) {
    for ((&(i, t), c), r) in todo.iter().zip(cases).zip(results) {
        let no_answer = |why: String| format!("no answer: {why}");
        match probe {
            Probe::Registration => {
                let answer = match r {
                    Ok(r) => read_registration(&kf[i].entry.name, &r, call_insn(c)),
                    Err(why) => Registration::Refused(no_answer(why)),
                };
                kf[i].registration.insert(t, answer);
            }
            Probe::Lock => {
                let answer = match r {
                    Ok(r) => read_lock_probe(&r, call_insn(c)),
                    Err(why) => (LockStatus::NotCallable, no_answer(why)),
                };
                kf[i].per_type.insert(t, answer);
            }
        }
    }
}

/// A warning for each kfunc whose lock status differs between the program types probed.
pub fn type_dependence_warnings(rows: &[KfuncRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.per_type.values().any(|s| Some(s) != r.per_type.values().next()))
        .map(|r| {
            let per: Vec<String> =
                r.per_type.iter().map(|(t, s)| format!("{} on {}", s.as_str(), t.name())).collect();
            format!("{}: the status depends on the program type: {}", r.name, per.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::proto::BtfSource;
    use lockstep_core::verdict::Verdict;

    fn entry(name: &str, module: Option<&str>) -> KfuncEntry {
        KfuncEntry { name: name.into(), btf_id: 1, module: module.map(str::to_string) }
    }

    fn registered(name: &str, types: &[ProgType]) -> Probing {
        let mut p = Probing::new(entry(name, None));
        for t in types {
            p.registration.insert(*t, Registration::Registered);
        }
        p
    }

    #[test]
    fn entries_add_untagged_module_kfuncs_and_btf_errors_as_warnings() {
        let listing = KfuncListing {
            kfuncs: vec![entry("bpf_a", None)],
            sources: vec![BtfSource { object: "m".into(), funcs: 0, kfuncs: 0, error: Some("bad".into()) }],
            warnings: vec![],
        };
        let module = lockstep_core::module_src::bundled();
        let loaded = ModuleStatus::Loaded { name: module.module.clone(), btf_id: 7 };
        let (entries, warnings) = kfunc_entries(&listing, &module, &loaded, &Ok(StaticFlags::new()), &[]);
        assert_eq!(entries.len(), 1 + module.kfuncs.len());
        assert!(entries[1..].iter().all(|e| e.module.as_deref() == Some(module.module.as_str())));
        assert!(warnings.iter().any(|w| w == "BTF of m: bad"), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("taken from the .ko's .BTF_ids")));
    }

    #[test]
    fn entries_fall_back_to_the_headers_and_narrow_to_only() {
        let listing = KfuncListing::default();
        let mut flags = StaticFlags::new();
        flags.insert("bpf_x".into(), BTreeMap::new());
        flags.insert("bpf_y".into(), BTreeMap::new());
        let only = vec!["bpf_y".to_string(), "bpf_nope".to_string()];
        let (entries, warnings) =
            kfunc_entries(&listing, &ModuleKfuncs::default(), &ModuleStatus::Absent, &Ok(flags), &only);
        assert_eq!(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["bpf_y"]);
        assert!(warnings.iter().any(|w| w.contains("headers' .BTF_ids (2 names)")));
        assert!(warnings.iter().any(|w| w == "bpf_nope: not a kfunc of this kernel"));
        let (_, warnings) = kfunc_entries(
            &listing,
            &ModuleKfuncs::default(),
            &ModuleStatus::Absent,
            &Err("gone".into()),
            &[],
        );
        assert_eq!(warnings, ["compiled kfunc flags not read: gone"]);
    }

    #[test]
    fn rounds_probe_what_is_not_settled() {
        let t0 = LOCKABLE[0];
        let unlockable = super::super::probe::UNLOCKABLE[0];
        let kf = vec![registered("a", &[t0]), registered("b", &[])];
        assert_eq!(registration_round(&kf, t0, false), [1]);
        assert_eq!(registration_round(&kf, t0, true), [0, 1]);
        assert_eq!(registration_round(&kf, unlockable, true), [1]);
        assert_eq!(lock_round(&kf, false), [(0, t0)]);
        let both = vec![registered("c", &LOCKABLE[..2])];
        assert_eq!(lock_round(&both, false).len(), 1);
        assert_eq!(lock_round(&both, true).len(), 2);
    }

    #[test]
    fn answers_land_on_their_kfunc_and_type_and_no_answer_is_a_refusal() {
        let (t0, t1) = (LOCKABLE[0], LOCKABLE[1]);
        let mut kf = vec![registered("bpf_a", &[]), registered("bpf_b", &[])];
        let todo = [(0, t0), (1, t0)];
        let cases = probe_cases(&kf, &todo, Probe::Registration);
        assert_eq!(cases[1], probe_case("bpf_b", t0, Probe::Registration));
        let accepted = lockstep_core::proto::test_support::kernel_result("p", Verdict::accept());
        record_answers(
            &mut kf,
            &todo,
            &cases,
            vec![Ok(accepted.clone()), Err("crashed".into())],
            Probe::Registration,
        );
        assert_eq!(kf[0].registration[&t0], Registration::Registered);
        assert_eq!(kf[1].registration[&t0], Registration::Refused("no answer: crashed".into()));

        let todo = [(0, t1), (1, t0)];
        let cases = probe_cases(&kf, &todo, Probe::Lock);
        record_answers(&mut kf, &todo, &cases, vec![Ok(accepted), Err("timed out".into())], Probe::Lock);
        assert_eq!(kf[0].per_type[&t1].0, LockStatus::LockSafe);
        assert_eq!(kf[1].per_type[&t0], (LockStatus::NotCallable, "no answer: timed out".into()));
    }
}
