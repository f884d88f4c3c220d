//! A program with symbolic control flow, for editing: jumps and bpf-to-bpf calls name the item
//! they go to, an `ld_imm64` is one item, and labels belong to items. Removing items moves their
//! labels and the jumps into them to the next item, so offsets are recomputed on [`SymProgram::lower`]
//! and `ld_imm64` pairs are never split.

use std::collections::{BTreeMap, BTreeSet};

use crate::asm::{format_insn, Program, Reloc};
use crate::insn::*;

/// Where a jump or call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The item with this id.
    Item(u32),
    /// Past the last instruction (invalid for the kernel; kept so removal never loses a jump).
    End,
}

/// One instruction (two slots for an `ld_imm64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Stable identity across edits.
    pub id: u32,
    pub insn: Insn,
    /// The second slot of an `ld_imm64`.
    pub hi: Option<Insn>,
    pub reloc: Option<Reloc>,
    /// For jumps (not `exit`), bpf-to-bpf calls and `ld_imm64` of a subprogram: where they go.
    pub target: Option<Target>,
    /// Labels naming this item (the first is the one [`Program::labels`] keeps).
    pub labels: Vec<String>,
}

/// Errors converting a [`Program`] or lowering a [`SymProgram`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IrError {
    #[error("jump at {0} goes into the middle of an ld_imm64 or outside the program")]
    BadTarget(usize),
    #[error("the ld_imm64 at {0} has no second slot")]
    TruncatedLdImm64(usize),
    #[error("the jump at item {0} does not fit a 16-bit offset")]
    OffsetOverflow(usize),
}

/// A program as an editable list of [`Item`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymProgram {
    pub items: Vec<Item>,
    /// Labels that win when an item has several (global function names must survive edits).
    pub preferred: Vec<String>,
}

/// Whether `insn` is a jump whose target is in its `off` (or `imm` for `gotol`).
fn is_jump(insn: &Insn) -> bool {
    let indirect = insn.op() == BPF_JA && insn.source() == BPF_X;
    matches!(insn.class(), BPF_JMP | BPF_JMP32) && !insn.is_call() && !insn.is_exit() && !indirect
}

/// Whether the item's target is encoded in `imm` (calls, `gotol`, `ld_imm64` of a function).
fn target_in_imm(insn: &Insn) -> bool {
    insn.is_pseudo_call()
        || (insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC)
        || (insn.class() == BPF_JMP32 && insn.op() == BPF_JA)
}

impl SymProgram {
    /// The symbolic form of `p`.
    pub fn from_program(p: &Program) -> Result<SymProgram, IrError> {
        let n = p.insns.len();
        let mut starts = Vec::new(); // slot -> item index
        let mut slot_item = vec![None; n + 1];
        let mut pc = 0;
        while pc < n {
            slot_item[pc] = Some(starts.len());
            starts.push(pc);
            if p.insns[pc].is_ld_imm64() {
                if pc + 1 >= n {
                    return Err(IrError::TruncatedLdImm64(pc));
                }
                pc += 2;
            } else {
                pc += 1;
            }
        }
        let mut items = Vec::with_capacity(starts.len());
        for (i, &pc) in starts.iter().enumerate() {
            let insn = p.insns[pc];
            let rel = if target_in_imm(&insn) {
                Some(insn.imm as i64)
            } else if is_jump(&insn) {
                Some(insn.off as i64)
            } else {
                None
            };
            let target = match rel {
                Some(r) => {
                    let t = pc as i64 + r + 1;
                    if t == n as i64 {
                        Some(Target::End)
                    } else if t < 0 || t > n as i64 {
                        return Err(IrError::BadTarget(pc));
                    } else {
                        let j = slot_item[t as usize].ok_or(IrError::BadTarget(pc))?;
                        Some(Target::Item(j as u32))
                    }
                }
                None => None,
            };
            items.push(Item {
                id: i as u32,
                insn,
                hi: insn.is_ld_imm64().then(|| p.insns[pc + 1]),
                reloc: p.relocs.get(&pc).cloned(),
                target,
                labels: p.labels.get(&pc).cloned().into_iter().collect(),
            });
        }
        Ok(SymProgram { items, preferred: Vec::new() })
    }

