//! The kernel's own BTF (vmlinux `.BTF`) as data for the model: the prototype of a tracing / LSM
//! program's attach function (`bpf_check_attach_target()` finds it, `btf_ctx_access()` types the
//! ctx by it) and kernel struct ids by name. Pure: the bytes come from an edge
//! (`lockstep check --kernel-btf`, or the profile's cached kernel headers); see
//! `docs/kernel-btf.md`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::import::btf::{Btf, BtfError, Kind};
use crate::import::sec::AttachType;

/// `MAX_BPF_FUNC_ARGS` (include/linux/bpf.h): the most arguments a traced function may have.
pub const MAX_BPF_FUNC_ARGS: usize = 12;

/// What one argument (or the return value) of an attach function is to `btf_ctx_access()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// `btf_type_is_small_int()`, an enum, or (after modifiers) anything `btf_ctx_access()` reads
    /// as a scalar: a pointer to a non-struct, a multi-level pointer.
    Scalar,
    /// A pointer to struct `name` (kernel BTF id `btf_id`). `nullable`: the parameter's name ends
    /// in `__nullable`.
    StructPtr { btf_id: u32, name: String, nullable: bool },
    /// A struct passed by value: `btf_ctx_arg_idx()` then counts it as several slots (not modelled).
    StructByValue,
    /// Something the model leaves unsupported (type tags `__user` / `__percpu`, `void` return, ...),
    /// with the BTF kind.
    Other(String),
}

/// An attach function's prototype as `btf_ctx_access()` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachProto {
    /// The name the kernel logs (`prog->aux->attach_func_name`): the function, or the
    /// `btf_trace_<tp>` typedef for `tp_btf/`.
    pub func_name: String,
    /// The arguments (for `tp_btf/` without the leading `void *__data`).
    pub args: Vec<ArgKind>,
    /// The return value (`ArgKind::Other("void")` for none).
    pub ret: ArgKind,
}

/// Why no prototype could be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The BTF has no such function / tracepoint typedef.
    #[error("{0} is not in the kernel's BTF")]
    NotFound(String),
    /// An attach type whose target is not a vmlinux function.
    #[error("attach type {0:?} has no vmlinux function prototype")]
    NoProto(AttachType),
}

/// A kernel's parsed BTF with name lookups, shared by the cases of one check.
#[derive(Debug)]
pub struct KernelBtf {
    /// Where the BTF came from (named in the model's messages).
    pub source: String,
    btf: Btf,
    by_name: HashMap<String, Vec<u32>>,
    /// Kfuncs described by BTF (`kfunc_btf.rs`): vmlinux's of the known sets, and those of the
    /// modules added ([`KernelBtf::add_module_kfuncs`]).
    pub kfuncs: std::collections::BTreeMap<String, crate::kfunc_btf::KfuncDesc>,
}

