//! Pruning of states met again (`is_state_visited()`): a path that reaches an instruction in a
//! state the walk already met there stops. The kernel compares with `states_equal()` (`regsafe()`,
//! `stacksafe()`, registers not live ignored: `compute_live_registers()` in 7.3, read marks in
//! 6.12 / 7.2); the model prunes only where that surely holds, so pruning never changes a
//! verdict, it only ends walks that repeat a subtree (a sequence of `if (val) ...` diamonds is
//! 2^n paths without it):
//!
//! - the states are equal in everything, registers not live at the instruction excepted
//!   ([`PruneInfo::live`]: an over-approximation of the registers read before being written on
//!   some path, every call reading R1-R5);
//! - only in the walk's own frame (one frame), at an instruction on no cycle of the
//!   subprogram's control flow graph, with two or more predecessors (a join) or one on a cycle
//!   (a loop's exit: each pass of a loop the walk unrolls reaches it on its own path): a path
//!   cannot meet such an instruction twice, so the state met before belongs to another path,
//!   whose whole subtree from there the depth-first walk finished before popping the later path
//!   (it found no error, or the walk would have stopped);
//! - not in programs with `gotox` (indirect jumps: no graph).
//!
//! The ids a skipped subtree would have taken (`++env->id_gen`) are not taken, where the kernel
//! (other prune points, states kept only now and then by `is_state_visited()`) may have walked
//! it: after a pruned path, a reference leak's message (its id) is `unsupported` (unless no id
//! was taken since the first state at that instruction was kept: the subtree skipped, the same
//! as the one walked from the equal state, takes none); the irq messages with ids already need
//! the first path (`State::ids_exact`), which is never pruned.

use super::exec::Machine;
use super::state::{Reg, SeenStates, State};
use crate::insn::*;

/// States kept per instruction; later ones are not recorded (the walk then goes on as before).
const MAX_PRUNE_STATES: usize = 64;

/// Instructions walked before pruning starts at joins: a walk that stays below walks as before,
/// with no state kept (`lockstep bench model`: the corpus' programs are small). Starting late
/// changes nothing: a state met before it is not kept, so nothing is pruned against it.
///
/// A loop's exits are watched from the first step in a program with a backward jump
/// (`Prepared::backward_jump`), keeping [`EARLY_LOOP_EXIT_STATES`] each until then: the first
/// pass of an unrolled loop reaches its exit early, and each later pass reaches it again on its
/// own path, so a loop after a loop (`tests/corpus/loops73b-exits.toml`) would otherwise be walked
/// again from each pass of the first that left before this count (1486 instructions there
/// against the kernel's 856; 709 so).
const PRUNE_AFTER_STEPS: usize = 512;

/// States kept per loop exit before [`PRUNE_AFTER_STEPS`]: the first is the one the later passes
/// of a loop meet again; more cost comparisons at the exits of loops whose passes differ
/// (`tests/corpus/bitsiter-widen.toml`).
const EARLY_LOOP_EXIT_STATES: usize = 1;

/// [`PruneInfo`]'s kinds of instruction: a prune point, and one that is a loop's exit.
const POINT: u8 = 1;
const LOOP_EXIT: u8 = 2;

/// The states kept at a prune point (`Machine::visited`).
#[derive(Default)]
pub(crate) struct Kept {
    states: SeenStates,
    /// `env->id_gen` when the first of them was kept.
    ids_at_first: u32,
}

/// The prune points and register liveness of a program.
pub(crate) struct PruneInfo {
    /// Per instruction: [`POINT`] (a join or a loop's exit, on no cycle), [`LOOP_EXIT`] (a
    /// prune point that is a loop's exit).
    points: Vec<u8>,
    /// R0-R9 live before each instruction (bit r).
    live: Vec<u16>,
}

