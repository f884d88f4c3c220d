//! Constant strings (issue 14, item 5): `ARG_PTR_TO_CONST_STR` (`bpf_strncmp`'s third argument)
//! and `KF_ARG_PTR_TO_CONST_STR` (a kfunc's `__str` argument, `bpf_stream_vprintk`'s format),
//! both judged by `check_arg_const_str()` (kernel/bpf/verifier.c, the same text in 7.2 and 7.3
//! but for 7.3's percpu_array refusal, left unsupported): the register must be a map value of a
//! frozen `BPF_F_RDONLY_PROG` map (`bpf_map_is_rdonly()`), at a constant offset inside the value,
//! with a NUL between the offset and the value's end in the map's contents.
//!
//! The contents are known only for a BPF object's read-only global data maps (`.rodata*`), which
//! libbpf fills from the ELF section and freezes (`bpf_object__populate_internal_map()`): the
//! model reads the section from the object's bytes. A case file's maps are created by lockstep
//! without contents or freezing: not modelled. Nothing of the format string is checked at
//! verification time for `bpf_stream_vprintk` (its `bpf_bprintf_prepare()` runs at run time,
//! kernel/bpf/stream.c), unlike `bpf_snprintf` (`check_bpf_snprintf_call()`, not modelled).

use super::exec::Machine;
use super::helpers_plain::{MapValueArgGap, BASE_FUNC_PROTO_TYPES};
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::{FieldKind, MapType};

/// `BPF_F_RDONLY_PROG`.
const BPF_F_RDONLY_PROG: u32 = 1 << 7;

