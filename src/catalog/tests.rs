//! Catalog-level tests: the builtin files, lookup, search, layering, and `resolve` against a
//! real HTTP server on loopback (never the internet).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;
use crate::test_http::{Request, Response, Server};

fn builtin() -> Catalog {
    Catalog::builtin().expect("builtin catalog")
}

fn repo_images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("images")
}

// ---------------------------------------------------------------------------------------------
// The builtin files

#[test]
fn every_images_file_is_builtin_and_named_after_its_id() {
    let mut on_disk = BTreeSet::new();
    for de in std::fs::read_dir(repo_images()).unwrap() {
        let p = de.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            on_disk.insert(p.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    let builtin: BTreeSet<String> = BUILTIN.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(on_disk, builtin, "images/*.toml and BUILTIN differ");
    for (stem, text) in BUILTIN {
        let e = parse_entry(text).unwrap_or_else(|e| panic!("images/{stem}.toml: {e:#}"));
        assert_eq!(&e.id, stem, "images/{stem}.toml defines id {:?}", e.id);
        assert_eq!(
            *text,
            std::fs::read_to_string(repo_images().join(format!("{stem}.toml"))).unwrap()
        );
        assert!(
            text.starts_with("# devbox catalog entry") && text.contains("src/catalog/mod.rs"),
            "images/{stem}.toml should open with the format comment"
        );
        assert!(
            text.contains("could not be checked"),
            "images/{stem}.toml should say its URLs are unverified"
        );
    }
}

#[test]
fn builtin_entries_parse_and_validate() {
    let cat = builtin();
    let ids: Vec<&str> = cat.entries.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "almalinux",
            "alpine",
            "archlinux",
            "debian",
            "fedora",
            "opensuse",
            "rockylinux",
            "ubuntu",
            "void"
        ]
    );
    for l in cat.entries.values() {
        assert_eq!(l.origin, Origin::Builtin);
    }
}

#[test]
fn release_names_are_unique_and_default_exists() {
    for l in builtin().entries.values() {
        let e = &l.entry;
        let mut seen = BTreeSet::new();
        for r in &e.releases {
            for n in std::iter::once(&r.name).chain(&r.aliases) {
                assert!(seen.insert(n.clone()), "{}: {n} used twice", e.id);
            }
        }
        assert!(
            e.releases.iter().any(|r| r.name == e.default_release),
            "{}: default_release {} missing",
            e.id,
            e.default_release
        );
        // Distribution aliases are unique across the catalog too.
        assert!(!e.aliases.contains(&e.id));
    }
    let mut all = BTreeSet::new();
    for l in builtin().entries.values() {
        for n in std::iter::once(&l.entry.id).chain(&l.entry.aliases) {
            assert!(all.insert(n.clone()), "distribution name {n} used twice");
        }
    }
}

