//! The TOML case-file format: types here, the parser in [`parse`].
//!
//! A case file holds one or more `[[case]]` tables. See `tests/corpus/README.md` for the format.

pub mod parse;
pub mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::asm::Program;

/// BPF program types: those lockstep can load without an attach target ([`ProgType::ALL`]) and
/// those only an object carries, which the guest loads through libbpf with the attach target or
/// attach type its section names ([`ProgType::ATTACHED`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgType {
    SocketFilter,
    Kprobe,
    SchedCls,
    SchedAct,
    Tracepoint,
    Xdp,
    PerfEvent,
    CgroupSkb,
    RawTracepoint,
    LwtIn,
    FlowDissector,
    Syscall,
    /// `BPF_PROG_TYPE_CGROUP_SOCK` (`cgroup/sock_create`, `cgroup/post_bind4`, ...).
    CgroupSock,
    /// `BPF_PROG_TYPE_SK_SKB` (`sk_skb`, `sk_skb/stream_parser`, ...).
    SkSkb,
    /// `BPF_PROG_TYPE_SK_REUSEPORT` (`sk_reuseport`, `sk_reuseport/migrate`).
    SkReuseport,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE` (`raw_tp.w/...`).
    RawTracepointWritable,
    /// `BPF_PROG_TYPE_TRACING` (`fentry/`, `fexit/`, `fmod_ret/`, `tp_btf/`, `iter/`, ...).
    Tracing,
    /// `BPF_PROG_TYPE_STRUCT_OPS` (`struct_ops/...`).
    StructOps,
    /// `BPF_PROG_TYPE_EXT` (`freplace/...`).
    Ext,
    /// `BPF_PROG_TYPE_LSM` (`lsm/...`, `lsm.s/...`).
    Lsm,
}

impl ProgType {
    /// Every supported program type.
    pub const ALL: [ProgType; 12] = [
        ProgType::SocketFilter,
        ProgType::Kprobe,
        ProgType::SchedCls,
        ProgType::SchedAct,
        ProgType::Tracepoint,
        ProgType::Xdp,
        ProgType::PerfEvent,
        ProgType::CgroupSkb,
        ProgType::RawTracepoint,
        ProgType::LwtIn,
        ProgType::FlowDissector,
        ProgType::Syscall,
    ];

    /// Program types only an object's section gives (an attach target or an attach type a case
    /// file cannot carry): not in [`ProgType::ALL`], so case files, the fuzzer and the census
    /// never use them.
    pub const ATTACHED: [ProgType; 8] = [
        ProgType::CgroupSock,
        ProgType::SkSkb,
        ProgType::SkReuseport,
        ProgType::RawTracepointWritable,
        ProgType::Tracing,
        ProgType::StructOps,
        ProgType::Ext,
        ProgType::Lsm,
    ];

    /// The `enum bpf_prog_type` value (include/uapi/linux/bpf.h).
    pub const fn uapi(self) -> u32 {
        match self {
            ProgType::SocketFilter => 1,
            ProgType::Kprobe => 2,
            ProgType::SchedCls => 3,
            ProgType::SchedAct => 4,
            ProgType::Tracepoint => 5,
            ProgType::Xdp => 6,
            ProgType::PerfEvent => 7,
            ProgType::CgroupSkb => 8,
            ProgType::LwtIn => 10,
            ProgType::RawTracepoint => 17,
            ProgType::FlowDissector => 22,
            ProgType::Syscall => 31,
            ProgType::CgroupSock => 9,
            ProgType::SkSkb => 14,
            ProgType::SkReuseport => 21,
            ProgType::RawTracepointWritable => 24,
            ProgType::Tracing => 26,
            ProgType::StructOps => 27,
            ProgType::Ext => 28,
            ProgType::Lsm => 29,
        }
    }

    /// The snake_case name used in case files.
    pub fn name(self) -> &'static str {
        match self {
            ProgType::SocketFilter => "socket_filter",
            ProgType::Kprobe => "kprobe",
            ProgType::SchedCls => "sched_cls",
            ProgType::SchedAct => "sched_act",
            ProgType::Tracepoint => "tracepoint",
            ProgType::Xdp => "xdp",
            ProgType::PerfEvent => "perf_event",
            ProgType::CgroupSkb => "cgroup_skb",
            ProgType::RawTracepoint => "raw_tracepoint",
            ProgType::LwtIn => "lwt_in",
            ProgType::FlowDissector => "flow_dissector",
            ProgType::Syscall => "syscall",
            ProgType::CgroupSock => "cgroup_sock",
            ProgType::SkSkb => "sk_skb",
            ProgType::SkReuseport => "sk_reuseport",
            ProgType::RawTracepointWritable => "raw_tracepoint_writable",
            ProgType::Tracing => "tracing",
            ProgType::StructOps => "struct_ops",
            ProgType::Ext => "ext",
            ProgType::Lsm => "lsm",
        }
    }
}

/// The `prog_flags` a case may set by name (include/uapi/linux/bpf.h); `BPF_F_SLEEPABLE` is
/// the separate `sleepable` key.
pub const PROG_FLAGS: &[(&str, u32)] = &[
    ("BPF_F_STRICT_ALIGNMENT", 1 << 0),
    ("BPF_F_ANY_ALIGNMENT", 1 << 1),
    ("BPF_F_TEST_RND_HI32", 1 << 2),
    ("BPF_F_TEST_STATE_FREQ", 1 << 3),
    ("BPF_F_XDP_HAS_FRAGS", 1 << 5),
    ("BPF_F_TEST_REG_INVARIANTS", 1 << 7),
];

/// Map types a case may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapType {
    Hash,
    Array,
    ProgArray,
    PercpuHash,
    PercpuArray,
    LruHash,
    CgroupStorage,
    SkStorage,
    /// `BPF_MAP_TYPE_SOCKMAP`: a lookup gives a referenced `sock_or_null` (model/sock.rs).
    SockMap,
    /// `BPF_MAP_TYPE_XSKMAP`: a lookup gives an `xdp_sock_or_null`.
    XskMap,
    /// `BPF_MAP_TYPE_SOCKHASH`: as `SockMap`.
    SockHash,
    /// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`: only `bpf_sk_select_reuseport` takes it.
    ReuseportSockarray,
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`: values are inner maps ([`MapSpec::inner`]).
    ArrayOfMaps,
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`: values are inner maps ([`MapSpec::inner`]).
    HashOfMaps,
    /// `BPF_MAP_TYPE_ARENA`: pages shared with user space (`key_size` and value size 0,
    /// `max_entries` pages, `flags` with `BPF_F_MMAPABLE`; lockstep creates it with `map_extra`
    /// [`ARENA_USER_VM_START`]).
    Arena,
}

