//! `scripts/setup.sh` never removes a package: run against a fake `apt-get` (on PATH before the
//! real one) that plans a removal, it must refuse before any real install. The fake's plan is the
//! one apt made on this machine on 2026-12-03 (/var/log/apt/history.log): installing
//! qemu-system-x86 7.2 removed the backported qemu-utils 10.0.

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
    fake(
        "apt-get",
        &format!(
            "echo \"$*\" >> '{}'\ncase \" $* \" in *\" -s \"*) printf '%s\\n' \"$FAKE_PLAN\";; esac\nexit 0",
            log.display()
        ),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup.sh");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new("bash").arg(script).env("PATH", path).env("FAKE_PLAN", plan).output().unwrap();
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    (o, calls)
}

#[test]
fn setup_refuses_an_install_that_would_remove_packages() {
    let plan = "Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
                Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12/oldstable [amd64])\n\
                Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12/oldstable [amd64])";
    let (o, calls) = setup_with_fake_apt(plan);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("apt would remove these installed packages:\n  qemu-utils\n"), "{err}");
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
