//! Pure logic of Debian kernel fetching: the kernel-name table, package names, file locations,
//! parsing `apt-cache` output, and the private `sources.list`.

use std::cmp::Ordering;
use std::sync::LazyLock;

use super::version;

/// How a kernel series is packaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `linux-image-<abi>-amd64-unsigned`, files in `boot/` (6.x).
    ImageUnsigned,
    /// `linux-binary-unsigned-<abi>-amd64` + `linux-base-<abi>-amd64`, image at
    /// `usr/lib/modules/<abi>-amd64/vmlinuz.unsigned` (7.x).
    BinaryUnsigned,
}

/// A kernel lockstep knows how to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// The name users type, e.g. `debian:7.3`.
    pub name: &'static str,
    /// Upstream series, e.g. `7.3`: ABIs must start with `<series>.`.
    pub series: &'static str,
    /// The Debian suite that carries it.
    pub suite: &'static str,
    /// The release the suite builds on (its libc, pahole), if it is a backports suite.
    pub base_suite: Option<&'static str>,
    pub scheme: Scheme,
}

/// The kernel table, `debian-kernels.tsv` (shared with the scripts).
const KERNEL_TABLE: &str = include_str!("../../debian-kernels.tsv");

/// Every supported kernel name, from [`KERNEL_TABLE`].
pub static KERNELS: LazyLock<Vec<KernelSpec>> =
    LazyLock::new(|| parse_kernel_table(KERNEL_TABLE).expect("debian-kernels.tsv is well-formed"));

/// Parses the kernel table: `#` comments, then rows of name, series, suite, base suite (`-`
/// for none), scheme.
pub fn parse_kernel_table(text: &'static str) -> Result<Vec<KernelSpec>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&'static str> = line.split('\t').collect();
        let [name, series, suite, base_suite, scheme] = cols[..] else {
            return Err(format!("debian-kernels.tsv:{}: want 5 tab-separated columns", n + 1));
        };
        let scheme = match scheme {
            "image-unsigned" => Scheme::ImageUnsigned,
            "binary-unsigned" => Scheme::BinaryUnsigned,
            other => return Err(format!("debian-kernels.tsv:{}: unknown scheme {other:?}", n + 1)),
        };
        let base_suite = (base_suite != "-").then_some(base_suite);
        out.push(KernelSpec { name, series, suite, base_suite, scheme });
    }
    Ok(out)
}

/// Looks a kernel name up in [`KERNELS`].
pub fn spec_for(name: &str) -> Option<&'static KernelSpec> {
    KERNELS.iter().find(|k| k.name == name)
}

impl KernelSpec {
    /// The package that names the ABI (the one whose name is searched for).
    pub fn image_package(&self, abi: &str) -> String {
        match self.scheme {
            Scheme::ImageUnsigned => format!("linux-image-{abi}-amd64-unsigned"),
            Scheme::BinaryUnsigned => format!("linux-binary-unsigned-{abi}-amd64"),
        }
    }

    /// Packages holding the kernel image and its config.
    pub fn image_packages(&self, abi: &str) -> Vec<String> {
        match self.scheme {
            Scheme::ImageUnsigned => vec![self.image_package(abi)],
            Scheme::BinaryUnsigned => {
                vec![self.image_package(abi), format!("linux-base-{abi}-amd64")]
            }
        }
    }

    /// Packages needed to build an out-of-tree module.
    pub fn header_packages(&self, abi: &str) -> Vec<String> {
        vec![
            format!("linux-headers-{abi}-amd64"),
            format!("linux-headers-{abi}-common"),
            format!("linux-kbuild-{abi}"),
        ]
    }

    /// Paths of (vmlinuz, config) relative to the unpacked tree.
    pub fn image_paths(&self, abi: &str) -> (String, String) {
        match self.scheme {
            Scheme::ImageUnsigned => {
                (format!("boot/vmlinuz-{abi}-amd64"), format!("boot/config-{abi}-amd64"))
            }
            Scheme::BinaryUnsigned => (
                format!("usr/lib/modules/{abi}-amd64/vmlinuz.unsigned"),
                format!("usr/lib/modules/{abi}-amd64/config"),
            ),
        }
    }

