//! Rough build progress from kbuild's quiet output (pure).
//!
//! Each step prints one line such as `  CC      kernel/bpf/verifier.o` or `  BTF     .btf.vmlinux.bin.o`;
//! the number of steps of the previous full build of the same work tree (or [`COLD_STEPS_GUESS`])
//! is the expected total.

/// Steps of a cold build of lockstep's tinyconfig-based kernel (measured on 7.2.13: about
/// 2,900 lines); used when no previous build of the work tree gave a count.
pub const COLD_STEPS_GUESS: u64 = 2900;

/// A classified line of `make` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MakeLine<'a> {
    /// A build step: the tag (`CC`, `LD`, `BTF`, ...) and its target.
    Step { tag: &'a str, target: &'a str },
    /// A compiler or linker diagnostic (`error:`, `warning:`, `Error N`).
    Diagnostic(&'a str),
    /// Anything else (make's directory messages, tool chatter).
    Other(&'a str),
}

/// Classifies one line of `make` output.
pub fn classify(line: &str) -> MakeLine<'_> {
    if let Some(rest) = line.strip_prefix("  ") {
        let tag_end = rest.find(' ').unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        let ok_tag = !tag.is_empty()
            && tag.len() <= 10
            && tag.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && tag.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-');
        let target = rest[tag_end..].trim();
        if ok_tag && !target.is_empty() {
            return MakeLine::Step { tag, target };
        }
    }
    if line.contains("error:")
        || line.contains("warning:")
        || line.contains("*** [")
        || line.contains("] Error ")
    {
        return MakeLine::Diagnostic(line);
    }
    MakeLine::Other(line)
}

/// Expected step count: the previous full build's, else the cold guess for a build tree without
/// `vmlinux`, else unknown (an incremental build: a spinner rather than a bar).
pub fn expected_steps(previous_full: Option<u64>, tree_has_vmlinux: bool) -> Option<u64> {
    if tree_has_vmlinux {
        None
    } else {
        Some(previous_full.unwrap_or(COLD_STEPS_GUESS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kbuild_lines() {
        assert_eq!(
            classify("  CC      kernel/bpf/verifier.o"),
            MakeLine::Step { tag: "CC", target: "kernel/bpf/verifier.o" }
        );
        assert_eq!(
            classify("  BTF     .btf.vmlinux.bin.o"),
            MakeLine::Step { tag: "BTF", target: ".btf.vmlinux.bin.o" }
        );
        assert_eq!(
            classify("  CC [M]  lockstep_test.o"),
            MakeLine::Step { tag: "CC", target: "[M]  lockstep_test.o" }
        );
        assert_eq!(
            classify("  HOSTCC  scripts/basic/fixdep"),
            MakeLine::Step { tag: "HOSTCC", target: "scripts/basic/fixdep" }
        );
        assert!(matches!(
            classify("kernel/bpf/verifier.c:12:3: error: expected ';'"),
            MakeLine::Diagnostic(_)
        ));
        assert!(matches!(
            classify("make[3]: *** [scripts/Makefile.build:287: kernel/bpf/verifier.o] Error 1"),
            MakeLine::Diagnostic(_)
        ));
        assert!(matches!(classify("make[1]: Entering directory '/x/obj'"), MakeLine::Other(_)));
        assert!(matches!(classify("  lower  case"), MakeLine::Other(_)));
        assert!(matches!(classify("  CC"), MakeLine::Other(_)));
    }

    #[test]
    fn expected_steps_for_cold_and_incremental() {
        assert_eq!(expected_steps(None, false), Some(COLD_STEPS_GUESS));
        assert_eq!(expected_steps(Some(3100), false), Some(3100));
        assert_eq!(expected_steps(Some(3100), true), None);
    }
}