/// The user address lockstep gives a case file's arena (`map_extra`, the start of its mmap()
/// region; the verifier refuses an arena without one): the selftests' `1ull << 44`.
pub const ARENA_USER_VM_START: u64 = 1 << 44;

impl MapType {
    /// Every map type a case may declare.
    pub const ALL: [MapType; 15] = [
        MapType::Hash,
        MapType::Array,
        MapType::ProgArray,
        MapType::PercpuHash,
        MapType::PercpuArray,
        MapType::LruHash,
        MapType::CgroupStorage,
        MapType::SkStorage,
        MapType::SockMap,
        MapType::XskMap,
        MapType::SockHash,
        MapType::ReuseportSockarray,
        MapType::ArrayOfMaps,
        MapType::HashOfMaps,
        MapType::Arena,
    ];

    /// The snake_case name used in case files (`type = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::ProgArray => "prog_array",
            MapType::PercpuHash => "percpu_hash",
            MapType::PercpuArray => "percpu_array",
            MapType::LruHash => "lru_hash",
            MapType::CgroupStorage => "cgroup_storage",
            MapType::SkStorage => "sk_storage",
            MapType::SockMap => "sockmap",
            MapType::XskMap => "xskmap",
            MapType::SockHash => "sockhash",
            MapType::ReuseportSockarray => "reuseport_sockarray",
            MapType::ArrayOfMaps => "array_of_maps",
            MapType::HashOfMaps => "hash_of_maps",
            MapType::Arena => "arena",
        }
    }

    /// The `enum bpf_map_type` value.
    pub const fn uapi(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PercpuHash => 5,
            MapType::PercpuArray => 6,
            MapType::LruHash => 9,
            MapType::CgroupStorage => 19,
            MapType::SkStorage => 24,
            MapType::SockMap => 15,
            MapType::XskMap => 17,
            MapType::SockHash => 18,
            MapType::ReuseportSockarray => 20,
            MapType::ArrayOfMaps => 12,
            MapType::HashOfMaps => 13,
            MapType::Arena => 33,
        }
    }

    /// A map-in-map type (its values are maps, `bpf_map_meta_alloc()` keeps the inner map's spec).
    pub fn is_map_in_map(self) -> bool {
        matches!(self, MapType::ArrayOfMaps | MapType::HashOfMaps)
    }
}

