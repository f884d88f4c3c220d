//! Kfuncs described by BTF (issue 14, `kfunc_btf.rs`): the kernel tree's `bpf_testmod` kfuncs
//! (`bpf_kfunc_call_test*`, `bpf_testmod_*`, ...) and the vmlinux kfuncs of the id sets the model
//! knows, judged by their prototype and flags as `check_kfunc_call()` / `check_kfunc_args()`
//! (kernel/bpf/verifier.c, 7.3) judge them. Behind the profile switch `kfunc_btf_args` (7.3, 7.2:
//! 7.2's check_kfunc_args() classifies the arguments at the call, get_kfunc_ptr_arg_type(), where
//! 7.3 does it once per kfunc, but for the rules modelled here the checks, their order and their
//! messages are the same except `kfunc_alloc_size_too_big`); elsewhere (6.12: `arg#%d` messages),
//! or without the BTF, such a kfunc stays unsupported with its name.
//!
//! Modelled: the program type's hook (`fetch_kfunc_meta()`), `KF_DESTRUCTIVE` (lockstep loads as
//! root: `CAP_SYS_BOOT` holds), the NULL and release checks, `KF_ARG_ANYTHING`,
//! `KF_ARG_CONST_ALLOC_SIZE_OR_ZERO` with a known constant, `KF_ARG_PTR_TO_CTX`,
//! `KF_ARG_PTR_TO_BTF_ID` for kernel-object and socket registers of the same struct,
//! `KF_ARG_PTR_TO_MEM | MEM_FIXED_SIZE` on initialised stack; returns of a scalar, `void`, a
//! struct pointer (`PTR_TO_BTF_ID | PTR_TRUSTED`, `KF_RET_NULL`, `KF_ACQUIRE`) and the
//! "acquire kernel function does not return PTR_TO_BTF_ID" refusal. Other argument kinds,
//! `KF_IMPLICIT_ARGS` (the visible prototype), `KF_PERFMON` (root). `PTR_TO_MEM` returns, other
//! flags (`KF_SLEEPABLE`, iterators, `KF_RCU_PROTECTED`) and registers outside these are
//! unsupported, naming the kfunc.

use super::exec::Machine;
use super::scalar::Scalar;
use super::sock::SockKind;
use super::state::{Reg, StackByte, State, Trust};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::kfunc_btf::{KfArg, KfRet, KfuncDesc};
use crate::profile::{KF_ACQUIRE, KF_RELEASE, KF_RET_NULL};

/// `KF_DESTRUCTIVE` (include/linux/btf.h, 7.3).
const KF_DESTRUCTIVE: u32 = 1 << 6;
/// `KF_RCU` (7.3).
const KF_RCU: u32 = 1 << 7;
/// `KF_IMPLICIT_ARGS` (7.2, 7.3): the kfunc's BTF FUNC carries the BPF-visible prototype, the
/// `_impl` FUNC the full one; `check_kfunc_args()` skips the arguments past the visible ones
/// (`is_kfunc_arg_implicit()`), so the visible prototype (which `kfunc_btf.rs` reads) is what is
/// judged.
const KF_IMPLICIT_ARGS: u32 = 1 << 16;
/// `KF_PERFMON` (7.3): `check_kfunc_call()` wants `env->allow_ptr_leaks` (`CAP_PERFMON`);
/// lockstep loads as root, so it passes. 7.2 has no such bit.
const KF_PERFMON: u32 = 1 << 18;
/// The flags whose effect the model knows (the lock-safe flag only matters under a lock).
const MODELLED_FLAGS: u32 = KF_ACQUIRE
    | KF_RELEASE
    | KF_RET_NULL
    | KF_DESTRUCTIVE
    | KF_RCU
    | crate::module_src::LOCK_SAFE_FLAG
    | KF_IMPLICIT_ARGS
    | KF_PERFMON;

