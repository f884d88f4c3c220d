//! The minimiser: delta debugging over a program's [`SymProgram`] with steps that keep it
//! well-formed (jump targets follow removals, `ld_imm64` pairs stay whole, the kernel's static
//! control-flow checks in [`cfg`](super::cfg) hold), shrinking while the oracle still reports the
//! same disagreement class.
//!
//! Steps, repeated until a whole round changes nothing: drop a subprogram (its calls become
//! `r0 = 0`); remove chunks of instructions (halving sizes down to single instructions); remove a
//! lock call together with an unlock call; turn a conditional jump into `goto`; replace a call
//! or a load by `rX = 0` (a call also by `call bpf_ktime_get_ns`, which takes no arguments);
//! fold `rX += a; rX += b`; simplify the case (program type `sched_cls`, array maps with one
//! entry).
//! Maps, global functions and extern kfuncs nothing refers to any more are dropped with each step.

use std::collections::BTreeSet;

use super::cfg;
use super::ir::{SymProgram, Target};
use crate::asm::Reloc;
use crate::case::{Case, MapType, ProgType};
use crate::insn::*;

/// The outcome of [`minimize`].
#[derive(Clone, Debug)]
pub struct Minimized {
    /// The smallest case found (the input if nothing could be removed).
    pub case: Case,
    /// Oracle calls made, the first one reproducing the input.
    pub oracle_calls: usize,
    /// Steps that kept the signature and were adopted.
    pub steps: usize,
    pub slots_before: usize,
    pub slots_after: usize,
    /// False when the input itself did not give a signature (nothing was minimised).
    pub reproduced: bool,
    /// The oracle call budget ran out before a round without progress.
    pub budget_exhausted: bool,
}

/// Shrinks `case` while `oracle` returns the signature it returns for `case`, with at most
/// `budget` oracle calls.
pub fn minimize<S: PartialEq, F: FnMut(&Case) -> Option<S>>(
    case: &Case,
    mut oracle: F,
    budget: usize,
) -> Minimized {
    let before = case.program.insns.len();
    let target = oracle(case);
    let mut out = Minimized {
        case: case.clone(),
        oracle_calls: 1,
        steps: 0,
        slots_before: before,
        slots_after: before,
        reproduced: target.is_some(),
        budget_exhausted: false,
    };
    let Some(target) = target else { return out };
    let Ok(mut sym) = SymProgram::from_program(&case.program) else { return out };
    sym.preferred = case.globals.iter().map(|g| g.label.clone()).collect();
    let mut s = Shrinker {
        oracle: &mut oracle,
        target,
        calls: 1,
        budget,
        steps: 0,
        sym,
        case: case.clone(),
        exhausted: false,
    };
    loop {
        let steps = s.steps;
        s.drop_subprogs();
        s.chunks();
        s.lock_pairs();
        s.branches_to_goto();
        s.zero_calls_and_loads();
        s.merge_adds();
        s.simplify_case();
        if s.steps == steps || s.exhausted {
            break;
        }
    }
    out.slots_after = s.case.program.insns.len();
    out.oracle_calls = s.calls;
    out.steps = s.steps;
    out.budget_exhausted = s.exhausted;
    out.case = s.case;
    out
}

struct Shrinker<'o, S, F> {
    oracle: &'o mut F,
    target: S,
    calls: usize,
    budget: usize,
    steps: usize,
    sym: SymProgram,
    case: Case,
    exhausted: bool,
}

/// `case` with `sym` as its program, or None when `sym` is not a valid program.
pub fn rebuild(sym: &SymProgram, base: &Case) -> Option<Case> {
    let program = sym.lower().ok()?;
    cfg::check(&program).ok()?;
    let text = sym.render().ok()?;
    let mut c = base.clone();
    let mut maps = BTreeSet::new();
    let mut kfuncs = BTreeSet::new();
    for r in program.relocs.values() {
        match r {
            Reloc::Map { name } | Reloc::MapValue { name, .. } => {
                maps.insert(name.as_str());
            }
            Reloc::Kfunc { name } => {
                kfuncs.insert(name.as_str());
            }
            _ => {}
        }
    }
    c.maps.retain(|m| maps.contains(m.name.as_str()));
    c.extern_kfuncs.retain(|k| kfuncs.contains(k.as_str()));
    let starts = program.subprog_starts();
    c.globals.retain(|g| program.labels.iter().any(|(i, l)| *l == g.label && starts.contains(i)));
    c.program = program;
    c.text = text;
    Some(c)
}

