#!/usr/bin/env python3
"""Writes the generated part of the bundled corpus (tests/corpus/gen-*.toml).

Each case's expectation cites the verifier.c function it comes from (see docs/verifier-lock-rules.md).
Regenerate with `python3 scripts/gen-corpus.py`; hand-written cases live in the other files.
"""
import json
import pathlib
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "corpus")

LOCK_MAP = '''
[[case.map]]
name = "{name}"
type = "{type}"
btf = {btf}
fields = [{{ name = "cnt", kind = "int" }}, {{ name = "lock", kind = "spin_lock" }}]
'''
PLAIN_MAP = '''
[[case.map]]
name = "{name}"
type = "array"
fields = [{{ name = "a", kind = "int" }}, {{ name = "b", kind = "int" }}]
'''
PROG_ARRAY = '''
[[case.map]]
name = "jmp"
type = "prog_array"
'''

def lookup(map="vals", key=0, dst="r6"):
    return f"""    r1 = {key}
    *(u32 *)(r10 - 4) = r1
    r2 = r10
    r2 += -4
    r1 = {map} ll
    call bpf_map_lookup_elem
    if r0 == 0 goto out
    {dst} = r0
"""

def lock(reg="r6", off=4, fn="bpf_spin_lock"):
    return f"""    r1 = {reg}
    r1 += {off}
    call {fn}
"""

def unlock(reg="r6", off=4):
    return lock(reg, off, "bpf_spin_unlock")

OUTRO = """out:
    r0 = 0
    exit
"""

MSG = {
    "call": "function calls are not allowed while holding a lock",
    "exit612": "bpf_spin_unlock is missing",
    "exit7": "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region",
    "global": "global function calls are not allowed while holding a lock,",
    "without": "bpf_spin_unlock without taking a lock",
    "different": "bpf_spin_unlock of different lock",
    "ldabs": "BPF_LD_[ABS|IND] cannot be used inside bpf_spin_lock-ed region",
    "direct": "bpf_spin_lock cannot be accessed directly by load/store",
    "sockfilter": "socket filter progs cannot use bpf_spin_lock yet",
    "tracing": "tracing progs cannot use bpf_spin_lock yet",
}
ALL = ["6.12", "7.2", "7.2+kf-spin-lock", "7.3"]

# Instruction indices of kernel rejections, measured by `lockstep run` (scripts/measure-insns.py).
_measured_file = pathlib.Path(__file__).resolve().parent.parent / "tests/corpus/kernel-insns.json"
MEASURED = json.loads(_measured_file.read_text()) if _measured_file.exists() else {"measured_on": {}, "insns": {}}
MEASURED_PROFILES = sorted(v["profile"] for v in MEASURED["measured_on"].values())


def measured_insn(case, prof):
    """The kernel's index for `prof` ("*": the one index every measured kernel reports)."""
    per = MEASURED["insns"].get(case, {})
    if prof != "*":
        return per.get(prof)
    seen = {per.get(p) for p in MEASURED_PROFILES}
    return seen.pop() if len(seen) == 1 else None


class Case:
    def __init__(self, name, text, prog_type="sched_cls", maps=None, expect=None, desc=None, extra="", tags=()):
        self.name, self.text, self.prog_type = name, text, prog_type
        self.maps = maps if maps is not None else [LOCK_MAP.format(name="vals", type="array", btf="true")]
        self.expect, self.desc, self.extra, self.tags = expect or {}, desc, extra, tags

    def toml(self):
        out = ["[[case]]", f'name = "{self.name}"', f'prog_type = "{self.prog_type}"']
        if self.prog_type == "syscall" and self.name != "progtype_syscall_not_sleepable":
            out.append("sleepable = true  # check_attach_btf_id(): syscall programs can only be sleepable")
        if self.desc:
            out.append(f'description = "{self.desc}"')
        if self.tags:
            out.append("tags = [" + ", ".join(f'"{t}"' for t in self.tags) + "]")
        if self.extra:
            out.append(self.extra.strip())
        out.append("text = '''\n" + self.text.rstrip() + "\n'''")
        s = "\n".join(out) + "\n" + "".join(self.maps)
        for prof, e in self.expect.items():
            s += f'\n[case.expect."{prof}"]\n'
            verdict, insn, msg, src = e
            if verdict == "reject" and insn is None:
                insn = measured_insn(self.name, prof)
            s += f'verdict = "{verdict}"\n'
            if insn is not None:
                s += f"insn = {insn}  # measured on a real kernel (tests/corpus/kernel-insns.json)\n"
            if msg is not None:
                s += f'message = "{msg}"\n'
            s += f'source = "{src}"\n'
        return s


