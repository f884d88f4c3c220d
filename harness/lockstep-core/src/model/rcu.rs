//! RCU read-lock and preemption regions as the lock rules see them (7.2, 7.3: the counters
//! `active_rcu_locks` / `active_preempt_locks` of `check_kfunc_call()`; 6.12 keeps a boolean
//! `active_rcu_lock` and refuses nesting: not modelled there). `bpf_rcu_read_unlock` /
//! `bpf_preempt_enable` without a matching lock are refused; a main exit, `bpf_throw` or a tail
//! call inside a region meets `check_resource_leak()` (after the lock, reference and IRQ checks,
//! in this order: IRQ, RCU, preemption). The end of a region that leaves the RCU critical section
//! turns `MEM_RCU` pointers (kptr loads, walked pointers) untrusted (`invalidate_rcu_protected_refs()`,
//! sleep.rs).

use super::exec::{Flow, Machine};
use super::state::{Reg, State};
use super::{Step, Stop};

/// The four region kfuncs.
pub(crate) fn is_region_kfunc(name: &str) -> bool {
    matches!(name, "bpf_rcu_read_lock" | "bpf_rcu_read_unlock" | "bpf_preempt_disable" | "bpf_preempt_enable")
}

impl Machine<'_> {
    /// `bpf_rcu_read_lock` / `bpf_rcu_read_unlock` / `bpf_preempt_disable` / `bpf_preempt_enable`
    /// at `pc` (no arguments, no return value).
    pub(super) fn region_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Flow> {
        if !self.profile.res_spin_lock {
            return Err(Stop::Unsupported(format!(
                "kfunc {name}: 6.12's rcu / preempt rules (a boolean, nesting refused) are not modelled"
            )));
        }
        match name {
            "bpf_rcu_read_lock" => st.rcu += 1,
            "bpf_preempt_disable" => st.preempt += 1,
            "bpf_rcu_read_unlock" if st.rcu == 0 => {
                return self.reject(pc, format!("unmatched rcu read unlock (kernel function {name})"))
            }
            "bpf_preempt_enable" if st.preempt == 0 => {
                return self
                    .reject(pc, format!("unmatched attempt to enable preemption (kernel function {name})"))
            }
            "bpf_rcu_read_unlock" => {
                st.rcu -= 1;
                // invalidate_rcu_protected_refs(): 7.2 when the count drops to 0, whatever the
                // program; 7.3 where that leaves the RCU critical section (`in_rcu_cs()`).
                let out =
                    if self.profile.sleep.rcu_cs_all_regions { !self.in_rcu_cs(st) } else { st.rcu == 0 };
                if out {
                    self.invalidate_rcu_protected_refs(st);
                }
            }
            _ => {
                st.preempt -= 1;
                // 7.3 only: the end of a non-preemptible region may leave the RCU CS.
                if self.profile.sleep.rcu_cs_all_regions && !self.in_rcu_cs(st) {
                    self.invalidate_rcu_protected_refs(st);
                }
            }
        }
        let cur = st.cur();
        for r in 0..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        Ok(Flow::Next(pc + 1))
    }

    /// The IRQ, RCU and preemption checks of `check_resource_leak(env, .., check_lock = true,
    /// prefix)`, which follow its lock and reference checks.
    pub(super) fn region_leak(&self, st: &State, pc: usize, prefix: &str) -> Step<()> {
        let region = if !st.irq.is_empty() {
            "bpf_local_irq_save"
        } else if st.rcu > 0 {
            "bpf_rcu_read_lock"
        } else if st.preempt > 0 {
            "bpf_preempt_disable"
        } else {
            return Ok(());
        };
        self.reject(pc, format!("{prefix} cannot be used inside {region}-ed region"))
    }
}
