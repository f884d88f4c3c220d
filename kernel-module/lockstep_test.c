// SPDX-License-Identifier: GPL-2.0
/*
 * lockstep_test: kfuncs that exercise the BPF verifier's rules for calls made
 * while a bpf_spin_lock is held (between bpf_spin_lock() and bpf_spin_unlock()).
 *
 * The "lock-safe" flag has a different name per kernel and is detected at build
 * time (see LOCKSTEP_LOCK_SAFE below):
 *   - Linux 7.3:           KF_SPINLOCK_SAFE (1 << 17)
 *   - 7.2 + RFC series:    KF_SPIN_LOCK     (1 << 17)  (kf-spin-lock-rfc-v2)
 *   - 6.12, plain 7.2:     no such flag -> LOCKSTEP_LOCK_SAFE is 0
 *
 * The harness's model reads the flags from the BTF_ID_FLAGS(func, NAME, FLAGS)
 * lines below (one per kfunc) when no built .ko is at hand, and from the
 * .ko's .BTF_ids section otherwise.  Keep one kfunc per line.
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/refcount.h>

#if defined(KF_SPINLOCK_SAFE)
#define LOCKSTEP_LOCK_SAFE KF_SPINLOCK_SAFE
#define LOCKSTEP_LOCK_SAFE_NAME "KF_SPINLOCK_SAFE"
#elif defined(KF_SPIN_LOCK)
#define LOCKSTEP_LOCK_SAFE KF_SPIN_LOCK
#define LOCKSTEP_LOCK_SAFE_NAME "KF_SPIN_LOCK"
#else
#define LOCKSTEP_LOCK_SAFE 0
#define LOCKSTEP_LOCK_SAFE_NAME "none"
#endif

/* Older headers (before 6.7/6.8) lack these helpers; 6.12 and later have them. */
#ifndef __bpf_kfunc_start_defs
#define __bpf_kfunc_start_defs()
#define __bpf_kfunc_end_defs()
#endif
#ifndef BTF_KFUNCS_START
#define BTF_KFUNCS_START(name) BTF_SET8_START(name)
#define BTF_KFUNCS_END(name) BTF_SET8_END(name)
#endif

/* The object lockstep_safe_ret_null / lockstep_safe_acquire hand out. */
struct lockstep_obj {
	refcount_t ref;
	u32 val;
};

static struct lockstep_obj lockstep_obj = {
	.ref = REFCOUNT_INIT(1),
	.val = 42,
};

__bpf_kfunc_start_defs();

/*
 * Rule: a kfunc flagged lock-safe may be called while holding a bpf_spin_lock
 * (accepted on 7.3 and 7.2+RFC; rejected on 6.12 and 7.2, where no such flag exists).
 */
__bpf_kfunc u32 lockstep_safe(u32 x)
{
	return x + 1;
}

/*
 * Rule: a kfunc without the flag is rejected under a lock on every kernel
 * ("function calls are not allowed while holding a lock"); outside a lock it is fine.
 */
__bpf_kfunc u32 lockstep_unsafe(u32 x)
{
	return x ^ 0x5a5a5a5a;
}

/*
 * Rule: the lock-safe bit is tested by mask, so another flag in the same word
 * (KF_RET_NULL) does not hide it; and R0 is a maybe-NULL PTR_TO_BTF_ID afterwards
 * (it must be NULL-checked before a dereference).  Returns NULL for x == 0.
 * A struct pointer is returned because a scalar return cannot be KF_RET_NULL.
 */
__bpf_kfunc struct lockstep_obj *lockstep_safe_ret_null(u32 x)
{
	return x ? &lockstep_obj : NULL;
}

/*
 * Rule: reference tracking under a lock.  A lock-safe KF_ACQUIRE|KF_RET_NULL
 * getter: the verifier records a reference that must be released (by
 * lockstep_safe_release) before the program exits.  Returns NULL for x == 0.
 */
__bpf_kfunc struct lockstep_obj *lockstep_safe_acquire(u32 x)
{
	if (!x)
		return NULL;
	refcount_inc(&lockstep_obj.ref);
	return &lockstep_obj;
}

/* Rule: a lock-safe KF_RELEASE kfunc drops the reference lockstep_safe_acquire took. */
__bpf_kfunc void lockstep_safe_release(struct lockstep_obj *obj)
{
	refcount_dec(&obj->ref);
}

/*
 * Rule: a kfunc must be registered for the program type.  Lock-safe, but only
 * registered for BPF_PROG_TYPE_XDP: a sched_cls program calling it is rejected
 * for that reason whatever the lock state ("calling kernel function ... is not allowed").
 */
__bpf_kfunc u32 lockstep_xdp_only_safe(u32 x)
{
	return x + 2;
}

__bpf_kfunc_end_defs();

/* Registered for BPF_PROG_TYPE_SCHED_CLS and BPF_PROG_TYPE_SYSCALL. */
BTF_KFUNCS_START(lockstep_kfunc_ids)
BTF_ID_FLAGS(func, lockstep_safe, LOCKSTEP_LOCK_SAFE)
BTF_ID_FLAGS(func, lockstep_unsafe, 0)
BTF_ID_FLAGS(func, lockstep_safe_ret_null, LOCKSTEP_LOCK_SAFE | KF_RET_NULL)
BTF_ID_FLAGS(func, lockstep_safe_acquire, LOCKSTEP_LOCK_SAFE | KF_ACQUIRE | KF_RET_NULL)
BTF_ID_FLAGS(func, lockstep_safe_release, LOCKSTEP_LOCK_SAFE | KF_RELEASE)
BTF_KFUNCS_END(lockstep_kfunc_ids)

/* Registered for BPF_PROG_TYPE_XDP only. */
BTF_KFUNCS_START(lockstep_xdp_kfunc_ids)
BTF_ID_FLAGS(func, lockstep_xdp_only_safe, LOCKSTEP_LOCK_SAFE)
BTF_KFUNCS_END(lockstep_xdp_kfunc_ids)

static const struct btf_kfunc_id_set lockstep_kfunc_set = {
	.owner = THIS_MODULE,
	.set = &lockstep_kfunc_ids,
};

static const struct btf_kfunc_id_set lockstep_xdp_kfunc_set = {
	.owner = THIS_MODULE,
	.set = &lockstep_xdp_kfunc_ids,
};

static int __init lockstep_test_init(void)
{
	int ret;

	ret = register_btf_kfunc_id_set(BPF_PROG_TYPE_SCHED_CLS, &lockstep_kfunc_set);
	if (!ret)
		ret = register_btf_kfunc_id_set(BPF_PROG_TYPE_SYSCALL, &lockstep_kfunc_set);
	if (!ret)
		ret = register_btf_kfunc_id_set(BPF_PROG_TYPE_XDP, &lockstep_xdp_kfunc_set);
	if (ret)
		pr_err("lockstep_test: registering kfuncs failed: %d\n", ret);
	else
		pr_info("lockstep_test: kfuncs registered, lock-safe flag %s (%#x)\n",
			LOCKSTEP_LOCK_SAFE_NAME, (unsigned int)LOCKSTEP_LOCK_SAFE);
	return ret;
}

static void __exit lockstep_test_exit(void)
{
	/* kfunc sets are unregistered with the module's BTF. */
}

module_init(lockstep_test_init);
module_exit(lockstep_test_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lockstep: test kfuncs for the BPF verifier's bpf_spin_lock rules");
MODULE_INFO(lockstep_lock_flag, LOCKSTEP_LOCK_SAFE_NAME);
