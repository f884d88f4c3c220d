//! `check_map_func_compatibility()` (verifier.c; the same in 6.12, 7.2 and 7.3) for the map types
//! a case or object declares: after a helper's arguments are checked, a map type that only its
//! own helpers take refuses every other one, with "cannot pass map_type %d into func %s#%d".

use crate::case::MapType;

/// The message for helper `helper` (id `id`) given a map of `map_type`, when the map type's
/// helper list (the first switch of `check_map_func_compatibility()`) does not hold it.
pub(crate) fn map_func_incompatible(map_type: MapType, helper: &str, id: i32) -> Option<String> {
    let allowed: &[&str] = match map_type {
        MapType::ProgArray => &["bpf_tail_call"],
        MapType::CgroupStorage => &["bpf_get_local_storage"],
        MapType::SkStorage => &["bpf_sk_storage_get", "bpf_sk_storage_delete", "bpf_kptr_xchg"],
        MapType::XskMap => &["bpf_redirect_map", "bpf_map_lookup_elem"],
        // may_update_sockmap() (update/delete by program type) is not listed: those helpers on a
        // sockmap stay unsupported in helpers_more.rs.
        MapType::SockMap => &[
            "bpf_sk_redirect_map",
            "bpf_sock_map_update",
            "bpf_msg_redirect_map",
            "bpf_sk_select_reuseport",
            "bpf_map_lookup_elem",
        ],
        MapType::SockHash => &[
            "bpf_sk_redirect_hash",
            "bpf_sock_hash_update",
            "bpf_msg_redirect_hash",
            "bpf_sk_select_reuseport",
            "bpf_map_lookup_elem",
        ],
        MapType::ReuseportSockarray => &["bpf_sk_select_reuseport"],
        // `case BPF_MAP_TYPE_ARRAY_OF_MAPS: case BPF_MAP_TYPE_HASH_OF_MAPS:` (6.12, 7.2, 7.3).
        MapType::ArrayOfMaps | MapType::HashOfMaps => &["bpf_map_lookup_elem"],
        MapType::Hash
        | MapType::Array
        | MapType::PercpuHash
        | MapType::PercpuArray
        | MapType::LruHash
        | MapType::Arena => return None,
    };
    (!allowed.contains(&helper))
        .then(|| format!("cannot pass map_type {} into func {helper}#{id}", map_type.uapi()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_map_types() {
        // debian:7.3, verifier_sock.bpf.o map_lookup_elem_smap_key (insn 6).
        assert_eq!(
            map_func_incompatible(MapType::SkStorage, "bpf_map_lookup_elem", 1).as_deref(),
            Some("cannot pass map_type 24 into func bpf_map_lookup_elem#1")
        );
        assert!(map_func_incompatible(MapType::SkStorage, "bpf_sk_storage_get", 107).is_none());
        assert!(map_func_incompatible(MapType::Hash, "bpf_map_lookup_elem", 1).is_none());
        assert!(map_func_incompatible(MapType::ProgArray, "bpf_map_delete_elem", 3).is_some());
    }
}
