//! Alpine's `latest-releases.yaml`: a YAML list of flat mappings, one per flavor:
//!
//! ```text
//! ---
//! -
//!   title: "Mini root filesystem"
//!   desc: "Minimal root filesystem.
//!     For use in containers
//!     and minimal chroots."
//!   branch: v3.22
//!   arch: x86_64
//!   version: 3.22.2
//!   flavor: alpine-minirootfs
//!   file: alpine-minirootfs-3.22.2-x86_64.tar.gz
//!   sha256: ...
//! ```
//!
//! The parser reads exactly that shape, not YAML in general: a top-level sequence (`-` alone
//! or `- key: value`) of `key: value` lines whose values are plain, single- or double-quoted
//! scalars, possibly continued on more-indented lines (folded with spaces). Comments, blank
//! lines and `---`/`...` are skipped. Anything else is an error naming the line.

use std::collections::BTreeMap;

pub type Record = BTreeMap<String, String>;

struct Open {
    key: String,
    indent: usize,
    /// Some(quote) while a quoted scalar continues on the next lines.
    quote: Option<char>,
    raw: String,
}

pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let mut out: Vec<Record> = Vec::new();
    let mut open: Option<Open> = None;
    for (no, line) in text.lines().enumerate() {
        let no = no + 1;
        let line = line.trim_end();
        let body = line.trim_start();
        let indent = line.len() - body.len();

        if let Some(o) = open.as_mut() {
            if o.quote.is_some() {
                o.raw.push(' ');
                o.raw.push_str(body);
                if closes_quote(&o.raw) {
                    let o = open.take().expect("open");
                    finish(&mut out, o, no)?;
                }
                continue;
            }
            if !body.is_empty() && !body.starts_with('#') && indent > o.indent {
                o.raw.push(' ');
                o.raw.push_str(body);
                continue;
            }
        }
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if let Some(o) = open.take() {
            finish(&mut out, o, no)?;
        }
        if indent == 0 && (body == "---" || body == "...") {
            continue;
        }
        let (body, indent) = if body == "-" || body.starts_with("- ") {
            out.push(Record::new());
            let rest = body[1..].trim_start();
            if rest.is_empty() {
                continue;
            }
            (rest, indent + (body.len() - rest.len()))
        } else {
            (body, indent)
        };
        if out.is_empty() {
            return Err(format!("line {no}: expected a list item ('-')"));
        }
        let Some((key, value)) = split_key(body) else {
            return Err(format!("line {no}: expected `key: value`"));
        };
        let o = Open {
            key: key.to_string(),
            indent,
            quote: value.chars().next().filter(|c| *c == '"' || *c == '\''),
            raw: value.to_string(),
        };
        if o.quote.is_some() && !closes_quote(&o.raw) {
            open = Some(o);
        } else {
            open = Some(Open { quote: None, ..o });
        }
    }
    if let Some(o) = open {
        if o.quote.is_some() {
            return Err(format!("unterminated quoted value of {:?}", o.key));
        }
        finish(&mut out, o, text.lines().count())?;
    }
    Ok(out)
}

/// `key: value` or `key:`; keys are plain words.
fn split_key(body: &str) -> Option<(&str, &str)> {
    let (k, v) = match body.split_once(": ") {
        Some(kv) => kv,
        None => (body.strip_suffix(':')?, ""),
    };
    let k = k.trim();
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    ok.then_some((k, v.trim()))
}

