//! Abstract verifier state: registers, stack, frames and the active lock
//! (`struct bpf_verifier_state` / `bpf_func_state` / `bpf_reg_state`, reduced to what the lock rules need).

use super::scalar::Scalar;

/// An abstract register (`struct bpf_reg_state`). `Copy` (every variant is plain data): a
/// state is cloned at every branch, and an array of `Copy` registers clones as one `memcpy`
/// instead of a match per register (keep new variants `Copy`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reg {
    /// `NOT_INIT`.
    NotInit,
    /// `SCALAR_VALUE`.
    Scalar(Scalar),
    /// `PTR_TO_CTX` at offset 0.
    Ctx,
    /// `PTR_TO_STACK`: a frame's pointer plus a constant offset.
    Stack { frame: usize, off: i64 },
    /// `CONST_PTR_TO_MAP`.
    MapPtr { map: usize },
    /// `PTR_TO_MAP_VALUE` (`null`: `PTR_MAYBE_NULL`). `off` is the constant offset, `var` the
    /// variable part's bounds ([`VarOff::NONE`] when known zero).
    MapValue { map: usize, off: i64, var: VarOff, id: u32, null: bool },
    /// `PTR_TO_BTF_ID` returned by a module kfunc (`null`: `PTR_MAYBE_NULL`; `id` for the null
    /// check, `ref_obj_id` the acquired reference it carries, 0 for none).
    BtfPtr { id: u32, ref_obj_id: u32, null: bool },
    /// `PTR_TO_MAP_KEY`: the key `bpf_for_each_map_elem` passes its callback (accesses through it
    /// are not modelled).
    MapKey { map: usize },
    /// `PTR_TO_BTF_ID | MEM_ALLOC` (`| MEM_PERCPU` when `percpu`): an object of the case's local
    /// type `ty` (index into `Case::types`) from `bpf_obj_new()` / `bpf_percpu_obj_new()` /
    /// `bpf_refcount_acquire()`, at constant offset `off`. `id` is the null-check id and the
    /// reference it owns (`acquire_reference()`), `null` is `PTR_MAYBE_NULL`; `non_owning`:
    /// `NON_OWN_REF`, a node a graph kfunc took or returned under a lock (`graph.rs`). See `alloc.rs`.
    Alloc { ty: usize, off: i64, id: u32, null: bool, percpu: bool, non_owning: bool },
    /// An owned, non-null [`Reg::Alloc`] after a scalar was added (`varoff.rs`): `value` / `mask`
    /// its `var_off` tnum, `lo` / `hi` its bounds (non-negative), `off` 6.12's `reg->off` (0 in
    /// 7.x, whose var_off holds the whole offset), `id` its reference.
    AllocVar { ty: usize, id: u32, var: AllocOff },
    /// A local-type (program BTF) object loaded from a referenced kptr field
    /// (`check_map_kptr_access()` -> `btf_ld_kptr_type()`, `kptr_store.rs`), at offset 0:
    /// `PTR_TO_BTF_ID | MEM_ALLOC | MEM_RCU` (`| NON_OWN_REF` when `non_owning`: the type has a
    /// graph node; `| PTR_MAYBE_NULL` when `null`, `id` its null-check id), no reference of its
    /// own. `untrusted`: `PTR_TO_BTF_ID | MEM_ALLOC | PTR_UNTRUSTED`, what
    /// `invalidate_rcu_protected_refs()` leaves of it at the end of the RCU critical section.
    AllocRcu { ty: usize, id: u32, null: bool, non_owning: bool, untrusted: bool },
    /// A socket pointer (`sock.rs`): `PTR_TO_SOCK_COMMON`, `PTR_TO_SOCKET`, `PTR_TO_TCP_SOCK`,
    /// `PTR_TO_XDP_SOCK` or a `bpf_skc_to_*` `PTR_TO_BTF_ID` (`null`: `PTR_MAYBE_NULL`; `id` the
    /// null-check id, `ref_obj_id` the reference it carries, 0 for none).
    Sock { kind: super::sock::SockKind, id: u32, ref_obj_id: u32, null: bool },
    /// `PTR_TO_ARENA`: a pointer into the program's arena (`addr_space_cast`, `arena.rs`).
    Arena,
    /// `PTR_TO_BTF_ID` of a kernel struct (vmlinux BTF id `btf_id`): a tracing / LSM ctx argument
    /// (`btf_ctx_access()`), a kernel object kfunc's or helper's return value (`tracing.rs`).
    /// `id` is the null-check id, `ref_obj_id` the acquired reference (0: none). `off` is the
    /// known constant added to the pointer (`adjust_ptr_min_max_vals()`: `reg->off` in 6.12, a
    /// constant `var_off` in 7.x; accesses add it to the instruction's offset). Consumers that
    /// do not model a non-zero `off` (kfunc / helper arguments, `bpf_kptr_xchg()`) leave it
    /// unsupported.
    Kernel { btf_id: u32, off: i64, id: u32, ref_obj_id: u32, null: bool, trust: Trust },
    /// `PTR_TO_FUNC`: a callback's address (`ld_imm64` with `BPF_PSEUDO_FUNC`), by the
    /// subprogram's first instruction.
    Func { start: usize },
    /// `PTR_TO_MEM` (`| MEM_RDONLY` when `rdonly`) a kfunc returned (`kfunc_args.rs`): `size`
    /// bytes (`mem_size`) at offset 0 (arithmetic on it is not modelled). `id` is the null-check
    /// id (`null`: `PTR_MAYBE_NULL`), `parent` the reference it derives from (`parent_id`: its
    /// release invalidates the register; 0 for none).
    Mem { size: u32, rdonly: bool, id: u32, parent: u32, null: bool },
    /// `PTR_TO_PACKET` / `_META` / `_END` (`pkt.rs`): a ctx load's packet pointer plus the
    /// constant `off`; `range` the bytes from the packet's start a compare against `pkt_end`
    /// proved (`AT_PKT_END` / `BEYOND_PKT_END` when negative). All have id 0.
    Packet { kind: super::pkt::PktKind, off: i64, range: i32 },
    /// `PTR_TO_BTF_ID | MEM_PERCPU` of a typed per-cpu `__ksym` variable (`ksym.rs`,
    /// `__check_pseudo_btf_id()`): the VAR's vmlinux type `btf_id`, at offset 0, id 0. Only
    /// `bpf_this_cpu_ptr()` / `bpf_per_cpu_ptr()` take it in the model.
    Percpu { btf_id: u32 },
}

