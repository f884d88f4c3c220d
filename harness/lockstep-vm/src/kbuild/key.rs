//! The content hash naming a build (pure): everything that changes the kernel image.

use serde::{Deserialize, Serialize};

use super::series::sha256_hex;

/// Bumped when the build recipe changes in a way that changes the result.
pub const RECIPE_VERSION: u32 = 1;

/// The inputs of a build's cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// `debian-src:7.2` or a tree path, and its version or fingerprint.
    pub source_spec: String,
    pub source_version: String,
    /// `(file name, sha256)` of each patch, in order.
    pub patches: Vec<(String, String)>,
    /// The merged config fragment ([`super::config::Merged::render`]).
    pub fragment: String,
    /// Compiler and linker identity.
    pub compiler: String,
    /// `pahole --version`.
    pub pahole: String,
    /// Extra make variables that change the result (e.g. `LLVM=1`), sorted.
    pub make_vars: Vec<String>,
}

impl KeyInputs {
    /// The text that is hashed: one `name: value` line per input (stable across releases).
    pub fn canonical(&self) -> String {
        let mut s = format!(
            "recipe: {RECIPE_VERSION}\nsource: {}\nsource-version: {}\n",
            self.source_spec, self.source_version
        );
        for (name, sha) in &self.patches {
            s.push_str(&format!("patch: {sha} {name}\n"));
        }
        s.push_str(&format!("compiler: {}\npahole: {}\n", self.compiler, self.pahole));
        for v in &self.make_vars {
            s.push_str(&format!("make: {v}\n"));
        }
        s.push_str("fragment:\n");
        s.push_str(&self.fragment);
        s
    }

    /// sha256 of [`KeyInputs::canonical`], hex (64 characters).
    pub fn hash(&self) -> String {
        sha256_hex(self.canonical().as_bytes())
    }
}

/// Length of the short form used in `build:<short>` names.
pub const SHORT_LEN: usize = 12;

/// The short form of a hash.
pub fn short(hash: &str) -> &str {
    &hash[..SHORT_LEN.min(hash.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            source_spec: "debian-src:7.2".into(),
            source_version: "7.2.13-1".into(),
            patches: vec![("0001-a.patch".into(), "aa".into())],
            fragment: "CONFIG_BPF=y\n".into(),
            compiler: "gcc (Debian 12.2.0-14) 12.2.0; GNU ld 2.40".into(),
            pahole: "v1.30".into(),
            make_vars: vec![],
        }
    }

    #[test]
    fn every_input_changes_the_hash() {
        let base = inputs();
        let h = base.hash();
        assert_eq!(h.len(), 64);
        assert_eq!(h, inputs().hash(), "deterministic");
        type Change = Box<dyn Fn(&mut KeyInputs)>;
        let variants: Vec<Change> = vec![
            Box::new(|k| k.source_version = "7.2.14-1".into()),
            Box::new(|k| k.source_spec = "/src/linux".into()),
            Box::new(|k| k.patches[0].1 = "ab".into()),
            Box::new(|k| k.patches.clear()),
            Box::new(|k| k.patches.push(("0002-b.patch".into(), "bb".into()))),
            Box::new(|k| k.fragment.push_str("CONFIG_X=y\n")),
            Box::new(|k| k.compiler = "gcc 14".into()),
            Box::new(|k| k.pahole = "v1.32".into()),
            Box::new(|k| k.make_vars = vec!["LLVM=1".into()]),
        ];
        for (i, v) in variants.iter().enumerate() {
            let mut k = inputs();
            v(&mut k);
            assert_ne!(k.hash(), h, "variant {i}");
        }
        // The patch file name is part of the key too (it names the patch in reports).
        let mut k = inputs();
        k.patches[0].0 = "0001-renamed.patch".into();
        assert_ne!(k.hash(), h);
        assert_eq!(short(&h).len(), SHORT_LEN);
    }
}
