/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* bpf-to-bpf calls under a lock: static subprograms are allowed, global ones are not. */
#include "lockstep.h"

struct val {
	int cnt;
	struct bpf_spin_lock lock;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct val);
} vals SEC(".maps");

static __noinline int bump(int x)
{
	return x + 1;
}

__noinline int global_bump(int x)
{
	return x + 2;
}

/* do_check_insn(): BPF_PSEUDO_CALL is not gated by the lock in any profile. */
SEC("tc")
__description("static subprogram under the lock")
__success
int static_call_under_lock(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt = bump(v->cnt);
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* check_func_call(): a global subprogram with a lock held. */
SEC("tc")
__description("global subprogram under the lock")
__failure __msg("global function calls are not allowed while holding a lock")
int global_call_under_lock(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt = global_bump(v->cnt);
	bpf_spin_unlock(&v->lock);
	return 0;
}

char _license[] SEC("license") = "GPL";
