//! What the passes before the walk find in a program whatever the kernel profile: subprogram
//! starts, global functions, the layout passes (`add_subprogs()`, `check_subprogs()`,
//! `check_abnormal_return()`), `check_cfg()`, the instruction checks of
//! `check_and_resolve_insns()` and the map facts `map_check_btf()` looks at. Computed once per
//! case (the layout, cfg and instruction results lazily, at the first check that reaches them)
//! and shared by the checks of that case under every profile ([`super::check_prepared`]).
//!
//! Pure functions of the case: the results are the ones the passes return when run in place,
//! kept as [`Step`]s and replayed at the pass's position, so the order of the checks (and which
//! error a program meets first) is the kernel's, as in `exec.rs`.

use std::cell::OnceCell;

use super::vecmap::VecMap;
use super::{callbacks, cfg, fields, special, Step, Stop};
use crate::asm::Reloc;
use crate::case::{Case, FieldKind, MapSpec, MapType};
use crate::insn::{BPF_CALL, BPF_EXIT, BPF_JMP, BPF_JMP32};

/// What `map_check_btf()` and `btf_parse_fields()` look at in one map, whatever the profile.
#[derive(Debug)]
pub(crate) struct MapFacts {
    /// The value (with BTF) holds a `bpf_spin_lock`.
    pub spin_lock: bool,
    /// The value (with BTF) holds a `bpf_res_spin_lock` (a plain struct on a kernel without it).
    pub res_spin_lock: bool,
    /// The map type may hold a lock (hash, array, cgroup and sk storage).
    pub lock_allowed: bool,
    /// `btf_parse_fields()`'s error record, if any (`special::record_error`).
    pub record_error: Option<String>,
    /// A special field other than a lock this map type may not hold (`map_check_btf()`).
    pub field_refused: bool,
}

/// The kinds of the fields of `m`'s value (bit `FieldKind as u32`), none without BTF.
pub(crate) fn value_kinds(m: &MapSpec) -> u32 {
    match m.btf {
        true => m.value.fields.iter().fold(0, |k, f| k | 1 << f.kind as u32),
        false => 0,
    }
}

/// The maps of `case` as the loader creates them: each map, then its inner map (map-in-map).
pub(crate) fn maps_with_inner(case: &Case) -> impl Iterator<Item = &MapSpec> {
    case.maps.iter().flat_map(|m| std::iter::once(m).chain(m.inner.as_deref()))
}

/// A copy of the prepared case whose global data sections with an error record
/// (`MapFacts::record_error`, in [`maps_with_inner`] order) keep only their integer fields (see
/// `check_prepared()`).
pub(crate) fn without_error_records(prep: &Prepared<'_>) -> Case {
    let mut case = prep.case().clone();
    let mut facts = prep.maps.iter();
    for m in case.maps.iter_mut() {
        let strip = |m: &mut MapSpec, f: Option<&MapFacts>| {
            if m.global_section && f.is_some_and(|f| f.record_error.is_some()) {
                m.value.fields.retain(|x| x.kind == FieldKind::Int);
            }
        };
        strip(m, facts.next());
        if let Some(inner) = m.inner.as_deref_mut() {
            strip(inner, facts.next());
        }
    }
    case
}

/// The first instruction `check_and_resolve_insns()` refuses for reasons of its own (register
/// numbers, the `ld_imm64` form, the opcode table, reserved fields), or none.
type InsnScan = Option<(usize, Stop)>;

