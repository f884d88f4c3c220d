//! Kfuncs described by BTF for the model (issue 14): the prototypes of vmlinux kfuncs (the
//! kernel's `.BTF`) and of the kernel tree's `bpf_testmod` kfuncs (the module's split `.BTF` on
//! its `.BTF.base`), classified as `get_kfunc_arg_type()` (kernel/bpf/verifier.c, 7.3) classifies
//! them, with their flags (the compiled `BTF_ID_FLAGS` words of `.BTF_ids`, read by
//! `module_ko.rs`) and the program types their id set is registered for (C code, not in any
//! section: the table [`SET_REGISTRATIONS`], each row naming its source lines). Pure: the bytes
//! come from an edge (`lockstep check`, `docs/kernel-btf.md`).

use std::collections::BTreeMap;

use crate::case::ProgType;
use crate::import::btf::{Btf, BtfName, BtfTypes, Kind};

/// A kfunc hook (`enum btf_kfunc_hook`, kernel/bpf/btf.c) a kfunc id set is registered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `BPF_PROG_TYPE_UNSPEC`: `BTF_KFUNC_HOOK_COMMON`, every program type.
    Common,
    Tc,
    Tracing,
    Syscall,
    StructOps,
}

/// `bpf_prog_type_to_kfunc_hook()` (kernel/bpf/btf.c, 7.3) for the hooks of [`Hook`]: None for
/// the program types whose hook no registered set uses.
pub fn hook_of(t: ProgType) -> Option<Hook> {
    match t {
        ProgType::SchedCls => Some(Hook::Tc),
        ProgType::Tracing
        | ProgType::Tracepoint
        | ProgType::RawTracepoint
        | ProgType::PerfEvent
        | ProgType::Lsm => Some(Hook::Tracing),
        ProgType::Syscall => Some(Hook::Syscall),
        ProgType::StructOps => Some(Hook::StructOps),
        _ => None,
    }
}

/// Which hooks each kfunc id set the model knows is registered for (`register_btf_kfunc_id_set()`
/// calls of linux-source-7.3; of these sets only `qdisc_kfunc_ids` has a `.filter`, applied by
/// the model where it judges a kfunc call, `Machine::kfunc_filter_refuses()`): (set, hooks,
/// source).
pub const SET_REGISTRATIONS: &[(&str, &[Hook], &str)] = &[
    (
        "bpf_testmod_common_kfunc_ids",
        &[Hook::Common],
        "tools/testing/selftests/bpf/test_kmods/bpf_testmod.c:2141 (BPF_PROG_TYPE_UNSPEC)",
    ),
    (
        "bpf_testmod_check_kfunc_ids",
        &[Hook::Tc, Hook::Tracing, Hook::Syscall, Hook::StructOps],
        "tools/testing/selftests/bpf/test_kmods/bpf_testmod.c:2142-2145 (SCHED_CLS, TRACING, SYSCALL, STRUCT_OPS)",
    ),
    ("test_sk_check_kfunc_ids", &[Hook::Tc, Hook::Tracing, Hook::Syscall], "net/bpf/test_run.c:1903-1905"),
    (
        "common_btf_ids",
        &[Hook::Common],
        "kernel/bpf/helpers.c:5007 of 7.3, 5006 of 7.2 (BPF_PROG_TYPE_UNSPEC); only the kfuncs of COMMON_SET_MODELLED",
    ),
    (
        "qdisc_kfunc_ids",
        &[Hook::StructOps],
        "net/sched/bpf_qdisc.c:470 of 7.3 and 7.2 (STRUCT_OPS; its .filter, bpf_qdisc_kfunc_filter(), is model/structops.rs's qdisc_kfunc_allowed()); only the kfuncs of QDISC_SET_MODELLED",
    ),
    (
        "cpumask_kfunc_btf_ids",
        &[Hook::Tracing, Hook::StructOps, Hook::Syscall],
        "kernel/bpf/cpumask.c:526-528 (bpf_cpumask_create / acquire / release are kobj.rs's)",
    ),
];

