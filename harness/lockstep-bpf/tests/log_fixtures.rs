//! `parse_verifier_log` on real logs captured from kernel 6.18 (tests/fixtures/6.18/, written by
//! `LOCKSTEP_CAPTURE_DIR=... cargo test --test host_kernel`).

use lockstep_bpf::parse_verifier_log;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/6.18/{name}.log", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (fixture, error line, insn, processed insns).
const CASES: &[(&str, Option<&str>, Option<usize>, u64)] = &[
    (
        "lock_no_unlock",
        Some("BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region"),
        Some(13),
        13,
    ),
    ("helper_under_lock", Some("function calls are not allowed while holding a lock"), Some(12), 12),
    ("map_without_btf", Some("map 'm' has to have BTF in order to use bpf_spin_lock"), Some(11), 11),
    // Found before the main pass: no instruction line precedes it.
    ("socket_filter_lock", Some("socket filter progs cannot use bpf_spin_lock yet"), None, 0),
    // A two-line message: the first line is the error, both are in the tail.
    ("global_func_lock", Some("global function calls are not allowed while holding a lock,"), Some(13), 13),
    // The state of the branch target is printed on the jump's line; the error is on that path.
    ("unlock_no_lock_branch", Some("bpf_spin_unlock without taking a lock"), Some(21), 21),
    (
        "global_lock_no_unlock",
        Some("BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region"),
        Some(4),
        4,
    ),
    ("res_lock_misaligned", Some("map 'm' has no valid bpf_res_spin_lock"), Some(11), 11),
    // Accepted: log level 1 keeps only the statistics.
    ("lock_unlock_Array", None, None, 16),
    ("static_func_lock", None, None, 20),
];

#[test]
fn real_logs_parse() {
    for &(name, error, insn, processed) in CASES {
        let p = parse_verifier_log(&fixture(name));
        assert_eq!(p.error.as_deref(), error, "{name}");
        assert_eq!(p.insn, insn, "{name}");
        assert_eq!(p.insns_processed, Some(processed), "{name}");
        assert!(p.verification_usec.is_some(), "{name}");
    }
}

#[test]
fn two_line_message_is_in_the_tail() {
    let p = parse_verifier_log(&fixture("global_func_lock"));
    assert_eq!(
        p.tail,
        vec!["global function calls are not allowed while holding a lock,", "use static function instead"]
    );
}

/// The 7.3 diagnostic block (format strings of kernel/bpf/diagnostics.c in linux-source-7.3,
/// appended after the error) must not change the parsed error: the 6.18 log with such a block
/// appended, as 7.3 would print it.
#[test]
fn diagnostic_block_after_error_is_ignored() {
    let mut log = fixture("helper_under_lock");
    log.push_str(
        "\nVerification failed: Lock context: Function call\n\
         \n  Instruction context:\n      11 | call bpf_spin_lock#93\n  >>> 12 | call bpf_get_prandom_u32#7\n\
         \nReason:\n  function call while holding a lock\n\
         \nSuggestion:\n  Release the BPF spin lock before making this call.\n\n",
    );
    let p = parse_verifier_log(&log);
    assert_eq!(p.error.as_deref(), Some("function calls are not allowed while holding a lock"));
    assert_eq!(p.insn, Some(12));
}
