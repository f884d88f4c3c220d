//! The special fields btf.c finds in a value type besides the locks (`btf_get_field_type()`,
//! `btf_find_kptr()`, `btf_find_graph_root()`, kernel/bpf/btf.c): `bpf_list_head`/`bpf_list_node`,
//! `bpf_rb_root`/`bpf_rb_node`, `bpf_refcount` and kptrs (`__kptr`, `__kptr_untrusted`,
//! `__percpu_kptr`), with their offsets, `__contains(type, node)` and pointee, and the local
//! object types the graph roots contain. The lock and integer fields come from
//! [`super::cfile::value_layout`]; these are merged into the same layout.

use super::btf::{Btf, Kind};
use super::cfile::value_layout;
use crate::case::{Field, FieldKind, FieldTarget, MapSpec, ObjType, ValueLayout};

/// The non-lock struct kind named `name` of `size` bytes (btf.c matches name and size).
fn struct_kind(name: &str, size: u32) -> Option<FieldKind> {
    FieldKind::ALL.into_iter().find(|k| {
        !k.is_lock() && k.struct_name() == Some(name) && k.size_align().is_some_and(|(s, _)| s == size)
    })
}

/// `btf_find_kptr()`: a pointer (volatile allowed) to a `kptr` / `kptr_untrusted` /
/// `percpu_kptr` type tag on a struct: the flavour and the struct's name.
fn kptr_of(btf: &Btf, mut id: u32) -> Option<(FieldKind, String)> {
    // A bounded walk: a malformed BTF may loop.
    for _ in 0..8 {
        match btf.get(id).map(|t| &t.kind) {
            Some(Kind::Modifier(t)) => id = *t,
            _ => break,
        }
    }
    let Kind::Ptr { to } = btf.get(id)?.kind else { return None };
    let tag = btf.get(to)?;
    let Kind::TypeTag(next) = tag.kind else { return None };
    let kind = match tag.name.as_str() {
        "kptr" => FieldKind::Kptr,
        "kptr_untrusted" => FieldKind::KptrUntrusted,
        "percpu_kptr" => FieldKind::PercpuKptr,
        _ => return None,
    };
    let pointee = btf.get(btf.resolve(next))?;
    Some((kind, pointee.name.clone()))
}

/// The `contains:<type>:<node>` decl tag among `tags` (`btf_find_decl_tag_value()`).
fn contains_of(tags: &[&str]) -> Option<FieldTarget> {
    let v = tags.iter().find_map(|t| t.strip_prefix("contains:"))?;
    let (t, n) = v.split_once(':')?;
    Some(FieldTarget::Contains { type_name: t.to_string(), node: n.to_string() })
}

/// The special field a member (or a global variable) of type `ty` is, named `name` at `offset`,
/// with `tags` its decl tags.
fn field_of(btf: &Btf, ty: u32, name: &str, offset: u32, tags: &[&str]) -> Option<Field> {
    if let Some((kind, pointee)) = kptr_of(btf, ty) {
        return Some(Field {
            name: name.into(),
            kind,
            offset,
            size: 8,
            target: Some(FieldTarget::Pointee(pointee)),
        });
    }
    let t = btf.get(btf.resolve(ty))?;
    let Kind::Struct { size, .. } = t.kind else { return None };
    let kind = struct_kind(&t.name, size)?;
    let target = if kind.is_graph_root() { contains_of(tags) } else { None };
    Some(Field { name: name.into(), kind, offset, size, target })
}

/// The special fields of struct `id` (its direct members; nested structs and arrays are not
/// descended into), at `base` bytes, each named `<prefix>_<member>` (or `<member>`).
pub fn struct_fields(btf: &Btf, id: u32, base: u32, prefix: Option<&str>) -> Vec<Field> {
    let id = btf.resolve(id);
    let Some(Kind::Struct { members, .. }) = btf.get(id).map(|t| &t.kind) else { return Vec::new() };
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if m.bit_offset % 8 != 0 {
            continue;
        }
        let name = match prefix {
            Some(p) => format!("{p}_{}", m.name),
            None => m.name.clone(),
        };
        let tags = btf.member_decl_tags(id, i as i32);
        if let Some(f) = field_of(btf, m.ty, &name, base + m.bit_offset / 8, &tags) {
            out.push(f);
        }
    }
    out
}

