//! Configuration errors located by file, line and column, and close-match suggestions.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem in a configuration file (`devbox.toml` or the user's `config.toml`).
///
/// Displays as
/// `FILE:LINE:COLUMN: WHAT` (the form compilers use, which editors and terminals turn into links) and, when there is one, a second line `  hint: WHAT TO DO`.
/// Lines and columns count from 1; columns count characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
    /// What to do about it (allowed keys or values, an example).
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The text of one configuration file and its name, to turn byte spans into errors.
#[derive(Clone, Copy)]
pub(crate) struct Doc<'a> {
    pub text: &'a str,
    pub file: &'a Path,
}

impl Doc<'_> {
    pub fn err(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) -> ConfigError {
        let (line, column) = position(self.text, span.start);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The line of a byte offset (for "the other one is on line N").
    pub fn line_of(&self, offset: usize) -> usize {
        position(self.text, offset).0
    }

    /// A TOML syntax error from the parser.
    pub fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim_end();
        let message = message.strip_suffix('.').unwrap_or(message);
        self.err(
            e.span().unwrap_or(0..0),
            format!("this is not valid TOML: {message}"),
            Some(
                "fix the syntax at that spot: strings need double quotes (\"...\"), lists are written [\"a\", \"b\"], tables [name]"
                    .to_string(),
            ),
        )
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The candidate closest to `word` if it is close enough to be a likely misspelling: at most
/// one edit for words of up to four characters, two for longer ones. Case and `-`/`_` are
/// ignored.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    let w = norm(word);
    candidates
        .iter()
        .map(|c| (distance(&w, &norm(c)), *c))
        .filter(|(d, c)| *d <= if c.chars().count() <= 4 { 1 } else { 2 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters each cost one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[at(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[at(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[at(i - 1, j)] + 1)
                .min(d[at(i, j - 1)] + 1)
                .min(d[at(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[at(i - 2, j - 2)] + 1);
            }
            d[at(i, j)] = best;
        }
    }
    d[at(a.len(), b.len())]
}

/// `a`, `b` and `c` as "`a`, `b`, `c`".
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let t = "a = 1\nbé = 2\n\nx";
        assert_eq!(position(t, 0), (1, 1));
        assert_eq!(position(t, 4), (1, 5));
        assert_eq!(position(t, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(position(t, 9), (2, 3));
        assert_eq!(position(t, 14), (3, 1));
        assert_eq!(position(t, 15), (4, 1));
        // Past the end and inside a character clamp instead of panicking.
        assert_eq!(position(t, 999), (4, 2));
        assert_eq!(position(t, 8), (2, 2));
    }

    #[test]
    fn suggestions_are_close_matches_only() {
        let keys = ["name", "image", "packages", "setup", "unshare", "home"];
        assert_eq!(suggest("pakages", &keys), Some("packages"));
        assert_eq!(suggest("Image", &keys), Some("image"));
        assert_eq!(suggest("imgae", &keys), Some("image"));
        assert_eq!(suggest("nmae", &keys), Some("name"));
        assert_eq!(suggest("unshar", &keys), Some("unshare"));
        assert_eq!(suggest("volumes", &keys), None);
        assert_eq!(suggest("x", &keys), None);
        assert_eq!(
            suggest("default-image", &["default_image"]),
            Some("default_image")
        );
    }

    #[test]
    fn errors_display_file_line_column_and_hint() {
        let doc = Doc {
            text: "[box]\nfoo = 1\n",
            file: Path::new("/p/devbox.toml"),
        };
        let e = doc.err(
            6..9,
            "unknown key `foo` in [box]",
            Some("do this".to_string()),
        );
        assert_eq!(
            e.to_string(),
            "/p/devbox.toml:2:1: unknown key `foo` in [box]\n  hint: do this"
        );
        let e = doc.err(0..1, "x", None);
        assert_eq!(e.to_string(), "/p/devbox.toml:1:1: x");
    }
}
