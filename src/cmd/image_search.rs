//! `devbox image search [TEXT]`: the distributions the catalog knows, their releases with
//! aliases, and where their images come from.

use std::io::Write;

use anyhow::Result;

use crate::catalog::{Catalog, SearchRow};

pub fn run(text: Option<&str>, json: bool) -> Result<i32> {
    let catalog = Catalog::load()?;
    let rows = catalog.search(text);
    let mut out = std::io::stdout().lock();
    if json {
        return super::write_json(&mut out, &rows);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "No distribution matches {:?}. `devbox image search` lists them all.",
            text.unwrap_or_default()
        )?;
        return Ok(0);
    }
    out.write_all(table(&rows).as_bytes())?;
    Ok(0)
}

/// One line per release; the other columns on the first line of each distribution.
fn table(rows: &[SearchRow]) -> String {
    let head = [
        "DISTRO", "RELEASES", "DEFAULT", "FAMILY", "SOURCES", "TOOLBOX",
    ];
    let mut lines: Vec<[String; 6]> = Vec::new();
    for r in rows {
        let distro = if r.aliases.is_empty() {
            r.id.clone()
        } else {
            format!("{} ({})", r.id, r.aliases.join(", "))
        };
        for (i, rel) in r.releases.iter().enumerate() {
            let release = if rel.aliases.is_empty() {
                rel.name.clone()
            } else {
                format!("{} ({})", rel.name, rel.aliases.join(", "))
            };
            lines.push(if i == 0 {
                [
                    distro.clone(),
                    release,
                    r.default_release.clone(),
                    r.family.clone(),
                    r.sources.join(", "),
                    if r.toolbox_ready { "yes" } else { "no" }.to_string(),
                ]
            } else {
                [
                    String::new(),
                    release,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]
            });
        }
    }
    let mut width = head.map(str::len);
    for l in &lines {
        for (w, cell) in width.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |cells: &[String]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = width[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push(&head.map(String::from));
    for l in &lines {
        push(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_line_per_release() {
        let cat = Catalog::builtin().unwrap();
        let t = table(&cat.search(Some("debian")));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        for col in [
            "DISTRO", "RELEASES", "DEFAULT", "FAMILY", "SOURCES", "TOOLBOX",
        ] {
            assert!(lines[0].contains(col), "{t}");
        }
        assert!(lines[1].starts_with("debian "), "{t}");
        assert!(lines[1].contains("13 (trixie, stable)"), "{t}");
        assert!(lines[1].contains("oci, simplestreams"), "{t}");
        assert!(lines[1].trim_end().ends_with("yes"), "{t}");
        assert!(
            lines[2]
                .trim_start()
                .starts_with("12 (bookworm, oldstable)"),
            "{t}"
        );
        // Columns line up: RELEASES starts at the same offset on every line.
        let at = lines[0].find("RELEASES").unwrap();
        assert_eq!(lines[1].find("13 ("), Some(at), "{t}");
        assert_eq!(lines[2].find("12 ("), Some(at), "{t}");

        let t = table(&cat.search(None));
        assert!(t.contains("archlinux (arch)"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("void") && l.ends_with("no")),
            "{t}"
        );
    }
}