// Every frame copied at a branch and compared at a prune point holds 11 registers: keep `Reg`
// small (a `Scalar` and the tag). A map value's variable offset is a [`VarOff`] for this.
const _: () = assert!(std::mem::size_of::<Reg>() <= 40);

/// A map value pointer's variable offset bounds (`Option<Scalar>`, `None` when known zero), as
/// a 4-byte handle into the thread's [`interned`] table, so equal bounds have equal handles
/// (`PartialEq` compares the handles) and `Reg` stays 40 bytes instead of 64. Variable offsets
/// on map values are rare.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VarOff(u32);

/// A [`Reg::AllocVar`]'s offset: `off` 6.12's `reg->off`, `value` / `mask` the `var_off` tnum,
/// `lo` / `hi` the bounds (`varoff.rs`), kept out of `Reg` as a 4-byte [`AllocOff`] handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocVarOff {
    pub off: i64,
    pub value: u64,
    pub mask: u64,
    pub lo: i64,
    pub hi: i64,
}

/// A handle of an interned [`AllocVarOff`] (equal offsets, equal handles).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AllocOff(u32);

/// The values registers keep behind 4-byte handles ([`VarOff`], [`AllocOff`]): one table per
/// thread, each distinct value once, emptied when the outermost [`CheckScope`] on the thread
/// ends (no register outlives its check), so a long fuzz campaign does not accumulate them and
/// parallel checks share no lock.
pub mod interned {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::{AllocVarOff, Scalar};

    /// One kind of value: each distinct value once, its handle its index + 1 (0 is free for a
    /// "none" handle).
    pub(super) struct Interner<T> {
        ids: HashMap<T, u32>,
        vals: Vec<T>,
    }

