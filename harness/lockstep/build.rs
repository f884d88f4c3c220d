//! Enables the QEMU end-to-end tests (`cfg(lockstep_vm_tests)`) when `LOCKSTEP_VM_TESTS=1`, and
//! the ones that build kernels from a git tree (`cfg(lockstep_bisect_tests)`, tests/bisect.rs)
//! when `LOCKSTEP_BISECT_TESTS=1` too.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(lockstep_vm_tests)");
    println!("cargo::rustc-check-cfg=cfg(lockstep_bisect_tests)");
    println!("cargo::rerun-if-env-changed=LOCKSTEP_VM_TESTS");
    println!("cargo::rerun-if-env-changed=LOCKSTEP_BISECT_TESTS");
    if std::env::var("LOCKSTEP_VM_TESTS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=lockstep_vm_tests");
    }
    if std::env::var("LOCKSTEP_BISECT_TESTS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=lockstep_bisect_tests");
    }
}