def acc(src):
    return {"*": ("accept", None, None, src)}

def rej(msg, insn, src, profiles=("*",)):
    # The `insn` argument is the author's guess and is not used: instruction indices come from
    # real kernels (MEASURED, below), so an expectation's index is the kernel's own.
    return {p: ("reject", None, MSG.get(msg, msg), src) for p in profiles}

def exit_rej(insn):
    e = rej("exit612", insn, "verifier.c:do_check() BPF_EXIT", ["6.12"])
    e.update(rej("exit7", insn, "verifier.c:process_bpf_exit_full() -> check_resource_leak()", ALL[1:]))
    return e


files = {}

# --- lock pairing -------------------------------------------------------------------------------
C = files.setdefault("gen-pairing", [])
for mt in ["array", "hash"]:
    maps = [LOCK_MAP.format(name="vals", type=mt, btf="true")]
    C.append(Case(f"pair_lock_unlock_{mt}", lookup() + lock() + unlock() + OUTRO, maps=maps,
                  expect=acc("verifier.c:process_spin_lock()"), tags=["pairing"]))
    C.append(Case(f"pair_lock_no_unlock_{mt}", lookup() + lock() + OUTRO, maps=maps, expect=exit_rej(15), tags=["pairing", "exit"]))
    C.append(Case(f"pair_unlock_only_{mt}", lookup() + unlock() + OUTRO, maps=maps,
                  expect=rej("without", 10, "verifier.c:process_spin_lock()"), tags=["pairing"]))
    C.append(Case(f"pair_double_lock_{mt}", lookup() + lock() + lock() + unlock() + OUTRO, maps=maps,
                  expect=rej("call", 14, "verifier.c:do_check_insn() helper under lock"),
                  desc="a second bpf_spin_lock is a helper call under the lock", tags=["pairing"]))
    C.append(Case(f"pair_double_unlock_{mt}", lookup() + lock() + unlock() + unlock() + OUTRO, maps=maps,
                  expect=rej("without", 16, "verifier.c:process_spin_lock()"), tags=["pairing"]))
    # two lookups: different reg->id -> different lock
    C.append(Case(f"pair_unlock_other_element_{mt}", lookup() + lookup(key=0, dst="r7") + lock("r6") + unlock("r7") + OUTRO, maps=maps,
                  expect=rej("different", 22, "verifier.c:process_spin_lock() reg->id differs"), tags=["pairing"]))
    C.append(Case(f"pair_lock_via_copy_{mt}", lookup() + "    r7 = r6\n" + lock("r6") + unlock("r7") + OUTRO, maps=maps,
                  expect=acc("verifier.c:process_spin_lock() copies keep reg->id"), tags=["pairing"]))
# two maps
two = [LOCK_MAP.format(name="vals", type="array", btf="true"), LOCK_MAP.format(name="other", type="hash", btf="true")]
C.append(Case("pair_unlock_other_map", lookup() + lookup("other", dst="r7") + lock("r6") + unlock("r7") + OUTRO, maps=two,
              expect=rej("different", 22, "verifier.c:process_spin_lock() map differs"), tags=["pairing"]))
C.append(Case("pair_lock_in_branch_only",
              lookup() + "    call bpf_get_prandom_u32\n    if r0 == 0 goto skip\n" + lock() + "skip:\n" + unlock() + OUTRO,
              expect=rej("without", 16, "verifier.c:process_spin_lock() on the fall-through... path without the lock"),
              desc="the branch that skips the lock reaches the unlock without a lock", tags=["pairing", "branches"]))
C.append(Case("pair_unlock_in_one_branch_exit",
              lookup() + lock() + "    r7 = r6\n    r0 = *(u32 *)(r6 + 0)\n    if r0 == 0 goto skip\n" + unlock("r7") + "skip:\n" + OUTRO,
              expect=exit_rej(23), desc="the path that jumps over the unlock exits with the lock held", tags=["pairing", "branches", "exit"]))
C.append(Case("pair_lock_unlock_both_branches",
              lookup() + lock() + "    r0 = *(u32 *)(r6 + 0)\n    if r0 == 0 goto a\n" + unlock() + "    goto out\na:\n" + unlock() + OUTRO,
              expect=acc("verifier.c:process_spin_lock() on both paths"), tags=["pairing", "branches"]))
