//! Pipelined cases: the host sends the next cases before the previous result arrives, so the
//! agent always has work queued and the control-port round trip overlaps the kernel's work.
//!
//! The agent answers in order, so the first unanswered case is the one the guest was running
//! when it died; [`GuestRun::run_cases`] reports that case with the guest's outcome.

use std::time::Instant;

use lockstep_core::case::Case;
use lockstep_core::proto::{GuestMsg, HostMsg};

use super::{case_limit, CaseReply, GuestOutcome, GuestRun, Limit, Stage};

/// Cases in flight by default: enough to hide the round trip, few enough that a crash loses
/// little queued work (the cases after the crashing one are sent again to the next guest).
pub const DEFAULT_WINDOW: usize = 8;

/// The case without what the agent never reads (source text, expectations, description, tags):
/// less JSON to encode, carry and decode under TCG.
pub fn for_guest(case: &Case) -> Case {
    Case {
        text: String::new(),
        // Kept where the agent reads it: `__msg` patterns ask for the verifier log back.
        expect: if case.expect.values().any(|e| !e.msgs.is_empty()) {
            case.expect.clone()
        } else {
            Default::default()
        },
        description: None,
        tags: Vec::new(),
        ..case.clone()
    }
}

impl GuestRun {
    /// Runs `cases` in order with up to `window` of them sent ahead, handing each reply (with
    /// its index into `cases`) to `on_reply` as it arrives. Each case's time limit ([`case_limit`])
    /// runs from the previous reply. On the guest's end: `Err((index of the unanswered case, outcome))`.
    pub fn run_cases(
        &mut self,
        cases: &[Case],
        want_log: bool,
        window: usize,
        on_reply: &mut dyn FnMut(usize, CaseReply),
    ) -> Result<(), (usize, GuestOutcome)> {
        let window = window.max(1);
        let first_id = self.next_id;
        self.next_id += cases.len() as u64;
        let (mut sent, mut done) = (0usize, 0usize);
        self.scanner.take_warnings();
        let mut since = Instant::now();
        while done < cases.len() {
            while sent < cases.len() && sent - done < window {
                let id = first_id + sent as u64;
                let msg = HostMsg::Run { id, case: Box::new(for_guest(&cases[sent])), want_log };
                let stage = Stage::Case { id: first_id + done as u64 };
                self.send(&msg, stage).map_err(|o| (done, o))?;
                sent += 1;
            }
            let id = first_id + done as u64;
            let limit = case_limit(self.timeouts.case, self.timeouts.scale_case, &cases[done], want_log);
            let result = self
                .wait_for(since + limit, Limit::Case, Stage::Case { id }, |m| match m {
                    GuestMsg::Result { id: rid, result } if rid == id => Some(result),
                    _ => None,
                })
                .map_err(|o| (done, o))?;
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