    impl<T: Copy + Eq + std::hash::Hash> Interner<T> {
        fn new() -> Self {
            Interner { ids: HashMap::new(), vals: Vec::new() }
        }
        pub(super) fn id(&mut self, v: T) -> u32 {
            if let Some(&id) = self.ids.get(&v) {
                return id;
            }
            self.vals.push(v);
            let id = u32::try_from(self.vals.len()).expect("fewer than 2^32 distinct interned values");
            self.ids.insert(v, id);
            id
        }
        pub(super) fn get(&self, id: u32) -> T {
            self.vals[id as usize - 1]
        }
        fn clear(&mut self) {
            self.ids.clear();
            self.vals.clear();
        }
    }

    pub(super) struct Tables {
        pub(super) scalars: Interner<Scalar>,
        pub(super) alloc_offs: Interner<AllocVarOff>,
        depth: u32,
    }

    thread_local! {
        static TABLES: RefCell<Tables> = RefCell::new(Tables {
            scalars: Interner::new(),
            alloc_offs: Interner::new(),
            depth: 0,
        });
    }

    /// Runs `f` on this thread's tables.
    pub(super) fn with<R>(f: impl FnOnce(&mut Tables) -> R) -> R {
        TABLES.with(|t| f(&mut t.borrow_mut()))
    }

    /// Held while a check runs (`model::check_prepared`); when the outermost one on the thread
    /// is dropped, the tables are emptied.
    pub struct CheckScope(());

    impl CheckScope {
        /// Enters a check.
        pub fn enter() -> CheckScope {
            with(|t| t.depth += 1);
            CheckScope(())
        }
    }

    impl Drop for CheckScope {
        fn drop(&mut self) {
            with(|t| {
                t.depth -= 1;
                if t.depth == 0 {
                    t.scalars.clear();
                    t.alloc_offs.clear();
                }
            });
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::VarOff;
        use super::*;

        fn kept() -> usize {
            with(|t| t.scalars.vals.len() + t.alloc_offs.vals.len())
        }

        #[test]
        fn values_live_until_the_outermost_check_on_the_thread_ends() {
            let outer = CheckScope::enter();
            let a = VarOff::of(Some(Scalar::below(7)));
            {
                let _inner = CheckScope::enter();
                assert_eq!(VarOff::of(Some(Scalar::below(7))), a, "same bounds, same handle");
                VarOff::of(Some(Scalar::below(15)));
            }
            assert_eq!(kept(), 2, "an inner check's end keeps the outer check's values");
            assert_eq!(a.get(), Some(Scalar::below(7)));
            drop(outer);
            assert_eq!(kept(), 0, "the outermost check's end empties the tables");
        }
    }
}

impl VarOff {
    /// Known zero (no variable part).
    pub const NONE: VarOff = VarOff(0);

    /// The handle of `v`'s bounds.
    pub fn of(v: Option<Scalar>) -> VarOff {
        match v {
            None => VarOff::NONE,
            Some(v) => VarOff(interned::with(|t| t.scalars.id(v))),
        }
    }
    /// The bounds (`None`: known zero).
    pub fn get(self) -> Option<Scalar> {
        (self.0 != 0).then(|| interned::with(|t| t.scalars.get(self.0)))
    }
    pub fn is_some(self) -> bool {
        self.0 != 0
    }
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl AllocOff {
    /// The handle of `v`.
    pub fn of(v: AllocVarOff) -> AllocOff {
        AllocOff(interned::with(|t| t.alloc_offs.id(v)))
    }
    /// The offset it stands for.
    pub fn get(self) -> AllocVarOff {
        interned::with(|t| t.alloc_offs.get(self.0))
    }
}

impl std::fmt::Debug for AllocOff {
    /// As the [`AllocVarOff`] it stands for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.get(), f)
    }
}

impl std::fmt::Debug for VarOff {
    /// As the `Option<Scalar>` it stands for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.get(), f)
    }
}