C.append(Case("pair_spill_lock_pointer",
              lookup() + "    *(u64 *)(r10 - 16) = r6\n" + lock() + "    r7 = *(u64 *)(r10 - 16)\n" + unlock("r7") + OUTRO,
              expect=acc("verifier.c:check_stack_write_fixed_off() spills keep the pointer and its id"), tags=["pairing", "spill"]))
C.append(Case("pair_lock_counter_update",
              lookup() + lock() + "    r1 = *(u32 *)(r6 + 0)\n    r1 += 1\n    *(u32 *)(r6 + 0) = r1\n" + unlock() + OUTRO,
              expect=acc("verifier.c:check_map_access() field cnt does not overlap the lock"), tags=["pairing", "access"]))

# --- lock argument ------------------------------------------------------------------------------
C = files.setdefault("gen-argument", [])
for off in [0, 8, 2]:
    C.append(Case(f"arg_wrong_offset_{off}", lookup() + lock(off=off) + OUTRO,
                  expect=rej(f"off {off} doesn't point to 'struct bpf_spin_lock' that is at 4", 10, "verifier.c:process_spin_lock()"), tags=["argument"]))
C.append(Case("arg_variable_offset",
              lookup() + "    r1 = *(u32 *)(r6 + 0)\n    r1 &= 4\n    r2 = r6\n    r2 += r1\n    r1 = r2\n    call bpf_spin_lock\n" + OUTRO,
              expect=rej("R1 doesn't have constant offset. bpf_spin_lock has to be at the constant offset", 13, "verifier.c:process_spin_lock()"), tags=["argument"]))
C.append(Case("arg_unbounded_offset",
              lookup() + "    call bpf_get_prandom_u32\n    r1 = r6\n    r0 <<= 32\n    r0 s>>= 32\n    r1 += r0\n    call bpf_spin_lock\n" + OUTRO,
              expect=rej("value -2147483648 makes map_value pointer be out of bounds", 13,
                         "verifier.c:check_reg_sane_offset_scalar(): s>>32 of an unknown value is [S32_MIN, S32_MAX]; measured on debian 7.2 and 7.3"), tags=["argument"]))
C.append(Case("arg_unbounded_min_offset",
              lookup() + "    call bpf_get_prandom_u32\n    r1 = r6\n    r0 <<= 32\n    r1 += r0\n    call bpf_spin_lock\n" + OUTRO,
              expect=rej("math between map_value pointer and register with unbounded min value is not allowed", 12,
                         "verifier.c:check_reg_sane_offset_scalar(): a u32 shifted left by 32 has s32_min < 0, so smin is S64_MIN"), tags=["argument"]))
C.append(Case("arg_map_without_btf", lookup() + lock() + unlock() + OUTRO, maps=[LOCK_MAP.format(name="nobtf", type="array", btf="false").replace('"nobtf"', '"vals"')],
              expect=rej("map 'vals' has to have BTF in order to use bpf_spin_lock", 10, "verifier.c:process_spin_lock()"), tags=["argument", "btf"]))
C.append(Case("arg_map_without_lock", lookup() + lock(off=0) + OUTRO, maps=[PLAIN_MAP.format(name="vals")],
              expect=rej("map 'vals' has no valid bpf_spin_lock", 10, "verifier.c:process_spin_lock()"), tags=["argument"]))
C.append(Case("arg_long_map_name_truncated", lookup("a_very_long_map_name") + lock(off=0) + OUTRO, maps=[PLAIN_MAP.format(name="a_very_long_map_name")],
              expect=rej("map 'a_very_long_map' has no valid bpf_spin_lock", 10, "verifier.c:process_spin_lock(); map names are BPF_OBJ_NAME_LEN-1 long"), tags=["argument"]))
