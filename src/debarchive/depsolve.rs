//! A suite's `Packages` index and the package set of a minimal root: what debootstrap's
//! minbase variant installs (every `Essential: yes` and `Priority: required` package, and
//! apt), with their dependencies. Dependencies are resolved by name: versions are not
//! compared (a suite holds one version of each package), an alternative `a | b` takes the
//! first that is already chosen, else the first that exists, and a virtual package is
//! satisfied by a package that provides it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use anyhow::{bail, Result};

use super::deb822;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// Path of the .deb below the mirror's root.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub essential: bool,
    pub priority: String,
    /// Pre-Depends then Depends: each group is a list of alternatives (names only).
    pub depends: Vec<Vec<String>>,
    pub provides: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Index {
    pub packages: BTreeMap<String, Package>,
    /// Virtual name → packages providing it, in index order.
    provides: BTreeMap<String, Vec<String>>,
}

/// Names of a dependency field: `a (>= 1), b:any | c [amd64] <!nocheck>` →
/// `[[a], [b, c]]`.
pub fn parse_depends(v: &str) -> Vec<Vec<String>> {
    v.split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.split_whitespace().next()?;
                    let name = name.split(['(', '[', '<']).next()?;
                    let name = name.split(':').next()?;
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

impl Index {
    /// Reads a `Packages` file, keeping packages for `arch` and `all` (the first stanza of a
    /// name wins).
    pub fn parse(text: &str, arch: &str) -> Index {
        let mut idx = Index::default();
        for s in deb822::parse(text) {
            let (Some(name), Some(filename), Some(sha256)) =
                (s.get("Package"), s.get("Filename"), s.get("SHA256"))
            else {
                continue;
            };
            let a = s.get("Architecture").unwrap_or("");
            if a != arch && a != "all" {
                continue;
            }
            if idx.packages.contains_key(name) {
                continue;
            }
            let mut depends = parse_depends(s.get("Pre-Depends").unwrap_or(""));
            depends.extend(parse_depends(s.get("Depends").unwrap_or("")));
            let provides: Vec<String> = parse_depends(s.get("Provides").unwrap_or(""))
                .into_iter()
                .flatten()
                .collect();
            for p in &provides {
                idx.provides
                    .entry(p.clone())
                    .or_default()
                    .push(name.to_string());
            }
            idx.packages.insert(
                name.to_string(),
                Package {
                    name: name.to_string(),
                    version: s.get("Version").unwrap_or("").to_string(),
                    filename: filename.to_string(),
                    size: s.get("Size").and_then(|v| v.parse().ok()).unwrap_or(0),
                    sha256: sha256.to_ascii_lowercase(),
                    essential: s.get("Essential").is_some_and(|v| v == "yes"),
                    priority: s.get("Priority").unwrap_or("").to_string(),
                    depends,
                    provides,
                },
            );
        }
        idx
    }

    /// The minbase set plus `extra` (a project's packages), dependencies included, sorted by
    /// name.
    pub fn minbase(&self, extra: &[String]) -> Result<Vec<&Package>> {
        let mut seeds: Vec<String> = self
            .packages
            .values()
            .filter(|p| p.essential || p.priority == "required")
            .map(|p| p.name.clone())
            .collect();
        if seeds.is_empty() {
            bail!("the suite's index has no Essential or required package: it cannot make a root file system");
        }
        seeds.push("apt".into());
        seeds.extend(extra.iter().cloned());
        self.close(&seeds)
    }

    /// `seeds` and everything they depend on.
    pub fn close(&self, seeds: &[String]) -> Result<Vec<&Package>> {
        let mut chosen: BTreeSet<&str> = BTreeSet::new();
        let mut provided: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<&str> = VecDeque::new();
        let mut missing = Vec::new();
        for s in seeds {
            match self.real_or_provider(s) {
                Some(p) => queue.push_back(p),
                None => missing.push(format!("{s} (asked for)")),
            }
        }
        while let Some(name) = queue.pop_front() {
            if !chosen.insert(name) {
                continue;
            }
            let pkg = &self.packages[name];
            provided.extend(pkg.provides.iter().map(String::as_str));
            for group in &pkg.depends {
                let satisfied = group
                    .iter()
                    .any(|a| chosen.contains(a.as_str()) || provided.contains(a.as_str()))
                    || group.iter().any(|a| queue.contains(&a.as_str()));
                if satisfied {
                    continue;
                }
                match group.iter().find_map(|a| self.real_or_provider(a)) {
                    Some(p) => queue.push_back(p),
                    None => missing.push(format!("{} (needed by {name})", group.join(" | "))),
                }
            }
        }
        if !missing.is_empty() {
            bail!(
                "the suite lacks {} package{}: {}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            );
        }
        Ok(chosen.iter().map(|n| &self.packages[*n]).collect())
    }

    /// `name` itself when it is a package here, else the first package that provides it.
    fn real_or_provider(&self, name: &str) -> Option<&str> {
        if let Some((k, _)) = self.packages.get_key_value(name) {
            return Some(k.as_str());
        }
        self.provides
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, extra: &str) -> String {
        format!("Package: {name}\nVersion: 1\nArchitecture: amd64\nFilename: pool/{name}.deb\nSize: 10\nSHA256: {:0>64}\n{extra}\n", name.len())
    }

    #[test]
    fn dependency_fields() {
        assert_eq!(
            parse_depends(
                "libc6 (>= 2.36), awk:any | mawk [amd64], debconf (>= 0.5) | debconf-2.0"
            ),
            vec![
                vec!["libc6".to_string()],
                vec!["awk".into(), "mawk".into()],
                vec!["debconf".into(), "debconf-2.0".into()]
            ]
        );
        assert!(parse_depends("").is_empty());
    }

    #[test]
    fn minbase_with_alternatives_and_virtuals() {
        let text = [
            stanza("base-files", "Essential: yes\nPriority: required\nDepends: awk"),
            stanza("mawk", "Priority: required\nProvides: awk"),
            stanza("gawk", "Priority: optional\nProvides: awk"),
            stanza("dpkg", "Essential: yes\nPre-Depends: libc6 (>= 2.36)\nDepends: tar | gtar"),
            stanza("libc6", "Priority: optional"),
            stanza("tar", "Priority: optional"),
            stanza("apt", "Priority: important\nDepends: libapt (= 1)"),
            stanza("libapt", "Priority: optional"),
            stanza("hello", "Priority: optional"),
            "Package: other-arch\nArchitecture: arm64\nFilename: x\nSHA256: 00\nPriority: required\n".to_string(),
        ]
        .join("\n");
        let idx = Index::parse(&text, "amd64");
        let names: Vec<&str> = idx
            .minbase(&[])
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "apt",
                "base-files",
                "dpkg",
                "libapt",
                "libc6",
                "mawk",
                "tar"
            ]
        );
        let with: Vec<&str> = idx
            .minbase(&["hello".to_string()])
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert!(with.contains(&"hello"));
    }

    #[test]
    fn a_missing_dependency_is_named_with_its_dependent() {
        let text = [
            stanza(
                "base-files",
                "Essential: yes\nDepends: nowhere (>= 1) | gone",
            ),
            stanza("apt", ""),
        ]
        .join("\n");
        let e = Index::parse(&text, "amd64").minbase(&[]).unwrap_err();
        assert!(
            format!("{e}").contains("nowhere | gone (needed by base-files)"),
            "{e}"
        );
        let e = Index::parse(&text.replace("Depends: nowhere (>= 1) | gone", ""), "amd64")
            .minbase(&["nope".to_string()])
            .unwrap_err();
        assert!(format!("{e}").contains("nope (asked for)"), "{e}");
    }
}
