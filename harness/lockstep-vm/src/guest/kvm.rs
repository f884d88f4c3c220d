//! Whether KVM really works here: `/dev/kvm` may exist and still fail on the first unusual
//! instruction ("KVM internal error", e.g. a software virtualisation module), so the probe boots a
//! real guest under KVM and waits for the agent's `Hello`. The answer is cached per machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{GuestConfig, GuestOutcome, GuestRun};
use crate::qemu::Accel;

/// The result of a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmProbe {
    pub accel: Accel,
    /// Why (e.g. the failure when KVM was rejected).
    pub reason: String,
    /// Whether this came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

/// The cache key of this machine: host name and host kernel release.
pub fn machine_key(hostname: &str, release: &str) -> String {
    format!("{}/{}", hostname.trim(), release.trim())
}

fn this_machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    machine_key(&read("/proc/sys/kernel/hostname"), &read("/proc/sys/kernel/osrelease"))
}

/// Probes KVM by booting `cfg` (kernel + an initramfs whose agent says `Hello`) under KVM, with
/// `cfg.timeouts.boot` capped at 60 s. Cached in `<cache_dir>/kvm-probe.json`; `force` re-probes.
pub fn probe_kvm(cfg: &GuestConfig, cache_dir: &Path, force: bool) -> KvmProbe {
    let file = cache_dir.join("kvm-probe.json");
    let key = this_machine();
    let mut all: BTreeMap<String, KvmProbe> =
        std::fs::read_to_string(&file).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    if !force {
        if let Some(p) = all.get(&key) {
            return KvmProbe { cached: true, ..p.clone() };
        }
    }
    let p = run_probe(cfg);
    if crate::interrupt::pending().is_some() {
        // Cut short by SIGINT/SIGTERM: no answer worth remembering.
        return p;
    }
    all.insert(key, p.clone());
    let _ = std::fs::create_dir_all(cache_dir);
    if let Ok(t) = serde_json::to_string_pretty(&all) {
        let _ = std::fs::write(&file, t);
    }
    p
}

fn run_probe(cfg: &GuestConfig) -> KvmProbe {
    let tcg = |reason: String| KvmProbe { accel: Accel::Tcg, reason, cached: false };
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return tcg("/dev/kvm cannot be opened read-write".into());
    }
    let mut cfg = cfg.clone();
    cfg.accel = Accel::Kvm;
    cfg.timeouts.boot = cfg.timeouts.boot.min(Duration::from_secs(60));
    let mut g = match GuestRun::start(&cfg) {
        Ok(g) => g,
        Err(e) => return tcg(format!("QEMU with KVM did not start: {e}")),
    };
    match g.wait_hello() {
        Ok(h) => {
            let _ = g.shutdown();
            KvmProbe {
                accel: Accel::Kvm,
                reason: format!("guest booted under KVM in {:.1}s", h.boot_time.as_secs_f64()),
                cached: false,
            }
        }
        Err(GuestOutcome::KvmFailure { excerpt }) => {
            tcg(format!("KVM internal error: {}", first_lines(&excerpt, 3)))
        }
        Err(o) => tcg(format!("guest did not boot under KVM: {}", first_lines(&format!("{o:?}"), 3))),
    }
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_cache_format() {
        assert_eq!(machine_key("host\n", "6.1.0-30-amd64\n"), "host/6.1.0-30-amd64");
        let t = tempfile::tempdir().unwrap();
        let p = KvmProbe { accel: Accel::Tcg, reason: "x".into(), cached: false };
        let mut m = BTreeMap::new();
        m.insert(this_machine(), p);
        std::fs::write(t.path().join("kvm-probe.json"), serde_json::to_string(&m).unwrap()).unwrap();
        // A cached answer is returned without booting anything (the config points nowhere).
        let got = probe_kvm(&GuestConfig::new("/nonexistent", "/nonexistent"), t.path(), false);
        assert_eq!((got.accel, got.cached), (Accel::Tcg, true));
    }
}
