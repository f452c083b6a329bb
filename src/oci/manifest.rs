//! Manifests, indexes, image configs, and choosing this host's platform from an index.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Accept` header for manifests: every kind this client reads.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Layer media types and their compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => LayerCompression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => LayerCompression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => LayerCompression::Zstd,
        _ => return None,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// This host: Linux and the architecture of `uname -m`, in the Go names images use.
    pub fn host() -> Platform {
        let machine = std::fs::read_to_string("/proc/sys/kernel/arch")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::process::Command::new("uname")
                    .arg("-m")
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let (arch, variant) = go_arch(&machine);
        let mut host = Platform::new("linux", arch, variant);
        if arch == "amd64" {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            host.variant = amd64_level(&cpuinfo).map(|l| format!("v{l}"));
        }
        host
    }

    /// Parses `os/arch[/variant]`, e.g. `linux/arm/v7`.
    #[cfg(test)]
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty())?;
        let arch = it.next().filter(|x| !x.is_empty())?;
        let variant = it.next().filter(|x| !x.is_empty());
        if it.next().is_some() {
            return None;
        }
        Some(Platform::new(os, arch, variant))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `uname -m` to the GOARCH (and GOARM variant) names of image platforms.
pub fn go_arch(machine: &str) -> (&str, Option<&'static str>) {
    let little = cfg!(target_endian = "little");
    match machine {
        "x86_64" | "amd64" => ("amd64", None),
        "i386" | "i486" | "i586" | "i686" => ("386", None),
        "aarch64" | "arm64" | "aarch64_be" => ("arm64", None),
        "armv8l" => ("arm", Some("v8")),
        "armv7l" | "armv7" | "armv7hl" => ("arm", Some("v7")),
        "armv6l" | "armv6" => ("arm", Some("v6")),
        m if m.starts_with("armv5") => ("arm", Some("v5")),
        "ppc64le" => ("ppc64le", None),
        "ppc64" => ("ppc64", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        "loongarch64" => ("loong64", None),
        "mips64" if little => ("mips64le", None),
        "mips" if little => ("mipsle", None),
        m => (m, None),
    }
}

/// The platform images are published under for devbox's (Debian's) name of an architecture
/// (`armhf` is `linux/arm/v7`, `ppc64el` is `linux/ppc64le`).
pub fn platform_of_arch(arch: &str) -> Platform {
    let machine = match arch {
        "armhf" => "armv7l",
        "ppc64el" => "ppc64le",
        a => a,
    };
    let (a, variant) = go_arch(machine);
    Platform::new("linux", a, variant)
}

/// The x86-64 microarchitecture level (2, 3 or 4) of the CPU whose `/proc/cpuinfo` this is,
/// from its flags (the psABI's lists); None for the baseline. The first processor's flags
/// count: all of a machine's processors have the same.
pub fn amd64_level(cpuinfo: &str) -> Option<u8> {
    let flags: std::collections::BTreeSet<&str> = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "flags").then_some(v)
        })?
        .split_whitespace()
        .collect();
    let has = |all: &[&str]| all.iter().all(|f| flags.contains(f));
    let v2 = has(&[
        "cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3",
    ]);
    let v3 = v2
        && has(&[
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ]);
    let v4 = v3 && has(&["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]);
    match (v2, v3, v4) {
        (_, _, true) => Some(4),
        (_, true, _) => Some(3),
        (true, ..) => Some(2),
        _ => None,
    }
}

/// Variants a host can run, best first; `""` is an entry without a variant. None: any.
fn acceptable_variants(host: &Platform) -> Option<Vec<&'static str>> {
    let v = host.variant.as_deref().unwrap_or("");
    Some(match (host.architecture.as_str(), v) {
        ("arm64", _) => vec!["", "v8"],
        ("arm", "v8") => vec!["v8", "v7", "", "v6", "v5"],
        ("arm", "v7") => vec!["v7", "", "v6", "v5"],
        ("arm", "v6") => vec!["v6", "", "v5"],
        ("arm", "v5") => vec!["v5", ""],
        // x86-64 levels: the highest this CPU runs first (built for it), then lower ones,
        // then the baseline; a level above the CPU's is refused.
        ("amd64", "v4") => vec!["v4", "v3", "v2", "", "v1"],
        ("amd64", "v3") => vec!["v3", "v2", "", "v1"],
        ("amd64", "v2") => vec!["v2", "", "v1"],
        ("amd64", _) => vec!["", "v1"],
        _ => return None,
    })
}

