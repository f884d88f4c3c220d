//! A kernel built outside lockstep, named by its path (`--kernel PATH`): a built kernel tree (its
//! `arch/x86/boot/bzImage`, `vmlinux` and `.config`), or a bzImage with a `vmlinux` beside it.
//! [`locate`] finds the parts and checks the config has what a lockstep guest needs
//! ([`GUEST_REQUIREMENTS`]); [`missing_requirements`] and [`bzimage_release`] are pure.

use std::path::{Path, PathBuf};

use crate::kbuild::config::parse_dotconfig;

/// A config symbol the guest needs, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// Without `CONFIG_`.
    pub symbol: &'static str,
    /// What breaks without it.
    pub why: &'static str,
}

/// The config symbols a lockstep guest needs built in (`=y`): the items `lockstep kernel build`
/// forces on (`kbuild/mandatory.config`) minus the release string, `MODULE_UNLOAD`,
/// `BPF_JIT_ALWAYS_ON` and `NET_CLS_BPF` (loading a sched_cls program needs only `NET`: Debian's
/// kernels have `NET_CLS_BPF=m`, never loaded, and run the corpus).
pub const GUEST_REQUIREMENTS: &[Requirement] = &[
    Requirement { symbol: "BPF_SYSCALL", why: "the bpf() syscall" },
    Requirement { symbol: "BPF_JIT", why: "kfunc calls need the JIT" },
    Requirement { symbol: "KALLSYMS", why: "kfunc calls resolve addresses through kallsyms" },
    Requirement { symbol: "DEBUG_INFO_BTF", why: "vmlinux BTF (kfuncs, lock maps)" },
    Requirement { symbol: "DEBUG_INFO_BTF_MODULES", why: "the test module's BTF" },
    Requirement { symbol: "MODULES", why: "loading the test module" },
    Requirement { symbol: "BLK_DEV_INITRD", why: "the initramfs holding the agent" },
    Requirement { symbol: "DEVTMPFS", why: "/dev in the guest" },
    Requirement { symbol: "PROC_FS", why: "/proc in the guest" },
    Requirement { symbol: "SYSFS", why: "/sys in the guest (BTF, module state)" },
    Requirement { symbol: "BINFMT_ELF", why: "running the agent" },
    Requirement { symbol: "SERIAL_8250_CONSOLE", why: "the serial console" },
    Requirement { symbol: "PCI", why: "virtio-pci" },
    Requirement { symbol: "VIRTIO_PCI", why: "the control port's transport" },
    Requirement { symbol: "VIRTIO_CONSOLE", why: "the virtio-serial control port" },
    Requirement { symbol: "ACPI", why: "powering the guest off" },
    Requirement { symbol: "NET", why: "sched_cls and xdp programs" },
];

/// The requirements a `.config` does not meet (`=m` does not: the guest loads no other module).
pub fn missing_requirements(dotconfig: &str) -> Vec<Requirement> {
    let have = parse_dotconfig(dotconfig);
    GUEST_REQUIREMENTS
        .iter()
        .filter(|r| have.get(r.symbol).map(String::as_str) != Some("y"))
        .copied()
        .collect()
}

/// The release (`uname -r`) a bzImage boots as, from its setup header's version string
/// (`kernel_version` at 0x20e, the string at 0x200 + that offset).
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize + 0x200;
    let s = image.get(off..off + 256.min(image.len().saturating_sub(off)))?;
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    let release = std::str::from_utf8(s).ok()?.split_whitespace().next()?.to_string();
    (!release.is_empty()).then_some(release)
}

/// A kernel found at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalKernel {
    /// The path as given, made absolute.
    pub path: PathBuf,
    pub bzimage: PathBuf,
    /// The `vmlinux` whose BTF describes the kernel.
    pub vmlinux: PathBuf,
    pub config: PathBuf,
    /// A configured, built tree to build the test module against (`build-module.sh --tree`).
    pub module_tree: Option<PathBuf>,
    /// `uname -r` of the booted kernel.
    pub release: String,
    /// `<release>+local.<sha256 of the bzImage, 12 digits>`.
    pub identity: String,
}

