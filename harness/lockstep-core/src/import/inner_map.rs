//! The inner map of a map-in-map in an object's BTF, as libbpf reads it
//! (`parse_btf_map_def()` on the `values` member, tools/lib/bpf/libbpf.c): the outer map's
//! `__array(values, struct inner)` is a `values` member of type `ARRAY` of `PTR` to the inner
//! map's definition struct, whose `__uint(...)` / `__type(...)` members say its type, key,
//! value and size. Pure: reads the parsed [`Btf`].

use super::btf::{Btf, BtfTypes, Kind};

/// An inner map definition: what libbpf creates as `<outer>.inner` before the outer map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InnerDef {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    /// The value's BTF type id (0: `__uint(value_size, N)` without a type).
    pub value_type: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// The definition struct of `.maps` variable `outer`'s inner map, or why there is none.
pub fn inner_def(btf: &Btf, outer: &str) -> Result<InnerDef, String> {
    let sec = btf.datasec(".maps").ok_or("no .maps section in the BTF")?;
    let Some(Kind::Datasec { entries }) = btf.get(sec).map(|t| &t.kind) else {
        return Err("no .maps section in the BTF".into());
    };
    let var_ty = entries
        .iter()
        .filter_map(|(v, _, _)| btf.get(*v).filter(|t| t.name == outer))
        .find_map(|t| if let Kind::Var { ty } = t.kind { Some(ty) } else { None })
        .ok_or_else(|| format!("no .maps variable `{outer}` in the BTF"))?;
    let values = members(btf, var_ty)?
        .into_iter()
        .find(|(n, _)| n == "values")
        .ok_or("no `__array(values, ...)` member (libbpf needs the inner map's definition)")?
        .1;
    let Some(Kind::Array { elem, .. }) = btf.get(btf.resolve(values)).map(|t| &t.kind) else {
        return Err("`values` is not an array".into());
    };
    let Some(Kind::Ptr { to }) = btf.get(btf.resolve(*elem)).map(|t| &t.kind) else {
        return Err("`values` is not an array of pointers to a map definition".into());
    };
    def_of(btf, *to)
}

/// A map definition struct (`struct { __uint(type, ...); __type(key, ...); ... }`).
fn def_of(btf: &Btf, id: u32) -> Result<InnerDef, String> {
    let mut d =
        InnerDef { map_type: 0, key_size: 0, value_size: 0, value_type: 0, max_entries: 0, map_flags: 0 };
    for (name, ty) in members(btf, id)? {
        match name.as_str() {
            "type" => d.map_type = uint_member(btf, ty)?,
            "max_entries" => d.max_entries = uint_member(btf, ty)?,
            "map_flags" => d.map_flags = uint_member(btf, ty)?,
            "key_size" => d.key_size = uint_member(btf, ty)?,
            "value_size" => d.value_size = uint_member(btf, ty)?,
            "key" => d.key_size = pointee_size(btf, ty)?,
            "value" => {
                d.value_size = pointee_size(btf, ty)?;
                d.value_type = pointee(btf, ty)?;
            }
            other => return Err(format!("inner map definition member `{other}` is not read")),
        }
    }
    if d.map_type == 0 {
        return Err("the inner map definition has no type".into());
    }
    Ok(d)
}

/// The (name, type) members of a struct.
fn members(btf: &Btf, id: u32) -> Result<Vec<(String, u32)>, String> {
    match btf.get(btf.resolve(id)).map(|t| &t.kind) {
        Some(Kind::Struct { members, .. }) => {
            Ok(members.iter().map(|m| (m.name.to_string(), m.ty)).collect())
        }
        _ => Err(format!("BTF type {id} is not a map definition struct")),
    }
}

/// `__uint(name, N)`: `int (*name)[N]`.
fn uint_member(btf: &Btf, ty: u32) -> Result<u32, String> {
    match btf.get(pointee(btf, ty)?).map(|t| &t.kind) {
        Some(Kind::Array { nelems, .. }) => Ok(*nelems),
        _ => Err("a __uint member that is not a pointer to an array".into()),
    }
}

/// `__type(name, T)`: `T *name`; the resolved `T`.
fn pointee(btf: &Btf, ty: u32) -> Result<u32, String> {
    match btf.get(btf.resolve(ty)).map(|t| &t.kind) {
        Some(Kind::Ptr { to }) => Ok(btf.resolve(*to)),
        _ => Err("a map definition member that is not a pointer".into()),
    }
}

fn pointee_size(btf: &Btf, ty: u32) -> Result<u32, String> {
    let t = pointee(btf, ty)?;
    Ok(btf.ctype(t).map_err(|e| e.to_string())?.size() as u32)
}
