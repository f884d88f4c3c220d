/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* Sleepable fentry and LSM programs (model/sleep.rs): may the attach target sleep
 * (bpf_check_attach_target() -> btf_id_allow_sleepable()), and a helper that may sleep. */
#include "lockstep.h"

static long (*bpf_copy_from_user)(void *dst, __u32 size, const void *user_ptr) = (void *)148;

/* Debian's kernels have no CONFIG_FUNCTION_ERROR_INJECTION: 7.x lets a sleepable program attach
 * to a syscall (has_arch_syscall_prefix(): "__x64_"); 6.12's within_error_injection_list() stub
 * says no. */
SEC("fentry.s/__x64_sys_getpgid")
__description("sleepable fentry on a syscall")
__success
__expect_on("6.12", reject) __msg_on("6.12", "__x64_sys_getpgid is not sleepable")
int fentry_s_syscall(void *ctx)
{
	return 0;
}

/* btf_kfunc_is_modify_return(): bpf_fentry_test1 is KF_SLEEPABLE in net/bpf/test_run.c's
 * bpf_test_modify_return_ids (6.12, 7.2, 7.3). */
SEC("fentry.s/bpf_fentry_test1")
__description("sleepable fentry on the fmodret set's KF_SLEEPABLE function")
__success
int fentry_s_test1(void *ctx)
{
	char buf[8];

	bpf_copy_from_user(buf, sizeof(buf), 0);
	return 0;
}

/* Neither a syscall nor KF_SLEEPABLE in an fmodret set. */
SEC("fentry.s/bpf_fentry_test2")
__description("sleepable fentry on a function that may not sleep")
__failure __msg("bpf_fentry_test2 is not sleepable")
int fentry_s_test2(void *ctx)
{
	return 0;
}

/* check_helper_call(): a might_sleep helper in a program that does not sleep. */
SEC("fentry/bpf_fentry_test1")
__description("bpf_copy_from_user in a fentry program that is not sleepable")
__failure __msg("sleepable helper bpf_copy_from_user#148 in non-sleepable prog")
__msg_on("6.12", "helper call might sleep in a non-sleepable prog")
int fentry_copy_from_user(void *ctx)
{
	char buf[8];

	bpf_copy_from_user(buf, sizeof(buf), 0);
	return 0;
}

/* bpf_lsm_is_sleepable_hook(): file_open is in sleepable_lsm_hooks (kernel/bpf/bpf_lsm.c). */
SEC("lsm.s/file_open")
__description("sleepable LSM program on a sleepable hook")
__success
int lsm_s_file_open(void *ctx)
{
	char buf[8];

	bpf_copy_from_user(buf, sizeof(buf), 0);
	return 0;
}

/* task_free is not in sleepable_lsm_hooks. */
SEC("lsm.s/task_free")
__description("sleepable LSM program on a hook that may not sleep")
__failure __msg("bpf_lsm_task_free is not sleepable")
int lsm_s_task_free(void *ctx)
{
	return 0;
}

char _license[] SEC("license") = "GPL";
