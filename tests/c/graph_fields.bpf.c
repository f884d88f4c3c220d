/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * A map value with a bpf_list_head and a bpf_rb_root (__contains) beside its bpf_spin_lock, and
 * a local object type holding the nodes and a bpf_refcount. The rules are the same in the 6.12,
 * 7.2 and 7.3 sources (kernel/bpf/verifier.c, kernel/bpf/btf.c). No kptr here: clang 14 (Debian
 * bookworm's `clang`) drops the btf_type_tag of `struct x __kptr *` (the PTR points straight at
 * the struct), so the field is a kptr or plain memory depending on the compiler; the kptr rules
 * are checked by tests/corpus/graph-fields.toml, whose BTF lockstep writes itself.
 */
#include "lockstep.h"

struct ls_obj {
	int data;
	struct bpf_refcount ref;
	struct bpf_list_node lnode;
	struct bpf_rb_node rnode;
};

struct gval {
	struct bpf_spin_lock lock;
	int cnt;
	struct bpf_list_head head __contains(ls_obj, lnode);
	struct bpf_rb_root root __contains(ls_obj, rnode);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct gval);
} gvals SEC(".maps");

/* Puts the body of struct ls_obj into the BTF (a kptr's or __contains' type alone gives a FWD,
 * and the kernel then refuses gvals: btf_find_graph_root() looks for a STRUCT). Graph nodes are
 * not parsed in a map value, and a bpf_refcount may be in an array map (map_check_btf()). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct ls_obj);
} objs SEC(".maps");

/* A program that takes the lock and leaves the graph root and the kptr alone. */
SEC("tc")
__description("lock and unlock beside a list head, an rb root and a kptr")
__success
int graph_map_lock_ok(struct __sk_buff *skb)
{
	int key = 0;
	struct gval *v = bpf_map_lookup_elem(&gvals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	v->cnt++;
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* check_map_prog_compatibility(): the graph-root check comes before the bpf_spin_lock one. */
SEC("kprobe")
__description("tracing programs cannot use a map with bpf_list_head / bpf_rb_root")
__failure __msg("tracing progs cannot use bpf_{list_head,rb_root} yet")
int graph_map_kprobe(void *ctx)
{
	int key = 0;
	struct gval *v = bpf_map_lookup_elem(&gvals, &key);

	if (!v)
		return 0;
	return v->cnt;
}

/* check_map_access(): a load touching a bpf_list_head. */
SEC("tc")
__description("direct read of a bpf_list_head")
__failure __msg("bpf_list_head cannot be accessed directly by load/store")
int graph_head_direct_read(struct __sk_buff *skb)
{
	int key = 0;
	struct gval *v = bpf_map_lookup_elem(&gvals, &key);

	if (!v)
		return 0;
	return *(volatile int *)&v->head;
}

/* check_map_access(): a store touching a bpf_rb_root. */
SEC("tc")
__description("direct write of a bpf_rb_root")
__failure __msg("bpf_rb_root cannot be accessed directly by load/store")
int graph_root_direct_write(struct __sk_buff *skb)
{
	int key = 0;
	struct gval *v = bpf_map_lookup_elem(&gvals, &key);

	if (!v)
		return 0;
	*(volatile __u64 *)&v->root = 0;
	return 0;
}

char _license[] SEC("license") = "GPL";