/// A case prepared for checks under several profiles (see the module documentation).
pub struct Prepared<'a> {
    case: &'a Case,
    /// Subprogram starts (index 0 = main): `Program::subprog_starts()`.
    pub(crate) subprogs: Vec<usize>,
    /// Where the exception callback's body starts when the program holds it (libbpf appended it:
    /// import/elf.rs), a subprogram of its own (`add_subprog_and_kfunc()` adds it).
    pub(crate) exception_cb_start: Option<usize>,
    /// Global subprograms by start instruction: their number of args.
    pub(crate) globals: VecMap<usize, u8>,
    /// Global subprograms by start instruction: which args (bit 0: R1) are `ARG_PTR_TO_CTX`.
    pub(crate) global_ctx_args: VecMap<usize, u8>,
    /// `callbacks::has_btf_func_info()`.
    pub(crate) func_info: bool,
    /// `license_is_gpl_compatible()` of the case's licence (a string search: once per case,
    /// not at every helper call).
    pub(crate) gpl_compatible: bool,
    /// Whether an instruction casts from the arena's address space (`addr_space_cast` with
    /// `imm == 1`), the only source of a `PTR_TO_ARENA` (`arena.rs`): without one, no load,
    /// store or atomic can meet an arena pointer and `save_aux_ptr_type()` has nothing to keep.
    pub(crate) arena_casts: bool,
    /// Whether the case comes from an object and a kfunc it declares as unknown to the model
    /// carries a `___flavour` (`ksym::has_flavour_separator()`): only then does a kfunc call's
    /// name need resolving (`ksym::resolved_kfunc_name()`; the import lists a flavoured name in
    /// `extern_kfuncs`). libbpf resolves flavours; a text case's kfunc names are looked up as
    /// written (lockstep-bpf loader.rs: an unknown name is a setup error, no verdict).
    pub(crate) flavoured_kfuncs: bool,
    /// A bpf-to-bpf call or a `BPF_PSEUDO_FUNC` load names an instruction outside the program
    /// (`add_subprogs()` -> `add_subprog()`: "call to invalid destination").
    call_target_outside: bool,
    /// A jump goes back (or to itself): the program may have a loop (`prune.rs` keeps states
    /// from the first step).
    pub(crate) backward_jump: bool,
    /// Per map of the case, in order, each followed by its inner map ([`maps_with_inner`]).
    pub(crate) maps: Vec<MapFacts>,
    /// Whether a global data section among [`Prepared::maps`] has an error record
    /// (`MapFacts::record_error`): `check_prepared()` then checks [`without_error_records`].
    pub(crate) error_record_globals: bool,
    /// `ld_imm64` instructions with a map reference, in instruction order, as
    /// `check_and_resolve_insns()` meets them (a second slot is never a first), with the index
    /// of the case map of that name (`None`: no such map), found once here rather than by name
    /// at every check, and that map's [`value_kinds`].
    pub(crate) map_refs: Vec<(usize, &'a str, Option<usize>, u32)>,
    layout: OnceCell<Step<()>>,
    cfg: OnceCell<Step<()>>,
    /// By `insn_fields_in_prepass` (bit 1) and `gotox` (bit 0) of the profile; slot 2 (the
    /// strictest switches) is scanned first (`insn_scan`).
    insn_scans: [OnceCell<InsnScan>; 4],
    /// `prune::prune_info()` of the program (the same for every profile), at the first prune check.
    prune: OnceCell<Option<super::prune::PruneInfo>>,
    /// `precise::precise_live()` of the program, by its `return_checked`, at the first widening.
    precise: [OnceCell<Option<Vec<super::precise::Locs>>>; 2],
}