/// Whether a raw value that starts with a quote has its closing quote.
fn closes_quote(raw: &str) -> bool {
    let mut chars = raw.chars();
    let Some(q) = chars.next() else {
        return false;
    };
    let rest: Vec<char> = chars.collect();
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            '\\' if q == '"' => i += 2,
            c if c == q => {
                if q == '\'' && rest.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

fn finish(out: &mut [Record], o: Open, no: usize) -> Result<(), String> {
    let value = scalar(&o.raw).map_err(|e| format!("near line {no}: {e}"))?;
    out.last_mut()
        .expect("a record is open")
        .insert(o.key, value);
    Ok(())
}

fn scalar(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let Some(q) = raw.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        // A plain scalar: a ` #` starts a comment.
        let v = match raw.find(" #") {
            Some(i) => &raw[..i],
            None => raw,
        };
        return Ok(v.trim().to_string());
    };
    let mut s = String::new();
    let mut chars = raw[1..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == q {
            if q == '\'' && chars.peek() == Some(&'\'') {
                chars.next();
                s.push('\'');
                continue;
            }
            let trailing: String = chars.collect();
            let trailing = trailing.trim();
            if !trailing.is_empty() && !trailing.starts_with('#') {
                return Err(format!("text after a quoted value: {trailing:?}"));
            }
            return Ok(s);
        }
        if c == '\\' && q == '"' {
            match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some(other) => s.push(other),
                None => return Err("a value ends in a backslash".into()),
            }
        } else {
            s.push(c);
        }
    }
    Err("unterminated quoted value".into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub file: String,
    pub sha256: String,
    pub version: Option<String>,
}

/// The record of `flavor` (and `arch`, when records say theirs).
pub fn pick(records: &[Record], flavor: &str, arch: &str) -> Result<Pick, String> {
    fn get<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
        r.get(k).map(String::as_str)
    }
    let found = records
        .iter()
        .filter(|r| get(r, "flavor") == Some(flavor))
        .find(|r| get(r, "arch").map_or(true, |a| a == arch));
    let Some(r) = found else {
        let mut flavors: Vec<&str> = records.iter().filter_map(|r| get(r, "flavor")).collect();
        flavors.sort();
        flavors.dedup();
        return Err(format!(
            "latest-releases.yaml has no {flavor} for {arch}; it lists {}",
            if flavors.is_empty() {
                "nothing".to_string()
            } else {
                flavors.join(", ")
            }
        ));
    };
    let file = get(r, "file").ok_or(format!("the {flavor} entry has no `file`"))?;
    let sha256 = get(r, "sha256").ok_or(format!("the {flavor} entry has no `sha256`"))?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the {flavor} entry's sha256 is not 64 hexadecimal digits: {sha256:?}"
        ));
    }
    Ok(Pick {
        file: file.to_string(),
        sha256: sha256.to_ascii_lowercase(),
        version: get(r, "version").map(str::to_string),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const SHA_MINI: &str = "4444444444444444444444444444444444444444444444444444444444444444";

    /// Shaped like dl-cdn's v3.22/releases/x86_64/latest-releases.yaml (trimmed).
    pub fn yaml(arch: &str, version: &str) -> String {
        format!(
            r#"---
-
  title: "Standard"
  desc: "Alpine as it was intended.
    Just enough to get you started.
    Network connection is required."
  profile: standard
  date: 2025-10-08
  time: 10:10:43
  arch: {arch}
  version: {version}
  flavor: alpine-standard
  file: alpine-standard-{version}-{arch}.iso
  iso: alpine-standard-{version}-{arch}.iso
  size: 229638144
  sha256: 5555555555555555555555555555555555555555555555555555555555555555
  sha512: 55555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555
-
  title: "Mini root filesystem"
  desc: "Minimal root filesystem.
    For use in containers
    and minimal chroots."
  profile: minirootfs
  date: 2025-10-08
  time: 10:10:43
  arch: {arch}
  version: {version}
  flavor: alpine-minirootfs
  file: alpine-minirootfs-{version}-{arch}.tar.gz
  iso: alpine-minirootfs-{version}-{arch}.tar.gz
  size: 3725434
  sha256: {SHA_MINI}
  sha512: 66666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666
- title: 'Netboot kernel, initramfs and modloop'  # a comment
  branch: v3.22
  arch: {arch}
  version: {version}
  flavor: alpine-netboot
  file: alpine-netboot-{version}-{arch}.tar.gz
  sha256: 7777777777777777777777777777777777777777777777777777777777777777
"#
        )
    }

    #[test]
    fn parses_the_releases_file() {
        let recs = parse(&yaml("x86_64", "3.22.2")).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[0]["desc"],
            "Alpine as it was intended. Just enough to get you started. Network connection is required."
        );
        assert_eq!(recs[0]["time"], "10:10:43");
        assert_eq!(recs[1]["flavor"], "alpine-minirootfs");
        assert_eq!(recs[1]["file"], "alpine-minirootfs-3.22.2-x86_64.tar.gz");
        assert_eq!(recs[2]["title"], "Netboot kernel, initramfs and modloop");
        assert_eq!(recs[2]["branch"], "v3.22");
    }

    #[test]
    fn picks_the_minirootfs() {
        let recs = parse(&yaml("aarch64", "3.22.2")).unwrap();
        let p = pick(&recs, "alpine-minirootfs", "aarch64").unwrap();
        assert_eq!(
            p,
            Pick {
                file: "alpine-minirootfs-3.22.2-aarch64.tar.gz".into(),
                sha256: SHA_MINI.into(),
                version: Some("3.22.2".into()),
            }
        );
        let e = pick(&recs, "alpine-minirootfs", "x86_64").unwrap_err();
        assert!(
            e.contains("alpine-minirootfs, alpine-netboot, alpine-standard"),
            "{e}"
        );
        let e = pick(&recs, "alpine-virt", "aarch64").unwrap_err();
        assert!(e.contains("no alpine-virt"), "{e}");
    }

    #[test]
    fn quoting_and_continuations() {
        let text = "- a: \"x \\\"q\\\" y\"\n  b: 'it''s'\n  c: plain # comment\n  d: one\n     two\n  e:\n-\n  a: \"multi\n    line\"\n";
        let recs = parse(text).unwrap();
        assert_eq!(recs[0]["a"], "x \"q\" y");
        assert_eq!(recs[0]["b"], "it's");
        assert_eq!(recs[0]["c"], "plain");
        assert_eq!(recs[0]["d"], "one two");
        assert_eq!(recs[0]["e"], "");
        assert_eq!(recs[1]["a"], "multi line");
    }

    #[test]
    fn malformed_input_names_the_line() {
        let e = parse("key: value\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("-\n  just words\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("-\n  a: \"open\n").unwrap_err();
        assert!(e.contains("unterminated"), "{e}");
        let e = parse("-\n  a: \"x\" y\n").unwrap_err();
        assert!(e.contains("after a quoted value"), "{e}");
    }
}