/// What kind of field of a map value, global data section or local object type a [`Field`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// An integer of `size` bytes (1, 2, 4 or 8).
    Int,
    /// `struct bpf_spin_lock` (4 bytes, 4-aligned).
    SpinLock,
    /// `struct bpf_res_spin_lock { u32 val; }` (4 bytes, 4-aligned; include/asm-generic/rqspinlock.h), kernels that have it.
    ResSpinLock,
    /// `struct bpf_list_head` (16 bytes, 8-aligned), with its `__contains(type, node)` target.
    ListHead,
    /// `struct bpf_list_node` (24 bytes, 8-aligned).
    ListNode,
    /// `struct bpf_rb_root` (16 bytes, 8-aligned), with its `__contains(type, node)` target.
    RbRoot,
    /// `struct bpf_rb_node` (32 bytes, 8-aligned).
    RbNode,
    /// `struct bpf_refcount` (4 bytes, 4-aligned).
    Refcount,
    /// A pointer tagged `__kptr` (referenced kptr, 8 bytes), with its pointee struct.
    Kptr,
    /// A pointer tagged `__kptr_untrusted` (unreferenced kptr, 8 bytes), with its pointee struct.
    KptrUntrusted,
    /// A pointer tagged `__percpu_kptr` (8 bytes), with its pointee struct.
    PercpuKptr,
    /// `struct bpf_timer` (16 bytes, 8-aligned).
    Timer,
    /// `struct bpf_wq` (16 bytes, 8-aligned).
    Wq,
}

impl FieldKind {
    /// Every field kind.
    pub const ALL: [FieldKind; 13] = [
        FieldKind::Int,
        FieldKind::SpinLock,
        FieldKind::ResSpinLock,
        FieldKind::ListHead,
        FieldKind::ListNode,
        FieldKind::RbRoot,
        FieldKind::RbNode,
        FieldKind::Refcount,
        FieldKind::Kptr,
        FieldKind::KptrUntrusted,
        FieldKind::PercpuKptr,
        FieldKind::Timer,
        FieldKind::Wq,
    ];

