/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Test-module kfuncs (kernel-module/lockstep_test.c) under a lock. lockstep_safe carries the
 * lock-safe flag (KF_SPIN_LOCK in the RFC, KF_SPINLOCK_SAFE in 7.3); lockstep_unsafe does not.
 * 6.12 and 7.2 allow only their hard-coded vmlinux kfuncs (insn->off == 0) under a lock.
 */
#include "lockstep.h"

extern __u32 lockstep_safe(__u32 x) __ksym;
extern __u32 lockstep_unsafe(__u32 x) __ksym;

struct val {
	int cnt;
	struct bpf_spin_lock lock;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, struct val);
} vals SEC(".maps");

SEC("tc")
__description("lock-safe module kfunc under the lock")
__failure __msg("function calls are not allowed while holding a lock")
__expect_on("7.2+kf-spin-lock", accept)
__expect_on("7.3", accept)
int safe_kfunc_under_lock(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt = lockstep_safe(v->cnt);
	bpf_spin_unlock(&v->lock);
	return 0;
}

SEC("tc")
__description("module kfunc without the flag under the lock")
__failure __msg("function calls are not allowed while holding a lock")
int unsafe_kfunc_under_lock(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt = lockstep_unsafe(v->cnt);
	bpf_spin_unlock(&v->lock);
	return 0;
}

SEC("tc")
__description("module kfunc outside the lock")
__success
int kfunc_outside_lock(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);
	__u32 x;

	if (!v)
		return 0;
	x = lockstep_unsafe(7);
	bpf_spin_lock(&v->lock);
	v->cnt = x;
	bpf_spin_unlock(&v->lock);
	return 0;
}

char _license[] SEC("license") = "GPL";
