/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Constant strings: bpf_strncmp()'s third argument (ARG_PTR_TO_CONST_STR), judged by
 * check_arg_const_str() (7.2, 7.3) / check_reg_const_str() (6.12), kernel/bpf/verifier.c: a map
 * value of a frozen BPF_F_RDONLY_PROG map (libbpf creates the .rodata* maps so and freezes them
 * after writing the section's bytes), at a constant offset, with a NUL before the value's end.
 * The first argument is read memory of the second's size (check_mem_size_reg()): a map value.
 */
#include "lockstep.h"

static long (*bpf_strncmp)(const char *s1, __u32 s1_sz, const char *s2) = (void *)182;

struct buf {
	char s[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct buf);
} bufs SEC(".maps");

/* A string of .rodata (as bpf_printk()'s `static const char ___fmt[]`). */
static const char foo[] = "foo";
/* A non-constant global: .data, a map without BPF_F_RDONLY_PROG. */
char data_str[4] __hidden = "bar";
/* The only bytes of their own .rodata map, without a NUL. */
const volatile char no_nul[4] SEC(".rodata.nonul") = { 'a', 'b', 'c', 'd' };

SEC("tc")
__description("bpf_strncmp: a map value and a .rodata string")
__success
int strncmp_rodata(struct __sk_buff *skb)
{
	int key = 0;
	struct buf *b = bpf_map_lookup_elem(&bufs, &key);

	if (!b)
		return 0;
	return bpf_strncmp(b->s, sizeof(b->s), foo) == 0;
}

SEC("tc")
__description("bpf_strncmp: a string literal (.rodata.str1.1)")
__success
int strncmp_literal(struct __sk_buff *skb)
{
	int key = 0;
	struct buf *b = bpf_map_lookup_elem(&bufs, &key);

	if (!b)
		return 0;
	return bpf_strncmp(b->s, 8, "literal") == 0;
}

/* check_arg_const_str(): bpf_map_is_rdonly() fails for .data. */
SEC("tc")
__description("bpf_strncmp: a string in .data")
__failure __msg("R3 does not point to a readonly map'")
int strncmp_data(struct __sk_buff *skb)
{
	int key = 0;
	struct buf *b = bpf_map_lookup_elem(&bufs, &key);

	if (!b)
		return 0;
	return bpf_strncmp(b->s, 8, data_str) == 0;
}

/* check_arg_const_str(): strnchr() finds no NUL from the offset to the value's end. */
SEC("tc")
__description("bpf_strncmp: a .rodata string without NUL")
__failure __msg("string is not zero-terminated")
int strncmp_no_nul(struct __sk_buff *skb)
{
	int key = 0;
	struct buf *b = bpf_map_lookup_elem(&bufs, &key);

	if (!b)
		return 0;
	return bpf_strncmp(b->s, 8, (const char *)no_nul) == 0;
}

char _license[] SEC("license") = "GPL";