C.append(Case("arg_scalar", "    r1 = 0\n    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=rej("R1 type=scalar expected=map_value, ptr_", 1, "verifier.c:check_reg_type() spin_lock_types"), tags=["argument"]))
C.append(Case("arg_stack", "    r1 = r10\n    r1 += -8\n    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=rej("R1 type=fp expected=map_value, ptr_", 2, "verifier.c:check_reg_type() spin_lock_types"), tags=["argument"]))
C.append(Case("arg_ctx", "    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=rej("R1 type=ctx expected=map_value, ptr_", 0, "verifier.c:check_reg_type() spin_lock_types"), tags=["argument"]))
C.append(Case("arg_map_pointer", "    r1 = vals ll\n    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=rej("R1 type=map_ptr expected=map_value, ptr_", 2, "verifier.c:check_reg_type() spin_lock_types"), tags=["argument"]))
hashmap = [LOCK_MAP.format(name="vals", type="hash", btf="true")]
C.append(Case("arg_maybe_null_hash",
              lookup().replace("    if r0 == 0 goto out\n", "") + lock() + unlock() + OUTRO, maps=hashmap,
              expect=rej("R1 pointer arithmetic on map_value_or_null prohibited, null-check it first", 9, "verifier.c:adjust_ptr_min_max_vals(); hash lookups may return NULL"), tags=["argument", "null"]))
C.append(Case("arg_maybe_null_array_const_key",
              lookup().replace("    if r0 == 0 goto out\n", "") + lock() + unlock() + OUTRO,
              expect={"6.12": ("reject", 9, "R1 pointer arithmetic on map_value_or_null prohibited, null-check it first", "verifier.c:adjust_ptr_min_max_vals()"),
                      **{p: ("accept", None, None, "verifier.c:can_elide_value_nullness() array with a constant key") for p in ALL[1:]}},
              desc="7.x elides the NULL case of an array lookup with a constant in-range key", tags=["argument", "null"]))
C.append(Case("arg_maybe_null_array_out_of_range_key",
              lookup(key=5).replace("    if r0 == 0 goto out\n", "") + lock() + unlock() + OUTRO,
              expect=rej("R1 pointer arithmetic on map_value_or_null prohibited, null-check it first", 9, "verifier.c:adjust_ptr_min_max_vals(); key >= max_entries keeps the NULL case"), tags=["argument", "null"]))
C.append(Case("arg_maybe_null_direct_hash",
              lookup().replace("    if r0 == 0 goto out\n", "") + "    r1 = r6\n    call bpf_spin_lock\n" + OUTRO, maps=[LOCK_MAP.format(name="vals", type="hash", btf="true").replace("spin_lock\" }]", "spin_lock\", offset = 0 }]").replace('{ name = "cnt", kind = "int" }, ', '')],
              expect=rej("R1 type=map_value_or_null expected=map_value, ptr_", 9, "verifier.c:check_reg_type() spin_lock_types"), tags=["argument", "null"]))
C.append(Case("arg_uninit_r1", "    r1 = 0\n    r2 = r1\n    call bpf_get_prandom_u32\n    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=rej("R1 !read_ok", 3, "verifier.c:check_reg_arg()"), tags=["argument"]))

# --- global data --------------------------------------------------------------------------------
C = files.setdefault("gen-global-data", [])
for sec in [".data", ".bss"]:
    g = f'''
[[case.global]]
section = "{sec}"
fields = [{{ name = "cnt", kind = "int" }}, {{ name = "lock", kind = "spin_lock" }}]
'''
    short = sec.strip(".")
    C.append(Case(f"global_{short}_lock_unlock", f"    r6 = {sec} ll\n" + lock() + unlock() + OUTRO, maps=[g],
                  expect=acc("verifier.c:check_ld_imm() map value with id 0; process_spin_lock()"), tags=["global-data"]))
    C.append(Case(f"global_{short}_lock_no_unlock", f"    r6 = {sec} ll\n" + lock() + OUTRO, maps=[g],
                  expect=exit_rej(7), tags=["global-data", "exit"]))
    C.append(Case(f"global_{short}_two_loads_same_lock", f"    r6 = {sec} ll\n    r7 = {sec} ll\n" + lock("r6") + unlock("r7") + OUTRO, maps=[g],
                  expect=acc("verifier.c:check_ld_imm(): reg->id stays 0 for a direct map value"), tags=["global-data"]))
    C.append(Case(f"global_{short}_direct_store_lock", f"    r6 = {sec} ll\n    r1 = 0\n    *(u32 *)(r6 + 4) = r1\n" + OUTRO, maps=[g],
                  expect=rej("direct", 4, "verifier.c:check_map_access()"), tags=["global-data", "access"]))

# --- calls under the lock -----------------------------------------------------------------------
C = files.setdefault("gen-calls", [])
def under(body, name, expect, prog_type="sched_cls", desc=None, maps=None, tags=("calls",)):
    C.append(Case(name, lookup() + lock() + body + unlock() + OUTRO, prog_type=prog_type, expect=expect, desc=desc, maps=maps, tags=tags))

for h in ["bpf_get_prandom_u32", "bpf_ktime_get_ns", "bpf_get_smp_processor_id"]:
    under(f"    call {h}\n", f"call_helper_{h[4:]}", rej("call", 11, "verifier.c:do_check_insn() helper under lock"))
under("    r1 = vals ll\n    r2 = r10\n    r2 += -4\n    call bpf_map_lookup_elem\n", "call_helper_map_lookup", rej("call", 15, "verifier.c:do_check_insn() helper under lock"))
under("    r1 = r6\n    r2 = jmp ll\n    r3 = 0\n    call bpf_tail_call\n", "call_helper_tail_call",
      rej("call", 15, "verifier.c:do_check_insn(): the helper rule fires before check_helper_call()'s tail_call check"),
      maps=[LOCK_MAP.format(name="vals", type="array", btf="true"), PROG_ARRAY])
for k, allowed_new in [("lockstep_safe", True), ("lockstep_unsafe", False), ("lockstep_xdp_only_safe", False)]:
    e = rej("call", 12, "verifier.c:do_check_insn(): module kfunc (insn->off != 0)", ["6.12", "7.2"])
    src = "verifier.c:kfunc_spin_allowed() flags & lock-safe bit"
    if allowed_new:
        e.update({p: ("accept", None, None, src) for p in ALL[2:]})
    else:
        e.update(rej("call", 12, src + (" (not registered for sched_cls)" if "xdp" in k else ""), ALL[2:]))
    under(f"    r1 = 1\n    call {k}\n", f"call_module_{k[9:]}_sched_cls", e, tags=("calls", "module"))
    e2 = rej("call", 12, "verifier.c:do_check_insn(): module kfunc", ["6.12", "7.2"])
    if k != "lockstep_unsafe":
        e2.update({p: ("accept", None, None, "verifier.c:kfunc_spin_allowed(), registered for syscall") for p in ALL[2:]})
    else:
        e2.update(rej("call", 12, "verifier.c:kfunc_spin_allowed()", ALL[2:]))
    if k != "lockstep_xdp_only_safe":
        under(f"    r1 = 1\n    call {k}\n", f"call_module_{k[9:]}_syscall", e2, prog_type="syscall", tags=("calls", "module"))
# xdp-only kfunc from xdp
e = rej("call", 12, "verifier.c:do_check_insn(): module kfunc", ["6.12", "7.2"])
e.update({p: ("accept", None, None, "verifier.c:kfunc_spin_allowed(), registered for xdp") for p in ALL[2:]})
under("    r1 = 1\n    call lockstep_xdp_only_safe\n", "call_module_xdp_only_safe_xdp", e, prog_type="xdp", tags=("calls", "module"))
under("    r1 = 1\n    call lockstep_safe_ret_null\n", "call_module_safe_ret_null",
      {**rej("call", 12, "verifier.c:do_check_insn(): module kfunc", ["6.12", "7.2"]),
       **{p: ("accept", None, None, "verifier.c:kfunc_spin_allowed(), then check_kfunc_call(): KF_RET_NULL gives PTR_TO_BTF_ID | PTR_MAYBE_NULL, no reference") for p in ALL[2:]}}, tags=("calls", "module"))
# Module kfuncs outside a lock region: the lock rule does not apply (kernel 6.12+ all allow
# module kfuncs from programs of a registered type).
for k in ["lockstep_safe", "lockstep_unsafe"]:
    C.append(Case(f"call_module_{k[9:]}_outside_lock", lookup() + f"    r1 = 1\n    call {k}\n" + lock() + unlock() + OUTRO,
                  expect=acc("verifier.c:check_kfunc_call(): registered for sched_cls, no lock held"), tags=["calls", "module"]))
C.append(Case("call_module_xdp_only_safe_outside_lock_sched_cls", lookup() + "    r1 = 1\n    call lockstep_xdp_only_safe\n" + OUTRO,
              expect=rej("calling kernel function lockstep_xdp_only_safe is not allowed", 10,
                         "verifier.c:fetch_kfunc_meta(): not in the sched_cls kfunc set"), tags=["calls", "module"]))
# A lock-safe acquire/release pair under the lock: 6.12 and 7.2 stop at the first module call.
under("    r1 = 1\n    call lockstep_safe_acquire\n    if r0 == 0 goto skip\n    r1 = r0\n    call lockstep_safe_release\nskip:\n",
      "call_module_safe_acquire_release",
      {**rej("call", 12, "verifier.c:do_check_insn(): module kfunc", ["6.12", "7.2"]),
       **{p: ("accept", None, None, "verifier.c:kfunc_spin_allowed(); check_kfunc_call() acquire_reference(), mark_ptr_or_null_regs() drops it on NULL, release_reference()") for p in ALL[2:]}},
      tags=("calls", "module"))
# The same pair outside a lock region, and a reference released in the non-NULL branch only (the
# NULL branch dropped it at the check): accepted by every kernel.
ACQ_REL = "    r1 = 1\n    call lockstep_safe_acquire\n    if r0 == 0 goto skip\n    r1 = r0\n    call lockstep_safe_release\nskip:\n"
C.append(Case("call_module_acquire_release_outside_lock", lookup() + ACQ_REL + lock() + unlock() + OUTRO,
              expect=acc("verifier.c:check_kfunc_call(): KF_ACQUIRE / KF_RELEASE, mark_ptr_or_null_regs()"), tags=["calls", "module"]))
C.append(Case("call_module_release_in_non_null_branch", lookup() + "    r1 = 1\n    call lockstep_safe_acquire\n    if r0 == 0 goto out\n    r1 = r0\n    call lockstep_safe_release\n" + OUTRO,
              expect=acc("verifier.c:mark_ptr_or_null_regs(): the NULL branch releases the reference (__release_reference_nomark())"), tags=["calls", "module"]))
for k in ["bpf_iter_num_destroy", "bpf_list_pop_front", "bpf_rbtree_first"]:
    e = {}
    in612 = k in ("bpf_list_pop_front", "bpf_rbtree_first")
    for p in ALL:
        if p == "6.12" and not in612:
            e[p] = ("reject", None, MSG["call"], "verifier.c:do_check() is_bpf_graph_api_kfunc()")
        else:
            e[p] = ("unsupported", None, None, "allowed under the lock; the kfunc's own checks are outside the model")
    under(f"    call {k}\n", f"call_vmlinux_{k[4:]}", e, tags=("calls", "vmlinux-kfunc"))
SUB = """
sub:
    r0 = 0
    exit
"""
C.append(Case("call_static_subprog_under_lock", lookup() + lock() + "    call sub\n" + unlock() + OUTRO + SUB,
              expect=acc("verifier.c:do_check_insn(): BPF_PSEUDO_CALL is not a helper or kfunc"), tags=["calls", "subprog"]))
C.append(Case("call_global_subprog_under_lock", lookup() + lock() + "    call gsub\n" + unlock() + OUTRO + SUB.replace("sub:", "gsub:"),
              extra='globals = [{ label = "gsub" }]',
              expect=rej("global", 11, "verifier.c:check_func_call()"), tags=["calls", "subprog", "global"]))
C.append(Case("call_global_subprog_outside_lock", lookup() + "    call gsub\n" + lock() + unlock() + OUTRO + SUB.replace("sub:", "gsub:"),
              extra='globals = [{ label = "gsub" }]',
              expect=acc("verifier.c:check_func_call()"), tags=["calls", "subprog", "global"]))
C.append(Case("call_subprog_takes_lock_caller_releases",
              lookup() + "    r1 = r6\n    call take\n" + unlock() + OUTRO + "take:\n    r1 += 4\n    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=acc("verifier.c: lock state is per verifier state; exit in a subprog skips the lock check"), tags=["calls", "subprog"]))
C.append(Case("call_subprog_releases_callers_lock",
              lookup() + lock() + "    r1 = r6\n    call rel\n" + OUTRO + "rel:\n    r1 += 4\n    call bpf_spin_unlock\n    r0 = 0\n    exit\n",
              expect=acc("verifier.c: static subprog called under the lock may unlock it"), tags=["calls", "subprog"]))
C.append(Case("call_subprog_takes_lock_never_released",
              lookup() + "    r1 = r6\n    call take\n" + OUTRO + "take:\n    r1 += 4\n    call bpf_spin_lock\n    r0 = 0\n    exit\n",
              expect=exit_rej(16), tags=["calls", "subprog", "exit"]))
C.append(Case("call_global_subprog_exits_locked",
              "    r1 = 0\n    call gsub\n    r0 = 0\n    exit\n" + "gsub:\n    r6 = .data ll\n" + lock() + "    r0 = 0\n    exit\n",
              extra='globals = [{ label = "gsub", args = 1 }]',
              maps=['''
[[case.global]]
section = ".data"
fields = [{ name = "cnt", kind = "int" }, { name = "lock", kind = "spin_lock" }]
'''],
              expect=exit_rej(11), desc="a global function is verified on its own, as a main program", tags=["calls", "global", "exit"]))
C.append(Case("call_nested_static_under_lock", lookup() + lock() + "    call a\n" + unlock() + OUTRO + "a:\n    call b\n    exit\nb:\n    r0 = 1\n    exit\n",
              expect=acc("verifier.c:do_check_insn(): nested static calls under the lock"), tags=["calls", "subprog"]))
C.append(Case("call_helper_in_subprog_under_lock", lookup() + lock() + "    call a\n" + unlock() + OUTRO + "a:\n    call bpf_ktime_get_ns\n    exit\n",
              expect=rej("call", 16, "verifier.c:do_check_insn(): the lock is held in the callee too"), tags=["calls", "subprog"]))

# --- exits, ld_abs ------------------------------------------------------------------------------
C = files.setdefault("gen-exit-ldabs", [])
C.append(Case("exit_early_return_under_lock", lookup() + lock() + "    r0 = *(u32 *)(r6 + 0)\n    if r0 != 0 goto bail\n" + unlock() + OUTRO + "bail:\n    r0 = 1\n    exit\n",
              expect=exit_rej(24), tags=["exit", "branches"]))
C.append(Case("exit_r0_uninit_after_unlock", lookup() + lock() + unlock() + "    exit\n" + OUTRO,
              expect=rej("R0 !read_ok", 14, "verifier.c:check_return_code() -> check_reg_arg()"), tags=["exit"]))
for mode, ins in [("abs", "    r0 = *(u8 *)skb[12]\n"), ("ind", "    r7 = 1\n    r0 = *(u8 *)skb[r7 + 12]\n")]:
    body = "    r9 = r1\n" + lookup() + lock() + "    r6 = r9\n" + ins.replace("r7", "r8") + "    r6 = r7\n" + OUTRO
    body = "    r9 = r1\n" + lookup(dst="r7") + lock("r7") + "    r6 = r9\n" + ins.replace("r7", "r8") + unlock("r7") + OUTRO
    n = 13 if mode == "abs" else 14
    C.append(Case(f"ldabs_{mode}_under_lock", body, expect=rej("ldabs", n, "verifier.c:check_ld_abs() -> check_resource_leak()"), tags=["ld_abs"]))
C.append(Case("ldabs_outside_lock", "    r6 = r1\n    r0 = *(u8 *)skb[12]\n" + lookup() + lock() + unlock() + OUTRO,
              expect=acc("verifier.c:check_ld_abs()"), tags=["ld_abs"]))
C.append(Case("ldabs_xdp_not_allowed", "    r6 = r1\n    r0 = *(u8 *)skb[12]\n    r0 = 0\n    exit\n", prog_type="xdp", maps=[],
              expect=rej("BPF_LD_[ABS|IND] instructions not allowed for this program type", 1, "verifier.c:check_ld_abs() may_access_skb()"), tags=["ld_abs"]))
C.append(Case("ldabs_r6_not_ctx", "    r6 = 0\n    r0 = *(u8 *)skb[12]\n    r0 = 0\n    exit\n", maps=[],
              expect=rej("at the time of BPF_LD_ABS|IND R6 != pointer to skb", 1, "verifier.c:check_ld_abs()"), tags=["ld_abs"]))

# --- direct access ------------------------------------------------------------------------------
C = files.setdefault("gen-access", [])
for what, ins, n in [("load_u32", "    r1 = *(u32 *)(r6 + 4)\n", 8), ("load_u8", "    r1 = *(u8 *)(r6 + 5)\n", 8),
                     ("load_u64_overlap", "    r1 = *(u64 *)(r6 + 0)\n", 8), ("store_reg", "    r1 = 0\n    *(u32 *)(r6 + 4) = r1\n", 9),
                     ("store_imm", "    *(u32 *)(r6 + 4) = 0\n", 8), ("atomic_add", "    r1 = 1\n    lock *(u32 *)(r6 + 4) += r1\n", 9),
                     ("store_u16_high", "    *(u16 *)(r6 + 6) = 1\n", 8)]:
    C.append(Case(f"access_lock_{what}", lookup() + ins + OUTRO, expect=rej("direct", n, "verifier.c:check_map_access() btf_record fields"), tags=["access"]))
for what, ins in [("load_cnt", "    r1 = *(u32 *)(r6 + 0)\n"), ("atomic_cnt", "    r1 = 1\n    lock *(u32 *)(r6 + 0) += r1\n"),
                  ("store_cnt_under_lock", None)]:
    body = lookup() + (ins or (lock() + "    *(u32 *)(r6 + 0) = 7\n" + unlock())) + OUTRO
    C.append(Case(f"access_{what}", body, expect=acc("verifier.c:check_map_access(): no special field at [0, 4)"), tags=["access"]))
C.append(Case("access_out_of_bounds", lookup() + "    r1 = *(u32 *)(r6 + 8)\n" + OUTRO,
              expect=rej("invalid access to map value, value_size=8 off=8 size=4", 8, "verifier.c:check_map_access() -> __check_mem_access()"), tags=["access"]))
C.append(Case("access_null_unchecked_hash", lookup().replace("    if r0 == 0 goto out\n", "") + "    r1 = *(u32 *)(r6 + 0)\n" + OUTRO, maps=hashmap,
              expect=rej("R6 invalid mem access 'map_value_or_null'", 8, "verifier.c:check_mem_access()"), tags=["access", "null"]))
C.append(Case("access_variable_offset_reaches_lock",
              lookup() + "    r1 = *(u32 *)(r6 + 0)\n    r1 &= 4\n    r2 = r6\n    r2 += r1\n    r0 = *(u32 *)(r2 + 0)\n" + OUTRO,
              expect=rej("direct", 12, "verifier.c:check_map_access(): [smin, umax+size) overlaps the lock"), tags=["access"]))

# --- program types ------------------------------------------------------------------------------
C = files.setdefault("gen-prog-types", [])
ok_types = ["sched_cls", "sched_act", "xdp", "cgroup_skb", "lwt_in", "flow_dissector", "syscall"]
for t in ok_types:
    C.append(Case(f"progtype_{t}_lock_unlock", lookup() + lock() + unlock() + OUTRO, prog_type=t,
                  expect=acc("verifier.c:check_map_prog_compatibility()"), tags=["prog-type"]))
C.append(Case("progtype_syscall_not_sleepable", "    r0 = 0\n    exit\n", prog_type="syscall", maps=[],
              expect=rej("Syscall programs can only be sleepable", None, "verifier.c:check_attach_btf_id()"), tags=["prog-type"]))
C.append(Case("progtype_socket_filter", lookup() + lock() + unlock() + OUTRO, prog_type="socket_filter",
              expect=rej("sockfilter", None, "verifier.c:check_map_prog_compatibility(), from resolve_pseudo_ldimm64()"), tags=["prog-type"]))
for t in ["kprobe", "tracepoint", "perf_event", "raw_tracepoint"]:
    C.append(Case(f"progtype_{t}", lookup() + lock() + unlock() + OUTRO, prog_type=t,
                  expect=rej("tracing", None, "verifier.c:check_map_prog_compatibility() is_tracing_prog_type()"), tags=["prog-type"]))
C.append(Case("progtype_kprobe_map_without_btf", lookup() + "    r0 = 0\n    exit\n" + OUTRO, prog_type="kprobe",
              maps=[LOCK_MAP.format(name="vals", type="array", btf="false")],
              expect=acc("verifier.c:check_map_prog_compatibility(): no BTF, no btf_record, no lock"), tags=["prog-type", "btf"]))
C.append(Case("progtype_socket_filter_plain_map", lookup() + "    r0 = 0\n    exit\n" + OUTRO, prog_type="socket_filter",
              maps=[PLAIN_MAP.format(name="vals")], expect=acc("verifier.c:check_map_prog_compatibility()"), tags=["prog-type"]))

for name, cases in files.items():
    with open(os.path.join(OUT, name + ".toml"), "w") as f:
        f.write("# Generated by scripts/gen-corpus.py: edit the generator, not this file.\n\n")
        f.write("\n".join(c.toml() for c in cases))
print(sum(len(c) for c in files.values()), "cases in", len(files), "files")
