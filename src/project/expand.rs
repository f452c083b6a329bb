//! `$VAR` expansion from the host environment and `~` expansion of paths.
//!
//! Rules (the same wherever devbox expands):
//! - `$NAME` and `${NAME}` are replaced by the host's value of NAME, where NAME is
//!   `[A-Za-z_][A-Za-z0-9_]*` (`$NAME` takes the longest such run: `$HOME_DIR` is `HOME_DIR`,
//!   write `${HOME}_DIR` for the other reading).
//! - A variable that is not set is an error naming the key and the variable, never a silent
//!   empty string: `${NAME:-WORD}` is the way to say "WORD when NAME is unset or empty"
//!   (WORD is expanded in turn, so `${GOPATH:-$HOME/go}` works; `${NAME:-}` gives empty).
//! - `$$` is a literal `$`; any other `$` (`$1`, `$ `, a `$` at the end) is an error, so a typo
//!   cannot pass as text.
//! - A value that is not valid UTF-8 in the host environment is an error.
//! - Paths (mount `host`, `home`, `catalog_dir`) additionally expand a leading `~` or `~/` to
//!   your home directory (`$HOME`); `~user` is not supported. A relative path is then taken
//!   relative to the directory of the file that names it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

/// The host environment that expansion reads. [`HostEnv::current`] in devbox;
/// [`HostEnv::from_pairs`] in tests.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    vars: BTreeMap<OsString, OsString>,
}

impl HostEnv {
    /// This process's environment.
    pub fn current() -> HostEnv {
        HostEnv {
            vars: std::env::vars_os().collect(),
        }
    }

    #[cfg(test)]
    pub fn from_pairs<I, K, V>(pairs: I) -> HostEnv
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        HostEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn var(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// `$HOME` when it is set to an absolute path.
    pub fn home(&self) -> Option<&Path> {
        self.var("HOME").map(Path::new).filter(|p| p.is_absolute())
    }
}

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    Unset(String),
    NotUnicode(String),
    /// A `$` not followed by a name, `{` or `$`.
    LoneDollar,
    /// `${` without its `}`.
    Unclosed,
    /// `${...}` holding something other than NAME or NAME:-WORD.
    BadBraces(String),
    /// `~` with `$HOME` unset.
    NoHome,
    /// `~user/...`.
    TildeUser,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unset(v) => write!(f, "uses ${v}, which is not set in your environment"),
            ExpandError::NotUnicode(v) => write!(f, "uses ${v}, whose value is not valid UTF-8"),
            ExpandError::LoneDollar => write!(f, "has a `$` that starts no variable"),
            ExpandError::Unclosed => write!(f, "has a `${{` without its closing `}}`"),
            ExpandError::BadBraces(s) => write!(f, "has `${{{s}}}`, which is not a variable"),
            ExpandError::NoHome => write!(f, "starts with `~` but $HOME is not set"),
            ExpandError::TildeUser => write!(f, "uses `~user`, which devbox does not expand"),
        }
    }
}

