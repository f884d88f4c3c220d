//! The kernel's own BTF (vmlinux `.BTF`) as data for the model: the prototype of a tracing / LSM
//! program's attach function (`bpf_check_attach_target()` finds it, `btf_ctx_access()` types the
//! ctx by it) and kernel struct ids by name. Pure: the bytes come from an edge
//! (`lockstep check --kernel-btf`, or the profile's cached kernel headers); see
//! `docs/kernel-btf.md`.

use std::sync::Arc;

use crate::import::btf::{Btf, BtfError, BtfTypes, Kind};
use crate::import::btf_lazy::LazyBtf;
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
    /// Decoded type by type as the model asks (most of vmlinux's are never read in a run).
    btf: LazyBtf,
    /// (hash of the name, type id) of every named type, sorted: [`KernelBtf::named`] looks a
    /// name up by its hash and compares the names of the few ids that share it. Built without a
    /// copy of any name (a `HashMap<String, _>` of vmlinux's ~127k names took longer than the
    /// parse itself).
    by_name: Vec<(u64, u32)>,
    /// Kfuncs described by BTF (`kfunc_btf.rs`): vmlinux's of the known sets, and those of the
    /// modules added ([`KernelBtf::add_module_kfuncs`]).
    pub kfuncs: std::collections::BTreeMap<String, crate::kfunc_btf::KfuncDesc>,
    /// Every FUNC of the modules added (kfuncs or not), by name: its prototype's
    /// [`Btf::compat_shape`] (`None`: no module read, module functions are unknown).
    pub module_funcs: Option<std::collections::BTreeMap<String, String>>,
}

impl KernelBtf {
    /// Parses raw BTF bytes (the `.BTF` section of a vmlinux).
    pub fn parse(source: &str, bytes: &[u8]) -> Result<KernelBtf, BtfError> {
        KernelBtf::parse_in(source, bytes.to_vec(), 0..bytes.len())
    }

    /// Parses the BTF at `btf` within `bytes` (all of them for raw BTF, the `.BTF` section of a
    /// vmlinux ELF), keeping the bytes: types are decoded as they are asked for.
    pub fn parse_in(
        source: &str,
        bytes: Vec<u8>,
        btf: std::ops::Range<usize>,
    ) -> Result<KernelBtf, BtfError> {
        let btf = LazyBtf::parse(bytes, btf)?;
        let mut by_name: Vec<(u64, u32)> = Vec::with_capacity(btf.count() as usize);
        btf.for_each_name(|id, name| by_name.push((name_hash(name), id)));
        by_name.sort_unstable();
        Ok(KernelBtf {
            source: source.to_string(),
            btf,
            by_name,
            kfuncs: Default::default(),
            module_funcs: None,
        })
    }

    /// The struct of the member at offset 0 of struct `id` (typedefs and qualifiers skipped), if
    /// it is one: what `btf_struct_walk()` descends into for offset 0 (`btf_struct_ids_match()`).
    pub fn first_member_struct(&self, id: u32) -> Option<u32> {
        let Some(Kind::Struct { members, .. }) = self.btf.get(id).map(|t| &t.kind) else { return None };
        let m = members.first().filter(|m| m.bit_offset == 0)?;
        let t = self.skip_modifiers(m.ty);
        matches!(self.btf.get(t).map(|t| &t.kind), Some(Kind::Struct { .. })).then_some(t)
    }

    /// The name of `FUNC` `id` (None for any other id).
    pub fn func_name(&self, id: u32) -> Option<String> {
        self.btf.get(id).filter(|t| matches!(t.kind, Kind::Func { .. })).map(|t| t.name.to_string())
    }

    /// The number of types (void included): a module's own BTF ids start here.
    pub fn type_count(&self) -> u32 {
        self.btf.count()
    }

    /// The bytes the BTF was parsed from: a vmlinux ELF (its `.BTF_ids` too) or raw BTF.
    pub fn bytes(&self) -> &[u8] {
        self.btf.bytes()
    }

    /// Adds the vmlinux kfuncs of the sets `kfunc_btf::SET_REGISTRATIONS` knows, from the
    /// kernel's `.BTF_ids` (`module_ko::vmlinux_kfunc_sets`: kfunc -> set -> flags).
    pub fn add_vmlinux_kfuncs(
        &mut self,
        sets: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
    ) {
        // Each kfunc's FUNC by the name index, not by a scan of the ~127k types per kfunc.
        let func_id = |name: &str| self.named(name, |k| matches!(k, Kind::Func { .. }));
        let found = crate::kfunc_btf::vmlinux_kfuncs(&self.btf, &func_id, sets);
        self.kfuncs.extend(found);
    }

