/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* A bpf_spin_lock in a map value. */
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

SEC("tc")
__description("lock, update, unlock")
__success
int map_lock_ok(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt++;
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* process_bpf_exit_full() (7.x) / do_check() (6.12): exit with the lock held. */
SEC("tc")
__description("return with the lock held")
__failure __msg("BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region")
__msg_on("6.12", "bpf_spin_unlock is missing")
int map_lock_no_unlock(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt++;
	return 0;
}

/* do_check_insn() (7.x) / do_check() (6.12): a helper other than bpf_spin_unlock under the lock. */
SEC("tc")
__description("helper call under the lock")
__failure __msg("function calls are not allowed while holding a lock")
int map_lock_helper_call(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt = bpf_get_prandom_u32();
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* check_map_prog_compatibility(): before the main pass, no instruction index. */
SEC("kprobe")
__description("tracing programs cannot use bpf_spin_lock")
__failure __msg("tracing progs cannot use bpf_spin_lock yet")
int map_lock_kprobe(void *ctx)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt++;
	bpf_spin_unlock(&v->lock);
	return 0;
}

char _license[] SEC("license") = "GPL";
