//! The pure parts of one build, which [`super::Kbuild::build_plan`] carries out: the `make`
//! command line and environment, whether the work tree's series must be switched, which config
//! mismatches are fatal, what is installed where, and the build's identity and record.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::config::{Mismatch, MANDATORY_LAYER};
use super::series::Series;
use super::work::Applied;
use super::{key, BuildRecord, BuildRequest, PatchRecord, PhaseTime, Plan, SeriesRecord};

/// The C compiler.
pub const CC: &str = "gcc";

/// How `make` runs for one build (every target the same way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MakeCmd {
    pub src: PathBuf,
    pub obj: PathBuf,
    pub jobs: usize,
    pub pahole: PathBuf,
    /// `CC` and `HOSTCC` (`ccache gcc` with ccache).
    pub cc: String,
    /// The environment besides the reproducible-build stamps (ccache's directory and size).
    pub extra_env: Vec<(&'static str, String)>,
}

impl MakeCmd {
    /// The arguments of `make` for `targets`.
    pub fn args(&self, targets: &[&str]) -> Vec<String> {
        let mut a = vec![
            "-C".to_string(),
            self.src.display().to_string(),
            format!("O={}", self.obj.display()),
            format!("-j{}", self.jobs),
            format!("PAHOLE={}", self.pahole.display()),
            format!("CC={}", self.cc),
            format!("HOSTCC={}", self.cc),
        ];
        a.extend(targets.iter().map(|t| t.to_string()));
        a
    }

    /// The environment: fixed build stamps (so a rebuild gives the same kernel), then the extra.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut e = vec![
            ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 2026".to_string()),
            ("KBUILD_BUILD_USER", "lockstep".to_string()),
            ("KBUILD_BUILD_HOST", "lockstep".to_string()),
            ("KBUILD_BUILD_VERSION", "1".to_string()),
        ];
        e.extend(self.extra_env.iter().cloned());
        e
    }

    /// The `make` command for `targets` (not started).
    pub fn command(&self, targets: &[&str]) -> Command {
        let mut c = Command::new("make");
        c.args(self.args(targets)).envs(self.env());
        c
    }
}

/// `CC` for a build with or without ccache.
pub fn compiler(ccache: bool) -> String {
    if ccache {
        format!("ccache {CC}")
    } else {
        CC.to_string()
    }
}

/// ccache's environment: its directory under the cache root and a 5G limit, unless the user's
/// environment sets them (`dir_set`, `maxsize_set`); nothing without ccache. Paths under the work
/// directory `base` are hashed relative to it and the compiler's working directory is left out of
/// the hash, so two work trees of the same source (a bisect's steps, a second clone) share hits.
pub fn ccache_env(
    ccache: bool,
    dir_set: bool,
    maxsize_set: bool,
    root: &Path,
    base: &Path,
) -> Vec<(&'static str, String)> {
    let mut e = Vec::new();
    if ccache {
        e.push(("CCACHE_BASEDIR", base.display().to_string()));
        e.push(("CCACHE_NOHASHDIR", "1".to_string()));
    }
    if ccache && !dir_set {
        e.push(("CCACHE_DIR", root.join("ccache").display().to_string()));
    }
    if ccache && !maxsize_set {
        e.push(("CCACHE_MAXSIZE", "5G".to_string()));
    }
    e
}

/// Whether the work tree's applied series (`applied`) must be switched to the plan's patches
/// (`want`; `has_series`: the plan has a series at all).
pub fn needs_switch(want: &[(String, String)], applied: Option<&Applied>, has_series: bool) -> bool {
    let have = applied.map(|a| a.patches.as_slice()).unwrap_or_default();
    want != have || (!has_series && applied.is_some())
}

/// The config mismatches that stop the build (the mandatory layer's) and those only warned of.
pub fn split_mismatches(mismatches: Vec<Mismatch>) -> (Vec<Mismatch>, Vec<Mismatch>) {
    mismatches.into_iter().partition(|m| m.layer == MANDATORY_LAYER)
}

/// What the install copies from the build directory `obj` into the new build `tmp` (the
/// module tree in `tmp/tree`).
pub fn install_copies(obj: &Path, tmp: &Path) -> [(PathBuf, PathBuf); 5] {
    let tree = tmp.join("tree");
    [
        (obj.join("arch/x86/boot/bzImage"), tmp.join("bzImage")),
        (obj.join(".config"), tmp.join("config")),
        (obj.join(".config"), tree.join(".config")),
        (obj.join("System.map"), tmp.join("System.map")),
        (obj.join("vmlinux"), tree.join("vmlinux")),
    ]
}

/// The build's identity: `<source version>[+<series>]+lockstep.<short hash>`.
pub fn identity(plan: &Plan) -> String {
    match &plan.series {
        Some(s) => format!("{}+{}+lockstep.{}", plan.source.version, s.name, key::short(&plan.hash)),
        None => format!("{}+lockstep.{}", plan.source.version, key::short(&plan.hash)),
    }
}

