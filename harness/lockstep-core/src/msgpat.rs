//! Expected-message patterns (`__msg`, `__regex`, case-file `msgs`) matched the way the
//! selftests' `test_loader.c` matches them (`compile_regex()`, `match_msg()`,
//! `match_positive_msgs()`):
//!
//! - a pattern without `{{` is a plain substring;
//! - a pattern with `{{` is verbatim text with POSIX extended regular expressions between
//!   `{{` and `}}` (`"R{{[0-9]}} invalid mem access"`); the verbatim parts match literally;
//! - patterns match in order over the whole log, each searched from the end of the previous
//!   match (so two patterns cannot match the same text).
//!
//! `regcomp(REG_EXTENDED | REG_NEWLINE)` semantics are approximated with Rust's `regex` in
//! multi-line mode: `.` never matches a newline and `^` / `$` match at line ends. Two known
//! differences: a negated class (`[^a]`) may match a newline here, and an alternation takes the
//! leftmost-first rather than the POSIX leftmost-longest match (only the end of the match, where
//! the next pattern starts, can differ).

use regex::Regex;

/// A pattern that cannot be compiled (unbalanced `{{` or a bad regular expression).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One compiled expected-message pattern.
#[derive(Debug, Clone)]
pub enum MsgPattern {
    /// A plain substring.
    Substr(String),
    /// Verbatim text with `{{regex}}` parts, compiled.
    Regex(Regex),
}

/// Whether `pattern` uses test_loader's regex syntax (it contains `{{`).
pub fn is_regex(pattern: &str) -> bool {
    pattern.contains("{{")
}

/// The `{{...}}` form of a whole regular expression (6.12's `__regex("...")`, which test_loader
/// compiles as one regex), so it is stored and matched like a `__msg` with `{{...}}`.
pub fn whole_regex(regex: &str) -> String {
    format!("{{{{{regex}}}}}")
}

impl MsgPattern {
    /// Compiles `pattern` (see the module doc for the syntax).
    pub fn compile(pattern: &str) -> Result<MsgPattern, PatternError> {
        if !is_regex(pattern) {
            return Ok(MsgPattern::Substr(pattern.to_string()));
        }
        let err = |reason: String| PatternError { pattern: pattern.to_string(), reason };
        let mut re = String::from("(?m)");
        let mut rest = pattern;
        loop {
            match rest.find("{{") {
                None => {
                    re.push_str(&regex::escape(rest));
                    break;
                }
                Some(open) => {
                    re.push_str(&regex::escape(&rest[..open]));
                    let inner = &rest[open + 2..];
                    let Some(close) = inner.find("}}") else {
                        return Err(err("has an open `{{` but no closing `}}`".into()));
                    };
                    re.push_str("(?:");
                    re.push_str(&inner[..close]);
                    re.push(')');
                    rest = &inner[close + 2..];
                }
            }
        }
        Regex::new(&re).map(MsgPattern::Regex).map_err(|e| err(format!("not a regular expression: {e}")))
    }

    /// The first match of the pattern in `text`: (start, end) byte offsets.
    pub fn find(&self, text: &str) -> Option<(usize, usize)> {
        match self {
            MsgPattern::Substr(s) => text.find(s.as_str()).map(|i| (i, i + s.len())),
            MsgPattern::Regex(r) => r.find(text).map(|m| (m.start(), m.end())),
        }
    }
}

/// Checks that every pattern compiles.
pub fn validate<'a>(patterns: impl IntoIterator<Item = &'a String>) -> Result<(), PatternError> {
    patterns.into_iter().try_for_each(|p| MsgPattern::compile(p).map(|_| ()))
}

