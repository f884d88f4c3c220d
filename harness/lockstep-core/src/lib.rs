//! Pure logic of lockstep: no syscalls, no I/O beyond what callers hand in.
//!
//! - [`insn`]: eBPF instruction encoding and decoding.
//! - [`asm`]: the text assembler (kernel verifier-log syntax and LLVM BPF asm) and disassembler.
//! - [`helpers`]: the uapi helper table (name <-> id).
//! - [`case`]: the TOML case-file format.
//! - [`profile`]: kernel profiles (message catalogue, rules for calls under a lock).
//! - [`model`]: the abstract interpreter that predicts the verifier's spin-lock verdicts.
//! - [`verdict`]: verdicts and their comparison (agreement classes).
//! - [`flips`]: judging a patch series: verdict flips base -> patched against the model.
//! - [`fuzz`]: differential fuzzing: program generator, minimiser, disagreement signatures.
//! - [`msgpat`]: `__msg` patterns (substring, or test_loader's `{{regex}}` syntax) matched on a log.
//! - [`import`]: kernel selftests (C) and BPF objects (ELF) as cases.

pub mod asm;
pub mod btf;
pub mod case;
pub mod compare;
pub mod corpus;
pub mod flips;
pub mod fuzz;
pub mod helpers;
pub mod import;
pub mod insn;
pub mod kernel_btf;
pub mod kfunc_btf;
pub mod model;
pub mod module_ko;
pub mod module_src;
pub mod msgpat;
pub mod profile;
pub mod profile_derive;
pub mod proto;
pub mod serde_pairs;
pub mod shard;
pub mod verdict;
pub mod wire;
