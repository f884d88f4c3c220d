/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* A bpf_spin_lock in global data (a .data map with BTF). */
#include "lockstep.h"

/*
 * __hidden, as the selftests' globals next to a lock are (linked_list.h's `private()`): libbpf
 * makes a global data map BPF_F_MMAPABLE when any variable in it is global and not hidden
 * (libbpf.c map_is_mmapable()) and then mmap()s it, which the kernel refuses for a map whose
 * value holds a bpf_spin_lock (syscall.c bpf_map_mmap(): -ENOTSUPP when map->record is set).
 * Without __hidden, libbpf (and so lockstep's guest loader) fails to create `.data.lock`
 * before any program is verified: the kernel's real answer, see docs/objects.md.
 */
struct bpf_spin_lock glock SEC(".data.lock") __hidden;
int counter SEC(".data.lock") __hidden = 1;

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
