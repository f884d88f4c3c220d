//! The walk: pre-pass checks, then `do_check()` over the main program and each global function.

use super::access::{check_region, is_aligned, tnum_const_str, Region, RegionError, BPF_MAX_VAR_OFF};
use super::attach::ReturnRule;
use super::fields;
use super::prepared::Prepared;
use super::scalar::{CmpOp, Scalar};
use super::special::{self, FieldAccess, KptrError};
use super::state::{Frame, Reg, State, Trust, VarOff};
use super::vecmap::{VecMap, VecSet};
use super::{ModelOptions, Rule, Step, Stop, STEP_BUDGET};
use crate::asm::Reloc;
use crate::case::{Case, FieldKind, MapSpec, ProgType};
use crate::insn::*;
use crate::profile::{render, KernelProfile, ModuleKfuncs};
use crate::verdict::{map_create_refused, EOPNOTSUPP};

/// The model's machine for one case on one profile.
pub(crate) struct Machine<'a> {
    pub case: &'a Case,
    pub profile: &'a KernelProfile,
    pub module: &'a ModuleKfuncs,
    pub opts: &'a ModelOptions,
    /// What the passes before the walk found whatever the profile (shared by the profiles).
    pub prep: &'a Prepared<'a>,
    /// Subprogram starts (index 0 = main).
    pub subprogs: &'a [usize],
    /// Global subprograms by start instruction: their number of args.
    pub globals: &'a VecMap<usize, u8>,
    /// Global subprograms by start instruction: which args (bit 0: R1) are `ARG_PTR_TO_CTX`.
    pub global_ctx_args: &'a VecMap<usize, u8>,
    pub id_gen: u32,
    pub steps: usize,
    /// Global subprograms (by start) a verified call reached, with the context to verify them in
    /// (`sub_aux->called[]`: sleepable or not in 7.3, else the program's `sleepable`).
    pub called: VecSet<(usize, bool)>,
    /// States met at each iterator `_next` call with an ACTIVE iterator (the checkpoints of
    /// `is_state_visited()`), reduced to what the call keeps (see `loops::iter_checkpoint`).
    pub iter_seen: VecMap<usize, super::state::SeenStates>,
    /// Subprograms (by index) a verified path passed to a callback helper (`is_cb`).
    pub callback_subprogs: VecSet<usize>,
    /// Subprograms (by index) passed to `bpf_timer_set_callback` (`is_async_cb`; timer.rs).
    pub async_callbacks: VecSet<usize>,
    /// The instruction that took each reference (`alloc_insn`), by id (ids are never reused).
    pub ref_insns: VecMap<u32, usize>,
    /// Set once a move or spill may have given a scalar an id (`assign_scalar_id_before_mov()`),
    /// which the model does not number: reference ids printed after that are not known.
    pub scalar_ids: std::cell::Cell<bool>,
    /// Set once a register became a [`Reg::AllocVar`] (`varoff.rs`): each step then checks its uses.
    pub alloc_var: std::cell::Cell<bool>,
    /// An open-coded iterator's `_next` was walked again at a checkpoint the model did not prune:
    /// the kernel's `is_state_visited()` (with liveness) may have pruned it, and each `_next` walk
    /// takes an id (`++env->id_gen`), so later reference ids are not known exactly.
    pub iter_loop_ids: std::cell::Cell<bool>,
    /// Per-instruction arena records (`arena.rs`).
    pub arena_aux: super::arena::ArenaAuxTable,
    /// Why the last widening at each iterator `_next` widened nothing (`loops.rs`), for the
    /// message of a loop that does not converge.
    pub widen_refused: VecMap<usize, String>,
    /// States met at each prune point (`prune.rs`).
    pub visited: VecMap<usize, super::prune::Kept>,
    /// A path was pruned (`prune.rs`): later reference ids are not known exactly.
    pub pruned_paths: std::cell::Cell<bool>,
    /// The path being walked, or one it forked from, was popped after other paths took ids
    /// (`walk()`): the kernel may have pruned some of them (`is_state_visited()`) and then
    /// numbers this path's references lower (`alloc.rs`).
    pub sibling_ids: bool,
    /// The reference a struct_ops program's `__ref` argument holds from its first instruction
    /// (structops.rs), or 0.
    pub struct_ops_ref: u32,
}

impl<'a> Machine<'a> {
    pub fn new(
        prep: &'a Prepared<'a>,
        profile: &'a KernelProfile,
        module: &'a ModuleKfuncs,
        opts: &'a ModelOptions,
    ) -> Self {
        Machine {
            case: prep.case(),
            profile,
            module,
            opts,
            prep,
            subprogs: &prep.subprogs,
            globals: &prep.globals,
            global_ctx_args: &prep.global_ctx_args,
            id_gen: 0,
            steps: 0,
            alloc_var: Default::default(),
            called: Default::default(),
            iter_seen: Default::default(),
            callback_subprogs: Default::default(),
            async_callbacks: Default::default(),
            ref_insns: Default::default(),
            widen_refused: Default::default(),
            visited: Default::default(),
            pruned_paths: Default::default(),
            sibling_ids: false,
            struct_ops_ref: 0,
            scalar_ids: Default::default(),
            iter_loop_ids: Default::default(),
            arena_aux: Default::default(),
        }
    }

    /// The map's name as the kernel has it: truncated to `BPF_OBJ_NAME_LEN - 1` characters, and
    /// for a global data map of an object, libbpf's `internal_map_name()` (`res_spin.bss`).
    pub fn kernel_map_name(&self, spec: &MapSpec) -> String {
        use crate::import::map_name::{internal_map_name, libbpf_object_name};
        match &self.case.object {
            _ if self.is_inner_map(spec) => String::new(),
            Some(o) if spec.global_section => {
                internal_map_name(&libbpf_object_name(&o.file_name), &spec.name)
            }
            _ => spec.name.chars().take(15).collect(),
        }
    }

    /// Whether `rule` is checked (see [`ModelOptions`]).
    pub fn on(&self, rule: Rule) -> bool {
        self.opts.enabled(rule)
    }

    pub fn msg(&self, template: &str, args: &[(&str, String)]) -> String {
        render(template, args)
    }

    pub fn reject<T>(&self, pc: usize, msg: String) -> Step<T> {
        Err(Stop::Reject(Some(pc), msg))
    }

