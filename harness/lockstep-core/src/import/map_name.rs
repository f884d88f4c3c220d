//! The name libbpf gives an object's global data maps (`.bss`, `.data`, `.rodata`, `.data.X`)
//! when it creates them: `internal_map_name()` (tools/lib/bpf/libbpf.c, libbpf 1.x), which is the
//! name the kernel prints (`map 'res_spin.bss' has no valid bpf_res_spin_lock`).

/// `BPF_OBJ_NAME_LEN`: a kernel object name holds 15 characters and the NUL.
const BPF_OBJ_NAME_LEN: usize = 16;

/// The object's name as libbpf keeps it (`bpf_object__new()`): the file's base name up to its
/// first `.` (`res_spin_lock_fail.bpf.o` -> `res_spin_lock_fail`), at most 15 characters.
pub fn libbpf_object_name(file_name: &str) -> String {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    let stem = base.split('.').next().unwrap_or(base);
    stem.chars().take(BPF_OBJ_NAME_LEN - 1).collect()
}

/// `internal_map_name(obj, real_name)`: a section with a second `.` (`.data.A`) keeps its own
/// name; a plain one (`.bss`) is prefixed with as much of the object's name as fits beside a
/// suffix of at least 7 characters; characters other than `[A-Za-z0-9_.]` become `_`.
pub fn internal_map_name(object_name: &str, real_name: &str) -> String {
    let sfx_len = real_name.len().clamp(7, BPF_OBJ_NAME_LEN - 1);
    let pfx_len = if real_name.get(1..).is_some_and(|r| r.contains('.')) {
        0
    } else {
        (BPF_OBJ_NAME_LEN - sfx_len - 1).min(object_name.len())
    };
    let name: String = object_name.chars().take(pfx_len).chain(real_name.chars().take(sfx_len)).collect();
    name.chars()
        .take(BPF_OBJ_NAME_LEN - 1)
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_names() {
        // The name debian:7.3 printed for res_spin_lock_fail.bpf.o's .bss.
        let obj = libbpf_object_name("res_spin_lock_fail.bpf.o");
        assert_eq!(obj, "res_spin_lock_f");
        assert_eq!(internal_map_name(&obj, ".bss"), "res_spin.bss");
        assert_eq!(internal_map_name(&obj, ".data.A"), ".data.A");
        assert_eq!(internal_map_name("x", ".rodata"), "x.rodata");
        assert_eq!(internal_map_name("test_spin_lock", ".data.lock"), ".data.lock");
    }
}