    /// The name used in case files (`kind = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Int => "int",
            FieldKind::SpinLock => "spin_lock",
            FieldKind::ResSpinLock => "res_spin_lock",
            FieldKind::ListHead => "list_head",
            FieldKind::ListNode => "list_node",
            FieldKind::RbRoot => "rb_root",
            FieldKind::RbNode => "rb_node",
            FieldKind::Refcount => "refcount",
            FieldKind::Kptr => "kptr",
            FieldKind::KptrUntrusted => "kptr_untrusted",
            FieldKind::PercpuKptr => "percpu_kptr",
            FieldKind::Timer => "timer",
            FieldKind::Wq => "wq",
        }
    }

    /// The kernel's name of the field type in messages (`btf_field_type_name()`,
    /// include/linux/bpf.h; None for a plain integer).
    pub fn kernel_name(self) -> Option<&'static str> {
        Some(match self {
            FieldKind::Int => return None,
            FieldKind::SpinLock => "bpf_spin_lock",
            FieldKind::ResSpinLock => "bpf_res_spin_lock",
            FieldKind::ListHead => "bpf_list_head",
            FieldKind::ListNode => "bpf_list_node",
            FieldKind::RbRoot => "bpf_rb_root",
            FieldKind::RbNode => "bpf_rb_node",
            FieldKind::Refcount => "bpf_refcount",
            FieldKind::Kptr | FieldKind::KptrUntrusted => "kptr",
            FieldKind::PercpuKptr => "percpu_kptr",
            FieldKind::Timer => "bpf_timer",
            FieldKind::Wq => "bpf_wq",
        })
    }

    /// The BTF struct the kernel recognises by name and size (`btf_get_field_type()`), for the
    /// kinds that are structs (not kptrs or ints).
    pub fn struct_name(self) -> Option<&'static str> {
        match self {
            FieldKind::Int | FieldKind::Kptr | FieldKind::KptrUntrusted | FieldKind::PercpuKptr => None,
            k => k.kernel_name(),
        }
    }

    /// `(size, alignment)` of a non-integer kind (include/uapi/linux/bpf.h); None for `Int`.
    pub fn size_align(self) -> Option<(u32, u32)> {
        Some(match self {
            FieldKind::Int => return None,
            FieldKind::SpinLock | FieldKind::ResSpinLock | FieldKind::Refcount => (4, 4),
            FieldKind::ListHead | FieldKind::RbRoot | FieldKind::Timer | FieldKind::Wq => (16, 8),
            FieldKind::ListNode => (24, 8),
            FieldKind::RbNode => (32, 8),
            FieldKind::Kptr | FieldKind::KptrUntrusted | FieldKind::PercpuKptr => (8, 8),
        })
    }

    /// A `bpf_spin_lock` or `bpf_res_spin_lock`.
    pub fn is_lock(self) -> bool {
        matches!(self, FieldKind::SpinLock | FieldKind::ResSpinLock)
    }

    /// A `bpf_list_head` or `bpf_rb_root` (a graph root, which carries a `__contains` target).
    pub fn is_graph_root(self) -> bool {
        matches!(self, FieldKind::ListHead | FieldKind::RbRoot)
    }

    /// A `bpf_list_node` or `bpf_rb_node`.
    pub fn is_graph_node(self) -> bool {
        matches!(self, FieldKind::ListNode | FieldKind::RbNode)
    }

    /// A kptr of any flavour (a pointer field, which names its pointee struct).
    pub fn is_kptr(self) -> bool {
        matches!(self, FieldKind::Kptr | FieldKind::KptrUntrusted | FieldKind::PercpuKptr)
    }
}

/// What a graph root or a kptr field refers to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldTarget {
    /// `__contains(type, node)` of a `bpf_list_head` / `bpf_rb_root`: the decl tag
    /// `contains:<type>:<node>` (btf.c `btf_find_graph_root()`).
    Contains { type_name: String, node: String },
    /// The struct a kptr points to: a local object type of the case, or a kernel type (by name).
    Pointee(String),
}

/// One named field of a value layout.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    pub offset: u32,
    pub size: u32,
    /// For a graph root: its `__contains`; for a kptr: its pointee; None otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<FieldTarget>,
}

impl Field {
    /// A field without a target (an integer or a lock).
    pub fn new(name: impl Into<String>, kind: FieldKind, offset: u32, size: u32) -> Field {
        Field { name: name.into(), kind, offset, size, target: None }
    }
}

