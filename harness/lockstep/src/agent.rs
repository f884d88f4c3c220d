//! `lockstep agent`: the guest side, run as `/init` of the initramfs (the binary is static).
//!
//! Mounts proc/sys/dev/bpffs, loads the test module shipped at
//! [`lockstep_vm::initramfs::MODULE_PATH`] (if any) and then the modules under
//! [`lockstep_vm::initramfs::EXTRA_MODULES_DIR`] (the kernel tree's `bpf_testmod`), reads vmlinux
//! and module BTF once
//! ([`lockstep_bpf::Loader`]), says `Hello` on the control port, then answers each `Run` with the
//! kernel's verdict (and `ListKfuncs` with the kernel's kfuncs) until `Shutdown`, and powers the
//! guest off. Results are written in batches while more cases wait ([`lockstep_vm::outbox`]),
//! the lines read are decoded ahead of their turn ([`next_message`]), and the cases run at a
//! real-time priority ([`lockstep_vm::agent_io::CASE_LOOP_PRIORITY`]). Nothing is written to
//! disk.
//!
//! The loaders are never dropped: the guest powers off right after the last case, and dropping
//! a loader closes the BTF objects and maps it kept across cases one by one, each freed by the
//! kernel (50-60 ms of guest time between the host's `Shutdown` and QEMU's exit, on the path of
//! every guest; docs/speed.md, session 19). The power-off frees them all at once. For the same
//! reason the loaders leave accepted programs loaded ([`Loader::set_kept_programs`]).

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use lockstep_bpf::phase::{self, Phase};
use lockstep_bpf::Loader;
use lockstep_core::proto::{GuestMsg, HostMsg, KernelResult, ModuleStatus, PROTOCOL_VERSION};
use lockstep_core::verdict::Verdict;
use lockstep_vm::outbox::{HostLines, Outbox};
use lockstep_vm::{agent_io, initramfs, stream};

/// Runs the agent and powers off; never returns when running as pid 1. Anywhere but pid 1 of a
/// lockstep guest ([`agent_io::check_lockstep_guest`]) it touches nothing and exits 2.
pub fn main() -> ! {
    if let Err(e) = agent_io::check_lockstep_guest() {
        eprintln!("lockstep agent: {e}");
        std::process::exit(crate::exit::EXIT_BAD_INPUT.into());
    }
    match serve() {
        // The host ends QEMU once it has read `Bye` and the console's last line: the pause lets
        // the kernel's console printer, which the case loop's real-time priority kept waiting,
        // print that line (agent_io::mark_console_done).
        Ok(()) => std::thread::sleep(POWER_OFF_AFTER_BYE),
        Err(e) => eprintln!("lockstep agent: {e}"),
    }
    agent_io::power_off()
}

/// How long the agent waits after `Bye` before it powers off (the host usually ends QEMU
/// within a few milliseconds of `Bye`; if it does not, the guest powers off as before, this
/// much later).
const POWER_OFF_AFTER_BYE: std::time::Duration = std::time::Duration::from_millis(20);

/// The agent's last words, in the order the host relies on: everything held written, the
/// profile's report, the console's last line ([`agent_io::mark_console_done`]), then `Bye`.
pub fn say_bye(out: &Outbox) -> io::Result<()> {
    out.flush()?;
    crate::agent_profile::print_report();
    agent_io::mark_console_done();
    out.send(&GuestMsg::Bye)
}

/// The module to load: `/lockstep/module.ko` when the host shipped one.
fn load_test_module() -> ModuleStatus {
    let path = Path::new("/").join(initramfs::MODULE_PATH);
    if !path.exists() {
        return ModuleStatus::Absent;
    }
    lockstep_bpf::load_module(&path)
}

/// Loads every `/lockstep/modules/*.ko` the host shipped, sorted by file name.
fn load_extra_modules() -> Vec<ModuleStatus> {
    let dir = Path::new("/").join(initramfs::EXTRA_MODULES_DIR);
    let mut kos: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ko")).collect())
        .unwrap_or_default();
    kos.sort();
    kos.iter().map(|ko| lockstep_bpf::load_module(ko)).collect()
}

