//! Parsing the verifier log (log_level 1): the error line, the instruction it belongs to, and the
//! statistics lines. Pure: no I/O.

/// What a verifier log says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedLog {
    /// The error line: the first line after the last instruction line (and its state lines)
    /// that is not a state dump, a source line or a statistics line. For an error found before
    /// the main pass (no instruction line), the first such line of the log.
    pub error: Option<String>,
    /// The N of the last `N: (xx) ...` instruction line before the error (None if none).
    pub insn: Option<usize>,
    /// `processed N insns`.
    pub insns_processed: Option<u64>,
    /// `verification time N usec`.
    pub verification_usec: Option<u64>,
    /// The non-noise lines from the error line to the end (the error and what follows it, e.g.
    /// the structured "Verification failed" block of newer kernels), statistics excluded.
    pub tail: Vec<String>,
}

/// If `line` is an instruction line `N: (xx) ...`, its N.
pub fn insn_line_index(line: &str) -> Option<usize> {
    let (num, rest) = line.split_once(": (")?;
    let n: usize = num.parse().ok()?;
    let b = rest.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_hexdigit() && b[1].is_ascii_hexdigit() && b[2] == b')').then_some(n)
}

/// Statistics lines printed after verification.
fn is_stats(line: &str) -> bool {
    line.starts_with("processed ")
        || line.starts_with("verification time ")
        || line.starts_with("stack depth ")
}

/// Lines that never carry the error: state dumps, source lines, branch/call bookkeeping.
fn is_noise(line: &str) -> bool {
    let t = line.trim_end();
    if t.is_empty() || t.starts_with(' ') || t.starts_with('\t') || t.starts_with("; ") {
        return true;
    }
    if is_stats(t) {
        return true;
    }
    // "N: R1=..." / "N: frame1: ..." / "N: safe": state at an instruction, not an instruction.
    if let Some((num, _)) = t.split_once(": ") {
        if num.parse::<usize>().is_ok() && insn_line_index(t).is_none() {
            return true;
        }
    }
    // "from 4 to 6: R0=..." (branch state), "func#0 @0".
    if t.starts_with("from ") && t.contains(" to ") && t.contains(':') {
        return true;
    }
    if t.starts_with("func#") {
        return true;
    }
    matches!(t, "caller:" | "callee:" | "returning from callee:")
        || t.starts_with("to caller at ")
        || (t.starts_with("Func#") && t.ends_with("is global and assumed valid."))
        // do_check_subprogs(): a global subprog verified on its own (not an error).
        || (t.starts_with("Func#") && t.contains("is safe for any args"))
        || t.starts_with("Validating ")
        || t.starts_with("mark_precise: ")
        || t.starts_with("Live regs before insn:")
}

fn number_after(line: &str, prefix: &str) -> Option<u64> {
    let rest = line.strip_prefix(prefix)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Parses a verifier log (see [`ParsedLog`]).
pub fn parse_verifier_log(log: &str) -> ParsedLog {
    // Some errors are printed without a newline ("insn 3 cannot call exception cb directly", 7.3's
    // check_cfg()), so the statistics that follow share their line: split them off.
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .flat_map(|l| match l.find("verification time ") {
            Some(i) if i > 0 => vec![&l[..i], &l[i..]],
            _ => vec![l],
        })
        .collect();
    let mut out = ParsedLog::default();
    for l in &lines {
        if let Some(n) = number_after(l, "processed ") {
            out.insns_processed = Some(n);
        }
        if let Some(n) = number_after(l, "verification time ") {
            out.verification_usec = Some(n);
        }
    }
    let last_insn = lines.iter().rposition(|l| insn_line_index(l).is_some());
    out.insn = last_insn.and_then(|i| insn_line_index(lines[i]));
    let start = last_insn.map_or(0, |i| i + 1);
    let err = (start..lines.len()).find(|&i| !is_noise(lines[i]));
    if let Some(e) = err {
        out.error = Some(lines[e].trim_end().to_string());
        out.tail = lines[e..].iter().filter(|l| !is_noise(l)).map(|l| l.trim_end().to_string()).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_lines() {
        assert_eq!(insn_line_index("12: (85) call bpf_spin_lock#93"), Some(12));
        assert_eq!(insn_line_index("12: R1=ctx()"), None);
        assert_eq!(insn_line_index("from 1 to 3: (85)"), None);
        assert_eq!(insn_line_index("7: (18) r1 = 0xffff"), Some(7));
    }

    #[test]
    fn accepted_log_has_no_error() {
        let p = parse_verifier_log(
            "0: R1=ctx() R10=fp0\n0: (b7) r0 = 0                        ; R0_w=0\n\
             1: (95) exit\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 \
             total_states 0 peak_states 0 mark_read 0\n",
        );
        assert_eq!(p.error, None);
        assert_eq!(p.insn, Some(1));
        assert_eq!(p.insns_processed, Some(2));
    }

    #[test]
    fn structured_block_after_error_is_not_the_error() {
        let p = parse_verifier_log(
            "3: (85) call bpf_get_prandom_u32#7\n\
             function calls are not allowed while holding a lock\n\
             processed 4 insns (limit 1000000)\n\
             Verification failed: something\nSuggestion: something else\n",
        );
        assert_eq!(p.error.as_deref(), Some("function calls are not allowed while holding a lock"));
        assert_eq!(p.insn, Some(3));
        assert_eq!(p.tail.len(), 3);
    }

    /// debian:7.3 (7.3.4-1~bpo13+1), `exceptions_fail.bpf.o` `reject_throwing_exception_cb`: the
    /// global exception callback verified first ("is safe for any args") is not the error.
    #[test]
    fn a_verified_global_subprog_is_not_the_error() {
        let log = "Func#1 ('throwing_exception_cb') is safe for any args that match its prototype\n\
                   bpf_throw kfunc (insn 4) cannot be called from callback subprog 1\n\
                   verification time 2526 usec\n\
                   stack depth max 0\n\
                   processed 5 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        let p = parse_verifier_log(log);
        assert_eq!(
            p.error.as_deref(),
            Some("bpf_throw kfunc (insn 4) cannot be called from callback subprog 1")
        );
        assert_eq!(p.verification_usec, Some(2526));
    }

    /// debian:7.3, `exceptions_fail.bpf.o` `reject_exception_cb_call_global_func`: the error has no
    /// newline, the statistics go on on its line.
    #[test]
    fn an_error_without_its_newline_is_split_from_the_statistics() {
        let log = "Func#2 ('exception_cb1') is safe for any args that match its prototype\n\
                   insn 3 cannot call exception cb directlyverification time 3231 usec\n\
                   stack depth max 0\n\
                   processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        let p = parse_verifier_log(log);
        assert_eq!(p.error.as_deref(), Some("insn 3 cannot call exception cb directly"));
        assert_eq!(p.verification_usec, Some(3231));
        assert_eq!(p.insns_processed, Some(7));
    }
}
