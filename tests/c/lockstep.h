/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Minimal declarations for lockstep's C examples: no vmlinux.h, no libbpf headers.
 * Types and helper ids from include/uapi/linux/bpf.h; map-definition macros as libbpf's
 * bpf_helpers.h; test annotations as tools/testing/selftests/bpf/progs/bpf_misc.h (BTF decl
 * tags that `lockstep check FILE.bpf.o` reads back as expectations).
 */
#ifndef LOCKSTEP_H
#define LOCKSTEP_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

struct bpf_spin_lock {
	__u32 val;
};

/* Graph roots and nodes, bpf_refcount (include/uapi/linux/bpf.h); kptr and __contains tags as
 * tools/testing/selftests/bpf/bpf_experimental.h and bpf_helpers.h write them. */
struct bpf_list_head {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

struct bpf_list_node {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

struct bpf_rb_root {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

struct bpf_rb_node {
	__u64 __opaque[4];
} __attribute__((aligned(8)));

struct bpf_refcount {
	__u32 __opaque[1];
} __attribute__((aligned(4)));

#define __kptr __attribute__((btf_type_tag("kptr")))
#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))
#define __contains(name, node) __attribute__((btf_decl_tag("contains:" #name ":" #node)))

struct __sk_buff;

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_ARENA = 33,
};

#define BPF_F_MMAPABLE (1U << 10)

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
/* libbpf's __ulong: a 64-bit map field as an enum (enum64 in BTF) whose one value is val */
#define ___concat(a, b) a##b
#define __concat(a, b) ___concat(a, b)
#define __ulong(name, val) enum { __concat(__unique_value, __COUNTER__) = val } name
#define __ksym __attribute__((section(".ksyms")))
#define __noinline __attribute__((noinline))
/* libbpf's bpf_helpers.h: a hidden global is static to libbpf (its BTF VAR is made static) */
#define __hidden __attribute__((visibility("hidden")))

/* Helpers: the call is to the helper id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u32 (*bpf_get_prandom_u32)(void) = (void *)7;
static long (*bpf_spin_lock)(struct bpf_spin_lock *lock) = (void *)93;
static long (*bpf_spin_unlock)(struct bpf_spin_lock *lock) = (void *)94;

/* Test annotations (bpf_misc.h): expectations for every profile. */
#define XSTR(s) STR(s)
#define STR(s) #s
#define __test_tag(tag) __attribute__((btf_decl_tag("comment:" XSTR(__COUNTER__) ":" tag)))
#define __description(desc) __test_tag("test_description=" desc)
#define __success __test_tag("test_expect_success")
#define __failure __test_tag("test_expect_failure")
#define __msg(msg) __test_tag("test_expect_msg=" msg)

/*
 * lockstep's own: the expectation on one profile (accept or reject) and its messages, overriding
 * __success/__failure there. Each comes from the kernel source (docs/verifier-lock-rules.md).
 */
#define __expect_on(profile, verdict) __test_tag("lockstep_expect=" profile ":" #verdict)
#define __msg_on(profile, msg) __test_tag("lockstep_msg=" profile ":" msg)

#endif