/// A struct type of the program's BTF that objects are allocated from (`bpf_obj_new(struct foo)`)
/// or that a graph root contains / a kptr points to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjType {
    /// The struct's name (a C identifier).
    pub name: String,
    pub layout: ValueLayout,
    /// Its type id in the program BTF, when known (a BPF object's; what `bpf_obj_new()`'s
    /// `local_type_id__k` argument names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btf_id: Option<u32>,
    /// Offsets of its pointer members (a load of one is not a plain scalar in every case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pointers: Vec<u32>,
    /// Read only as the pointee of a `__kptr` / `__percpu_kptr` field (a struct of the program
    /// BTF nothing else names): `btf_parse_kptr()` takes the kernel's (or a module's) struct of
    /// that name first, so the model treats it as a local type only once the kernel BTF lacks it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub kptr_pointee_only: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ObjType {
    /// A type known by name and layout only.
    pub fn new(name: impl Into<String>, layout: ValueLayout) -> ObjType {
        ObjType { name: name.into(), layout, btf_id: None, pointers: Vec::new(), kptr_pointee_only: false }
    }
}

/// The layout of a map value or a global data section.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueLayout {
    /// Total size in bytes.
    pub size: u32,
    /// Fields in offset order; gaps are padding.
    pub fields: Vec<Field>,
}

impl ValueLayout {
    /// The first field of the given kind.
    pub fn field_of(&self, kind: FieldKind) -> Option<&Field> {
        self.fields.iter().find(|f| f.kind == kind)
    }

    /// Whether any field is a lock (`bpf_spin_lock` or `bpf_res_spin_lock`).
    pub fn has_lock(&self) -> bool {
        self.fields.iter().any(|f| f.kind.is_lock())
    }
}

/// A map the program uses (global data sections are array maps with one entry).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MapSpec {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub max_entries: u32,
    pub value: ValueLayout,
    /// Whether the map is created with BTF for key and value (without it, no lock is recognised).
    pub btf: bool,
    /// Set for a global data section (`.data`, `.bss`, `.rodata`): loaded with `BPF_F_MMAPABLE`
    /// and referred to with `BPF_PSEUDO_MAP_VALUE`.
    pub global_section: bool,
    /// `map_flags` to create the map with (besides those implied by `global_section`).
    pub flags: u32,
    /// For a map-in-map: the inner map's spec (libbpf's `<outer>.inner`, from the object's
    /// `__array(values, struct inner)`), which the outer map is created with (`inner_map_fd`)
    /// and which every map a lookup in it returns has. None for other maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<Box<MapSpec>>,
}

/// A subprogram declared as global (BTF linkage `BTF_FUNC_GLOBAL`); the others are static.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GlobalFunc {
    /// The label that starts the subprogram.
    pub label: String,
    /// Number of arguments, 0 to 5: scalars (`int`), except those in `ctx_args`.
    pub args: u8,
    /// The arguments (bit 0: R1) that point to the program type's context (`btf_is_prog_ctx_type()`:
    /// `ARG_PTR_TO_CTX`); 0 in case files.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ctx_args: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// The expected verdict of a case on one profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    pub verdict: crate::verdict::VerdictKind,
    /// Instruction index of the rejection.
    pub insn: Option<usize>,
    /// The kernel's error line.
    pub message: Option<String>,
    /// Where the expectation comes from (a verifier.c function, a kernel run).
    pub source: Option<String>,
    /// Selftest `__msg` patterns: each must occur in the verifier's output, in this order
    /// (substring, or verbatim text with `{{regex}}` parts, as `test_loader.c` matches the log).
    /// See [`crate::msgpat`].
    #[serde(default)]
    pub msgs: Vec<String>,
    /// `__retval(N)`: what `BPF_PROG_TEST_RUN` must return after a successful load
    /// ([`RETVAL_ANY`]: any value, test_loader's `POINTER_VALUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retval: Option<i64>,
}

/// test_loader.c's `POINTER_VALUE`: a `__retval` that any return value meets.
pub const RETVAL_ANY: i64 = 0xbadcafe;