impl PruneInfo {
    /// Whether `pc` is a prune point.
    #[cfg(test)]
    pub(crate) fn point(&self, pc: usize) -> bool {
        self.kind(pc) & POINT != 0
    }
    /// [`POINT`] and [`LOOP_EXIT`] of `pc`.
    fn kind(&self, pc: usize) -> u8 {
        self.points.get(pc).copied().unwrap_or(0)
    }
    /// R0-R9 live before `pc` (bit r).
    pub(crate) fn live_at(&self, pc: usize) -> u16 {
        self.live.get(pc).copied().unwrap_or(0)
    }
}

/// Up to two successors of an instruction, in place (the graph passes build one per
/// instruction: no allocation each).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Succs {
    t: [usize; 2],
    n: u8,
}

impl Succs {
    fn of(t: &[usize]) -> Self {
        let mut s = Succs::default();
        s.t[..t.len()].copy_from_slice(t);
        s.n = t.len() as u8;
        s
    }
    pub(super) fn as_slice(&self) -> &[usize] {
        &self.t[..usize::from(self.n)]
    }
}

impl<'a> IntoIterator for &'a Succs {
    type Item = &'a usize;
    type IntoIter = std::slice::Iter<'a, usize>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// The successors of `pc` within its subprogram (calls fall through), None for `gotox` (also
/// `precise.rs`'s).
pub(super) fn successors(insns: &[Insn], pc: usize) -> Option<Succs> {
    let insn = insns[pc];
    let class = insn.class();
    if insn.is_ld_imm64() {
        return Some(Succs::of(&[pc + 2]));
    }
    if !matches!(class, BPF_JMP | BPF_JMP32) {
        return Some(Succs::of(&[pc + 1]));
    }
    match insn.op() {
        BPF_CALL => Some(Succs::of(&[pc + 1])),
        BPF_EXIT => Some(Succs::default()),
        BPF_JA if insn.source() == BPF_X => None,
        BPF_JA => {
            let off = if class == BPF_JMP32 { insn.imm as i64 } else { insn.off as i64 };
            Some(Succs::of(&[usize::try_from(pc as i64 + off + 1).ok()?]))
        }
        _ => Some(Succs::of(&[pc + 1, usize::try_from(pc as i64 + insn.off as i64 + 1).ok()?])),
    }
}

const ARGS: u16 = 0b11_1110;
const CALL_CLOBBERED: u16 = 0b11_1111;

/// (registers read, registers written) by `insn`; a register both read and written is read.
fn uses_defs(insn: &Insn) -> (u16, u16) {
    let bit = |r: u8| if r < 10 { 1u16 << r } else { 0 };
    let (d, s) = (bit(insn.dst), bit(insn.src));
    match insn.class() {
        BPF_ALU | BPF_ALU64 => match (insn.op(), insn.source()) {
            (BPF_MOV, BPF_X) => (s, d),
            (BPF_MOV, _) => (0, d),
            (BPF_NEG | BPF_END, _) => (d, 0),
            (_, BPF_X) => (d | s, 0),
            _ => (d, 0),
        },
        BPF_LD if insn.is_ld_imm64() => (0, d),
        // LD_ABS / LD_IND: the ctx in R6 (and the index register), R0-R5 clobbered.
        BPF_LD => (bit(6) | s, CALL_CLOBBERED),
        BPF_LDX => (s, d),
        BPF_ST => (d, 0),
        // Atomics read their operands and may write R0 or src: nothing counted as written.
        BPF_STX if insn.mode() == BPF_ATOMIC => (d | s | 1, 0),
        BPF_STX => (d | s, 0),
        _ => match insn.op() {
            BPF_CALL => (ARGS, CALL_CLOBBERED),
            BPF_EXIT => (1, 0),
            BPF_JA => (0, 0),
            // may_goto reads no register.
            0xe0 => (0, 0),
            _ if insn.source() == BPF_X => (d | s, 0),
            _ => (d, 0),
        },
    }
}

/// The instructions on a cycle of the graph (iterative Tarjan: members of an SCC of two or more
/// nodes, or with an edge to themselves).
fn on_cycle(succ: &[Succs]) -> Vec<bool> {
    let n = succ.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = vec![];
    let mut cyc = vec![false; n];
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = call.last_mut() {
            if let Some(&w) = succ[v].as_slice().get(*i) {
                *i += 1;
                if w >= n {
                    continue;
                }
                if w == v {
                    cyc[v] = true;
                }
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(p, _)) = call.last() {
                low[p] = low[p].min(low[v]);
            }
            if low[v] == index[v] {
                // The component: the stack from `v` up.
                let at = stack.iter().rposition(|&w| w == v).unwrap_or(0);
                let several = stack.len() - at > 1;
                for w in stack.drain(at..) {
                    on_stack[w] = false;
                    cyc[w] |= several;
                }
            }
        }
    }
    cyc
}

