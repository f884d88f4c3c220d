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

/// Loads a `.ko` with `finit_module` (an already loaded module is fine) and finds its BTF id.
pub fn load_module(path: &Path) -> ModuleStatus {
    let name = module_name(path);
    let failed = |error: String| ModuleStatus::Failed { name: name.clone(), error };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return failed(format!("open {}: {e}", path.display())),
    };
    match finit_module(&file, c"", ModuleInitFlags::empty()) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return failed(format!("finit_module {}: {e}", path.display())),
    }
    module_status(&name)
}