impl<'a> Prepared<'a> {
    /// Prepares `case`: the cheap facts now, the passes over the instructions when first asked.
    pub fn new(case: &'a Case) -> Self {
        let program = &case.program;
        let mut globals = VecMap::default();
        let mut global_ctx_args = VecMap::default();
        for g in &case.globals {
            if let Some((&idx, _)) = program.labels.iter().find(|(_, l)| **l == g.label) {
                globals.insert(idx, g.args);
                global_ctx_args.insert(idx, g.ctx_args);
            }
        }
        let maps = maps_with_inner(case)
            .map(|m| {
                // One pass over the value's fields (a global data section may hold many): the
                // kinds it holds, and whether a special field other than a lock is one the map
                // type may not hold.
                let kinds = value_kinds(m);
                let field_refused = m.btf
                    && m.value.fields.iter().any(|f| {
                        special::in_map_record(f.kind)
                            && !f.kind.is_lock()
                            && !special::map_type_allows(f.kind, m.map_type)
                    });
                let has = |k: FieldKind| kinds & 1 << k as u32 != 0;
                // special::record_error() finds nothing without a graph root or with only one
                // of the two graph node kinds.
                let graph = has(FieldKind::ListHead)
                    || has(FieldKind::RbRoot)
                    || (has(FieldKind::ListNode) && has(FieldKind::RbNode));
                MapFacts {
                    spin_lock: has(FieldKind::SpinLock),
                    res_spin_lock: has(FieldKind::ResSpinLock),
                    lock_allowed: matches!(
                        m.map_type,
                        MapType::Hash | MapType::Array | MapType::CgroupStorage | MapType::SkStorage
                    ),
                    record_error: (m.btf && graph)
                        .then(|| special::record_error(&m.value, &case.types))
                        .flatten(),
                    field_refused,
                }
            })
            .collect::<Vec<MapFacts>>();
        let error_record_globals =
            maps_with_inner(case).zip(&maps).any(|(m, f)| m.global_section && f.record_error.is_some());
        let insns = &program.insns;
        // One pass over the instructions (each slot, as `Program::subprog_starts()` and
        // `add_subprogs()` look at them): the subprogram starts, whether a call
        // target lies outside the program, the casts from the arena, and the map references of
        // first `ld_imm64` slots.
        let mut map_refs = Vec::new();
        let mut subprogs = vec![0usize];
        let (mut call_target_outside, mut arena_casts, mut second_slot) = (false, false, false);
        let mut backward_jump = false;
        for (pc, insn) in insns.iter().enumerate() {
            if let Some(t) = insn.subprog_target(pc) {
                call_target_outside |= t < 0 || t >= insns.len() as i64;
                if t >= 0 {
                    subprogs.push(t as usize);
                }
            }
            arena_casts |= super::arena::is_addr_space_cast(insn) && insn.imm == 1;
            let jump =
                matches!(insn.class(), BPF_JMP | BPF_JMP32) && !matches!(insn.op(), BPF_CALL | BPF_EXIT);
            backward_jump |= jump && cfg::jump_target(pc, insn) <= pc as i64;
            if std::mem::take(&mut second_slot) {
                continue;
            }
            if insn.is_ld_imm64() {
                if let Some(Reloc::Map { name } | Reloc::MapValue { name, .. }) = program.relocs.get(&pc) {
                    let index = case.maps.iter().position(|m| m.name == *name);
                    map_refs.push((
                        pc,
                        name.as_str(),
                        index,
                        index.map_or(0, |i| value_kinds(&case.maps[i])),
                    ));
                }
                second_slot = true;
            }
        }
        let exception_cb_start = case.exception_cb.as_ref().and_then(|cb| {
            program.labels.iter().find(|(&at, l)| at != 0 && **l == cb.name).map(|(&at, _)| at)
        });
        subprogs.extend(exception_cb_start);
        subprogs.sort_unstable();
        subprogs.dedup();
        Prepared {
            case,
            subprogs,
            exception_cb_start,
            globals,
            global_ctx_args,
            func_info: callbacks::has_btf_func_info(case),
            gpl_compatible: crate::case::license_is_gpl_compatible(&case.license),
            arena_casts,
            flavoured_kfuncs: case.object.is_some()
                && case.extern_kfuncs.iter().any(|k| super::ksym::has_flavour_separator(k)),
            call_target_outside,
            backward_jump,
            maps,
            error_record_globals,
            map_refs,
            layout: OnceCell::new(),
            cfg: OnceCell::new(),
            insn_scans: Default::default(),
            prune: OnceCell::new(),
            precise: Default::default(),
        }
    }

