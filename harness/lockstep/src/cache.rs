//! The cache root as every command finds it, and the cache of kernels built from source in it:
//! below both `kernel` (the command and kernel names) and `kbuild` (`kernel build`).

use std::path::PathBuf;

use anyhow::Result;

use crate::exit::BadInput;

/// The cache root ([`lockstep_vm::cache_root::from_env`]); no cache directory is bad input asking
/// for `LOCKSTEP_CACHE`.
pub fn cache_root() -> Result<PathBuf> {
    lockstep_vm::cache_root::from_env().map_err(|e| BadInput(e.to_string()).into())
}

/// The cache of kernels built from source, at [`cache_root`].
pub fn kbuild() -> Result<lockstep_vm::kbuild::Kbuild> {
    Ok(lockstep_vm::kbuild::Kbuild::new(cache_root()?))
}