    /// The map with index `idx`: a case map, or an inner map (`inner.rs`).
    pub fn map(&self, idx: usize) -> &'a MapSpec {
        super::inner::spec(self.case, idx)
    }

    /// The index of the map named `name` (a case has a handful: a linear search, no index built).
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.case.maps.iter().position(|m| m.name == name)
    }

    /// The whole check: `bpf_check()` order of the passes the model covers.
    pub fn run(&mut self) -> Step<()> {
        self.prepass()?;
        // do_check_main()
        let mut st = State::entry(Frame::new(0, 0, 0), true, 0);
        st.frames[0].regs[1] = Reg::Ctx;
        // do_check_common(env, 0, env->prog->sleepable).
        st.sleepable = self.case.sleepable;
        self.struct_ops_entry_refs(&mut st);
        self.walk(st)?;
        // do_check_subprogs(): each global function on its own, arguments as declared, but only
        // once a verified path called it (`if (!sub_aux->called || sub_aux->verified) continue;`),
        // in subprogram order, again until a pass verifies none. 7.3 verifies a global function
        // once per context it was called in, non-sleepable first (`sub_aux->called[context]`,
        // `do_check_common(env, i, context)`); before, once, with the program's `sleepable`
        // (`Machine::called` holds the calls' contexts, `model/sleep.rs`).
        let globals: Vec<(usize, u8)> = self.globals.iter().map(|(i, a)| (*i, *a)).collect();
        // The exception callback is "presumed to be always called", in the main program's
        // context (7.3: `called[env->prog->sleepable]`; before: `called`).
        let ex_cb = self.prep.exception_cb_start;
        if let Some(start) = ex_cb {
            self.called.insert((start, self.case.sleepable));
        }
        let mut verified = VecSet::default();
        loop {
            let mut new = 0;
            for (&(start, args), context) in globals.iter().flat_map(|g| [(g, false), (g, true)]) {
                if !self.called.contains(&(start, context)) || verified.contains(&(start, context)) {
                    continue;
                }
                let sub = self.subprogs.iter().position(|s| *s == start).unwrap_or(0);
                if ex_cb == Some(start) {
                    // do_check_common() -> btf_prepare_func_args() and the exception
                    // callback's own checks (exception_cb.rs).
                    self.exception_cb_checks()?;
                }
                let mut st = State::entry(Frame::new(0, sub, 0), false, start);
                st.sleepable = context;
                // btf_prepare_func_args(): PTR_TO_CTX for a context argument, else a scalar.
                let ctx = self.global_ctx_args.get(&start).copied().unwrap_or(0);
                for r in 1..=args as usize {
                    st.frames[0].regs[r] =
                        if ctx & (1 << (r - 1)) != 0 { Reg::Ctx } else { Reg::Scalar(Scalar::unknown()) };
                }
                self.walk(st)?;
                verified.insert((start, context));
                new += 1;
            }
            if new == 0 {
                // The exception callback (marked called; walked above when the program holds
                // its body), then check_max_stack_depth().
                if ex_cb.is_none() {
                    self.exception_cb_checks()?;
                }
                self.mark_exception_cb();
                return self.check_throw_in_callbacks();
            }
        }
    }

    /// Checks done before the main walk, in the kernel's order (`bpf_check()`); none prints an
    /// instruction.
    fn prepass(&mut self) -> Step<()> {
        let insns = &self.case.program.insns;
        // The loader creates the maps first: map_check_btf() (kernel/bpf/syscall.c) refuses a
        // bpf_spin_lock / bpf_res_spin_lock in any map but hash, array, cgroup and sk storage
        // (-EOPNOTSUPP), the same on every profile (a kernel without bpf_res_spin_lock sees a
        // plain struct there).
        // (The per-map facts, whatever the profile, are in `Prepared::maps`.)
        let res = self.profile.res_spin_lock;
        // libbpf creates an inner map before its outer map (map_check_btf() on it too);
        // `Prepared::maps` holds each map followed by its inner map.
        for (m, f) in super::prepared::maps_with_inner(self.case).zip(&self.prep.maps) {
            let locked = f.spin_lock || (res && f.res_spin_lock);
            if locked && !f.lock_allowed {
                return Err(Stop::Reject(None, map_create_refused(&m.name, EOPNOTSUPP)));
            }
            // btf_parse_fields() fails before map_check_btf() looks at the map type: an error
            // record, which check_prepared() models for global data sections; a map value
            // struct's fails BPF_BTF_LOAD first (btf_parse_struct_metas()): not modelled.
            if let Some(why) = &f.record_error {
                return Err(Stop::Unsupported(format!(
                    "map `{}` has an error BTF record (not modelled): {why}",
                    m.name
                )));
            }
            if f.field_refused {
                return Err(Stop::Reject(None, map_create_refused(&m.name, EOPNOTSUPP)));
            }
        }
        self.check_arenas()?;
        self.attach_unsupported()?;
        // BPF_F_ANY_ALIGNMENT, BPF_F_TEST_RND_HI32, BPF_F_TEST_STATE_FREQ and
        // BPF_F_TEST_REG_INVARIANTS leave the lock rules alone (x86-64 has efficient unaligned
        // access, so alignment is only checked under BPF_F_STRICT_ALIGNMENT: check_ptr_alignment()).
        const NEUTRAL: u32 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 7);
        if self.case.prog_flags & !NEUTRAL != 0 {
            return Err(Stop::Unsupported(format!(
                "prog_flags {:#x} (strict alignment, XDP frags) are not modelled",
                self.case.prog_flags
            )));
        }
        if insns.is_empty() {
            return Err(Stop::Unsupported("empty program".into()));
        }
        for (pc, reloc) in &self.case.program.relocs {
            match reloc {
                Reloc::Kfunc { name } => self.kfunc_exists(name)?,
                Reloc::Map { name } | Reloc::MapValue { name, .. } if !insns[*pc].is_ld_imm64() => {
                    return Err(Stop::Unsupported(format!("map reference `{name}` on a non-ld_imm64 insn")));
                }
                _ => {}
            }
        }
        // bpf_check() (7.3): a program ending in the first slot of an ld_imm64.
        if self.profile.early_ld_imm64_check && insns.last().is_some_and(|i| i.is_ld_imm64()) {
            return Err(Stop::Reject(None, "invalid bpf_ld_imm64 insn".into()));
        }
        self.prog_type_license()?;
        // add_subprog_and_kfunc() (6.12, 7.2): a non-GPL program's first kfunc (license.rs).
        self.kfunc_license(false)?;
        // add_subprogs() / add_subprog_and_kfunc(), check_subprogs(), then check_btf_info():
        // func_info only for a case with global functions or a program of a BPF object.
        self.exception_cb_tags()?;
        // (the call targets, `check_subprogs`, `check_abnormal_return`, computed once
        // per case: `Prepared::layout`.)
        self.prep.layout()?;
        self.check_and_resolve_insns()?;
        // add_kfuncs() (7.3): a non-GPL program's first kfunc (license.rs).
        self.kfunc_license(true)?;
        self.prep.cfg()?;
        // check_attach_btf_id() runs after check_cfg().
        if self.case.prog_type == ProgType::Syscall && !self.case.sleepable {
            return Err(Stop::Reject(None, self.profile.messages.syscall_not_sleepable.clone()));
        }
        self.can_be_sleepable()?;
        self.check_attach_btf_id()?;
        Ok(())
    }

    /// `check_and_resolve_insns()` (7.x; `resolve_pseudo_ldimm64()` before): in instruction
    /// order, the `ld_imm64` checks and `add_used_map()` -> `check_map_prog_compatibility()` for
    /// map references, the opcode table and `check_insn_fields()` for the others.
    ///
    /// The instruction checks of its own are the same for every profile with the same switches
    /// (`Prepared::insn_scan`: the first instruction they refuse); the map references before that
    /// instruction are checked here, in order.
    fn check_and_resolve_insns(&self) -> Step<()> {
        let refused = self.prep.insn_scan(self.profile.insn_fields_in_prepass, self.profile.gotox);
        let end = refused.map_or(usize::MAX, |(pc, _)| *pc);
        for &(pc, name, index, kinds) in &self.prep.map_refs {
            if pc >= end {
                break;
            }
            self.check_map_prog_compatibility(name, index, kinds)?;
        }
        match refused {
            Some((_, stop)) => Err(stop.clone()),
            None => Ok(()),
        }
    }

    /// `add_used_map()` -> `check_map_prog_compatibility()` for the map `name` (`index`: its
    /// [`Machine::map_index`], and `kinds`, its `prepared::value_kinds`, found by `Prepared`).
    fn check_map_prog_compatibility(&self, name: &str, index: Option<usize>, kinds: u32) -> Step<()> {
        let Some(mi) = index else {
            return Err(Stop::Unsupported(format!("unknown map `{name}`")));
        };
        let m = self.map(mi);
        let has = |k: FieldKind| kinds & 1 << k as u32 != 0;
        if (has(FieldKind::ListHead) || has(FieldKind::RbRoot))
            && self.profile.tracing_prog_types.contains(&self.case.prog_type)
            && self.on(Rule::ProgTypeCompat)
        {
            return Err(Stop::Reject(None, special::TRACING_GRAPH_ROOT.into()));
        }
        if (has(FieldKind::SpinLock) || has(FieldKind::ResSpinLock))
            && self.case.prog_type == ProgType::SocketFilter
            && self.on(Rule::ProgTypeCompat)
        {
            return Err(Stop::Reject(None, self.profile.messages.socket_filter_lock.clone()));
        }
        if has(FieldKind::ResSpinLock) && !self.profile.res_spin_lock {
            return Err(Stop::Unsupported("struct bpf_res_spin_lock is unknown to this kernel".into()));
        }
        let traced =
            has(FieldKind::SpinLock) || (self.profile.tracing_res_spin_lock && has(FieldKind::ResSpinLock));
        if traced
            && self.profile.tracing_prog_types.contains(&self.case.prog_type)
            && self.on(Rule::ProgTypeCompat)
        {
            return Err(Stop::Reject(None, self.profile.messages.tracing_lock.clone()));
        }
        let tracing =
            self.profile.tracing_prog_types.contains(&self.case.prog_type) && self.on(Rule::ProgTypeCompat);
        super::timer::timer_prog_compat(m, tracing, self.profile.tracing_timer_refused)?;
        if m.btf && m.value.fields.iter().filter(|f| f.kind.is_lock()).count() > 1 {
            return Err(Stop::Unsupported("a map value with more than one lock fails map creation".into()));
        }
        self.sleepable_map_check(m)
    }

    fn kfunc_exists(&self, name: &str) -> Step<()> {
        // A kfunc the profile says this kernel lacks (vmlinux and its own bpf_testmod), even where
        // the case declares it as a kernel kfunc to resolve.
        if self.profile.absent_kfuncs.iter().any(|k| k == name) {
            return Err(Stop::Unsupported(crate::compare::absent_kfunc_reason(name, &self.profile.name)));
        }
        // Likewise the res-lock kfuncs of a kernel without bpf_res_spin_lock, declared or not
        // (graph-res-lock.toml declares them for allocated objects: debian:6.12's loader finds no
        // such kfunc).
        if name.starts_with("bpf_res_spin_") && !self.profile.res_spin_lock {
            return Err(Stop::Unsupported(crate::compare::absent_kfunc_reason(name, &self.profile.name)));
        }
        Ok(())
    }

    /// `do_check()` from one start state: explores fall-through first and pushed branches after.
    fn walk(&mut self, start: State) -> Step<()> {
        // Each pending state with env->id_gen at its fork and its path's `sibling_ids` then.
        let mut pending = vec![(start, self.id_gen, false)];
        while let Some((mut st, fork_ids, sibling_ids)) = pending.pop() {
            self.sibling_ids = sibling_ids || fork_ids != self.id_gen;
            loop {
                if self.pruned(&mut st) {
                    break;
                }
                self.steps += 1;
                if self.steps > STEP_BUDGET {
                    return Err(Stop::Unsupported(format!(
                        "exploration exceeded {STEP_BUDGET} instructions (loops are not modelled)"
                    )));
                }
                // Matched in place (no `?`): the result is moved out only on a branch, not
                // copied whole after every step.
                match self.step(&mut st) {
                    Ok(Flow::Next(pc)) => st.pc = pc,
                    Ok(Flow::Branch(pc, mut other)) => {
                        other.ids_exact = false;
                        pending.push((other, self.id_gen, self.sibling_ids));
                        st.pc = pc;
                    }
                    Ok(Flow::Done) => break,
                    Err(stop) => return Err(stop),
                }
            }
        }
        Ok(())
    }

    /// Register `r` of the current frame, for a read (`check_reg_arg(..., SRC_OP)`). Inlined at
    /// its many callers (most instructions read one or two registers); the refusals are out of
    /// line (`read_reg_refused`).
    #[inline]
    pub fn read_reg(&self, st: &State, pc: usize, r: u8) -> Step<Reg> {
        match st.cur_ref().regs.get(r as usize) {
            Some(reg) if !matches!(reg, Reg::NotInit) => Ok(*reg),
            _ => self.read_reg_refused(pc, r),
        }
    }

    /// Why [`Machine::read_reg`] refuses `r`: no such register, or `NOT_INIT` ("!read_ok").
    #[cold]
    #[inline(never)]
    fn read_reg_refused(&self, pc: usize, r: u8) -> Step<Reg> {
        if r > 10 {
            return Err(Stop::Unsupported(format!("register r{r} does not exist")));
        }
        self.reject(pc, self.msg(&self.profile.messages.not_read_ok, &[("regno", r.to_string())]))
    }

    /// Sets register `r` of the current frame (`check_reg_arg(..., DST_OP)`); inlined, the
    /// refusals out of line (`write_reg_refused`).
    #[inline]
    fn write_reg(&self, st: &mut State, r: u8, v: Reg) -> Step<()> {
        if r >= 10 {
            return Self::write_reg_refused(r);
        }
        st.cur().regs[r as usize] = v;
        Ok(())
    }

    /// Why [`Machine::write_reg`] refuses `r` (R10 or no such register).
    #[cold]
    #[inline(never)]
    fn write_reg_refused(r: u8) -> Step<()> {
        if r > 10 {
            return Err(Stop::Unsupported(format!("register r{r} does not exist (\"R{r} is invalid\")")));
        }
        Err(Stop::Unsupported("writes to r10 (\"frame pointer is read only\") are not modelled".into()))
    }

    fn step(&mut self, st: &mut State) -> Step<Flow> {
        let pc = st.pc;
        let Some(insn) = self.case.program.insns.get(pc).copied() else {
            return Err(Stop::Unsupported(format!("control reaches insn {pc}, past the end")));
        };
        // 6.12: reserved fields are refused where do_check() meets the instruction (check_alu_op(),
        // the BPF_STX / BPF_ST / BPF_JMP arms of do_check(), check_cond_jmp_op()); LD_ABS/IND in
        // check_ld_abs(), after its program-type check.
        if !self.profile.insn_fields_in_prepass && insn.class() != BPF_LD {
            if let Err(m) = fields::check_insn_fields(&insn) {
                return self.reject(pc, m);
            }
        }
        if self.alloc_var.get() {
            self.alloc_var_use(st, pc, &insn)?;
        }
        match insn.class() {
            BPF_ALU | BPF_ALU64 => self.alu(st, pc, insn).map(|_| Flow::Next(pc + 1)),
            BPF_LD if insn.is_ld_imm64() => self.ld_imm64(st, pc, insn).map(|_| Flow::Next(pc + 2)),
            BPF_LD if matches!(insn.mode(), BPF_ABS | BPF_IND) => {
                self.ld_abs(st, pc, insn).map(|_| Flow::Next(pc + 1))
            }
            BPF_LDX if insn.mode() == BPF_MEM => {
                self.read_reg(st, pc, insn.src)?;
                if insn.dst >= 10 {
                    return Err(Stop::Unsupported("load into r10".into()));
                }
                let base = st.cur_ref().regs[insn.src as usize].clone();
                let v = self.mem_access(st, pc, insn.src, &base, insn.off as i64, insn.size_bytes(), None)?;
                let v = self.number_loaded_ptr(v);
                self.save_arena_ptr_type(pc, &base, false)?;
                self.write_reg(st, insn.dst, v)?;
                Ok(Flow::Next(pc + 1))
            }
            BPF_STX if insn.mode() == BPF_MEM => {
                let v = self.read_reg(st, pc, insn.src)?;
                let base = self.read_reg(st, pc, insn.dst)?;
                self.mem_access(st, pc, insn.dst, &base, insn.off as i64, insn.size_bytes(), Some(v))?;
                self.save_arena_ptr_type(pc, &base, false)?;
                Ok(Flow::Next(pc + 1))
            }
            BPF_ST if insn.mode() == BPF_MEM => {
                let base = self.read_reg(st, pc, insn.dst)?;
                let v = Reg::Scalar(Scalar::known(insn.imm as i64));
                self.mem_access(st, pc, insn.dst, &base, insn.off as i64, insn.size_bytes(), Some(v))?;
                self.save_arena_ptr_type(pc, &base, false)?;
                Ok(Flow::Next(pc + 1))
            }
            BPF_STX if insn.mode() == BPF_ATOMIC => self.atomic(st, pc, insn).map(|_| Flow::Next(pc + 1)),
            BPF_JMP | BPF_JMP32 => self.jmp(st, pc, insn),
            _ => Err(Stop::Unsupported(format!(
                "{} at {pc} is outside the modelled subset",
                fields::describe(&insn)
            ))),
        }
    }

    fn alu(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<()> {
        let is64 = insn.class() == BPF_ALU64;
        let op = insn.op();
        if super::arena::is_addr_space_cast(&insn) {
            let v = self.addr_space_cast(st, pc, insn)?;
            return self.write_reg(st, insn.dst, v);
        }
        if op == BPF_END || (op == BPF_MOV && insn.off != 0) {
            // Byte swaps, movsx: the result is an unknown scalar when the input is one.
            let d = self.read_reg(st, pc, insn.dst);
            let src = if op == BPF_MOV { insn.src } else { insn.dst };
            let v = if op == BPF_MOV && insn.source() == BPF_X { self.read_reg(st, pc, src)? } else { d? };
            if v.is_pointer() {
                return Err(Stop::Unsupported("byte swap / sign extension of a pointer".into()));
            }
            return self.write_reg(
                st,
                insn.dst,
                Reg::Scalar(if is64 { Scalar::unknown() } else { Scalar::below(u32::MAX as u64) }),
            );
        }
        let src = if insn.source() == BPF_X {
            self.read_reg(st, pc, insn.src)?
        } else {
            Reg::Scalar(Scalar::known(if is64 { insn.imm as i64 } else { insn.imm as u32 as i64 }))
        };
        if op == BPF_MOV {
            if insn.source() == BPF_X && matches!(&src, Reg::Scalar(s) if s.konst().is_none()) {
                // Both mark that env->id_gen may have moved: alloc.rs's reference ids (for the
                // whole check) and irq.rs's flag ids (this path).
                self.scalar_ids.set(true);
                st.ids_exact = false;
            }
            let v = match (&src, is64) {
                (_, true) => src.clone(),
                (Reg::Scalar(s), false) => Reg::Scalar(s.zext32()),
                (_, false) => Reg::Scalar(Scalar::below(u32::MAX as u64)),
            };
            return self.write_reg(st, insn.dst, v);
        }
        let dst = self.read_reg(st, pc, insn.dst)?;
        // check_alu_op(): after both operands are read, a constant divisor of zero and a constant
        // shift of at least the operand width are refused (a register divisor of zero is defined
        // at run time: the result is 0, or the dividend for a modulo).
        if insn.source() == BPF_K {
            if matches!(op, BPF_DIV | BPF_MOD) && insn.imm == 0 {
                return self.reject(pc, "div by zero".into());
            }
            let width = if is64 { 64 } else { 32 };
            if matches!(op, BPF_LSH | BPF_RSH | BPF_ARSH) && !(0..width).contains(&insn.imm) {
                return self.reject(pc, format!("invalid shift {}", insn.imm));
            }
        }
        if let Some(r) = self.arena_alu(pc, insn, &dst, &src)? {
            return self.write_reg(st, insn.dst, r);
        }
        let signed_div = matches!(op, BPF_DIV | BPF_MOD) && insn.off == 1;
        let res = match (&dst, &src) {
            // sdiv / smod: an unknown scalar.
            (Reg::Scalar(_), Reg::Scalar(_)) if signed_div => {
                Reg::Scalar(if is64 { Scalar::unknown() } else { Scalar::below(u32::MAX as u64) })
            }
            (Reg::Scalar(a), Reg::Scalar(b)) => {
                let r = scalar_op(op, *a, *b, is64);
                Reg::Scalar(if is64 { r } else { r.zext32() })
            }
            (p, Reg::Scalar(b)) if p.is_pointer() && is64 && matches!(op, BPF_ADD | BPF_SUB) => {
                // check_reg_sane_offset_scalar() checks the subtrahend itself (its smin), which
                // `-b` (unknown for a non-constant) loses: a bounded one from a map value is not
                // modelled (debian:7.3 accepts `map_value -= x & 7`; 6.12 refuses a later access).
                if op == BPF_SUB
                    && matches!(p, Reg::MapValue { null: false, .. })
                    && b.konst().is_none()
                    && b.smin != i64::MIN
                {
                    return Err(Stop::Unsupported(format!(
                        "map value pointer minus a bounded variable scalar at {pc}"
                    )));
                }
                let b = if op == BPF_SUB { -*b } else { *b };
                self.ptr_add(pc, insn.dst, p, b, op == BPF_SUB)?
            }
            _ => {
                return Err(Stop::Unsupported(format!(
                    "{} on {} and {} at {pc}",
                    fields::describe(&insn),
                    dst.type_str(),
                    src.type_str()
                )))
            }
        };
        self.write_reg(st, insn.dst, res)
    }

    /// `adjust_ptr_min_max_vals()` for pointer += scalar.
    fn ptr_add(&self, pc: usize, dst: u8, p: &Reg, b: Scalar, sub: bool) -> Step<Reg> {
        match (p, b.konst()) {
            (Reg::Packet { .. }, _) => self.pkt_add(pc, p, b, sub),
            (Reg::MapValue { null: true, .. }, _) => {
                let args = [("reg", format!("R{dst}")), ("type", p.type_str().to_string())];
                self.reject(pc, self.msg(&self.profile.messages.ptr_arith_null, &args))
            }
            (Reg::Stack { frame, off }, Some(c)) => Ok(Reg::Stack { frame: *frame, off: off + c }),
            // CONST_PTR_TO_MAP: only `+= 0` (a known zero) keeps the map pointer; anything else is
            // refused (same text in 6.12, 7.2 and 7.3).
            (Reg::MapPtr { .. }, Some(0)) if !sub => Ok(p.clone()),
            (Reg::MapPtr { .. }, _) => {
                self.reject(pc, format!("R{dst} pointer arithmetic on {} prohibited", p.type_str()))
            }
            // adjust_ptr_min_max_vals(): a constant added to an allocated object's pointer (a
            // maybe-null one is refused as for a map value).
            (Reg::Alloc { null: true, .. }, _) => {
                let args = [("reg", format!("R{dst}")), ("type", p.type_str().to_string())];
                self.reject(pc, self.msg(&self.profile.messages.ptr_arith_null, &args))
            }
            // A scalar that is not a known constant, or a pointer that already has a variable
            // offset: varoff.rs (owned objects only).
            (Reg::Alloc { null: false, .. }, None) | (Reg::AllocVar { .. }, _) => {
                let r = self.alloc_var_add(p, b)?;
                self.alloc_var.set(true);
                Ok(r)
            }
            (a @ Reg::Alloc { off, null: false, .. }, Some(c)) if c.abs() < BPF_MAX_VAR_OFF => {
                let mut a = a.clone();
                if let Reg::Alloc { off: o, .. } = &mut a {
                    *o = off + c;
                }
                Ok(a)
            }
            (Reg::MapValue { null: false, map, off, var, id }, Some(c)) => {
                // check_reg_sane_offset_scalar() / _ptr(): offsets beyond BPF_MAX_VAR_OFF.
                if c.abs() >= BPF_MAX_VAR_OFF || (off + c).abs() >= BPF_MAX_VAR_OFF {
                    return Err(Stop::Unsupported("pointer offset beyond BPF_MAX_VAR_OFF".into()));
                }
                Ok(Reg::MapValue { map: *map, off: off + c, var: *var, id: *id, null: false })
            }
            (Reg::MapValue { null: false, map, off, var, id }, None) => {
                // check_reg_sane_offset_scalar(), in its order (a known offset took the branch above).
                if b.smin == i64::MIN {
                    return self.reject(
                        pc,
                        self.msg(&self.profile.messages.ptr_unbounded_min, &[("type", "map_value".into())]),
                    );
                }
                if b.smin >= BPF_MAX_VAR_OFF || b.smin <= -BPF_MAX_VAR_OFF {
                    let args = [("value", b.smin.to_string()), ("type", "map_value".into())];
                    return self.reject(pc, self.msg(&self.profile.messages.ptr_offset_oob, &args));
                }
                // A larger smax passes (only smin is checked): the uses of the pointer check its
                // bounds (check_mem_region_access(): "unbounded memory access"; a lock, kptr, timer
                // or graph root argument wants a constant offset first).
                let nv = match var.get() {
                    Some(v) => v + b,
                    None => b,
                };
                Ok(Reg::MapValue { map: *map, off: *off, var: VarOff::of(Some(nv)), id: *id, null: false })
            }
            // adjust_ptr_min_max_vals() on PTR_TO_BTF_ID (trusted, MEM_RCU, legacy or untrusted;
            // the same in 6.12, 7.2 and 7.3): a maybe-null one is refused as for a map value; a
            // known constant moves the pointer (6.12 into reg->off, 7.x into a constant var_off;
            // both are added to a load's offset by check_ptr_to_btf_access()). A variable offset
            // is not modelled, nor a maybe-null legacy one (bpf_kptr_xchg()'s result, whose
            // printed flags the model does not keep).
            (Reg::Kernel { null: true, trust, .. }, _) if *trust != Trust::Legacy => {
                let args = [("reg", format!("R{dst}")), ("type", p.type_str().to_string())];
                self.reject(pc, self.msg(&self.profile.messages.ptr_arith_null, &args))
            }
            (k @ Reg::Kernel { off, null: false, .. }, Some(c))
                if c.abs() < BPF_MAX_VAR_OFF && (off + c).abs() < BPF_MAX_VAR_OFF =>
            {
                let mut k = k.clone();
                if let Reg::Kernel { off: o, .. } = &mut k {
                    *o = off + c;
                }
                Ok(k)
            }
            _ => Err(Stop::Unsupported(format!("pointer arithmetic on {} at {pc}", p.type_str()))),
        }
    }

    fn ld_imm64(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<()> {
        let v = match (insn.src, self.case.program.relocs.get(&pc)) {
            (0, _) => {
                let hi = self.case.program.insns.get(pc + 1).map_or(0, |n| n.imm as u32 as u64);
                Reg::Scalar(Scalar::known(((hi << 32) | insn.imm as u32 as u64) as i64))
            }
            (BPF_PSEUDO_MAP_FD, Some(Reloc::Map { name })) => {
                Reg::MapPtr { map: self.map_index(name).expect("checked before the walk") }
            }
            (BPF_PSEUDO_MAP_VALUE, Some(Reloc::MapValue { name, .. }))
                if self.arena_map_value(name).is_some() =>
            {
                self.arena_map_value(name).expect("an arena")
            }
            (BPF_PSEUDO_MAP_VALUE, Some(Reloc::MapValue { name, offset })) => {
                // check_ld_imm(): reg->id stays 0, the value is not distinct.
                Reg::MapValue {
                    map: self.map_index(name).expect("checked before the walk"),
                    off: *offset as i64,
                    var: VarOff::NONE,
                    id: 0,
                    null: false,
                }
            }
            (BPF_PSEUDO_BTF_ID, Some(Reloc::KsymFunc { name, weak, proto })) => {
                super::ksym::ksym_func_reg(self.profile.kernel_btf.0.as_deref(), name, *weak, proto)?
            }
            (BPF_PSEUDO_BTF_ID, Some(Reloc::KsymVar { name, weak, shape })) => {
                super::ksym::ksym_var_reg(self.profile.kernel_btf.0.as_deref(), name, *weak, shape)?
            }
            (BPF_PSEUDO_FUNC, _) => {
                super::callbacks::func_ref(pc, insn, self.prep.func_info, |s| self.globals.contains_key(&s))?
            }
            _ => return Err(Stop::Unsupported(format!("ld_imm64 form src={} at {pc}", insn.src))),
        };
        self.write_reg(st, insn.dst, v)
    }

    /// `check_ld_abs()`.
    fn ld_abs(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<()> {
        let m = &self.profile.messages;
        if !self.profile.ld_abs_prog_types.contains(&self.case.prog_type) {
            return self.reject(pc, m.ld_abs_prog_type.clone());
        }
        if !self.profile.insn_fields_in_prepass {
            if let Err(msg) = fields::check_insn_fields(&insn) {
                return self.reject(pc, msg);
            }
        }
        if insn.mode() == BPF_IND {
            self.read_reg(st, pc, insn.src)?;
        }
        let r6 = self.read_reg(st, pc, 6)?;
        if !st.locks.is_empty() && self.on(Rule::LdAbsUnderLock) {
            return self.reject(pc, m.ld_abs_under_lock.clone());
        }
        if r6 != Reg::Ctx {
            return self.reject(pc, m.ld_abs_r6.clone());
        }
        if !st.refs.is_empty() {
            return Err(Stop::Unsupported(format!("BPF_LD_[ABS|IND] with {}", st.refs_str())));
        }
        for r in 1..=5 {
            st.cur().regs[r] = Reg::NotInit;
        }
        st.cur().regs[0] = Reg::Scalar(Scalar::unknown());
        Ok(())
    }

    fn atomic(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<()> {
        if matches!(insn.imm, BPF_LOAD_ACQ | BPF_STORE_REL) && self.profile.load_acquire_store_release {
            return self.arena_load_acq_store_rel(st, pc, insn);
        }
        if !matches!(insn.size(), BPF_W | BPF_DW) || matches!(insn.imm, BPF_LOAD_ACQ | BPF_STORE_REL) {
            return Err(Stop::Unsupported("atomic load-acquire/store-release or odd size".into()));
        }
        let v = self.read_reg(st, pc, insn.src)?;
        if insn.imm == BPF_CMPXCHG {
            self.read_reg(st, pc, 0)?;
        }
        let base = self.read_reg(st, pc, insn.dst)?;
        // A map value not yet checked against NULL: check_atomic_rmw() (7.x; check_atomic() in
        // 6.12) passes it to check_mem_access(), which refuses it as it refuses a load
        // ("invalid mem access 'map_value_or_null'"), after the "leaks addr into mem" checks and
        // check_ptr_alignment() (strict for atomics), which the model leaves out.
        if let Reg::MapValue { null: true, off, var: VarOff::NONE, .. } = base {
            let r0_pointer = insn.imm == BPF_CMPXCHG && st.cur_ref().regs[0].is_pointer();
            if v.is_pointer() || r0_pointer || !is_aligned(off + insn.off as i64, insn.size_bytes()) {
                return Err(Stop::Unsupported(
                    "atomic on map_value_or_null with a pointer operand or a misaligned offset".into(),
                ));
            }
            return self
                .mem_access(st, pc, insn.dst, &base, insn.off as i64, insn.size_bytes(), None)
                .map(drop);
        }
        if matches!(base, Reg::Stack { .. }) {
            return self.stack_atomic(st, pc, insn, &base, &v);
        }
        let arena_ok = base == Reg::Arena && super::arena::arena_atomic_supported(insn.imm);
        if !matches!(base, Reg::MapValue { null: false, .. }) && !arena_ok {
            return Err(Stop::Unsupported(format!("atomic on {}", base.type_str())));
        }
        self.atomic_alignment(pc, &base, insn.off as i64, insn.size_bytes())?;
        self.mem_access(st, pc, insn.dst, &base, insn.off as i64, insn.size_bytes(), Some(v))?;
        self.save_arena_ptr_type(pc, &base, true)?;
        if insn.imm == BPF_CMPXCHG {
            st.cur().regs[0] = Reg::Scalar(Scalar::of_size(insn.size_bytes()));
        } else if insn.imm & BPF_FETCH != 0 {
            self.write_reg(st, insn.src, Reg::Scalar(Scalar::of_size(insn.size_bytes())))?;
        }
        Ok(())
    }

    /// `BPF_LOAD_ACQ` / `BPF_STORE_REL` (7.2, 7.3: `check_atomic()` -> `check_atomic_load()` /
    /// `check_atomic_store()`) through an arena pointer: `atomic_ptr_type_ok()` asks
    /// `bpf_jit_supports_insn(insn, true)`, which x86-64 grants them at any size
    /// (arch/x86/net/bpf_jit_comp.c refuses only the fetching and/or/xor), then
    /// `check_load_mem()` / `check_store_reg()` as for `BPF_LDX` / `BPF_STX` (their strict
    /// alignment checks nothing on an arena, `check_ptr_alignment()`). The load checks its
    /// pointer before the type test, the store after `check_store_reg()`; other pointers
    /// (`is_load_acq_unsafe()`, the ctx / packet / socket refusals, alignment) are not modelled.
    fn arena_load_acq_store_rel(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<()> {
        let load = insn.imm == BPF_LOAD_ACQ;
        let ptr = if load { insn.src } else { insn.dst };
        if st.cur_ref().regs.get(ptr as usize) != Some(&Reg::Arena) {
            return Err(Stop::Unsupported(
                "atomic load-acquire/store-release through a pointer other than an arena".into(),
            ));
        }
        if load {
            if insn.dst >= 10 {
                return Err(Stop::Unsupported("load into r10".into()));
            }
            let v =
                self.mem_access(st, pc, insn.src, &Reg::Arena, insn.off as i64, insn.size_bytes(), None)?;
            self.save_arena_ptr_type(pc, &Reg::Arena, false)?;
            return self.write_reg(st, insn.dst, v);
        }
        let v = self.read_reg(st, pc, insn.src)?;
        self.mem_access(st, pc, insn.dst, &Reg::Arena, insn.off as i64, insn.size_bytes(), Some(v))?;
        self.save_arena_ptr_type(pc, &Reg::Arena, false)
    }

    /// An atomic on a stack slot at a fixed offset (`check_atomic_rmw()`, 7.2 / 7.3;
    /// `check_atomic()`, 6.12): `check_mem_access()` reads the slot (the fetch's register, R0
    /// for `cmpxchg`, filled as a load fills it: `check_stack_read_fixed_off()`), the pointer's
    /// type is saved (`save_aux_ptr_type()`, 7.x: not a stack pointer on one path and an arena
    /// on another), then the slot is written with no value register
    /// (`check_stack_write_fixed_off()`, `value_regno` -1: a spill in the slot scrubbed, the
    /// bytes written `STACK_MISC`). A pointer operand (let through by `allow_ptr_leaks`), a spilled
    /// pointer in the slot, or a fetch into the base register are not modelled.
    fn stack_atomic(&mut self, st: &mut State, pc: usize, insn: Insn, base: &Reg, v: &Reg) -> Step<()> {
        let Reg::Stack { frame, off } = *base else { return Ok(()) };
        let cmpxchg = insn.imm == BPF_CMPXCHG;
        let load_reg = if cmpxchg { Some(0) } else { (insn.imm & BPF_FETCH != 0).then_some(insn.src) };
        let slot = (off + insn.off as i64).div_euclid(8) * 8;
        let spilled_ptr = st.frames[frame].stack.spills.get(&slot).is_some_and(|(r, _)| r.is_pointer());
        if v.is_pointer()
            || (cmpxchg && st.cur_ref().regs[0].is_pointer())
            || spilled_ptr
            || load_reg == Some(insn.dst)
        {
            return Err(Stop::Unsupported(
                "atomic on the stack with a pointer operand, a spilled pointer or a fetch into its base"
                    .into(),
            ));
        }
        let size = insn.size_bytes();
        let loaded = self.mem_access(st, pc, insn.dst, base, insn.off as i64, size, None)?;
        self.save_arena_ptr_type(pc, base, true)?;
        self.mem_access(st, pc, insn.dst, base, insn.off as i64, size, Some(Reg::NotInit))?;
        if let Some(r) = load_reg {
            self.write_reg(st, r, loaded)?;
        }
        Ok(())
    }

    /// `check_atomic_rmw()` -> `check_mem_access(..., strict_alignment_once = true)` ->
    /// `check_ptr_alignment()` -> `check_generic_ptr_alignment()`: a map value accessed by an
    /// atomic must be aligned to the access size, checked before bounds and special fields.
    fn atomic_alignment(&self, pc: usize, base: &Reg, off: i64, size: u8) -> Step<()> {
        let Reg::MapValue { off: o, var, .. } = base else { return Ok(()) };
        let v = match var.get() {
            None => 0,
            Some(v) => v
                .konst()
                .ok_or_else(|| Stop::Unsupported("alignment of a variable map value offset".into()))?,
        };
        if is_aligned(o + v + off, size) {
            return Ok(());
        }
        let p = self.profile;
        let args: Vec<(&str, String)> = if p.ptr_off_in_var_off {
            // tnum_strn(reg->var_off), var_off holding the whole constant offset.
            vec![
                ("var_off", tnum_const_str(o + v, true)),
                ("off", off.to_string()),
                ("size", size.to_string()),
            ]
        } else {
            vec![
                ("var_off", tnum_const_str(v, false)),
                ("reg_off", o.to_string()),
                ("off", off.to_string()),
                ("size", size.to_string()),
            ]
        };
        self.reject(pc, self.msg(&p.messages.misaligned_access, &args))
    }

    /// `check_mem_access()` for the pointer types of the subset. `value` is set for a store.
    #[allow(clippy::too_many_arguments)]
    pub fn mem_access(
        &self,
        st: &mut State,
        pc: usize,
        regno: u8,
        base: &Reg,
        off: i64,
        size: u8,
        value: Option<Reg>,
    ) -> Step<Reg> {
        let m = &self.profile.messages;
        // Built only for a message (a store or load that passes needs no string).
        let reg = || format!("R{regno}");
        match base {
            // check_mem_access(): no bounds on an arena (the JIT checks them); a load is unknown.
            Reg::Arena => Ok(if value.is_none() { Reg::Scalar(Scalar::of_size(size)) } else { Reg::NotInit }),
            Reg::Stack { frame, off: o } => {
                let at = o + off;
                if st.iter_overlaps(*frame, at, size as i64) {
                    return Err(Stop::Unsupported("load or store on an iterator's stack slot".into()));
                }
                self.irq_slot_access(st, *frame, at, size, value.is_some())?;
                if at < -512 || at + size as i64 > 0 || at % size as i64 != 0 {
                    return Err(Stop::Unsupported(format!(
                        "stack access at {at} size {size} is out of range or misaligned"
                    )));
                }
                // A spill or fill of an unknown scalar may take an id in the kernel.
                let spill = matches!(&value, Some(Reg::Scalar(s)) if s.konst().is_none());
                let fill = value.is_none()
                    && st.frames[*frame]
                        .stack
                        .spills
                        .get(&(at.div_euclid(8) * 8))
                        .is_some_and(|(r, _)| matches!(r, Reg::Scalar(s) if s.konst().is_none()));
                if spill || fill {
                    st.ids_exact = false;
                }
                let fr = &mut st.frames[*frame];
                match value {
                    Some(v) => {
                        if matches!(&v, Reg::Scalar(s) if s.konst().is_none()) {
                            self.scalar_ids.set(true);
                        }
                        fr.stack.write(at, size, &v);
                        Ok(Reg::NotInit)
                    }
                    None => fr.stack.read(at, size).map_err(Stop::Unsupported),
                }
            }
            Reg::MapValue { null: false, map, off: o, var, .. } => {
                let spec = self.map(*map);
                // check_map_access() -> check_mem_region_access().
                let var = var.get();
                let var_const = var.is_none_or(|v| v.konst().is_some());
                let region = Region::new(self.profile.ptr_off_in_var_off, *o, var, off);
                let (lo, hi) = match check_region(region, size, spec.value.size) {
                    Ok(r) => r,
                    Err(_) if !var_const => {
                        return Err(Stop::Unsupported(
                            "variable-offset map value access out of bounds".into(),
                        ));
                    }
                    Err(RegionError::MinNegative) => {
                        return self.reject(pc, self.msg(&m.min_negative, &[("reg", reg())]))
                    }
                    Err(RegionError::Unbounded) => {
                        return self.reject(pc, self.msg(&m.unbounded_access, &[("reg", reg())]))
                    }
                    Err(RegionError::OutOfBounds(at)) => {
                        let args = [
                            ("value_size", spec.value.size.to_string()),
                            ("off", at.to_string()),
                            ("size", size.to_string()),
                        ];
                        return self.reject(pc, self.msg(&m.map_value_oob, &args));
                    }
                };
                if spec.btf {
                    let locks = self.on(Rule::DirectAccess);
                    match special::check_access(spec, lo, hi, var_const, size, locks) {
                        FieldAccess::Plain => {}
                        FieldAccess::Direct(kind) => {
                            return self.reject(pc, self.msg(&m.direct_access, &[("kind", kind.into())]));
                        }
                        FieldAccess::BadKptr { kind, error } => {
                            let (fmt, args) = match error {
                                KptrError::VarOff => (&m.kptr_var_off, vec![]),
                                KptrError::Misaligned { expected, off } => (
                                    &m.kptr_misaligned,
                                    vec![("expected", expected.to_string()), ("off", off.to_string())],
                                ),
                                KptrError::Size => (&m.kptr_size, vec![]),
                            };
                            let mut args = args;
                            args.push(("kind", kind.to_string()));
                            return self.reject(pc, self.msg(fmt, &args));
                        }
                        FieldAccess::Kptr(at) if value.is_some() => {
                            self.kptr_field_store(pc, spec, at, value.as_ref().expect("a store"))?;
                        }
                        FieldAccess::Kptr(at) => return self.kptr_field_load(st, pc, spec, at),
                    }
                }
                if value.is_none() && spec.global_section && spec.name == crate::import::kconfig::KCONFIG_MAP
                {
                    return self.kconfig_load(lo, hi, var_const);
                }
                Ok(if value.is_some() { Reg::NotInit } else { Reg::Scalar(Scalar::of_size(size)) })
            }
            // check_ctx_access() -> the program type's is_valid_access() (ctx.rs).
            Reg::Ctx
                if matches!(self.case.prog_type, ProgType::Tracing | ProgType::Lsm)
                    || self.struct_ops_btf_ctx() =>
            {
                let reg = self.tracing_ctx_access(off, size, value.is_some(), pc)?;
                // __check_ctx_access() (7.2, 7.3): a __ref argument whose reference is gone.
                if let Reg::Kernel { ref_obj_id, .. } = reg {
                    if ref_obj_id != 0 && !st.refs.contains(&ref_obj_id) {
                        let msg = format!(
                            "invalid bpf_context access off={off}. Reference may already be released"
                        );
                        return self.reject(pc, msg);
                    }
                }
                Ok(reg)
            }
            Reg::Ctx => self.ctx_mem_access(pc, off, size, value.as_ref()),
            Reg::Packet { .. } => self.pkt_access(pc, base, off, size, value.as_ref()),
            Reg::Sock { kind, null: false, .. } => {
                self.sock_access(pc, regno, *kind, off, size, value.is_some())
            }
            Reg::Alloc { .. } => self.alloc_access(regno, base, off, size, value.as_ref(), pc),
            // check_ptr_to_btf_access() for a local object loaded from a kptr field
            // (`MEM_ALLOC | MEM_RCU`): type_is_ptr_alloc_obj(), so the same btf_struct_access()
            // walk as an owned object, stores allowed (6.12 has no such loads; 7.2 and 7.3 alike).
            Reg::AllocRcu { ty, id, null: false, non_owning, untrusted: false } => {
                let alloc = Reg::Alloc {
                    ty: *ty,
                    off: 0,
                    id: *id,
                    null: false,
                    percpu: false,
                    non_owning: *non_owning,
                };
                self.alloc_access(regno, &alloc, off, size, value.as_ref(), pc)
            }
            // check_ptr_to_map_access() / check_ptr_to_btf_access() (btf_access.rs).
            Reg::MapPtr { map } => self.map_ptr_access(pc, regno, *map, off, size, value.is_some()),
            Reg::Kernel { btf_id, off: koff, trust, ref_obj_id, null: false, .. } => {
                let (off, write, rcu_cs) = (off + koff, value.is_some(), self.in_rcu_cs(st));
                self.btf_ptr_access(pc, regno, *btf_id, *trust, *ref_obj_id != 0, off, size, write, rcu_cs)
            }
            // check_mem_access() for PTR_TO_MAP_KEY (the key a timer or for_each callback gets;
            // the same in 6.12, 7.2 and 7.3): a load is checked by check_mem_region_access()
            // against the key size and gives an unknown scalar of the load's size
            // (mark_reg_unknown(), then coerce_reg_to_size()). The register has no offset of its
            // own (arithmetic on it is not modelled). Modelled for an aligned load inside the key;
            // a load outside it, and a store ("write to change key ... not allowed"), are not.
            Reg::MapKey { map } if value.is_none() => {
                let key_size = self.map(*map).key_size as i64;
                if off < 0 || off + size as i64 > key_size || off % size as i64 != 0 {
                    return Err(Stop::Unsupported(format!(
                        "a load through map_key at {off} size {size} (outside the key or misaligned)"
                    )));
                }
                Ok(Reg::Scalar(Scalar::of_size(size)))
            }
            Reg::Mem { size: mem_size, rdonly, parent, null: false, .. } => {
                self.kfunc_mem_access(st, pc, regno, *mem_size, *rdonly, *parent, off, size, value.as_ref())
            }
            Reg::MapValue { null: true, .. }
            | Reg::Sock { null: true, .. }
            | Reg::Kernel { null: true, .. }
            | Reg::AllocRcu { null: true, .. }
            | Reg::Scalar(_) => self.reject(
                pc,
                self.msg(&m.invalid_mem_access, &[("reg", reg()), ("type", base.type_str().into())]),
            ),
            _ => Err(Stop::Unsupported(format!(
                "memory access through {} is outside the modelled subset",
                base.type_str()
            ))),
        }
    }

    fn jmp(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<Flow> {
        let op = insn.op();
        match op {
            BPF_JA => {
                let off = if insn.class() == BPF_JMP32 { insn.imm as i64 } else { insn.off as i64 };
                return Ok(Flow::Next((pc as i64 + off + 1) as usize));
            }
            BPF_CALL => return self.call(st, pc, insn),
            BPF_EXIT => return self.exit(st, pc),
            BPF_JCOND if insn.code == (BPF_JMP | BPF_JCOND) && insn.src == 0 => {
                return self.may_goto(st, pc, insn)
            }
            _ => {}
        }
        let Some(cmp) = CmpOp::from_op(op) else {
            return Err(Stop::Unsupported(format!("{} at {pc}", fields::describe(&insn))));
        };
        let target = (pc as i64 + insn.off as i64 + 1) as usize;
        let is32 = insn.class() == BPF_JMP32;
        let src = if insn.source() == BPF_X { Some(self.read_reg(st, pc, insn.src)?) } else { None };
        let dst = self.read_reg(st, pc, insn.dst)?;
        if matches!(dst, Reg::Packet { .. }) || matches!(src, Some(Reg::Packet { .. })) {
            return self.pkt_cmp(st, pc, insn, cmp, dst, src);
        }
        let k = match &src {
            None => Some(insn.imm as i64),
            Some(Reg::Scalar(s)) => s.konst(),
            Some(_) => None,
        };
        match (&dst, k) {
            // mark_ptr_or_null_regs(): `if rX == 0` / `if rX != 0` on a maybe-null pointer. In the
            // NULL branch every copy becomes 0 and the reference it carries, if any, is released
            // (__release_reference_nomark()); in the other every copy is non-null, and a map
            // value keeps its id only when the map holds a lock (the lock is matched by id).
            (d, Some(0)) if d.maybe_null() && matches!(cmp, CmpOp::Eq | CmpOp::Ne) && !is32 => {
                let id = d.maybe_null_id();
                let mut null_st = st.clone();
                null_st.refs.retain(|r| Some(*r) != id);
                null_st.for_each_reg(|r| {
                    if r.maybe_null_id() == id {
                        *r = Reg::Scalar(Scalar::known(0));
                    }
                });
                let keep_map_id = self.map_has_lock(&dst);
                let case = self.case;
                st.for_each_reg(|r| {
                    if r.maybe_null_id() != id {
                        return;
                    }
                    if let Some(inner) = super::inner::not_null_inner(case, r) {
                        *r = inner;
                        return;
                    }
                    match r {
                        Reg::MapValue { null, id, .. } => {
                            *null = false;
                            if !keep_map_id {
                                *id = 0;
                            }
                        }
                        Reg::BtfPtr { null, .. }
                        | Reg::Alloc { null, .. }
                        | Reg::AllocRcu { null, .. }
                        | Reg::Sock { null, .. }
                        | Reg::Kernel { null, .. }
                        | Reg::Mem { null, .. } => *null = false,
                        _ => unreachable!("only pointers have a maybe-null id"),
                    }
                });
                let (mut taken, fall) =
                    if cmp == CmpOp::Eq { (null_st, st.clone()) } else { (st.clone(), null_st) };
                taken.pc = target;
                *st = fall;
                Ok(Flow::Branch(pc + 1, taken))
            }
            // Two non-null PTR_TO_BTF_ID compared (`if (current != task)`): is_branch_taken()
            // decides nothing for two pointers, and check_cond_jmp_op() marks nothing for
            // PTR_TO_BTF_ID (its pointer == maybe-null pointer rule excludes them): both branches.
            (Reg::Kernel { null: false, .. }, None)
                if !is32
                    && matches!(cmp, CmpOp::Eq | CmpOp::Ne)
                    && matches!(&src, Some(Reg::Kernel { null: false, .. })) =>
            {
                self.both(st, pc, target)
            }
            // is_branch_taken(): a pointer against 0 is decided only where reg_not_null() holds
            // (and, 7.x, never in a 32-bit compare); otherwise both branches, the register
            // unchanged in each (it has no PTR_MAYBE_NULL to mark).
            (p, Some(0)) if p.is_pointer() && !p.maybe_null() && matches!(cmp, CmpOp::Eq | CmpOp::Ne) => {
                if (is32 && self.profile.pointer_branch_7x) || !self.reg_not_null(st, p) {
                    return self.both(st, pc, target);
                }
                Ok(Flow::Next(if cmp == CmpOp::Ne { target } else { pc + 1 }))
            }
            (Reg::Scalar(s), Some(k)) => {
                let s = *s;
                let decided = if is32 { cmp.decided32(&s, k) } else { cmp.decided(&s, k) };
                match decided {
                    Some(true) => Ok(Flow::Next(target)),
                    Some(false) => Ok(Flow::Next(pc + 1)),
                    None => {
                        let mut taken = st.clone();
                        // reg_set_min_max(): the model narrows the 64-bit bounds only where a
                        // 32-bit compare means the same (both values below 2^31).
                        let k = if is32 { k as u32 as i64 } else { k };
                        if !is32 || (s.umax <= i32::MAX as u64 && k <= i32::MAX as i64) {
                            if let Some(r) = s.refine(cmp, k) {
                                taken.cur().regs[insn.dst as usize] = Reg::Scalar(r);
                            }
                            if let Some(r) = s.refine(cmp.negate(), k) {
                                st.cur().regs[insn.dst as usize] = Reg::Scalar(r);
                            }
                        }
                        taken.pc = target;
                        Ok(Flow::Branch(pc + 1, taken))
                    }
                }
            }
            (Reg::Scalar(_), None) => self.both(st, pc, target),
            _ => Err(Stop::Unsupported(format!("conditional jump on {} at {pc}", dst.type_str()))),
        }
    }

    /// `reg_not_null()` for a pointer that is not maybe-null: PTR_TO_SOCKET, PTR_TO_TCP_SOCK,
    /// PTR_TO_SOCK_COMMON, PTR_TO_MAP_VALUE, PTR_TO_MAP_KEY, CONST_PTR_TO_MAP, PTR_TO_MEM (not
    /// untrusted), a trusted PTR_TO_BTF_ID (`is_trusted_reg()`: referenced, or PTR_TRUSTED /
    /// MEM_ALLOC / NON_OWN_REF alone) and, 7.x, PTR_TO_XDP_SOCK; never PTR_TO_CTX, PTR_TO_STACK,
    /// PTR_TO_FUNC, PTR_TO_ARENA or a legacy PTR_TO_BTF_ID (a module kfunc's non-acquired
    /// return, a `bpf_skc_to_*()` result). 7.x: not when the bounds reach BPF_MAX_VAR_OFF.
    fn reg_not_null(&self, st: &State, r: &Reg) -> bool {
        use super::sock::SockKind;
        let v7 = self.profile.pointer_branch_7x;
        match r {
            Reg::MapValue { off, var, .. } => {
                let (lo, hi) = var
                    .get()
                    .map_or((*off, *off), |v| (off.saturating_add(v.smin), off.saturating_add(v.smax)));
                !(v7 && (lo <= -BPF_MAX_VAR_OFF || hi >= BPF_MAX_VAR_OFF))
            }
            Reg::MapKey { .. } | Reg::MapPtr { .. } | Reg::Mem { .. } | Reg::Alloc { .. } => true,
            Reg::Sock { kind: SockKind::Xdp, .. } => v7,
            Reg::Sock { kind: SockKind::Btf, ref_obj_id, .. } | Reg::BtfPtr { ref_obj_id, .. } => {
                *ref_obj_id != 0 && st.refs.contains(ref_obj_id)
            }
            Reg::Sock { .. } => true,
            // is_trusted_reg(): a MEM_RCU, legacy or untrusted one is not (same in 6.12, 7.2, 7.3).
            Reg::Kernel { trust, ref_obj_id, .. } => {
                *trust == Trust::Trusted || (*ref_obj_id != 0 && st.refs.contains(ref_obj_id))
            }
            _ => false,
        }
    }

    fn both(&self, st: &mut State, pc: usize, target: usize) -> Step<Flow> {
        let mut taken = st.clone();
        taken.pc = target;
        Ok(Flow::Branch(pc + 1, taken))
    }

    fn map_has_lock(&self, r: &Reg) -> bool {
        match r {
            Reg::MapValue { map, .. } => {
                let m = self.map(*map);
                m.btf && m.value.has_lock()
            }
            _ => false,
        }
    }

    pub fn fresh_id(&mut self) -> u32 {
        self.id_gen += 1;
        self.id_gen
    }

    /// `BPF_EXIT`: `process_bpf_exit_full()` (7.x) / `do_check()` (6.12).
    fn exit(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        if self.in_callback(st) {
            return self.callback_exit(st, pc);
        }
        if st.frames.len() > 1 {
            return self.frame_exit(st, pc);
        }
        self.main_exit(st, pc)
    }

    /// `prepare_func_exit()` from a subprogram's frame (not a callback's).
    pub(super) fn frame_exit(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        // prepare_func_exit(): back to the caller; the lock state is the verifier state's. R0
        // is copied as it is: NOT_INIT is only an error where the caller reads it ("R0
        // !read_ok"); a stack pointer is refused whatever frame it points into.
        let r0 = st.cur_ref().regs[0].clone();
        if matches!(r0, Reg::Stack { .. }) {
            return self.reject(pc, "cannot return stack pointer to the caller".into());
        }
        let callee = st.frames.pop().expect("callee frame");
        let caller = st.cur();
        caller.regs[0] = r0;
        for r in 1..=5 {
            caller.regs[r] = Reg::NotInit;
        }
        Ok(Flow::Next(callee.callsite + 1))
    }

    /// `BPF_EXIT` of the main frame.
    fn main_exit(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        if !st.locks.is_empty() && self.on(Rule::ExitWithLock) {
            return self.reject(pc, self.profile.messages.exit_with_lock.clone());
        }
        // check_resource_leak(): after the lock, check_reference_leak() logs "Unreleased reference
        // id=%d alloc_insn=%d" per reference; its ids follow env->id_gen, which also numbers
        // scalars the model does not track.
        if self.case.prog_type == ProgType::StructOps {
            self.struct_ops_reference_leak(st, pc)?;
        } else {
            self.reference_leak(st, pc)?;
        }
        self.region_leak(st, pc, "BPF_EXIT instruction in main prog")?;
        if self.in_async_callback(st) {
            return self.async_callback_return(st, pc);
        }
        let rule = self.return_rule();
        if rule != ReturnRule::Base {
            self.exception_cb_return(st, pc, rule)?;
            self.check_attach_return(st, pc, rule)?;
            return Ok(Flow::Done);
        }
        let r0 = self.read_reg(st, pc, 0)?;
        if self.case.prog_type == ProgType::CgroupSkb && !matches!(&r0, Reg::Scalar(s) if s.umax <= 1) {
            return Err(Stop::Unsupported("cgroup_skb return value range check is not modelled".into()));
        }
        if r0.is_pointer() {
            return Err(Stop::Unsupported("returning a pointer is not modelled".into()));
        }
        Ok(Flow::Done)
    }
}

/// What the walk does after one instruction.
pub(crate) enum Flow {
    /// Continue at this instruction.
    Next(usize),
    /// Continue at the first; the second state is pushed for later (`push_stack()`). Not boxed:
    /// moving a `State` is cheaper than allocating for it at every branch.
    Branch(usize, State),
    /// This path is finished.
    Done,
}

fn scalar_op(op: u8, a: Scalar, b: Scalar, is64: bool) -> Scalar {
    if let (Some(x), Some(y)) = (a.konst(), b.konst()) {
        let (x, y) = if is64 { (x, y) } else { (x as u32 as i64, y as u32 as i64) };
        let shift_mask = if is64 { 63 } else { 31 };
        let v = match op {
            BPF_ADD => x.wrapping_add(y),
            BPF_SUB => x.wrapping_sub(y),
            BPF_MUL => x.wrapping_mul(y),
            BPF_DIV => {
                if y == 0 {
                    0
                } else if is64 {
                    (x as u64 / y as u64) as i64
                } else {
                    (x as u32 / y as u32) as i64
                }
            }
            BPF_MOD => {
                if y == 0 {
                    x
                } else if is64 {
                    (x as u64 % y as u64) as i64
                } else {
                    (x as u32 % y as u32) as i64
                }
            }
            BPF_OR => x | y,
            BPF_AND => x & y,
            BPF_XOR => x ^ y,
            BPF_LSH => x.wrapping_shl((y & shift_mask) as u32),
            BPF_RSH => {
                if is64 {
                    ((x as u64) >> (y & shift_mask)) as i64
                } else {
                    ((x as u32) >> (y & shift_mask)) as i64
                }
            }
            BPF_ARSH => {
                if is64 {
                    x >> (y & shift_mask)
                } else {
                    ((x as i32) >> (y & shift_mask)) as i64
                }
            }
            BPF_NEG => x.wrapping_neg(),
            _ => return Scalar::unknown(),
        };
        return Scalar::known(v);
    }
    match op {
        BPF_ADD => a + b,
        BPF_SUB => a + -b,
        BPF_AND => match (a.konst(), b.konst()) {
            (_, Some(m)) | (Some(m), _) if m >= 0 => Scalar::below(m as u64)
                .refine(CmpOp::Le, a.umax.min(m as u64) as i64)
                .unwrap_or(Scalar::below(m as u64)),
            _ => Scalar::unknown(),
        },
        // scalar_min_max_arsh(): the signed bounds shift; the unsigned ones follow from them.
        BPF_ARSH if is64 => match b.konst() {
            Some(k) if (0..64).contains(&k) => {
                let s = Scalar { smin: a.smin >> k, smax: a.smax >> k, umin: 0, umax: u64::MAX };
                if s.smin >= 0 {
                    Scalar::below(s.smax as u64).refine(CmpOp::Sge, s.smin).unwrap_or(s)
                } else {
                    s
                }
            }
            _ => Scalar::unknown(),
        },
        BPF_RSH => match b.konst() {
            Some(s) if (1..64).contains(&s) => Scalar::below(a.umax >> s),
            _ => Scalar::unknown(),
        },
        BPF_MOD => match b.konst() {
            Some(m) if m > 0 => Scalar::below(m as u64 - 1),
            _ => Scalar::unknown(),
        },
        _ => Scalar::unknown(),
    }
}
