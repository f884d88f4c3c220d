//! The selftests' test annotations (`tools/testing/selftests/bpf/progs/bpf_misc.h`): `__success`,
//! `__failure`, `__msg("...")`, `__retval(...)`, `__flag(...)`, ... Each expands to a BTF decl
//! tag `comment:N:test_expect_failure` etc., so the same annotations are read from C source (the
//! macro calls) and from a compiled object (the decl tags) into one [`TestSpec`].
//!
//! lockstep adds per-profile expectations for its own C examples (`tests/c/lockstep.h`):
//! `lockstep_expect=PROFILE:accept|reject` and `lockstep_msg=PROFILE:pattern`.

use std::collections::BTreeMap;

use crate::case::Expectation;
use crate::verdict::VerdictKind;

/// The expectations of one load mode (privileged or unprivileged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeSpec {
    /// `Some(true)`: `__failure`; `Some(false)`: `__success`.
    pub failure: Option<bool>,
    /// `__msg` patterns, in order (a `__regex(r)` is stored as `{{r}}`, see [`crate::msgpat`]).
    pub msgs: Vec<String>,
    /// Whether a pattern uses a regular expression (`__regex`, or `{{...}}` in `__msg`); the
    /// patterns are matched as `test_loader.c` does ([`crate::msgpat`]).
    pub regex: bool,
    /// `__retval(...)` as written.
    pub retval: Option<String>,
}

impl ModeSpec {
    fn used(&self) -> bool {
        self.failure.is_some() || !self.msgs.is_empty() || self.regex || self.retval.is_some()
    }
}

/// Everything the annotations of one test say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestSpec {
    pub description: Option<String>,
    pub privileged: ModeSpec,
    pub unprivileged: ModeSpec,
    /// `__flag(...)` values as written (`BPF_F_TEST_STATE_FREQ`, a number).
    pub flags: Vec<String>,
    pub log_level: Option<String>,
    pub auxiliary: bool,
    /// `__arch_*` names; empty: any architecture.
    pub arch: Vec<String>,
    /// `__btf_path(...)`: the test needs a separate BTF file.
    pub btf_path: Option<String>,
    /// Annotations recorded but not checked (`__xlated`, `__jited`, `__not_msg`, `__stderr`, ...).
    pub unchecked: Vec<String>,
    /// lockstep's own per-profile expectations.
    pub per_profile: BTreeMap<String, ModeSpec>,
    /// Annotations not understood (kept for the report).
    pub unknown: Vec<String>,
}

/// A `__retval(...)` value as test_loader.c's `parse_retval()` reads it: `_INT_MIN`, or an
/// integer in C syntax (`strtol(.., 0)`: decimal, `0x` hex, leading `0` octal, a sign) that fits
/// an `int`; test_loader's `POINTER_VALUE` (0xbadcafe) is [`crate::case::RETVAL_ANY`].
pub fn parse_retval(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "_INT_MIN" {
        return Ok(i32::MIN as i64);
    }
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(h, 16)
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8)
    } else {
        digits.parse::<i64>()
    }
    .map_err(|_| format!("__retval({s}) is not an integer"))?;
    let v = if neg { -v } else { v };
    if v < i32::MIN as i64 || v > u32::MAX as i64 {
        return Err(format!("__retval({s}) does not fit a 32-bit return value"));
    }
    Ok(v)
}