/// `btf_is_prog_ctx_type()` for the program types modelled here: the struct a kfunc argument
/// must point to to be the program's ctx (`bpf_ctx_convert`'s user-visible ctx type).
fn ctx_struct(t: ProgType) -> Option<&'static str> {
    match t {
        ProgType::SchedCls | ProgType::SchedAct => Some("__sk_buff"),
        ProgType::Xdp => Some("xdp_md"),
        _ => None,
    }
}

/// The struct `reg2btf_ids[]` gives a socket register's type.
fn sock_struct(k: SockKind) -> Option<&'static str> {
    match k {
        SockKind::Common => Some("sock_common"),
        SockKind::Sock => Some("sock"),
        SockKind::Tcp => Some("tcp_sock"),
        SockKind::Xdp => Some("xdp_sock"),
        SockKind::Btf => None,
    }
}

impl Machine<'_> {
    /// The BTF description of kfunc `name`, when the profile judges such kfuncs and has it.
    pub(super) fn btf_kfunc(&self, name: &str) -> Option<KfuncDesc> {
        if !self.profile.kfunc_btf_args || self.module.kfuncs.contains_key(name) {
            return None;
        }
        self.profile.kernel_btf.0.as_ref()?.kfuncs.get(name).cloned()
    }

    /// `check_kfunc_call()` for a kfunc described by BTF (R0 set, R1-R5 cleared).
    pub(super) fn btf_kfunc_call(
        &mut self,
        st: &mut State,
        pc: usize,
        name: &str,
        d: &KfuncDesc,
    ) -> Step<()> {
        let unsupported = |what: String| Err(Stop::Unsupported(format!("kfunc {name}: {what}")));
        // fetch_kfunc_meta() -> btf_kfunc_is_allowed(): -EACCES, the hook's or its set's filter
        // (__btf_kfunc_is_allowed(), structops.rs).
        if !d.allowed_in(self.case.prog_type) || self.kfunc_filter_refuses(&d.set, name) {
            let args = [("name", name.to_string())];
            return self.reject(pc, self.msg(&self.profile.messages.kfunc_not_allowed, &args));
        }
        // check_kfunc_call(): a KF_SLEEPABLE kfunc outside a sleepable state, before the
        // arguments ("program must be sleepable to call sleepable kfunc %s": 6.12, 7.2, 7.3),
        // then after them the region check (sleep.rs, as for the test module's kfuncs).
        let sleepable = d.flags & super::sleep::KF_SLEEPABLE != 0;
        if sleepable && !self.in_sleepable(st) {
            let args = [("name", name.to_string())];
            return self.reject(pc, crate::profile::render(&self.profile.sleep.kfunc_prog_message, &args));
        }
        if d.flags & !(MODELLED_FLAGS | super::sleep::KF_SLEEPABLE) != 0 {
            return unsupported(format!(
                "flags {:#x} (KF_SLEEPABLE, iterator, KF_RCU_PROTECTED, KF_FASTCALL, arena, ...) are not modelled",
                d.flags & !(MODELLED_FLAGS | super::sleep::KF_SLEEPABLE)
            ));
        }
        // is_kfunc_destructive() && !capable(CAP_SYS_BOOT): lockstep loads as root, so it passes.
        if d.args.len() > 5 {
            return unsupported("more than 5 arguments (stack arguments)".into());
        }
        let release = d.flags & KF_RELEASE != 0;
        let mut ref_obj: Option<u32> = None;
        // meta->ret_mem (7.3) / meta->r0_size (7.2): the rdonly_buf_size / rdwr_buf_size constant
        // and whether it was rdonly_buf_size (meta->r0_rdonly).
        let mut ret_mem: Option<(u32, bool)> = None;
        for (i, arg) in d.args.iter().enumerate() {
            let r = i + 1;
            let reg = st.cur_ref().regs[r].clone();
            let is_ptr_arg = matches!(
                arg,
                KfArg::Struct { .. } | KfArg::FixedMem { .. } | KfArg::MemPtr | KfArg::ConstStr
            );
            // A scalar for a pointer argument: judged only when the model knows its value.
            let konst = match &reg {
                Reg::Scalar(s) => s.konst(),
                _ => None,
            };
            if is_ptr_arg && matches!(reg, Reg::Scalar(_)) && konst.is_none() {
                return unsupported(format!("R{r}, a scalar of unknown value, for a pointer argument"));
            }
            if is_ptr_arg && (konst == Some(0) || reg.maybe_null()) {
                let args = [("reg", format!("R{r}"))];
                return self.reject(pc, self.msg(&self.profile.messages.kfunc_arg_maybe_null, &args));
            }
            // check_func_arg_reg_off() / __check_ptr_off_reg(): a kernel pointer moved by a
            // constant (a release argument must be at zero offset, a trusted one walks
            // btf_struct_ids_match() at the offset) is not modelled.
            if reg.kernel_off() {
                return unsupported(format!("R{r}, a kernel pointer at a non-zero offset"));
            }
            let referenced = match &reg {
                Reg::Kernel { ref_obj_id, .. } | Reg::Sock { ref_obj_id, .. } => {
                    (*ref_obj_id != 0 && st.refs.contains(ref_obj_id)).then_some(*ref_obj_id)
                }
                Reg::Scalar(_) | Reg::Stack { .. } | Reg::Ctx | Reg::MapValue { .. } => None,
                other => return unsupported(format!("R{r} of type {}", other.type_str())),
            };
            if release && r == 1 && referenced.is_none() && konst != Some(0) {
                let args = [("reg", "R1".to_string()), ("name", name.to_string())];
                return self.reject(pc, self.msg(&self.profile.messages.kfunc_release_unreferenced, &args));
            }
            if let Some(id) = referenced {
                if ref_obj.is_some() {
                    return unsupported("two referenced arguments".into());
                }
                ref_obj = Some(id);
            }
            match arg {
                KfArg::Anything => {
                    if !matches!(reg, Reg::Scalar(_)) {
                        return unsupported(format!("R{r} of type {} for a scalar argument", reg.type_str()));
                    }
                }
                KfArg::AllocSize { rdonly } => {
                    let Reg::Scalar(s) = &reg else {
                        return unsupported(format!("R{r} of type {} for a size argument", reg.type_str()));
                    };
                    // process_const_alloc_mem_size(): tnum_is_const(); the model's bounds may be
                    // coarser than the kernel's tnum, so a non-constant is not judged.
                    let Some(v) = s.konst() else {
                        return unsupported(format!("R{r}, a size the model does not know as a constant"));
                    };
                    // 7.2: check_kfunc_args(); 7.3: process_const_alloc_mem_size(). The
                    // message differs (profile: kfunc_alloc_size_too_big).
                    if v as u64 > u32::MAX as u64 {
                        let tmpl = &self.profile.messages.kfunc_alloc_size_too_big;
                        if tmpl.is_empty() {
                            return unsupported(format!("R{r}, a size above U32_MAX (message not read)"));
                        }
                        let args = [("reg", format!("R{r}"))];
                        return self.reject(pc, self.msg(tmpl, &args));
                    }
                    if ret_mem.is_some() {
                        return unsupported("two rdonly/rdwr_buf_size arguments".into());
                    }
                    ret_mem = Some((v as u32, *rdonly));
                }
                KfArg::Struct { name: sname, kid, scalar_size } => {
                    if ctx_struct(self.case.prog_type) == Some(sname.as_str()) {
                        // KF_ARG_PTR_TO_CTX
                        match &reg {
                            Reg::Ctx => {}
                            Reg::Scalar(_) => {
                                return self
                                    .reject(pc, format!("R{r} expected pointer to ctx, but got scalar"))
                            }
                            other => {
                                return unsupported(format!(
                                    "R{r} of type {} for a ctx argument",
                                    other.type_str()
                                ))
                            }
                        }
                        continue;
                    }
                    // KF_ARG_PTR_TO_BTF_ID
                    match &reg {
                        Reg::Kernel { btf_id, trust, .. } => {
                            if referenced.is_none() && *trust != Trust::Trusted {
                                if d.flags & KF_RCU == 0 {
                                    return self.reject(pc, format!("R{r} must be referenced or trusted"));
                                }
                                if *trust != Trust::Rcu {
                                    return self.reject(pc, format!("R{r} must be a rcu pointer"));
                                }
                            }
                            // process_kf_arg_ptr_to_btf_id(): btf_struct_ids_match(), strict for a
                            // release of a referenced pointer, else walking the members at
                            // offset 0 (a bpf_cpumask is a cpumask). A mismatch is not modelled.
                            let strict = release && referenced.is_some();
                            if !self.struct_ids_match(*btf_id, *kid, strict) {
                                return unsupported(format!(
                                    "R{r} pointing to another struct than {sname} (btf_struct_ids_match())"
                                ));
                            }
                        }
                        // Not a PTR_TO_BTF_ID: a struct of scalars is fixed-size memory.
                        Reg::Stack { .. } if scalar_size.is_some() => {
                            self.kfunc_fixed_mem(st, name, r, &reg, scalar_size.unwrap_or(0))?
                        }
                        // reg2btf_ids[]: trusted; the struct must be the argument's.
                        Reg::Sock { kind, .. } if sock_struct(*kind) == Some(sname.as_str()) => {
                            if self.kernel_struct_id(sname) != Some(*kid) {
                                return unsupported(format!(
                                    "R{r}: struct {sname} of the module, not vmlinux's"
                                ));
                            }
                        }
                        other => {
                            return unsupported(format!(
                                "R{r} of type {} for a struct {sname} argument",
                                other.type_str()
                            ))
                        }
                    }
                }
                KfArg::FixedMem { size } => self.kfunc_fixed_mem(st, name, r, &reg, *size)?,
                // KF_ARG_PTR_TO_MEM: checked with its size, at the next argument.
                KfArg::MemPtr => match &reg {
                    Reg::Stack { .. } => {}
                    Reg::Ctx if self.case.prog_type == ProgType::Syscall => {}
                    other => {
                        return unsupported(format!(
                            "R{r} of type {} for a memory argument",
                            other.type_str()
                        ))
                    }
                },
                KfArg::MemSize => {
                    let Reg::Scalar(s) = &reg else {
                        return unsupported(format!("R{r} of type {} for a memory size", reg.type_str()));
                    };
                    // check_mem_size_reg(): a negative minimum or a maximum of BPF_MAX_VAR_SIZ or
                    // more is refused; the model's bounds may be coarser than the kernel's, so
                    // only sizes it bounds are judged.
                    if s.smin < 0 || s.umax >= 1 << 29 {
                        return unsupported(format!(
                            "R{r}, a size the model does not bound to [0, BPF_MAX_VAR_SIZ)"
                        ));
                    }
                    let buf = st.cur_ref().regs[r - 1].clone();
                    match buf {
                        // check_helper_mem_access(): a syscall program's ctx as memory of U16_MAX
                        // bytes (is_var_ctx_off_allowed()), read then write.
                        Reg::Ctx if s.umax <= u16::MAX as u64 => {}
                        Reg::Stack { .. } if s.konst().is_some_and(|k| k >= 1) => {
                            self.kfunc_fixed_mem(st, name, r - 1, &buf, s.umax as u32)?
                        }
                        // check_mem_size_reg(zero_size_allowed): a known zero size on the stack
                        // at a constant offset inside it passes check_stack_access_within_bounds()
                        // (read, then write) and check_stack_range_initialized() reads no byte
                        // (bpf_stream_printk() without arguments: `r3 = r10; r3 += -8; w4 = 0`).
                        Reg::Stack { off, .. } if s.konst() == Some(0) && (-512..0).contains(&off) => {}
                        other => {
                            return unsupported(format!(
                                "R{} of type {} with a size R{r} in [{}, {}]",
                                r - 1,
                                other.type_str(),
                                s.umin,
                                s.umax
                            ))
                        }
                    }
                }
                // KF_ARG_PTR_TO_CONST_STR: a map value, then check_arg_const_str() (conststr.rs).
                KfArg::ConstStr => {
                    if !matches!(reg, Reg::MapValue { .. }) {
                        return unsupported(format!("R{r} of type {} for a constant string", reg.type_str()));
                    }
                    self.const_str_arg(pc, r, &reg, &format!("kfunc {name}"))?;
                }
                KfArg::Unsupported(why) => return unsupported(format!("argument R{r}: {why}")),
            }
        }
        if sleepable {
            // After the arguments: "kernel func %s is sleepable within %s".
            self.kfunc_sleep_region(st, pc, name)?;
        }
        // Release (release_reg()): the reference and every register carrying it go.
        if release {
            let Some(id) = ref_obj else {
                return unsupported("a release of NULL".into());
            };
            st.refs.retain(|r| *r != id);
            // release_reference(): the registers of the reference and those derived from it
            // (parent_id, a kfunc's PTR_TO_MEM) become unknown scalars (mark_reg_invalid(), root).
            st.for_each_reg(|r| {
                if matches!(r, Reg::Kernel { ref_obj_id: i, .. } | Reg::Sock { ref_obj_id: i, .. } if *i == id)
                    || matches!(r, Reg::Mem { parent, .. } if *parent == id)
                {
                    *r = Reg::Scalar(Scalar::unknown());
                }
            });
        }
        let acquire = d.flags & KF_ACQUIRE != 0;
        if acquire && !matches!(d.ret, KfRet::Struct { .. }) {
            return self.reject(pc, "acquire kernel function does not return PTR_TO_BTF_ID".into());
        }
        let r0 = match &d.ret {
            KfRet::Void => Reg::NotInit,
            KfRet::Scalar => Reg::Scalar(Scalar::unknown()),
            KfRet::Struct { kid, .. } => {
                if ret_mem.is_some() {
                    return unsupported("a struct return beside a buffer size argument".into());
                }
                let null = d.flags & KF_RET_NULL != 0;
                // is_kfunc_ret_null(): an id for the NULL check; acquire_reference() then gives
                // the register its own id (as kobj.rs).
                let mut id = if null { self.fresh_id() } else { 0 };
                let mut ref_obj_id = 0;
                if acquire {
                    id = self.acquire_ref(st, pc);
                    ref_obj_id = id;
                }
                Reg::Kernel { off: 0, btf_id: *kid, id, ref_obj_id, null, trust: Trust::Trusted }
            }
            // check_kfunc_call(): a pointer to a non-struct is PTR_TO_MEM of the buffer-size
            // argument's size (MEM_RDONLY for rdonly_buf_size), `| PTR_MAYBE_NULL` with an id for
            // KF_RET_NULL, its parent_id the referenced argument's (release_reference()
            // invalidates it with the parent, kfunc_mem_invalidate()). Without a size argument
            // the pointee type's size (btf_resolve_size(), MEM_RDONLY) is not modelled; a zero
            // size is one only where meta->ret_mem.found tells it from none (7.3; 7.2's
            // `!meta.r0_size` falls back to the type's size: profile kfunc_ret_mem_zero_size).
            KfRet::Mem => {
                let Some((size, rdonly)) = ret_mem else {
                    return unsupported(
                        "a PTR_TO_MEM return sized by its type (no rdonly_buf_size / rdwr_buf_size argument)"
                            .into(),
                    );
                };
                if size == 0 && !self.profile.kfunc_ret_mem_zero_size {
                    return unsupported(
                        "a zero rdonly/rdwr_buf_size (the return is sized by its type)".into(),
                    );
                }
                if release {
                    return unsupported("a PTR_TO_MEM return of a release kfunc".into());
                }
                let null = d.flags & KF_RET_NULL != 0;
                let id = if null { self.fresh_id() } else { 0 };
                Reg::Mem { size, rdonly, id, parent: ref_obj.unwrap_or(0), null }
            }
            KfRet::Unsupported(why) => return unsupported(why.clone()),
        };
        self.clobber(st, r0);
        Ok(())
    }

    /// `check_mem_access()` through a kfunc's `PTR_TO_MEM` (verifier.c of 7.2 and 7.3 alike):
    /// a store into `MEM_RDONLY` -> "R%d cannot write into rdonly_mem"; then
    /// `check_mem_region_access()` -> `__check_mem_access()`: "invalid access to memory,
    /// mem_size=%u off=%d size=%d"; a load is an unknown scalar of its size. A store of a pointer
    /// (root: allowed) and memory whose parent reference another path released are not modelled.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn kfunc_mem_access(
        &self,
        st: &State,
        pc: usize,
        regno: u8,
        mem_size: u32,
        rdonly: bool,
        parent: u32,
        off: i64,
        size: u8,
        value: Option<&Reg>,
    ) -> Step<Reg> {
        if parent != 0 && !st.refs.contains(&parent) {
            return Err(Stop::Unsupported(format!(
                "an access through R{regno} (mem) whose parent reference was released outside kfunc_args.rs"
            )));
        }
        if value.is_some() && rdonly {
            return self.reject(pc, format!("R{regno} cannot write into rdonly_mem"));
        }
        if value.is_some_and(|v| v.is_pointer()) {
            return Err(Stop::Unsupported(format!("a store of a pointer into R{regno} (mem)")));
        }
        if off < 0 || off + size as i64 > mem_size as i64 {
            return self
                .reject(pc, format!("invalid access to memory, mem_size={mem_size} off={off} size={size}"));
        }
        Ok(if value.is_some() { Reg::NotInit } else { Reg::Scalar(Scalar::of_size(size)) })
    }

    /// `btf_struct_ids_match()` for a register of struct `have` at offset 0 and an argument of
    /// struct `want` (vmlinux ids; a module's are only matched by equality).
    fn struct_ids_match(&self, mut have: u32, want: u32, strict: bool) -> bool {
        let Some(k) = self.profile.kernel_btf.0.as_ref() else { return have == want };
        for _ in 0..8 {
            if have == want {
                return true;
            }
            if strict {
                return false;
            }
            match k.first_member_struct(have) {
                Some(next) => have = next,
                None => return false,
            }
        }
        false
    }

    /// The vmlinux id of struct `name`, if the profile has the kernel's BTF.
    fn kernel_struct_id(&self, name: &str) -> Option<u32> {
        self.profile.kernel_btf.0.as_ref()?.struct_id(name)
    }

    /// `KF_ARG_PTR_TO_MEM | MEM_FIXED_SIZE`: `check_mem_reg()` -> `check_helper_mem_access()` read,
    /// then write, of `size` bytes. Modelled on the stack only: wholly inside it and initialised
    /// (`check_stack_range_initialized()`); the write then makes zero bytes `STACK_MISC` and
    /// scrubs spilled registers in the range (`clobber`).
    fn kfunc_fixed_mem(&self, st: &mut State, name: &str, r: usize, reg: &Reg, size: u32) -> Step<()> {
        let unsupported = |what: String| Err(Stop::Unsupported(format!("kfunc {name}: {what}")));
        let Reg::Stack { frame, off } = *reg else {
            return unsupported(format!("R{r} of type {} for a memory argument", reg.type_str()));
        };
        let size = size as i64;
        if off < -512 || off + size > 0 {
            return unsupported(format!("R{r}: memory past the stack"));
        }
        if st.iters.keys().any(|(f, s)| *f == frame && off < s + 8 && *s < off + size) {
            return unsupported(format!("R{r}: memory over an iterator's stack slot"));
        }
        let stack = &mut st.frames[frame].stack;
        if (off..off + size).any(|b| !stack.bytes.contains_key(&b)) {
            return unsupported(format!("R{r}: memory on uninitialised stack"));
        }
        let first = off.div_euclid(8) * 8;
        for slot in (first..off + size).step_by(8) {
            // __mark_reg_unknown() and scrub_spilled_slot(): every written byte of the slot
            // becomes STACK_MISC.
            if stack.spills.remove(&slot).is_some() {
                for b in slot..slot + 8 {
                    if stack.bytes.contains_key(&b) {
                        stack.bytes.insert(b, StackByte::Misc);
                    }
                }
            }
        }
        for b in off..off + size {
            stack.bytes.insert(b, StackByte::Misc);
        }
        Ok(())
    }
}
