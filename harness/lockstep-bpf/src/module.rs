//! Loading the test module (`finit_module`) and finding kernel BTF objects by name.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use lockstep_core::proto::ModuleStatus;
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::sys::{self, BtfInfo, SysError};

/// A kernel BTF object (vmlinux or a module) with an open fd.
#[derive(Debug)]
pub struct KernelBtfObject {
    /// Id, name and kind.
    pub info: BtfInfo,
    /// An fd on it (what `fd_array` entries hold).
    pub fd: OwnedFd,
}

/// Every BTF object of the running kernel (`kernel_btf` set), vmlinux and modules, in id order.
pub fn kernel_btf_objects() -> Result<Vec<KernelBtfObject>, SysError> {
    let mut out = Vec::new();
    let mut id = 0;
    while let Some(next) = sys::btf_next_id(id)? {
        id = next;
        // Objects can vanish between the two calls (a program BTF being freed).
        let Ok(fd) = sys::btf_fd_by_id(id) else { continue };
        let info = sys::btf_info(fd.as_fd())?;
        if info.kernel_btf {
            out.push(KernelBtfObject { info, fd });
        }
    }
    Ok(out)
}

/// The BTF object id of the loaded module `name`, if it is loaded and has BTF.
pub fn find_module_btf(name: &str) -> Result<Option<u32>, SysError> {
    Ok(kernel_btf_objects()?.into_iter().find(|o| o.info.name == name).map(|o| o.info.id))
}

/// The module name the kernel uses for a `.ko` file (`foo-bar.ko` -> `foo_bar`).
pub fn module_name(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.split('.').next().unwrap_or_default();
    stem.replace('-', "_")
}

/// Whether module `name` is loaded with BTF.
pub fn module_status(name: &str) -> ModuleStatus {
    match find_module_btf(name) {
        Ok(Some(btf_id)) => ModuleStatus::Loaded { name: name.to_string(), btf_id },
        Ok(None) => ModuleStatus::Failed {
            name: name.to_string(),
            error: "module not loaded or without BTF".to_string(),
        },
        Err(e) => ModuleStatus::Failed { name: name.to_string(), error: e.to_string() },
    }
}

/// The module name recorded in a `.ko`'s `.modinfo` (`name=...`), which the kernel uses whatever
/// the file is called.
pub fn modinfo_name(ko: &[u8]) -> Option<String> {
    let key = b"\0name=";
    let at = ko.windows(key.len()).position(|w| w == key)? + key.len();
    let end = ko[at..].iter().position(|&b| b == 0)? + at;
    let name = std::str::from_utf8(&ko[at..end]).ok()?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| name.to_string())
}

/// What a `finit_module` errno means for a module lockstep built (`load_module()`'s message).
pub fn finit_error_meaning(errno: Errno) -> &'static str {
    match errno {
        Errno::ENOEXEC => {
            "invalid module format: built for another kernel (vermagic, layout or BTF mismatch)"
        }
        Errno::ENOENT => "unknown symbol: the module needs a symbol this kernel does not export",
        Errno::EKEYREJECTED | Errno::EBADMSG | Errno::ENOKEY => {
            "signature rejected: the kernel enforces module signatures"
        }
        Errno::EPERM => "module loading not permitted (lockdown, modules_disabled or no CAP_SYS_MODULE)",
        Errno::EINVAL => "invalid module or parameters (the console has the kernel's reason)",
        Errno::ENOMEM => "out of memory while loading the module",
        Errno::EBUSY => "the module's init is busy or a module of that name is being loaded",
        Errno::ENOSYS => "the kernel has no module support (CONFIG_MODULES=n)",
        _ => "the module's init failed (the console has the kernel's reason)",
    }
}

/// Loads a `.ko` with `finit_module` (an already loaded module is fine) and finds its BTF id.
/// A failure names the file, the errno (`ENOEXEC`, ...) and what it means.
pub fn load_module(path: &Path) -> ModuleStatus {
    let name = std::fs::read(path).ok().and_then(|b| modinfo_name(&b)).unwrap_or_else(|| module_name(path));
    let failed = |error: String| ModuleStatus::Failed { name: name.clone(), error };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return failed(format!("open {}: {e}", path.display())),
    };
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => {
            return failed(format!("finit_module {}: {e} ({})", path.display(), finit_error_meaning(e)))
        }
    }
    module_status(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_modinfo_name_wins_over_the_file_name() {
        let ko = b"\x7fELF...\0license=GPL\0name=lockstep_test\0vermagic=7.3\0";
        assert_eq!(modinfo_name(ko).as_deref(), Some("lockstep_test"));
        assert_eq!(modinfo_name(b"no modinfo here"), None);
        assert_eq!(module_name(Path::new("/lockstep/module.ko")), "module");
    }

    #[test]
    fn a_module_load_failure_is_named_by_errno() {
        assert!(finit_error_meaning(Errno::ENOEXEC).contains("another kernel"));
        assert!(finit_error_meaning(Errno::ENOENT).contains("unknown symbol"));
        assert_ne!(finit_error_meaning(Errno::EPERM), finit_error_meaning(Errno::ENOEXEC));
        let missing = load_module(Path::new("/nonexistent/bpf_testmod.ko"));
        assert!(
            matches!(&missing, ModuleStatus::Failed { name, error } if name == "bpf_testmod" && error.contains("/nonexistent/bpf_testmod.ko")),
            "{missing:?}"
        );
    }
}