impl Reg {
    /// `reg_type_str()` of the register's type.
    pub fn type_str(&self) -> &'static str {
        match self {
            Reg::NotInit => "?",
            Reg::Scalar(_) => "scalar",
            Reg::Ctx => "ctx",
            Reg::Stack { .. } => "fp",
            Reg::MapPtr { .. } => "map_ptr",
            Reg::MapValue { null: true, .. } => "map_value_or_null",
            Reg::MapValue { .. } => "map_value",
            Reg::BtfPtr { null: true, .. } => "ptr_or_null_",
            Reg::BtfPtr { .. } => "ptr_",
            Reg::MapKey { .. } => "map_key",
            Reg::Alloc { null: true, percpu: true, .. } => "percpu_ptr_or_null_",
            Reg::Alloc { null: true, .. } => "ptr_or_null_",
            Reg::Alloc { percpu: true, .. } => "percpu_ptr_",
            Reg::Alloc { .. } | Reg::AllocVar { .. } => "ptr_",
            // reg_type_str(): MEM_ALLOC and NON_OWN_REF print nothing.
            Reg::AllocRcu { untrusted: true, .. } => "untrusted_ptr_",
            Reg::AllocRcu { null: true, .. } => "rcu_ptr_or_null_",
            Reg::AllocRcu { .. } => "rcu_ptr_",
            Reg::Func { .. } => "func",
            Reg::Sock { kind, null, .. } => kind.type_str(*null),
            Reg::Arena => "arena",
            Reg::Kernel { null, trust, .. } => trust.type_str(*null),
            Reg::Mem { rdonly: true, null: true, .. } => "rdonly_mem_or_null",
            Reg::Mem { rdonly: true, .. } => "rdonly_mem",
            Reg::Mem { null: true, .. } => "mem_or_null",
            Reg::Mem { .. } => "mem",
            Reg::Packet { kind, .. } => kind.type_str(),
            Reg::Percpu { .. } => "percpu_ptr_",
        }
    }
    /// `PTR_MAYBE_NULL`: a pointer not yet checked against NULL.
    pub fn maybe_null(&self) -> bool {
        self.maybe_null_id().is_some()
    }
    /// The id a maybe-null pointer shares with its copies (what `mark_ptr_or_null_regs()` matches).
    pub fn maybe_null_id(&self) -> Option<u32> {
        match self {
            Reg::MapValue { null: true, id, .. }
            | Reg::BtfPtr { null: true, id, .. }
            | Reg::Alloc { null: true, id, .. }
            | Reg::AllocRcu { null: true, id, .. }
            | Reg::Sock { null: true, id, .. } => Some(*id),
            Reg::Kernel { null: true, id, .. } | Reg::Mem { null: true, id, .. } => Some(*id),
            _ => None,
        }
    }
    /// A kernel pointer (`PTR_TO_BTF_ID`) with a non-zero constant offset.
    pub fn kernel_off(&self) -> bool {
        matches!(self, Reg::Kernel { off, .. } if *off != 0)
    }
    /// True for any pointer type.
    pub fn is_pointer(&self) -> bool {
        !matches!(self, Reg::NotInit | Reg::Scalar(_))
    }
}

/// The trust flags of a [`Reg::Kernel`] pointer (`PTR_TRUSTED`, `MEM_RCU`, `PTR_UNTRUSTED`, or
/// none: a legacy `PTR_TO_BTF_ID`, as fentry arguments are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// `PTR_TRUSTED` (or a referenced pointer, which `is_trusted_reg()` counts as trusted).
    Trusted,
    /// `MEM_RCU`.
    Rcu,
    /// No flag.
    Legacy,
    /// `PTR_UNTRUSTED`.
    Untrusted,
}

impl Trust {
    /// `reg_type_str()` of a `PTR_TO_BTF_ID` with this flag (`null`: `PTR_MAYBE_NULL`).
    pub fn type_str(self, null: bool) -> &'static str {
        match (self, null) {
            (Trust::Trusted, false) => "trusted_ptr_",
            (Trust::Trusted, true) => "trusted_ptr_or_null_",
            (Trust::Rcu, false) => "rcu_ptr_",
            (Trust::Rcu, true) => "rcu_ptr_or_null_",
            (Trust::Legacy, false) => "ptr_",
            (Trust::Legacy, true) => "ptr_or_null_",
            (Trust::Untrusted, false) => "untrusted_ptr_",
            (Trust::Untrusted, true) => "untrusted_ptr_or_null_",
        }
    }
}