/// The special fields of a global variable `var` (a `VAR` of a `DATASEC`) of type `ty` at
/// `offset`: the variable itself (`struct bpf_list_head ghead __contains(foo, node)`) or the
/// members of its struct type.
pub fn var_fields(btf: &Btf, var: u32, name: &str, ty: u32, offset: u32) -> Vec<Field> {
    match field_of(btf, ty, name, offset, &btf.decl_tags(var)) {
        Some(f) => vec![f],
        None => struct_fields(btf, ty, offset, Some(name)),
    }
}

/// Adds `extra` to `layout`: an integer field they overlap (a kptr was read as an 8-byte
/// pointer) is replaced; fields stay in offset order.
pub fn merge(layout: &mut ValueLayout, extra: Vec<Field>) {
    if extra.is_empty() {
        return;
    }
    layout.fields.retain(|f| {
        f.kind != FieldKind::Int
            || !extra.iter().any(|e| f.offset < e.offset + e.size && e.offset < f.offset + f.size)
    });
    layout.fields.extend(extra);
    layout.fields.sort_by_key(|f| f.offset);
}

/// The layout of the local object type `id` (locks, integers and special fields).
fn type_layout(btf: &Btf, id: u32) -> Result<ValueLayout, String> {
    let mut layout = value_layout(&btf.ctype(id).map_err(|e| e.to_string())?)?;
    merge(&mut layout, struct_fields(btf, id, 0, None));
    Ok(layout)
}

/// The local object types the graph roots of `maps` contain, and those their own graph roots
/// contain, in discovery order. A type the BTF lacks is left out (the kernel then refuses the map).
pub fn contained_types(btf: &Btf, maps: &[MapSpec]) -> Result<Vec<ObjType>, String> {
    let mut todo: Vec<String> = Vec::new();
    let roots = |l: &ValueLayout, todo: &mut Vec<String>| {
        for f in &l.fields {
            if let Some(FieldTarget::Contains { type_name, .. }) = &f.target {
                todo.push(type_name.clone());
            }
        }
    };
    for m in maps.iter().flat_map(|m| std::iter::once(m).chain(m.inner.as_deref())) {
        roots(&m.value, &mut todo);
    }
    let mut out: Vec<ObjType> = Vec::new();
    while let Some(name) = todo.pop() {
        if out.iter().any(|t| t.name == name) {
            continue;
        }
        let Some(id) = btf.struct_named(&name) else { continue };
        let layout = type_layout(btf, id).map_err(|e| format!("type `{name}`: {e}"))?;
        roots(&layout, &mut todo);
        out.push(ObjType {
            btf_id: Some(id),
            pointers: pointer_offsets(btf, id),
            ..ObjType::new(name, layout)
        });
    }
    Ok(out)
}

/// Byte offsets of the pointer members of struct `id` (not descending into nested structs).
fn pointer_offsets(btf: &Btf, id: u32) -> Vec<u32> {
    let Some(Kind::Struct { members, .. }) = btf.get(btf.resolve(id)).map(|t| &t.kind) else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|m| m.bit_offset % 8 == 0)
        .filter(|m| matches!(btf.get(btf.resolve(m.ty)).map(|t| &t.kind), Some(Kind::Ptr { .. })))
        .map(|m| m.bit_offset / 8)
        .collect()
}

/// Adds to `types` the local struct types a program may allocate: `bpf_obj_new(T)` is
/// `bpf_obj_new_impl(bpf_core_type_id_local(T), NULL)`, which clang emits as an `ld_imm64` of the
/// type's id in the program BTF (`consts`: those constants). A constant that is the id of a struct
/// becomes that type with its id; a type already there gets the id. A struct whose layout lockstep
/// cannot represent is left out (the model then says the type is unknown).
pub fn allocated_types(btf: &Btf, consts: &[u64], types: &mut Vec<ObjType>) {
    for &c in consts {
        let Ok(id) = u32::try_from(c) else { continue };
        if id == 0 || types.iter().any(|t| t.btf_id == Some(id)) {
            continue;
        }
        let Some(t) = btf.get(id) else { continue };
        if !matches!(t.kind, Kind::Struct { .. }) {
            continue;
        }
        // An anonymous struct (`bpf_obj_new(struct { int data; })` in the selftests) keeps its
        // empty name, as btf_type_name() prints it; nothing refers to it by name.
        let named = !t.name.is_empty();
        if let Some(known) = types.iter_mut().find(|o| named && o.name == t.name && o.btf_id.is_none()) {
            known.btf_id = Some(id);
            continue;
        }
        let Ok(layout) = type_layout(btf, id) else { continue };
        types.push(ObjType {
            btf_id: Some(id),
            pointers: pointer_offsets(btf, id),
            ..ObjType::new(t.name.clone(), layout)
        });
    }
}