/// The prune points and liveness of `insns`, None for a program the graph cannot be built of.
pub(crate) fn prune_info(insns: &[Insn]) -> Option<PruneInfo> {
    let n = insns.len();
    let mut succ = vec![Succs::default(); n];
    let mut is_insn = vec![false; n];
    let mut pc = 0;
    while pc < n {
        succ[pc] = successors(insns, pc)?;
        is_insn[pc] = true;
        pc += if insns[pc].is_ld_imm64() { 2 } else { 1 };
    }
    let cyc = on_cycle(&succ);
    let mut preds = vec![0u32; n];
    let mut loop_exit = vec![false; n];
    for (pc, s) in succ.iter().enumerate() {
        for &t in s {
            if t < n {
                preds[t] += 1;
                loop_exit[t] |= cyc[pc];
            }
        }
    }
    let points = (0..n)
        .map(|pc| match is_insn[pc] && !cyc[pc] {
            true if loop_exit[pc] => POINT | LOOP_EXIT,
            true if preds[pc] >= 2 => POINT,
            _ => 0,
        })
        .collect();
    let ud: Vec<(u16, u16)> = insns.iter().map(uses_defs).collect();
    let mut live = vec![0u16; n];
    loop {
        let mut changed = false;
        for pc in (0..n).rev().filter(|pc| is_insn[*pc]) {
            let out = succ[pc].as_slice().iter().filter_map(|t| live.get(*t)).fold(0, |a, l| a | l);
            let (u, d) = ud[pc];
            let l = (out & !d) | u;
            if l != live[pc] {
                live[pc] = l;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Some(PruneInfo { points, live })
}

impl Machine<'_> {
    /// Whether `st` repeats a state the walk met at its instruction (see the module's comment);
    /// records it otherwise.
    pub(super) fn pruned(&mut self, st: &mut State) -> bool {
        let early = self.steps < PRUNE_AFTER_STEPS;
        if (early && !self.prep.backward_jump) || st.frames.len() != 1 {
            return false;
        }
        let pc = st.pc;
        let Some(info) = self.prep.prune_info() else {
            return false;
        };
        let kind = info.kind(pc);
        if kind == 0 || (early && kind & LOOP_EXIT == 0) {
            return false;
        }
        let live = info.live_at(pc);
        // The key is `st` with `ids_exact` false and the registers not live `NOT_INIT`: made in
        // place and undone after the lookup, so only a state kept is cloned.
        let (regs, ids_exact) = (st.frames[0].regs, st.ids_exact);
        st.ids_exact = false;
        for (r, reg) in st.frames[0].regs.iter_mut().enumerate().take(10) {
            if live & (1 << r) == 0 {
                *reg = Reg::NotInit;
            }
        }
        let id_gen = self.id_gen;
        let kept = self.visited.entry_or_default(pc);
        let k = st.quick_key();
        let found = kept.states.contains_keyed(st, k);
        if !found && kept.states.len() < if early { EARLY_LOOP_EXIT_STATES } else { MAX_PRUNE_STATES } {
            if kept.states.is_empty() {
                kept.ids_at_first = id_gen;
            }
            kept.states.push_keyed(std::sync::Arc::new(st.clone()), k);
        }
        st.frames[0].regs = regs;
        st.ids_exact = ids_exact;
        // The subtree skipped is the one walked from the equal state kept, which took as many
        // ids as it: none when no id was taken since the first state here was kept.
        if found && id_gen != kept.ids_at_first {
            self.pruned_paths.set(true);
        }
        found
    }
}