    /// Extracts the ABI from an image package name, if it is one of this series.
    pub fn abi_of(&self, package: &str) -> Option<String> {
        let abi = match self.scheme {
            Scheme::ImageUnsigned => package.strip_prefix("linux-image-")?.strip_suffix("-amd64-unsigned")?,
            Scheme::BinaryUnsigned => {
                package.strip_prefix("linux-binary-unsigned-")?.strip_suffix("-amd64")?
            }
        };
        if abi.contains('-') {
            return None; // a flavour such as `-cloud` or `-rt`
        }
        let rest = abi.strip_prefix(self.series)?.strip_prefix('.')?;
        // `<patch>+deb<N>[...]`: the patch level is numeric (excludes flavours and rc ABIs).
        let patch = rest.split('+').next()?;
        (!patch.is_empty() && patch.chars().all(|c| c.is_ascii_digit())).then(|| abi.to_string())
    }

    /// The ABIs of this series among `apt-cache pkgnames` output, newest first.
    pub fn abis(&self, pkgnames: &str) -> Vec<String> {
        let mut v: Vec<String> = pkgnames.lines().filter_map(|l| self.abi_of(l.trim())).collect();
        v.sort_by(|a, b| version::compare(b, a));
        v.dedup();
        v
    }
}

/// One stanza of `apt-cache show` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    pub package: String,
    pub version: String,
    /// Size of the .deb in bytes.
    pub size: Option<u64>,
    /// SHA256 of the .deb from the package index (whose signature apt verified).
    pub sha256: Option<String>,
}

/// Parses `apt-cache show` output into stanzas.
pub fn parse_show(text: &str) -> Vec<PackageInfo> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut package = None;
        let mut ver = None;
        let mut size = None;
        let mut sha256 = None;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                package = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                ver = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Size: ") {
                size = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("SHA256: ") {
                sha256 = Some(v.trim().to_string());
            }
        }
        if let (Some(package), Some(version)) = (package, ver) {
            out.push(PackageInfo { package, version, size, sha256 });
        }
    }
    out
}

/// The newest version of `package` in `apt-cache show` output.
pub fn newest(infos: &[PackageInfo], package: &str) -> Option<PackageInfo> {
    infos
        .iter()
        .filter(|i| i.package == package)
        .max_by(|a, b| version::compare(&a.version, &b.version))
        .cloned()
}

/// The mirror URI: the first `URIs:` value of a deb822 sources file.
pub fn mirror_from_sources(deb822: &str) -> Option<String> {
    deb822
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| l.trim().strip_prefix("URIs:"))
        .and_then(|v| v.split_whitespace().next())
        .map(|s| s.trim_end_matches('/').to_string())
}

/// The private one-line `sources.list` for a suite.
pub fn sources_list(mirror: &str, suite: &str, keyring: &str) -> String {
    format!("deb [signed-by={keyring}] {mirror} {suite} main\n")
}

/// Whether `apt-get update` output reports a signature it could not verify.
pub fn update_has_key_problem(output: &str) -> bool {
    ["NO_PUBKEY", "is not signed", "EXPKEYSIG", "KEYEXPIRED", "signatures couldn't be verified"]
        .iter()
        .any(|m| output.contains(m))
}