/// What one byte of a stack slot holds (`enum bpf_stack_slot_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackByte {
    /// `STACK_MISC`.
    Misc,
    /// `STACK_ZERO`.
    Zero,
    /// `STACK_SPILL`.
    Spill,
}

/// `MAX_BPF_STACK`: a frame's stack bytes are at offsets -512..0.
const STACK_SIZE: usize = 512;

/// What each byte of a frame's stack holds, by (negative) offset, `None` where nothing was
/// written (`STACK_INVALID`). Two bits a byte (`lo`, `hi`: none 00, misc 01, zero 10, spill 11)
/// in fixed arrays, not a map: a state is cloned at every branch and compared at every prune
/// point and loop checkpoint, and this is a 128-byte copy or compare (the 512-byte array of
/// `Option<StackByte>` it replaces compared and copied the same contents four times the size).
/// The methods take offsets as a map would.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct StackBytes {
    lo: [u64; STACK_SIZE / 64],
    hi: [u64; STACK_SIZE / 64],
}

impl std::fmt::Debug for StackBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.range(-(STACK_SIZE as i64)..0)).finish()
    }
}

impl StackBytes {
    fn index(off: i64) -> Option<usize> {
        usize::try_from(off + STACK_SIZE as i64).ok().filter(|i| *i < STACK_SIZE)
    }
    /// The byte at `off`, if written.
    pub fn get(&self, off: &i64) -> Option<&StackByte> {
        let i = Self::index(*off)?;
        let (w, b) = (i / 64, i % 64);
        match ((self.hi[w] >> b) & 1, (self.lo[w] >> b) & 1) {
            (0, 0) => None,
            (0, _) => Some(&StackByte::Misc),
            (_, 0) => Some(&StackByte::Zero),
            _ => Some(&StackByte::Spill),
        }
    }
    /// Whether the byte at `off` was written.
    pub fn contains_key(&self, off: &i64) -> bool {
        self.get(off).is_some()
    }
    /// Records the byte at `off` (offsets outside the stack are checked before any store).
    pub fn insert(&mut self, off: i64, b: StackByte) {
        debug_assert!(Self::index(off).is_some(), "stack offset {off} outside the stack");
        if let Some(i) = Self::index(off) {
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            let (hi, lo) = match b {
                StackByte::Misc => (false, true),
                StackByte::Zero => (true, false),
                StackByte::Spill => (true, true),
            };
            self.hi[w] = if hi { self.hi[w] | bit } else { self.hi[w] & !bit };
            self.lo[w] = if lo { self.lo[w] | bit } else { self.lo[w] & !bit };
        }
    }
    /// The written bytes at offsets in `r`, in offset order.
    pub fn range(&self, r: std::ops::Range<i64>) -> impl Iterator<Item = (i64, &StackByte)> + '_ {
        r.filter_map(move |off| self.get(&off).map(|b| (off, b)))
    }
}

/// One frame's stack: bytes by (negative) offset, spilled registers by slot base offset with the
/// spill size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stack {
    pub bytes: StackBytes,
    pub spills: super::vecmap::VecMap<i64, (Reg, u8)>,
}

impl Stack {
    fn slot_base(off: i64) -> i64 {
        off.div_euclid(8) * 8
    }

    /// Drops the spill of the slot at `base` (8-aligned), its bytes becoming misc: what a store
    /// of an unknown value into the slot leaves (`check_stack_write_fixed_off()`).
    pub fn scrub_spill(&mut self, base: i64) {
        if self.spills.remove(&base).is_some() {
            for i in 0..8 {
                if self.bytes.get(&(base + i)) == Some(&StackByte::Spill) {
                    self.bytes.insert(base + i, StackByte::Misc);
                }
            }
        }
    }

