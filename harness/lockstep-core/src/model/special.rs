//! The special fields of a map value besides its lock (graph roots, `bpf_refcount`, kptrs): the
//! map-creation rules of `map_check_btf()` (kernel/bpf/syscall.c) and `btf_parse_fields()`
//! (kernel/bpf/btf.c), the graph-root rule of `check_map_prog_compatibility()` and the per-field
//! rule of `check_map_access()` (kernel/bpf/verifier.c). Identical in the 6.12, 7.2 and 7.3
//! sources. Pure functions over the case's layouts.

use crate::case::{FieldKind, FieldTarget, MapSpec, MapType, ObjType, ValueLayout};

/// `check_map_prog_compatibility()`: a map with a `bpf_list_head` or `bpf_rb_root` used by a
/// tracing program; checked before the lock rules.
pub(crate) const TRACING_GRAPH_ROOT: &str = "tracing progs cannot use bpf_{list_head,rb_root} yet";

/// The kinds `map_check_btf()` parses in a map value (`btf_parse_fields()` mask): graph nodes are
/// not among them, so a `bpf_list_node` / `bpf_rb_node` in a map value is plain memory.
pub(crate) fn in_map_record(kind: FieldKind) -> bool {
    !kind.is_graph_node() && kind != FieldKind::Int
}

/// `map_check_btf()`: whether a map of type `t` may hold a field of `kind` (else `-EOPNOTSUPP`).
/// Locks are checked by the caller.
pub(crate) fn map_type_allows(kind: FieldKind, t: MapType) -> bool {
    use MapType::*;
    match kind {
        FieldKind::ListHead | FieldKind::RbRoot => matches!(t, Hash | LruHash | Array),
        FieldKind::Kptr | FieldKind::KptrUntrusted | FieldKind::PercpuKptr | FieldKind::Refcount => {
            matches!(t, Hash | PercpuHash | LruHash | Array | PercpuArray | SkStorage)
        }
        // map_check_btf(): BPF_TIMER / BPF_WORKQUEUE (6.12, 7.2 and 7.3).
        FieldKind::Timer | FieldKind::Wq => matches!(t, Hash | LruHash | Array),
        _ => true,
    }
}

/// `btf_parse_fields()` / `btf_parse_graph_root()` failures (`-EINVAL`, `-ENOENT`) for a value
/// layout: `map_check_btf()` then creates the map with an error record (no special field at all,
/// not even the lock; docs/verifier-lock-rules.md §7), which the model does not represent. The
/// reason, or None.
pub(crate) fn record_error(layout: &ValueLayout, types: &[ObjType]) -> Option<String> {
    let has = |k: FieldKind| layout.fields.iter().any(|f| f.kind == k);
    if layout.fields.iter().any(|f| f.kind.is_graph_root()) && !layout.has_lock() {
        return Some(
            "a bpf_list_head / bpf_rb_root without a bpf_spin_lock beside it (btf_parse_fields: -EINVAL)"
                .into(),
        );
    }
    if !has(FieldKind::Refcount) && has(FieldKind::ListNode) && has(FieldKind::RbNode) {
        return Some(
            "a bpf_list_node and a bpf_rb_node without a bpf_refcount (btf_parse_fields: -EINVAL)".into(),
        );
    }
    for f in layout.fields.iter().filter(|f| f.kind.is_graph_root()) {
        let Some(FieldTarget::Contains { type_name, node }) = &f.target else {
            return Some(format!(
                "{} `{}` without __contains (btf_find_graph_root: -EINVAL)",
                f.kind.name(),
                f.name
            ));
        };
        let want = if f.kind == FieldKind::ListHead { FieldKind::ListNode } else { FieldKind::RbNode };
        let Some(t) = types.iter().find(|t| &t.name == type_name) else {
            return Some(format!("__contains type `{type_name}` is not a type of the program (-EINVAL)"));
        };
        match t.layout.fields.iter().find(|n| &n.name == node) {
            Some(n) if n.kind == want => {}
            _ => {
                return Some(format!("`{type_name}` has no {} `{node}` (btf_parse_graph_root)", want.name()))
            }
        }
    }
    None
}

/// A malformed access to a kptr field (`check_map_access()`, its `BPF_KPTR_*` branch, in order).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KptrError {
    /// `... access cannot have variable offset`.
    VarOff,
    /// `... access misaligned expected=<field offset> off=<access offset>`.
    Misaligned { expected: u32, off: i64 },
    /// `... access size must be BPF_DW`.
    Size,
}

