//! Parsing the verifier log (log_level 1): the error line, the instruction it belongs to, and the
//! statistics lines. Pure: no I/O.

use std::borrow::Cow;

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
    let (n, rest) = number_prefix(line)?;
    let b = rest.strip_prefix(": (")?.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_hexdigit() && b[1].is_ascii_hexdigit() && b[2] == b')').then_some(n)
}

/// The number `line` starts with (what `usize::from_str` takes: an optional `+` and digits) and
/// the rest of the line. Read byte by byte: a `split_once(": ")` per line built a substring
/// searcher each time (session 14).
fn number_prefix(line: &str) -> Option<(usize, &str)> {
    let sign = usize::from(line.starts_with('+'));
    let end = sign + line[sign..].bytes().take_while(u8::is_ascii_digit).count();
    Some((line[..end].parse().ok()?, &line[end..]))
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
    if number_prefix(t).is_some_and(|(_, rest)| rest.starts_with(": ")) && insn_line_index(t).is_none() {
        return true;
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
    parse_verifier_log_bytes(log.as_bytes())
}

/// A line of the log as [`str::lines`] of its lossy UTF-8 text gives it, `\r`s at its end
/// trimmed. `\n` is never part of a multi-byte sequence, so converting line by line gives what
/// converting the whole log would.
fn text_line(raw: &[u8]) -> Cow<'_, str> {
    // The check alone first: a kernel's log is ASCII, and the lossy conversion's chunking costs
    // more per line.
    if let Ok(s) = std::str::from_utf8(raw) {
        return Cow::Borrowed(s.trim_end_matches('\r'));
    }
    // Not UTF-8: the lossy conversion is always an owned string here.
    Cow::Owned(String::from_utf8_lossy(raw).trim_end_matches('\r').to_string())
}

/// The lines of `log` from the last to the first, as [`str::lines`] gives them.
fn lines_backwards(log: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = log.len();
    // No empty line after a final newline.
    if log.last() == Some(&b'\n') {
        end -= 1;
    }
    let mut done = log.is_empty();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let start = match memchr::memrchr(b'\n', &log[..end]) {
            Some(i) => i + 1,
            None => {
                done = true;
                0
            }
        };
        let line = &log[start..end];
        end = start.saturating_sub(1);
        Some(line)
    })
}

/// The pieces of one line as the parse sees them: an error printed without its newline shares
/// its line with `verification time` (7.3's check_cfg(), "insn 3 cannot call exception cb
/// directly"), so that is split off. Last piece first; borrowed from the log where the line is.
/// `stats_at` finds `verification time ` (built once per log: `str::find` builds its searcher
/// for every line, which was a quarter of the parse with 7.3's diagnostic blocks).
fn pieces_backwards<'a>(
    line: Cow<'a, str>,
    stats_at: &memchr::memmem::Finder<'_>,
) -> impl Iterator<Item = Cow<'a, str>> {
    let (last, first) = match (stats_at.find(line.as_bytes()).filter(|&i| i > 0), line) {
        (None, line) => (line, None),
        (Some(i), Cow::Borrowed(l)) => (Cow::Borrowed(&l[i..]), Some(Cow::Borrowed(&l[..i]))),
        (Some(i), Cow::Owned(l)) => (Cow::Owned(l[i..].to_string()), Some(Cow::Owned(l[..i].to_string()))),
    };
    std::iter::once(last).chain(first)
}