    /// The case.
    pub fn case(&self) -> &'a Case {
        self.case
    }

    /// `add_subprogs()` (call targets), `check_subprogs()`, then, without BTF func_info,
    /// `check_abnormal_return()`: run back to back in `bpf_check()`. Only for a program with
    /// instructions.
    pub(crate) fn layout(&self) -> Step<()> {
        self.layout
            .get_or_init(|| {
                let insns = &self.case.program.insns;
                if self.call_target_outside {
                    return cfg::invalid_call_destination();
                }
                cfg::check_subprogs(insns, &self.subprogs)?;
                if !self.func_info {
                    cfg::check_abnormal_return(insns, &self.subprogs)?;
                }
                Ok(())
            })
            .clone()
    }

    /// `check_cfg()`. Only for a program with instructions.
    pub(crate) fn cfg(&self) -> Step<()> {
        self.cfg.get_or_init(|| cfg::check_cfg(&self.case.program.insns, self.exception_cb_start)).clone()
    }

    /// The first instruction `check_and_resolve_insns()` refuses for its own reasons under a
    /// profile with these switches (the map checks at `ld_imm64`s before it are the caller's).
    pub(crate) fn insn_scan(&self, fields_in_prepass: bool, gotox: bool) -> Option<&(usize, Stop)> {
        // Each profile's scan refuses a subset of what the strictest one (the fields checked,
        // no gotox) refuses: `check_ldx_fields()` is `check_insn_fields()`'s `BPF_LDX` arm, the
        // gotox opcode table a superset of the other. A program that one passes (nearly every
        // program) passes every profile's: one scan per case instead of one per set of switches.
        let strict =
            self.insn_scans[2].get_or_init(|| first_refused_insn(&self.case.program.insns, true, false));
        if strict.is_none() {
            return None;
        }
        let slot = &self.insn_scans[usize::from(fields_in_prepass) * 2 + usize::from(gotox)];
        slot.get_or_init(|| first_refused_insn(&self.case.program.insns, fields_in_prepass, gotox)).as_ref()
    }
}

impl Prepared<'_> {
    /// The prune points and register liveness of the program (`prune.rs`), computed once per
    /// case: a function of the instructions alone.
    pub(crate) fn prune_info(&self) -> Option<&super::prune::PruneInfo> {
        self.prune.get_or_init(|| super::prune::prune_info(&self.case.program.insns)).as_ref()
    }

    /// The locations that may become precise per instruction (`precise.rs`), computed once per
    /// case and value of `return_checked`.
    pub(crate) fn precise_live(&self, return_checked: bool) -> Option<&[super::precise::Locs]> {
        self.precise[usize::from(return_checked)]
            .get_or_init(|| super::precise::precise_live(&self.case.program.insns, return_checked))
            .as_deref()
    }
}

/// The instruction checks of `check_and_resolve_insns()`, in its order, without the map
/// references (see [`Prepared::insn_scan`]).
fn first_refused_insn(insns: &[crate::insn::Insn], fields_now: bool, gotox: bool) -> InsnScan {
    let mut pc = 0;
    while pc < insns.len() {
        let insn = &insns[pc];
        let refused = |m: String| Some((pc, Stop::Reject(None, m)));
        if insn.dst > 10 || insn.src > 10 {
            let why =
                format!("register r{} at {pc} (stack arguments) is not modelled", insn.dst.max(insn.src));
            return Some((pc, Stop::Unsupported(why)));
        }
        if !fields_now {
            if let Err(m) = fields::check_ldx_fields(insn) {
                return refused(m);
            }
        }
        if insn.is_ld_imm64() {
            if let Err(m) = fields::check_ld_imm64(insn, insns.get(pc + 1)) {
                return refused(m);
            }
            pc += 2;
            continue;
        }
        if !fields::in_insntable(insn.code, gotox) {
            return refused(format!("unknown opcode {:02x}", insn.code));
        }
        if fields_now {
            if let Err(m) = fields::check_insn_fields(insn) {
                return refused(m);
            }
        }
        pc += 1;
    }
    None
}
