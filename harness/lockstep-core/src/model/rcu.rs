//! RCU read-lock and preemption regions as the lock rules see them (7.2, 7.3: the counters
//! `active_rcu_locks` / `active_preempt_locks` of `check_kfunc_call()`; 6.12 keeps a boolean
//! `active_rcu_lock` and refuses nesting: not modelled there). `bpf_rcu_read_unlock` /
//! `bpf_preempt_enable` without a matching lock are refused; a main exit, `bpf_throw` or a tail
//! call inside a region meets `check_resource_leak()` (after the lock, reference and IRQ checks,
//! in this order: IRQ, RCU, preemption). What RCU protects (`MEM_RCU` pointers,
//! `invalidate_rcu_protected_refs()`) is not modelled.

use super::exec::{Flow, Machine};
use super::state::{Reg, State, Trust};
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
                // invalidate_rcu_protected_refs() turns MEM_RCU pointers PTR_UNTRUSTED: 7.2 when
                // the count drops to 0, 7.3 only outside any RCU section (never in a
                // non-sleepable program). Not modelled: refused while one is live.
                let mut rcu_live = false;
                st.for_each_reg(|r| rcu_live |= matches!(r, Reg::Kernel { trust: Trust::Rcu, .. }));
                if rcu_live {
                    return Err(Stop::Unsupported(format!(
                        "{name} with a MEM_RCU pointer live (invalidate_rcu_protected_refs()) is not modelled"
                    )));
                }
                st.rcu -= 1
            }
            _ => st.preempt -= 1,
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
