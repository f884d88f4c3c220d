//! The QEMU command line, built as data.
//!
//! The console (ttyS0) goes to QEMU's stdout; the control port is a virtio-serial port named
//! [`CONTROL_PORT_NAME`] whose chardev connects to a unix socket the host listens on.

use std::path::{Path, PathBuf};

use lockstep_core::proto::{CONTROL_PORT_NAME, GUEST_CMDLINE_MARKER};

/// How the guest CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// Hardware virtualisation (`-accel kvm -cpu host`).
    Kvm,
    /// Emulation (`-accel tcg -cpu max,erms=off`, [`TCG_CPU`]): always works, 5-12 s per boot.
    Tcg,
}

/// The CPU model of a TCG guest: everything TCG emulates but ERMS ("enhanced `rep movsb` /
/// `rep stosb`"). The flag tells software that byte-wise string instructions are fast; under
/// TCG (QEMU 7.2) each iteration of a `rep` instruction is one translated block, so with it
/// the guest kernel zeroes pages with `rep stosb` (4096 iterations a page) and copies 64 bytes
/// and more to and from user space with `rep movsb`: the verifier's allocations (its env,
/// zeroed, is tens of KiB) and its log writes ran a byte an iteration. Without it the kernel
/// takes its 8-byte forms. Measured (docs/speed.md, session 21): those functions took 12.6% of
/// a guest's samples with ERMS, 4.1% without; the kernel's verification time per case 0.925 of
/// what it was, the round trip 0.96 (medians of 10 pairs); verdicts and messages unchanged. KVM
/// runs the host's CPU, whose fast strings are real.
pub const TCG_CPU: &str = "max,erms=off";

impl Accel {
    /// The `-cpu` model QEMU is given.
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => TCG_CPU,
        }
    }
}

/// Kernel parameters always passed: console on ttyS0, panic ends QEMU, oopses panic, warnings and
/// worse reach the console (loglevel 5) while boot chatter does not, and the marker
/// ([`GUEST_CMDLINE_MARKER`]) without which the agent refuses to run.
pub const BASE_CMDLINE: [&str; 6] =
    ["console=ttyS0", "panic=-1", "oops=panic", "loglevel=5", "rdinit=/init", GUEST_CMDLINE_MARKER];

/// Everything the QEMU command line depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuArgs {
    /// The QEMU binary (`qemu-system-x86_64`).
    pub binary: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub memory_mib: u32,
    /// Virtual CPUs (`-smp`).
    pub vcpus: u32,
    pub accel: Accel,
    /// Appended to [`BASE_CMDLINE`] (later parameters win in the kernel).
    pub extra_cmdline: Vec<String>,
    /// Unix socket the host listens on; QEMU connects to it for the control port.
    pub control_socket: PathBuf,
    /// A QMP monitor on this unix socket (QEMU listens), for saving snapshots.
    pub qmp_socket: Option<PathBuf>,
    /// Guest RAM in this file instead of anonymous memory (restored guests map their snapshot's
    /// RAM image; the boot that saves one writes it).
    pub ram_file: Option<RamFile>,
    /// Wait for an incoming migration started over QMP (`-incoming defer`) instead of booting.
    pub incoming: bool,
}

/// Guest RAM backed by a file (`-object memory-backend-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamFile {
    pub path: PathBuf,
    /// `share=on`: the guest's writes reach the file (a boot whose RAM becomes a snapshot);
    /// `share=off`: a private copy-on-write mapping, the file is only read (a restore).
    pub shared: bool,
}

impl QemuArgs {
    /// Defaults: 512 MiB, TCG, no extra parameters.
    pub fn new(
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
        control_socket: impl Into<PathBuf>,
    ) -> Self {
        QemuArgs {
            binary: "qemu-system-x86_64".into(),
            kernel: kernel.into(),
            initrd: initrd.into(),
            memory_mib: 512,
            vcpus: 1,
            accel: Accel::Tcg,
            extra_cmdline: Vec::new(),
            control_socket: control_socket.into(),
            qmp_socket: None,
            ram_file: None,
            incoming: false,
        }
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        BASE_CMDLINE
            .iter()
            .map(|s| s.to_string())
            .chain(self.extra_cmdline.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The arguments after the binary.
    pub fn to_args(&self) -> Vec<String> {
        let accel = match self.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        };
        let mut a: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
            "-accel".into(),
            accel.into(),
            "-cpu".into(),
            self.accel.cpu_model().into(),
            // One vCPU: `-smp 2` under TCG oopses at boot now and then (measured: the team's shared kernel notes).
            "-smp".into(),
            self.vcpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.cmdline(),
            "-chardev".into(),
            "stdio,id=con,signal=off".into(),
            "-serial".into(),
            "chardev:con".into(),
            "-device".into(),
            "virtio-serial-pci,id=vser0".into(),
            "-chardev".into(),
            format!("socket,id=ctl,path={}", self.control_socket.display()),
            "-device".into(),
            format!("virtserialport,bus=vser0.0,chardev=ctl,name={CONTROL_PORT_NAME}"),
        ];
        if self.vcpus > 1 {
            // Named vCPU threads (`CPU 1/TCG`), which the host moves to the CPU of a job that
            // joins the guest (`guest::workers`).
            a.extend(["-name".into(), "lockstep,debug-threads=on".into()]);
        }
        if let Some(qmp) = &self.qmp_socket {
            a.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", qmp.display())]);
        }
        if let Some(ram) = &self.ram_file {
            a.extend([
                "-object".into(),
                format!(
                    "memory-backend-file,id=ram,size={}M,mem-path={},share={}",
                    self.memory_mib,
                    option_escape(&ram.path.display().to_string()),
                    if ram.shared { "on" } else { "off" }
                ),
                "-machine".into(),
                "memory-backend=ram".into(),
            ]);
        }
        if self.incoming {
            a.extend(["-incoming".into(), "defer".into()]);
        }
        a
    }
}

