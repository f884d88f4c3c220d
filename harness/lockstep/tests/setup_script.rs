//! `scripts/setup.sh` never removes a package: run against a fake `apt-get` (on PATH before the
//! real one) that plans a removal, it must refuse before any real install. The qemu plan is the
//! one apt made on this machine on 2026-12-03 (/var/log/apt/history.log): installing
//! qemu-system-x86 7.2 removed the image's backported qemu-utils 10.0. A removal of QEMU packages
//! only is turned into keeping them at qemu-system-x86's version; anything else is refused.

use std::path::Path;
use std::process::{Command, Output};

/// Runs setup.sh with fake `apt-get`, `dpkg-query` (nothing installed) and `sudo`; returns its
/// output and the apt-get invocations, one per line.
fn setup_with_fake_apt(plan: &str) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("apt.log");
    let fake = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("755").arg(&p).status().unwrap();
    };
    fake("dpkg-query", "exit 1");
    fake("sudo", "exec \"$@\"");
    // A simulation that pins a package version (setup.sh keeping QEMU packages) plans no removal.
    fake(
        "apt-get",
        &format!(
            "echo \"$*\" >> '{}'\ncase \" $* \" in *\"=\"*\" -s \"*|*\" -s \"*\"=\"*) echo 'Inst qemu-system-x86';; *\" -s \"*) printf '%s\\n' \"$FAKE_PLAN\";; esac\nexit 0",
            log.display()
        ),
    );
    fake(
        "apt-cache",
        "printf 'qemu-system-x86:\\n  Installed: (none)\\n  Candidate: 1:7.2+dfsg-7+deb12u18+b3\\n'",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup.sh");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new("bash").arg(script).env("PATH", path).env("FAKE_PLAN", plan).output().unwrap();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    (o, calls)
}

#[test]
fn setup_keeps_a_newer_qemu_utils_at_the_qemu_version_instead_of_removing_it() {
    let plan = "Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
                Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12/oldstable [amd64])\n\
                Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12/oldstable [amd64])";
    let (o, calls) = setup_with_fake_apt(plan);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("keeping qemu-utils installed at QEMU 1:7.2+dfsg-7+deb12u18+b3"), "{out}");
    let install = calls.lines().find(|l| l.starts_with("install")).unwrap_or_else(|| panic!("{calls}"));
    assert!(install.contains("--no-remove") && install.contains("--allow-downgrades"), "{install}");
    assert!(install.contains("qemu-utils=1:7.2+dfsg-7+deb12u18+b3"), "{install}");
}

#[test]
fn setup_refuses_an_install_that_would_remove_other_packages() {
    let plan = "Remv libfoo1 [1.0]\n\
                Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12/oldstable [amd64])";
    let (o, calls) = setup_with_fake_apt(plan);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("apt would remove these installed packages:\n  libfoo1\n"), "{err}");
    assert!(err.contains("nothing was installed or removed"), "{err}");
    // Simulated, never installed.
    assert!(calls.lines().any(|l| l.starts_with("-s install")), "{calls}");
    assert!(!calls.lines().any(|l| l.starts_with("install")), "{calls}");
}

#[test]
fn setup_installs_with_no_remove_when_nothing_would_be_removed() {
    let plan = "Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12/oldstable [amd64])";
    let (o, calls) = setup_with_fake_apt(plan);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let install = calls.lines().find(|l| l.starts_with("install")).unwrap_or_else(|| panic!("{calls}"));
    assert!(install.contains("--no-remove") && install.contains("qemu-system-x86"), "{install}");
}
