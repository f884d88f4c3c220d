//! The program generator: seeded, reproducible lock-centric programs.
//!
//! A case is a pure function of `(seed, index)` ([`Generator::case`]). Each program follows the
//! lock state machine (lock, unlock, double lock, a second lock, exits, subprogram returns) and mixes
//! in what the verifier treats specially around a lock: helper, test-module kfunc (flagged or not),
//! static and global subprogram calls, `bpf_res_spin_lock` sections, `may_goto`, map update /
//! delete ([`extra`]), `ld_abs`/`ld_ind`, tail calls, branches on unknown
//! scalars, bounded and `bpf_iter_num` loops, pointer arithmetic on and spills of the lock pointer,
//! direct accesses next to and onto the lock, and test-module kfunc references (acquired,
//! null-checked, released: [`refs`]). Program types and map layouts are drawn from
//! everything the model supports, plus a few it does not (so the unsupported share is measured,
//! not assumed).
//!
//! Programs are written as assembly text (kept in [`Case::text`], so a case file can be written
//! as is) and assembled with the crate's assembler. Register conventions: `r6` = ctx (so
//! `ld_abs` works), `r7`/`r8` = the two lock-pointer slots, `r9` = loop counter; stack `-4` map
//! key, `-16` spill slot, `-24` iterator, `-32` a spilled kfunc reference.

mod extra;
mod ops;
mod refs;

use std::collections::BTreeSet;

use super::rng::Rng;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, Field, FieldKind, MapSpec, MapType, ProgType, ValueLayout};
use crate::profile::ModuleKfuncs;

/// Program types with their weights when a program may break the rules (the socket filter and
/// tracing types exercise the map/program compatibility rule).
const PROG_TYPES: &[(u32, ProgType)] = &[
    (30, ProgType::SchedCls),
    (6, ProgType::SchedAct),
    (12, ProgType::Xdp),
    (6, ProgType::CgroupSkb),
    (5, ProgType::LwtIn),
    (5, ProgType::FlowDissector),
    (8, ProgType::Syscall),
    (4, ProgType::SocketFilter),
    (3, ProgType::Kprobe),
    (2, ProgType::Tracepoint),
    (2, ProgType::PerfEvent),
    (2, ProgType::RawTracepoint),
];

/// Makes cases. Holds the test module's kfuncs and the kfunc names the assembler may resolve.
#[derive(Clone, Debug)]
pub struct Generator {
    module: ModuleKfuncs,
    kfuncs: Vec<String>,
}

impl Generator {
    /// A generator whose programs may call `module`'s kfuncs and the vmlinux kfuncs of the profiles.
    pub fn new(module: &ModuleKfuncs) -> Self {
        Generator { module: module.clone(), kfuncs: crate::corpus::known_kfuncs(module) }
    }

    /// Case `index` of campaign `seed`, named `fuzz_<seed>_<index>`.
    pub fn case(&self, seed: u64, index: u64) -> Case {
        let mut b = Builder::new(Rng::for_case(seed, index), &self.module);
        b.program();
        // Maps first, then global sections (the case-file order).
        b.maps.sort_by_key(|m| m.global_section);
        let symbols =
            Symbols { maps: b.maps.iter().map(|m| m.name.clone()).collect(), kfuncs: self.kfuncs.clone() };
        let text = b.text();
        let program = assemble(&text, &symbols)
            .unwrap_or_else(|e| panic!("generated program does not assemble ({e}):\n{text}"));
        let chaos = b.chaos;
        Case {
            name: format!("fuzz_{seed}_{index}"),
            file: "fuzz".into(),
            line: 0,
            prog_type: b.prog_type,
            sleepable: b.prog_type == ProgType::Syscall,
            prog_flags: 0,
            log_level: 0,
            maps: b.maps,
            globals: b.globals,
            types: Vec::new(),
            extern_kfuncs: vec![],
            program,
            text,
            expect: Default::default(),
            description: Some(format!("lockstep fuzz --seed {seed}, case {index} (chaos {chaos}%)")),
            tags: b.tags.into_iter().map(str::to_string).collect(),
            object: None,
            model_unsupported: None,
            exception_cb: None,
            license: crate::case::DEFAULT_LICENSE.into(),
            non_struct_type_ids: Vec::new(),
        }
    }
}

