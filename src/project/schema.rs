//! The shape of the configuration files as data, and a check of a parsed document against it.
//!
//! The check runs on toml's spanned document before serde sees it, so that unknown keys, missing
//! keys and wrong types are reported with the table they are in, what is allowed there, a
//! close-match suggestion and an example, in devbox's words. serde (with
//! `deny_unknown_fields`) then builds the typed structs; a test keeps both in agreement.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{list, suggest, ConfigError, Doc};

/// What a key's value must be.
#[derive(Clone, Copy)]
pub(crate) enum Ty {
    Str,
    Bool,
    /// A whole number (a uid).
    Int,
    StrList,
    Table(&'static TableSchema),
    TableList(&'static TableSchema),
    /// A table with keys of the user's choosing and string values; the place, e.g. "[box.env]".
    StrMap(&'static str),
    /// A table with keys of the user's choosing and lists of strings as values.
    StrListMap(&'static str),
}

impl Ty {
    fn expected(self) -> String {
        match self {
            Ty::Str => "a string".into(),
            Ty::Bool => "true or false".into(),
            Ty::Int => "a whole number".into(),
            Ty::StrList => "a list of strings".into(),
            Ty::Table(t) => format!("a table ({})", t.header),
            Ty::TableList(t) => format!("a list of tables ({})", t.header),
            Ty::StrMap(_) => "a table of strings".into(),
            Ty::StrListMap(_) => "a table whose values are lists of strings".into(),
        }
    }
}

pub(crate) struct Field {
    pub key: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// One line of TOML showing the key in use (for hints).
    pub example: &'static str,
}

pub(crate) struct TableSchema {
    /// How the table is written: "[box]", "[[box.mounts]]"; "" for the top level.
    pub header: &'static str,
    pub fields: &'static [Field],
}

impl TableSchema {
    /// "in [box]", or "at the top level".
    fn place(&self) -> String {
        if self.header.is_empty() {
            "at the top level".into()
        } else {
            format!("in {}", self.header)
        }
    }

    pub fn keys(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.key).collect()
    }
}

const fn field(key: &'static str, ty: Ty, example: &'static str) -> Field {
    Field {
        key,
        ty,
        required: false,
        example,
    }
}

pub(crate) static MOUNT: TableSchema = TableSchema {
    header: "[[box.mounts]]",
    fields: &[
        Field {
            required: true,
            ..field("host", Ty::Str, "host = \"~/data\"")
        },
        Field {
            required: true,
            ..field("box", Ty::Str, "box = \"/data\"")
        },
        field("readonly", Ty::Bool, "readonly = true"),
    ],
};

pub(crate) static BOX: TableSchema = TableSchema {
    header: "[box]",
    fields: &[
        field("name", Ty::Str, "name = \"myproject\""),
        Field {
            required: true,
            ..field("image", Ty::Str, "image = \"debian:13\"")
        },
        field(
            "packages",
            Ty::StrList,
            "packages = [\"build-essential\", \"git\"]",
        ),
        field(
            "setup",
            Ty::StrList,
            "setup = [\"curl -fsSL https://example.org/install.sh | sh\"]",
        ),
        field("unshare", Ty::StrList, "unshare = [\"net\"]"),
        field("home", Ty::Str, "home = \"shared\""),
        field("prompt", Ty::Str, "prompt = \"(myproject) \\\\w\\\\$ \""),
        field(
            "env",
            Ty::StrMap("[box.env]"),
            "[box.env]\nGOPATH = \"$HOME/go\"",
        ),
        field(
            "mounts",
            Ty::TableList(&MOUNT),
            "[[box.mounts]]\nhost = \"~/data\"\nbox = \"/data\"",
        ),
    ],
};

pub(crate) static HOOKS: TableSchema = TableSchema {
    header: "[hooks]",
    fields: &[field(
        "enter",
        Ty::StrList,
        "enter = [\"source .venv/bin/activate\"]",
    )],
};

pub(crate) static PROJECT: TableSchema = TableSchema {
    header: "",
    fields: &[
        Field {
            required: true,
            ..field("box", Ty::Table(&BOX), "[box]\nimage = \"debian:13\"")
        },
        field(
            "hooks",
            Ty::Table(&HOOKS),
            "[hooks]\nenter = [\"echo hello\"]",
        ),
    ],
};

pub(crate) static TRUSTED: TableSchema = TableSchema {
    header: "[[trusted]]",
    fields: &[
        Field {
            required: true,
            ..field("file", Ty::Str, "file = \"/srv/shared/proj/devbox.toml\"")
        },
        Field {
            required: true,
            ..field("owner", Ty::Int, "owner = 1002")
        },
    ],
};

pub(crate) static USER: TableSchema = TableSchema {
    header: "",
    fields: &[
        field("default_image", Ty::Str, "default_image = \"debian:13\""),
        field("default_box", Ty::Str, "default_box = \"dev\""),
        field("catalog_dir", Ty::Str, "catalog_dir = \"~/devbox-images\""),
        field(
            "registry_mirrors",
            Ty::StrListMap("[registry_mirrors]"),
            "[registry_mirrors]\n\"docker.io\" = [\"mirror.gcr.io\"]",
        ),
        field(
            "insecure_registries",
            Ty::StrList,
            "insecure_registries = [\"registry.lan:5000\"]",
        ),
        field(
            "archive_mirrors",
            Ty::StrMap("[archive_mirrors]"),
            "[archive_mirrors]\ndebian = \"http://mirror.lan/debian\"",
        ),
        field(
            "archive_keyrings",
            Ty::StrMap("[archive_keyrings]"),
            "[archive_keyrings]\ndebian = \"/usr/share/keyrings/debian-archive-keyring.gpg\"",
        ),
        field(
            "trusted",
            Ty::TableList(&TRUSTED),
            "[[trusted]]\nfile = \"/srv/shared/proj/devbox.toml\"\nowner = 1002",
        ),
    ],
};

fn found(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// "write it like: EXAMPLE" (or `lead` instead of "write it like"), a multi-line example
/// indented on its own lines.
fn example_hint(f: &Field, lead: &str) -> String {
    if f.example.contains('\n') {
        format!("{lead}:\n{}", indent(f.example))
    } else {
        format!("{lead}: {}", f.example)
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks `table` (whose own span is `span`) against `schema`: the first problem in file order
/// is returned.
pub(crate) fn check(
    doc: &Doc<'_>,
    table: &DeTable<'_>,
    span: Range<usize>,
    schema: &TableSchema,
) -> Result<(), ConfigError> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in entries {
        let name: &str = key.get_ref();
        let Some(f) = schema.fields.iter().find(|f| f.key == name) else {
            let keys = schema.keys();
            let mut message = format!("unknown key `{name}` {}", schema.place());
            if let Some(s) = suggest(name, &keys) {
                message.push_str(&format!("; did you mean `{s}`?"));
            }
            return Err(doc.err(
                key.span(),
                message,
                Some(format!(
                    "the keys allowed {} are: {}",
                    schema.place(),
                    list(&keys)
                )),
            ));
        };
        check_value(doc, f, schema, value)?;
    }
    for f in schema.fields.iter().filter(|f| f.required) {
        if !table.contains_key(f.key) {
            let message = if schema.header.is_empty() {
                match f.ty {
                    Ty::Table(t) => format!("there is no {} table; every file needs one", t.header),
                    _ => format!("`{}` is missing at the top level", f.key),
                }
            } else {
                format!("`{}` is missing {}", f.key, schema.place())
            };
            return Err(doc.err(span, message, Some(example_hint(f, "add it"))));
        }
    }
    Ok(())
}

fn check_value(
    doc: &Doc<'_>,
    f: &Field,
    schema: &TableSchema,
    value: &Spanned<DeValue<'_>>,
) -> Result<(), ConfigError> {
    let wrong = |span: Range<usize>, what: &str| {
        doc.err(
            span,
            format!(
                "`{}` {} must be {}, not {what}",
                f.key,
                schema.place(),
                f.ty.expected()
            ),
            Some(example_hint(f, "write it like")),
        )
    };
    let v = value.get_ref();
    match (f.ty, v) {
        (Ty::Str, DeValue::String(_))
        | (Ty::Bool, DeValue::Boolean(_))
        | (Ty::Int, DeValue::Integer(_)) => Ok(()),
        (Ty::StrList, DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !matches!(item.get_ref(), DeValue::String(_)) {
                    return Err(wrong(
                        item.span(),
                        &format!("a list whose item {} is {}", i + 1, found(item.get_ref())),
                    ));
                }
            }
            Ok(())
        }
        (Ty::Table(t), DeValue::Table(inner)) => check(doc, inner, value.span(), t),
        (Ty::TableList(t), DeValue::Array(items)) => {
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::Table(inner) => check(doc, inner, item.span(), t)?,
                    other => {
                        return Err(wrong(
                            item.span(),
                            &format!("a list holding {}", found(other)),
                        ))
                    }
                }
            }
            Ok(())
        }
        (Ty::StrMap(place), DeValue::Table(inner)) => {
            let mut entries: Vec<_> = inner.iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (k, v) in entries {
                if !matches!(v.get_ref(), DeValue::String(_)) {
                    return Err(doc.err(
                        v.span(),
                        format!(
                            "`{}` in {place} must be a string, not {}",
                            k.get_ref(),
                            found(v.get_ref())
                        ),
                        Some(format!(
                            "quote the value: {} = \"...\"",
                            toml_key(k.get_ref())
                        )),
                    ));
                }
            }
            Ok(())
        }
        (Ty::StrListMap(place), DeValue::Table(inner)) => {
            let mut entries: Vec<_> = inner.iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (k, v) in entries {
                let ok = match v.get_ref() {
                    DeValue::Array(items) => items
                        .iter()
                        .all(|i| matches!(i.get_ref(), DeValue::String(_))),
                    _ => false,
                };
                if !ok {
                    return Err(doc.err(
                        v.span(),
                        format!(
                            "`{}` in {place} must be a list of strings, not {}",
                            k.get_ref(),
                            found(v.get_ref())
                        ),
                        Some(format!(
                            "write it like: {} = [\"...\"]",
                            toml_key(k.get_ref())
                        )),
                    ));
                }
            }
            Ok(())
        }
        (_, other) => Err(wrong(value.span(), found(other))),
    }
}

/// A key as it must be written in TOML: bare when it can be, quoted otherwise.
pub(crate) fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// Maps an error from serde's pass (which runs after `check` and so should not fail) to a
/// located error, naming the innermost key whose value contains the error.
pub(crate) fn serde_error(doc: &Doc<'_>, root: &DeTable<'_>, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let key = innermost_key(root, span.start).unwrap_or_default();
    let message = if key.is_empty() {
        e.message().to_string()
    } else {
        format!("`{key}`: {}", e.message())
    };
    doc.err(span, message, None)
}

fn innermost_key(table: &DeTable<'_>, at: usize) -> Option<String> {
    for (k, v) in table.iter() {
        let kspan = k.span();
        let vspan = v.span();
        if (kspan.start <= at && at < kspan.end) || (vspan.start <= at && at < vspan.end) {
            let inner = match v.get_ref() {
                DeValue::Table(t) => innermost_key(t, at),
                DeValue::Array(items) => items.iter().find_map(|i| match i.get_ref() {
                    DeValue::Table(t) => innermost_key(t, at),
                    _ => None,
                }),
                _ => None,
            };
            return Some(match inner {
                Some(i) => format!("{}.{i}", k.get_ref()),
                None => k.get_ref().to_string(),
            });
        }
    }
    // Array-of-tables and sub-tables have spans elsewhere in the file than their parent key.
    for (k, v) in table.iter() {
        let inner = match v.get_ref() {
            DeValue::Table(t) => innermost_key(t, at),
            DeValue::Array(items) => items.iter().find_map(|i| match i.get_ref() {
                DeValue::Table(t) => innermost_key(t, at),
                _ => None,
            }),
            _ => None,
        };
        if let Some(i) = inner {
            return Some(format!("{}.{i}", k.get_ref()));
        }
    }
    None
}
