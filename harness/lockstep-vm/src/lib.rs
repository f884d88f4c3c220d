//! Kernels and guests for lockstep: fetch Debian kernels, build an initramfs, boot it under QEMU,
//! and talk to the guest agent over a virtio-serial control port.
//!
//! # Host side (feature `host`, on by default)
//! - [`debian`]: [`debian::KernelCache`] fetches `debian:6.12`, `debian:7.2`, `debian:7.3` with a
//!   private apt configuration into `~/.cache/lockstep/kernels/` (`fetch`, `list`, `lookup`).
//! - [`initramfs`]: [`initramfs::build`] writes a newc cpio with `/init` and an optional
//!   `/lockstep/module.ko`.
//! - [`qemu`]: [`qemu::QemuArgs`], the command line as data; [`qemu::Accel`].
//! - [`guest`]: [`guest::GuestRun`] (one guest: `start`, `wait_hello`, `run_case`, `shutdown`),
//!   [`guest::batch::run_batch`] (many cases, crash-resilient, streaming), and
//!   [`guest::kvm::probe_kvm`] (does KVM really work here? cached per machine).
//! - [`interrupt`]: SIGINT/SIGTERM recorded as a flag the guest runner polls (QEMU stopped, results kept).
//! - [`console`]: console scanning (panic / Oops / BUG / WARNING markers, excerpts).
//!
//! # Guest side (always built)
//! - [`agent_io`]: mounts, `open_control_port`, `send`, `power_off` for the static `/init` agent.
//!   An agent crate depends on `lockstep-vm` with `default-features = false`.
//! - [`stream`]: line framing of [`lockstep_core::proto`] messages, both directions (a `Run` and
//!   a `Result` binary, the others JSON).
//!
//! # Wiring a CLI (sketch)
//! ```no_run
//! use lockstep_vm::debian::{FetchParts, KernelCache};
//! use lockstep_vm::guest::{batch::{run_batch, BatchEvent, BatchOptions}, kvm::probe_kvm, GuestConfig};
//! use lockstep_vm::initramfs::{self, InitramfsSpec};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let cases: Vec<lockstep_core::case::Case> = vec![];
//! let cache = KernelCache::open_default()?; // no HOME, XDG_CACHE_HOME or LOCKSTEP_CACHE: an error
//! let k = cache.fetch("debian:7.3", FetchParts::default(), &|p| eprintln!("{p:?}"))?;
//! let initrd = cache.root().join("initramfs-agent.cpio");
//! initramfs::build(&InitramfsSpec { init: "target/agent".into(), ..Default::default() }, &initrd)?;
//! let mut guest = GuestConfig::new(&k.vmlinuz, &initrd);
//! guest.console_log = Some("console.log".into());
//! guest.accel = probe_kvm(&guest, cache.root(), false).accel; // falls back to TCG
//! let opts = BatchOptions { guest, want_log: false, boot_attempts: 3 };
//! let summary = run_batch(&cases, &opts, &mut |ev| {
//!     if let BatchEvent::Result { index, result, .. } = ev { println!("{index}: {:?}", result.verdict) }
//! })?;
//! # Ok(()) }
//! ```
//! Expectations: Hello's `release` equals [`debian::KernelRef::release`]; a case that crashes the
//! kernel twice is [`guest::batch::BatchEvent::Crashed`], never a verdict.

pub mod affinity;
pub mod agent_io;
pub mod outbox;
mod readable;
pub mod stream;

#[cfg(feature = "host")]
pub mod cache_root;
#[cfg(feature = "host")]
pub mod console;
#[cfg(feature = "host")]
pub mod debian;
#[cfg(feature = "host")]
pub mod digest;
#[cfg(feature = "host")]
pub mod guest;
#[cfg(feature = "host")]
pub mod initramfs;
#[cfg(feature = "host")]
pub mod interrupt;
#[cfg(feature = "host")]
pub mod kbuild;
#[cfg(feature = "host")]
pub mod kernel;
#[cfg(feature = "host")]
pub mod local_kernel;
#[cfg(feature = "host")]
pub mod qemu;