/// One test case: a program with everything needed to load it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    /// The file it came from and the 1-based line of its `[[case]]` header.
    pub file: String,
    pub line: usize,
    pub prog_type: ProgType,
    pub sleepable: bool,
    /// Further `BPF_PROG_LOAD` `prog_flags` (see [`PROG_FLAGS`]; `BPF_F_SLEEPABLE` is `sleepable`).
    #[serde(default)]
    pub prog_flags: u32,
    /// Verifier log level to load with (0: the loader's default). Selftests with
    /// `__log_level(2)` expect lines that only a level-2 log keeps on success (`29: safe`).
    #[serde(default)]
    pub log_level: u32,
    pub maps: Vec<MapSpec>,
    pub globals: Vec<GlobalFunc>,
    /// Local object types (`[[case.type]]`): structs of the program's BTF that graph roots
    /// contain, kptrs point to, or `bpf_obj_new` allocates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<ObjType>,
    /// Kfuncs the program calls that the model does not know (declared to pass the name check).
    pub extern_kfuncs: Vec<String>,
    pub program: Program,
    /// The program text as written.
    pub text: String,
    /// Expectations keyed by profile name.
    pub expect: BTreeMap<String, Expectation>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// For a program of a BPF object: the object, which the guest loads through libbpf as the
    /// selftests do (the kernel then sees the program the user compiled, not `program`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectSource>,
    /// Why the model cannot judge this case (a construct the case's program or maps use that
    /// lockstep does not represent yet); the kernel still judges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_unsupported: Option<String>,
    /// The main program's `__exception_cb(f)` (decl tag `exception_callback:f`), as the object's
    /// BTF declares `f`; the body, which libbpf appends, is not part of `program`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_cb: Option<ExceptionCb>,
    /// The licence string `BPF_PROG_LOAD` carries (`license = "..."` in a case file, default
    /// "GPL"; an object's `license` section as libbpf reads it, "" without one). The kernel
    /// keeps `license_is_gpl_compatible()` of it (`prog->gpl_compatible`, syscall.c).
    #[serde(default = "default_license", skip_serializing_if = "is_default_license")]
    pub license: String,
    /// The constants the program loads with `ld_imm64` that name no struct of the program BTF
    /// (a type of another kind, or no type): `bpf_obj_new()` refuses them as its type id. Read
    /// from a BPF object's BTF; empty for a case file (lockstep writes that BTF).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_struct_type_ids: Vec<u32>,
}

/// The licence of a case that names none (the loader's default).
pub const DEFAULT_LICENSE: &str = "GPL";

fn default_license() -> String {
    DEFAULT_LICENSE.into()
}

fn is_default_license(l: &str) -> bool {
    l == DEFAULT_LICENSE
}

/// `license_is_gpl_compatible()` (include/linux/license.h, the same in 6.12, 7.2 and 7.3).
pub fn license_is_gpl_compatible(license: &str) -> bool {
    matches!(
        license,
        "GPL" | "GPL v2" | "GPL and additional rights" | "Dual BSD/GPL" | "Dual MIT/GPL" | "Dual MPL/GPL"
    )
}

/// An exception callback as its BTF declares it (`find_exception_callback_insn_off()`,
/// `btf_prepare_func_args()`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionCb {
    /// The function's name.
    pub name: String,
    /// How many `exception_callback:` decl tags the main program carries.
    pub tags: u8,
    /// Whether the function has global linkage.
    pub global: bool,
    /// Its return type: `void`, a scalar (int or enum), or something else.
    pub ret: CbReturn,
    /// Its number of parameters.
    pub args: u8,
    /// Whether every parameter is a scalar (int or enum: `ARG_ANYTHING`).
    pub args_scalar: bool,
}

/// The return type of a BTF function prototype, as `btf_validate_return_type()` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CbReturn {
    /// `void`.
    Void,
    /// An int or enum.
    Scalar,
    /// A pointer, struct or anything else.
    Other,
}

