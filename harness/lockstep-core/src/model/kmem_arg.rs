//! A kernel pointer (`PTR_TO_BTF_ID` of a vmlinux struct) as a helper's memory argument
//! (issue 14, item 5): `check_func_arg()` -> `check_reg_type()` against `mem_types` (only
//! `PTR_TO_BTF_ID | PTR_TRUSTED` among the kernel pointers; the profile's `mem_types` lists them
//! for the refusal, 7.x with `ctx`), its `found:` arm for a `PTR_TO_BTF_ID` ("%s() may write into
//! memory pointed by R%d type=%s" unless the argument is `MEM_RDONLY`), then for a read the
//! size's `check_helper_mem_access()` -> `check_ptr_to_btf_access()` over the register's constant
//! offset and the size (`btf_struct_access()`: "access beyond the end of member ..."). The same
//! in 6.12, 7.2 and 7.3 (kernel/bpf/verifier.c). Used by `bpf_strncmp`'s `s1` and
//! `bpf_probe_read_kernel`'s `dst`. A maybe-null, `MEM_RCU` or referenced register is
//! unsupported (its printed flags are not all kept by the model).

use super::exec::Machine;
use super::state::{Reg, Trust};
use super::{Step, Stop};

impl Machine<'_> {
    /// `check_reg_type()` for `reg` (a [`Reg::Kernel`]) in R`regno` as an `ARG_PTR_TO_MEM`
    /// argument of helper `name` (`rdonly`: `MEM_RDONLY`). `Ok` when it is accepted.
    pub(super) fn kernel_mem_arg_type(
        &self,
        pc: usize,
        regno: u8,
        reg: &Reg,
        name: &str,
        rdonly: bool,
    ) -> Step<()> {
        let Reg::Kernel { null: false, ref_obj_id: 0, trust, .. } = reg else {
            return Err(Stop::Unsupported(format!(
                "helper {name}: R{regno} of type {} (a maybe-null or referenced kernel pointer) as memory is not modelled",
                reg.type_str()
            )));
        };
        match trust {
            Trust::Trusted if rdonly => Ok(()),
            Trust::Trusted => self.reject(
                pc,
                format!("{name}() may write into memory pointed by R{regno} type={}", reg.type_str()),
            ),
            Trust::Legacy | Trust::Untrusted => {
                let args = [
                    ("reg", format!("R{regno}")),
                    ("type", reg.type_str().to_string()),
                    ("expected", self.profile.messages.mem_types.clone()),
                ];
                self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args))
            }
            Trust::Rcu => Err(Stop::Unsupported(format!(
                "helper {name}: R{regno} of type {} as memory is not modelled",
                reg.type_str()
            ))),
        }
    }

    /// The read pass of `check_helper_mem_access()` for an accepted kernel pointer `reg` in
    /// R`regno` over `size` bytes: `check_ptr_to_btf_access()` at the register's offset.
    pub(super) fn kernel_mem_arg_read(
        &self,
        pc: usize,
        regno: u8,
        reg: &Reg,
        size: i64,
        name: &str,
    ) -> Step<()> {
        let Reg::Kernel { btf_id, off, trust, .. } = *reg else {
            return Err(Stop::Unsupported(format!("helper {name}: R{regno} is not a kernel pointer")));
        };
        let Ok(size) = u8::try_from(size) else {
            return Err(Stop::Unsupported(format!(
                "helper {name}: a size of {size} over a kernel pointer is not modelled"
            )));
        };
        if size == 0 {
            return Err(Stop::Unsupported(format!(
                "helper {name}: a zero size over a kernel pointer is not modelled"
            )));
        }
        // No register is loaded (value_regno < 0): in_rcu_cs(), which only types the loaded
        // pointer, does not matter.
        self.btf_ptr_access(pc, regno, btf_id, trust, false, off, size, false, true).map(|_| ())
    }
}