/// Where the command `cmd` (QEMU's binary) runs from: itself when it names a path, else the
/// first executable of that name in a `PATH` directory.
pub fn find_binary(cmd: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return runnable(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(cmd)).find(|p| runnable(p))
}

/// `s` as a value in a QEMU option list (a comma is doubled).
pub fn option_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// `s` quoted for `sh -c` (QEMU runs `exec:` migration URIs through the shell).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn every_guest_command_line_carries_the_agent_marker() {
        let mut q = QemuArgs::new("/k/vmlinuz", "/k/initrd.cpio", "/run/ctl.sock");
        assert!(crate::agent_io::has_guest_marker(&q.cmdline()));
        q.extra_cmdline = vec!["mem=1G".into()];
        assert!(crate::agent_io::has_guest_marker(&q.cmdline()));
    }

    #[test]
    fn tcg_command_line() {
        let mut q = QemuArgs::new("/k/vmlinuz", "/k/initrd.cpio", "/run/ctl.sock");
        q.extra_cmdline.push("init=/x".into());
        let a = q.to_args();
        assert_eq!(value_of(&a, "-accel"), ["tcg"]);
        assert_eq!(value_of(&a, "-cpu"), ["max,erms=off"]);
        assert_eq!(value_of(&a, "-smp"), ["1"]);
        assert!(value_of(&a, "-name").is_empty(), "thread names only for several vCPUs");
        assert_eq!(value_of(&a, "-m"), ["512"]);
        assert_eq!(value_of(&a, "-kernel"), ["/k/vmlinuz"]);
        assert_eq!(value_of(&a, "-initrd"), ["/k/initrd.cpio"]);
        assert_eq!(
            value_of(&a, "-append"),
            ["console=ttyS0 panic=-1 oops=panic loglevel=5 rdinit=/init lockstep.guest=1 init=/x"]
        );
        assert!(a.contains(&"-no-reboot".to_string()));
        assert_eq!(value_of(&a, "-chardev"), ["stdio,id=con,signal=off", "socket,id=ctl,path=/run/ctl.sock"]);
        assert_eq!(value_of(&a, "-serial"), ["chardev:con"]);
        assert_eq!(
            value_of(&a, "-device"),
            ["virtio-serial-pci,id=vser0", "virtserialport,bus=vser0.0,chardev=ctl,name=lockstep.0"]
        );
    }

    #[test]
    fn several_vcpus_have_named_threads() {
        let mut q = QemuArgs::new("k", "i", "s");
        q.vcpus = 2;
        let a = q.to_args();
        assert_eq!(value_of(&a, "-smp"), ["2"]);
        // `guest::workers` finds vCPU 1's thread by the name this gives it (`CPU 1/TCG`).
        assert_eq!(value_of(&a, "-name"), ["lockstep,debug-threads=on"]);
    }

    #[test]
    fn snapshot_monitor_and_restore_arguments() {
        let mut q = QemuArgs::new("k", "i", "s");
        assert!(!q.to_args().iter().any(|a| a == "-qmp" || a == "-incoming"));
        q.qmp_socket = Some("/run/q.qmp".into());
        q.incoming = true;
        q.ram_file = Some(RamFile { path: "/c/snap,1/ram".into(), shared: false });
        let a = q.to_args();
        assert_eq!(value_of(&a, "-qmp"), ["unix:/run/q.qmp,server=on,wait=off"]);
        assert_eq!(value_of(&a, "-incoming"), ["defer"]);
        assert_eq!(
            value_of(&a, "-object"),
            ["memory-backend-file,id=ram,size=512M,mem-path=/c/snap,,1/ram,share=off"]
        );
        assert_eq!(value_of(&a, "-machine"), ["memory-backend=ram"]);
        q.ram_file = Some(RamFile { path: "/c/r".into(), shared: true });
        assert_eq!(
            value_of(&q.to_args(), "-object"),
            ["memory-backend-file,id=ram,size=512M,mem-path=/c/r,share=on"]
        );
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn kvm_command_line() {
        let mut q = QemuArgs::new("k", "i", "s");
        q.accel = Accel::Kvm;
        q.memory_mib = 256;
        let a = q.to_args();
        assert_eq!(value_of(&a, "-accel"), ["kvm"]);
        assert_eq!(value_of(&a, "-cpu"), ["host"]);
        assert_eq!(value_of(&a, "-m"), ["256"]);
    }

    #[test]
    fn qemu_is_found_as_a_command_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("qemu-x");
        std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
        assert_eq!(find_binary(&exe.display().to_string()), None, "not executable");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_binary(&exe.display().to_string()), Some(exe.clone()));
        assert_eq!(find_binary("sh").map(|p| p.is_file()), Some(true), "sh is on every PATH");
        assert_eq!(find_binary("surely-no-such-command-lockstep"), None);
    }
}