/// The decl-tag key a `bpf_misc.h` macro expands to, and whether it takes an argument.
const MACROS: &[(&str, &str)] = &[
    ("__success", "test_expect_success"),
    ("__failure", "test_expect_failure"),
    ("__success_unpriv", "test_expect_success_unpriv"),
    ("__failure_unpriv", "test_expect_failure_unpriv"),
    ("__msg", "test_expect_msg"),
    ("__msg_unpriv", "test_expect_msg_unpriv"),
    ("__regex", "test_expect_regex"),
    ("__regex_unpriv", "test_expect_regex_unpriv"),
    ("__not_msg", "test_expect_not_msg"),
    ("__not_msg_unpriv", "test_expect_not_msg_unpriv"),
    ("__xlated", "test_expect_xlated"),
    ("__xlated_unpriv", "test_expect_xlated_unpriv"),
    ("__jited", "test_jited"),
    ("__jited_unpriv", "test_jited_unpriv"),
    ("__description", "test_description"),
    ("__retval", "test_retval"),
    ("__retval_unpriv", "test_retval_unpriv"),
    ("__flag", "test_prog_flags"),
    ("__log_level", "test_log_level"),
    ("__auxiliary", "test_auxiliary"),
    ("__auxiliary_unpriv", "test_auxiliary_unpriv"),
    ("__btf_path", "test_btf_path"),
    ("__btf_func_path", "test_btf_func_path"),
    ("__arch", "test_arch"),
    ("__caps_unpriv", "test_caps_unpriv"),
    ("__load_if_JITed", "load_mode=jited"),
    ("__load_if_no_JITed", "load_mode=no_jited"),
    ("__stderr", "test_expect_stderr"),
    ("__stderr_unpriv", "test_expect_stderr_unpriv"),
    ("__stdout", "test_expect_stdout"),
    ("__stdout_unpriv", "test_expect_stdout_unpriv"),
    ("__linear_size", "test_linear_size"),
    ("__expect_on", "lockstep_expect"),
    ("__msg_on", "lockstep_msg"),
];

/// The decl-tag key of an annotation macro (`__msg` -> `test_expect_msg`), for macros that are
/// test annotations; `__arch_x86_64` and friends map to `test_arch`.
pub fn macro_key(name: &str) -> Option<String> {
    if let Some((_, k)) = MACROS.iter().find(|(m, _)| *m == name) {
        return Some(k.to_string());
    }
    let arch = name.strip_prefix("__arch_")?;
    Some(format!(
        "test_arch={}",
        match arch {
            "x86_64" => "X86_64",
            "arm64" => "ARM64",
            "riscv64" => "RISCV64",
            "loongarch" => "LOONGARCH",
            other => other,
        }
    ))
}

/// The annotation string of a BTF decl tag (`comment:12:test_expect_msg=foo` ->
/// `test_expect_msg=foo`), or None for other tags.
///
/// 7.x's bpf_misc.h puts a `__COUNTER__` value first (`comment:N:key=value`) so that equal tags
/// stay distinct; 6.12's puts it after the key of the pattern annotations
/// (`comment:test_expect_msg=N=value`) and nowhere else.
pub fn decl_tag_annotation(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("comment:")?;
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if let Some((n, a)) = rest.split_once(':') {
        if is_num(n) {
            return Some(a.to_string());
        }
    }
    if let Some((key, value)) = rest.split_once('=') {
        let counted = [
            "test_expect_msg",
            "test_expect_msg_unpriv",
            "test_expect_xlated",
            "test_expect_xlated_unpriv",
            "test_expect_regex",
            "test_expect_regex_unpriv",
            "test_expect_not_msg",
            "test_expect_not_msg_unpriv",
            "test_jited",
            "test_jited_unpriv",
        ];
        if counted.contains(&key) {
            if let Some((n, v)) = value.split_once('=') {
                if is_num(n) {
                    return Some(format!("{key}={v}"));
                }
            }
        }
    }
    Some(rest.to_string())
}