/// What a lock-pointer slot (`r7`, `r8`) holds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    /// The map (or global section) the pointer points into.
    map: usize,
    /// Bytes added to the pointer since it was loaded (pointer arithmetic on `rS` itself).
    delta: i32,
    /// Which lock it is: one per lookup, shared by copies and by loads of the same global section.
    ident: u32,
}

/// A subprogram: its label, body and (for global ones) scalar argument count.
struct Sub {
    label: String,
    body: String,
    kind: SubKind,
    global: Option<u8>,
}

/// What a subprogram does (decides how the caller sets it up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubKind {
    /// `r0 = 0; exit`.
    Plain,
    /// Calls a helper.
    Helper,
    /// Calls a test-module kfunc.
    Kfunc,
    /// Branches on its scalar argument `r1`.
    Branchy,
    /// Takes the lock of map `map` that `r1 + off` points to.
    Lock { map: usize, off: i32 },
    /// Releases it.
    Unlock { map: usize, off: i32 },
    /// Calls a subprogram that makes no call (`Plain`, `Branchy`).
    NestedPlain,
    /// Calls a subprogram that calls a helper or kfunc.
    NestedCall,
    /// A global function that takes and releases a lock of a global section.
    GlobalLockPair,
    /// A global function that exits with a lock of a global section held.
    GlobalExitLocked,
}

impl SubKind {
    /// Whether calling it with a lock held passes the rules of every profile.
    fn fine_under_lock(self) -> bool {
        matches!(self, SubKind::Plain | SubKind::Branchy | SubKind::NestedPlain | SubKind::Unlock { .. })
    }
}

/// One program under construction.
struct Builder<'m> {
    rng: Rng,
    module: &'m ModuleKfuncs,
    prog_type: ProgType,
    /// Percent chance that a decision breaks a rule (0 for a program that follows every rule).
    chaos: u32,
    maps: Vec<MapSpec>,
    globals: Vec<crate::case::GlobalFunc>,
    main: String,
    subs: Vec<Sub>,
    labels: u32,
    /// `r7`, `r8`.
    slots: [Option<Slot>; 2],
    /// The lock the generator believes is held (its ident).
    held: Option<u32>,
    /// The pointer spilled at `r10 - 16`.
    spilled: Option<Slot>,
    next_ident: u32,
    tags: BTreeSet<&'static str>,
}

impl<'m> Builder<'m> {
    fn new(mut rng: Rng, module: &'m ModuleKfuncs) -> Self {
        let chaos = *rng.weighted(&[(40, 0), (35, 6), (25, 20)]);
        let mut b = Builder {
            rng,
            module,
            prog_type: ProgType::SchedCls,
            chaos,
            maps: Vec::new(),
            globals: Vec::new(),
            main: String::new(),
            subs: Vec::new(),
            labels: 0,
            slots: [None, None],
            held: None,
            spilled: None,
            next_ident: 0,
            tags: BTreeSet::new(),
        };
        let wild = b.wild();
        let types: Vec<(u32, ProgType)> =
            PROG_TYPES.iter().copied().filter(|(_, t)| wild || lock_capable(*t)).collect();
        b.prog_type = *b.rng.weighted(&types);
        b
    }

    /// Whether this decision breaks a rule (with probability `chaos`).
    fn wild(&mut self) -> bool {
        self.chaos > 0 && self.rng.chance(self.chaos)
    }

    fn fresh_ident(&mut self) -> u32 {
        self.next_ident += 1;
        self.next_ident
    }

    /// The slot holding the lock `ident`.
    fn slot_with(&self, ident: u32) -> Option<usize> {
        (0..2).find(|&s| self.slots[s].as_ref().is_some_and(|x| x.ident == ident))
    }

    /// Whether overwriting slot `s` would lose the only pointer to the held lock.
    fn sole_holder(&self, s: usize) -> bool {
        match (self.held, &self.slots[s]) {
            (Some(h), Some(x)) if x.ident == h => self.slots[1 - s].as_ref().is_none_or(|o| o.ident != h),
            _ => false,
        }
    }

    fn label(&mut self, stem: &str) -> String {
        self.labels += 1;
        format!("{stem}{}", self.labels)
    }

    fn emit(&mut self, line: &str) {
        self.main.push_str("    ");
        self.main.push_str(line);
        self.main.push('\n');
    }

    fn emit_label(&mut self, l: &str) {
        self.main.push_str(l);
        self.main.push_str(":\n");
    }

    fn text(&self) -> String {
        let mut t = self.main.clone();
        for s in &self.subs {
            t.push_str(&s.label);
            t.push_str(":\n");
            t.push_str(&s.body);
        }
        t
    }

