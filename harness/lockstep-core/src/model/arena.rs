//! Arenas (`BPF_MAP_TYPE_ARENA`, kernel/bpf/arena.c): the map, `addr_space_cast`, `PTR_TO_ARENA`
//! loads, stores and arithmetic, and the arena kfuncs. The verifier does not check bounds of an
//! arena access (the JIT does); what it checks is here, with the verifier.c function of each rule.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State, Trust};
use super::{Step, Stop};
use crate::asm::Reloc;
use crate::case::{MapSpec, MapType};
use crate::insn::*;
use crate::kernel_btf::Walk;

/// `BPF_F_MMAPABLE`.
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_F_NO_USER_CONV` and `BPF_F_SEGV_ON_FAULT`, the other flags `arena_map_alloc()` takes.
const OTHER_ARENA_FLAGS: u32 = (1 << 18) | (1 << 17);
/// An arena spans at most 4 GiB of 4 KiB pages (`arena_map_alloc()`: `vm_range > SZ_4G`).
const MAX_ARENA_PAGES: u32 = 1 << 20;

/// What the verifier records per instruction about arena pointers (`struct bpf_insn_aux_data`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ArenaAux {
    /// `ptr_type` saved by `save_aux_ptr_type()` at a load or store: whether it was `PTR_TO_ARENA`.
    pub ptr_is_arena: Option<bool>,
    /// `needs_zext` / `prevent_zext` of an ALU64 instruction (7.3).
    pub needs_zext: bool,
    pub prevent_zext: bool,
}

/// The per-instruction records, shared by every path of one check.
pub(crate) type ArenaAuxTable = std::cell::RefCell<super::vecmap::VecMap<usize, ArenaAux>>;

/// Why the kernel refuses to create arena map `m` (`arena_map_alloc()`, `-EINVAL` / `-E2BIG`), if it does.
pub(crate) fn arena_create_refusal(m: &MapSpec) -> Option<&'static str> {
    if m.map_type != MapType::Arena {
        return None;
    }
    if m.key_size != 0 || m.value.size != 0 || m.max_entries == 0 {
        return Some("key_size and value_size must be 0 and max_entries (pages) not 0");
    }
    if m.flags & BPF_F_MMAPABLE == 0 || m.flags & !(BPF_F_MMAPABLE | OTHER_ARENA_FLAGS) != 0 {
        return Some(
            "map_flags must hold BPF_F_MMAPABLE and no flag but BPF_F_SEGV_ON_FAULT / BPF_F_NO_USER_CONV",
        );
    }
    if m.max_entries > MAX_ARENA_PAGES {
        return Some("more than 4 GiB of pages");
    }
    None
}

impl Machine<'_> {
    /// `env->prog->aux->arena`: the arena map an `ld_imm64` of the program refers to.
    pub(super) fn arena(&self) -> Option<usize> {
        self.case.program.relocs.values().find_map(|r| match r {
            Reloc::Map { name } | Reloc::MapValue { name, .. } => {
                self.map_index(name).filter(|&i| self.map(i).map_type == MapType::Arena)
            }
            _ => None,
        })
    }

    /// The prepass checks of arena maps: the kernel refusing to create one (the model does not
    /// predict map creation errors), and `check_map_prog_compatibility()`'s "Only one arena per
    /// program" at the first reference (in instruction order) of a second arena.
    pub(super) fn check_arenas(&self) -> Step<()> {
        for m in &self.case.maps {
            if let Some(why) = arena_create_refusal(m) {
                return Err(Stop::Unsupported(format!(
                    "arena map `{}` that the kernel refuses to create ({why})",
                    m.name
                )));
            }
        }
        // Only arena maps count below: a case without one has nothing to check (no name lookups).
        if !self.case.maps.iter().any(|m| m.map_type == MapType::Arena) {
            return Ok(());
        }
        let mut first: Option<&str> = None;
        for r in self.case.program.relocs.values() {
            let (Reloc::Map { name } | Reloc::MapValue { name, .. }) = r else { continue };
            let Some(i) = self.map_index(name) else { continue };
            if self.map(i).map_type != MapType::Arena {
                continue;
            }
            match first {
                None => first = Some(name),
                Some(f) if f != name => {
                    // The other prepass checks that come before it are not ordered here.
                    return Err(Stop::Unsupported("a program referring to two arenas".into()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `check_ld_imm()`: an `ld_imm64` of an arena's value (a global `__arena` variable) is an
    /// unknown scalar (the user address, rewritten by the JIT).
    pub(super) fn arena_map_value(&self, name: &str) -> Option<Reg> {
        let i = self.map_index(name)?;
        (self.map(i).map_type == MapType::Arena).then(|| Reg::Scalar(Scalar::unknown()))
    }

    /// `check_alu_op()` for `BPF_ALU64 | BPF_MOV | BPF_X` with `off == BPF_ADDR_SPACE_CAST`: only in
    /// a program with an arena; the result is an unknown scalar, a `PTR_TO_ARENA` for a cast from
    /// address space 1 to 0 (`imm == 1`). `imm` was checked with the instruction's fields.
    pub(super) fn addr_space_cast(&self, st: &mut State, pc: usize, insn: Insn) -> Step<Reg> {
        if self.arena().is_none() {
            return self.reject(
                pc,
                "addr_space_cast insn can only be used in a program that has an associated arena".into(),
            );
        }
        self.read_reg(st, pc, insn.src)?;
        Ok(if insn.imm == 1 { Reg::Arena } else { Reg::Scalar(Scalar::unknown()) })
    }

    /// `adjust_reg_min_max_vals()` with an arena operand: any operation, the result an arena
    /// pointer (the source's state when only it is one). On 7.3 an ALU64 instruction may not meet
    /// arena and non-arena operands on different paths (`needs_zext` / `prevent_zext`). `None`:
    /// no arena operand, the caller goes on.
    pub(super) fn arena_alu(&self, pc: usize, insn: Insn, dst: &Reg, src: &Reg) -> Step<Option<Reg>> {
        let is64 = insn.class() == BPF_ALU64;
        let arena = *dst == Reg::Arena || *src == Reg::Arena;
        if insn.op() == BPF_NEG {
            return Ok(None);
        }
        let checked = self.profile.arena_mixed_alu_check && is64;
        // Without an arena pointer in the program (`Prepared::arena_casts`) every instruction
        // only ever records `prevent_zext`, which refuses nothing.
        if !arena && (!checked || !self.prep.arena_casts || self.arena().is_none()) {
            return Ok(None);
        }
        if checked {
            let mut t = self.arena_aux.borrow_mut();
            let a = t.entry_or_default(pc);
            if (arena && a.prevent_zext) || (!arena && a.needs_zext) {
                return self.reject(pc, "same insn cannot be used with and without arena pointer".into());
            }
            if arena {
                a.needs_zext = true;
            } else {
                a.prevent_zext = true;
            }
        }
        Ok(arena.then_some(Reg::Arena))
    }

    /// `save_aux_ptr_type()` after a load, store or atomic through `base`: one instruction may not
    /// use an arena pointer on one path and another pointer on another (`reg_type_mismatch()`;
    /// `PTR_TO_ARENA` is not among the types that may mix). 6.12 saves the type of an atomic's
    /// pointer only when it is an arena.
    pub(super) fn save_arena_ptr_type(&self, pc: usize, base: &Reg, atomic: bool) -> Step<()> {
        let is_arena = *base == Reg::Arena;
        if atomic && !self.profile.atomic_ptr_type_saved && !is_arena {
            return Ok(());
        }
        // No arena pointer in the program: every entry would say "not arena", none can differ.
        if !self.prep.arena_casts {
            return Ok(());
        }
        let mut t = self.arena_aux.borrow_mut();
        let a = t.entry_or_default(pc);
        match a.ptr_is_arena {
            Some(prev) if prev != is_arena => {
                self.reject(pc, "same insn cannot be used with different pointers".into())
            }
            _ => {
                a.ptr_is_arena = Some(is_arena);
                Ok(())
            }
        }
    }

    /// The arena kfuncs (kernel/bpf/arena.c): `bpf_arena_alloc_pages(map, addr__ign, page_cnt,
    /// node_id, flags)` returns `void *` (an unknown scalar, `check_kfunc_call()`),
    /// `bpf_arena_free_pages(map, ptr__ign, page_cnt)` nothing, `bpf_arena_reserve_pages(map,
    /// ptr__ign, page_cnt)` (7.2 on) an int. On 6.12 alloc and free are `KF_SLEEPABLE`.
    pub(super) fn arena_kfunc_call(&self, st: &mut State, pc: usize, name: &str) -> Step<Option<Reg>> {
        let (args, ret) = match name {
            "bpf_arena_alloc_pages" => (5u8, Reg::Scalar(Scalar::unknown())),
            "bpf_arena_free_pages" => (3, Reg::NotInit),
            "bpf_arena_reserve_pages" if self.profile.arena_reserve_pages => {
                (3, Reg::Scalar(Scalar::unknown()))
            }
            _ => return Ok(None),
        };
        if self.profile.arena_kfuncs_sleepable && !self.case.sleepable {
            return self.reject(pc, format!("program must be sleepable to call sleepable kfunc {name}"));
        }
        // check_kfunc_args(): p__map a CONST_PTR_TO_MAP, the `__ign` argument skipped, the rest scalars.
        for r in 1..=args {
            let ok = match (r, self.read_reg(st, pc, r)) {
                (2, _) => true,
                (1, Ok(Reg::MapPtr { .. })) => true,
                (1, Ok(k @ Reg::Kernel { .. })) => {
                    self.arena_map_btf_arg(pc, name, &k)?;
                    true
                }
                (_, Ok(Reg::Scalar(_))) => r != 1,
                _ => false,
            };
            if !ok {
                return Err(Stop::Unsupported(format!(
                    "{name} argument R{r} is outside the modelled subset"
                )));
            }
        }
        Ok(Some(ret))
    }
}

