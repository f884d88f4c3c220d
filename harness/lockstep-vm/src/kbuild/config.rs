//! Kernel config fragments (pure): parse, layer, merge, apply to a `.config`, and check the result.
//!
//! A build is configured as `tinyconfig`, then the layers in order — lockstep's base fragment
//! ([`base_fragment`]), the user's fragments, lockstep's mandatory items ([`mandatory_fragment`])
//! — then `make olddefconfig`. A later layer overrides an earlier one. [`check`] compares the
//! final `.config` with the merged request: kconfig silently drops a value whose dependencies are
//! unmet, which is reported instead of discovered at boot.

use std::collections::BTreeMap;

/// Lockstep's base fragment (a QEMU x86-64 guest that loads every corpus program type).
pub const BASE_TEXT: &str = include_str!("base.config");
/// Lockstep's mandatory items (applied last).
pub const MANDATORY_TEXT: &str = include_str!("mandatory.config");
/// Layer name of [`BASE_TEXT`].
pub const BASE_LAYER: &str = "lockstep-base";
/// Layer name of [`MANDATORY_TEXT`].
pub const MANDATORY_LAYER: &str = "lockstep-mandatory";

/// A malformed fragment line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{layer}:{line}: {message}")]
pub struct FragmentError {
    pub layer: String,
    pub line: usize,
    pub message: String,
}

/// One `CONFIG_<symbol>=<value>` assignment; `value` is `n` for `# CONFIG_<symbol> is not set`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The symbol without the `CONFIG_` prefix.
    pub symbol: String,
    /// `y`, `m`, `n`, a number, or a double-quoted string (quotes kept, as in `.config`).
    pub value: String,
}

impl Item {
    /// The `.config` line for this item.
    pub fn render(&self) -> String {
        if self.value == "n" {
            format!("# CONFIG_{} is not set", self.symbol)
        } else {
            format!("CONFIG_{}={}", self.symbol, self.value)
        }
    }
}

/// A named fragment: its assignments in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Where it comes from (a layer name or a file path), used in messages.
    pub layer: String,
    pub items: Vec<Item>,
}

/// Parses one `.config` line: `Some(item)` for an assignment or a `is not set` comment, `None` for
/// blank lines and other comments.
pub fn parse_line(line: &str) -> Result<Option<Item>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(c) = line.strip_prefix('#') {
        let c = c.trim();
        if let Some(sym) = c.strip_prefix("CONFIG_").and_then(|s| s.strip_suffix(" is not set")) {
            check_symbol(sym)?;
            return Ok(Some(Item { symbol: sym.to_string(), value: "n".into() }));
        }
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix("CONFIG_") else {
        return Err(format!("expected CONFIG_<NAME>=<value> or `# CONFIG_<NAME> is not set`, got {line:?}"));
    };
    let Some((sym, value)) = rest.split_once('=') else {
        return Err(format!("missing `=` in {line:?}"));
    };
    check_symbol(sym)?;
    let value = value.trim();
    let ok = matches!(value, "y" | "m" | "n")
        || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"'))
        || value.parse::<i64>().is_ok()
        || value
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(format!(
            "value of CONFIG_{sym} must be y, m, n, a number or a \"string\", got {value:?}"
        ));
    }
    Ok(Some(Item { symbol: sym.to_string(), value: value.to_string() }))
}

fn check_symbol(sym: &str) -> Result<(), String> {
    if sym.is_empty() || !sym.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("bad symbol name {sym:?} (want upper-case letters, digits, _)"));
    }
    Ok(())
}

/// Parses a fragment (the `.config` syntax; comments and blank lines ignored).
pub fn parse_fragment(layer: &str, text: &str) -> Result<Fragment, FragmentError> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(message) => return Err(FragmentError { layer: layer.to_string(), line: i + 1, message }),
        }
    }
    Ok(Fragment { layer: layer.to_string(), items })
}

/// Lockstep's base fragment.
pub fn base_fragment() -> Fragment {
    parse_fragment(BASE_LAYER, BASE_TEXT).expect("the bundled base fragment parses")
}

/// Lockstep's mandatory items.
pub fn mandatory_fragment() -> Fragment {
    parse_fragment(MANDATORY_LAYER, MANDATORY_TEXT).expect("the bundled mandatory fragment parses")
}

/// The layers of a build request: base, then `user` in order, then mandatory.
pub fn layers(user: Vec<Fragment>) -> Vec<Fragment> {
    let mut v = vec![base_fragment()];
    v.extend(user);
    v.push(mandatory_fragment());
    v
}

