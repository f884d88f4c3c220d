/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * An arena (BPF_MAP_TYPE_ARENA) declared as the kernel's selftests declare theirs
 * (verifier_arena.c): map_extra in the __ulong form, an enum (enum64) in BTF that aya-obj 0.3
 * cannot read (lockstep hides it from aya-obj: harness/lockstep-core/src/import/btf_sanitize.rs).
 * clang 14 cannot emit addr_space_cast (LLVM 18 can), so the pages are not used here;
 * tests/corpus/arena.toml has the casts, loads and stores.
 */
#include "lockstep.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4);
	__ulong(map_extra, 1ull << 44);
} arena SEC(".maps");

extern void *bpf_arena_alloc_pages(void *map, void *addr__ign, __u32 page_cnt, int node_id,
				   __u64 flags) __ksym;

/*
 * kernel/bpf/arena.c: 7.2 and 7.3 have a non-sleepable bpf_arena_alloc_pages; 6.12 flags it
 * KF_SLEEPABLE, refused in a non-sleepable program by check_kfunc_call(). Its void * result is
 * a scalar (check_kfunc_call()). The same on debian:6.12 / 7.2 / 7.3 as tests/corpus/arena.toml's
 * arena_alloc_pages (lockstep run).
 */
SEC("tc")
__description("bpf_arena_alloc_pages in a non-sleepable program")
__success
__expect_on("6.12", reject)
__msg_on("6.12", "program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages")
int alloc_pages(struct __sk_buff *skb)
{
	return bpf_arena_alloc_pages(&arena, 0, 1, -1, 0) ? 1 : 0;
}

/* Without a license section libbpf passes "" and every kernel refuses the kfunc call
 * ("cannot call kernel function from non-GPL compatible program", model/license.rs). */
char _license[] SEC("license") = "GPL";
