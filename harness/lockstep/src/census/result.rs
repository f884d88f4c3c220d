//! What a census found on one kernel, the model's view beside it, and the comparison between
//! kernels (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};

use lockstep_core::case::ProgType;
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use serde::{Deserialize, Serialize};

use super::probe::{LockStatus, Registration};

/// The model's prediction for one kfunc (`model::kfunc_allowed_under_lock` under the kernel's
/// profile, for the program type the lock probe used).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum ModelView {
    LockSafe,
    NotLockSafe,
    /// The model cannot tell (with why).
    Unknown(String),
}

impl ModelView {
    /// The model's view of `name` called as a `prog_type` program under `profile`.
    pub fn predict(
        profile: &KernelProfile,
        module: &ModuleKfuncs,
        name: &str,
        prog_type: ProgType,
    ) -> ModelView {
        match lockstep_core::model::kfunc_allowed_under_lock(profile, module, name, prog_type, false) {
            Ok(true) => ModelView::LockSafe,
            Ok(false) => ModelView::NotLockSafe,
            Err(why) => ModelView::Unknown(why),
        }
    }

    /// Short name for tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelView::LockSafe => "lock-safe",
            ModelView::NotLockSafe => "not-lock-safe",
            ModelView::Unknown(_) => "unknown",
        }
    }

    /// Whether the model says what the kernel did; None when there is nothing to compare (the
    /// kernel could not be asked, or the model cannot tell).
    pub fn agrees_with(&self, kernel: LockStatus) -> Option<bool> {
        match (kernel, self) {
            (LockStatus::NotCallable, _) | (_, ModelView::Unknown(_)) => None,
            (LockStatus::LockSafe, ModelView::LockSafe)
            | (LockStatus::NotLockSafe, ModelView::NotLockSafe) => Some(true),
            _ => Some(false),
        }
    }
}

/// One kfunc on one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KfuncRow {
    pub name: String,
    /// The module that has it (None: vmlinux).
    pub module: Option<String>,
    pub btf_id: u32,
    pub status: LockStatus,
    /// The program type of the lock probe (None when no lockable type registers the kfunc).
    pub prog_type: Option<ProgType>,
    /// What the kernel said to the lock probe, or why the kfunc is not callable under a lock.
    pub detail: String,
    /// The registration probes' answers, per program type tried.
    pub registration: BTreeMap<ProgType, Registration>,
    /// The lock probe's answer on every registered lockable type (`--all-prog-types`), else on
    /// the first one only.
    pub per_type: BTreeMap<ProgType, LockStatus>,
    pub model: ModelView,
    /// `model.agrees_with(status)`.
    pub agrees: Option<bool>,
    /// The compiled flags word(s) of the kfunc's id sets, from the kernel headers' `.BTF_ids`
    /// (set name -> flags), when they could be read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compiled_flags: BTreeMap<String, u32>,
}

impl KfuncRow {
    /// The lock-safe bit of the compiled flags, when the profile has one and the flags are known:
    /// Some(true) if any set has it.
    pub fn compiled_lock_flag(&self, profile: &KernelProfile) -> Option<bool> {
        let bit = profile.kfunc_flag?;
        (!self.compiled_flags.is_empty()).then(|| self.compiled_flags.values().any(|f| f & bit != 0))
    }
}

/// Counts of one kernel's census.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub kfuncs: usize,
    pub lock_safe: usize,
    pub not_lock_safe: usize,
    pub not_callable: usize,
    /// Kfuncs whose status differs from the model's view.
    pub model_differences: usize,
    /// Kfuncs the model has no view on (and the kernel answered).
    pub model_unknown: usize,
}

/// The census of one kernel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelCensus {
    /// `debian:7.3`, or `host`.
    pub kernel: String,
    pub package_version: String,
    /// `uname -r` in the guest.
    pub release: String,
    pub profile: String,
    /// Whether the test module was loaded (its kfuncs are in the census only then).
    pub module: String,
    /// Objects whose BTF was read: name -> (functions, kfuncs).
    pub btf_objects: BTreeMap<String, (usize, usize)>,
    pub warnings: Vec<String>,
    pub rows: Vec<KfuncRow>,
    pub counts: Counts,
    /// Program loads.
    pub probes: usize,
    /// Wall-clock seconds: QEMU start to the agent's greeting (summed over boots), boot and
    /// listing, probes, total.
    pub seconds_boot: f64,
    pub seconds_listing: f64,
    pub seconds_probes: f64,
    pub seconds_total: f64,
}

impl KernelCensus {
    /// Recomputes `counts` from `rows`.
    pub fn count(&mut self) {
        let mut c = Counts { kfuncs: self.rows.len(), ..Counts::default() };
        for r in &self.rows {
            match r.status {
                LockStatus::LockSafe => c.lock_safe += 1,
                LockStatus::NotLockSafe => c.not_lock_safe += 1,
                LockStatus::NotCallable => c.not_callable += 1,
            }
            if r.agrees == Some(false) {
                c.model_differences += 1;
            }
            if r.status != LockStatus::NotCallable && matches!(r.model, ModelView::Unknown(_)) {
                c.model_unknown += 1;
            }
        }
        self.counts = c;
    }

    /// Names of the lock-safe kfuncs.
    pub fn lock_safe(&self) -> BTreeSet<&str> {
        self.rows.iter().filter(|r| r.status == LockStatus::LockSafe).map(|r| r.name.as_str()).collect()
    }

    /// The row of kfunc `name`.
    pub fn row(&self, name: &str) -> Option<&KfuncRow> {
        self.rows.iter().find(|r| r.name == name)
    }
}