/// The kfuncs of `common_btf_ids` (kernel/bpf/helpers.c) judged by their BTF: the set also holds
/// kfuncs `check_kfunc_call()` treats specially (`special_kfunc_list[]`: casts, RCU, dynptr
/// slices, ...), which its generic rules would misjudge, so the others stay unsupported.
pub const COMMON_SET_MODELLED: &[&str] = &["bpf_stream_print_stack", "bpf_stream_vprintk"];

/// The kfuncs of `qdisc_kfunc_ids` (net/sched/bpf_qdisc.c, 7.2 and 7.3) judged by their BTF:
/// `bpf_dynptr_from_skb` is also in the tc / xdp / ... skb sets (net/core/filter.c), which the
/// model does not register, and takes a dynptr; `bpf_qdisc_init_prologue` /
/// `bpf_qdisc_reset_destroy_epilogue` are the prologue's and epilogue's, which the filter refuses
/// to every program (left in: the filter says so).
pub const QDISC_SET_MODELLED: &[&str] = &[
    "bpf_skb_get_hash",
    "bpf_kfree_skb",
    "bpf_qdisc_skb_drop",
    "bpf_qdisc_watchdog_schedule",
    "bpf_qdisc_init_prologue",
    "bpf_qdisc_reset_destroy_epilogue",
    "bpf_qdisc_bstats_update",
];

/// One argument as `get_kfunc_arg_type()` classifies it, for the kinds the model judges; the
/// others are [`KfArg::Unsupported`] with the construct named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KfArg {
    /// A scalar without suffix: `KF_ARG_ANYTHING`.
    Anything,
    /// A scalar named `rdonly_buf_size` / `rdwr_buf_size`: `KF_ARG_CONST_ALLOC_SIZE_OR_ZERO`.
    AllocSize { rdonly: bool },
    /// A pointer to struct `name` without a size argument after it: `KF_ARG_PTR_TO_CTX` when the
    /// struct is the program type's ctx (`btf_is_prog_ctx_type()`), else `KF_ARG_PTR_TO_BTF_ID`.
    /// `kid`: the struct's id in the booted kernel's numbering (vmlinux ids, then the module's);
    /// `scalar_size`: the struct's size when it holds only scalars (`__btf_type_is_scalar_struct()`),
    /// for a register that is no `PTR_TO_BTF_ID` (then `KF_ARG_PTR_TO_MEM | MEM_FIXED_SIZE`).
    Struct { name: String, kid: u32, scalar_size: Option<u32> },
    /// A pointer to void or a scalar followed by a `__sz` size: `KF_ARG_PTR_TO_MEM`.
    MemPtr,
    /// The `__sz` size after a [`KfArg::MemPtr`]: `KF_ARG_MEM_SIZE`.
    MemSize,
    /// A pointer to a scalar of `size` bytes: `KF_ARG_PTR_TO_MEM | MEM_FIXED_SIZE`.
    FixedMem { size: u32 },
    /// A pointer named `*__str`: `KF_ARG_PTR_TO_CONST_STR` (`is_kfunc_arg_const_str()`, classified
    /// after the ctx, allocated-object, dynptr, iterator and graph kinds, which a pointer to a
    /// scalar or void is not), judged by `check_arg_const_str()` (`model/conststr.rs`).
    ConstStr,
    /// Anything else (size pairs, constants, dynptrs, iterators, graph types, callbacks, ...).
    Unsupported(String),
}

/// The return value as `check_kfunc_call()` types R0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KfRet {
    Void,
    /// A scalar, or `void *` ("equivalent to returning scalar").
    Scalar,
    /// A pointer to struct `name` (`PTR_TO_BTF_ID | PTR_TRUSTED`), `kid` as for [`KfArg::Struct`].
    Struct {
        name: String,
        kid: u32,
    },
    /// A pointer to a non-struct (`PTR_TO_MEM`, sized by an alloc-size argument or the type).
    Mem,
    Unsupported(String),
}

