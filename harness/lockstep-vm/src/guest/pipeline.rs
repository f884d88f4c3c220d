//! Pipelined cases: the host sends the next cases before the previous result arrives, so the
//! agent always has work queued and the control-port round trip overlaps the kernel's work.
//!
//! The agent answers in order but writes its results in batches ([`crate::outbox`]): while more
//! cases wait it holds finished results back, up to 16 of them, and writes them in one syscall.
//! So when the guest dies, the first unanswered case is the one that killed it only when it was
//! the only case in flight, or when the agent said it was running it ([`GuestMsg::Busy`], after
//! writing every result before it); otherwise finished cases may be among the unanswered ones,
//! and [`GuestRun::run_cases`] says so ([`Stopped::exact`]): the caller runs them again one at a
//! time (`guest::batch`).

use std::time::Instant;

use lockstep_core::asm::{Program, Reloc};
use lockstep_core::case::Case;
use lockstep_core::proto::{GuestMsg, HostMsg};

use super::{case_limit, CaseReply, GuestOutcome, GuestRun, Limit, Stage};

/// Cases in flight by default: twice the agent's batch ([`crate::outbox::MAX_RESULTS`]), so
/// that while the host reads one batch of results and sends the next cases, the agent still has
/// a batch of cases to run. A crash costs at most these cases run again one at a time.
pub const DEFAULT_WINDOW: usize = 2 * crate::outbox::MAX_RESULTS;

/// How a guest stopped answering in [`GuestRun::run_cases`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Index (into the cases given) of the first unanswered case.
    pub index: usize,
    /// How the guest ended.
    pub outcome: GuestOutcome,
    /// Cases sent and unanswered (`index` and those after it).
    pub in_flight: usize,
    /// Whether case `index` is surely the one the guest was running: the only one in flight, or
    /// named by the agent's last message ([`GuestMsg::Busy`]). Otherwise cases of the
    /// `in_flight` may have finished with their results held back by the agent.
    pub exact: bool,
}

/// The case without what the agent never reads (source text, expectations, description, tags,
/// source lines): less JSON to encode, carry and decode under TCG. For a case the agent loads
/// itself (not a BPF object) also the relocations it skips (helper calls and bpf-to-bpf calls,
/// whose `imm` the assembler filled in) and the labels but those of subprogram starts (which
/// name the program BTF's functions, `lockstep_bpf::progbtf`): the `Run` decode is a large part
/// of the agent's own time per case (docs/speed.md, session 12).
pub fn for_guest(case: &Case) -> Case {
    let mut c = Case {
        text: String::new(),
        // Kept where the agent reads it: `__msg` patterns ask an object's verifier log back.
        expect: if case.object.is_some() && case.expect.values().any(|e| !e.msgs.is_empty()) {
            case.expect.clone()
        } else {
            Default::default()
        },
        description: None,
        tags: Vec::new(),
        program: Program {
            insns: case.program.insns.clone(),
            relocs: Default::default(),
            labels: Default::default(),
            lines: Vec::new(),
        },
        ..case.clone()
    };
    if case.object.is_some() {
        c.program.relocs = case.program.relocs.clone();
        c.program.labels = case.program.labels.clone();
    } else {
        // What only the model reads.
        c.file = String::new();
        c.extern_kfuncs = Vec::new();
        c.model_unsupported = None;
        c.program.relocs = case
            .program
            .relocs
            .iter()
            .filter(|(_, r)| !matches!(r, Reloc::Helper { .. } | Reloc::Subprog { .. }))
            .map(|(&i, r)| (i, r.clone()))
            .collect();
        let starts = case.program.subprog_starts();
        c.program.labels = case
            .program
            .labels
            .iter()
            .filter(|(i, _)| starts.binary_search(i).is_ok())
            .map(|(&i, l)| (i, l.clone()))
            .collect();
    }
    c
}

/// How many cases to send now, in one write, with `in_flight` sent and unanswered and `left`
/// not sent yet: none until the cases in flight fall to the window less one agent batch of
/// results ([`crate::outbox::MAX_RESULTS`], at most half the window), then as many as the window
/// holds. Refilled after every reply, the host wrote one case per result it read: per case a
/// wakeup of QEMU's main loop, an interrupt in the guest and a read of the agent.
fn to_send(window: usize, in_flight: usize, left: usize) -> usize {
    let low = window - (window / 2).clamp(1, crate::outbox::MAX_RESULTS);
    if in_flight > low {
        0
    } else {
        (window - in_flight).min(left)
    }
}