    /// Records a store of `size` bytes at `off` (`check_stack_write_fixed_off()`, privileged).
    /// `value` is the stored register (or the `ST` immediate as a known scalar).
    pub fn write(&mut self, off: i64, size: u8, value: &Reg) {
        let base = Self::slot_base(off);
        let aligned = off % 8 == 0;
        // Any write into a slot holding a spill scrubs the spill's bytes to misc.
        for b in [Self::slot_base(off), Self::slot_base(off + size as i64 - 1)] {
            self.scrub_spill(b);
        }
        let spill = match value {
            Reg::Scalar(_) if aligned => true,
            v if v.is_pointer() && aligned && size == 8 => true,
            _ => false,
        };
        if spill {
            self.spills.insert(base, (value.clone(), size));
            for i in 0..8i64 {
                let t = if i < size as i64 { StackByte::Spill } else { StackByte::Misc };
                // Bytes above the spill in the slot become misc only if they were not written yet.
                if i < size as i64 || !self.bytes.contains_key(&(base + i)) {
                    self.bytes.insert(base + i, t);
                }
            }
            return;
        }
        let zero = matches!(value, Reg::Scalar(s) if s.konst() == Some(0));
        for i in 0..size as i64 {
            self.bytes.insert(off + i, if zero { StackByte::Zero } else { StackByte::Misc });
        }
    }

    /// A load of `size` bytes at `off` (`check_stack_read_fixed_off()`): a spilled register comes
    /// back whole for a same-size aligned fill; anything else reads as an unknown scalar.
    pub fn read(&self, off: i64, size: u8) -> Result<Reg, String> {
        let base = Self::slot_base(off);
        if let Some((reg, sz)) = self.spills.get(&base) {
            if off == base && size == *sz {
                return Ok(reg.clone());
            }
            if reg.is_pointer() {
                return Err("partial fill of a spilled pointer".into());
            }
            return Ok(Reg::Scalar(Scalar::of_size(size)));
        }
        let all_zero = (0..size as i64).all(|i| self.bytes.get(&(off + i)) == Some(&StackByte::Zero));
        Ok(Reg::Scalar(if all_zero { Scalar::known(0) } else { Scalar::of_size(size) }))
    }

    /// The constant a map key at `off` of `size` bytes holds, if the verifier can see it
    /// (`get_constant_map_key()`): all bytes `STACK_ZERO`, or a spilled constant of exactly that size.
    pub fn constant_key(&self, off: i64, size: u32) -> Option<i64> {
        if (0..size as i64).all(|i| self.bytes.get(&(off + i)) == Some(&StackByte::Zero)) {
            return Some(0);
        }
        let (reg, sz) = self.spills.get(&off)?;
        if *sz as u32 != size {
            return None;
        }
        match reg {
            Reg::Scalar(s) => s.konst(),
            _ => None,
        }
    }
}

/// One call frame (`struct bpf_func_state`).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub regs: [Reg; 11],
    pub stack: Stack,
    /// Index of the call instruction in the caller (return address - 1).
    pub callsite: usize,
    /// Subprogram index.
    pub subprog: usize,
}

impl Frame {
    /// A frame entered with `args` in R1..R5 and R10 pointing at its stack.
    pub fn new(index: usize, subprog: usize, callsite: usize) -> Self {
        let mut regs: [Reg; 11] = std::array::from_fn(|_| Reg::NotInit);
        regs[10] = Reg::Stack { frame: index, off: 0 };
        Frame { regs, stack: Stack::default(), callsite, subprog }
    }
}

/// What kind of lock a held lock is (`REF_TYPE_LOCK` / `REF_TYPE_RES_LOCK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// `bpf_spin_lock()`.
    Spin,
    /// `bpf_res_spin_lock()` (7.x).
    Res,
    /// `bpf_res_spin_lock_irqsave()` (7.x, `REF_TYPE_RES_LOCK_IRQ`: found only by the irqrestore form).
    ResIrq,
}

/// An IRQ flag saved and not yet restored (`REF_TYPE_IRQ`): its reference id, its stack slot
/// (frame, offset) while the slot is still `STACK_IRQ_FLAG`, and its kfunc class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqFlag {
    pub id: u32,
    /// The save's instruction (`acquire_reference_state()`'s `insn_idx`).
    pub insn: usize,
    pub slot: Option<(usize, i64)>,
    /// Saved by `bpf_local_irq_save` (`IRQ_NATIVE_KFUNC`), else by `bpf_res_spin_lock_irqsave`.
    pub native: bool,
}

