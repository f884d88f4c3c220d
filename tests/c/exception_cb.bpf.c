/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Exception callbacks (`__exception_cb(f)`, the decl tag `exception_callback:f`): libbpf appends
 * `f` to the program after its callees (bpf_object__relocate()), the verifier walks it after the
 * main program as a global function, R1 a scalar, its exit checked as the main program's
 * (check_return_code()), then check_max_stack_depth() refuses a bpf_throw in it and a call to
 * it (model/exception_cb.rs). Verdicts from debian:6.12, 7.2 and 7.3.
 */
#include "lockstep.h"

#define __exception_cb(f) __attribute__((btf_decl_tag("exception_callback:" #f)))

extern void bpf_throw(__u64 cookie) __ksym;

__noinline int excb_ret0(__u64 c)
{
	return 0;
}

__noinline int excb_ret_cookie(__u64 c)
{
	return c;
}

__noinline int excb_throwing(__u64 c)
{
	bpf_throw(0);
	return c;
}

__noinline int excb_calls_cb(int x)
{
	return excb_ret_cookie(x);
}

__noinline int excb_other_global(int x)
{
	return x + 1;
}

/* The callback returns 0; the program throws (exceptions_fail reject_exception_cb_type_4). */
SEC("tc")
__description("exception callback appended and walked")
__exception_cb(excb_ret0)
__success
int excb_throw_ok(struct __sk_buff *ctx)
{
	bpf_throw(0);
	return 0;
}

/* check_max_stack_depth_subprog(): the callback is is_cb. */
SEC("tc")
__description("bpf_throw in the exception callback")
__exception_cb(excb_throwing)
__failure __msg("cannot be called from callback subprog")
int excb_cb_throws(struct __sk_buff *ctx)
{
	return 0;
}

/* check_max_stack_depth_subprog(): a bpf-to-bpf call to the exception callback. */
SEC("tc")
__description("exception callback called from a global function")
__exception_cb(excb_ret_cookie)
__failure __msg("cannot call exception cb directly")
int excb_called_directly(struct __sk_buff *ctx)
{
	return excb_calls_cb(bpf_get_prandom_u32());
}

/* check_return_code() at the callback's exit: fentry's range [0, 0]. */
SEC("fentry/bpf_check")
__description("exception callback returns its cookie in fentry")
__exception_cb(excb_ret_cookie)
__failure __msg("At program exit the register R0 has unknown scalar value should have been in [0, 0]")
int excb_fentry_bad_ret(void *ctx)
{
	return 0;
}

SEC("fentry/bpf_check")
__description("exception callback returns 0 in fentry")
__exception_cb(excb_ret0)
__success
int excb_fentry_ok(void *ctx)
{
	return 0;
}

/* do_check_subprogs(): the callback beside another global function, in subprogram order. */
SEC("tc")
__description("exception callback beside a global function")
__exception_cb(excb_ret0)
__success
int excb_beside_global(struct __sk_buff *ctx)
{
	int x = bpf_get_prandom_u32();

	if (x > 10)
		bpf_throw(0);
	return excb_other_global(x);
}
char _license[] SEC("license") = "GPL";