impl Machine<'_> {
    /// `p__map` given a `PTR_TO_BTF_ID` (an iterator's `struct bpf_map *`): check_kfunc_args()
    /// takes a `__map` argument as a pointer to `struct bpf_map` (6.12 and 7.2
    /// `KF_ARG_PTR_TO_MAP`, falling through to `KF_ARG_PTR_TO_BTF_ID`; 7.3 `is_kfunc_arg_map()`:
    /// `KF_ARG_PTR_TO_BTF_ID`). It must be trusted or referenced (`is_trusted_reg()`; the arena
    /// kfuncs are not KF_RCU), "R1 must be referenced or trusted" otherwise, the same line in the
    /// three (7.2 logs "pointer in R1 isn't map pointer" before it without failing; 7.3 adds its
    /// diagnostic lines after it); then the struct must be bpf_map or start with one. A maybe-NULL
    /// pointer ("Possibly NULL pointer passed to trusted") and a moved one are not modelled.
    fn arena_map_btf_arg(&self, pc: usize, name: &str, reg: &Reg) -> Step<()> {
        let Reg::Kernel { btf_id, off, ref_obj_id, null, trust, .. } = *reg else {
            return Ok(());
        };
        let unsupported = |why: &str| Err(Stop::Unsupported(format!("{name} R1 ({why}) is not modelled")));
        if null {
            return unsupported("a maybe-NULL kernel pointer for p__map");
        }
        if off != 0 {
            return unsupported("a kernel pointer at an offset for p__map");
        }
        if ref_obj_id == 0 && trust != Trust::Trusted {
            return self.reject(pc, "R1 must be referenced or trusted".into());
        }
        let Some(k) = self.profile.kernel_btf.0.as_deref() else {
            return unsupported("a kernel pointer for p__map without the kernel's BTF");
        };
        // process_kf_arg_ptr_to_btf_id(): btf_struct_ids_match(reg's struct, struct bpf_map, not
        // strict) walks offset 0 (size 1) down the first members while they are structs.
        let mut have = btf_id;
        for _ in 0..8 {
            if k.name_of(have) == "bpf_map" {
                return Ok(());
            }
            match k.first_member_struct(have) {
                Some(next) => have = next,
                None => break,
            }
        }
        // No match: the last walk's log line when it ends on a pointer member (btf_struct_walk():
        // "cannot access ptr member ..."), none on a scalar; then the mismatch, "R1" in 7.2 and
        // 7.3 (reg_arg_name()), "args#0" in 6.12, whose line is not modelled (6.12 has no
        // res_spin_lock: the same switch kobj.rs takes for 6.12's kfunc argument messages).
        let first = match k.struct_access(have, 0, 1) {
            Err(msg) if msg.starts_with("cannot access ptr member") => format!("{msg}\n"),
            Ok(Walk::Scalar) => String::new(),
            _ => return unsupported("a p__map struct whose first member btf_struct_walk() walks otherwise"),
        };
        if !self.profile.res_spin_lock {
            return unsupported("6.12's args#N mismatch line for p__map");
        }
        let tname = k.name_of(btf_id);
        self.reject(
            pc,
            format!(
                "{first}kernel function {name} R1 expected pointer to STRUCT bpf_map but R1 has a pointer to STRUCT {tname}"
            ),
        )
    }
}

/// Whether `insn` is `addr_space_cast` (`BPF_ALU64 | BPF_MOV | BPF_X`, `off == 1`).
pub(super) fn is_addr_space_cast(insn: &Insn) -> bool {
    insn.class() == BPF_ALU64 && insn.op() == BPF_MOV && insn.source() == BPF_X && insn.off == 1
}

/// `bpf_jit_supports_insn(insn, true)` on x86-64: an atomic through an arena pointer, except the
/// fetching and/or/xor, which the model leaves out rather than guess the message's order.
pub(super) fn arena_atomic_supported(imm: i32) -> bool {
    let fetch_op = |op: u8| i32::from(op) | BPF_FETCH;
    ![fetch_op(BPF_AND), fetch_op(BPF_OR), fetch_op(BPF_XOR)].contains(&imm)
}
