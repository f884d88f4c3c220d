//! The compiled flags of a kernel's kfuncs, read from the `.BTF_ids` of its `vmlinux` (a build's
//! own; for a Debian kernel the BTF-only one its headers package ships, unpacked when the test
//! module is built): a static view
//! beside the kernel's answers, which explains most differences between the model and a kernel
//! (a kfunc flagged lock-safe that the profile's list lacks, or the reverse).

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};

/// Kfunc name -> id set -> flags word, of `kernel`'s vmlinux.
pub fn for_kernel(kernel: &str) -> Result<BTreeMap<String, BTreeMap<String, u32>>> {
    let v = crate::kernel::kernel_vmlinux(&crate::kernel::resolve(kernel)?).ok_or_else(|| {
        anyhow!("no vmlinux for {kernel} (a Debian kernel's headers are unpacked by the test module build)")
    })?;
    let bytes = std::fs::read(&v).with_context(|| format!("reading {}", v.display()))?;
    lockstep_core::module_ko::vmlinux_kfunc_sets(&bytes).with_context(|| format!("{}", v.display()))
}