/// A kfunc: flags, registration and prototype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KfuncDesc {
    /// The compiled `BTF_ID_FLAGS` word.
    pub flags: u32,
    /// Its id set (`BTF_KFUNCS_START(set)`).
    pub set: String,
    /// Whether it is a module's (called with `insn->off != 0`).
    pub module: bool,
    /// The hooks its set is registered for.
    pub hooks: Vec<Hook>,
    pub args: Vec<KfArg>,
    pub ret: KfRet,
}

impl KfuncDesc {
    /// Whether `fetch_kfunc_meta()` finds the kfunc for a program of type `t`
    /// (`btf_kfunc_is_allowed()`: the common hook, then the program type's).
    pub fn allowed_in(&self, t: ProgType) -> bool {
        self.hooks.contains(&Hook::Common) || hook_of(t).is_some_and(|h| self.hooks.contains(&h))
    }
}

/// Struct names whose pointers `get_kfunc_arg_type()` gives a kind of their own
/// (`kf_arg_btf_ids[]`), which the model leaves unsupported.
const SPECIAL_STRUCTS: &[&str] = &[
    "bpf_dynptr",
    "bpf_list_head",
    "bpf_list_node",
    "bpf_rb_root",
    "bpf_rb_node",
    "bpf_wq",
    "bpf_res_spin_lock",
    "bpf_task_work",
    "bpf_prog_aux",
    "bpf_timer",
];

/// Parameter-name suffixes that give an argument a kind of its own (`is_kfunc_arg_*()`).
const SPECIAL_SUFFIXES: &[&str] = &[
    "__k",
    "__sz",
    "__szk",
    "__ign",
    "__alloc",
    "__refcounted_kptr",
    "__uninit",
    "__nullable",
    "__nonown_allowed",
    "__str",
    "__map",
    "__irq_flag",
    "__arena",
    "__prog",
    "__opt",
];

/// A BTF with the mapping of its struct ids to the booted kernel's numbering.
struct View<'a> {
    btf: &'a dyn BtfTypes,
    kid: &'a dyn Fn(u32) -> Option<u32>,
}

