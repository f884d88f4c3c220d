/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* A bpf_spin_lock in global data (a .data map with BTF). */
#include "lockstep.h"

struct bpf_spin_lock glock SEC(".data.lock");
int counter SEC(".data.lock") = 1;

SEC("tc")
__description("global lock, update, unlock")
__success
int global_lock_ok(struct __sk_buff *skb)
{
	bpf_spin_lock(&glock);
	counter++;
	bpf_spin_unlock(&glock);
	return 0;
}

/* check_map_access() -> btf_record: the lock's bytes cannot be read or written directly. */
SEC("tc")
__description("direct read of the lock word")
__failure __msg("bpf_spin_lock cannot be accessed directly by load/store")
int global_lock_direct_read(struct __sk_buff *skb)
{
	return *(volatile __u32 *)&glock.val;
}

char _license[] SEC("license") = "GPL";