/// The file name `apt-get download` gives a package (`:` in versions becomes `%3a`).
pub fn deb_file_name(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Orders cached versions newest first.
pub fn cmp_newest_first(a: &str, b: &str) -> Ordering {
    version::compare(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_table_has_the_three_debian_kernels() {
        let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
        assert_eq!(names, ["debian:6.12", "debian:7.2", "debian:7.3"]);
        let k73 = spec_for("debian:7.3").unwrap();
        assert_eq!(
            (k73.suite, k73.base_suite, k73.scheme),
            ("trixie-backports", Some("trixie"), Scheme::BinaryUnsigned)
        );
        assert_eq!(spec_for("debian:7.2").unwrap().base_suite, None);
    }

    #[test]
    fn a_malformed_kernel_table_row_is_located() {
        let e = parse_kernel_table("# c\ndebian:9\t9\tsid\n").unwrap_err();
        assert!(e.contains(":2:"), "{e}");
        let e = parse_kernel_table("debian:9\t9\tsid\t-\tzip\n").unwrap_err();
        assert!(e.contains("unknown scheme"), "{e}");
    }

    const PKGNAMES: &str = "linux-base-7.3.4+deb13-amd64\nlinux-binary-unsigned-7.2.9+deb13-amd64\n\
        linux-binary-unsigned-7.3.4+deb13-amd64\nlinux-binary-unsigned-7.3.10+deb13-amd64\n\
        linux-binary-unsigned-7.3.10+deb13-cloud-amd64\nlinux-image-7.3.4+deb13-amd64\n\
        linux-binary-unsigned-7.30.1+deb13-amd64\n";

    #[test]
    fn abis_filter_series_and_sort_newest_first() {
        let k = spec_for("debian:7.3").unwrap();
        assert_eq!(k.abis(PKGNAMES), vec!["7.3.10+deb13", "7.3.4+deb13"]);
        let k612 = spec_for("debian:6.12").unwrap();
        let names = "linux-image-6.12.95+deb12-amd64-unsigned\nlinux-image-6.12.90+deb12.1-amd64-unsigned\n\
                     linux-image-6.12.95+deb12-amd64\nlinux-image-6.1.0-30-amd64-unsigned\n";
        assert_eq!(k612.abis(names), vec!["6.12.95+deb12", "6.12.90+deb12.1"]);
    }

    #[test]
    fn package_names_and_paths() {
        let k = spec_for("debian:7.2").unwrap();
        assert_eq!(k.suite, "sid");
        assert_eq!(
            k.image_packages("7.2.13+deb14"),
            ["linux-binary-unsigned-7.2.13+deb14-amd64", "linux-base-7.2.13+deb14-amd64"]
        );
        assert_eq!(
            k.header_packages("7.2.13+deb14"),
            [
                "linux-headers-7.2.13+deb14-amd64",
                "linux-headers-7.2.13+deb14-common",
                "linux-kbuild-7.2.13+deb14"
            ]
        );
        assert_eq!(k.image_paths("7.2.13+deb14").0, "usr/lib/modules/7.2.13+deb14-amd64/vmlinuz.unsigned");
        let k612 = spec_for("debian:6.12").unwrap();
        assert_eq!(k612.image_packages("6.12.95+deb12"), ["linux-image-6.12.95+deb12-amd64-unsigned"]);
        assert_eq!(k612.image_paths("6.12.95+deb12").1, "boot/config-6.12.95+deb12-amd64");
        assert!(spec_for("debian:9.9").is_none());
    }

    #[test]
    fn parse_show_picks_newest() {
        let text = "Package: linux-base-7.3.4+deb13-amd64\nVersion: 7.3.4-1~bpo13+1\nSize: 1234\n\n\
                    Package: linux-base-7.3.4+deb13-amd64\nVersion: 7.3.4-1~bpo13+2\nSize: 99\nSHA256: 00ff\nDescription: x\n y\n\n";
        let infos = parse_show(text);
        assert_eq!(infos.len(), 2);
        let n = newest(&infos, "linux-base-7.3.4+deb13-amd64").unwrap();
        assert_eq!((n.version.as_str(), n.size), ("7.3.4-1~bpo13+2", Some(99)));
        assert_eq!((n.sha256.as_deref(), infos[0].sha256.as_deref()), (Some("00ff"), None));
        assert!(newest(&infos, "other").is_none());
    }

    #[test]
    fn mirror_and_sources() {
        let d = "Types: deb\n# URIs: http://commented.invalid/x\nURIs: http://mirror.invalid/debian/ http://b.invalid\nSuites: bookworm\n";
        let m = mirror_from_sources(d).unwrap();
        assert_eq!(m, "http://mirror.invalid/debian");
        assert_eq!(
            sources_list(&m, "sid", "/k.gpg"),
            "deb [signed-by=/k.gpg] http://mirror.invalid/debian sid main\n"
        );
        assert!(mirror_from_sources("Types: deb\n").is_none());
    }

    #[test]
    fn key_problems_and_file_names() {
        assert!(update_has_key_problem("W: GPG error: ... NO_PUBKEY 6ED0E7B82643E131"));
        assert!(!update_has_key_problem("Hit:1 ... InRelease\nReading package lists..."));
        assert_eq!(deb_file_name("p", "1:2.0-1", "amd64"), "p_1%3a2.0-1_amd64.deb");
    }
}