    /// Adds a map (if not there yet) and returns its index.
    fn add_map(&mut self, spec: MapSpec) -> usize {
        if let Some(i) = self.maps.iter().position(|m| m.name == spec.name) {
            return i;
        }
        self.maps.push(spec);
        self.maps.len() - 1
    }

    /// The lock field (any lock kind) of map `m`: offset, if the map has one.
    fn lock_off(&self, m: usize) -> Option<i32> {
        self.maps[m].value.fields.iter().find(|f| f.kind != FieldKind::Int).map(|f| f.offset as i32)
    }

    /// An int field of map `m` (offset, size).
    fn int_field(&mut self, m: usize) -> Option<(i32, u32)> {
        let ints: Vec<(i32, u32)> = self.maps[m]
            .value
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::Int)
            .map(|f| (f.offset as i32, f.size))
            .collect();
        if ints.is_empty() {
            None
        } else {
            Some(*self.rng.pick(&ints))
        }
    }

    /// The whole program: prologue, lock pointers, body, epilogue, subprograms.
    fn program(&mut self) {
        self.emit("r6 = r1");
        let slot = self.primary_source();
        self.slots[0] = Some(slot);
        if self.rng.chance(40) {
            self.secondary_source();
        }
        let n = self.rng.range(2, 7) as usize;
        self.block(n, 0, false, false);
        if let Some(h) = self.held {
            let wild = self.wild();
            match self.slot_with(h) {
                Some(s) if !wild || self.rng.chance(50) => self.lock_call(s, true, false),
                _ => {
                    self.tags.insert("exit-locked");
                }
            }
        }
        self.emit_label("out");
        let r0 = if self.rng.chance(85) { 0 } else { 1 };
        self.emit(&format!("r0 = {r0}"));
        self.emit("exit");
    }

    /// A slot for a global section (all loads of one section are the same lock).
    fn global_slot(&mut self, name: &str) -> Slot {
        self.tags.insert("global-data");
        let spec = global_section(&mut self.rng, name);
        let m = self.add_map(spec);
        Slot { map: m, delta: 0, ident: 1000 + m as u32 }
    }

    /// Loads the main lock pointer into `r7`.
    fn primary_source(&mut self) -> Slot {
        let wild = self.wild();
        match self.rng.below(100) {
            _ if wild && self.rng.chance(40) => {
                self.tags.insert("no-lock-map");
                let spec = plain_map(&mut self.rng, "plain");
                let m = self.add_map(spec);
                self.lookup(m, "r7")
            }
            0..=74 => {
                let spec = lock_map(&mut self.rng, "vals", wild);
                let m = self.add_map(spec);
                self.lookup(m, "r7")
            }
            _ => {
                let name = if self.rng.chance(70) { ".data" } else { ".bss" };
                let slot = self.global_slot(name);
                let name = self.maps[slot.map].name.clone();
                self.emit(&format!("r7 = {name} ll"));
                slot
            }
        }
    }

    /// Loads a second pointer into `r8`: another map's lock, another element of the same map,
    /// a copy of `r7`, or a global section.
    fn secondary_source(&mut self) {
        let first = self.slots[0].clone().expect("primary slot");
        let slot = match self.rng.below(100) {
            0..=34 => {
                self.tags.insert("other-lock");
                let wild = self.wild();
                let spec = lock_map(&mut self.rng, "other", wild);
                let m = self.add_map(spec);
                self.lookup(m, "r8")
            }
            35..=59 if !self.maps[first.map].global_section => {
                self.tags.insert("second-element");
                self.lookup(first.map, "r8")
            }
            60..=79 => {
                self.tags.insert("copy");
                self.emit("r8 = r7");
                first
            }
            _ => {
                let name = if self.rng.chance(50) { ".data" } else { ".bss" };
                let slot = self.global_slot(name);
                let name = self.maps[slot.map].name.clone();
                self.emit(&format!("r8 = {name} ll"));
                slot
            }
        };
        self.slots[1] = Some(slot);
    }

    /// `bpf_map_lookup_elem(map, &key)` into `dst`, null-checked (jumps to `out`) unless wild.
    fn lookup(&mut self, m: usize, dst: &str) -> Slot {
        let max = self.maps[m].max_entries as i64;
        let wild = self.wild();
        match self.rng.below(100) {
            _ if wild && self.rng.chance(50) => {
                let k = max + self.rng.range(0, 3);
                self.emit(&format!("r1 = {k}"));
            }
            _ if wild => {
                self.tags.insert("unknown-key");
                self.emit("call bpf_get_prandom_u32");
                self.emit("r1 = r0");
            }
            0..=84 => self.emit("r1 = 0"),
            _ => {
                let k = self.rng.range(0, max - 1);
                self.emit(&format!("r1 = {k}"));
            }
        }
        self.emit("*(u32 *)(r10 - 4) = r1");
        self.emit("r2 = r10");
        self.emit("r2 += -4");
        let name = self.maps[m].name.clone();
        self.emit(&format!("r1 = {name} ll"));
        self.emit("call bpf_map_lookup_elem");
        if self.wild() {
            self.tags.insert("no-null-check");
        } else {
            self.emit("if r0 == 0 goto out");
        }
        self.emit(&format!("{dst} = r0"));
        Slot { map: m, delta: 0, ident: self.fresh_ident() }
    }
}