impl KernelBtf {
    /// Parses raw BTF bytes (the `.BTF` section of a vmlinux).
    pub fn parse(source: &str, bytes: &[u8]) -> Result<KernelBtf, BtfError> {
        let btf = Btf::parse(bytes)?;
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, t) in btf.types.iter().enumerate() {
            if !t.name.is_empty() {
                by_name.entry(t.name.clone()).or_default().push(i as u32);
            }
        }
        Ok(KernelBtf { source: source.to_string(), btf, by_name, kfuncs: Default::default() })
    }

    /// The struct of the member at offset 0 of struct `id` (typedefs and qualifiers skipped), if
    /// it is one: what `btf_struct_walk()` descends into for offset 0 (`btf_struct_ids_match()`).
    pub fn first_member_struct(&self, id: u32) -> Option<u32> {
        let Some(Kind::Struct { members, .. }) = self.btf.get(id).map(|t| &t.kind) else { return None };
        let m = members.first().filter(|m| m.bit_offset == 0)?;
        let t = self.skip_modifiers(m.ty);
        matches!(self.btf.get(t).map(|t| &t.kind), Some(Kind::Struct { .. })).then_some(t)
    }

    /// The number of types (void included): a module's own BTF ids start here.
    pub fn type_count(&self) -> u32 {
        self.btf.types.len() as u32
    }

    /// Adds the vmlinux kfuncs of the sets `kfunc_btf::SET_REGISTRATIONS` knows, from the
    /// kernel's `.BTF_ids` (`module_ko::vmlinux_kfunc_sets`: kfunc -> set -> flags).
    pub fn add_vmlinux_kfuncs(
        &mut self,
        sets: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
    ) {
        let found = crate::kfunc_btf::vmlinux_kfuncs(&self.btf, sets);
        self.kfuncs.extend(found);
    }

    /// Adds the kfuncs of a module (its `.ko` bytes: `.BTF`, `.BTF.base` or else this vmlinux BTF
    /// `vmlinux_raw` as the base, `.BTF_ids` for the flags). Returns how many were added.
    pub fn add_module_kfuncs(&mut self, ko: &[u8], vmlinux_raw: &[u8]) -> Result<usize, String> {
        let flags = crate::module_ko::kfunc_flags(ko, Some(vmlinux_raw)).map_err(|e| e.to_string())?;
        let split = crate::module_ko::elf_section(ko, ".BTF").map_err(|e| e.to_string())?.ok_or("no .BTF")?;
        let base =
            crate::module_ko::elf_section(ko, ".BTF.base").map_err(|e| e.to_string())?.unwrap_or(vmlinux_raw);
        let (module, base_count) = Btf::parse_split(split, base).map_err(|e| e.to_string())?;
        let found = crate::kfunc_btf::module_kfuncs(&module, base_count, self, &flags);
        let n = found.len();
        self.kfuncs.extend(found);
        Ok(n)
    }

    fn named(&self, name: &str, want: impl Fn(&Kind) -> bool) -> Option<u32> {
        self.by_name.get(name)?.iter().copied().find(|&id| self.btf.get(id).is_some_and(|t| want(&t.kind)))
    }

    /// The id of struct `name` (`btf_find_by_name_kind(.., BTF_KIND_STRUCT)`).
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.named(name, |k| matches!(k, Kind::Struct { .. }))
    }

    /// The name of type `id`.
    pub fn name_of(&self, id: u32) -> &str {
        self.btf.get(id).map_or("", |t| t.name.as_str())
    }

    /// The prototype `bpf_check_attach_target()` attaches a program of `attach` type to `target`
    /// with: `fentry/` / `fexit/` / `fmod_ret/` the FUNC `target`; `lsm/` the FUNC
    /// `bpf_lsm_<target>`; `tp_btf/` the typedef `btf_trace_<target>` (a pointer to a FUNC_PROTO
    /// whose first argument, `void *__data`, `btf_ctx_access()` skips).
    pub fn attach_proto(&self, attach: AttachType, target: &str) -> Result<AttachProto, AttachError> {
        let (name, func) = match attach {
            AttachType::TraceFentry | AttachType::TraceFexit | AttachType::ModifyReturn => {
                (target.to_string(), true)
            }
            AttachType::LsmMac => (format!("bpf_lsm_{target}"), true),
            AttachType::TraceRawTp => (format!("btf_trace_{target}"), false),
            other => return Err(AttachError::NoProto(other)),
        };
        let proto = if func {
            let id = self
                .named(&name, |k| matches!(k, Kind::Func { .. }))
                .ok_or_else(|| AttachError::NotFound(format!("function {name}")))?;
            match self.btf.get(id).map(|t| &t.kind) {
                Some(Kind::Func { proto, .. }) => *proto,
                _ => unreachable!("found as a FUNC"),
            }
        } else {
            let id = self
                .named(&name, |k| matches!(k, Kind::Modifier(_)))
                .ok_or_else(|| AttachError::NotFound(format!("tracepoint typedef {name}")))?;
            match self.btf.get(self.btf.resolve(id)).map(|t| &t.kind) {
                Some(Kind::Ptr { to }) => *to,
                _ => return Err(AttachError::NotFound(format!("a function pointer typedef {name}"))),
            }
        };
        let Some(Kind::FuncProto { ret, params, names }) = self.btf.get(proto).map(|t| &t.kind) else {
            return Err(AttachError::NotFound(format!("the prototype of {name}")));
        };
        let skip = usize::from(!func);
        let args = params
            .iter()
            .zip(names)
            .skip(skip)
            .map(|(ty, pname)| self.arg_kind(*ty, pname.ends_with("__nullable")))
            .collect();
        let ret = if *ret == 0 { ArgKind::Other("void".into()) } else { self.arg_kind(*ret, false) };
        // The name btf_ctx_access() logs: attach_func_name, the FUNC's or the typedef's name.
        Ok(AttachProto { func_name: name, args, ret })
    }

    /// `btf_ctx_access()`'s reading of one argument type: modifiers skipped, then scalar, struct
    /// by value, pointer to struct (`btf_type_is_struct_ptr()`), other pointers as scalars.
    fn arg_kind(&self, ty: u32, nullable: bool) -> ArgKind {
        let kind_of = |id: u32| self.btf.get(id).map(|t| &t.kind);
        let t = self.skip_modifiers(ty);
        match kind_of(t) {
            Some(Kind::Int { .. } | Kind::Enum { .. }) => ArgKind::Scalar,
            Some(Kind::Struct { .. } | Kind::Union { .. }) => ArgKind::StructByValue,
            Some(Kind::Ptr { to }) => {
                // btf_type_tag_walk(): a `user` / `percpu` tag changes the register type.
                if self.has_type_tag(*to) {
                    return ArgKind::Other("a pointer with a type tag".into());
                }
                let target = self.btf.resolve(*to);
                match kind_of(target) {
                    Some(Kind::Struct { .. }) => ArgKind::StructPtr {
                        btf_id: target,
                        name: self.name_of(target).to_string(),
                        nullable,
                    },
                    _ => ArgKind::Scalar,
                }
            }
            Some(k) => {
                ArgKind::Other(format!("{k:?}").split([' ', '{', '(']).next().unwrap_or("").to_string())
            }
            None => ArgKind::Other("void".into()),
        }
    }

    fn skip_modifiers(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.btf.get(id).map(|t| &t.kind) {
                Some(Kind::Modifier(t)) => id = *t,
                _ => break,
            }
        }
        id
    }

    fn has_type_tag(&self, mut id: u32) -> bool {
        for _ in 0..32 {
            match self.btf.get(id).map(|t| &t.kind) {
                Some(Kind::TypeTag(_)) => return true,
                Some(Kind::Modifier(t)) => id = *t,
                _ => return false,
            }
        }
        false
    }
}