/// The record of a series.
pub fn series_record(s: &Series) -> SeriesRecord {
    SeriesRecord {
        name: s.name.clone(),
        dir: s.dir.clone(),
        patches: s
            .patches
            .iter()
            .map(|p| PatchRecord {
                file_name: p.file_name.clone(),
                subject: p.subject.clone(),
                sha256: p.sha256.clone(),
            })
            .collect(),
    }
}

/// What a finished build measured and produced, beside its plan.
pub struct Outcome {
    /// `include/config/kernel.release`.
    pub release: String,
    /// The build's directory in the cache.
    pub dir: PathBuf,
    pub timings: Vec<PhaseTime>,
    pub make_steps: u64,
    pub ccache: bool,
    pub built_at_unix: u64,
}

/// The record of a finished build (`build.json`).
pub fn record(req: &BuildRequest, plan: &Plan, o: Outcome) -> BuildRecord {
    BuildRecord {
        hash: plan.hash.clone(),
        aliases: vec![],
        source: plan.source.clone(),
        series: plan.series.as_ref().map(series_record),
        user_fragments: req.fragments.iter().map(|p| p.display().to_string()).collect(),
        fragment: plan.merged.render(),
        compiler: plan.compiler.clone(),
        pahole: plan.pahole.version.clone(),
        release: o.release,
        identity: identity(plan),
        bzimage: o.dir.join("bzImage"),
        config: o.dir.join("config"),
        tree: o.dir.join("tree"),
        dir: o.dir,
        built_at_unix: o.built_at_unix,
        timings: o.timings,
        make_steps: o.make_steps,
        ccache: o.ccache,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(patches: &[(&str, &str)]) -> Applied {
        Applied {
            series: "s".into(),
            patches: patches.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..Applied::default()
        }
    }

    #[test]
    fn make_runs_out_of_tree_with_the_private_pahole_and_fixed_stamps() {
        let m = MakeCmd {
            src: "/w/src".into(),
            obj: "/w/obj".into(),
            jobs: 2,
            pahole: "/c/pahole".into(),
            cc: compiler(true),
            extra_env: ccache_env(true, false, true, Path::new("/c"), Path::new("/w")),
        };
        assert_eq!(
            m.args(&["all"]),
            [
                "-C",
                "/w/src",
                "O=/w/obj",
                "-j2",
                "PAHOLE=/c/pahole",
                "CC=ccache gcc",
                "HOSTCC=ccache gcc",
                "all"
            ]
        );
        let env = m.env();
        assert_eq!(env[0], ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 2026".to_string()));
        assert_eq!(env.last(), Some(&("CCACHE_DIR", "/c/ccache".to_string())));
        assert_eq!(env.len(), 7);
        assert_eq!(compiler(false), "gcc");
        assert!(ccache_env(false, false, false, Path::new("/c"), Path::new("/w")).is_empty());
        assert_eq!(
            ccache_env(true, true, false, Path::new("/c"), Path::new("/w")),
            [
                ("CCACHE_BASEDIR", "/w".to_string()),
                ("CCACHE_NOHASHDIR", "1".to_string()),
                ("CCACHE_MAXSIZE", "5G".to_string())
            ]
        );
    }

    #[test]
    fn the_series_is_switched_only_when_the_patches_differ() {
        let want = vec![("0001.patch".to_string(), "aa".to_string())];
        assert!(!needs_switch(&want, Some(&applied(&[("0001.patch", "aa")])), true));
        assert!(needs_switch(&want, Some(&applied(&[("0001.patch", "bb")])), true));
        assert!(needs_switch(&want, None, true));
        assert!(!needs_switch(&[], None, false));
        // Back to the plain source: an empty series applied is still removed.
        assert!(needs_switch(&[], Some(&applied(&[])), false));
    }

    #[test]
    fn only_the_mandatory_layer_stops_the_build() {
        let m = |layer: &str| Mismatch {
            symbol: "X".into(),
            wanted: "y".into(),
            got: "n".into(),
            layer: layer.into(),
        };
        let (fatal, warn) = split_mismatches(vec![m(MANDATORY_LAYER), m("user.config"), m(MANDATORY_LAYER)]);
        assert_eq!((fatal.len(), warn.len()), (2, 1));
        assert_eq!(warn[0].layer, "user.config");
    }

    #[test]
    fn install_puts_the_image_beside_a_module_tree() {
        let c = install_copies(Path::new("/o"), Path::new("/b/h.tmp"));
        assert_eq!(c[0], (PathBuf::from("/o/arch/x86/boot/bzImage"), PathBuf::from("/b/h.tmp/bzImage")));
        assert_eq!(c[4], (PathBuf::from("/o/vmlinux"), PathBuf::from("/b/h.tmp/tree/vmlinux")));
        assert!(c.iter().all(|(from, to)| from.starts_with("/o") && to.starts_with("/b/h.tmp")));
    }
}