impl TestSpec {
    /// Builds a spec from annotation strings in source order (`test_expect_failure`,
    /// `test_expect_msg=text`, ...).
    pub fn from_annotations<'a>(items: impl IntoIterator<Item = &'a str>) -> TestSpec {
        let mut s = TestSpec::default();
        for a in items {
            let (key, value) = match a.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (a, None),
            };
            let v = value.clone().unwrap_or_default();
            let has_regex = v.contains("{{");
            match key {
                "test_expect_success" => s.privileged.failure = Some(false),
                "test_expect_failure" => s.privileged.failure = Some(true),
                "test_expect_success_unpriv" => s.unprivileged.failure = Some(false),
                "test_expect_failure_unpriv" => s.unprivileged.failure = Some(true),
                "test_expect_msg" => {
                    s.privileged.regex |= has_regex;
                    s.privileged.msgs.push(v);
                }
                "test_expect_msg_unpriv" => {
                    s.unprivileged.regex |= has_regex;
                    s.unprivileged.msgs.push(v);
                }
                // 6.12's `__regex("r")`: one whole regex, test_loader compiles it as `{{r}}`
                "test_expect_regex" => {
                    s.privileged.regex = true;
                    s.privileged.msgs.push(crate::msgpat::whole_regex(&v));
                }
                "test_expect_regex_unpriv" => {
                    s.unprivileged.regex = true;
                    s.unprivileged.msgs.push(crate::msgpat::whole_regex(&v));
                }
                "test_description" => s.description = Some(v),
                "test_retval" => s.privileged.retval = Some(v),
                "test_retval_unpriv" => s.unprivileged.retval = Some(v),
                "test_prog_flags" => s.flags.push(v),
                "test_log_level" => s.log_level = Some(v),
                "test_auxiliary" => s.auxiliary = true,
                "test_auxiliary_unpriv" => {}
                "test_arch" => s.arch.push(v),
                "test_btf_path" | "test_btf_func_path" => s.btf_path = Some(v),
                "lockstep_expect" | "lockstep_msg" => {
                    let Some((profile, rest)) = v.split_once(':') else {
                        s.unknown.push(a.to_string());
                        continue;
                    };
                    let m = s.per_profile.entry(profile.to_string()).or_default();
                    match (key, rest) {
                        ("lockstep_expect", "accept") => m.failure = Some(false),
                        ("lockstep_expect", "reject") => m.failure = Some(true),
                        ("lockstep_msg", pat) => m.msgs.push(pat.to_string()),
                        _ => s.unknown.push(a.to_string()),
                    }
                }
                "test_expect_not_msg"
                | "test_expect_not_msg_unpriv"
                | "test_expect_xlated"
                | "test_expect_xlated_unpriv"
                | "test_jited"
                | "test_jited_unpriv"
                | "test_caps_unpriv"
                | "load_mode"
                | "test_expect_stderr"
                | "test_expect_stderr_unpriv"
                | "test_expect_stdout"
                | "test_expect_stdout_unpriv"
                | "test_linear_size" => s.unchecked.push(a.to_string()),
                _ => s.unknown.push(a.to_string()),
            }
        }
        s
    }

    /// Whether the test loads in privileged mode (`test_loader.c`: any privileged annotation,
    /// or no mode annotation at all).
    pub fn runs_privileged(&self) -> bool {
        self.privileged.used() || !self.unprivileged.used()
    }

    /// Whether the test can run on x86-64 (no `__arch_*`, or `__arch_x86_64` among them).
    pub fn runs_on_x86_64(&self) -> bool {
        self.arch.is_empty() || self.arch.iter().any(|a| a == "X86_64")
    }

    /// The `BPF_F_*` bits of `__flag(...)`, or the first flag not understood. `BPF_F_SLEEPABLE`
    /// is returned separately as the bool.
    pub fn prog_flags(&self) -> Result<(u32, bool), String> {
        let mut bits = 0u32;
        let mut sleepable = false;
        for f in &self.flags {
            if f == "BPF_F_SLEEPABLE" {
                sleepable = true;
            } else if let Some((_, b)) = crate::case::PROG_FLAGS.iter().find(|(n, _)| n == f) {
                bits |= b;
            } else if let Ok(n) = super::ctypes::parse_number(f) {
                bits |= n as u32;
            } else {
                return Err(format!("__flag({f}) is not a prog flag lockstep knows"));
            }
        }
        Ok((bits, sleepable))
    }

    /// The privileged-mode expectations: `default_profile`'s from the selftest annotations (if
    /// the test runs privileged), overridden per profile by lockstep's own annotations.
    /// Err if a pattern does not compile (test_loader fails such a test too).
    pub fn expectations(
        &self,
        default_profile: &str,
        source: &str,
    ) -> Result<BTreeMap<String, Expectation>, String> {
        let mut out = BTreeMap::new();
        let to_exp = |m: &ModeSpec, src: String| -> Result<Expectation, String> {
            crate::msgpat::validate(&m.msgs).map_err(|e| format!("__msg: {e}"))?;
            let verdict = if m.failure == Some(true) { VerdictKind::Reject } else { VerdictKind::Accept };
            // test_loader runs the program only after an expected successful load
            let retval = match (&m.retval, verdict) {
                (Some(r), VerdictKind::Accept) => Some(parse_retval(r)?),
                _ => None,
            };
            Ok(Expectation {
                verdict,
                insn: None,
                message: None,
                source: Some(src),
                msgs: m.msgs.iter().filter(|s| !s.is_empty()).cloned().collect(),
                retval,
            })
        };
        if self.runs_privileged() && (self.privileged.used() || self.per_profile.is_empty()) {
            out.insert(default_profile.to_string(), to_exp(&self.privileged, source.to_string())?);
        }
        for (p, m) in &self.per_profile {
            // A profile's own annotations override the verdict and/or the messages; what they
            // leave out comes from the selftest annotations (messages only if the verdict is the same).
            let failure = m.failure.or(self.privileged.failure);
            let msgs = if !m.msgs.is_empty() {
                m.msgs.clone()
            } else if failure == self.privileged.failure {
                self.privileged.msgs.clone()
            } else {
                Vec::new()
            };
            let merged = ModeSpec {
                failure,
                msgs,
                regex: self.privileged.regex && failure == self.privileged.failure,
                retval: self.privileged.retval.clone().filter(|_| failure == self.privileged.failure),
            };
            out.insert(p.clone(), to_exp(&merged, format!("{source} (lockstep annotation for {p})"))?);
        }
        Ok(out)
    }

    /// Short notes for what the expectations do not carry (unprivileged mode, retval, log level,
    /// unchecked patterns), as case tags.
    pub fn notes(&self) -> Vec<String> {
        let mut t = Vec::new();
        if let Some(f) = self.unprivileged.failure {
            t.push(format!("unpriv:{}", if f { "failure" } else { "success" }));
        }
        for m in self.unprivileged.msgs.iter().filter(|m| !m.is_empty()) {
            t.push(format!("unpriv_msg:{m}"));
        }
        if let Some(r) = &self.privileged.retval {
            t.push(format!("retval:{r}"));
        }
        if let Some(r) = &self.unprivileged.retval {
            t.push(format!("unpriv_retval:{r}"));
        }
        for u in &self.unchecked {
            t.push(format!("unchecked:{u}"));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decl_tags_strip_the_counter() {
        let a = |t: &str| decl_tag_annotation(t);
        assert_eq!(a("comment:12:test_expect_msg=a:b").as_deref(), Some("test_expect_msg=a:b"));
        assert_eq!(a("comment:test_expect_failure").as_deref(), Some("test_expect_failure"));
        assert_eq!(a("kptr"), None);
        // 6.12's bpf_misc.h: the counter after the key
        assert_eq!(
            a("comment:test_expect_msg=3=unlock is missing").as_deref(),
            Some("test_expect_msg=unlock is missing")
        );
        assert_eq!(a("comment:test_expect_msg_unpriv=4=").as_deref(), Some("test_expect_msg_unpriv="));
        assert_eq!(a("comment:test_description=a=b").as_deref(), Some("test_description=a=b"));
    }

    #[test]
    fn spin_lock_test1_annotations() {
        // verifier_spin_lock.c: __success __failure_unpriv __msg_unpriv("") __retval(0)
        let s = TestSpec::from_annotations([
            "test_description=spin_lock: test1 success",
            "test_expect_success",
            "test_expect_failure_unpriv",
            "test_expect_msg_unpriv=",
            "test_retval=0",
        ]);
        assert!(s.runs_privileged());
        let e = s.expectations("7.3", "src").unwrap();
        assert_eq!(e["7.3"].verdict, VerdictKind::Accept);
        assert!(e["7.3"].msgs.is_empty());
        assert_eq!(s.notes(), vec!["unpriv:failure", "retval:0"]);
    }

    #[test]
    fn unpriv_only_has_no_privileged_expectation() {
        let s = TestSpec::from_annotations(["test_expect_failure_unpriv", "test_expect_msg_unpriv=x"]);
        assert!(!s.runs_privileged());
        assert!(s.expectations("7.3", "src").unwrap().is_empty());
    }

    #[test]
    fn lockstep_per_profile_annotations_override() {
        let s = TestSpec::from_annotations([
            "test_expect_failure",
            "lockstep_expect=7.3:accept",
            "lockstep_expect=7.2:reject",
            "lockstep_msg=7.2:calls are not allowed",
        ]);
        let e = s.expectations("*", "f.c").unwrap();
        assert_eq!(e["*"].verdict, VerdictKind::Reject);
        assert_eq!(e["7.3"].verdict, VerdictKind::Accept);
        assert_eq!(e["7.2"].msgs, vec!["calls are not allowed"]);
        // a message alone keeps the selftest verdict
        let s = TestSpec::from_annotations([
            "test_expect_failure",
            "test_expect_msg=BPF_EXIT",
            "lockstep_msg=6.12:unlock is missing",
        ]);
        let e = s.expectations("*", "f.c").unwrap();
        assert_eq!(
            (e["6.12"].verdict, e["6.12"].msgs.as_slice()),
            (VerdictKind::Reject, &["unlock is missing".to_string()][..])
        );
        assert_eq!(e["*"].msgs, vec!["BPF_EXIT"]);
    }

    #[test]
    fn regex_patterns_are_expectations() {
        // progs/refcounted_kptr_fail.c:79
        let s = TestSpec::from_annotations([
            "test_expect_failure",
            "test_expect_msg=Unreleased reference id=4 alloc_insn={{[0-9]+}}",
        ]);
        assert!(s.privileged.regex);
        let e = s.expectations("7.3", "f").unwrap();
        assert_eq!(e["7.3"].msgs, vec!["Unreleased reference id=4 alloc_insn={{[0-9]+}}"]);
        assert!(crate::corpus::msgs_match(&e["7.3"].msgs, "Unreleased reference id=4 alloc_insn=17"));
        // 6.12's __regex: one whole regex
        let s = TestSpec::from_annotations(["test_expect_failure", "test_expect_regex=R[0-9] !read_ok"]);
        let e = s.expectations("6.12", "f").unwrap();
        assert_eq!(e["6.12"].msgs, vec!["{{R[0-9] !read_ok}}"]);
        assert!(crate::corpus::msgs_match(&e["6.12"].msgs, "R7 !read_ok"));
        // a pattern test_loader cannot compile is an error, not a silent pass
        let s = TestSpec::from_annotations(["test_expect_failure", "test_expect_msg=R{{[0-9] invalid"]);
        assert!(s.expectations("7.3", "f").unwrap_err().contains("closing"));
    }

    #[test]
    fn retvals_as_test_loader_parses_them() {
        assert_eq!(parse_retval("0"), Ok(0));
        assert_eq!(parse_retval("-1"), Ok(-1));
        assert_eq!(parse_retval("579"), Ok(579)); // refcounted_kptr.c
        assert_eq!(parse_retval("0xbadcafe"), Ok(crate::case::RETVAL_ANY));
        assert_eq!(parse_retval("_INT_MIN"), Ok(i32::MIN as i64));
        assert_eq!(parse_retval("010"), Ok(8));
        assert!(parse_retval("TEST_DATA_LEN").is_err());
        assert!(parse_retval("0x100000000").is_err());
        // only an expected success carries its retval into the expectation
        let s = TestSpec::from_annotations(["test_expect_success", "test_retval=84"]);
        assert_eq!(s.expectations("*", "f").unwrap()["*"].retval, Some(84));
        let s = TestSpec::from_annotations(["test_expect_failure", "test_retval=84"]);
        assert_eq!(s.expectations("*", "f").unwrap()["*"].retval, None);
    }

    #[test]
    fn flags() {
        let s = TestSpec::from_annotations([
            "test_prog_flags=BPF_F_TEST_STATE_FREQ",
            "test_prog_flags=BPF_F_SLEEPABLE",
        ]);
        assert_eq!(s.prog_flags().unwrap(), (8, true));
        let bad = TestSpec::from_annotations(["test_prog_flags=BPF_F_NOPE"]);
        assert!(bad.prog_flags().is_err());
    }
}
