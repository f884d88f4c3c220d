//! Listing the running kernel's kfuncs (guest side, and host mode): every function that its BTF
//! (`/sys/kernel/btf/vmlinux`, then each module's split BTF) tags `bpf_kfunc`.
//!
//! pahole (1.26+, `--btf_features=decl_tag_kfuncs`, which the kernel's `scripts/Makefile.btf`
//! passes) tags each function of a `BTF_KFUNCS_START` id set, so the tag list is the kernel's own
//! list of kfuncs; a kernel built with an older pahole has no tags, which the listing reports as a
//! warning (the host then takes the names from the `.BTF_ids` of the kernel's headers, see
//! `census::static_flags` in the `lockstep` binary; the loader resolves them by name).

use std::path::Path;

use lockstep_core::btf::{scan_tagged, KFUNC_TAG};
use lockstep_core::proto::{BtfSource, KfuncEntry, KfuncListing};

use crate::Loader;

/// Where the kernel exposes its BTF objects.
pub const SYS_BTF: &str = "/sys/kernel/btf";

/// Lists the kfuncs of the BTF objects under `dir` (`vmlinux` and module files); `loader`, when
/// given, is checked to resolve every kfunc name to the same BTF object and id.
pub fn list_kfuncs(dir: &Path, loader: Option<&Loader>) -> KfuncListing {
    let mut out = KfuncListing::default();
    let vmlinux = match std::fs::read(dir.join("vmlinux")) {
        Ok(b) => b,
        Err(e) => {
            out.sources.push(BtfSource {
                object: "vmlinux".into(),
                funcs: 0,
                kfuncs: 0,
                error: Some(e.to_string()),
            });
            return out;
        }
    };
    let mut objects: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "vmlinux")
        .collect();
    objects.sort();
    add_object(&mut out, "vmlinux", &vmlinux, None);
    for m in objects {
        match std::fs::read(dir.join(&m)) {
            Ok(b) => add_object(&mut out, &m, &b, Some(&vmlinux)),
            Err(e) => {
                out.sources.push(BtfSource { object: m, funcs: 0, kfuncs: 0, error: Some(e.to_string()) })
            }
        }
    }
    if let Some(l) = loader {
        for k in &out.kfuncs {
            let want = (k.btf_id, k.module.as_deref());
            match l.kfunc_id(&k.name) {
                Some(got) if got == want => {}
                got => out.warnings.push(format!(
                    "the loader resolves kfunc {} to {:?}, its bpf_kfunc tag says {:?}: calls may name another function",
                    k.name, got, want
                )),
            }
        }
    }
    out
}

/// Adds the tagged functions of one object (`base`: vmlinux for a module's split BTF).
fn add_object(out: &mut KfuncListing, object: &str, btf: &[u8], base: Option<&[u8]>) {
    let module = base.is_some().then(|| object.to_string());
    let (nfuncs, tagged) = match scan_tagged(btf, base, KFUNC_TAG) {
        Ok(r) => r,
        Err(e) => {
            out.sources.push(BtfSource { object: object.into(), funcs: 0, kfuncs: 0, error: Some(e) });
            return;
        }
    };
    if tagged.is_empty() && module.is_none() && nfuncs > 0 {
        out.warnings
            .push(format!("{object}: no function is tagged {KFUNC_TAG} (BTF made by pahole < 1.26?)"));
    }
    let mut entries: Vec<KfuncEntry> = tagged
        .into_iter()
        .map(|(btf_id, name)| KfuncEntry { name, btf_id, module: module.clone() })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    out.sources.push(BtfSource { object: object.into(), funcs: nfuncs, kfuncs: entries.len(), error: None });
    out.kfuncs.extend(entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_reported_not_fatal() {
        let l = list_kfuncs(Path::new("/nonexistent/lockstep"), None);
        assert!(l.kfuncs.is_empty());
        assert_eq!(l.sources.len(), 1);
        assert!(l.sources[0].error.is_some());
    }
}
