/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* bpf_ksym_exists() of a __ksym function (model/ksym.rs): libbpf gives the kernel an ld_imm64
 * with BPF_PSEUDO_BTF_ID when the function is in the kernel's BTF (check_pseudo_btf_id():
 * PTR_TO_MEM | MEM_RDONLY, never null, so the test against 0 is decided), the constant 0 when a
 * __weak one is not. The branch not taken is dead code: `r0 = r9` there is never walked.
 *
 * Not in tests/c: the model resolves a ksym only with a kernel BTF (`lockstep check` reads the
 * cached one; tests/c_objects.rs checks every profile without one, and 7.2+kf-spin-lock has none).
 * Real runs (`clang -O2 -g -target bpf -c`, `lockstep run -k debian:6.12 -k debian:7.2
 * -k debian:7.3`, 2026-12-04): ksym_exists_present accept, ksym_exists_missing reject at insn 3
 * ("R9 !read_ok") on all three; the model (`lockstep check --profile 6.12|7.2|7.3`, cached BTF
 * and bpf_testmod) agrees on both; under `lockstep run` (no module BTF read) it leaves the
 * missing one unsupported (a FUNC not in vmlinux might be a module's). tests/kernel_btf.rs
 * (VM tests) compiles this file, checks it on 7.2 / 7.3 with the cached BTF and runs it on
 * debian:7.2 / 7.3. */
#include "../c/lockstep.h"

/* A struct, not a forward declaration: bpf_core_types_are_compat() compares BTF kinds (libbpf's
 * btf_kind_core_compat()), and the kernel's is a struct. */
struct task_struct {
	int pid;
};
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym __attribute__((weak));
extern void lockstep_no_such_kfunc(void) __ksym __attribute__((weak));

/* tools/lib/bpf/bpf_helpers.h */
#define ksym_exists(sym) ({ _Static_assert(!__builtin_constant_p(!!sym), #sym " should be __weak"); !!sym; })

SEC("socket")
__description("bpf_ksym_exists() of a kfunc the kernel has: the branch for its absence is dead")
__success
int ksym_exists_present(void *ctx)
{
	if (!ksym_exists(bpf_task_acquire))
		asm volatile("r0 = r9" ::: "r0");
	return 0;
}

SEC("socket")
__description("bpf_ksym_exists() of a __weak function no kernel has: the constant 0")
__failure __msg("R9 !read_ok")
int ksym_exists_missing(void *ctx)
{
	if (!ksym_exists(lockstep_no_such_kfunc))
		asm volatile("r0 = r9" ::: "r0");
	return 0;
}