impl<S: PartialEq, F: FnMut(&Case) -> Option<S>> Shrinker<'_, S, F> {
    /// Asks the oracle about `case`; adopts it (with `sym`) if the signature is unchanged.
    fn try_case(&mut self, sym: SymProgram, case: Case) -> bool {
        if self.calls >= self.budget {
            self.exhausted = true;
            return false;
        }
        self.calls += 1;
        if (self.oracle)(&case).is_some_and(|s| s == self.target) {
            self.sym = sym;
            self.case = case;
            self.steps += 1;
            true
        } else {
            false
        }
    }

    fn try_sym(&mut self, sym: SymProgram) -> bool {
        if self.exhausted {
            return false;
        }
        match rebuild(&sym, &self.case) {
            Some(c) => self.try_case(sym, c),
            None => false,
        }
    }

    fn try_remove(&mut self, positions: BTreeSet<usize>) -> bool {
        let mut sym = self.sym.clone();
        sym.remove(&positions);
        self.try_sym(sym)
    }

    /// Drops each subprogram (last first); calls to it become `r0 = 0`.
    fn drop_subprogs(&mut self) {
        let Ok(p) = self.sym.lower() else { return };
        let starts = p.subprog_starts();
        for k in (1..starts.len()).rev() {
            let Ok(p) = self.sym.lower() else { return };
            let starts_now = p.subprog_starts();
            let Some(&start) = starts_now.get(k) else { continue };
            let end = starts_now.get(k + 1).copied().unwrap_or(p.insns.len());
            let mut slot = 0;
            let mut range = BTreeSet::new();
            let mut start_id = None;
            for (i, it) in self.sym.items.iter().enumerate() {
                if slot >= start && slot < end {
                    range.insert(i);
                    if slot == start {
                        start_id = Some(it.id);
                    }
                }
                slot += if it.hi.is_some() { 2 } else { 1 };
            }
            let Some(start_id) = start_id else { continue };
            let mut sym = self.sym.clone();
            for it in &mut sym.items {
                if it.target == Some(Target::Item(start_id)) && it.insn.is_pseudo_call() {
                    it.insn = Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);
                    it.target = None;
                    it.reloc = None;
                }
            }
            sym.remove(&range);
            self.try_sym(sym);
        }
    }

    /// Removes chunks of `n/2`, `n/4`, ..., 1 consecutive items.
    fn chunks(&mut self) {
        let mut k = (self.sym.items.len() / 2).max(1);
        loop {
            let mut i = 0;
            while i < self.sym.items.len() && !self.exhausted {
                let end = (i + k).min(self.sym.items.len());
                if !self.try_remove((i..end).collect()) {
                    i += k;
                }
            }
            if k == 1 || self.exhausted {
                break;
            }
            k /= 2;
        }
    }

    fn call_named(&self, i: usize, names: &[&str]) -> bool {
        matches!(&self.sym.items[i].reloc, Some(Reloc::Helper { name }) | Some(Reloc::Kfunc { name }) if names.contains(&name.as_str()))
    }

    /// Removes a lock call together with an unlock call.
    fn lock_pairs(&mut self) {
        let mut i = 0;
        while i < self.sym.items.len() && !self.exhausted {
            if self.call_named(i, &["bpf_spin_lock", "bpf_res_spin_lock"]) {
                let unlocks: Vec<usize> = (0..self.sym.items.len())
                    .filter(|&j| self.call_named(j, &["bpf_spin_unlock", "bpf_res_spin_unlock"]))
                    .collect();
                if unlocks.into_iter().any(|j| self.try_remove([i, j].into_iter().collect())) {
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Turns conditional jumps into `goto`.
    fn branches_to_goto(&mut self) {
        for i in 0..self.sym.items.len() {
            let Some(it) = self.sym.items.get(i) else { break };
            let insn = it.insn;
            let cond = matches!(insn.class(), BPF_JMP | BPF_JMP32)
                && !matches!(insn.op(), BPF_JA | BPF_CALL | BPF_EXIT | BPF_JCOND);
            if cond {
                let mut sym = self.sym.clone();
                sym.items[i].insn = Insn::new(BPF_JMP | BPF_JA, 0, 0, 0, 0);
                self.try_sym(sym);
            }
        }
    }

    /// Replaces helper/kfunc calls by `r0 = 0` or by a call of a helper without arguments
    /// (`bpf_ktime_get_ns`, so the argument set-up can go), and loads by `rX = 0`.
    fn zero_calls_and_loads(&mut self) {
        const SIMPLE: &str = "bpf_ktime_get_ns";
        for i in 0..self.sym.items.len() {
            let Some(it) = self.sym.items.get(i) else { break };
            let insn = it.insn;
            let call = insn.is_helper_call() || insn.is_kfunc_call();
            let simple = matches!(&it.reloc, Some(Reloc::Helper { name }) if name == SIMPLE);
            let dst = if call {
                0
            } else if insn.class() == BPF_LDX {
                insn.dst
            } else {
                continue;
            };
            let mut sym = self.sym.clone();
            sym.items[i].insn = Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, 0);
            sym.items[i].reloc = None;
            if self.try_sym(sym) || !call || simple {
                continue;
            }
            let mut sym = self.sym.clone();
            let id = crate::helpers::helper_id(SIMPLE).expect("a uapi helper");
            sym.items[i].insn = Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, id);
            sym.items[i].reloc = Some(Reloc::Helper { name: SIMPLE.into() });
            self.try_sym(sym);
        }
    }

    /// Folds `rX += a; rX += b` (adjacent, the second not a jump target) into `rX += a+b`, and
    /// drops `rX += 0`.
    fn merge_adds(&mut self) {
        let add_k = |i: &Insn| i.code == BPF_ALU64 | BPF_ADD | BPF_K;
        let mut i = 0;
        while i < self.sym.items.len() && !self.exhausted {
            let a = self.sym.items[i].insn;
            if !add_k(&a) {
                i += 1;
                continue;
            }
            if a.imm == 0 && self.try_remove([i].into_iter().collect()) {
                continue;
            }
            let targeted =
                |s: &SymProgram, id: u32| s.items.iter().any(|x| x.target == Some(Target::Item(id)));
            if let Some(b) = self.sym.items.get(i + 1) {
                if add_k(&b.insn) && b.insn.dst == a.dst && !targeted(&self.sym, b.id) {
                    if let Some(sum) = a.imm.checked_add(b.insn.imm) {
                        let mut sym = self.sym.clone();
                        sym.items[i].insn.imm = sum;
                        sym.remove(&[i + 1].into_iter().collect());
                        if self.try_sym(sym) {
                            continue;
                        }
                    }
                }
            }
            i += 1;
        }
    }

    /// Program type `sched_cls`, hash maps as arrays, one entry per map.
    fn simplify_case(&mut self) {
        if self.case.prog_type != ProgType::SchedCls {
            let mut c = self.case.clone();
            c.prog_type = ProgType::SchedCls;
            c.sleepable = false;
            self.try_case(self.sym.clone(), c);
        }
        for m in 0..self.case.maps.len() {
            let spec = &self.case.maps[m];
            if spec.global_section || spec.map_type == MapType::ProgArray {
                continue;
            }
            if spec.map_type != MapType::Array {
                let mut c = self.case.clone();
                c.maps[m].map_type = MapType::Array;
                self.try_case(self.sym.clone(), c);
            }
            if self.case.maps[m].max_entries != 1 {
                let mut c = self.case.clone();
                c.maps[m].max_entries = 1;
                self.try_case(self.sym.clone(), c);
            }
        }
    }
}
