//! The syscall edge of lockstep: loads one [`lockstep_core::case::Case`] into the running kernel
//! through bpf() (libbpf-sys) with its maps, BTF and a verifier log, and reports a
//! [`lockstep_core::proto::KernelResult`].
//!
//! - [`Loader`]: vmlinux and module BTF resolved once; [`Loader::run_case`] per case.
//! - [`objload`]: a program of a BPF object, loaded through libbpf as the selftests load it.
//! - [`parse_verifier_log`]: the pure log parser (error line, instruction index, statistics).
//! - [`load_module`] / [`module_status`]: the test module and its BTF id.
//! - [`kfuncs::list_kfuncs`]: the running kernel's kfuncs (their `bpf_kfunc` BTF tags).
//!
//! All `unsafe` code lives in [`sys`].

mod kept;
pub mod kfuncs;
mod loader;
pub mod log;
pub mod module;
pub mod objload;
pub mod phase;
pub mod progbtf;
mod reuse;
pub mod sys;

use nix::errno::Errno;

pub use loader::{Loader, ModuleBtf};
pub use log::{parse_verifier_log, ParsedLog};
pub use module::{find_module_btf, load_module, module_status};
pub use sys::SysError;

/// Errors building a [`Loader`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// vmlinux BTF could be read neither from sysfs nor by id.
    #[error("reading vmlinux BTF: {0}")]
    Vmlinux(SysError),
    /// Enumerating the kernel's BTF objects failed (not root? no BPF_SYSCALL?).
    #[error("enumerating kernel BTF objects: {0}")]
    Enumerate(SysError),
    /// A module's split BTF could not be read.
    #[error("reading BTF of module {name}: {source}")]
    Module { name: String, source: SysError },
}

/// Why a case could not be set up (its result then carries no verifier verdict).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Building the program BTF in memory failed.
    #[error("building program BTF: {0}")]
    BtfBuild(SysError),
    /// The kernel refused the program BTF.
    #[error("loading program BTF: {source}: {log}")]
    BtfLoad { source: SysError, log: String },
    /// The kernel refused to create a map.
    #[error("creating map {name}: {source}")]
    Map { name: String, source: SysError },
    /// A kfunc name found neither in vmlinux nor in any module BTF.
    #[error("unknown kfunc {0}: not a BTF function of vmlinux or any loaded module")]
    UnknownKfunc(String),
    /// A relocation names a map the case does not declare.
    #[error("unknown map {0}")]
    UnknownMap(String),
    /// A relocation at an instruction of the wrong kind.
    #[error("relocation {reloc} does not fit instruction {insn}")]
    BadReloc { insn: usize, reloc: String },
}

impl SetupError {
    /// The errno of the failing syscall, if one failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            SetupError::BtfBuild(e) | SetupError::BtfLoad { source: e, .. } => Some(e.errno),
            SetupError::Map { source, .. } => Some(source.errno),
            _ => None,
        }
    }

    /// The kernel's log, if it gave one.
    pub fn log(&self) -> Option<&str> {
        match self {
            SetupError::BtfLoad { log, .. } => Some(log),
            _ => None,
        }
    }
}
