//! The text assembler and disassembler.
//!
//! Reads both the kernel verifier-log syntax (`0: (b7) r0 = 0`, `goto pc+2`) and the LLVM BPF asm of
//! the kernel selftests' naked functions (`*(u32 *)(r10 - 4) = r1`, `if r0 != 0 goto l0`, labels,
//! `call bpf_spin_lock`, `r1 = map_name ll`). The disassembler prints the kernel-log syntax.
//! The accepted syntax is described in `docs/asm.md`.

mod disasm;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

pub use disasm::{disassemble, format_insn};
pub use parse::assemble;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::insn::Insn;

/// What an instruction refers to by name; the numeric fields are filled in when the program is
/// loaded (map fds, kfunc BTF ids) or at assembly (helper ids, subprogram offsets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reloc {
    /// `ld_imm64` with `BPF_PSEUDO_MAP_FD`: a map by name.
    Map { name: String },
    /// `ld_imm64` with `BPF_PSEUDO_MAP_VALUE`: the address of a map's value plus an offset
    /// (global data sections are maps too).
    MapValue { name: String, offset: u32 },
    /// A helper call; `imm` already holds the helper id.
    Helper { name: String },
    /// A kfunc call; `imm` (BTF id) and `off` (fd_array index) are resolved at load time.
    Kfunc { name: String },
    /// A bpf-to-bpf call to a label; `imm` already holds the relative offset.
    Subprog { label: String },
    /// `ld_imm64` (`BPF_PSEUDO_BTF_ID`) of an `extern ... __ksym` function used as a value
    /// (`bpf_ksym_exists(kfunc)`), as libbpf's `bpf_object__resolve_ksym_func_btf_id()` and
    /// `bpf_object__relocate_data()` give it to the kernel: resolved by `name` without its
    /// `___flavour` suffix to a kernel FUNC whose prototype is compatible
    /// (`bpf_core_types_are_compat()`) with `proto` (the local prototype's
    /// [`crate::import::btf::Btf::compat_shape`]): `BPF_PSEUDO_BTF_ID` with the FUNC's id;
    /// otherwise, `weak`, the constant 0 (`src_reg` 0); not weak, the load fails.
    KsymFunc { name: String, weak: bool, proto: String },
    /// `ld_imm64` (`BPF_PSEUDO_BTF_ID`) of a typed `extern <type> name __ksym` variable, as
    /// libbpf's `bpf_object__resolve_ksym_var_btf_id()` gives it to the kernel: the vmlinux VAR
    /// `name` whose type is compatible (`bpf_core_types_are_compat()`) with the local type of
    /// [`crate::import::btf::Btf::compat_shape`] `shape`. Not found, a `weak` extern is the
    /// constant 0; otherwise libbpf refuses the object.
    KsymVar { name: String, weak: bool, shape: String },
}

/// An assembled program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Instruction slots (an `ld_imm64` takes two). In JSON (the protocol's `Run`): the
    /// kernel's byte image as one hex string ([`crate::insn::hex_image`]).
    #[serde(with = "crate::insn::hex_image")]
    pub insns: Vec<Insn>,
    /// Symbolic references keyed by instruction index.
    #[serde(with = "crate::serde_pairs")]
    pub relocs: BTreeMap<usize, Reloc>,
    /// Labels keyed by the instruction index they name (subprogram entries among them).
    #[serde(with = "crate::serde_pairs")]
    pub labels: BTreeMap<usize, String>,
    /// 1-based source line of each slot, relative to the start of the text (0 for a
    /// second `ld_imm64` slot and for programs not assembled from text). Not sent to the
    /// guest (`guest::pipeline::for_guest` empties it): an empty list is left out of JSON.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<usize>,
}

impl Program {
    /// Indices of the first instruction of each subprogram, main program (0) first, as the
    /// verifier's `add_subprog_and_kfunc` finds them: every target of a bpf-to-bpf call and of an
    /// `ld_imm64` with `BPF_PSEUDO_FUNC`.
    pub fn subprog_starts(&self) -> Vec<usize> {
        let mut starts = vec![0usize];
        for (i, insn) in self.insns.iter().enumerate() {
            if let Some(t) = insn.subprog_target(i).filter(|t| *t >= 0) {
                starts.push(t as usize);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        starts
    }

    /// The name of the kfunc or helper called at `idx`, if any.
    pub fn call_name(&self, idx: usize) -> Option<&str> {
        match self.relocs.get(&idx)? {
            Reloc::Helper { name } | Reloc::Kfunc { name } => Some(name),
            Reloc::Subprog { label } => Some(label),
            _ => None,
        }
    }
}

/// An assembly error, located by line and column (both 1-based, relative to the text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct AsmError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Names the assembler may resolve `call NAME` and `rX = NAME ll` against.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// Map names (including global data sections such as `.data`).
    pub maps: Vec<String>,
    /// Kfunc names known to exist (vmlinux kfuncs of the profiles and test-module kfuncs).
    pub kfuncs: Vec<String>,
}