    /// Adds the kfuncs of a module (its `.ko` bytes: `.BTF`, `.BTF.base` or else this vmlinux's
    /// BTF as the base, `.BTF_ids` for the flags). Returns how many were added.
    pub fn add_module_kfuncs(&mut self, ko: &[u8]) -> Result<usize, String> {
        let vmlinux_raw = self.btf.blob();
        let flags = crate::module_ko::kfunc_flags(ko, Some(vmlinux_raw)).map_err(|e| e.to_string())?;
        let split = crate::module_ko::elf_section(ko, ".BTF").map_err(|e| e.to_string())?.ok_or("no .BTF")?;
        let base =
            crate::module_ko::elf_section(ko, ".BTF.base").map_err(|e| e.to_string())?.unwrap_or(vmlinux_raw);
        let (module, base_count) = Btf::parse_split(split, base).map_err(|e| e.to_string())?;
        let found = crate::kfunc_btf::module_kfuncs(&module, base_count, self, &flags);
        let funcs = self.module_funcs.get_or_insert_with(Default::default);
        for t in module.types.iter().skip(base_count as usize) {
            if let Kind::Func { proto, .. } = t.kind {
                funcs.entry(t.name.to_string()).or_insert_with(|| module.compat_shape(proto));
            }
        }
        let n = found.len();
        self.kfuncs.extend(found);
        Ok(n)
    }

    /// The lowest id of a type called `name` whose kind `want`s.
    fn named(&self, name: &str, want: impl Fn(&Kind) -> bool) -> Option<u32> {
        let h = name_hash(name);
        let from = self.by_name.partition_point(|&(k, _)| k < h);
        self.by_name[from..]
            .iter()
            .take_while(|&&(k, _)| k == h)
            .map(|&(_, id)| id)
            .find(|&id| self.btf.get(id).is_some_and(|t| t.name == name && want(&t.kind)))
    }

    /// What libbpf's `find_ksym_btf_id(.., BTF_KIND_FUNC)` finds for `name` (vmlinux first, then
    /// the modules): the FUNC's vmlinux id (`None` for a module's) and its prototype's
    /// [`Btf::compat_shape`]. `Err(())`: not in vmlinux and no module BTF was read.
    #[allow(clippy::result_unit_err)]
    pub fn ksym_func(&self, name: &str) -> Result<Option<(Option<u32>, String)>, ()> {
        if let Some(id) = self.named(name, |k| matches!(k, Kind::Func { .. })) {
            let Some(Kind::Func { proto, .. }) = self.btf.get(id).map(|t| &t.kind) else { return Ok(None) };
            return Ok(Some((Some(id), self.btf.compat_shape(*proto))));
        }
        match &self.module_funcs {
            None => Err(()),
            Some(m) => Ok(m.get(name).map(|s| (None, s.clone()))),
        }
    }

    /// What libbpf's `find_ksym_btf_id(.., BTF_KIND_VAR)` finds for a typed `__ksym` variable
    /// in vmlinux (module variables are not looked up: `None`) and what
    /// `__check_pseudo_btf_id()` (verifier.c, 6.12/7.2/7.3 alike) makes of it.
    pub fn ksym_var(&self, name: &str) -> Option<KsymVar> {
        let id = self.named(name, |k| matches!(k, Kind::Var { .. }))?;
        let Some(Kind::Var { ty }) = self.btf.get(id).map(|t| &t.kind) else { return None };
        // find_btf_percpu_datasec(): the DATASEC `.data..percpu` lists the variable.
        let percpu = self.named(".data..percpu", |k| matches!(k, Kind::Datasec { .. })).is_some_and(|ds| {
            matches!(self.btf.get(ds).map(|t| &t.kind), Some(Kind::Datasec { entries })
                if entries.iter().any(|e| e.0 == id))
        });
        let t = self.skip_modifiers(*ty);
        let is_struct = matches!(self.btf.get(t).map(|t| &t.kind), Some(Kind::Struct { .. }));
        Some(KsymVar { ty: *ty, percpu, is_struct, size: self.size_of(t), shape: self.btf.compat_shape(*ty) })
    }