/// An open-coded iterator on the stack (`STACK_ITER` slots, `mark_stack_slots_iter()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IterSlot {
    /// The reference `mark_stack_slots_iter()` took (`acquire_reference()`).
    pub id: u32,
    /// ACTIVE (else DRAINED: `bpf_iter_<type>_next` returned NULL on this path).
    pub active: bool,
    /// The iterator struct's size in 8-byte slots (`nr_slots` in `process_iter_arg()`).
    pub slots: u8,
}

/// A lock held (a lock entry of `refs[]`: its `ptr` = map, `id` and type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveLock {
    pub map: usize,
    pub id: u32,
    pub kind: LockKind,
}

/// A whole verifier state on one path.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub frames: Vec<Frame>,
    /// The locks held, in acquisition order (`active_locks`; the last is `active_lock_id` /
    /// `active_lock_ptr`). 6.12 holds at most one.
    pub locks: Vec<ActiveLock>,
    /// Acquired references (`acquire_reference()`: their ids), in acquisition order.
    pub refs: Vec<u32>,
    /// Open-coded iterators on the stack (`loops.rs`), by (frame, offset of the lowest slot).
    pub iters: super::vecmap::VecMap<(usize, i64), IterSlot>,
    /// IRQ flags saved, in order (`active_irq_id` is the last one's).
    pub irq: Vec<IrqFlag>,
    /// `active_rcu_locks` and `active_preempt_locks` (7.x).
    pub rcu: u32,
    pub preempt: u32,
    /// `in_sleepable` of the verifier state: the program's `BPF_F_SLEEPABLE` for the main walk,
    /// the calling context for a global function (7.3), false for a timer callback (7.x;
    /// `model/sleep.rs`).
    pub sleepable: bool,
    /// Whether the model's ids equal the kernel's `env->id_gen` numbering on this path: true on
    /// the main program's first path (explored before any pushed state, as `do_check()` does)
    /// until an instruction that may take a scalar id in the kernel (`assign_scalar_id_before_mov()`:
    /// a move, spill or fill of an unknown scalar), which the model does not number.
    pub ids_exact: bool,
    /// The state at the last visit of each iterator `_next` on this path (`loops.rs`).
    pub loop_heads: LoopHeads,
    pub pc: usize,
}

/// The checkpoint a path left at each iterator `_next` it passed with an ACTIVE iterator, by
/// instruction, most recent only: `find_prev_entry()`'s state for `widen_imprecise_scalars()`.
/// Never compared: two states equal in all else are equal whatever their path.
#[derive(Clone, Debug, Default)]
pub struct LoopHeads(Vec<(usize, std::sync::Arc<State>)>);

impl PartialEq for LoopHeads {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl LoopHeads {
    pub fn get(&self, pc: usize) -> Option<std::sync::Arc<State>> {
        self.0.iter().find(|(p, _)| *p == pc).map(|(_, s)| s.clone())
    }
    pub fn set(&mut self, pc: usize, st: std::sync::Arc<State>) {
        self.0.retain(|(p, _)| *p != pc);
        self.0.push((pc, st));
    }
}

impl State {
    /// The state a walk starts from: one frame, nothing held, the walk at `pc`; `ids_exact` as
    /// the caller's (the main program's walk starts exact).
    pub fn entry(frame: Frame, ids_exact: bool, pc: usize) -> State {
        State {
            frames: vec![frame],
            locks: vec![],
            refs: vec![],
            iters: Default::default(),
            irq: Vec::new(),
            rcu: 0,
            preempt: 0,
            sleepable: false,
            ids_exact,
            loop_heads: Default::default(),
            pc,
        }
    }

    /// The innermost frame.
    pub fn cur(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("at least one frame")
    }
    /// What the live references are, for `unsupported` reasons: "an acquired reference", or
    /// "a live open-coded iterator" when every one is an iterator's.
    pub fn refs_str(&self) -> &'static str {
        if self.refs.iter().all(|r| self.iters.values().any(|it| it.id == *r)) {
            "a live open-coded iterator"
        } else {
            "an acquired reference"
        }
    }
    /// Whether bytes `[off, off + size)` of `frame`'s stack overlap an iterator's slots.
    pub fn iter_overlaps(&self, frame: usize, off: i64, size: i64) -> bool {
        self.iters.iter().any(|((f, s), it)| *f == frame && off < s + 8 * it.slots as i64 && *s < off + size)
    }
    /// The innermost frame, read-only.
    pub fn cur_ref(&self) -> &Frame {
        self.frames.last().expect("at least one frame")
    }
    /// Applies `f` to every register and spilled register of every frame
    /// (`mark_ptr_or_null_regs()`-style updates).
    pub fn for_each_reg(&mut self, mut f: impl FnMut(&mut Reg)) {
        for fr in &mut self.frames {
            fr.regs.iter_mut().for_each(&mut f);
            for (r, _) in fr.stack.spills.values_mut() {
                f(r);
            }
        }
    }
}