/// Whether every pattern matches `text`, in order, each after the end of the previous match.
/// A pattern that does not compile never matches (case files and imports validate first).
pub fn all_match_in_order(patterns: &[String], text: &str) -> bool {
    let mut rest = text;
    for p in patterns {
        let Ok(pat) = MsgPattern::compile(p) else { return false };
        match pat.find(rest) {
            Some((_, end)) => rest = &rest[end..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], text: &str) -> bool {
        all_match_in_order(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>(), text)
    }

    #[test]
    fn substrings_match_in_order_without_overlap() {
        assert!(m(&["a", "b"], "xaxbx"));
        assert!(!m(&["b", "a"], "xaxbx"));
        assert!(!m(&["ab", "b"], "ab"));
        assert!(m(&[], ""));
        // no `{{`: regex metacharacters are literal
        assert!(m(&["R1 type=scalar expected=map_ptr (x)"], "R1 type=scalar expected=map_ptr (x)"));
        assert!(!m(&["a.c"], "abc"));
    }

    #[test]
    fn verbatim_parts_are_literal_and_braces_are_regex() {
        // the `(` `)` `.` outside the braces are verbatim, inside they are regex syntax
        assert!(!m(&["(85){{ call}}"], "x85) call"));
        assert!(m(&["(85){{ call}}"], "(85) call"));
        assert!(m(&["a.{{(b|c)+}}"], "a.cb"));
        assert!(!m(&["a.{{(b|c)+}}"], "axcb"));
    }

    #[test]
    fn selftest_patterns_7_3() {
        // progs/refcounted_kptr_fail.c:79
        let p = "Unreleased reference id=4 alloc_insn={{[0-9]+}}";
        assert!(m(&[p], "Unreleased reference id=4 alloc_insn=12\nprocessed 20 insns"));
        assert!(!m(&[p], "Unreleased reference id=4 alloc_insn=\n12"));
        assert!(!m(&[p], "Unreleased reference id=3 alloc_insn=12"));
        // progs/linked_list_peek.c:103
        let p =
            "call bpf_list_{{(front|back).+}}; R0{{(_w)?}}=ptr_or_null_node_data(id={{[0-9]+}},non_own_ref";
        assert!(m(
            &[p],
            "14: (85) call bpf_list_front#104176      ; R0=ptr_or_null_node_data(id=3,non_own_ref,off=16)"
        ));
        assert!(m(
            &[p],
            "14: (85) call bpf_list_back#104175 ; R0_w=ptr_or_null_node_data(id=3,non_own_ref,off=16)"
        ));
        assert!(!m(&[p], "14: (85) call bpf_list_pop_front#1 ; R0=ptr_or_null_node_data(id=3,off=16)"));
        // progs/rbtree_search.c:195
        let p = "call bpf_rbtree_{{(left|right).+}}; R0{{(_w)?}}=rcu_ptr_or_null_node_data(id={{[0-9]+}},non_own_ref";
        assert!(m(
            &[p],
            "20: (85) call bpf_rbtree_left#1 ; R0=rcu_ptr_or_null_node_data(id=7,non_own_ref,off=24)"
        ));
        assert!(!m(
            &[p],
            "20: (85) call bpf_rbtree_first#1 ; R0=rcu_ptr_or_null_node_data(id=7,non_own_ref,off=24)"
        ));
        // progs/verifier_global_subprogs.c:56,58: in order, each after the previous match
        let ps = [
            "subprog {{[0-9]+}} (global_calls_good_only) global insns_self 2 insns_total 2 stack",
            "subprog {{[0-9]+}} (global_good) global insns_self 3 insns_total 3 stack",
        ];
        let log = "subprog 1 (global_calls_good_only) global insns_self 2 insns_total 2 stack depth 0\n\
                   subprog 2 (global_good) global insns_self 3 insns_total 3 stack depth 0\n";
        assert!(m(&ps, log));
        assert!(!m(&[ps[1], ps[0]], log));
    }

    #[test]
    fn regex_dot_and_anchors_stay_on_one_line() {
        // REG_NEWLINE: `.` does not cross lines, `^` matches at a line start
        assert!(!m(&["a{{.*}}b"], "a\nb"));
        assert!(m(&["a{{.*}}b"], "xa  bx"));
        assert!(m(&["{{^}}processed"], "foo\nprocessed 5 insns"));
        assert!(!m(&["{{^}}processed"], "foo processed 5 insns"));
    }

    #[test]
    fn order_continues_after_a_regex_match() {
        let log = "1: safe\n2: (b7) r0 = 0\n3: safe\n";
        assert!(m(&["{{[0-9]}}: safe", "r0 = 0", "3: safe"], log));
        assert!(!m(&["3: safe", "{{[0-9]}}: safe"], log));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(MsgPattern::compile("R{{[0-9]").unwrap_err().reason.contains("closing"));
        assert!(MsgPattern::compile("{{(}}").unwrap_err().reason.contains("not a regular expression"));
        assert!(!m(&["{{(}}"], "("));
        assert!(validate(&["ok".to_string(), "a{{b+}}".to_string()]).is_ok());
    }

    #[test]
    fn whole_regex_is_one_braced_part() {
        let p = whole_regex("R[0-9] !read_ok");
        assert_eq!(p, "{{R[0-9] !read_ok}}");
        assert!(m(&[&p], "R3 !read_ok"));
    }
}