/// A program of a BPF object as libbpf loads it: the object's bytes, unchanged, and which of
/// its programs to load (`tools/testing/selftests/bpf/test_loader.c`: only the program under
/// test is autoloaded, with its `__log_level` or 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSource {
    /// The object's file name: libbpf names the object after it (`x.bpf.o` -> `x`), and its
    /// global data maps after the object (`x.bss`).
    pub file_name: String,
    /// The ELF bytes, shared by the cases of one object (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub bytes: std::sync::Arc<[u8]>,
    /// The program under test (its function name).
    pub program: String,
    /// The program's ELF section (`SEC("...")`, a leading `?` included): libbpf takes the
    /// program type, expected attach type and attach target from it ([`crate::import::sec`]).
    #[serde(default)]
    pub section: String,
    /// Whether the object has BTF func_info (`.BTF.ext`), which libbpf passes with every program
    /// (`BPF_PROG_LOAD`'s `func_info`): the verifier's checks for subprograms without BTF then
    /// do not apply.
    #[serde(default)]
    pub func_info: bool,
    /// The programs autoloaded: the program under test (a `SEC("?...")` one included).
    pub autoload: Vec<String>,
    /// The verifier log level: `__log_level(N)`, else 1.
    pub log_level: u32,
    /// `prog_flags` the annotations add (`__flag(...)`, `BPF_F_SLEEPABLE` included), OR-ed into
    /// libbpf's own as `test_loader.c` does.
    #[serde(default)]
    pub prog_flags: u32,
    /// Run the program with `BPF_PROG_TEST_RUN` after a successful load (the test has a
    /// `__retval`), as test_loader.c does.
    #[serde(default)]
    pub test_run: bool,
    /// A struct_ops program: the struct_ops member a `.struct_ops` / `.struct_ops.link` map of
    /// the object points at it (libbpf's `expected_attach_type` = member index, `attach_btf_id`
    /// = the struct_ops type), read from the object's BTF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub struct_ops: Option<StructOpsMember>,
}

/// The struct_ops member a program implements (from the object's BTF: libbpf matches the
/// object's `struct <type>` to the kernel's by name, and the member by name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StructOpsMember {
    /// The struct_ops type (`Qdisc_ops`).
    pub st: String,
    /// The member (`enqueue`).
    pub member: String,
    /// The member's return type: `void`, `scalar` or `ptr`.
    pub ret: String,
}

/// `Arc<[u8]>` as a lowercase hex string.
mod hex_bytes {
    use std::fmt::Write as _;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(b.len() * 2);
        for x in b.iter() {
            let _ = write!(out, "{x:02x}");
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        let s = String::deserialize(d)?;
        let digit = |c: u8| -> Result<u8, D::Error> {
            (c as char)
                .to_digit(16)
                .map(|v| v as u8)
                .ok_or_else(|| serde::de::Error::custom("not a hex digit"))
        };
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd-length hex string"));
        }
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len() / 2);
        for p in b.chunks(2) {
            out.push(digit(p[0])? << 4 | digit(p[1])?);
        }
        Ok(out.into())
    }
}

impl Case {
    /// A case named `name` of `prog_type` running `program` (assembled from `text`), with nothing
    /// else: no maps, globals, flags, expectations or tags, and no source file (`file` empty, `line` 0).
    pub fn new(
        name: impl Into<String>,
        prog_type: ProgType,
        program: Program,
        text: impl Into<String>,
    ) -> Case {
        Case {
            name: name.into(),
            file: String::new(),
            line: 0,
            prog_type,
            sleepable: false,
            prog_flags: 0,
            log_level: 0,
            maps: vec![],
            globals: vec![],
            types: vec![],
            extern_kfuncs: vec![],
            program,
            text: text.into(),
            expect: BTreeMap::new(),
            description: None,
            tags: vec![],
            object: None,
            model_unsupported: None,
            exception_cb: None,
            license: DEFAULT_LICENSE.into(),
            non_struct_type_ids: Vec::new(),
        }
    }
}
