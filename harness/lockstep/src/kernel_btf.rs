//! The kernel-BTF edge of `lockstep check`: reads the BTF that types tracing / LSM programs'
//! ctx (their attach functions' prototypes) from a file and hands its parse to the profiles
//! (`KernelProfile::kernel_btf`). The file is a vmlinux ELF with a `.BTF` section (the BTF-only
//! `vmlinux` of a Debian kernel's headers package, which the cache keeps for the test module
//! build) or raw BTF (`/sys/kernel/btf/vmlinux`). See `docs/kernel-btf.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use lockstep_core::case::Case;
use lockstep_core::kernel_btf::{KernelBtf, KernelBtfRef};
use lockstep_core::profile::KernelProfile;

use crate::exit::BadInput;

/// Reads and parses the kernel BTF in `path` (bad input, naming the file, when it is neither).
pub fn load(path: &Path) -> Result<Arc<KernelBtf>> {
    Ok(Arc::new(load_parsed(path)?))
}

fn load_parsed(path: &Path) -> Result<KernelBtf> {
    let bad = |why: String| BadInput(format!("kernel BTF {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let raw_btf = bytes.starts_with(&[0x9f, 0xeb]);
    let section = if raw_btf {
        0..bytes.len()
    } else {
        match lockstep_core::module_ko::elf_section_range(&bytes, ".BTF") {
            Ok(Some(r)) => r,
            Ok(None) => return Err(bad("an ELF file without a .BTF section".into()).into()),
            Err(e) => return Err(bad(format!("neither raw BTF nor an ELF file ({e})")).into()),
        }
    };
    let mut parsed =
        KernelBtf::parse_in(&path.display().to_string(), bytes, section).map_err(|e| bad(e.to_string()))?;
    // A vmlinux ELF's .BTF_ids: the flags of its kfunc sets (kfunc_btf.rs describes the known ones).
    if !raw_btf {
        match lockstep_core::module_ko::vmlinux_kfunc_sets_named(parsed.bytes(), &|id| parsed.func_name(id)) {
            Ok(sets) => parsed.add_vmlinux_kfuncs(&sets),
            Err(e) => tracing::debug!("{}: no kfunc sets: {e}", path.display()),
        }
    }
    Ok(parsed)
}

/// Reads the kernel BTF in `path` and, when given, the kfuncs of the built `bpf_testmod.ko` at
/// `testmod` (its split BTF and `.BTF_ids`; a module that cannot be read is a warning: its kfuncs
/// stay unsupported).
pub fn load_with(path: &Path, testmod: Option<&Path>) -> Result<Arc<KernelBtf>> {
    let mut k = load_parsed(path)?;
    if let Some(ko) = testmod {
        match std::fs::read(ko) {
            Ok(bytes) => match k.add_module_kfuncs(&bytes) {
                Ok(n) => tracing::debug!("{}: {n} kfuncs", ko.display()),
                Err(e) => tracing::warn!("{}: {e}", ko.display()),
            },
            Err(e) => tracing::warn!("{}: {e}", ko.display()),
        }
    }
    Ok(Arc::new(k))
}

/// The cached `bpf_testmod.ko` built for `profile`'s Debian kernel (`lockstep run --testmod`,
/// `scripts/build-module.sh --testmod`), for the same package version as its cached headers.
pub fn cached_testmod(profile: &KernelProfile) -> Option<PathBuf> {
    let kernel = profile.kernel.as_deref()?;
    let vmlinux = crate::kernel::headers_vmlinux(kernel)?;
    // <cache>/headers/<name>/<version>/root/usr/src/linux-headers-*/vmlinux
    let version = vmlinux.ancestors().nth(5)?.file_name()?.to_str()?.to_string();
    let dir = crate::cache::cache_root().ok()?.join("modules").join(kernel.replace(':', "-"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&format!("{version}-testmod-"))))
        .map(|e| e.path().join("bpf_testmod.ko"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The cached kernel BTF of `profile`: its Debian kernel's headers' `vmlinux`, if unpacked.
pub fn cached_for(profile: &KernelProfile) -> Option<PathBuf> {
    crate::kernel::headers_vmlinux(profile.kernel.as_deref()?)
}

/// The profiles of a `lockstep check`, each with its kernel's BTF as `lockstep run` gives the
/// model (tracing / LSM ctx, loads through map pointers and kernel pointers, kfunc prototypes),
/// in two variants: the programs of BPF objects (the kernel's selftests, which call bpf_testmod
/// kfuncs the model judges by their BTF) also read the cached `bpf_testmod.ko`'s split BTF.
/// Which variant a case gets depends on the case alone, never on the other cases of the run,
/// so a case gives the same verdict in any file set.
pub struct CheckProfiles {
    vmlinux: Vec<KernelProfile>,
    with_testmod: Vec<KernelProfile>,
    /// The profiles as given (names and order are those of both variants).
    names: Vec<KernelProfile>,
}

impl CheckProfiles {
    /// `explicit` (`--kernel-btf FILE`) types every case on every profile; else each profile gets
    /// its cached Debian kernel's BTF (a profile whose kernel is not cached, or whose cache entry
    /// is damaged, stays without: the model then says the BTF is missing), and the vmlinux-only
    /// and the testmod variants are each loaded only when `cases` hold a case that reads it.
    pub fn new(
        profiles: Vec<KernelProfile>,
        cases: &[Case],
        explicit: Option<&Path>,
    ) -> Result<CheckProfiles> {
        if let Some(path) = explicit {
            let k = load(path)?;
            let mut all = profiles;
            for p in all.iter_mut() {
                p.kernel_btf = KernelBtfRef(Some(k.clone()));
            }
            return Ok(CheckProfiles { vmlinux: all.clone(), with_testmod: all.clone(), names: all });
        }
        let with = |testmod: bool| {
            let mut v = profiles.clone();
            for p in v.iter_mut() {
                if let Some(path) = cached_for(p) {
                    let ko = if testmod { cached_testmod(p) } else { None };
                    match load_with(&path, ko.as_deref()) {
                        Ok(k) => p.kernel_btf = KernelBtfRef(Some(k)),
                        Err(e) => tracing::warn!("profile {}: {e:#}", p.name),
                    }
                }
            }
            v
        };
        // Each variant only when a case reads it (each parses every profile's kernel BTF again).
        let objects = cases.iter().any(|c| c.object.is_some());
        let texts = cases.iter().any(|c| c.object.is_none());
        let with_testmod = if objects { with(true) } else { Vec::new() };
        let vmlinux = if texts { with(false) } else { Vec::new() };
        Ok(CheckProfiles { vmlinux, with_testmod, names: profiles })
    }

    /// The profiles `case` is checked against.
    pub fn for_case(&self, case: &Case) -> &[KernelProfile] {
        if case.object.is_some() {
            &self.with_testmod
        } else {
            &self.vmlinux
        }
    }

    /// The profiles (names and order are those of both variants).
    pub fn names(&self) -> &[KernelProfile] {
        &self.names
    }
}
