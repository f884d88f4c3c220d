//! `lockstep profiles [derive PATH]`: the bundled profiles, or a profile derived from a kernel
//! source tree (the file edge of [`lockstep_core::profile_derive`]).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use lockstep_core::profile::KernelProfile;
use lockstep_core::profile_derive;

use crate::exit::BadInput;

/// `lockstep profiles ...`.
#[derive(Subcommand)]
pub enum ProfilesCmd {
    /// Derive a profile's lock rule for calls from a kernel source tree (verifier.c, btf.h, the
    /// kfuncs' BTF_ID_FLAGS) and write it as a profile file to review.
    Derive {
        /// The kernel source tree.
        path: PathBuf,
        /// The bundled profile the other (not derived) keys are copied from (default: the
        /// tree's VERSION.PATCHLEVEL from its Makefile).
        #[arg(long)]
        base: Option<String>,
        /// The new profile's name (default: derived:<base>).
        #[arg(long)]
        name: Option<String>,
        /// Write the profile here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|e| BadInput(format!("{}: {e}", p.display())).into())
}

/// `VERSION.PATCHLEVEL` from a tree's top Makefile.
fn tree_version(tree: &Path) -> Option<String> {
    let mk = std::fs::read_to_string(tree.join("Makefile")).ok()?;
    let get = |k: &str| {
        mk.lines().find_map(|l| l.strip_prefix(k)?.trim().strip_prefix('=').map(|v| v.trim().to_string()))
    };
    Some(format!("{}.{}", get("VERSION")?, get("PATCHLEVEL")?))
}

/// Every `.c` file under `dir`, recursively, sorted.
fn c_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "c") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs `lockstep profiles [derive ...]`.
pub fn run(cmd: Option<ProfilesCmd>) -> Result<u8> {
    let Some(ProfilesCmd::Derive { path, base, name, out }) = cmd else {
        return crate::check::profiles();
    };
    let base = match base.or_else(|| tree_version(&path)) {
        Some(b) => b,
        None => {
            return Err(BadInput(format!(
                "{}: no Makefile with VERSION/PATCHLEVEL: name the base profile with --base ({})",
                path.display(),
                KernelProfile::names().join(", ")
            ))
            .into())
        }
    };
    let base_profile = KernelProfile::by_name(&base).map_err(|e| BadInput(e.to_string()))?;
    let verifier = read(&path.join("kernel/bpf/verifier.c"))?;
    let btf_h = read(&path.join("include/linux/btf.h"))?;
    let sources: Vec<String> =
        c_files(&path.join("kernel")).iter().filter_map(|p| std::fs::read_to_string(p).ok()).collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let d = profile_derive::derive(&verifier, &btf_h, &refs)
        .map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let name = name.unwrap_or_else(|| format!("derived:{base}"));
    let text = profile_derive::render_profile(
        lockstep_core::profile::builtin_toml(&base_profile.name).expect("a bundled profile has its file"),
        &base_profile.name,
        &name,
        &path.display().to_string(),
        &d,
    );
    KernelProfile::from_toml(&name, &text)
        .map_err(|e| anyhow::anyhow!("the derived profile does not parse: {e}"))?;
    match out {
        Some(p) => crate::output::write_file(&p, &text)?,
        None => print!("{text}"),
    }
    eprintln!(
        "{}: kfunc_rule {:?}, flag {:?}, {} kfuncs under a lock, helpers {:?}; other keys from {base}",
        path.display(),
        d.rule,
        d.flag,
        d.kfuncs_under_lock.len(),
        d.helpers_under_lock
    );
    Ok(0)
}