    /// The size `btf_resolve_size()` gives the type `id` after its modifiers (`None`: a type the
    /// model does not size) and whether it is a struct (`btf_type_is_struct()`).
    pub fn sized_type(&self, id: u32) -> (Option<u32>, bool) {
        let t = self.skip_modifiers(id);
        (self.size_of(t), matches!(self.btf.get(t).map(|t| &t.kind), Some(Kind::Struct { .. })))
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
            // bpf_iter_prog_supported() (bpf_iter.c): libbpf attaches `iter/<target>` to the FUNC
            // `bpf_iter_<target>` (BPF_ITER_FUNC_PREFIX), whose prototype is the ctx.
            AttachType::TraceIter => (format!("bpf_iter_{target}"), true),
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

    /// The prototype of struct_ops member `member` of the kernel's `struct <st>`
    /// (`check_struct_ops_btf_id()`: `btf_type_resolve_func_ptr()` on the member's type), as
    /// `btf_ctx_access()` reads it: `attach_func_name` is the member's name, `__nullable` comes
    /// from the member prototype's parameter names (`btf_param_match_suffix()`).
    pub fn struct_ops_proto(&self, st: &str, member: &str) -> Result<AttachProto, AttachError> {
        let id = self.struct_id(st).ok_or_else(|| AttachError::NotFound(format!("struct {st}")))?;
        let Some(Kind::Struct { members, .. }) = self.btf.get(id).map(|t| &t.kind) else {
            return Err(AttachError::NotFound(format!("struct {st}")));
        };
        let m = members
            .iter()
            .find(|m| m.name == member)
            .ok_or_else(|| AttachError::NotFound(format!("member {st}.{member}")))?;
        let proto = match self.btf.get(self.skip_modifiers(m.ty)).map(|t| &t.kind) {
            Some(Kind::Ptr { to }) => self.skip_modifiers(*to),
            _ => return Err(AttachError::NotFound(format!("a function pointer member {st}.{member}"))),
        };
        let Some(Kind::FuncProto { ret, params, names }) = self.btf.get(proto).map(|t| &t.kind) else {
            return Err(AttachError::NotFound(format!("the prototype of {st}.{member}")));
        };
        let args = params
            .iter()
            .zip(names)
            .map(|(ty, pname)| self.arg_kind(*ty, pname.ends_with("__nullable")))
            .collect();
        let ret = if *ret == 0 { ArgKind::Other("void".into()) } else { self.arg_kind(*ret, false) };
        Ok(AttachProto { func_name: member.to_string(), args, ret })
    }

    /// The byte offset of member `path` (`a.b`: nested members) of struct `id`, with its size. A
    /// name is also found inside anonymous struct / union members, as C names it
    /// (`sk_buff.tstamp` is in an anonymous union).
    pub fn member_offset(&self, id: u32, path: &str) -> Option<(u32, u32)> {
        let mut id = id;
        let mut off = 0;
        let mut size = 0;
        for name in path.split('.') {
            let (bit_offset, ty) = self.named_member(id, name, 0)?;
            off += bit_offset / 8;
            id = ty;
            size = self.size_of(id)?;
        }
        Some((off, size))
    }

    /// Member `name` of struct / union `id`, looked for through anonymous members (at most
    /// `depth` 8 deep): its bit offset from `id`'s start and its type; None for a bitfield.
    fn named_member(&self, id: u32, name: &str, depth: u32) -> Option<(u32, u32)> {
        let Some(Kind::Struct { members, .. } | Kind::Union { members, .. }) =
            self.btf.get(self.skip_modifiers(id)).map(|t| &t.kind)
        else {
            return None;
        };
        if let Some(m) = members.iter().find(|m| m.name == name) {
            return (m.bit_size == 0 && m.bit_offset % 8 == 0).then_some((m.bit_offset, m.ty));
        }
        if depth >= 8 {
            return None;
        }
        members.iter().filter(|m| m.name.is_empty()).find_map(|m| {
            let (inner, ty) = self.named_member(m.ty, name, depth + 1)?;
            Some((m.bit_offset + inner, ty))
        })
    }

    fn size_of(&self, id: u32) -> Option<u32> {
        match self.btf.get(self.btf.resolve(id)).map(|t| &t.kind)? {
            Kind::Int { size, .. }
            | Kind::Enum { size }
            | Kind::Struct { size, .. }
            | Kind::Union { size, .. } => Some(*size),
            Kind::Ptr { .. } => Some(8),
            Kind::Array { elem, nelems } => Some(self.size_of(*elem)? * nelems),
            _ => None,
        }
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

    /// `btf_struct_access()` (kernel/bpf/btf.c) on a kernel struct (not a program-allocated
    /// object): `btf_struct_walk()` over struct `id` at `off` for `size` bytes, diving into nested
    /// structs (`WALK_STRUCT`) until a scalar or a pointer member. The error is the line the
    /// kernel logs (`bpf_log()`), which is the verifier's message; the walk is the same in 6.12,
    /// 7.2 and 7.3.
    pub fn struct_access(&self, id: u32, off: u32, size: u32) -> Result<Walk, String> {
        let mut flags = WalkFlags::default();
        let (mut t, mut off) = (id, off);
        // The kernel's do { } while (t): each WALK_STRUCT goes one struct deeper.
        for _ in 0..64 {
            match self.struct_walk(t, off, size, &mut flags)? {
                WalkStep::Struct(next) => {
                    t = next;
                    off = 0;
                }
                WalkStep::Scalar => return Ok(Walk::Scalar),
                WalkStep::Ptr { btf_id, field } => return Ok(Walk::Ptr { btf_id, field, flags }),
                WalkStep::PtrToMem => return Ok(Walk::PtrToMem),
                WalkStep::Unmodelled(why) => return Ok(Walk::Unmodelled(why)),
            }
        }
        Err(format!("struct {} nests too deep", self.name_of(id)))
    }

    /// One `btf_struct_walk()` (walk_flex_arrays set: not an allocated object).
    fn struct_walk(&self, id: u32, off: u32, size: u32, flags: &mut WalkFlags) -> Result<WalkStep, String> {
        let (mut t, mut off) = (id, off);
        'again: for _ in 0..64 {
            t = self.btf.resolve(t);
            let tname = self.name_of(t).to_string();
            let (tsize, members, union) = match self.btf.get(t).map(|x| &x.kind) {
                Some(Kind::Struct { size, members }) => (*size, members, false),
                Some(Kind::Union { size, members }) => (*size, members, true),
                _ => return Err(format!("Type '{tname}' is not a struct")),
            };
            // Walking a union of more than one member yields untrusted pointers.
            if union && members.len() != 1 {
                flags.untrusted = true;
            }
            if off + size > tsize {
                // A trailing flexible array of ints or structs may be walked past the end.
                let beyond = || format!("access beyond struct {tname} at off {off} size {size}");
                let Some(last) = members.last() else { return Err(beyond()) };
                let Some(Kind::Array { elem, nelems: 0 }) = self.kind(self.btf.resolve(last.ty)) else {
                    return Err(beyond());
                };
                let moff = last.bit_offset / 8;
                if off < moff {
                    return Err(beyond());
                }
                let et = self.btf.resolve(*elem);
                match self.kind(et) {
                    Some(Kind::Int { .. }) => return Ok(WalkStep::Scalar),
                    // 6.12 lacks the `!t->size` test (and divides by it): not modelled.
                    Some(Kind::Struct { size: 0, .. } | Kind::Union { size: 0, .. }) => {
                        return Ok(WalkStep::Unmodelled("a flexible array of empty structs".into()))
                    }
                    Some(Kind::Struct { size: s, .. } | Kind::Union { size: s, .. }) => {
                        off = (off - moff) % s;
                        t = et;
                        continue 'again;
                    }
                    _ => return Err(beyond()),
                }
            }
            for m in members {
                let mut moff = m.bit_offset / 8;
                if off + size <= moff {
                    break;
                }
                if m.bit_size != 0 {
                    let end_bit = m.bit_offset + m.bit_size;
                    if off <= moff && end_bit.div_ceil(8) <= off + size {
                        return Ok(WalkStep::Scalar);
                    }
                    continue;
                }
                if off < moff {
                    break;
                }
                let Some(r) = self.resolve_size(m.ty) else {
                    return Err(format!("field {} doesn't have size", m.name));
                };
                let mut msize = r.size;
                let mtrue_end = moff + msize;
                if off >= mtrue_end {
                    continue;
                }
                let mut mtype = r.ty;
                if r.array {
                    if moff == mtrue_end {
                        continue;
                    }
                    msize /= r.nelems;
                    moff += (off - moff) / msize * msize;
                    mtype = r.elem;
                }
                match self.kind(mtype) {
                    Some(Kind::Struct { .. } | Kind::Union { .. }) => {
                        if off == moff {
                            return Ok(WalkStep::Struct(mtype));
                        }
                        off -= moff;
                        t = mtype;
                        continue 'again;
                    }
                    Some(Kind::Ptr { to }) => {
                        if msize != size || off != moff {
                            return Err(format!(
                                "cannot access ptr member {} with moff {moff} in struct {tname} with off {off} size {size}",
                                m.name
                            ));
                        }
                        // btf_type_tag_walk(): the `user` / `percpu` / `rcu` tags on the pointee.
                        let (target, tag) = match self.tag_walk(*to) {
                            Ok(t) => t,
                            Err(why) => return Ok(WalkStep::Unmodelled(why)),
                        };
                        if matches!(self.kind(target), Some(Kind::Struct { .. } | Kind::Union { .. })) {
                            if tag.is_some() {
                                flags.tag = tag;
                            }
                            return Ok(WalkStep::Ptr { btf_id: target, field: m.name.to_string() });
                        }
                        return Ok(WalkStep::PtrToMem);
                    }
                    _ => {}
                }
                if off + size > mtrue_end && !flags.untrusted {
                    return Err(format!(
                        "access beyond the end of member {} (mend:{mtrue_end}) in struct {tname} with off {off} size {size}",
                        m.name
                    ));
                }
                return Ok(WalkStep::Scalar);
            }
            return Err(format!("struct {tname} doesn't have field at offset {off}"));
        }
        Err(format!("struct {} nests too deep", self.name_of(id)))
    }

    fn kind(&self, id: u32) -> Option<&Kind> {
        self.btf.get(id).map(|t| &t.kind)
    }

    /// `btf_type_tag_walk()` from a pointer's target: the first type that is no modifier, and
    /// the one walk tag found. `Err` (not modelled) for several tags (7.x: "has multiple type
    /// tags"; 6.12 took the first) and for a tag behind another modifier (6.12 looks only at the
    /// pointer's immediate target, 7.x through all modifiers).
    fn tag_walk(&self, mut id: u32) -> Result<(u32, Option<&'static str>), String> {
        let mut tags: Vec<&'static str> = Vec::new();
        let mut behind_modifier = false;
        for _ in 0..32 {
            match self.btf.get(id) {
                Some(t) => match &t.kind {
                    Kind::Modifier(n) => {
                        behind_modifier = true;
                        id = *n;
                    }
                    Kind::TypeTag(n) => {
                        if behind_modifier {
                            return Err("a pointer member whose type tag follows another modifier".into());
                        }
                        if let Some(tag) = ["user", "percpu", "rcu"].into_iter().find(|x| *x == t.name) {
                            if !tags.contains(&tag) {
                                tags.push(tag);
                            }
                        }
                        id = *n;
                    }
                    _ => break,
                },
                None => break,
            }
        }
        if tags.len() > 1 {
            return Err("a pointer member with several type tags".into());
        }
        Ok((id, tags.first().copied()))
    }

    /// `__btf_resolve_size()`: modifiers skipped, arrays linearised.
    fn resolve_size(&self, mut id: u32) -> Option<Resolved> {
        let mut array = None;
        let mut nelems: u32 = 1;
        for _ in 0..32 {
            let size = match self.kind(id)? {
                Kind::Int { size, .. }
                | Kind::Struct { size, .. }
                | Kind::Union { size, .. }
                | Kind::Enum { size }
                | Kind::Float { size } => *size,
                Kind::Ptr { .. } => 8,
                Kind::Modifier(t) | Kind::TypeTag(t) => {
                    id = *t;
                    continue;
                }
                Kind::Array { elem, nelems: n } => {
                    array.get_or_insert(id);
                    nelems = nelems.checked_mul(*n)?;
                    id = *elem;
                    continue;
                }
                _ => return None,
            };
            return Some(Resolved {
                ty: array.unwrap_or(id),
                size: nelems.checked_mul(size)?,
                array: array.is_some(),
                elem: id,
                nelems,
            });
        }
        None
    }

    /// `btf_nested_type_is_trusted()`: struct `<name of walked><suffix>` (e.g.
    /// `task_struct__safe_trusted`, emitted into the kernel's BTF by verifier.c's
    /// `BTF_TYPE_SAFE_*` lists) has a pointer member named `field` to type `target`.
    pub fn nested_type_is_trusted(&self, walked: u32, field: &str, target: u32, suffix: &str) -> bool {
        let Some(w) = self.btf.get(walked) else { return false };
        let name = format!("{}{suffix}", w.name);
        if name.len() >= 64 {
            return false;
        }
        let same_kind = |k: &Kind| std::mem::discriminant(k) == std::mem::discriminant(&w.kind);
        let Some(safe) = self.named(&name, same_kind) else { return false };
        let (Some(Kind::Struct { members, .. }) | Some(Kind::Union { members, .. })) = self.kind(safe) else {
            return false;
        };
        members.iter().any(|m| match self.kind(m.ty) {
            Some(Kind::Ptr { to }) => m.name == field && self.btf.resolve(*to) == target,
            _ => false,
        })
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

/// What `btf_struct_access()` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Walk {
    /// `SCALAR_VALUE`.
    Scalar,
    /// `PTR_TO_BTF_ID` to struct `btf_id`, through the pointer member `field`; `flags` as the
    /// walk left them.
    Ptr { btf_id: u32, field: String, flags: WalkFlags },
    /// `WALK_PTR_UNTRUSTED`: a pointer to a non-struct (`PTR_TO_MEM | MEM_RDONLY | PTR_UNTRUSTED`
    /// in 7.x; 6.12 walked on and gave a scalar).
    PtrToMem,
    /// A walk the model does not follow (why).
    Unmodelled(String),
}

/// The `bpf_type_flag`s a walk sets: `PTR_UNTRUSTED` (a union of several members was walked)
/// and the pointer member's type tag (`MEM_USER`, `MEM_PERCPU`, `MEM_RCU`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalkFlags {
    pub untrusted: bool,
    pub tag: Option<&'static str>,
}

enum WalkStep {
    Scalar,
    Struct(u32),
    Ptr { btf_id: u32, field: String },
    PtrToMem,
    Unmodelled(String),
}

struct Resolved {
    /// The member's type after modifiers (the outer array for an array).
    ty: u32,
    /// Its size in bytes (all elements of an array).
    size: u32,
    array: bool,
    /// The element type of an array after modifiers (`ty` otherwise).
    elem: u32,
    nelems: u32,
}

/// A typed `__ksym` variable of vmlinux ([`KernelBtf::ksym_var`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KsymVar {
    /// The VAR's type (`t->type`, modifiers kept: the `btf_id` of a per-cpu pointer).
    pub ty: u32,
    /// Listed in the `.data..percpu` DATASEC.
    pub percpu: bool,
    /// The type after its modifiers is a struct (`btf_type_is_struct()`).
    pub is_struct: bool,
    /// `btf_resolve_size()` of the type (None: not sized by the model).
    pub size: Option<u32>,
    /// [`Btf::compat_shape`] of the type, for libbpf's `bpf_core_types_are_compat()`.
    pub shape: String,
}