impl View<'_> {
    fn kind(&self, id: u32) -> Option<&Kind> {
        self.btf.type_of(id).map(|t| &t.kind)
    }
    fn is_scalar(&self, id: u32) -> bool {
        matches!(self.kind(id), Some(Kind::Int { .. } | Kind::Enum { .. }))
    }
    fn size(&self, id: u32) -> Option<u32> {
        match self.kind(id)? {
            Kind::Int { size, .. } | Kind::Enum { size } => Some(*size),
            _ => None,
        }
    }
    fn name(&self, id: u32) -> &str {
        self.btf.type_of(id).map_or("", |t| t.name.as_str())
    }

    /// `get_kfunc_arg_type()` for parameter `i` of `params` / `names`.
    fn arg(&self, params: &[u32], names: &[BtfName], i: usize) -> KfArg {
        let pname = names[i].as_str();
        let t = self.btf.resolve(params[i]);
        if self.is_scalar(t) {
            let after_mem = i > 0 && self.arg_is_mem_ptr(params, names, i - 1);
            if pname.ends_with("__sz") && !pname.ends_with("__szk") && after_mem {
                return KfArg::MemSize;
            }
            if SPECIAL_SUFFIXES.iter().any(|s| pname.ends_with(s)) {
                return KfArg::Unsupported(format!("scalar argument `{pname}` (a suffix of its own)"));
            }
            return match pname {
                "rdonly_buf_size" => KfArg::AllocSize { rdonly: true },
                "rdwr_buf_size" => KfArg::AllocSize { rdonly: false },
                _ => KfArg::Anything,
            };
        }
        let Some(Kind::Ptr { to }) = self.kind(t) else {
            return KfArg::Unsupported(format!("argument `{pname}` that is neither a scalar nor a pointer"));
        };
        let r = self.btf.resolve(*to);
        if pname.ends_with("__str") && (r == 0 || self.is_scalar(r)) {
            return KfArg::ConstStr;
        }
        if SPECIAL_SUFFIXES.iter().any(|s| pname.ends_with(s)) {
            return KfArg::Unsupported(format!("pointer argument `{pname}` (a suffix of its own)"));
        }
        let next_is_size = names.get(i + 1).is_some_and(|n| n.ends_with("__sz") || n.ends_with("__szk"))
            && self.is_scalar(self.btf.resolve(params[i + 1]));
        if next_is_size {
            let plain_sz = names[i + 1].ends_with("__sz") && !names[i + 1].ends_with("__szk");
            // Void or a scalar (a struct of scalars is not modelled).
            if plain_sz && (r == 0 || self.is_scalar(r)) {
                return KfArg::MemPtr;
            }
            return KfArg::Unsupported(format!("memory / size pair `{pname}`, `{}`", names[i + 1]));
        }
        match self.kind(r) {
            Some(Kind::Struct { .. }) => {
                let name = self.name(r).to_string();
                if SPECIAL_STRUCTS.contains(&name.as_str()) || name.starts_with("bpf_iter_") {
                    return KfArg::Unsupported(format!("pointer to struct {name} (a kind of its own)"));
                }
                match (self.kid)(r) {
                    Some(kid) => KfArg::Struct { name, kid, scalar_size: self.scalar_struct_size(r, 0) },
                    None => KfArg::Unsupported(format!("struct {name} not found in the kernel's BTF")),
                }
            }
            _ if self.is_scalar(r) => match self.size(r) {
                Some(size) => KfArg::FixedMem { size },
                None => KfArg::Unsupported(format!("pointer argument `{pname}` of unknown size")),
            },
            _ => KfArg::Unsupported(format!("pointer argument `{pname}` to a non-scalar, non-struct type")),
        }
    }

    /// Whether parameter `i` is a pointer to void / a scalar followed by a `__sz` size.
    fn arg_is_mem_ptr(&self, params: &[u32], names: &[BtfName], i: usize) -> bool {
        matches!(self.arg(params, names, i), KfArg::MemPtr)
    }

    /// The size of struct `id` when `__btf_type_is_scalar_struct()` holds for it (scalars, arrays
    /// of scalars, structs of those nested at most 3 deep); None otherwise.
    fn scalar_struct_size(&self, id: u32, rec: u32) -> Option<u32> {
        let Some(Kind::Struct { size, members }) = self.kind(id) else { return None };
        for m in members {
            let t = self.btf.resolve(m.ty);
            match self.kind(t) {
                Some(Kind::Struct { .. }) => {
                    if rec >= 3 {
                        return None;
                    }
                    self.scalar_struct_size(t, rec + 1)?;
                }
                Some(Kind::Array { elem, nelems }) => {
                    if *nelems == 0 || !self.is_scalar(self.btf.resolve(*elem)) {
                        return None;
                    }
                }
                _ if self.is_scalar(t) => {}
                _ => return None,
            }
        }
        Some(*size)
    }

    /// `check_kfunc_call()`'s typing of R0 by the return type.
    fn ret(&self, ret: u32) -> KfRet {
        let t = self.btf.resolve(ret);
        if ret == 0 || matches!(self.kind(t), Some(Kind::Void)) {
            return KfRet::Void;
        }
        if self.is_scalar(t) {
            return KfRet::Scalar;
        }
        let Some(Kind::Ptr { to }) = self.kind(t) else {
            return KfRet::Unsupported("a return type that is neither a scalar nor a pointer".into());
        };
        let r = self.btf.resolve(*to);
        if r == 0 {
            // "kfunc returning 'void *' is equivalent to returning scalar"
            return KfRet::Scalar;
        }
        match self.kind(r) {
            Some(Kind::Struct { .. }) => {
                let name = self.name(r).to_string();
                match (self.kid)(r) {
                    Some(kid) => KfRet::Struct { name, kid },
                    None => {
                        KfRet::Unsupported(format!("returned struct {name} not found in the kernel's BTF"))
                    }
                }
            }
            _ => KfRet::Mem,
        }
    }

    fn desc(&self, func: u32, flags: u32, set: &str, module: bool, hooks: &[Hook]) -> Option<KfuncDesc> {
        let Some(Kind::Func { proto, .. }) = self.kind(func) else { return None };
        let Some(Kind::FuncProto { ret, params, names }) = self.kind(*proto) else { return None };
        let args = (0..params.len()).map(|i| self.arg(params, names, i)).collect();
        Some(KfuncDesc {
            flags,
            set: set.to_string(),
            module,
            hooks: hooks.to_vec(),
            args,
            ret: self.ret(*ret),
        })
    }
}