/// One symbol of a merged request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedItem {
    pub symbol: String,
    /// The winning value.
    pub value: String,
    /// The layer that set it last.
    pub layer: String,
    /// Earlier `(layer, value)` assignments with a different value that were overridden.
    pub overridden: Vec<(String, String)>,
}

/// The merge of all layers: one entry per symbol, in order of first appearance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    pub items: Vec<MergedItem>,
}

/// Merges layers in order; a later assignment wins.
pub fn merge(layers: &[Fragment]) -> Merged {
    let mut items: Vec<MergedItem> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for f in layers {
        for it in &f.items {
            match index.get(&it.symbol) {
                Some(&i) => {
                    let m = &mut items[i];
                    if m.value != it.value {
                        m.overridden.push((m.layer.clone(), m.value.clone()));
                        m.value = it.value.clone();
                    }
                    m.layer = f.layer.clone();
                }
                None => {
                    index.insert(it.symbol.clone(), items.len());
                    items.push(MergedItem {
                        symbol: it.symbol.clone(),
                        value: it.value.clone(),
                        layer: f.layer.clone(),
                        overridden: vec![],
                    });
                }
            }
        }
    }
    Merged { items }
}

impl Merged {
    /// The merged fragment as `.config` lines (the content that enters the build's cache key).
    pub fn render(&self) -> String {
        self.items
            .iter()
            .map(|m| Item { symbol: m.symbol.clone(), value: m.value.clone() }.render() + "\n")
            .collect()
    }

    /// The merged fragment with each line's layer, and each override, as comments.
    pub fn render_annotated(&self) -> String {
        let width = self
            .items
            .iter()
            .map(|m| Item { symbol: m.symbol.clone(), value: m.value.clone() }.render().len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for m in &self.items {
            let line = Item { symbol: m.symbol.clone(), value: m.value.clone() }.render();
            out.push_str(&format!("{line:<width$}  # {}", m.layer));
            for (layer, value) in &m.overridden {
                out.push_str(&format!(" (overrides {value} from {layer})"));
            }
            out.push('\n');
        }
        out
    }

    /// Items whose value a later layer changed.
    pub fn overrides(&self) -> impl Iterator<Item = &MergedItem> {
        self.items.iter().filter(|m| !m.overridden.is_empty())
    }
}

/// A `.config` as symbol -> value (`n` for `is not set`); malformed lines are skipped.
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| parse_line(l).ok().flatten()).map(|i| (i.symbol, i.value)).collect()
}