/// Whether an index entry is not an image of a platform: BuildKit's attestations
/// (`vnd.docker.reference.type`), and entries without a platform or an `unknown` one.
fn is_skipped(d: &Descriptor) -> bool {
    if d.annotations.contains_key("vnd.docker.reference.type") {
        return true;
    }
    match &d.platform {
        None => true,
        Some(p) => {
            p.os.is_empty()
                || p.architecture.is_empty()
                || p.os == "unknown"
                || p.architecture == "unknown"
        }
    }
}

/// Chooses the entry of an index for `want`; on failure, the platforms the index offers.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    want: &Platform,
) -> Result<&'a Descriptor, Vec<String>> {
    let variants = acceptable_variants(want);
    let mut best: Option<(usize, &Descriptor)> = None;
    for d in manifests.iter().filter(|d| !is_skipped(d)) {
        let Some(p) = &d.platform else { continue };
        if p.os != want.os || p.architecture != want.architecture {
            continue;
        }
        let v = p.variant.as_deref().unwrap_or("");
        let rank = match &variants {
            Some(list) => match list.iter().position(|x| *x == v) {
                Some(r) => r,
                None => continue,
            },
            // Other architectures: an exact variant first, then any.
            None => usize::from(Some(v) != want.variant.as_deref()),
        };
        let better = match best {
            None => true,
            Some((r, _)) => rank < r,
        };
        if better {
            best = Some((rank, d));
        }
    }
    if let Some((_, d)) = best {
        return Ok(d);
    }
    let mut available: Vec<String> = manifests
        .iter()
        .filter(|d| !is_skipped(d))
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    available.sort();
    available.dedup();
    Err(available)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// Parses a manifest body. The kind comes from its `mediaType` field, else from the
/// Content-Type the registry sent, else from its shape (`manifests` or `layers`).
pub fn parse_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
        #[serde(default)]
        fs_layers: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(body).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let kind = probe.media_type.clone().or(ct);
    let is_schema1 = probe.schema_version == Some(1)
        || probe.fs_layers.is_some()
        || kind.as_deref().is_some_and(|k| DOCKER_SCHEMA1.contains(&k));
    if is_schema1 {
        return Err("it uses Docker's old schema-1 manifest format, which devbox does not read; pull a newer tag or re-push the image".into());
    }
    let index = match kind.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(format!(
                "its manifest type {other:?} is not a container image (it may be an artifact such as a Helm chart or a signature)"
            ))
        }
        None if probe.manifests.is_some() => true,
        None if probe.layers.is_some() => false,
        None => return Err("the manifest has neither layers nor manifests".into()),
    };
    let bad = |e: serde_json::Error| format!("the manifest is malformed: {e}");
    Ok(if index {
        Manifest::Index(serde_json::from_slice(body).map_err(bad)?)
    } else {
        Manifest::Image(serde_json::from_slice(body).map_err(bad)?)
    })
}

/// The parts of an image configuration devbox uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `KEY=value` entries of the image's environment (PATH among them, usually).
    pub env: Vec<String>,
    /// sha256 of each layer's uncompressed tar, in layer order.
    pub diff_ids: Vec<String>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
}