/// The outcome of `check_map_access()`'s field loop for a direct load/store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FieldAccess {
    /// No special field is touched.
    Plain,
    /// A well-formed access to the kptr field at this offset (`check_map_kptr_access()` follows).
    Kptr(u32),
    /// "`<kind>` cannot be accessed directly by load/store".
    Direct(&'static str),
    /// A malformed kptr access; `kind` is `btf_field_type_name()` (7.x prints it, 6.12 `kptr`).
    BadKptr { kind: &'static str, error: KptrError },
}

/// `check_map_access()` over the special fields of `spec` for a direct access covering
/// `[lo, hi)` (`lo` = the constant offset when `var_const`) of `size` bytes, in offset order;
/// the locks among them only when `locks` (the model's `direct_access` rule is on).
pub(crate) fn check_access(
    spec: &MapSpec,
    lo: i64,
    hi: i64,
    var_const: bool,
    size: u8,
    locks: bool,
) -> FieldAccess {
    let mut kptr = None;
    for f in spec.value.fields.iter().filter(|f| in_map_record(f.kind) && (locks || !f.kind.is_lock())) {
        let p = f.offset as i64;
        if !(lo < p + f.size as i64 && p < hi) {
            continue;
        }
        let kind = f.kind.kernel_name().expect("a special field");
        if !f.kind.is_kptr() {
            return FieldAccess::Direct(kind);
        }
        let error = if !var_const {
            KptrError::VarOff
        } else if p != lo {
            KptrError::Misaligned { expected: f.offset, off: lo }
        } else if size != 8 {
            KptrError::Size
        } else {
            kptr = Some(f.offset);
            continue;
        };
        return FieldAccess::BadKptr { kind, error };
    }
    kptr.map_or(FieldAccess::Plain, FieldAccess::Kptr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Field;

    fn layout(fields: Vec<Field>) -> ValueLayout {
        ValueLayout { size: 64, fields }
    }

    fn head(off: u32, contains: Option<(&str, &str)>) -> Field {
        Field {
            target: contains.map(|(t, n)| FieldTarget::Contains { type_name: t.into(), node: n.into() }),
            ..Field::new("head", FieldKind::ListHead, off, 16)
        }
    }

    fn foo(node: FieldKind) -> ObjType {
        ObjType::new("foo", ValueLayout { size: 32, fields: vec![Field::new("node", node, 0, 24)] })
    }

    fn map(fields: Vec<Field>) -> MapSpec {
        MapSpec {
            name: "m".into(),
            map_type: MapType::Array,
            key_size: 4,
            max_entries: 1,
            value: layout(fields),
            btf: true,
            global_section: false,
            flags: 0,
            inner: None,
        }
    }

    #[test]
    fn graph_roots_only_in_hash_lru_hash_and_array_maps() {
        // map_check_btf(): case BPF_LIST_HEAD / BPF_RB_ROOT.
        for t in MapType::ALL {
            let ok = matches!(t, MapType::Hash | MapType::LruHash | MapType::Array);
            assert_eq!(map_type_allows(FieldKind::ListHead, t), ok, "{t:?}");
            assert_eq!(map_type_allows(FieldKind::RbRoot, t), ok, "{t:?}");
        }
        // case BPF_KPTR_*: per-cpu maps and sk storage too, not cgroup storage or prog arrays.
        assert!(map_type_allows(FieldKind::Kptr, MapType::PercpuArray));
        assert!(!map_type_allows(FieldKind::Kptr, MapType::CgroupStorage));
        assert!(!map_type_allows(FieldKind::Refcount, MapType::ProgArray));
    }

    #[test]
    fn a_graph_root_needs_a_lock_and_a_node_of_its_kind() {
        let lock = Field::new("lock", FieldKind::SpinLock, 16, 4);
        let types = [foo(FieldKind::ListNode)];
        assert!(record_error(&layout(vec![head(0, Some(("foo", "node")))]), &types)
            .unwrap()
            .contains("without a bpf_spin_lock"));
        assert_eq!(record_error(&layout(vec![head(0, Some(("foo", "node"))), lock.clone()]), &types), None);
        assert!(record_error(&layout(vec![head(0, None), lock.clone()]), &types)
            .unwrap()
            .contains("__contains"));
        assert!(record_error(&layout(vec![head(0, Some(("bar", "node"))), lock.clone()]), &types).is_some());
        assert!(record_error(&layout(vec![head(0, Some(("foo", "node"))), lock]), &[foo(FieldKind::RbNode)])
            .unwrap()
            .contains("no list_node `node`"));
    }

    #[test]
    fn touching_a_graph_root_is_a_direct_access_error_and_a_node_in_a_map_is_plain_memory() {
        let m = map(vec![head(0, Some(("foo", "node"))), Field::new("n", FieldKind::ListNode, 24, 24)]);
        assert_eq!(check_access(&m, 8, 12, true, 4, true), FieldAccess::Direct("bpf_list_head"));
        assert_eq!(check_access(&m, 24, 32, true, 8, true), FieldAccess::Plain);
    }

    #[test]
    fn kptr_accesses_must_be_constant_aligned_dw() {
        // check_map_access(): the BPF_KPTR_* branch, in its order.
        let k = Field {
            target: Some(FieldTarget::Pointee("foo".into())),
            ..Field::new("k", FieldKind::Kptr, 8, 8)
        };
        let m = map(vec![k]);
        let bad = |error| FieldAccess::BadKptr { kind: "kptr", error };
        assert_eq!(check_access(&m, 8, 16, false, 8, true), bad(KptrError::VarOff));
        assert_eq!(
            check_access(&m, 12, 16, true, 4, true),
            bad(KptrError::Misaligned { expected: 8, off: 12 })
        );
        assert_eq!(check_access(&m, 8, 12, true, 4, true), bad(KptrError::Size));
        assert_eq!(check_access(&m, 8, 16, true, 8, true), FieldAccess::Kptr(8));
        assert_eq!(check_access(&m, 0, 8, true, 8, true), FieldAccess::Plain);
    }
}