    /// Instruction slots the program takes.
    pub fn slots(&self) -> usize {
        self.items.iter().map(|i| if i.hi.is_some() { 2 } else { 1 }).sum()
    }

    /// Removes the items at `positions`: their labels move to the next kept item, and jumps and
    /// calls into them go there too (or to [`Target::End`]). A preferred label does not move onto
    /// the start of another subprogram (removing a whole global function drops its name).
    pub fn remove(&mut self, positions: &BTreeSet<usize>) {
        let callees: BTreeSet<u32> = self
            .items
            .iter()
            .filter(|i| i.insn.is_pseudo_call() || (i.insn.is_ld_imm64() && i.insn.src == BPF_PSEUDO_FUNC))
            .filter_map(|i| if let Some(Target::Item(t)) = i.target { Some(t) } else { None })
            .collect();
        let mut moved: BTreeMap<u32, Target> = BTreeMap::new();
        let mut carry: Vec<String> = Vec::new();
        let mut pending: Vec<u32> = Vec::new();
        let mut kept = Vec::with_capacity(self.items.len());
        for (pos, item) in std::mem::take(&mut self.items).into_iter().enumerate() {
            if positions.contains(&pos) {
                pending.push(item.id);
                carry.extend(item.labels);
                continue;
            }
            let mut item = item;
            for id in pending.drain(..) {
                moved.insert(id, Target::Item(item.id));
            }
            if callees.contains(&item.id) {
                carry.retain(|l| !self.preferred.contains(l));
            }
            item.labels.append(&mut carry);
            kept.push(item);
        }
        for id in pending {
            moved.insert(id, Target::End);
        }
        for item in &mut kept {
            if let Some(Target::Item(t)) = item.target {
                if let Some(nt) = moved.get(&t) {
                    item.target = Some(*nt);
                }
            }
        }
        self.items = kept;
    }

    /// The kernel-ready program: offsets from targets, relocations and labels at their slots.
    /// A bpf-to-bpf call's relocation takes the name of its target's first label.
    pub fn lower(&self) -> Result<Program, IrError> {
        let mut pos = BTreeMap::new();
        let mut at = 0usize;
        for it in &self.items {
            pos.insert(it.id, at);
            at += if it.hi.is_some() { 2 } else { 1 };
        }
        let end = at;
        let names = self.target_names();
        let mut p = Program { insns: Vec::with_capacity(end), lines: vec![0; end], ..Default::default() };
        for (k, it) in self.items.iter().enumerate() {
            let here = pos[&it.id];
            let mut insn = it.insn;
            let mut reloc = it.reloc.clone();
            if let Some(t) = it.target {
                let dest = match t {
                    Target::Item(id) => pos[&id],
                    Target::End => end,
                };
                let rel = dest as i64 - here as i64 - 1;
                if target_in_imm(&insn) {
                    insn.imm = rel as i32;
                } else {
                    insn.off = i16::try_from(rel).map_err(|_| IrError::OffsetOverflow(k))?;
                }
                if let (Some(Reloc::Subprog { .. }), Target::Item(id)) = (&reloc, t) {
                    reloc = Some(Reloc::Subprog { label: names[&id].clone() });
                }
            }
            p.insns.push(insn);
            if let Some(hi) = it.hi {
                p.insns.push(hi);
            }
            if let Some(r) = reloc {
                p.relocs.insert(here, r);
            }
            if let Some(l) = names.get(&it.id) {
                p.labels.insert(here, l.clone());
            }
        }
        Ok(p)
    }