/// Sets every merged item in a `.config` (replacing its line, or appending it), ready for
/// `make olddefconfig`.
pub fn apply(dotconfig: &str, merged: &Merged) -> String {
    let wanted: BTreeMap<&str, &MergedItem> = merged.items.iter().map(|m| (m.symbol.as_str(), m)).collect();
    let mut done = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(dotconfig.len() + 64 * merged.items.len());
    for line in dotconfig.lines() {
        match parse_line(line).ok().flatten() {
            Some(it) if wanted.contains_key(it.symbol.as_str()) => {
                if done.insert(it.symbol.clone()) {
                    let m = wanted[it.symbol.as_str()];
                    out.push_str(&Item { symbol: m.symbol.clone(), value: m.value.clone() }.render());
                    out.push('\n');
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for m in &merged.items {
        if !done.contains(&m.symbol) {
            out.push_str(&Item { symbol: m.symbol.clone(), value: m.value.clone() }.render());
            out.push('\n');
        }
    }
    out
}

/// A requested value the final `.config` does not have (unmet dependency, unknown symbol, or a
/// choice resolved otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub symbol: String,
    pub wanted: String,
    /// The final value (`n` when absent).
    pub got: String,
    /// The layer that asked for it.
    pub layer: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CONFIG_{}: {} asked for {}, the final .config has {}",
            self.symbol, self.layer, self.wanted, self.got
        )
    }
}

/// Compares the final `.config` with the merged request.
pub fn check(dotconfig: &str, merged: &Merged) -> Vec<Mismatch> {
    let have = parse_dotconfig(dotconfig);
    merged
        .items
        .iter()
        .filter_map(|m| {
            let got = have.get(&m.symbol).cloned().unwrap_or_else(|| "n".into());
            (got != m.value).then(|| Mismatch {
                symbol: m.symbol.clone(),
                wanted: m.value.clone(),
                got,
                layer: m.layer.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments_and_not_set() {
        let f = parse_fragment(
            "f",
            "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"-x\"\nCONFIG_N=0x10\nCONFIG_M=-3\n",
        )
        .unwrap();
        let got: Vec<_> = f.items.iter().map(|i| (i.symbol.as_str(), i.value.as_str())).collect();
        assert_eq!(got, [("A", "y"), ("B", "n"), ("S", "\"-x\""), ("N", "0x10"), ("M", "-3")]);
        assert_eq!(f.items[1].render(), "# CONFIG_B is not set");
        assert_eq!(f.items[2].render(), "CONFIG_S=\"-x\"");
    }

    #[test]
    fn rejects_malformed_lines_with_location() {
        let e = parse_fragment("user.config", "CONFIG_A=y\nBPF=y\n").unwrap_err();
        assert_eq!((e.layer.as_str(), e.line), ("user.config", 2));
        assert!(parse_fragment("f", "CONFIG_A=yes\n").unwrap_err().message.contains("must be y, m, n"));
        assert!(parse_fragment("f", "CONFIG_a=y\n").is_err());
        assert!(parse_fragment("f", "CONFIG_A\n").unwrap_err().message.contains("missing `=`"));
    }

    #[test]
    fn later_layers_win_and_overrides_are_recorded() {
        let base = parse_fragment("base", "CONFIG_A=y\nCONFIG_B=y\n").unwrap();
        let user = parse_fragment("user", "# CONFIG_A is not set\nCONFIG_C=m\nCONFIG_B=y\n").unwrap();
        let mand = parse_fragment("mandatory", "CONFIG_A=y\n").unwrap();
        let m = merge(&[base, user, mand]);
        assert_eq!(m.render(), "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=m\n");
        let a = &m.items[0];
        assert_eq!(a.layer, "mandatory");
        assert_eq!(
            a.overridden,
            [("base".to_string(), "y".to_string()), ("user".to_string(), "n".to_string())]
        );
        // Same value again is not an override, but the last layer is credited.
        assert_eq!((m.items[1].layer.as_str(), m.items[1].overridden.len()), ("user", 0));
        assert_eq!(m.overrides().count(), 1);
        let ann = m.render_annotated();
        assert!(
            ann.contains("CONFIG_A=y  # mandatory (overrides y from base) (overrides n from user)"),
            "{ann}"
        );
    }

    #[test]
    fn user_cannot_turn_off_mandatory_items() {
        let user = parse_fragment(
            "u",
            "# CONFIG_BPF_SYSCALL is not set\n# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_XDP_SOCKETS=y\n",
        )
        .unwrap();
        let m = merge(&layers(vec![user]));
        let v = |s: &str| m.items.iter().find(|i| i.symbol == s).map(|i| (i.value.clone(), i.layer.clone()));
        assert_eq!(v("BPF_SYSCALL"), Some(("y".into(), MANDATORY_LAYER.into())));
        assert_eq!(v("DEBUG_INFO_BTF"), Some(("y".into(), MANDATORY_LAYER.into())));
        assert_eq!(v("XDP_SOCKETS"), Some(("y".into(), "u".into())));
        // The guest's control port and BTF for modules are always requested.
        for s in ["VIRTIO_CONSOLE", "VIRTIO_PCI", "DEBUG_INFO_BTF_MODULES", "MODULES", "NET_CLS_BPF"] {
            assert_eq!(v(s).map(|x| x.0), Some("y".into()), "{s}");
        }
    }

    #[test]
    fn bundled_fragments_parse() {
        assert!(base_fragment().items.len() > 20);
        assert!(mandatory_fragment()
            .items
            .iter()
            .any(|i| i.symbol == "LOCALVERSION" && i.value == "\"-lockstep\""));
    }

    #[test]
    fn apply_replaces_in_place_and_appends() {
        let dot = "#\n# header\n#\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_A=m\n";
        let m = merge(&[parse_fragment("f", "CONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n").unwrap()]);
        assert_eq!(
            apply(dot, &m),
            "#\n# header\n#\nCONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_A=m\nCONFIG_D=\"x\"\n"
        );
        // A symbol listed twice in the .config is written once (the first place).
        let m2 = merge(&[parse_fragment("f", "CONFIG_A=n\n").unwrap()]);
        assert_eq!(apply(dot, &m2).matches("CONFIG_A").count(), 1);
    }

    #[test]
    fn check_reports_dropped_values() {
        let m = merge(&[parse_fragment(
            "f",
            "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_E=n\nCONFIG_S=\"a\"\n",
        )
        .unwrap()]);
        let final_config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_S=\"b\"\n";
        let mm = check(final_config, &m);
        let got: Vec<_> = mm.iter().map(|x| (x.symbol.as_str(), x.wanted.as_str(), x.got.as_str())).collect();
        // E absent = n: fine.
        assert_eq!(got, [("B", "n", "y"), ("C", "y", "n"), ("S", "\"a\"", "\"b\"")]);
        assert_eq!(mm[1].to_string(), "CONFIG_C: f asked for y, the final .config has n");
    }
}