/// [`parse_verifier_log`] of the log's bytes (what the kernel wrote, up to its NUL), read from
/// the end: the statistics, the last instruction line and the error are at the log's end, so an
/// accepted program's log is never converted or scanned whole. Gives exactly what a parse of
/// every line from the start gives (the last statistics lines, the last instruction line, the
/// first non-noise line after it): the lines before the last instruction line are read only for
/// statistics that are not after it.
pub fn parse_verifier_log_bytes(log: &[u8]) -> ParsedLog {
    let mut out = ParsedLog::default();
    let stats = |l: &str, out: &mut ParsedLog| {
        if out.insns_processed.is_none() {
            out.insns_processed = number_after(l, "processed ");
        }
        if out.verification_usec.is_none() {
            out.verification_usec = number_after(l, "verification time ");
        }
    };
    // The lines after the last instruction line, last first (borrowed from the log: no
    // `String` per line).
    let mut after: Vec<Cow<'_, str>> = Vec::new();
    let stats_at = memchr::memmem::Finder::new("verification time ");
    let mut lines = lines_backwards(log);
    'tail: for raw in lines.by_ref() {
        for piece in pieces_backwards(text_line(raw), &stats_at) {
            stats(&piece, &mut out);
            if let Some(n) = insn_line_index(&piece) {
                out.insn = Some(n);
                break 'tail;
            }
            after.push(piece);
        }
    }
    // Statistics before the last instruction line (none in a kernel's log: they come last).
    if out.insn.is_some() {
        for raw in lines {
            if out.insns_processed.is_some() && out.verification_usec.is_some() {
                break;
            }
            for piece in pieces_backwards(text_line(raw), &stats_at) {
                stats(&piece, &mut out);
            }
        }
    }
    after.reverse();
    if let Some(e) = after.iter().position(|l| !is_noise(l)) {
        out.error = Some(after[e].trim_end().to_string());
        out.tail = after[e..].iter().filter(|l| !is_noise(l)).map(|l| l.trim_end().to_string()).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse before it read from the end (session 11): every line from the start.
    fn parse_forward(log: &str) -> ParsedLog {
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

    #[test]
    fn reading_from_the_end_gives_what_reading_every_line_gives() {
        let logs = [
            "",
            "\n",
            "\n\n",
            "a",
            "a\n\n",
            "\r\n\r\r\n",
            "0: R1=ctx() R10=fp0\n0: (b7) r0 = 0 ; R0_w=0\n1: (95) exit\n\
             processed 2 insns (limit 1000000) max_states_per_insn 0\nverification time 5 usec\n",
            "processed 9 insns\n0: (b7) r0 = 0\n1: (95) exit\n",
            "verification time 7 usec\nprocessed 9 insns\n0: (b7) r0 = 0\nverification time 8 usec\n",
            "0: (b7) r0 = 0\r\n1: (85) call bpf_spin_lock#93\r\nR1 type=scalar expected=map_value\r\n\
             processed 2 insns\r\nverification time 12 usec\r\nstack depth 0\r\n",
            "Func#1 ('cb') is safe for any args that match its prototype\n\
             insn 3 cannot call exception cb directlyverification time 3231 usec\nstack depth max 0\n\
             processed 7 insns (limit 1000000)\n",
            "3: (85) call bpf_get_prandom_u32#7\nfunction calls are not allowed while holding a lock\n\
             processed 4 insns (limit 1000000)\nVerification failed: something\nSuggestion: x\n",
            "0: (b7) r0 = 0\n1: (95) exitverification time 3 usec\n2: safe\nfrom 1 to 3: R0=0\n\nerr \u{e9}\n",
            "processed x insns\nprocessed 5 insns\n7: (95) exit\nprocessed y insns\nverification time z\n",
            "no newline at the end",
        ];
        for log in logs {
            assert_eq!(parse_verifier_log(log), parse_forward(log), "{log:?}");
        }
        // Invalid UTF-8, converted lossily either way.
        let bad = b"0: (b7) r0 = 0\nbad \xff\xfe line\n\xc3\nprocessed 1 insns\n";
        assert_eq!(parse_verifier_log_bytes(bad), parse_forward(&String::from_utf8_lossy(bad)));
    }

    /// The number prefix reads what the `split_once` forms before it read.
    #[test]
    fn numbered_lines_read_as_split_once_read_them() {
        let old_insn = |line: &str| -> Option<usize> {
            let (num, rest) = line.split_once(": (")?;
            let n: usize = num.parse().ok()?;
            let b = rest.as_bytes();
            (b.len() >= 3 && b[0].is_ascii_hexdigit() && b[1].is_ascii_hexdigit() && b[2] == b')')
                .then_some(n)
        };
        let old_state = |line: &str| line.split_once(": ").is_some_and(|(n, _)| n.parse::<usize>().is_ok());
        for line in [
            "12: (85) call bpf_spin_lock#93",
            "12: R1=ctx()",
            "12: (8)",
            "12: (zz) x",
            "+7: (b7) r0 = 0",
            "+: (b7)",
            ": (b7) r0 = 0",
            "99999999999999999999999: (b7) r0 = 0",
            "1a: (b7)",
            "from 1 to 3: (85)",
            "3: safe",
            "3:safe",
            "7",
            "",
            "ünï: (b7)",
            "5: frame1: R1=1",
        ] {
            assert_eq!(insn_line_index(line), old_insn(line), "{line:?}");
            assert_eq!(
                number_prefix(line).is_some_and(|(_, rest)| rest.starts_with(": ")),
                old_state(line),
                "{line:?}"
            );
        }
    }

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