    /// The name each labelled or targeted item goes by: its first label, else a made-up one.
    fn target_names(&self) -> BTreeMap<u32, String> {
        let targeted: BTreeSet<u32> = self
            .items
            .iter()
            .filter_map(|i| if let Some(Target::Item(t)) = i.target { Some(t) } else { None })
            .collect();
        let mut out = BTreeMap::new();
        for (k, it) in self.items.iter().enumerate() {
            let preferred = it.labels.iter().find(|l| self.preferred.contains(l));
            if let Some(l) = preferred.or(it.labels.first()) {
                out.insert(it.id, l.clone());
            } else if targeted.contains(&it.id) {
                let mut name = format!("l{k}");
                while self.items.iter().any(|i| i.labels.contains(&name)) {
                    name.push('_');
                }
                out.insert(it.id, name);
            }
        }
        out
    }

    /// Assembly text that assembles back to [`SymProgram::lower`]'s program (LLVM-style lines,
    /// a label on every jump or call target and every preferred label; other labels are dropped).
    pub fn render(&self) -> Result<String, IrError> {
        let p = self.lower()?;
        let names = self.target_names();
        let targeted: BTreeSet<u32> = self
            .items
            .iter()
            .filter_map(|i| if let Some(Target::Item(t)) = i.target { Some(t) } else { None })
            .collect();
        let mut out = String::new();
        let mut at = 0usize;
        for it in &self.items {
            if let Some(name) = names.get(&it.id) {
                if targeted.contains(&it.id) || self.preferred.contains(name) {
                    out.push_str(name);
                    out.push_str(":\n");
                }
            }
            let target = it.target.map(|t| match t {
                Target::Item(id) => names[&id].clone(),
                Target::End => format!(
                    "pc{:+}",
                    if target_in_imm(&p.insns[at]) { p.insns[at].imm as i64 } else { p.insns[at].off as i64 }
                ),
            });
            out.push_str("    ");
            out.push_str(&render_insn(&p, at, it, target.as_deref()));
            out.push('\n');
            at += if it.hi.is_some() { 2 } else { 1 };
        }
        Ok(out)
    }
}

/// One instruction as an assembler line.
fn render_insn(p: &Program, at: usize, it: &Item, target: Option<&str>) -> String {
    let insn = p.insns[at];
    if insn.is_ld_imm64() {
        let d = insn.dst;
        let hi = it.hi.map_or(0, |h| h.imm);
        return match (&it.reloc, insn.src) {
            (Some(Reloc::Map { name }), BPF_PSEUDO_MAP_FD) => format!("r{d} = {name} ll"),
            (Some(Reloc::MapValue { name, offset }), BPF_PSEUDO_MAP_VALUE)
                if *offset == 0 && name.starts_with('.') =>
            {
                format!("r{d} = {name} ll")
            }
            (Some(Reloc::MapValue { name, offset }), BPF_PSEUDO_MAP_VALUE) => {
                format!("r{d} = map[id:{name}][0]+{offset}")
            }
            (_, BPF_PSEUDO_FUNC) if target.is_some() => format!("r{d} = {} ll", target.unwrap_or_default()),
            _ => format!("r{d} = {:#x} ll", ((hi as u32 as u64) << 32) | insn.imm as u32 as u64),
        };
    }
    if insn.is_call() {
        match (&it.reloc, target) {
            (Some(Reloc::Helper { name }) | Some(Reloc::Kfunc { name }), _) => return format!("call {name}"),
            (_, Some(t)) if insn.is_pseudo_call() => return format!("call {t}"),
            _ => {}
        }
    }
    let full = format_insn(p, at);
    // "N: (xx) body" -> "body"
    let body = full.split_once(") ").map_or(full.as_str(), |(_, b)| b).to_string();
    match target {
        Some(t) if is_jump(&insn) => {
            let head = body.rfind(" pc").map_or(body.as_str(), |i| &body[..i]);
            // `if r1 > 0x3 goto` -> `if r1 > 3 goto` (the kernel prints the immediate as u32 hex).
            let hex = format!("0x{:x} goto", insn.imm as u32);
            let head = if insn.source() == BPF_K && head.ends_with(&hex) {
                format!("{}{} goto", &head[..head.len() - hex.len()], insn.imm)
            } else {
                head.to_string()
            };
            format!("{head} {t}")
        }
        _ => body,
    }
}
