//! Enables the QEMU end-to-end tests (`cfg(lockstep_vm_tests)`) when `LOCKSTEP_VM_TESTS=1`.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(lockstep_vm_tests)");
    println!("cargo::rerun-if-env-changed=LOCKSTEP_VM_TESTS");
    if std::env::var("LOCKSTEP_VM_TESTS").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=lockstep_vm_tests");
    }
}
