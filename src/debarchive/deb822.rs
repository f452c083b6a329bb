//! The control-file format of Debian archives (deb822): paragraphs separated by blank lines,
//! `Field: value` lines, continuation lines starting with a space or tab. Release files,
//! Packages indexes and `.sources` files are all written in it.

/// One paragraph: fields in file order, names as written (compared case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// The value of `name` (case-insensitive); continuation lines joined with `\n`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Splits `text` into paragraphs. Lines starting with `#` are comments (as in `.sources`
/// files); a line that is neither a field nor a continuation is ignored.
pub fn parse(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.fields.last_mut() {
                let t = line.trim();
                // A lone "." stands for an empty line inside a multi-line value.
                let t = if t == "." { "" } else { t };
                if !v.is_empty() {
                    v.push('\n');
                }
                v.push_str(t);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.fields
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let text = "Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\n\n\n# c\nPackage: b\nSHA256:\n 00 1 x\n 11 2 y\n";
        let s = parse(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("package"), Some("a"));
        assert_eq!(s[0].get("Description"), Some("short\nlong line\n\nmore"));
        assert_eq!(s[1].get("SHA256"), Some("00 1 x\n11 2 y"));
        assert_eq!(s[1].get("Version"), None);
    }
}