/// A kfunc whose status differs between two kernels (None: the kernel does not have it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub name: String,
    pub from: Option<LockStatus>,
    pub to: Option<LockStatus>,
}

/// The kfuncs whose status changed from kernel `a` to kernel `b`, by name.
pub fn diff(a: &KernelCensus, b: &KernelCensus) -> Vec<Change> {
    let status = |k: &KernelCensus| -> BTreeMap<String, LockStatus> {
        k.rows.iter().map(|r| (r.name.clone(), r.status)).collect()
    };
    let (sa, sb) = (status(a), status(b));
    let names: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
    names
        .into_iter()
        .filter_map(|n| {
            let (from, to) = (sa.get(n).copied(), sb.get(n).copied());
            (from != to).then(|| Change { name: n.clone(), from, to })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, status: LockStatus) -> KfuncRow {
        KfuncRow {
            name: name.into(),
            module: None,
            btf_id: 1,
            status,
            prog_type: Some(ProgType::SchedCls),
            detail: String::new(),
            registration: BTreeMap::new(),
            per_type: BTreeMap::new(),
            model: ModelView::Unknown("test".into()),
            agrees: None,
            compiled_flags: BTreeMap::new(),
        }
    }

    fn census(kernel: &str, rows: Vec<KfuncRow>) -> KernelCensus {
        let mut k = KernelCensus { kernel: kernel.into(), rows, ..Default::default() };
        k.count();
        k
    }

    #[test]
    fn the_diff_lists_changed_appeared_and_vanished_kfuncs_only() {
        use LockStatus::*;
        let a = census(
            "a",
            vec![
                row("same", LockSafe),
                row("flip", NotLockSafe),
                row("gone", LockSafe),
                row("nc", NotCallable),
            ],
        );
        let b = census(
            "b",
            vec![
                row("same", LockSafe),
                row("flip", LockSafe),
                row("new", NotLockSafe),
                row("nc", NotLockSafe),
            ],
        );
        let d = diff(&a, &b);
        let got: Vec<(&str, Option<LockStatus>, Option<LockStatus>)> =
            d.iter().map(|c| (c.name.as_str(), c.from, c.to)).collect();
        assert_eq!(
            got,
            vec![
                ("flip", Some(NotLockSafe), Some(LockSafe)),
                ("gone", Some(LockSafe), None),
                ("nc", Some(NotCallable), Some(NotLockSafe)),
                ("new", None, Some(NotLockSafe)),
            ]
        );
        assert!(diff(&a, &a).is_empty());
        assert_eq!(
            a.counts,
            Counts {
                kfuncs: 4,
                lock_safe: 2,
                not_lock_safe: 1,
                not_callable: 1,
                model_differences: 0,
                model_unknown: 3
            }
        );
        assert_eq!(b.lock_safe().into_iter().collect::<Vec<_>>(), vec!["flip", "same"]);
    }

    #[test]
    fn the_model_is_compared_only_where_both_have_an_answer() {
        use LockStatus::*;
        assert_eq!(ModelView::LockSafe.agrees_with(LockSafe), Some(true));
        assert_eq!(ModelView::NotLockSafe.agrees_with(NotLockSafe), Some(true));
        assert_eq!(ModelView::LockSafe.agrees_with(NotLockSafe), Some(false));
        assert_eq!(ModelView::NotLockSafe.agrees_with(LockSafe), Some(false));
        assert_eq!(ModelView::LockSafe.agrees_with(NotCallable), None);
        assert_eq!(ModelView::Unknown("x".into()).agrees_with(LockSafe), None);
    }

    #[test]
    fn the_model_view_follows_each_profiles_kfunc_rule() {
        let module = lockstep_core::module_src::bundled();
        let p = |n: &str| KernelProfile::by_name(n).unwrap();
        // Module kfuncs: only the flag counts, and only for a type whose set has it.
        assert_eq!(
            ModelView::predict(&p("7.2"), &module, "lockstep_safe", ProgType::SchedCls),
            ModelView::NotLockSafe
        );
        assert_eq!(
            ModelView::predict(&p("7.3"), &module, "lockstep_safe", ProgType::SchedCls),
            ModelView::LockSafe
        );
        assert_eq!(
            ModelView::predict(&p("7.2+kf-spin-lock"), &module, "lockstep_safe", ProgType::SchedCls),
            ModelView::LockSafe
        );
        assert_eq!(
            ModelView::predict(&p("7.3"), &module, "lockstep_unsafe", ProgType::SchedCls),
            ModelView::NotLockSafe
        );
        assert_eq!(
            ModelView::predict(&p("7.3"), &module, "lockstep_xdp_only_safe", ProgType::Xdp),
            ModelView::LockSafe
        );
        assert_eq!(
            ModelView::predict(&p("7.3"), &module, "lockstep_xdp_only_safe", ProgType::SchedCls),
            ModelView::NotLockSafe
        );
        // vmlinux kfuncs: the profile's list.
        assert_eq!(
            ModelView::predict(&p("7.2"), &module, "bpf_iter_num_new", ProgType::SchedCls),
            ModelView::LockSafe
        );
        assert_eq!(
            ModelView::predict(&p("6.12"), &module, "bpf_iter_num_new", ProgType::SchedCls),
            ModelView::NotLockSafe
        );
        assert_eq!(
            ModelView::predict(&p("7.3"), &module, "bpf_task_acquire", ProgType::SchedCls),
            ModelView::NotLockSafe
        );
    }
}