/// The registration row of `set`, if the model knows it.
fn registration(set: &str) -> Option<&'static [Hook]> {
    SET_REGISTRATIONS.iter().find(|(s, _, _)| *s == set).map(|(_, h, _)| *h)
}

/// Describes the vmlinux kfuncs of the registered sets: `sets` is kfunc -> set -> flags
/// (`module_ko::vmlinux_kfunc_sets`), `vmlinux` the kernel's parsed BTF and `func_id` its lowest
/// `FUNC` id of a name.
pub fn vmlinux_kfuncs(
    vmlinux: &dyn BtfTypes,
    func_id: &dyn Fn(&str) -> Option<u32>,
    sets: &BTreeMap<String, BTreeMap<String, u32>>,
) -> BTreeMap<String, KfuncDesc> {
    let kid = |id: u32| Some(id);
    let view = View { btf: vmlinux, kid: &kid };
    let mut out = BTreeMap::new();
    for (name, in_sets) in sets {
        // A kfunc in several known sets: not modelled (their flags may differ).
        let known: Vec<_> = in_sets
            .iter()
            .filter(|(s, _)| *s != "common_btf_ids" || COMMON_SET_MODELLED.contains(&name.as_str()))
            .filter(|(s, _)| *s != "qdisc_kfunc_ids" || QDISC_SET_MODELLED.contains(&name.as_str()))
            .filter_map(|(s, f)| Some((s, *f, registration(s)?)))
            .collect();
        let [(set, flags, hooks)] = known.as_slice() else { continue };
        if let Some(d) = func_id(name).and_then(|f| view.desc(f, *flags, set, false, hooks)) {
            out.insert(name.clone(), d);
        }
    }
    out
}