impl GuestRun {
    /// Runs `cases` in order with up to `window` of them sent ahead, handing each reply (with
    /// its index into `cases`) to `on_reply` as it arrives. Each case's time limit ([`case_limit`])
    /// runs from the previous reply. On the guest's end: `Err(`[`Stopped`]`)`.
    pub fn run_cases(
        &mut self,
        cases: &[Case],
        want_log: bool,
        window: usize,
        on_reply: &mut dyn FnMut(usize, CaseReply),
    ) -> Result<(), Stopped> {
        let window = window.max(1);
        let first_id = self.next_id;
        self.next_id += cases.len() as u64;
        let (mut sent, mut done) = (0usize, 0usize);
        self.scanner.take_warnings();
        let mut since = Instant::now();
        while done < cases.len() {
            let stopped = |s: &Self, done: usize, sent: usize, outcome: GuestOutcome| {
                let in_flight = sent.max(done + 1) - done;
                let exact = in_flight == 1 || s.busy == Some(first_id + done as u64);
                Stopped { index: done, outcome, in_flight, exact }
            };
            if let Err(o) = self.apply_workers(Stage::Case { id: first_id + done as u64 }) {
                return Err(stopped(self, done, sent, o));
            }
            let mut lines = Vec::new();
            for _ in 0..to_send(window, sent - done, cases.len() - sent) {
                let id = first_id + sent as u64;
                let msg = HostMsg::Run { id, case: Box::new(for_guest(&cases[sent])), want_log };
                lines.extend_from_slice(&crate::stream::encode_host(&msg));
                sent += 1;
            }
            if !lines.is_empty() {
                let stage = Stage::Case { id: first_id + done as u64 };
                if let Err(o) = self.send_lines(&lines, stage) {
                    return Err(stopped(self, done, sent, o));
                }
            }
            let id = first_id + done as u64;
            let limit = case_limit(self.timeouts.case, self.timeouts.scale_case, &cases[done], want_log);
            let result = match self.wait_for(since + limit, Limit::Case, Stage::Case { id }, |m| match m {
                GuestMsg::Result { id: rid, result } if rid == id => Some(result),
                _ => None,
            }) {
                Ok(r) => r,
                Err(o) => return Err(stopped(self, done, sent, o)),
            };
            let now = Instant::now();
            on_reply(
                done,
                CaseReply { result, warnings: self.scanner.take_warnings(), elapsed: now - since },
            );
            since = now;
            done += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_refilled_a_batch_at_a_time() {
        // The default window: all of it at the start, nothing while more than one batch is in
        // flight, then back to full in one write.
        let w = DEFAULT_WINDOW;
        assert_eq!(to_send(w, 0, 1000), w);
        assert_eq!(to_send(w, w - 1, 1000), 0);
        assert_eq!(to_send(w, w - crate::outbox::MAX_RESULTS + 1, 1000), 0);
        assert_eq!(to_send(w, w - crate::outbox::MAX_RESULTS, 1000), crate::outbox::MAX_RESULTS);
        assert_eq!(to_send(w, 3, 5), 5);
        assert_eq!(to_send(w, 0, 0), 0);
        // One case at a time (after a crash): the next once the previous answered.
        assert_eq!((to_send(1, 0, 10), to_send(1, 1, 10)), (1, 0));
        // A window of 2: one more whenever one is answered.
        assert_eq!((to_send(2, 0, 10), to_send(2, 1, 10), to_send(2, 2, 10)), (2, 1, 0));
    }

    #[test]
    fn the_guest_gets_no_source_lines() {
        let text = "r0 = 0\nexit\n";
        let program = lockstep_core::asm::assemble(text, &Default::default()).unwrap();
        assert!(!program.lines.is_empty());
        let c = Case::new("c", lockstep_core::case::ProgType::SocketFilter, program, text);
        let g = for_guest(&c);
        assert!(g.program.lines.is_empty() && g.text.is_empty());
        assert_eq!(g.program.insns, c.program.insns);
        let json = serde_json::to_string(&g).unwrap();
        assert!(!json.contains("\"lines\""), "{json}");
    }

    #[test]
    fn the_guest_gets_only_the_relocations_and_labels_the_agent_reads() {
        let text = "r1 = map[id:m]\ncall sub\nif r0 == 0 goto out\nr0 = 1\nout:\nexit\nsub:\n\
                    call bpf_get_prandom_u32\nexit\n";
        let mut syms = lockstep_core::asm::Symbols::default();
        syms.maps.push("m".into());
        let program = lockstep_core::asm::assemble(text, &syms).unwrap();
        let c = Case::new("c", lockstep_core::case::ProgType::SocketFilter, program, text);
        let g = for_guest(&c);
        assert_eq!(g.program.insns, c.program.insns);
        let kinds: Vec<_> = g.program.relocs.values().collect();
        assert!(matches!(kinds[..], [Reloc::Map { .. }]), "{kinds:?}");
        let labels: Vec<_> = g.program.labels.values().map(String::as_str).collect();
        assert_eq!(labels, ["sub"]);
        assert_eq!(g.program.subprog_starts(), c.program.subprog_starts());
    }
}