/// Why a path is not a usable kernel.
#[derive(Debug, thiserror::Error)]
pub enum LocalKernelError {
    #[error("{path}: {what}")]
    NotAKernel { path: PathBuf, what: String },
    #[error("kernel {path}: its config {config} lacks what the guest needs: {}", render_missing(.missing))]
    MissingConfig { path: PathBuf, config: PathBuf, missing: Vec<Requirement> },
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn render_missing(m: &[Requirement]) -> String {
    m.iter().map(|r| format!("CONFIG_{}=y ({})", r.symbol, r.why)).collect::<Vec<_>>().join(", ")
}

fn is_module_tree(d: &Path) -> bool {
    d.join(".config").is_file() && d.join("vmlinux").is_file() && d.join("Makefile").is_file()
}

/// Finds the kernel at `path`: a directory with `arch/x86/boot/bzImage` (or `bzImage`), `vmlinux`
/// and `.config`; or a bzImage file whose directory (or that directory's `tree/`, the layout of
/// `lockstep kernel build`, or the tree above `arch/x86/boot/`) holds `vmlinux` and `.config`/`config`.
/// Checks the config against [`GUEST_REQUIREMENTS`].
pub fn locate(path: &Path) -> Result<LocalKernel, LocalKernelError> {
    let abs = std::path::absolute(path).map_err(|e| LocalKernelError::Io { path: path.into(), source: e })?;
    let not = |what: String| LocalKernelError::NotAKernel { path: abs.clone(), what };
    let (bzimage, dir) = if abs.is_dir() {
        let b = [abs.join("arch/x86/boot/bzImage"), abs.join("bzImage")].into_iter().find(|p| p.is_file());
        (b.ok_or_else(|| not("no arch/x86/boot/bzImage (or bzImage) in this directory".into()))?, abs.clone())
    } else if abs.is_file() {
        (abs.clone(), abs.parent().unwrap_or(Path::new("/")).to_path_buf())
    } else {
        return Err(not("no such file or directory".into()));
    };
    // Where vmlinux and the config may be: the directory, its `tree/`, the tree above arch/x86/boot.
    let mut dirs = vec![dir.clone(), dir.join("tree")];
    if let Some(top) = dir.ancestors().nth(3).filter(|_| dir.ends_with("arch/x86/boot")) {
        dirs.push(top.to_path_buf());
    }
    let find = |names: &[&str]| -> Option<PathBuf> {
        dirs.iter().flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
    };
    let vmlinux =
        find(&["vmlinux"]).ok_or_else(|| not("no vmlinux beside the bzImage (needed for its BTF)".into()))?;
    let config = find(&[".config", "config"]).ok_or_else(|| not("no .config beside the bzImage".into()))?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| LocalKernelError::Io { path: p, source: e }
    };
    let image = std::fs::read(&bzimage).map_err(io(&bzimage))?;
    let text = std::fs::read_to_string(&config).map_err(io(&config))?;
    let missing = missing_requirements(&text);
    if !missing.is_empty() {
        return Err(LocalKernelError::MissingConfig { path: abs, config, missing });
    }
    let module_tree = dirs.iter().find(|d| is_module_tree(d)).cloned();
    let release = module_tree
        .as_ref()
        .and_then(|t| std::fs::read_to_string(t.join("include/config/kernel.release")).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| bzimage_release(&image))
        .ok_or_else(|| not(format!("{}: no kernel version in its setup header", bzimage.display())))?;
    let hash = crate::kbuild::series::sha256_hex(&image);
    let identity = format!("{release}+local.{}", &hash[..12]);
    Ok(LocalKernel { path: abs, bzimage, vmlinux, config, module_tree, release, identity })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_config() -> String {
        GUEST_REQUIREMENTS.iter().map(|r| format!("CONFIG_{}=y\n", r.symbol)).collect()
    }

    #[test]
    fn names_what_the_config_lacks() {
        assert!(missing_requirements(&full_config()).is_empty());
        let cfg = full_config()
            .replace("CONFIG_DEBUG_INFO_BTF_MODULES=y", "# CONFIG_DEBUG_INFO_BTF_MODULES is not set")
            .replace("CONFIG_VIRTIO_CONSOLE=y", "CONFIG_VIRTIO_CONSOLE=m");
        let m: Vec<_> = missing_requirements(&cfg).iter().map(|r| r.symbol).collect();
        assert_eq!(m, ["DEBUG_INFO_BTF_MODULES", "VIRTIO_CONSOLE"]);
    }

    fn fake_bzimage(version: &str) -> Vec<u8> {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        img[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
        img
    }

    #[test]
    fn reads_the_release_from_the_setup_header() {
        assert_eq!(
            bzimage_release(&fake_bzimage("7.2.13-lockstep (dev@host) #1 SMP")).as_deref(),
            Some("7.2.13-lockstep")
        );
        assert_eq!(bzimage_release(&[0u8; 0x400]), None);
    }

    #[test]
    fn locates_a_tree_and_a_bzimage_with_vmlinux_beside_it() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("linux");
        std::fs::create_dir_all(tree.join("arch/x86/boot")).unwrap();
        std::fs::create_dir_all(tree.join("include/config")).unwrap();
        std::fs::write(tree.join("arch/x86/boot/bzImage"), fake_bzimage("7.4.0-rc1 (x) #1")).unwrap();
        std::fs::write(tree.join("vmlinux"), b"elf").unwrap();
        std::fs::write(tree.join("Makefile"), b"").unwrap();
        std::fs::write(tree.join("include/config/kernel.release"), "7.4.0-rc1-dirty\n").unwrap();
        std::fs::write(tree.join(".config"), full_config()).unwrap();
        let k = locate(&tree).unwrap();
        assert_eq!(k.release, "7.4.0-rc1-dirty");
        assert_eq!(k.module_tree.as_deref(), Some(tree.as_path()));
        assert!(k.identity.starts_with("7.4.0-rc1-dirty+local."));
        // The bzImage itself: the same kernel, found from arch/x86/boot.
        let k2 = locate(&tree.join("arch/x86/boot/bzImage")).unwrap();
        assert_eq!((k2.vmlinux, k2.module_tree), (tree.join("vmlinux"), Some(tree.clone())));
        // A bare bzImage + vmlinux + config: boots, no tree to build the module against.
        let bare = d.path().join("bare");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::write(bare.join("bzImage"), fake_bzimage("7.4.0 (x) #1")).unwrap();
        std::fs::write(bare.join("vmlinux"), b"elf").unwrap();
        std::fs::write(bare.join("config"), full_config()).unwrap();
        let k3 = locate(&bare.join("bzImage")).unwrap();
        assert_eq!((k3.release.as_str(), k3.module_tree), ("7.4.0", None));
        // A config lacking BTF is named, symbol by symbol.
        std::fs::write(tree.join(".config"), full_config().replace("CONFIG_DEBUG_INFO_BTF=y\n", "")).unwrap();
        let e = locate(&tree).unwrap_err().to_string();
        assert!(e.contains("CONFIG_DEBUG_INFO_BTF=y (vmlinux BTF"), "{e}");
        assert!(locate(&d.path().join("nope")).unwrap_err().to_string().contains("no such file"));
        std::fs::remove_file(bare.join("vmlinux")).unwrap();
        assert!(locate(&bare.join("bzImage")).unwrap_err().to_string().contains("no vmlinux"));
    }
}