/// Program types whose programs may use a map with a `bpf_spin_lock` (`check_map_prog_compatibility()`).
fn lock_capable(t: ProgType) -> bool {
    !matches!(
        t,
        ProgType::SocketFilter
            | ProgType::Kprobe
            | ProgType::Tracepoint
            | ProgType::PerfEvent
            | ProgType::RawTracepoint
    )
}

fn field(name: &str, kind: FieldKind, offset: u32, size: u32) -> Field {
    Field::new(name, kind, offset, size)
}

/// A value layout with one lock (of `kind`) among int fields.
fn lock_layout(rng: &mut Rng, kind: FieldKind) -> ValueLayout {
    let (fields, size) = match rng.below(100) {
        0..=44 => (vec![field("cnt", FieldKind::Int, 0, 4), field("lock", kind, 4, 4)], 8),
        45..=64 => (vec![field("lock", kind, 0, 4)], 4),
        65..=84 => (
            vec![
                field("cnt", FieldKind::Int, 0, 8),
                field("lock", kind, 8, 4),
                field("x", FieldKind::Int, 12, 4),
            ],
            16,
        ),
        _ => (
            vec![
                field("a", FieldKind::Int, 0, 4),
                field("b", FieldKind::Int, 4, 4),
                field("lock", kind, 8, 4),
            ],
            12,
        ),
    };
    ValueLayout { size, fields }
}

/// A hash or array map with a `bpf_spin_lock` and BTF (`wild`: sometimes a `bpf_res_spin_lock`
/// or no BTF).
fn lock_map(rng: &mut Rng, name: &str, wild: bool) -> MapSpec {
    let kind = if wild && rng.chance(30) { FieldKind::ResSpinLock } else { FieldKind::SpinLock };
    MapSpec {
        name: name.into(),
        map_type: if rng.chance(60) { MapType::Array } else { MapType::Hash },
        key_size: 4,
        max_entries: if rng.chance(80) { 1 } else { 4 },
        value: lock_layout(rng, kind),
        btf: !(wild && rng.chance(40)),
        global_section: false,
        flags: 0,
        inner: None,
    }
}

/// A global data section (`.data`, `.bss`) with a lock.
fn global_section(rng: &mut Rng, name: &str) -> MapSpec {
    MapSpec {
        name: name.into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: lock_layout(rng, FieldKind::SpinLock),
        btf: true,
        global_section: true,
        flags: 0,
        inner: None,
    }
}

/// A map without a lock, of any type a lookup can use.
fn plain_map(rng: &mut Rng, name: &str) -> MapSpec {
    let types = [MapType::Array, MapType::Hash, MapType::PercpuArray, MapType::PercpuHash, MapType::LruHash];
    MapSpec {
        name: name.into(),
        map_type: *rng.pick(&types),
        key_size: 4,
        max_entries: 1,
        value: ValueLayout {
            size: 8,
            fields: vec![field("a", FieldKind::Int, 0, 4), field("b", FieldKind::Int, 4, 4)],
        },
        btf: true,
        global_section: false,
        flags: 0,
        inner: None,
    }
}

/// A `prog_array` for tail calls.
fn prog_array() -> MapSpec {
    MapSpec {
        name: "jmp".into(),
        map_type: MapType::ProgArray,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size: 4, fields: vec![field("fd", FieldKind::Int, 0, 4)] },
        btf: true,
        global_section: false,
        flags: 0,
        inner: None,
    }
}
