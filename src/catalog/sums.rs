//! Checksum files (`SHA256SUMS`, `CHECKSUM`, `sha256sum.txt`) and the file-name patterns that
//! pick the newest image out of them.
//!
//! Both line formats are read, mixed freely, and every other line (PGP armor of clear-signed
//! files, comments, other hash algorithms) is skipped:
//! - GNU: `<64 hex>  name` or `<64 hex> *name` (binary mode)
//! - BSD: `SHA256 (name) = <64 hex>`
//!
//! A pattern is the file name with `*` (any run of characters but `/`) and at most one
//! `{version}`: a run of letters, digits and `._+~-` that starts with a digit. When several
//! files match, the highest version wins (`version::compare`).

use super::version;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub name: String,
    pub sha256: String,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every SHA-256 line of a checksum file, in file order.
pub fn parse(text: &str) -> Vec<Sum> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sum> {
    let line = line.trim_end_matches(['\r', '\n']).trim_start();
    let (name, hex) = if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex) = rest.rsplit_once(") = ")?;
        (name, hex.trim())
    } else {
        let hex = line.get(..64)?;
        let rest = line.get(64..)?;
        let mut rest = rest.strip_prefix([' ', '\t'])?;
        rest = rest.strip_prefix(['*', ' ']).unwrap_or(rest);
        (rest.trim_end(), hex)
    };
    let name = name.strip_prefix("./").unwrap_or(name);
    if !is_sha256(hex) || name.is_empty() {
        return None;
    }
    Some(Sum {
        name: name.to_string(),
        sha256: hex.to_ascii_lowercase(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    Star,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    toks: Vec<Tok>,
}

impl Pattern {
    pub fn parse(p: &str) -> Result<Pattern, String> {
        let mut toks = Vec::new();
        let mut lit = String::new();
        let mut rest = p;
        let mut versions = 0;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{version}") {
                if !lit.is_empty() {
                    toks.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                toks.push(Tok::Version);
                versions += 1;
                rest = after;
                continue;
            }
            match c {
                '*' => {
                    if !lit.is_empty() {
                        toks.push(Tok::Lit(std::mem::take(&mut lit)));
                    }
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '{' | '}' => {
                    return Err(format!(
                        "pattern {p:?}: only {{version}} may stay in braces here"
                    ))
                }
                _ => lit.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit));
        }
        if toks.is_empty() {
            return Err("pattern is empty".into());
        }
        if versions > 1 {
            return Err(format!("pattern {p:?}: {{version}} may appear once"));
        }
        Ok(Pattern {
            text: p.to_string(),
            toks,
        })
    }

    pub fn has_version(&self) -> bool {
        self.toks.contains(&Tok::Version)
    }

    /// None if `name` does not match; else the captured version (None without `{version}`).
    pub fn matches(&self, name: &str) -> Option<Option<String>> {
        let mut cap = None;
        match_from(&self.toks, name, &mut cap).then_some(cap)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-')
}

/// Backtracking match; `{version}` takes the longest run that lets the rest match.
fn match_from(toks: &[Tok], s: &str, cap: &mut Option<String>) -> bool {
    let Some((first, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match first {
        Tok::Lit(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|after| match_from(rest, after, cap)),
        Tok::Star => {
            let limit = s.find('/').unwrap_or(s.len());
            (0..=limit)
                .rev()
                .filter(|&i| s.is_char_boundary(i))
                .any(|i| match_from(rest, &s[i..], cap))
        }
        Tok::Version => {
            if !s.starts_with(|c: char| c.is_ascii_digit()) {
                return false;
            }
            let run = s.find(|c| !is_version_char(c)).unwrap_or(s.len());
            for end in (1..=run).rev() {
                if match_from(rest, &s[end..], cap) {
                    *cap = Some(s[..end].to_string());
                    return true;
                }
            }
            false
        }
    }
}

/// The entry `pattern` picks: the highest version among the matches, or the only match of a
/// pattern without `{version}`.
pub fn pick<'a>(sums: &'a [Sum], pattern: &Pattern) -> Result<(&'a Sum, Option<String>), String> {
    let mut found: Vec<(&Sum, Option<String>)> = sums
        .iter()
        .filter_map(|s| pattern.matches(&s.name).map(|v| (s, v)))
        .collect();
    if found.is_empty() {
        let listed: Vec<&str> = sums.iter().take(8).map(|s| s.name.as_str()).collect();
        return Err(if listed.is_empty() {
            "the checksum file lists no SHA-256 sums".to_string()
        } else {
            format!(
                "no file in the checksum list matches {pattern}; it lists {}{}",
                listed.join(", "),
                if sums.len() > listed.len() {
                    ", ..."
                } else {
                    ""
                }
            )
        });
    }
    if !pattern.has_version() {
        found.dedup_by(|a, b| a.0 == b.0);
        if found.len() > 1 {
            return Err(format!(
                "{} files match {pattern} and it has no {{version}} to choose by: {}",
                found.len(),
                found
                    .iter()
                    .map(|f| f.0.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    found.sort_by(|a, b| {
        let (va, vb) = (a.1.as_deref().unwrap_or(""), b.1.as_deref().unwrap_or(""));
        version::compare(va, vb).then_with(|| a.0.name.cmp(&b.0.name))
    });
    let (sum, v) = found.pop().expect("non-empty");
    Ok((sum, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";

    #[test]
    fn gnu_format_text_and_binary_mode() {
        let text = format!(
            "{A}  ubuntu-base-24.04.2-base-amd64.tar.gz\n{B} *ubuntu-base-24.04.3-base-amd64.tar.gz\r\n{C}  ./sub/file name.iso\n"
        );
        assert_eq!(
            parse(&text),
            vec![
                Sum {
                    name: "ubuntu-base-24.04.2-base-amd64.tar.gz".into(),
                    sha256: A.into()
                },
                Sum {
                    name: "ubuntu-base-24.04.3-base-amd64.tar.gz".into(),
                    sha256: B.into()
                },
                Sum {
                    name: "sub/file name.iso".into(),
                    sha256: C.to_ascii_lowercase()
                },
            ]
        );
    }

    #[test]
    fn bsd_format_in_a_clear_signed_file() {
        // Shaped like Rocky Linux's images/CHECKSUM: PGP armor, comments, SHA256 lines.
        let text = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n\
# Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz: 46442496 bytes\n\
SHA256 (Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz) = {A}\n\
# Rocky-9-Container-Base.latest.x86_64.tar.xz: 46442496 bytes\n\
SHA256 (Rocky-9-Container-Base.latest.x86_64.tar.xz) = {A}\n\
SHA512 (Rocky-9-Container-Base.latest.x86_64.tar.xz) = {A}{A}\n\
SHA256 (odd (name).tar.xz) = {B}\n\
-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n"
        );
        let sums = parse(&text);
        let names: Vec<&str> = sums.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz",
                "Rocky-9-Container-Base.latest.x86_64.tar.xz",
                "odd (name).tar.xz"
            ]
        );
        assert_eq!(sums[2].sha256, B);
    }

    #[test]
    fn junk_is_skipped() {
        let text = format!(
            "\n# comment\nnot a sum\n{}  short.tar\n{A}{A}  sha512.tar\n{A}nospace\nSHA256 (x) = nothex\n",
            &A[..40]
        );
        assert_eq!(parse(&text), vec![]);
    }

    #[test]
    fn pattern_captures_the_version() {
        let p = Pattern::parse("Rocky-9-Container-Base-{version}.x86_64.tar.xz").unwrap();
        assert_eq!(
            p.matches("Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz"),
            Some(Some("9.5-20241118.0".into()))
        );
        assert_eq!(
            p.matches("Rocky-9-Container-Base.latest.x86_64.tar.xz"),
            None
        );
        assert_eq!(
            p.matches("Rocky-9-Container-Base-9.5-20241118.0.x86_64.tar.xz.manifest"),
            None
        );
        let p = Pattern::parse("void-x86_64-ROOTFS-{version}.tar.xz").unwrap();
        assert_eq!(
            p.matches("void-x86_64-ROOTFS-20250202.tar.xz"),
            Some(Some("20250202".into()))
        );
        assert_eq!(p.matches("void-x86_64-musl-ROOTFS-20250202.tar.xz"), None);
        let p = Pattern::parse("*-{version}-x86_64.tar.zst").unwrap();
        assert_eq!(
            p.matches("archlinux-bootstrap-2025.11.01-x86_64.tar.zst"),
            Some(Some("2025.11.01".into()))
        );
        assert_eq!(p.matches("dir/archlinux-1-x86_64.tar.zst"), None);
        let p = Pattern::parse("opensuse-tumbleweed-image.x86_64-lxc.tar.xz").unwrap();
        assert!(!p.has_version());
        assert_eq!(
            p.matches("opensuse-tumbleweed-image.x86_64-lxc.tar.xz"),
            Some(None)
        );
        assert!(Pattern::parse("a{version}b{version}").is_err());
        assert!(Pattern::parse("a{arch}").is_err());
        assert!(Pattern::parse("").is_err());
    }

    #[test]
    fn pick_takes_the_highest_version() {
        let sums = parse(&format!(
            "{A}  ubuntu-base-24.04.2-base-amd64.tar.gz\n\
{B}  ubuntu-base-24.04.10-base-amd64.tar.gz\n\
{A}  ubuntu-base-24.04.3-base-arm64.tar.gz\n\
{A}  ubuntu-base-24.04.9-base-amd64.tar.gz\n"
        ));
        let p = Pattern::parse("ubuntu-base-{version}-base-amd64.tar.gz").unwrap();
        let (s, v) = pick(&sums, &p).unwrap();
        assert_eq!(s.name, "ubuntu-base-24.04.10-base-amd64.tar.gz");
        assert_eq!(s.sha256, B);
        assert_eq!(v.as_deref(), Some("24.04.10"));

        let p = Pattern::parse("ubuntu-base-{version}-base-riscv64.tar.gz").unwrap();
        let e = pick(&sums, &p).unwrap_err();
        assert!(e.contains("no file"), "{e}");
        assert!(e.contains("ubuntu-base-24.04.2-base-amd64.tar.gz"), "{e}");

        let p = Pattern::parse("ubuntu-base-*-base-amd64.tar.gz").unwrap();
        let e = pick(&sums, &p).unwrap_err();
        assert!(e.contains("3 files match"), "{e}");
    }
}