impl State {
    /// A key of the parts of the state that most often differ (pc, frames, their registers and
    /// stack bytes, how many locks, references and iterators): equal states have equal keys
    /// (each part is a function of fields `PartialEq` compares), so two different keys tell
    /// two states apart without comparing them ([`SeenStates`]). A sum of independent products,
    /// not a chained hash: it is computed at every prune point and loop checkpoint.
    pub fn quick_key(&self) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut acc = (self.pc as u64)
            ^ (self.frames.len() as u64) << 32
            ^ (self.locks.len() as u64) << 40
            ^ (self.refs.len() as u64) << 48
            ^ (self.iters.len() as u64) << 56;
        let mut k = K;
        let mut add = |v: u64| {
            acc = acc.wrapping_add(v.wrapping_mul(k));
            k = k.wrapping_add(0x6a09_e667_f3bc_c909);
        };
        for f in &self.frames {
            for r in &f.regs {
                add(reg_key(r));
            }
            for (lo, hi) in f.stack.bytes.lo.iter().zip(&f.stack.bytes.hi) {
                add(lo ^ hi.rotate_left(29));
            }
            add(f.stack.spills.len() as u64);
        }
        acc ^ acc >> 31
    }
}

/// A part of [`State::quick_key`]: a function of the register (equal registers, equal keys).
fn reg_key(r: &Reg) -> u64 {
    match r {
        Reg::NotInit => 0,
        Reg::Scalar(s) => {
            1 ^ (s.smin as u64).rotate_left(7)
                ^ (s.smax as u64).rotate_left(19)
                ^ s.umin.rotate_left(37)
                ^ s.umax.rotate_left(53)
        }
        Reg::Ctx => 2,
        Reg::Stack { frame, off } => 3 ^ (*frame as u64) << 8 ^ (*off as u64) << 16,
        Reg::MapValue { map, off, null, .. } => {
            4 ^ (*map as u64) << 8 ^ (*off as u64) << 16 ^ (*null as u64) << 7
        }
        Reg::Packet { off, range, .. } => 5 ^ (*off as u64) << 8 ^ (*range as u64) << 32,
        Reg::Kernel { btf_id, off, .. } => 6 ^ (*btf_id as u64) << 8 ^ (*off as u64) << 40,
        _ => 7,
    }
}

/// The states met at one instruction (prune points, loop checkpoints), each with its
/// [`State::quick_key`]: a lookup compares whole states only where the keys are equal.
#[derive(Debug, Default)]
pub struct SeenStates(Vec<(u64, std::sync::Arc<State>)>);

impl SeenStates {
    /// Whether a state equal to `st` was met.
    pub fn contains(&self, st: &State) -> bool {
        self.contains_keyed(st, st.quick_key())
    }
    /// [`SeenStates::contains`] for `st` whose [`State::quick_key`] is `k` (a caller that may
    /// record it next computes the key once: [`SeenStates::push_keyed`]).
    pub fn contains_keyed(&self, st: &State, k: u64) -> bool {
        self.0.iter().any(|(h, s)| *h == k && **s == *st)
    }
    /// Records `st`.
    pub fn push(&mut self, st: State) {
        let k = st.quick_key();
        self.push_keyed(std::sync::Arc::new(st), k);
    }
    /// Records `st`, whose [`State::quick_key`] is `k`, shared with its other holders (a loop
    /// head, `loops.rs`).
    pub fn push_keyed(&mut self, st: std::sync::Arc<State>, k: u64) {
        debug_assert_eq!(k, st.quick_key());
        self.0.push((k, st));
    }
    /// How many states were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