#[test]
fn every_release_has_sources_for_amd64_and_arm64() {
    let cat = builtin();
    for l in cat.entries.values() {
        let e = &l.entry;
        for s in &e.sources {
            let map = e.arch_map(s).unwrap_or_else(|| {
                panic!("{}: {} source without arch map", e.id, s.kind().as_str())
            });
            assert!(map.contains_key("amd64"), "{}: {:?}", e.id, s.kind());
        }
        for r in &e.releases {
            for arch in ["amd64", "arm64"] {
                let c = cat
                    .lookup_for_arch(&format!("{}:{}", e.id, r.name), arch)
                    .unwrap_or_else(|err| panic!("{}:{} on {arch}: {err}", e.id, r.name));
                assert!(!c.sources.is_empty());
                for s in &c.sources {
                    match &s.kind {
                        SourceKind::Oci { image } => assert!(!image.contains('{'), "{image}"),
                        SourceKind::Simplestreams { url, product } => {
                            assert!(url.starts_with("https://"), "{url}");
                            assert_eq!(product.split(':').count(), 4, "{product}");
                        }
                        SourceKind::Sumsfile { url, pattern, base } => {
                            assert!(url.starts_with("https://"), "{url}");
                            assert!(base.starts_with("https://"), "{base}");
                            assert!(pattern.contains("{version}"), "{pattern}");
                        }
                        SourceKind::Alpine { url, .. } => assert!(url.starts_with("https://")),
                        SourceKind::Pinned { url, .. } => assert!(url.starts_with("https://")),
                        SourceKind::Archive {
                            distro,
                            suite,
                            components,
                            apt_components,
                        } => {
                            assert_eq!(distro, &e.id);
                            assert!(!suite.contains('{'), "{suite}");
                            assert_eq!(components, &["main"]);
                            // Ubuntu's boxes can install from universe; Debian's name main.
                            let apt: &[&str] = if e.id == "ubuntu" {
                                &["main", "universe"]
                            } else {
                                &["main"]
                            };
                            assert_eq!(apt_components, apt);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn toolbox_ready_images_come_first() {
    let cat = builtin();
    for l in cat.entries.values() {
        let c = cat.lookup_for_arch(&l.entry.id, "amd64").unwrap();
        let any = c.sources.iter().any(|s| s.toolbox_ready);
        // Alpine's toolbox image is confirmed for edge only; for the default release (3.24)
        // it is tried last, after the sources that are confirmed (images/alpine.toml).
        if any && c.distro != "alpine" {
            assert!(c.sources[0].toolbox_ready, "{}: {:?}", c.distro, c.sources);
            assert_eq!(c.sources[0].kind_name(), "oci");
        }
        assert!(
            c.toolbox_notes.is_some(),
            "{} has no toolbox_notes",
            c.distro
        );
    }
    assert!(!builtin().search(Some("void"))[0].toolbox_ready);
    let kinds = |r: &str| -> Vec<(&'static str, bool)> {
        cat.lookup_for_arch(r, "amd64")
            .unwrap()
            .sources
            .iter()
            .map(|s| (s.kind_name(), s.toolbox_ready))
            .collect()
    };
    assert_eq!(
        kinds("alpine:edge"),
        [("oci", true), ("alpine", false), ("simplestreams", false)]
    );
    assert_eq!(
        kinds("alpine"),
        [("alpine", false), ("simplestreams", false), ("oci", true)]
    );
}

#[test]
fn the_required_distributions_and_releases_are_there() {
    let cat = builtin();
    for r in [
        "debian:12",
        "debian:13",
        "debian:testing",
        "debian:sid",
        "ubuntu:22.04",
        "ubuntu:24.04",
        "ubuntu:26.04",
        "alpine:stable",
        "alpine:edge",
        "archlinux",
        "opensuse:tumbleweed",
        "opensuse:leap",
        "rockylinux",
        "almalinux",
        "void",
    ] {
        cat.lookup_for_arch(r, "amd64")
            .unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    let fedora = &builtin().search(Some("fedora"))[0];
    assert_eq!(fedora.releases.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Lookup

#[test]
fn alias_resolution_table() {
    let cat = builtin();
    let table = [
        ("debian", "debian", "13"),
        ("debian:13", "debian", "13"),
        ("debian:trixie", "debian", "13"),
        ("debian:stable", "debian", "13"),
        ("  Debian:Trixie ", "debian", "13"),
        ("debian:12", "debian", "12"),
        ("debian:bookworm", "debian", "12"),
        ("debian:oldstable", "debian", "12"),
        ("debian:forky", "debian", "testing"),
        ("debian:unstable", "debian", "sid"),
        ("ubuntu", "ubuntu", "26.04"),
        ("ubuntu:noble", "ubuntu", "24.04"),
        ("ubuntu:jammy", "ubuntu", "22.04"),
        ("ubuntu:lts", "ubuntu", "26.04"),
        ("ubuntu:26.10", "ubuntu", "26.10"),
        ("fedora", "fedora", "45"),
        ("fedora:44", "fedora", "44"),
        ("arch", "archlinux", "latest"),
        ("archlinux:rolling", "archlinux", "latest"),
        ("alpine", "alpine", "3.24"),
        ("alpine:latest-stable", "alpine", "3.24"),
        ("alpine:v3.23", "alpine", "3.23"),
        ("alpine:edge", "alpine", "edge"),
        ("opensuse", "opensuse", "tumbleweed"),
        ("suse:leap", "opensuse", "16.0"),
        ("opensuse:tw", "opensuse", "tumbleweed"),
        ("rocky", "rockylinux", "10"),
        ("rockylinux:9", "rockylinux", "9"),
        ("alma:8", "almalinux", "8"),
        ("void", "void", "glibc"),
        ("voidlinux:musl", "void", "musl"),
    ];
    for (reference, distro, release) in table {
        let c = cat
            .lookup_for_arch(reference, "amd64")
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(
            (c.distro.as_str(), c.release.as_str()),
            (distro, release),
            "{reference}"
        );
        assert_eq!(c.arch, "amd64");
    }
}

#[test]
fn sources_are_expanded_for_release_and_arch() {
    let cat = builtin();
    let c = cat.lookup_for_arch("debian:trixie", "amd64").unwrap();
    assert_eq!(c.family, "apt");
    assert_eq!(
        c.sources,
        vec![
            Source {
                kind: SourceKind::Oci {
                    image: "quay.io/toolbx-images/debian-toolbox:13".into()
                },
                arch: "amd64".into(),
                toolbox_ready: true,
            },
            Source {
                kind: SourceKind::Simplestreams {
                    url: "https://images.linuxcontainers.org".into(),
                    product: "debian:trixie:amd64:default".into()
                },
                arch: "amd64".into(),
                toolbox_ready: false,
            },
            Source {
                kind: SourceKind::Archive {
                    distro: "debian".into(),
                    suite: "trixie".into(),
                    components: vec!["main".into()],
                    apt_components: vec!["main".into()],
                },
                arch: "amd64".into(),
                toolbox_ready: false,
            },
        ]
    );
    let c = cat.lookup_for_arch("debian:sid", "arm64").unwrap();
    assert_eq!(
        c.sources[0].kind,
        SourceKind::Oci {
            image: "quay.io/toolbx-images/debian-toolbox:unstable".into()
        }
    );

    let c = cat.lookup_for_arch("ubuntu:24.04", "arm64").unwrap();
    assert_eq!(
        c.sources[1].kind,
        SourceKind::Sumsfile {
            url: "https://cdimage.ubuntu.com/ubuntu-base/releases/24.04/release/SHA256SUMS".into(),
            pattern: "ubuntu-base-{version}-base-arm64.tar.gz".into(),
            base: "https://cdimage.ubuntu.com/ubuntu-base/releases/24.04/release".into(),
        }
    );
    // 26.10 has no codename, so the LXC server (codename-keyed) is not offered for it; its
    // toolbox image is not confirmed, so it comes after the ubuntu-base tarball.
    let kinds: Vec<&str> = cat
        .lookup_for_arch("ubuntu:26.10", "amd64")
        .unwrap()
        .sources
        .iter()
        .map(|s| s.kind_name())
        .collect();
    assert_eq!(kinds, ["sumsfile", "oci"]);

    // Arch Linux on arm64: only the LXC images.
    let c = cat.lookup_for_arch("arch", "arm64").unwrap();
    assert_eq!(c.sources.len(), 1);
    assert_eq!(
        c.sources[0].kind,
        SourceKind::Simplestreams {
            url: "https://images.linuxcontainers.org".into(),
            product: "archlinux:current:arm64:default".into()
        }
    );

    let c = cat.lookup_for_arch("void:musl", "amd64").unwrap();
    assert_eq!(
        c.sources[0].kind,
        SourceKind::Sumsfile {
            url: "https://repo-default.voidlinux.org/live/current/sha256sum.txt".into(),
            pattern: "void-x86_64-musl-ROOTFS-{version}.tar.xz".into(),
            base: "https://repo-default.voidlinux.org/live/current".into(),
        }
    );
    assert_eq!(c.sources[0].arch, "x86_64");
    assert_eq!(c.sources.len(), 3);
    assert_eq!(
        c.sources[1].kind,
        SourceKind::Simplestreams {
            url: "https://images.linuxcontainers.org".into(),
            product: "voidlinux:current:amd64:musl".into()
        }
    );

    let c = cat.lookup_for_arch("alpine:edge", "arm64").unwrap();
    assert_eq!(
        c.sources[1].kind,
        SourceKind::Alpine {
            url: "https://dl-cdn.alpinelinux.org/alpine/edge/releases/aarch64/latest-releases.yaml"
                .into(),
            flavor: "alpine-minirootfs".into()
        }
    );

    let c = cat.lookup_for_arch("opensuse:leap", "amd64").unwrap();
    let kinds: Vec<&str> = c.sources.iter().map(|s| s.kind_name()).collect();
    assert_eq!(kinds, ["simplestreams", "oci"]);
    assert!(c.sources.iter().all(|s| !s.toolbox_ready));
}

#[test]
fn host_arch_is_a_devbox_arch() {
    let a = host_arch();
    assert!(schema::ARCHES.contains(&a) || a == "ppc64", "{a}");
    #[cfg(target_arch = "x86_64")]
    assert_eq!(a, "amd64");
    #[cfg(target_arch = "aarch64")]
    assert_eq!(a, "arm64");
    // `lookup` is `lookup_for_arch` with the host's arch.
    if a == "amd64" || a == "arm64" {
        let cat = builtin();
        assert_eq!(
            cat.lookup("debian").unwrap(),
            cat.lookup_for_arch("debian", a).unwrap()
        );
    }
}

#[test]
fn unknown_names_suggest_close_matches() {
    let cat = builtin();
    let cases: &[(&str, &[&str])] = &[
        ("debain", &["debian"]),
        ("ubunt", &["ubuntu"]),
        ("fedroa", &["fedora"]),
        ("fed", &["fedora"]),
        ("debian13", &["debian"]),
        ("alpin", &["alpine"]),
        ("rockylinx", &["rockylinux"]),
    ];
    for (given, want) in cases {
        match cat.lookup_for_arch(given, "amd64") {
            Err(CatalogError::UnknownDistro {
                given: g,
                suggestions,
            }) => {
                assert_eq!(&g, given);
                for w in *want {
                    assert!(
                        suggestions.contains(&w.to_string()),
                        "{given}: {suggestions:?}"
                    );
                }
            }
            other => panic!("{given}: {other:?}"),
        }
    }
    let e = cat.lookup_for_arch("debain:13", "amd64").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("unknown distribution \"debain\""), "{msg}");
    assert!(msg.contains("did you mean: debian?"), "{msg}");
    assert!(msg.contains("devbox image search"), "{msg}");

    let e = cat.lookup_for_arch("xyzzy", "amd64").unwrap_err();
    assert_eq!(
        e,
        CatalogError::UnknownDistro {
            given: "xyzzy".into(),
            suggestions: vec![]
        }
    );
    assert!(!e.to_string().contains("did you mean"));

    // "a" is a prefix of several: all are offered, nothing is picked.
    match cat.lookup_for_arch("a", "amd64").unwrap_err() {
        CatalogError::UnknownDistro { suggestions, .. } => {
            for w in ["almalinux", "alpine", "arch", "archlinux", "alma"] {
                assert!(suggestions.contains(&w.to_string()), "{suggestions:?}");
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_releases_list_the_real_ones() {
    let cat = builtin();
    let e = cat.lookup_for_arch("debian:trixy", "amd64").unwrap_err();
    match &e {
        CatalogError::UnknownRelease {
            distro,
            given,
            suggestions,
            available,
        } => {
            assert_eq!(distro, "debian");
            assert_eq!(given, "trixy");
            assert_eq!(suggestions, &["trixie"]);
            assert_eq!(
                available,
                &[
                    "13 (trixie, stable)",
                    "12 (bookworm, oldstable)",
                    "testing (forky)",
                    "sid (unstable)"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("debian has no release \"trixy\""), "{msg}");
    assert!(msg.contains("did you mean: trixie?"), "{msg}");
    assert!(msg.contains("releases: 13 (trixie, stable)"), "{msg}");

    match cat.lookup_for_arch("fedora:4", "amd64").unwrap_err() {
        CatalogError::UnknownRelease { suggestions, .. } => {
            assert_eq!(suggestions, ["44", "45"]);
        }
        other => panic!("{other:?}"),
    }
    match cat.lookup_for_arch("ubuntu:24.10", "amd64").unwrap_err() {
        CatalogError::UnknownRelease { suggestions, .. } => {
            assert!(
                suggestions.contains(&"24.04".to_string()),
                "{suggestions:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_references_are_refused() {
    let cat = builtin();
    for r in ["", "  ", ":13", "debian:", "debian:13:x", ":"] {
        match cat.lookup_for_arch(r, "amd64") {
            Err(CatalogError::BadReference { given }) => assert_eq!(given, r),
            other => panic!("{r:?}: {other:?}"),
        }
    }
    let msg = cat
        .lookup_for_arch("debian:", "amd64")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("DISTRO:RELEASE"), "{msg}");
}

/// What `devbox image check` goes through: every release of a name, one release, the whole
/// catalog; canonical names, no repeats, errors as `lookup` gives them.
#[test]
fn releases_are_named_for_checking() {
    let cat = builtin();
    let all = cat.releases_named(&[]).unwrap();
    assert!(all.contains(&"debian:13".to_string()), "{all:?}");
    assert!(all.contains(&"archlinux:latest".to_string()), "{all:?}");
    let n = |refs: &[&str]| {
        let refs: Vec<String> = refs.iter().map(|s| s.to_string()).collect();
        cat.releases_named(&refs)
    };
    let deb = n(&["debian"]).unwrap();
    assert_eq!(deb[0], "debian:13");
    assert!(deb.len() >= 3 && deb.iter().all(|r| r.starts_with("debian:")));
    assert_eq!(
        n(&["debian:trixie", "debian:13", "Arch"]).unwrap(),
        ["debian:13", "archlinux:latest"]
    );
    assert!(matches!(
        n(&["debian:99"]),
        Err(CatalogError::UnknownRelease { .. })
    ));
    assert!(matches!(
        n(&["debain"]),
        Err(CatalogError::UnknownDistro { .. })
    ));
    assert!(matches!(
        n(&["debian:"]),
        Err(CatalogError::BadReference { .. })
    ));
}

#[test]
fn no_image_for_the_architecture_says_which_exist() {
    let cat = builtin();
    let e = cat.lookup_for_arch("archlinux", "riscv64").unwrap_err();
    assert_eq!(
        e,
        CatalogError::NoImageForArch {
            distro: "archlinux".into(),
            release: "latest".into(),
            arch: "riscv64".into(),
            available: vec!["amd64".into(), "arm64".into()],
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("no image for this machine's architecture (riscv64)"),
        "{msg}"
    );
    assert!(msg.contains("it has images for: amd64, arm64"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Layers: builtin, then directories

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const MINI: &str = r#"
id = "ID"
name = "Mini"
aliases = ALIASES
family = "apk"
default_release = "1"
[[release]]
name = "1"
aliases = ["one"]
[arch.pinned]
amd64 = "x86_64"
[[source]]
kind = "pinned"
url = "https://example.org/{id}-{release}-{arch}.tar"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn mini(id: &str, aliases: &[&str]) -> String {
    MINI.replace("ID", id)
        .replace("ALIASES", &format!("{aliases:?}"))
}

#[test]
fn directories_add_and_override_entries() {
    let user = tempfile::tempdir().unwrap();
    let extra = tempfile::tempdir().unwrap();
    // A user file replaces the builtin debian entry whole.
    let deb = write(user.path(), "debian.toml", &mini("debian", &[]));
    write(user.path(), "mini.toml", &mini("mini", &["mn"]));
    write(user.path(), "README.md", "not a catalog file");
    // A later directory wins over an earlier one.
    let mini2 = write(extra.path(), "zz-mini.toml", &mini("mini", &[]));
    let missing = user.path().join("does-not-exist");
    let cat = Catalog::from_dirs(&[user.path(), missing.as_path(), extra.path()]).unwrap();

    let c = cat.lookup_for_arch("debian", "amd64").unwrap();
    assert_eq!(c.release, "1");
    assert_eq!(
        c.sources[0].kind,
        SourceKind::Pinned {
            url: "https://example.org/debian-1-x86_64.tar".into(),
            sha256: "0".repeat(64)
        }
    );
    assert!(cat.lookup_for_arch("debian:trixie", "amd64").is_err());
    let row = |id: &str| cat.search(None).into_iter().find(|r| r.id == id).unwrap();
    assert_eq!(row("debian").origin, deb.display().to_string());
    assert_eq!(row("mini").origin, mini2.display().to_string());
    assert!(
        cat.lookup_for_arch("mn", "amd64").is_err(),
        "the override dropped the alias"
    );
    assert_eq!(
        cat.lookup_for_arch("mini:one", "amd64").unwrap().release,
        "1"
    );
    // Builtins not overridden are still there.
    assert_eq!(
        cat.lookup_for_arch("arch", "amd64").unwrap().distro,
        "archlinux"
    );
}

#[test]
fn a_bad_file_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.toml",
        &mini("bad", &[]).replace("kind = \"pinned\"", "kind = \"pinned\"\nimage = \"x\""),
    );
    let e = format!("{:#}", Catalog::from_dirs(&[dir.path()]).unwrap_err());
    assert!(e.contains(&p.display().to_string()), "{e}");
    assert!(e.contains("unknown field `image`"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.toml",
        &mini("bad", &[]).replace("{arch}.tar", "{arhc}.tar"),
    );
    let e = format!("{:#}", Catalog::from_dirs(&[dir.path()]).unwrap_err());
    assert!(e.contains("unknown variable {arhc}"), "{e}");
    assert!(e.contains("source 1 (pinned)"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.toml", &mini("same", &[]));
    write(dir.path(), "b.toml", &mini("same", &[]));
    let e = format!("{:#}", Catalog::from_dirs(&[dir.path()]).unwrap_err());
    assert!(e.contains("both define \"same\""), "{e}");
}

#[test]
fn validation_catches_mistakes() {
    let base = mini("x", &[]);
    let cases = [
        (
            base.replace("default_release = \"1\"", "default_release = \"one\""),
            "aliases do not count",
        ),
        (
            base.replace("aliases = [\"one\"]", "aliases = [\"1\"]"),
            "used twice",
        ),
        (
            base.replace("family = \"apk\"", "family = \"yum\""),
            "unknown variant `yum`",
        ),
        (
            base.replace("kind = \"pinned\"", "kind = \"ftp\""),
            "unknown variant `ftp`",
        ),
        (
            base.replace("[arch.pinned]", "[arch.pined]"),
            "unknown source kind",
        ),
        (
            base.replace("amd64 = \"x86_64\"", "x86_64 = \"x86_64\""),
            "unknown architecture",
        ),
        (base.replace("0000", "zzzz"), "64 hexadecimal"),
        (base.replace("https://", "ftp://"), "not an http"),
        (base.replace("id = \"x\"", "id = \"X\""), "lowercase"),
        (
            base.replace("[[source]]", "[[source]]\nreleases = [\"2\"]"),
            "not the name of a [[release]]",
        ),
        (
            base.replace(
                "aliases = [\"one\"]",
                "aliases = [\"one\"]\nvars = { arch = \"x\" }",
            ),
            "reserved",
        ),
    ];
    for (text, want) in cases {
        let e = format!("{:#}", parse_entry(&text).unwrap_err());
        assert!(e.contains(want), "want {want:?} in:\n{e}");
    }
    // A source without any arch map.
    let e = format!(
        "{:#}",
        parse_entry(&base.replace("[arch.pinned]\namd64 = \"x86_64\"\n", "")).unwrap_err()
    );
    assert!(e.contains("no arch map"), "{e}");
    // Per-arch digests must cover every arch of the map.
    let per_arch = base
        .replace(
            "[arch.pinned]\namd64 = \"x86_64\"",
            "[arch.pinned]\namd64 = \"x86_64\"\narm64 = \"aarch64\"",
        )
        .replace(
            "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
            &format!("sha256 = {{ amd64 = \"{}\" }}", "a".repeat(64)),
        );
    let e = format!("{:#}", parse_entry(&per_arch).unwrap_err());
    assert!(e.contains("no digest for arm64"), "{e}");
    // An archive source's apt_components keep every component the root comes from.
    let archive = |extra: &str| {
        format!(
            "id = \"x\"\nname = \"X\"\nfamily = \"apt\"\ndefault_release = \"1\"\n\
             [[release]]\nname = \"1\"\n[arch.archive]\namd64 = \"amd64\"\n\
             [[source]]\nkind = \"archive\"\n{extra}\n"
        )
    };
    parse_entry(&archive("")).unwrap();
    parse_entry(&archive("apt_components = [\"main\", \"universe\"]")).unwrap();
    let e = format!(
        "{:#}",
        parse_entry(&archive("apt_components = [\"universe\"]")).unwrap_err()
    );
    assert!(e.contains("lacks \"main\""), "{e}");
    let e = format!(
        "{:#}",
        parse_entry(&archive("apt_components = [\"main\", \"a b\"]")).unwrap_err()
    );
    assert!(e.contains("must be names"), "{e}");
}

#[test]
fn aliases_shared_by_two_entries_are_ambiguous_and_ids_win() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "myarch.toml",
        &mini("myarch", &["arch", "debian"]),
    );
    let cat = Catalog::from_dirs(&[dir.path()]).unwrap();
    let e = cat.lookup_for_arch("arch:1", "amd64").unwrap_err();
    assert_eq!(
        e,
        CatalogError::Ambiguous {
            given: "arch".into(),
            candidates: vec!["archlinux".into(), "myarch".into()]
        }
    );
    assert!(e.to_string().contains("archlinux and myarch"), "{e}");
    // An id is never shadowed by another entry's alias.
    assert_eq!(
        cat.lookup_for_arch("debian", "amd64").unwrap().distro,
        "debian"
    );
    assert_eq!(
        cat.lookup_for_arch("myarch", "amd64").unwrap().distro,
        "myarch"
    );
}

// ---------------------------------------------------------------------------------------------
// Names and search

#[test]
fn names_cover_ids_aliases_and_releases() {
    let names = builtin().names();
    for n in [
        "debian",
        "debian:12",
        "debian:bookworm",
        "debian:stable",
        "arch",
        "arch:latest",
        "archlinux:latest",
        "ubuntu:noble",
        "alpine:edge",
        "rocky:9",
        "void:musl",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing");
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted);
    // Every name resolves (on amd64, where every builtin has images).
    let cat = builtin();
    for n in &names {
        cat.lookup_for_arch(n, "amd64")
            .unwrap_or_else(|e| panic!("{n}: {e}"));
    }
}

#[test]
fn search_filters_and_describes() {
    let cat = builtin();
    assert_eq!(cat.search(None).len(), 9);
    assert_eq!(cat.search(Some("")).len(), 9);
    let ids = |t: &str| -> Vec<String> { cat.search(Some(t)).into_iter().map(|r| r.id).collect() };
    assert_eq!(ids("noble"), ["ubuntu"]);
    assert_eq!(ids("apk"), ["alpine"]);
    assert_eq!(ids("ARCH"), ["archlinux"]);
    assert_eq!(ids("debian:trix"), ["debian"]);
    assert_eq!(ids("debian:xyz"), Vec::<String>::new());
    assert_eq!(ids("dnf"), ["almalinux", "fedora", "rockylinux"]);
    assert_eq!(ids("zzz"), Vec::<String>::new());

    let deb = &cat.search(Some("debian"))[0];
    assert_eq!(deb.name, "Debian");
    assert_eq!(deb.family, "apt");
    assert_eq!(deb.default_release, "13");
    assert_eq!(deb.sources, ["oci", "simplestreams", "archive"]);
    assert_eq!(deb.arches, ["amd64", "arm64"]);
    assert!(deb.toolbox_ready);
    assert_eq!(deb.origin, "builtin");
    assert_eq!(
        deb.releases[0],
        ReleaseRow {
            name: "13".into(),
            aliases: vec!["trixie".into(), "stable".into()]
        }
    );
    let json = serde_json::to_value(deb).unwrap();
    assert_eq!(json["id"], "debian");
    assert_eq!(json["releases"][1]["aliases"][0], "bookworm");
}

// ---------------------------------------------------------------------------------------------
// resolve against a loopback server

/// A server on loopback answering with fixed bodies by path (plain text), 404 for anything else.
fn serve_routes(routes: BTreeMap<String, Vec<u8>>) -> Server {
    Server::start(move |req: &Request| match routes.get(&req.path) {
        Some(body) => Response::new(200, body.clone()).header("Content-Type", "text/plain"),
        None => Response::not_found(),
    })
}

const SUM_OLD: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const SUM_NEW: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const SUM_ROCKY: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const PIN_AMD: &str = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4";
const PIN_ARM: &str = "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5";

/// The index files, shaped like the real ones (see the parsers' own tests for the samples).
fn routes() -> BTreeMap<String, Vec<u8>> {
    let mut r = BTreeMap::new();
    r.insert(
        "/ubuntu-base/13/SHA256SUMS".into(),
        format!(
            "{SUM_OLD} *ubuntu-base-24.04.2-base-amd64.tar.gz\n\
{SUM_NEW} *ubuntu-base-24.04.10-base-amd64.tar.gz\n\
{SUM_OLD} *ubuntu-base-24.04.10-base-arm64.tar.gz\n\
{SUM_OLD} *ubuntu-24.04.10-server-cloudimg-amd64.img\n"
        )
        .into_bytes(),
    );
    r.insert(
        "/rocky/images/x86_64/CHECKSUM".into(),
        format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n\
# Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz: 46442496 bytes\n\
SHA256 (Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz) = {SUM_OLD}\n\
SHA256 (Rocky-9-Container-Base-9.6-20250531.0.x86_64.tar.xz) = {SUM_ROCKY}\n\
SHA256 (Rocky-9-Container-Base.latest.x86_64.tar.xz) = {SUM_ROCKY}\n\
SHA256 (Rocky-9-Container-Minimal-9.6-20250531.0.x86_64.tar.xz) = {SUM_OLD}\n\
-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n"
        )
        .into_bytes(),
    );
    r.insert(
        "/lxc/streams/v1/index.json".into(),
        simplestreams::tests::INDEX.as_bytes().to_vec(),
    );
    r.insert(
        "/lxc/streams/v1/images.json".into(),
        simplestreams::tests::images_json().into_bytes(),
    );
    r.insert(
        "/alpine/v3.22/releases/x86_64/latest-releases.yaml".into(),
        alpine::tests::yaml("x86_64", "3.22.2").into_bytes(),
    );
    r.insert(
        "/broken/streams/v1/index.json".into(),
        b"{ not json".to_vec(),
    );
    r
}

/// A catalog entry whose every source points at `base`.
fn loop_entry(base: &str) -> String {
    format!(
        r#"# A test entry: every source kind, all on loopback.
id = "loop"
name = "Loopback Linux"
aliases = ["lo"]
family = "apt"
default_release = "13"

[[release]]
name = "13"
aliases = ["trixie"]
vars = {{ codename = "trixie", branch = "v3.22" }}

[[release]]
name = "forky"
vars = {{ codename = "forky", branch = "v3.99" }}

[arch.oci]
amd64 = "amd64"
arm64 = "arm64"

[arch.simplestreams]
amd64 = "amd64"
arm64 = "arm64"

[arch.sumsfile]
amd64 = "amd64"
arm64 = "arm64"

[[source]]
kind = "oci"
image = "127.0.0.1:5000/toolbx/debian-toolbox:{{release}}"
toolbox_ready = true

[[source]]
kind = "simplestreams"
url = "{base}/lxc/"
distro = "debian"
release = "{{codename}}"

[[source]]
kind = "sumsfile"
url = "{base}/ubuntu-base/{{release}}/SHA256SUMS"
pattern = "ubuntu-base-{{version}}-base-{{arch}}.tar.gz"

[[source]]
kind = "sumsfile"
url = "{base}/rocky/images/{{arch}}/CHECKSUM"
pattern = "Rocky-9-Container-Base-{{version}}.{{arch}}.tar.xz"
base = "{base}/rocky/files/"
arch = {{ amd64 = "x86_64", arm64 = "aarch64" }}

[[source]]
kind = "alpine"
url = "{base}/alpine/{{branch}}/releases/{{arch}}/latest-releases.yaml"
arch = {{ amd64 = "x86_64", arm64 = "aarch64" }}

[[source]]
kind = "pinned"
url = "{base}/pinned/{{arch}}/rootfs.tar"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
sha256 = {{ amd64 = "{PIN_AMD}", arm64 = "{PIN_ARM}" }}

[[source]]
kind = "simplestreams"
url = "{base}/broken"
distro = "debian"
release = "{{codename}}"
"#
    )
}

fn loop_catalog(srv: &Server) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "loop.toml", &loop_entry(&srv.url("")));
    let cat = Catalog::from_dirs(&[dir.path()]).unwrap();
    (dir, cat)
}

#[test]
fn resolve_every_kind_on_loopback() {
    let srv = serve_routes(routes());
    let (_dir, cat) = loop_catalog(&srv);
    let base = srv.url("");
    let c = cat.lookup_for_arch("lo:trixie", "amd64").unwrap();
    assert_eq!(c.distro, "loop");
    let kinds: Vec<&str> = c.sources.iter().map(|s| s.kind_name()).collect();
    assert_eq!(
        kinds,
        [
            "oci",
            "simplestreams",
            "sumsfile",
            "sumsfile",
            "alpine",
            "pinned",
            "simplestreams"
        ]
    );
    let got: Vec<Result<Resolved, String>> = c
        .sources
        .iter()
        .map(|s| resolve(&c, s).map_err(|e| format!("{e:#}")))
        .collect();
    assert_eq!(
        got[0],
        Ok(Resolved::Oci {
            reference: "127.0.0.1:5000/toolbx/debian-toolbox:13".into()
        })
    );
    assert_eq!(
        got[1],
        Ok(Resolved::Archive {
            url: format!(
                "{base}/lxc/images/debian/trixie/amd64/default/20251128_05:24/rootfs.tar.xz"
            ),
            sha256: Some(simplestreams::tests::SHA_NEW.into()),
            version: Some("20251128_05:24".into()),
        })
    );
    assert_eq!(
        got[2],
        Ok(Resolved::Archive {
            url: format!("{base}/ubuntu-base/13/ubuntu-base-24.04.10-base-amd64.tar.gz"),
            sha256: Some(SUM_NEW.into()),
            version: Some("24.04.10".into()),
        })
    );
    assert_eq!(
        got[3],
        Ok(Resolved::Archive {
            url: format!("{base}/rocky/files/Rocky-9-Container-Base-9.6-20250531.0.x86_64.tar.xz"),
            sha256: Some(SUM_ROCKY.into()),
            version: Some("9.6-20250531.0".into()),
        })
    );
    assert_eq!(
        got[4],
        Ok(Resolved::Archive {
            url: format!(
                "{base}/alpine/v3.22/releases/x86_64/alpine-minirootfs-3.22.2-x86_64.tar.gz"
            ),
            sha256: Some(alpine::tests::SHA_MINI.into()),
            version: Some("3.22.2".into()),
        })
    );
    assert_eq!(
        got[5],
        Ok(Resolved::Archive {
            url: format!("{base}/pinned/amd64/rootfs.tar"),
            sha256: Some(PIN_AMD.into()),
            version: None,
        })
    );
    let e = got[6].as_ref().unwrap_err();
    assert!(e.contains("/broken/streams/v1/index.json"), "{e}");
    assert!(e.contains("not the JSON expected"), "{e}");
    assert!(e.contains("cannot resolve loop:13 (amd64)"), "{e}");

    // Index files only: two for simplestreams, one per sums file and YAML, one for the broken
    // server; nothing for oci and pinned.
    assert_eq!(srv.hits("/lxc/streams/v1/index.json"), 1);
    assert_eq!(srv.hits("/lxc/streams/v1/images.json"), 1);
    assert_eq!(srv.requests("").len(), 6);
}

#[test]
fn resolve_picks_the_arch_of_the_choice() {
    let srv = serve_routes(routes());
    let (_dir, cat) = loop_catalog(&srv);
    let c = cat.lookup_for_arch("loop", "arm64").unwrap();
    let ss = resolve(&c, &c.sources[1]).unwrap();
    assert_eq!(
        ss,
        Resolved::Archive {
            url: format!(
                "{}/lxc/images/debian/trixie/arm64/default/20251128_05:24/rootfs.tar.xz",
                srv.url("")
            ),
            sha256: Some(simplestreams::tests::SHA_ARM.into()),
            version: Some("20251128_05:24".into()),
        }
    );
    match resolve(&c, &c.sources[5]).unwrap() {
        Resolved::Archive { url, sha256, .. } => {
            assert!(url.ends_with("/pinned/arm64/rootfs.tar"), "{url}");
            assert_eq!(sha256.as_deref(), Some(PIN_ARM));
        }
        other => panic!("{other:?}"),
    }
    // The server has no aarch64 CHECKSUM and no aarch64 releases file.
    let e = format!("{:#}", resolve(&c, &c.sources[3]).unwrap_err());
    assert!(e.contains("404"), "{e}");
    assert!(e.contains("/rocky/images/aarch64/CHECKSUM"), "{e}");
    let e = format!("{:#}", resolve(&c, &c.sources[4]).unwrap_err());
    assert!(
        e.contains("/alpine/v3.22/releases/aarch64/latest-releases.yaml"),
        "{e}"
    );
}

#[test]
fn resolve_failures_say_what_the_server_has() {
    let srv = serve_routes(routes());
    let (_dir, cat) = loop_catalog(&srv);
    let c = cat.lookup_for_arch("loop:forky", "amd64").unwrap();
    let err = |i: usize| format!("{:#}", resolve(&c, &c.sources[i]).unwrap_err());

    let e = err(1);
    assert!(
        e.contains("does not list debian:forky:amd64:default"),
        "{e}"
    );
    assert!(e.contains("releases bookworm, trixie"), "{e}");
    assert!(e.contains("cannot resolve loop:forky (amd64)"), "{e}");

    let e = err(2);
    assert!(e.contains("404"), "{e}");
    assert!(e.contains("/ubuntu-base/forky/SHA256SUMS"), "{e}");

    let e = err(4);
    assert!(e.contains("404"), "{e}");
    assert!(
        e.contains("/alpine/v3.99/releases/x86_64/latest-releases.yaml"),
        "{e}"
    );
}

#[test]
fn an_override_in_a_catalog_dir_points_a_builtin_at_loopback() {
    // What DEVBOX_CATALOG_DIR is for: replace the builtin debian entry's sources.
    let srv = serve_routes(routes());
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "debian.toml",
        &loop_entry(&srv.url(""))
            .replace("id = \"loop\"", "id = \"debian\"")
            .replace("aliases = [\"lo\"]", "aliases = []"),
    );
    let cat = Catalog::from_dirs(&[dir.path()]).unwrap();
    let c = cat.lookup_for_arch("debian:trixie", "amd64").unwrap();
    match resolve(&c, &c.sources[2]).unwrap() {
        Resolved::Archive { url, .. } => assert!(url.starts_with(&srv.url("")), "{url}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(srv.hits("/ubuntu-base/13/SHA256SUMS"), 1);
}