impl ExpandError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            ExpandError::Unset(v) => format!(
                "set {v} before running devbox, write ${{{v}:-DEFAULT}} for a fallback, or $$ for a literal `$`"
            ),
            ExpandError::NotUnicode(v) => format!("set {v} to UTF-8 text, or do not use it here"),
            ExpandError::LoneDollar | ExpandError::BadBraces(_) | ExpandError::Unclosed => {
                "write $NAME or ${NAME} for a variable (${NAME:-DEFAULT} for a fallback), and $$ for a literal `$`".into()
            }
            ExpandError::NoHome => "set HOME, or write the path out in full".into(),
            ExpandError::TildeUser => "write the path out in full (or ~/... for your own home)".into(),
        }
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `s` is a valid environment variable name, `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_var_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_name_start) && cs.all(is_name_char)
}

/// Expands `$NAME`, `${NAME}`, `${NAME:-WORD}` and `$$` in `s` (see the module's rules).
pub fn expand(s: &str, host: &HostEnv) -> Result<String, ExpandError> {
    let chars: Vec<char> = s.chars().collect();
    let mut p = Expander {
        chars: &chars,
        i: 0,
        host,
    };
    p.seq(false)
}

struct Expander<'a> {
    chars: &'a [char],
    i: usize,
    host: &'a HostEnv,
}

impl Expander<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    /// Text up to the end (or, nested in `${NAME:-...}`, up to the closing `}`, not consumed).
    fn seq(&mut self, nested: bool) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None if nested => return Err(ExpandError::Unclosed),
                None => return Ok(out),
                Some('}') if nested => return Ok(out),
                Some('$') => {
                    self.i += 1;
                    out.push_str(&self.dollar()?);
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let start = self.i;
        if self.peek().is_some_and(is_name_start) {
            while self.peek().is_some_and(is_name_char) {
                self.i += 1;
            }
        }
        self.chars[start..self.i].iter().collect()
    }

    fn lookup(&self, name: &str) -> Result<Option<String>, ExpandError> {
        match self.host.var(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| ExpandError::NotUnicode(name.to_string())),
        }
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        match self.peek() {
            Some('$') => {
                self.i += 1;
                Ok("$".into())
            }
            Some('{') => {
                self.i += 1;
                let start = self.i;
                let name = self.name();
                let bad = |p: &Self| {
                    let rest: String = p.chars[start..].iter().take_while(|c| **c != '}').collect();
                    if p.chars[start..].contains(&'}') {
                        ExpandError::BadBraces(rest)
                    } else {
                        ExpandError::Unclosed
                    }
                };
                if name.is_empty() {
                    return Err(bad(self));
                }
                match self.peek() {
                    Some('}') => {
                        self.i += 1;
                        self.lookup(&name)?.ok_or(ExpandError::Unset(name))
                    }
                    Some(':') if self.chars.get(self.i + 1) == Some(&'-') => {
                        self.i += 2;
                        let word = self.seq(true)?;
                        self.i += 1; // the '}'
                        Ok(self
                            .lookup(&name)?
                            .filter(|v| !v.is_empty())
                            .unwrap_or(word))
                    }
                    None => Err(ExpandError::Unclosed),
                    Some(_) => Err(bad(self)),
                }
            }
            Some(c) if is_name_start(c) => {
                let name = self.name();
                self.lookup(&name)?.ok_or(ExpandError::Unset(name))
            }
            _ => Err(ExpandError::LoneDollar),
        }
    }
}

/// Expands a path: a leading `~` or `~/`, then variables; a relative result is joined to
/// `base`. `.` components are dropped; `..` are kept (the path is not resolved on disk).
pub fn expand_path(s: &str, host: &HostEnv, base: &Path) -> Result<PathBuf, ExpandError> {
    let path = if s == "~" || s.starts_with("~/") {
        let home = host.home().ok_or(ExpandError::NoHome)?;
        let rest = expand(&s[1..], host)?;
        let mut p = home.as_os_str().to_os_string();
        p.push(rest);
        PathBuf::from(p)
    } else if s.starts_with('~') {
        return Err(ExpandError::TildeUser);
    } else {
        PathBuf::from(expand(s, host)?)
    };
    let joined = if path.is_absolute() {
        path
    } else {
        base.join(path)
    };
    Ok(crate::paths::clean_path(&joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostEnv {
        HostEnv::from_pairs([
            ("HOME", "/home/u"),
            ("USER", "u"),
            ("EMPTY", ""),
            ("HOME_DIR", "/hd"),
        ])
    }

    #[test]
    fn variables_expand() {
        let h = host();
        assert_eq!(expand("$HOME/go", &h).unwrap(), "/home/u/go");
        assert_eq!(expand("${HOME}/go", &h).unwrap(), "/home/u/go");
        assert_eq!(expand("$HOME_DIR", &h).unwrap(), "/hd");
        assert_eq!(expand("${HOME}_DIR", &h).unwrap(), "/home/u_DIR");
        assert_eq!(expand("a$USER-b", &h).unwrap(), "au-b");
        assert_eq!(expand("cost: $$5 $$$USER", &h).unwrap(), "cost: $5 $u");
        assert_eq!(expand("no vars", &h).unwrap(), "no vars");
        assert_eq!(expand("", &h).unwrap(), "");
        assert_eq!(expand("ünï$USER", &h).unwrap(), "ünïu");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let h = host();
        assert_eq!(expand("${NOPE:-x}", &h).unwrap(), "x");
        assert_eq!(expand("${EMPTY:-x}", &h).unwrap(), "x");
        assert_eq!(expand("${USER:-x}", &h).unwrap(), "u");
        assert_eq!(expand("${NOPE:-}", &h).unwrap(), "");
        assert_eq!(expand("${GOPATH:-$HOME/go}", &h).unwrap(), "/home/u/go");
        assert_eq!(expand("${A:-${B:-deep}}!", &h).unwrap(), "deep!");
        // A set but empty variable without a default is empty, not an error.
        assert_eq!(expand("[$EMPTY]", &h).unwrap(), "[]");
    }

    #[test]
    fn mistakes_are_errors() {
        let h = host();
        assert_eq!(expand("$NOPE", &h), Err(ExpandError::Unset("NOPE".into())));
        assert_eq!(
            expand("${NOPE}", &h),
            Err(ExpandError::Unset("NOPE".into()))
        );
        assert_eq!(expand("a $ b", &h), Err(ExpandError::LoneDollar));
        assert_eq!(expand("trailing$", &h), Err(ExpandError::LoneDollar));
        assert_eq!(expand("$1", &h), Err(ExpandError::LoneDollar));
        assert_eq!(expand("${HOME", &h), Err(ExpandError::Unclosed));
        assert_eq!(expand("${X:-abc", &h), Err(ExpandError::Unclosed));
        assert_eq!(
            expand("${}", &h),
            Err(ExpandError::BadBraces(String::new()))
        );
        assert_eq!(
            expand("${HOME/x}", &h),
            Err(ExpandError::BadBraces("HOME/x".into()))
        );
        assert_eq!(
            expand("${HOME:x}", &h),
            Err(ExpandError::BadBraces("HOME:x".into()))
        );
        for e in [
            ExpandError::Unset("NOPE".into()),
            ExpandError::LoneDollar,
            ExpandError::NoHome,
        ] {
            assert!(!e.to_string().is_empty() && !e.hint().is_empty());
        }
        assert!(ExpandError::Unset("NOPE".into())
            .hint()
            .contains("${NOPE:-DEFAULT}"));
    }

    #[test]
    fn non_utf8_values_are_errors() {
        use std::os::unix::ffi::OsStringExt;
        let h = HostEnv::from_pairs([(OsString::from("BAD"), OsString::from_vec(vec![0xff]))]);
        assert_eq!(
            expand("$BAD", &h),
            Err(ExpandError::NotUnicode("BAD".into()))
        );
    }

    #[test]
    fn paths_expand_tilde_and_resolve_relative_ones() {
        let h = host();
        let base = Path::new("/proj");
        let p = |s| expand_path(s, &h, base);
        assert_eq!(p("~").unwrap(), PathBuf::from("/home/u"));
        assert_eq!(p("~/data").unwrap(), PathBuf::from("/home/u/data"));
        assert_eq!(p("./cache").unwrap(), PathBuf::from("/proj/cache"));
        assert_eq!(p("a/./b//c").unwrap(), PathBuf::from("/proj/a/b/c"));
        assert_eq!(p("../x").unwrap(), PathBuf::from("/proj/../x"));
        assert_eq!(p("/abs/$USER").unwrap(), PathBuf::from("/abs/u"));
        assert_eq!(p("$HOME/x").unwrap(), PathBuf::from("/home/u/x"));
        assert_eq!(p("~bob/x"), Err(ExpandError::TildeUser));
        assert_eq!(p("/a/~/b").unwrap(), PathBuf::from("/a/~/b"));
        let no_home = HostEnv::default();
        assert_eq!(expand_path("~/x", &no_home, base), Err(ExpandError::NoHome));
    }

    #[test]
    fn variable_names() {
        for ok in ["A", "_", "GOPATH", "a1_b"] {
            assert!(is_var_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "Ä", "A=B"] {
            assert!(!is_var_name(bad), "{bad}");
        }
    }
}
