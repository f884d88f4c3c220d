//! Shared by the VM test binaries: the static transport-only test agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The static transport-only test agent (`examples/lockstep-test-agent`), built once per test
/// binary with cargo into `$CARGO_TARGET_DIR/agent`; `LOCKSTEP_TEST_AGENT=<path>` skips the build.
pub fn agent() -> PathBuf {
    if let Some(p) = std::env::var_os("LOCKSTEP_TEST_AGENT") {
        return PathBuf::from(p);
    }
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap();
    if let Some(p) = &*built {
        return p.clone();
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("agent");
    let status = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "-p", "lockstep-vm", "--no-default-features", "--example", "lockstep-test-agent"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the static test agent failed");
    let p = target_dir.join("x86_64-unknown-linux-gnu/debug/examples/lockstep-test-agent");
    *built = Some(p.clone());
    p
}