/// Describes a module's kfuncs of the registered sets: `module` is its split BTF parsed on its
/// base ([`Btf::parse_split`], `base_count` base types), `flags` kfunc -> (set, flags)
/// (`module_ko::kfunc_flags`). Struct ids of the base are relocated to vmlinux by name
/// (`btf_relocate()`), the module's own follow vmlinux's `vmlinux_count` types.
pub fn module_kfuncs(
    module: &Btf,
    base_count: u32,
    vmlinux: &crate::kernel_btf::KernelBtf,
    flags: &BTreeMap<String, crate::module_ko::KoKfunc>,
) -> BTreeMap<String, KfuncDesc> {
    let vmlinux_count = vmlinux.type_count();
    let kid = |id: u32| {
        if id < base_count {
            vmlinux.struct_id(&module.get(id)?.name)
        } else {
            Some(vmlinux_count + (id - base_count))
        }
    };
    let view = View { btf: module, kid: &kid };
    let mut out = BTreeMap::new();
    for (name, k) in flags {
        let Some(hooks) = registration(&k.set) else { continue };
        let func = module
            .types
            .iter()
            .enumerate()
            .skip(base_count as usize)
            .find(|(_, t)| t.name == *name && matches!(t.kind, Kind::Func { .. }))
            .map(|(i, _)| i as u32);
        if let Some(d) = func.and_then(|f| view.desc(f, k.flags, &k.set, true, hooks)) {
            out.insert(name.clone(), d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::btf::BtfType;

    fn t(name: &str, kind: Kind) -> BtfType {
        BtfType { name: name.into(), kind }
    }

    /// 1 int, 2 struct sock, 3 ptr->2, 4 ptr->1 (unsigned long *), 5 struct bpf_dynptr, 6 ptr->5,
    /// 7 FUNC_PROTO, 8 FUNC.
    fn btf(params: Vec<u32>, names: &[&str], ret: u32) -> Btf {
        Btf {
            types: vec![
                t("", Kind::Void),
                t("int", Kind::Int { size: 8, signed: true }),
                t("sock", Kind::Struct { size: 16, members: vec![] }),
                t("", Kind::Ptr { to: 2 }),
                t("", Kind::Ptr { to: 1 }),
                t("bpf_dynptr", Kind::Struct { size: 16, members: vec![] }),
                t("", Kind::Ptr { to: 5 }),
                t("", Kind::FuncProto { ret, params, names: names.iter().map(|&s| s.into()).collect() }),
                t("f", Kind::Func { proto: 7, global: true }),
            ],
        }
    }

    #[test]
    fn arguments_and_returns_are_classified_as_get_kfunc_arg_type_does() {
        let b =
            btf(vec![3, 1, 1, 4, 6, 4, 1], &["sk", "a", "rdonly_buf_size", "p", "d", "mem", "mem__sz"], 3);
        let kid = |id: u32| Some(id + 100);
        let v = View { btf: &b, kid: &kid };
        let d = v.desc(8, 5, "s", true, &[Hook::Tc]).unwrap();
        assert_eq!(d.args[0], KfArg::Struct { name: "sock".into(), kid: 102, scalar_size: Some(16) });
        assert_eq!(d.args[1], KfArg::Anything);
        assert_eq!(d.args[2], KfArg::AllocSize { rdonly: true });
        assert_eq!(d.args[3], KfArg::FixedMem { size: 8 });
        assert!(matches!(d.args[4], KfArg::Unsupported(_)), "a dynptr");
        assert_eq!(d.args[5], KfArg::MemPtr, "a memory / size pair");
        assert_eq!(d.args[6], KfArg::MemSize, "the size of the pair");
        assert_eq!(d.ret, KfRet::Struct { name: "sock".into(), kid: 102 });
        assert!(d.allowed_in(ProgType::SchedCls));
        assert!(!d.allowed_in(ProgType::Xdp));
        assert!(!v.desc(8, 0, "s", true, &[]).unwrap().allowed_in(ProgType::Xdp));
        assert_eq!(btf(vec![], &[], 4).types.len(), 9);
        let v2b = btf(vec![], &[], 4);
        let v2 = View { btf: &v2b, kid: &kid };
        assert_eq!(v2.desc(8, 0, "s", true, &[Hook::Common]).unwrap().ret, KfRet::Mem);
        let v3b = btf(vec![], &[], 0);
        let v3 = View { btf: &v3b, kid: &kid };
        let d3 = v3.desc(8, 0, "s", true, &[Hook::Common]).unwrap();
        assert_eq!(d3.ret, KfRet::Void);
        assert!(d3.allowed_in(ProgType::Xdp), "the common hook");
    }

    #[test]
    fn a_str_pointer_is_a_const_string() {
        // bpf_stream_vprintk's visible prototype: (int stream_id, const char *fmt__str,
        // const void *args, u32 len__sz); here `unsigned long *` and `void *` (0) stand in.
        let mut b = btf(vec![1, 4, 9, 1], &["stream_id", "fmt__str", "args", "len__sz"], 1);
        b.types.push(t("", Kind::Ptr { to: 0 }));
        let kid = |id: u32| Some(id + 100);
        let v = View { btf: &b, kid: &kid };
        let d = v.desc(8, 0, "s", true, &[Hook::Common]).unwrap();
        assert_eq!(d.args, vec![KfArg::Anything, KfArg::ConstStr, KfArg::MemPtr, KfArg::MemSize]);
        // A `__str` pointer to a struct (KF_ARG_PTR_TO_CONST_STR too, by suffix): not modelled.
        let b = btf(vec![3], &["sk__str"], 1);
        let v = View { btf: &b, kid: &kid };
        assert!(matches!(v.desc(8, 0, "s", true, &[Hook::Common]).unwrap().args[0], KfArg::Unsupported(_)));
    }
}