impl Machine<'_> {
    /// The initial contents of global data map `map` of the case's object, when libbpf creates
    /// it read-only and frozen: the ELF section of the map's name (`.rodata`, `.rodata.str1.1`).
    fn frozen_rodata(&self, map: usize) -> Option<Vec<u8>> {
        use object::{Object as _, ObjectSection as _};
        let spec = self.map(map);
        let obj = self.case.object.as_ref()?;
        if !spec.global_section || spec.flags & BPF_F_RDONLY_PROG == 0 || !spec.name.starts_with(".rodata") {
            return None;
        }
        let elf = object::File::parse(&obj.bytes[..]).ok()?;
        let sec = elf.section_by_name(&spec.name)?;
        sec.data().ok().map(<[u8]>::to_vec)
    }

    /// A load from libbpf's `.kconfig` map at bytes `lo..hi` (import/kconfig.rs): the map is
    /// read-only and frozen, so `check_mem_access()` reads the value (`bpf_map_is_rdonly()`,
    /// `bpf_map_direct_read()`, 6.12 / 7.2 / 7.3): the extern's config value from the profile
    /// (`kconfig`, the Debian kernel's config libbpf read in the guest), zero-extended from its
    /// size as the load does. A load of part of an extern, across two, at a variable offset, or of
    /// an option the profile does not list is unsupported.
    pub(super) fn kconfig_load(&self, lo: i64, hi: i64, var_const: bool) -> Step<Reg> {
        let unsupported = |why: String| {
            Err(Stop::Unsupported(format!("a load from the .kconfig map {why} is not modelled")))
        };
        let Some(obj) = self.case.object.as_ref().filter(|_| var_const) else {
            return unsupported("at a variable offset or outside an object".into());
        };
        let vars = crate::import::kconfig::layout_of_object(&obj.bytes)
            .map_err(|e| Stop::Unsupported(format!(".kconfig map: {e}")))?;
        let Some(v) = vars.iter().find(|v| v.off as i64 == lo && (v.off + v.size) as i64 == hi) else {
            return unsupported(format!("at bytes {lo}..{hi} (not one whole extern)"));
        };
        let Some(&value) = self.profile.kconfig.get(&v.name) else {
            return unsupported(format!(
                "of {} (a config option profile {} does not list)",
                v.name, self.profile.name
            ));
        };
        let bits = 8 * v.size;
        let value = if bits >= 64 { value } else { value & ((1i64 << bits) - 1) };
        Ok(Reg::Scalar(super::scalar::Scalar::known(value)))
    }

    /// `check_arg_const_str()` for register `r` (`what`: the helper or kfunc, for messages of
    /// the constructs not modelled). Returns `Ok` when the kernel passes it.
    pub(super) fn const_str_arg(&self, pc: usize, r: usize, reg: &Reg, what: &str) -> Step<()> {
        let unsupported = |why: &str| {
            Err(Stop::Unsupported(format!("{what}: a constant string argument R{r} {why} is not modelled")))
        };
        let Reg::MapValue { map, off, var, null: false, .. } = reg else {
            return unsupported(&format!("of type {}", reg.type_str()));
        };
        let spec = self.map(*map);
        // 7.3 refuses a percpu_array first ("points to percpu_array map"), 7.2 does not.
        if spec.map_type == MapType::PercpuArray {
            return unsupported("in a percpu_array map");
        }
        let Some(bytes) = self.frozen_rodata(*map) else {
            // bpf_map_is_rdonly(): BPF_F_RDONLY_PROG and frozen. Of an object's maps, libbpf
            // creates only the `.rodata*` / `.kconfig` ones with BPF_F_RDONLY_PROG and freezes
            // them (test_loader freezes none): a map without the flag is refused.
            if self.case.object.is_some() && spec.flags & BPF_F_RDONLY_PROG == 0 {
                return self.reject(pc, format!("R{r} does not point to a readonly map'"));
            }
            return unsupported("in a map whose contents or frozen state the model does not know");
        };
        if var.is_some() {
            // tnum_is_const(): the model's variable part may be a constant the kernel knows.
            return unsupported("at a variable offset");
        }
        let size = spec.value.size as i64;
        // check_map_access(reg, 0, value_size - off): an offset outside the value is refused with
        // messages not modelled here; a special field in a .rodata value does not occur.
        if *off < 0 || *off >= size || bytes.len() as i64 != size {
            return unsupported("outside the map value");
        }
        if spec.value.fields.iter().any(|f| f.kind != FieldKind::Int) {
            return unsupported("in a map value with special fields");
        }
        // strnchr(str_ptr + map_off, value_size - map_off, 0)
        if !bytes[*off as usize..].contains(&0) {
            return self.reject(pc, "string is not zero-terminated".into());
        }
        Ok(())
    }

    /// `bpf_strncmp(s1, s1_sz, s2)` (kernel/bpf/helpers.c `bpf_strncmp_proto`: not `gpl_only`,
    /// `ARG_PTR_TO_MEM | MEM_RDONLY`, `ARG_MEM_SIZE`, `ARG_PTR_TO_CONST_STR`, `RET_INTEGER`).
    /// Modelled for `s1` in a map value at a constant offset with a known constant size of at
    /// least 1 wholly inside the value and over no special field (`check_mem_size_reg()` ->
    /// `check_helper_mem_access()` read pass), and `s2` as [`Self::const_str_arg`] judges it.
    /// `s1` a kernel pointer (`task->comm`): `kmem_arg.rs`. Other `s1` registers (the stack) are
    /// unsupported.
    pub(super) fn strncmp(&mut self, st: &mut State, pc: usize) -> Step<()> {
        let name = "helper bpf_strncmp";
        let unsupported = |what: &str| Err(Stop::Unsupported(format!("{name}: {what} is not modelled")));
        if !BASE_FUNC_PROTO_TYPES.contains(&self.case.prog_type) {
            return unsupported("this program type");
        }
        // s1 a kernel pointer (task->comm): kmem_arg.rs.
        let r1 = st.cur_ref().regs[1];
        if matches!(r1, Reg::Kernel { .. }) {
            self.kernel_mem_arg_type(pc, 1, &r1, "bpf_strncmp", true)?;
            let size = match self.read_reg(st, pc, 2)? {
                Reg::Scalar(s) => s.konst().filter(|k| *k >= 1),
                _ => None,
            };
            let Some(size) = size else {
                return unsupported("a size R2 that is not a known constant of at least 1");
            };
            self.kernel_mem_arg_read(pc, 1, &r1, size, "bpf_strncmp")?;
            self.strncmp_s2(st, pc)?;
            self.clobber(st, Reg::Scalar(super::scalar::Scalar::unknown()));
            return Ok(());
        }
        match self.map_value_read_arg(st, pc)? {
            Ok(()) => {}
            Err(MapValueArgGap::NotMapValue(ty)) => {
                return unsupported(&format!(
                    "R1 of type {ty} (other than a map value at a constant offset)"
                ));
            }
            Err(MapValueArgGap::Size) => {
                return unsupported("a size R2 that is not a known constant of at least 1")
            }
            Err(MapValueArgGap::WriteOnly) => return unsupported("R1 in a write-only map"),
            Err(MapValueArgGap::PastValue) => return unsupported("R1 past the map value"),
            Err(MapValueArgGap::OverField) => return unsupported("R1 over a special field"),
        }
        self.strncmp_s2(st, pc)?;
        self.clobber(st, Reg::Scalar(super::scalar::Scalar::unknown()));
        Ok(())
    }

    /// `bpf_strncmp`'s `s2` (R3, `ARG_PTR_TO_CONST_STR`): `check_func_arg()` ->
    /// `check_reg_type()` against `const_str_ptr_types` (`PTR_TO_MAP_VALUE` alone, not nullable:
    /// the same in 6.12, 7.2 and 7.3) refuses a scalar, 0 included, as "R3 type=scalar
    /// expected=map_value" (the kernel-btf case `kmem_strncmp_task_flags_then_const_str`, real
    /// runs on debian:6.12 / 7.2 / 7.3); a map value goes on to [`Self::const_str_arg`].
    fn strncmp_s2(&self, st: &State, pc: usize) -> Step<()> {
        let r3 = self.read_reg(st, pc, 3)?;
        if let Reg::Scalar(_) = r3 {
            return self.reject(pc, "R3 type=scalar expected=map_value".into());
        }
        self.const_str_arg(pc, 3, &r3, "helper bpf_strncmp")
    }
}