/// The kernel BTF a profile carries for the model (none: the model says which BTF is missing).
/// Compared by identity: two profiles are equal in this field when they share the same parse.
#[derive(Clone, Debug, Default)]
pub struct KernelBtfRef(pub Option<Arc<KernelBtf>>);

impl PartialEq for KernelBtfRef {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for KernelBtfRef {}

/// A small raw BTF for unit tests (the model's included).
#[cfg(test)]
pub(crate) mod fixture {
    /// Raw BTF with: 1 int, 2 struct task_struct, 3 ptr->2, 4 FUNC_PROTO(int; task*, u64 flags),
    /// 5 FUNC free_task -> 4, 6 ptr->4 ... as a tracepoint: 7 FUNC_PROTO(void; void *__data,
    /// task* p, int x), 8 ptr->7, 9 typedef btf_trace_task_newtask -> 8.
    pub(crate) fn sample() -> Vec<u8> {
        let mut strs = b"\0int\0task_struct\0free_task\0p\0clone_flags\0btf_trace_task_newtask\0__data\0x\0bpf_lsm_task_free\0task__nullable\0".to_vec();
        let off = |s: &str, strs: &[u8]| {
            let needle = format!("\0{s}\0");
            strs.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() as u32 + 1
        };
        let o = |s: &str| off(s, &strs);
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1 int
        t.extend([o("int"), info(1, 0), 8, 64]);
        // 2 struct task_struct, size 16, no members
        t.extend([o("task_struct"), info(4, 0), 16]);
        // 3 ptr -> 2
        t.extend([0, info(2, 0), 2]);
        // 4 FUNC_PROTO ret int, (p: task*, clone_flags: int)
        t.extend([0, info(13, 2), 1, o("p"), 3, o("clone_flags"), 1]);
        // 5 FUNC free_task -> 4
        t.extend([o("free_task"), info(12, 1), 4]);
        // 6 ptr -> void
        t.extend([0, info(2, 0), 0]);
        // 7 FUNC_PROTO void (__data: void*, p: task*, x: int)
        t.extend([0, info(13, 3), 0, o("__data"), 6, o("p"), 3, o("x"), 1]);
        // 8 ptr -> 7
        t.extend([0, info(2, 0), 7]);
        // 9 typedef btf_trace_task_newtask -> 8
        t.extend([o("btf_trace_task_newtask"), info(8, 0), 8]);
        // 10 FUNC_PROTO int (task__nullable: task*)
        t.extend([0, info(13, 1), 1, o("task__nullable"), 3]);
        // 11 FUNC bpf_lsm_task_free -> 10
        t.extend([o("bpf_lsm_task_free"), info(12, 1), 10]);
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        strs.push(0);
        let mut b = Vec::new();
        b.extend(0xeb9fu16.to_le_bytes());
        b.extend([1u8, 0]);
        b.extend(24u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((types.len() as u32).to_le_bytes());
        b.extend((types.len() as u32).to_le_bytes());
        b.extend((strs.len() as u32).to_le_bytes());
        b.extend(types);
        b.extend(strs);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixture::sample;

    #[test]
    fn fentry_lsm_and_tp_btf_prototypes() {
        let k = KernelBtf::parse("sample", &sample()).unwrap();
        let task = ArgKind::StructPtr { btf_id: 2, name: "task_struct".into(), nullable: false };
        let f = k.attach_proto(AttachType::TraceFentry, "free_task").unwrap();
        assert_eq!(f.func_name, "free_task");
        assert_eq!(f.args, vec![task.clone(), ArgKind::Scalar]);
        assert_eq!(f.ret, ArgKind::Scalar);
        let tp = k.attach_proto(AttachType::TraceRawTp, "task_newtask").unwrap();
        assert_eq!(tp.func_name, "btf_trace_task_newtask");
        assert_eq!(tp.args, vec![task, ArgKind::Scalar], "the leading void *__data is skipped");
        let lsm = k.attach_proto(AttachType::LsmMac, "task_free").unwrap();
        assert_eq!(
            lsm.args,
            vec![ArgKind::StructPtr { btf_id: 2, name: "task_struct".into(), nullable: true }]
        );
        assert_eq!(
            k.attach_proto(AttachType::TraceFentry, "nope"),
            Err(AttachError::NotFound("function nope".into()))
        );
        assert_eq!(k.struct_id("task_struct"), Some(2));
    }
}