/// FNV-1a of a type name: [`KernelBtf`]'s name index (not a defence against chosen collisions;
/// names that share a hash are told apart by comparing them).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
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
    /// Raw BTF with: 1 int, 2 struct task_struct (48 bytes: `u32 pid` at 0, `char comm[16]` at
    /// 8, `struct task_struct *group_leader` at 24, `*real_parent` at 32, `*parent` at 40), 3 ptr->2, 4
    /// FUNC_PROTO(int; task*, u64 flags), 5 FUNC free_task -> 4, 6 ptr->4 ... as a tracepoint: 7
    /// FUNC_PROTO(void; void *__data, task* p, int x), 8 ptr->7, 9 typedef btf_trace_task_newtask
    /// -> 8, 10-11 bpf_lsm_task_free; 12 u32, 13 char, 14 char[16], 15 struct
    /// task_struct__safe_trusted { group_leader }, 16 struct bpf_map (16 bytes: `u32 map_type`,
    /// `u32 max_entries`, `struct bpf_map *inner_map_meta` at 8), 17 ptr->16, 18 struct bpf_array
    /// { struct bpf_map map; u32 elem_size at 16 } (24 bytes), 19 struct bpf_arena { struct bpf_map
    /// map; u64 user_vm_start at 16 } (24 bytes), 20 struct task_struct__safe_rcu { real_parent },
    /// 21 struct bpf_iter_meta { u64 seq_num } (8 bytes), 22 ptr->21, 23 FUNC_PROTO(int; struct
    /// bpf_iter_meta *meta, task* task), 24 FUNC bpf_iter_task -> 23 (an iterator target);
    /// 25-33 a struct Qdisc (32 bytes: `flags`, `limit` at 4, `q.qlen` at 12, `qstats` 16-31) and
    /// struct Qdisc_ops { int (*init)(struct Qdisc *sch, int arg); void (*destroy)(struct Qdisc *);
    /// int (*enqueue)(struct sk_buff *, struct Qdisc *, struct sk_buff **); struct sk_buff
    /// *(*dequeue)(struct Qdisc *) }; 34-36 per-cpu VARs; 37 FUNC_PROTO(int; struct bpf_iter_meta
    /// *meta, struct bpf_map *map), 38 FUNC bpf_iter_bpf_map -> 37 (an iterator target with a
    /// ctx_arg_info argument); 39 struct sk_buff { int tstamp } (8 bytes), 40 ptr->39, 41 struct
    /// bpf_sk_buff_ptr { struct sk_buff *skb }, 42-46 the enqueue / dequeue prototypes.
    pub(crate) fn sample() -> Vec<u8> {
        let mut strs = b"\0int\0task_struct\0free_task\0p\0clone_flags\0btf_trace_task_newtask\0__data\0x\0bpf_lsm_task_free\0task__nullable\0u32\0char\0pid\0comm\0group_leader\0real_parent\0task_struct__safe_trusted\0bpf_map\0map_type\0max_entries\0inner_map_meta\0bpf_array\0map\0elem_size\0bpf_arena\0user_vm_start\0parent\0task_struct__safe_rcu\0bpf_iter_meta\0seq_num\0meta\0task\0bpf_iter_task\0qdisc_skb_head\0pad\0qlen\0gnet_stats_queue\0backlog\0drops\0requeues\0Qdisc\0flags\0limit\0q\0qstats\0sch\0arg\0Qdisc_ops\0init\0destroy\0bpf_prog_active\0some_counter\0.data..percpu\0bpf_iter_bpf_map\0sk_buff\0tstamp\0bpf_sk_buff_ptr\0skb\0to_free\0enqueue\0dequeue\0".to_vec();
        let off = |s: &str, strs: &[u8]| {
            let needle = format!("\0{s}\0");
            strs.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() as u32 + 1
        };
        let o = |s: &str| off(s, &strs);
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1 int
        t.extend([o("int"), info(1, 0), 8, 64]);
        // 2 struct task_struct, size 48
        t.extend([o("task_struct"), info(4, 5), 48]);
        t.extend([o("pid"), 12, 0, o("comm"), 14, 64, o("group_leader"), 3, 192, o("real_parent"), 3, 256]);
        t.extend([o("parent"), 3, 320]);
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
        // 12 u32, 13 char, 14 char[16]
        t.extend([o("u32"), info(1, 0), 4, 32]);
        t.extend([o("char"), info(1, 0), 1, 8]);
        t.extend([0, info(3, 0), 0, 13, 12, 16]);
        // 15 struct task_struct__safe_trusted { struct task_struct *group_leader; }
        t.extend([o("task_struct__safe_trusted"), info(4, 1), 8, o("group_leader"), 3, 0]);
        // 16 struct bpf_map, 17 ptr->16
        t.extend([o("bpf_map"), info(4, 3), 16]);
        t.extend([o("map_type"), 12, 0, o("max_entries"), 12, 32, o("inner_map_meta"), 17, 64]);
        t.extend([0, info(2, 0), 16]);
        // 18 struct bpf_array, 19 struct bpf_arena
        t.extend([o("bpf_array"), info(4, 2), 24, o("map"), 16, 0, o("elem_size"), 12, 128]);
        t.extend([o("bpf_arena"), info(4, 2), 24, o("map"), 16, 0, o("user_vm_start"), 1, 128]);
        // 20 struct task_struct__safe_rcu { struct task_struct *real_parent; }
        t.extend([o("task_struct__safe_rcu"), info(4, 1), 8, o("real_parent"), 3, 0]);
        // 21 struct bpf_iter_meta { u64 seq_num; }, 22 ptr->21
        t.extend([o("bpf_iter_meta"), info(4, 1), 8, o("seq_num"), 1, 0]);
        t.extend([0, info(2, 0), 21]);
        // 23 FUNC_PROTO int (meta: bpf_iter_meta*, task: task*), 24 FUNC bpf_iter_task -> 23
        t.extend([0, info(13, 2), 1, o("meta"), 22, o("task"), 3]);
        t.extend([o("bpf_iter_task"), info(12, 1), 23]);
        // 25 struct qdisc_skb_head { u32 pad; u32 qlen; }, 26 struct gnet_stats_queue (4 u32s)
        t.extend([o("qdisc_skb_head"), info(4, 2), 8, o("pad"), 12, 0, o("qlen"), 12, 32]);
        t.extend([o("gnet_stats_queue"), info(4, 4), 16, o("qlen"), 12, 0, o("backlog"), 12, 32]);
        t.extend([o("drops"), 12, 64, o("requeues"), 12, 96]);
        // 27 struct Qdisc { u32 flags; u32 limit; qdisc_skb_head q; gnet_stats_queue qstats; }
        t.extend([o("Qdisc"), info(4, 4), 32, o("flags"), 12, 0, o("limit"), 12, 32]);
        t.extend([o("q"), 25, 64, o("qstats"), 26, 128]);
        // 28 ptr->27, 29 FUNC_PROTO void (sch: Qdisc*), 30 ptr->29,
        // 31 FUNC_PROTO int (sch: Qdisc*, arg: int), 32 ptr->31
        t.extend([0, info(2, 0), 27]);
        t.extend([0, info(13, 1), 0, o("sch"), 28]);
        t.extend([0, info(2, 0), 29]);
        t.extend([0, info(13, 2), 1, o("sch"), 28, o("arg"), 1]);
        t.extend([0, info(2, 0), 31]);
        // 33 struct Qdisc_ops { init: 32; destroy: 30; enqueue: 44; dequeue: 46 }
        t.extend([o("Qdisc_ops"), info(4, 4), 32, o("init"), 32, 0, o("destroy"), 30, 64]);
        t.extend([o("enqueue"), 44, 128, o("dequeue"), 46, 192]);
        // 34 VAR bpf_prog_active -> int (per-cpu), 35 VAR some_counter -> u32,
        // 36 DATASEC .data..percpu { bpf_prog_active }
        t.extend([o("bpf_prog_active"), info(14, 0), 1, 1]);
        t.extend([o("some_counter"), info(14, 0), 12, 1]);
        t.extend([o(".data..percpu"), info(15, 1), 8, 34, 0, 8]);
        // 37 FUNC_PROTO int (meta: bpf_iter_meta*, map: bpf_map*), 38 FUNC bpf_iter_bpf_map -> 37
        t.extend([0, info(13, 2), 1, o("meta"), 22, o("map"), 17]);
        t.extend([o("bpf_iter_bpf_map"), info(12, 1), 37]);
        // 39 struct sk_buff { int tstamp; } (8 bytes), 40 ptr->39, 41 struct bpf_sk_buff_ptr
        // { struct sk_buff *skb; }, 42 ptr->40 (struct sk_buff **)
        t.extend([o("sk_buff"), info(4, 1), 8, o("tstamp"), 1, 0]);
        t.extend([0, info(2, 0), 39]);
        t.extend([o("bpf_sk_buff_ptr"), info(4, 1), 8, o("skb"), 40, 0]);
        t.extend([0, info(2, 0), 40]);
        // 43 FUNC_PROTO int (skb: sk_buff*, sch: Qdisc*, to_free: sk_buff**), 44 ptr->43,
        // 45 FUNC_PROTO sk_buff* (sch: Qdisc*), 46 ptr->45
        t.extend([0, info(13, 3), 1, o("skb"), 40, o("sch"), 28, o("to_free"), 42]);
        t.extend([0, info(2, 0), 43]);
        t.extend([0, info(13, 1), 40, o("sch"), 28]);
        t.extend([0, info(2, 0), 45]);
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

    #[test]
    fn struct_ops_member_prototypes_and_offsets() {
        let k = KernelBtf::parse("sample", &sample()).unwrap();
        let sch = ArgKind::StructPtr { btf_id: 27, name: "Qdisc".into(), nullable: false };
        let init = k.struct_ops_proto("Qdisc_ops", "init").unwrap();
        assert_eq!(init.func_name, "init");
        assert_eq!(init.args, vec![sch.clone(), ArgKind::Scalar]);
        assert_eq!(init.ret, ArgKind::Scalar);
        let destroy = k.struct_ops_proto("Qdisc_ops", "destroy").unwrap();
        assert_eq!((destroy.args, destroy.ret), (vec![sch], ArgKind::Other("void".into())));
        assert!(k.struct_ops_proto("Qdisc_ops", "peek").is_err());
        assert_eq!(k.member_offset(27, "limit"), Some((4, 4)));
        assert_eq!(k.member_offset(27, "q.qlen"), Some((12, 4)));
        assert_eq!(k.member_offset(27, "qstats"), Some((16, 16)));
        assert_eq!(k.member_offset(27, "nope"), None);
    }

    #[test]
    fn struct_access_walks_as_btf_struct_walk() {
        let k = KernelBtf::parse("sample", &sample()).unwrap();
        let array = k.struct_id("bpf_array").unwrap();
        assert_eq!(
            k.struct_access(array, 4, 4),
            Ok(Walk::Scalar),
            "map.max_entries, through the nested struct"
        );
        assert_eq!(k.struct_access(array, 16, 4), Ok(Walk::Scalar));
        assert_eq!(
            k.struct_access(array, 8, 8),
            Ok(Walk::Ptr { btf_id: 16, field: "inner_map_meta".into(), flags: WalkFlags::default() })
        );
        assert_eq!(
            k.struct_access(array, 8, 4),
            Err("cannot access ptr member inner_map_meta with moff 8 in struct bpf_map with off 8 size 4"
                .into())
        );
        assert_eq!(
            k.struct_access(array, 20, 4),
            Err("struct bpf_array doesn't have field at offset 20".into())
        );
        assert_eq!(
            k.struct_access(array, 24, 4),
            Err("access beyond struct bpf_array at off 24 size 4".into())
        );
        assert_eq!(
            k.struct_access(array, 2, 4),
            Err("access beyond the end of member map_type (mend:4) in struct bpf_map with off 2 size 4"
                .into())
        );
        // An int array may be read anywhere inside it, not past it.
        assert_eq!(k.struct_access(2, 20, 4), Ok(Walk::Scalar), "comm[12..16]");
        assert_eq!(
            k.struct_access(2, 22, 4),
            Err("access beyond the end of member comm (mend:24) in struct task_struct with off 22 size 4"
                .into())
        );
        assert!(k.nested_type_is_trusted(2, "group_leader", 2, "__safe_trusted"));
        assert!(!k.nested_type_is_trusted(2, "real_parent", 2, "__safe_trusted"));
        assert!(!k.nested_type_is_trusted(2, "group_leader", 2, "__safe_rcu"));
        assert!(k.nested_type_is_trusted(2, "real_parent", 2, "__safe_rcu"));
    }
}