pub fn parse_config(body: &[u8]) -> Result<ImageConfig, String> {
    #[derive(Deserialize, Default)]
    struct Runtime {
        #[serde(rename = "Env", default)]
        env: Option<Vec<String>>,
        #[serde(rename = "Cmd", default)]
        cmd: Option<Vec<String>>,
        #[serde(rename = "Entrypoint", default)]
        entrypoint: Option<Vec<String>>,
        #[serde(rename = "WorkingDir", default)]
        working_dir: Option<String>,
        #[serde(rename = "User", default)]
        user: Option<String>,
        #[serde(rename = "Labels", default)]
        labels: Option<BTreeMap<String, String>>,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        os: String,
        #[serde(default)]
        variant: Option<String>,
        #[serde(default)]
        config: Option<Runtime>,
        rootfs: RootFs,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("{e}"))?;
    let rt = raw.config.unwrap_or_default();
    Ok(ImageConfig {
        env: rt.env.unwrap_or_default(),
        diff_ids: raw.rootfs.diff_ids,
        architecture: raw.architecture,
        os: raw.os,
        variant: raw.variant.filter(|v| !v.is_empty()),
        cmd: rt.cmd.unwrap_or_default(),
        entrypoint: rt.entrypoint.unwrap_or_default(),
        working_dir: rt.working_dir.filter(|w| !w.is_empty()),
        user: rt.user.filter(|u| !u.is_empty()),
        labels: rt.labels.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest_n: u8, plat: Option<(&str, &str, Option<&str>)>, attest: bool) -> Descriptor {
        let mut annotations = BTreeMap::new();
        if attest {
            annotations.insert(
                "vnd.docker.reference.type".to_string(),
                "attestation-manifest".to_string(),
            );
        }
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", format!("{digest_n:02x}").repeat(32)),
            size: 1,
            platform: plat.map(|(os, a, v)| Platform::new(os, a, v)),
            annotations,
        }
    }

    fn pick(list: &[Descriptor], want: &str) -> Result<u8, Vec<String>> {
        select_platform(list, &Platform::parse(want).unwrap())
            .map(|d| u8::from_str_radix(&d.digest[7..9], 16).unwrap())
    }

    #[test]
    fn selects_the_host_platform() {
        let list = vec![
            entry(1, Some(("linux", "arm64", Some("v8"))), false),
            entry(2, Some(("unknown", "unknown", None)), true),
            entry(3, Some(("linux", "amd64", None)), true), // attestation claiming amd64
            entry(4, None, false),
            entry(5, Some(("windows", "amd64", None)), false),
            entry(6, Some(("linux", "amd64", None)), false),
            entry(7, Some(("linux", "arm", Some("v6"))), false),
            entry(8, Some(("linux", "arm", Some("v7"))), false),
            entry(9, Some(("linux", "amd64", Some("v3"))), false),
            entry(10, Some(("linux", "riscv64", None)), false),
            entry(11, Some(("linux", "unknown", None)), false),
        ];
        assert_eq!(pick(&list, "linux/amd64"), Ok(6));
        assert_eq!(pick(&list, "linux/arm64"), Ok(1));
        assert_eq!(pick(&list, "linux/arm/v7"), Ok(8));
        assert_eq!(pick(&list, "linux/arm/v6"), Ok(7));
        assert_eq!(pick(&list, "linux/arm/v8"), Ok(8));
        assert_eq!(pick(&list, "linux/riscv64"), Ok(10));
        assert_eq!(pick(&list, "windows/amd64"), Ok(5));
        let err = pick(&list, "linux/s390x").unwrap_err();
        assert_eq!(
            err,
            [
                "linux/amd64",
                "linux/amd64/v3",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64/v8",
                "linux/riscv64",
                "windows/amd64"
            ]
        );
        // Only a v5 arm image: a v7 host runs it; a v5 host cannot run v7.
        let arm = vec![entry(1, Some(("linux", "arm", Some("v7"))), false)];
        assert!(pick(&arm, "linux/arm/v5").is_err());
        // The first of equally good entries wins.
        let two = vec![
            entry(1, Some(("linux", "amd64", None)), false),
            entry(2, Some(("linux", "amd64", None)), false),
        ];
        assert_eq!(pick(&two, "linux/amd64"), Ok(1));
        // An amd64 entry without a variant beats v1; v3 alone is refused.
        let amd = vec![
            entry(1, Some(("linux", "amd64", Some("v1"))), false),
            entry(2, Some(("linux", "amd64", None)), false),
        ];
        assert_eq!(pick(&amd, "linux/amd64"), Ok(2));
        let v3 = vec![entry(1, Some(("linux", "amd64", Some("v3"))), false)];
        assert_eq!(pick(&v3, "linux/amd64"), Err(vec!["linux/amd64/v3".into()]));
        // A v3 CPU takes the v3 build first, then v2, then the baseline; never v4.
        let levels = vec![
            entry(1, Some(("linux", "amd64", None)), false),
            entry(2, Some(("linux", "amd64", Some("v2"))), false),
            entry(3, Some(("linux", "amd64", Some("v3"))), false),
            entry(4, Some(("linux", "amd64", Some("v4"))), false),
        ];
        assert_eq!(pick(&levels, "linux/amd64/v3"), Ok(3));
        assert_eq!(pick(&levels[..2], "linux/amd64/v3"), Ok(2));
        assert_eq!(pick(&levels, "linux/amd64/v2"), Ok(2));
        assert_eq!(
            pick(&levels[3..], "linux/amd64/v3"),
            Err(vec!["linux/amd64/v4".into()])
        );
        assert_eq!(pick(&v3, "linux/amd64/v3"), Ok(1));
    }

    #[test]
    fn x86_64_levels_come_from_the_cpu_flags() {
        let base = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm";
        let v2 = format!("{base} pni ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm");
        let v3 = format!("{v2} fma movbe xsave avx f16c abm bmi1 avx2 bmi2");
        let v4 = format!("{v3} avx512f avx512dq avx512cd avx512bw avx512vl");
        let info = |flags: &str| {
            format!(
                "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
            )
        };
        assert_eq!(amd64_level(&info(base)), None);
        assert_eq!(amd64_level(&info(&v2)), Some(2));
        assert_eq!(amd64_level(&info(&v3)), Some(3));
        assert_eq!(amd64_level(&info(&v4)), Some(4));
        assert_eq!(amd64_level(&info(&v3.replace(" avx2", ""))), Some(2));
        assert_eq!(amd64_level(""), None);
    }

    #[test]
    fn maps_uname_machines() {
        assert_eq!(go_arch("x86_64"), ("amd64", None));
        assert_eq!(go_arch("aarch64"), ("arm64", None));
        assert_eq!(go_arch("armv7l"), ("arm", Some("v7")));
        assert_eq!(go_arch("armv6l"), ("arm", Some("v6")));
        assert_eq!(go_arch("armv5tel"), ("arm", Some("v5")));
        assert_eq!(go_arch("i686"), ("386", None));
        assert_eq!(go_arch("ppc64le"), ("ppc64le", None));
        assert_eq!(go_arch("s390x"), ("s390x", None));
        assert_eq!(go_arch("riscv64"), ("riscv64", None));
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.is_empty());
    }

    #[test]
    fn maps_devbox_arches_to_platforms() {
        let p = |a: &str| platform_of_arch(a).to_string();
        assert_eq!(p("amd64"), "linux/amd64");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(p("armhf"), "linux/arm/v7");
        assert_eq!(p("i386"), "linux/386");
        assert_eq!(p("ppc64el"), "linux/ppc64le");
        assert_eq!(p("s390x"), "linux/s390x");
        assert_eq!(p("riscv64"), "linux/riscv64");
        assert_eq!(p("loong64"), "linux/loong64");
    }

    #[test]
    fn parses_manifest_kinds() {
        let img = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2},"layers":[]}"#;
        assert!(matches!(parse_manifest(None, img), Ok(Manifest::Image(_))));
        // No mediaType field: from the Content-Type, else from the shape.
        let bare_idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(
                Some("application/vnd.docker.distribution.manifest.list.v2+json"),
                bare_idx
            ),
            Ok(Manifest::Index(_))
        ));
        assert!(matches!(
            parse_manifest(Some("application/json; charset=utf-8"), bare_idx),
            Ok(Manifest::Index(_))
        ));
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(parse_manifest(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            s1
        )
        .unwrap_err()
        .contains("schema-1"));
        let art =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
        assert!(parse_manifest(None, art).unwrap_err().contains("artifact"));
        assert!(parse_manifest(None, b"{").is_err());
    }

    #[test]
    fn parses_configs() {
        let c = parse_config(br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin","FOO=bar"],"Cmd":["/bin/sh"],"WorkingDir":"","User":"1000"},"rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]}}"#).unwrap();
        assert_eq!(c.env, ["PATH=/bin", "FOO=bar"]);
        assert_eq!(c.diff_ids, ["sha256:a", "sha256:b"]);
        assert_eq!(c.cmd, ["/bin/sh"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000"));
        // "config": null and missing fields are fine; a missing rootfs is not.
        let c = parse_config(
            br#"{"architecture":"arm64","os":"linux","config":null,"rootfs":{"diff_ids":[]}}"#,
        )
        .unwrap();
        assert!(c.env.is_empty());
        assert!(parse_config(br#"{"architecture":"arm64"}"#).is_err());
    }
}