fn serve() -> io::Result<()> {
    agent_io::mount_basics()?;
    // Before any thread starts (the outbox's watchdog is the first): see `grow_fd_table`.
    if let Err(e) = agent_io::grow_fd_table(raise_nofile(NOFILE_WANTED)) {
        eprintln!("lockstep agent: growing the fd table: {e}");
    }
    let (reader, w) = agent_io::open_control_port()?;
    let mut host = HostLines::new(reader.into_inner());
    // Counted before any pinning (it is the calling thread's CPU count).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers > 1 {
        // The reader, the outbox's watchdog and the kernel's housekeeping share the first
        // worker's vCPU; the others stay idle until the host lets workers onto them.
        crate::agent_workers::pin_to(0);
        agent_io::housekeeping_to_cpu0();
    }
    let out = Outbox::new(w);
    let module = load_test_module();
    let extra_modules = load_extra_modules();
    for m in std::iter::once(&module).chain(&extra_modules) {
        if let ModuleStatus::Failed { name, error } = m {
            eprintln!("lockstep agent: module {name}: {error}");
        }
    }
    // Read BTF after the module is in, so its kfuncs resolve.
    let loader = new_loader(workers);
    if let Err(e) = &*loader {
        eprintln!("lockstep agent: {e}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let crash_case = crash_case_of(&cmdline);
    if agent_io::has_param(&cmdline, TIMERS_PARAM) {
        phase::enable();
    }
    if agent_io::has_param(&cmdline, crate::agent_profile::PROFILE_PARAM) {
        crate::agent_profile::start();
    }
    let hello = |release| GuestMsg::Hello {
        release,
        module: module.clone(),
        extra_modules: extra_modules.clone(),
        protocol: PROTOCOL_VERSION,
    };
    if workers > 1 {
        return crate::agent_workers::serve(workers, host, out, &loader, crash_case, &hello);
    }
    run_fifo_with_watchdog(&out, agent_io::CASE_LOOP_PRIORITY);
    out.send(&hello(agent_io::kernel_release()?))?;
    let mut ahead = VecDeque::new();
    while let Some(msg) = next_message(&mut host, &mut ahead)? {
        match msg {
            Ok(Some(HostMsg::Run { id, case, want_log })) => {
                out.start_case(id);
                if crash_case.as_deref() == Some(case.name.as_str()) {
                    crash_now(&case.name);
                }
                let result = match &*loader {
                    Ok(l) => l.run_case(&case, want_log),
                    Err(e) => no_loader(&case.name, e),
                };
                // Held back while the host has sent more (one write for several results).
                let usec = result.verification_usec;
                out.finish_case(GuestMsg::Result { id, result }, !ahead.is_empty() || host.ready())?;
                phase::mark(Phase::Result);
                if let Some(line) = phase::case_done(usec, TIMER_WINDOW) {
                    eprintln!("{line}");
                }
            }
            Ok(Some(HostMsg::ListKfuncs { id })) => {
                let listing = lockstep_bpf::kfuncs::list_kfuncs(
                    Path::new(lockstep_bpf::kfuncs::SYS_BTF),
                    loader.as_ref().ok(),
                );
                out.send(&GuestMsg::Kfuncs { id, listing })?;
            }
            Ok(Some(HostMsg::Ping)) => {
                // A guest restored from a snapshot: greet again (the release is read afresh).
                out.send(&hello(agent_io::kernel_release()?))?;
            }
            Ok(Some(HostMsg::Shutdown)) => return say_bye(&out),
            // One vCPU: one worker whatever the host asks.
            Ok(Some(HostMsg::Workers { .. })) | Ok(None) => {}
            Err(BadLine { error, run_id }) => {
                // Answer a `Run` that did not decode, so the host does not wait for it.
                eprintln!("lockstep agent: bad line from host: {error}");
                if let Some(id) = run_id {
                    let result = no_loader("?", &format!("the agent could not decode the case: {error}"));
                    out.send(&GuestMsg::Result { id, result })?;
                }
            }
        }
    }
    out.flush()
}

/// Puts the calling thread at real-time priority `priority` ([`agent_io::CASE_LOOP_PRIORITY`]
/// for the thread that runs the cases, above it for one that hands cases out) and the outbox's
/// watchdog above the case loop, so it still reports a long case while one runs. A failure is
/// printed, and the agent goes on as it is.
pub(crate) fn run_fifo_with_watchdog(out: &Outbox, priority: i32) {
    let raised = match out.watchdog_tid() {
        0 => Err(io::Error::other("the watchdog's thread id is unknown")),
        tid => agent_io::run_fifo(tid, agent_io::ABOVE_CASE_LOOP_PRIORITY)
            .and_then(|()| agent_io::run_fifo(0, priority)),
    };
    if let Err(e) = raised {
        eprintln!("lockstep agent: real-time priority: {e}");
    }
}

/// A host line that did not decode: why, and the id of the `Run` it was if that can be read (to
/// answer it).
struct BadLine {
    error: String,
    run_id: Option<u64>,
}

/// One host line decoded.
type Decoded = Result<Option<HostMsg>, BadLine>;

/// Decodes one host line (without its `\n`).
fn decode(line: &[u8]) -> Decoded {
    stream::decode_host_bytes(line)
        .map_err(|e| BadLine { error: e.to_string(), run_id: stream::run_id(line) })
}

/// The next message from the host, in order: one decoded ahead if any, else the next line (read,
/// waiting for the host if need be) and then every whole line that read brought, all decoded in a
/// row into `ahead`. Measured under TCG (docs/speed.md, session 22): one case's decode between
/// two loads took 80 us after a rejected program and 125-130 us after an accepted one (1.4 us
/// natively); decoded one after another they take 45-47 us each (the first after a read of the
/// port still 220-360 us). Most likely QEMU's software TLB and jump cache: what a load runs
/// evicts the decode's code and data, and an accepted program's JIT (`text_poke` switches page
/// tables) flushes the whole TLB. None at the end of the stream.
fn next_message(host: &mut HostLines, ahead: &mut VecDeque<Decoded>) -> io::Result<Option<Decoded>> {
    if let Some(m) = ahead.pop_front() {
        phase::mark(Phase::Wait);
        phase::mark(Phase::Decode);
        return Ok(Some(m));
    }
    let Some(line) = host.next_line()? else { return Ok(None) };
    phase::mark(Phase::Wait);
    let first = decode(line);
    while let Some(line) = host.buffered_line() {
        ahead.push_back(decode(line));
    }
    phase::mark(Phase::Decode);
    Ok(Some(first))
}

/// A loader (vmlinux and module BTF read) for one of `workers` workers, its share of the fds
/// kept across cases set; never dropped (see the module docs).
pub(crate) fn new_loader(workers: usize) -> std::mem::ManuallyDrop<Result<Loader, String>> {
    let mut loader = Loader::new().map_err(|e| e.to_string());
    if let Ok(l) = &mut loader {
        // Half the fds for BTF objects and maps kept across cases, a quarter for accepted
        // programs left loaded, the rest for the case's own.
        let nofile = raise_nofile(NOFILE_WANTED).min(NOFILE_WANTED as usize);
        l.set_kept_fds(nofile / 2 / workers);
        l.set_kept_programs(nofile / 4 / workers);
    }
    std::mem::ManuallyDrop::new(loader)
}

/// The kernel parameter naming a case the agent crashes the kernel at (sysrq `c`) instead of
/// running it: for the fault tests (`harness/lockstep/tests/faults.rs`, `--append`), which need a
/// case that kills its guest. Nothing else sets it.
const CRASH_CASE_PARAM: &str = "lockstep.test_crash_case=";

/// The case named by [`CRASH_CASE_PARAM`] in the kernel command line `cmdline`, if any.
fn crash_case_of(cmdline: &str) -> Option<String> {
    cmdline.split_whitespace().find_map(|w| w.strip_prefix(CRASH_CASE_PARAM)).map(str::to_string)
}

/// Crashes the kernel (the fault tests' [`CRASH_CASE_PARAM`]).
pub(crate) fn crash_now(case: &str) {
    eprintln!("lockstep agent: crashing the kernel at case {case} ({CRASH_CASE_PARAM})");
    let _ = std::fs::write("/proc/sysrq-trigger", "c");
}

/// The kernel parameter that turns the agent's per-phase timers on ([`lockstep_bpf::phase`]):
/// means per case over every [`TIMER_WINDOW`] cases, printed on the console.
const TIMERS_PARAM: &str = "lockstep.timers=1";
/// Cases per line of the timers.
const TIMER_WINDOW: u64 = 500;

/// The fds the agent asks for (`RLIMIT_NOFILE`): pid 1 starts with a soft limit of 1024.
const NOFILE_WANTED: u64 = 8192;

/// Raises `RLIMIT_NOFILE` to `want` (soft and hard; the agent is root), else the soft limit to
/// the hard one; the soft limit in force after.
fn raise_nofile(want: u64) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_err() {
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft as usize)
}

/// The result of every case when BTF could not be read: a setup error, not a verdict.
pub(crate) fn no_loader(case: &str, error: &str) -> KernelResult {
    KernelResult {
        case: case.to_string(),
        verdict: Verdict::unsupported(format!("setup error: {error}")),
        errno: 0,
        log: None,
        verification_usec: None,
        insns_processed: None,
        setup_error: Some(error.to_string()),
        test_run: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_case_comes_only_from_its_own_parameter() {
        assert_eq!(
            crash_case_of("console=ttyS0 lockstep.test_crash_case=boom quiet\n").as_deref(),
            Some("boom")
        );
        assert_eq!(crash_case_of("console=ttyS0 xlockstep.test_crash_case=boom"), None);
        assert_eq!(crash_case_of(""), None);
    }
}
