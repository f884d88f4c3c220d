//! A transport-only guest agent for lockstep-vm's own tests, run as `/init`.
//!
//! It mounts, opens the control port, says `Hello` with `uname -r`, answers each `Run` with a
//! placeholder result that claims no verdict (`setup_error` says so, verdict `unsupported`), and
//! powers off on `Shutdown`. Two case names exercise failure handling: `lockstep-test:panic`
//! crashes the kernel (sysrq `c`), `lockstep-test:hang` never answers.
//!
//! Build it static: `RUSTFLAGS='-C target-feature=+crt-static' cargo build -p lockstep-vm
//! --no-default-features --example lockstep-test-agent --target x86_64-unknown-linux-gnu`.

use std::io::{self, BufRead};

use lockstep_core::proto::{GuestMsg, HostMsg, KernelResult, ModuleStatus};
use lockstep_core::verdict::Verdict;
use lockstep_vm::{agent_io, stream};

fn main() {
    if let Err(e) = run() {
        eprintln!("lockstep-test-agent: {e}");
    }
    agent_io::power_off();
}

fn run() -> io::Result<()> {
    agent_io::mount_basics()?;
    let (reader, mut w) = agent_io::open_control_port()?;
    let release = agent_io::kernel_release()?;
    agent_io::send(
        &mut w,
        &GuestMsg::Hello {
            release,
            module: ModuleStatus::Absent,
            extra_modules: Vec::new(),
            protocol: lockstep_core::proto::PROTOCOL_VERSION,
        },
    )?;
    for line in reader.split(b'\n') {
        let line = line?;
        match stream::decode_host_bytes(&line) {
            Ok(Some(HostMsg::Run { id, case, .. })) => {
                match case.name.as_str() {
                    "lockstep-test:panic" => {
                        let _ = std::fs::write("/proc/sysrq-trigger", "c");
                    }
                    "lockstep-test:hang" => loop {
                        std::thread::sleep(std::time::Duration::from_secs(3600));
                    },
                    _ => {}
                }
                let result = KernelResult {
                    case: case.name.clone(),
                    verdict: Verdict::unsupported("transport test agent: nothing was loaded"),
                    errno: 0,
                    log: None,
                    verification_usec: None,
                    insns_processed: None,
                    setup_error: Some("transport test agent: no verdict".into()),
                    test_run: None,
                };
                agent_io::send(&mut w, &GuestMsg::Result { id, result })?;
            }
            Ok(Some(HostMsg::ListKfuncs { id })) => {
                let listing = lockstep_core::proto::KfuncListing {
                    warnings: vec!["transport test agent: no BTF was read".into()],
                    ..Default::default()
                };
                agent_io::send(&mut w, &GuestMsg::Kfuncs { id, listing })?;
            }
            Ok(Some(HostMsg::Ping)) => {
                let release = agent_io::kernel_release()?;
                agent_io::send(
                    &mut w,
                    &GuestMsg::Hello {
                        release,
                        module: ModuleStatus::Absent,
                        extra_modules: Vec::new(),
                        protocol: lockstep_core::proto::PROTOCOL_VERSION,
                    },
                )?;
            }
            Ok(Some(HostMsg::Shutdown)) => {
                agent_io::send(&mut w, &GuestMsg::Bye)?;
                return Ok(());
            }
            // One worker whatever the host asks.
            Ok(Some(HostMsg::Workers { .. })) | Ok(None) => {}
            Err(e) => eprintln!("lockstep-test-agent: bad line: {e}"),
        }
    }
    Ok(())
}
