//! The kernel-BTF edge of `lockstep check`: reads the BTF that types tracing / LSM programs'
//! ctx (their attach functions' prototypes) from a file and hands its parse to the profiles
//! (`KernelProfile::kernel_btf`). The file is a vmlinux ELF with a `.BTF` section (the BTF-only
//! `vmlinux` of a Debian kernel's headers package, which the cache keeps for the test module
//! build) or raw BTF (`/sys/kernel/btf/vmlinux`). See `docs/kernel-btf.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use lockstep_core::case::{Case, ProgType};
use lockstep_core::kernel_btf::{KernelBtf, KernelBtfRef};
use lockstep_core::profile::KernelProfile;

use crate::exit::BadInput;

/// Reads and parses the kernel BTF in `path` (bad input, naming the file, when it is neither).
pub fn load(path: &Path) -> Result<Arc<KernelBtf>> {
    let bad = |why: String| BadInput(format!("kernel BTF {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let raw: &[u8] = if bytes.starts_with(&[0x9f, 0xeb]) {
        &bytes
    } else {
        match lockstep_core::module_ko::elf_section(&bytes, ".BTF") {
            Ok(Some(s)) => s,
            Ok(None) => return Err(bad("an ELF file without a .BTF section".into()).into()),
            Err(e) => return Err(bad(format!("neither raw BTF nor an ELF file ({e})")).into()),
        }
    };
    let parsed = KernelBtf::parse(&path.display().to_string(), raw).map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(parsed))
}

/// The cached kernel BTF of `profile`: its Debian kernel's headers' `vmlinux`, if unpacked.
pub fn cached_for(profile: &KernelProfile) -> Option<PathBuf> {
    crate::kernel::headers_vmlinux(profile.kernel.as_deref()?)
}

/// Gives each profile its kernel BTF: `explicit` for all of them (read even when no case needs
/// it, so a bad file is always bad input), else, when some case may read it (a tracing / LSM
/// program, or a program with a map: a load through its map pointer is typed by the map's
/// kernel struct, `check_ptr_to_map_access()`), each profile's cached kernel's.
pub fn attach(profiles: &mut [KernelProfile], cases: &[Case], explicit: Option<&Path>) -> Result<()> {
    if let Some(path) = explicit {
        let k = load(path)?;
        for p in profiles.iter_mut() {
            p.kernel_btf = KernelBtfRef(Some(k.clone()));
        }
        return Ok(());
    }
    if !cases.iter().any(|c| matches!(c.prog_type, ProgType::Tracing | ProgType::Lsm) || !c.maps.is_empty()) {
        return Ok(());
    }
    for p in profiles.iter_mut() {
        if let Some(path) = cached_for(p) {
            match load(&path) {
                Ok(k) => p.kernel_btf = KernelBtfRef(Some(k)),
                // A damaged cache entry: the model says the BTF is missing, as without a cache.
                Err(e) => tracing::warn!("profile {}: {e:#}", p.name),
            }
        }
    }
    Ok(())
}
