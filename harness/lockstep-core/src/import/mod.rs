//! Inputs that users already have, turned into [`Case`](crate::case::Case)s: the kernel's own
//! naked-asm verifier selftests (C source, [`selftests`]) and clang-compiled BPF objects
//! ([`elf`]). Pure: the callers read the files.
//!
//! - [`clex`], [`ctypes`]: just enough C (tokens, top-level items, struct layout, constant
//!   expressions) for the selftest sources and the uapi header.
//! - `cfile`: a selftest C file's functions, maps and globals.
//! - [`annot`]: the selftests' `__success`/`__failure`/`__msg` annotations, from C or BTF decl tags.
//! - [`prog_tests`]: expectations from `prog_tests/*.c` tables (a sidecar beside the objects).
//! - [`sec`]: ELF section names to program types (libbpf's rules).
//! - [`render`]: cases back to case-file TOML.
//! - [`inner_map`]: a map-in-map's inner map definition, from BTF.
//! - [`kconfig`]: libbpf's `.kconfig` map of `__kconfig` externs.
//! - [`btf`]: raw BTF (struct layouts, functions, data sections, decl tags) for [`elf`].
//! - `btf_sanitize`: the copy of `.BTF` aya-obj is given (fields it cannot read hidden).

pub mod annot;
pub mod btf;
pub mod btf_lazy;
mod btf_sanitize;
mod cexpr;
mod cfile;
pub mod clex;
pub mod ctypes;
pub mod elf;
mod elf_check;
pub mod inner_map;
pub mod kconfig;
pub mod map_name;
pub mod prog_tests;
pub mod sec;
pub mod selftests;
pub mod special;

use ctypes::CDefs;

/// The structs, enums and macros of `include/uapi/linux/bpf.h` (for `offsetof(struct __sk_buff,
/// mark)`, `BPF_MAP_TYPE_*`, `BPF_F_*`), given its text.
pub fn uapi_defs(bpf_h: &str) -> CDefs {
    let src = clex::CSource::new(bpf_h);
    let mut d = CDefs::default();
    d.add_source(&src.clean, &src.defines);
    d
}
