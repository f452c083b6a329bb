//! The user's configuration file and the one place that decides which setting wins.
//!
//! # Precedence
//!
//! For every setting, the first level that has it wins:
//!
//! 1. command-line flags ([`Flags`]; environment variables that stand for a flag, such as
//!    `DEVBOX_CATALOG_DIR`, belong here),
//! 2. the project file (`devbox.toml`, a [`Project`]),
//! 3. the user configuration (`~/.config/devbox/config.toml`, a [`UserConfig`]),
//! 4. built-in defaults ([`Defaults::builtin`]).
//!
//! The project file describes one box. When the command line names a different box than the
//! project's (`devbox enter other` inside the project), the project does not apply at all:
//! that box gets flags, user configuration and defaults only. Packages, setup, env, mounts and
//! hooks exist only in project files, so they come from the project or are empty.
//!
//! # `~/.config/devbox/config.toml`
//!
//! (`$XDG_CONFIG_HOME/devbox/config.toml` when that is set.) Every key is optional; unknown
//! keys are errors, like in `devbox.toml`.
//!
//! ```toml
//! default_image = "debian:13"     # image of a new box when neither flag nor project names one
//! default_box = "dev"             # box for enter/run when no name is given and no project applies
//! catalog_dir = "~/devbox-images" # more catalog entries (*.toml); ~ and $VAR expand,
//!                                 # relative paths start at this file's directory
//! insecure_registries = ["registry.lan:5000"] # spoken to over plain http (no TLS)
//! [registry_mirrors]              # registry host -> mirrors tried in order before it
//! "docker.io" = ["mirror.gcr.io", "https://registry.example.org"]
//! [archive_mirrors]               # distribution id -> its package archive, for `archive`
//! debian = "http://mirror.lan/debian"     # catalog sources (else the host's apt configuration)
//! [archive_keyrings]              # distribution id -> the keyring its archive is signed with
//! debian = "~/keys/debian-archive-keyring.gpg"
//! [[trusted]]                     # a project file used although it is not yours alone
//! file = "/srv/shared/proj/devbox.toml"   # canonical path (written by `devbox trust`)
//! owner = 1002                    # the uid it must still belong to
//! ```
//!
//! A registry is a host name with an optional port (`docker.io`, `localhost:5000`); a mirror is
//! a host (with optional port and path) or an `http://`/`https://` URL. Registries on this
//! machine (localhost, 127.0.0.0/8, ::1) are spoken to over plain http without being listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use toml::de::DeTable;
use toml::Spanned;

use super::error::{ConfigError, Doc};
use super::expand::{self, HostEnv};
use super::schema;
use super::trust::Trusted;
use super::{Home, Hooks, Mount, Project};
use crate::state::{self, Isolate};

/// Which level a setting came from (for messages such as "image debian:13, from devbox.toml").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Flag,
    Project,
    User,
    Default,
}

/// A value with the level it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub from: Level,
}

impl<T> Sourced<T> {
    fn new(value: T, from: Level) -> Sourced<T> {
        Sourced { value, from }
    }
}

/// What the command line said; `None` is "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// The box named on the command line (`enter NAME`, `create --name NAME`).
    pub name: Option<String>,
    /// `--image` (or `create IMAGE`).
    pub image: Option<String>,
    /// `--unshare` (already expanded: `all` is net, pid and ipc).
    pub unshare: Option<Vec<Isolate>>,
    /// `--catalog-dir` or `DEVBOX_CATALOG_DIR`.
    pub catalog_dir: Option<PathBuf>,
}

/// Built-in defaults, the last level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub image: String,
    pub unshare: Vec<Isolate>,
    pub home: Home,
    pub catalog_dir: Option<PathBuf>,
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
}

impl Defaults {
    /// devbox's own defaults: image `debian:13`, the host's namespaces, the shared home, no
    /// extra catalog directory, no mirrors.
    pub fn builtin() -> Defaults {
        Defaults {
            image: "debian:13".into(),
            unshare: Vec::new(),
            home: Home::Shared,
            catalog_dir: None,
            registry_mirrors: BTreeMap::new(),
        }
    }
}

/// `~/.config/devbox/config.toml`, validated and expanded. `Default` is "no file".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub default_image: Option<String>,
    pub default_box: Option<String>,
    pub catalog_dir: Option<PathBuf>,
    /// Registry host -> mirrors, in the order to try them.
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// Registries (`host` or `host:port`) spoken to over plain http.
    pub insecure_registries: Vec<String>,
    /// Project files accepted with `devbox trust` (see [`super::trust`]).
    pub trusted: Vec<Trusted>,
    /// Distribution id -> URL of its package archive (`archive` catalog sources).
    pub archive_mirrors: BTreeMap<String, String>,
    /// Distribution id -> keyring file its archive's InRelease is checked against.
    pub archive_keyrings: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    default_image: Option<Spanned<String>>,
    default_box: Option<Spanned<String>>,
    catalog_dir: Option<Spanned<String>>,
    #[serde(default)]
    registry_mirrors: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    #[serde(default)]
    insecure_registries: Vec<Spanned<String>>,
    #[serde(default)]
    trusted: Vec<RawTrusted>,
    #[serde(default)]
    archive_mirrors: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    archive_keyrings: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrusted {
    file: Spanned<String>,
    owner: Spanned<i64>,
}

/// Whether `r` is written as a registry host: a host name or address with an optional port,
/// no scheme, no path.
fn is_registry_host(r: &str) -> bool {
    !(r.is_empty()
        || r.contains("://")
        || r.contains('/')
        || r.chars().any(|c| c.is_whitespace() || c.is_control()))
}

impl UserConfig {
    /// Where the user configuration lives: `$XDG_CONFIG_HOME/devbox/config.toml`, by default
    /// `~/.config/devbox/config.toml`. `None` when there is no home directory.
    pub fn path() -> Option<PathBuf> {
        directories::BaseDirs::new().map(|b| b.config_dir().join("devbox").join("config.toml"))
    }

    /// Loads the user configuration from [`UserConfig::path`]; a missing file is the default.
    pub fn load(host: &HostEnv) -> Result<UserConfig> {
        match UserConfig::path() {
            Some(p) => UserConfig::load_from(&p, host),
            None => Ok(UserConfig::default()),
        }
    }

    /// Loads `file`; a missing file is the default.
    pub fn load_from(file: &Path, host: &HostEnv) -> Result<UserConfig> {
        match std::fs::read_to_string(file) {
            Ok(text) => Ok(UserConfig::parse(&text, file, host)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
        }
    }

    pub fn parse(text: &str, file: &Path, host: &HostEnv) -> Result<UserConfig, ConfigError> {
        let doc = Doc { text, file };
        let root = DeTable::parse(text).map_err(|e| doc.syntax(&e))?;
        schema::check(&doc, root.get_ref(), root.span(), &schema::USER)?;
        let raw: RawUser =
            toml::from_str(text).map_err(|e| schema::serde_error(&doc, root.get_ref(), &e))?;
        let dir = file.parent().unwrap_or(Path::new("."));

        let default_image = match raw.default_image {
            Some(i)
                if i.get_ref().trim().is_empty() || i.get_ref().chars().any(char::is_control) =>
            {
                return Err(doc.err(
                    i.span(),
                    "`default_image` is empty",
                    Some(
                        "name an image, e.g. default_image = \"debian:13\", or remove the line"
                            .to_string(),
                    ),
                ))
            }
            Some(i) => Some(i.get_ref().trim().to_string()),
            None => None,
        };

        let default_box = match raw.default_box {
            Some(b) => {
                if state::validate_name(b.get_ref()).is_err() {
                    return Err(doc.err(
                        b.span(),
                        format!(
                            "`default_box` is {:?}, which is not a valid box name",
                            b.get_ref()
                        ),
                        Some(format!("{}; e.g. default_box = \"dev\"", state::NAME_RULE)),
                    ));
                }
                Some(b.into_inner())
            }
            None => None,
        };

        let catalog_dir = match raw.catalog_dir {
            Some(c) => {
                if c.get_ref().trim().is_empty() {
                    return Err(doc.err(
                        c.span(),
                        "`catalog_dir` is empty",
                        Some("name a directory, e.g. catalog_dir = \"~/devbox-images\", or remove the line".to_string()),
                    ));
                }
                Some(
                    expand::expand_path(c.get_ref(), host, dir).map_err(|e| {
                        doc.err(c.span(), format!("`catalog_dir` {e}"), Some(e.hint()))
                    })?,
                )
            }
            None => None,
        };

        let mut registry_mirrors = BTreeMap::new();
        for (reg, mirrors) in raw.registry_mirrors {
            let r = reg.get_ref();
            if !is_registry_host(r) {
                return Err(doc.err(
                    reg.span(),
                    format!("{r:?} in [registry_mirrors] is not a registry host"),
                    Some("write the registry as a host with an optional port and no scheme, e.g. \"docker.io\" = [\"mirror.gcr.io\"]".to_string()),
                ));
            }
            let mut list = Vec::new();
            for m in mirrors {
                let v = m.get_ref();
                let bad = v.is_empty()
                    || v.chars().any(|c| c.is_whitespace() || c.is_control())
                    || (v.contains("://")
                        && !(v.starts_with("https://") || v.starts_with("http://")))
                    || v == "https://"
                    || v == "http://";
                if bad {
                    return Err(doc.err(
                        m.span(),
                        format!("mirror {v:?} of `{r}` in [registry_mirrors] is not a host or an http(s) URL"),
                        Some("write a host (mirror.gcr.io, host:5000/path) or a URL (https://mirror.example.org)".to_string()),
                    ));
                }
                list.push(m.into_inner());
            }
            registry_mirrors.insert(reg.into_inner(), list);
        }

        let mut insecure_registries = Vec::new();
        for r in raw.insecure_registries {
            if !is_registry_host(r.get_ref()) {
                return Err(doc.err(
                    r.span(),
                    format!(
                        "{:?} in `insecure_registries` is not a registry host",
                        r.get_ref()
                    ),
                    Some("write a host with an optional port and no scheme, e.g. insecure_registries = [\"registry.lan:5000\"]".to_string()),
                ));
            }
            insecure_registries.push(r.into_inner());
        }

        let mut trusted = Vec::new();
        for t in raw.trusted {
            let f = t.file.get_ref();
            if !f.starts_with('/') || f.chars().any(char::is_control) {
                return Err(doc.err(
                    t.file.span(),
                    format!("`file` in [[trusted]] is {f:?}, which is not an absolute path"),
                    Some("write the project file's full path, as `devbox trust PATH` does, e.g. file = \"/srv/shared/proj/devbox.toml\"".to_string()),
                ));
            }
            let Ok(owner) = u32::try_from(*t.owner.get_ref()) else {
                return Err(doc.err(
                    t.owner.span(),
                    format!(
                        "`owner` in [[trusted]] is {}, which is not a uid",
                        t.owner.get_ref()
                    ),
                    Some(
                        "write the uid the file belongs to (`stat -c %u FILE`), e.g. owner = 1002"
                            .to_string(),
                    ),
                ));
            };
            trusted.push(Trusted {
                file: PathBuf::from(f),
                owner,
            });
        }

        let mut archive_mirrors = BTreeMap::new();
        for (distro, url) in raw.archive_mirrors {
            let u = url.get_ref();
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() > "https://".len()
                && !u.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(doc.err(
                    url.span(),
                    format!(
                        "the mirror of `{}` in [archive_mirrors] is {u:?}, which is not an http(s) URL",
                        distro.get_ref()
                    ),
                    Some("write the URL of the archive's root, the directory holding dists/ and pool/, e.g. debian = \"http://mirror.lan/debian\"".to_string()),
                ));
            }
            archive_mirrors.insert(
                distro.into_inner(),
                url.into_inner().trim_end_matches('/').to_string(),
            );
        }

        let mut archive_keyrings = BTreeMap::new();
        for (distro, path) in raw.archive_keyrings {
            let p = expand::expand_path(path.get_ref(), host, dir).map_err(|e| {
                doc.err(
                    path.span(),
                    format!(
                        "the keyring of `{}` in [archive_keyrings] {e}",
                        distro.get_ref()
                    ),
                    Some(e.hint()),
                )
            })?;
            archive_keyrings.insert(distro.into_inner(), p);
        }

        Ok(UserConfig {
            archive_mirrors,
            archive_keyrings,
            file: Some(file.to_path_buf()),
            default_image,
            default_box,
            catalog_dir,
            registry_mirrors,
            insecure_registries,
            trusted,
        })
    }
}

/// Everything a command needs to know about the box, each setting decided once (see the
/// module's precedence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The box: the flag's, the project's, the user's `default_box`; `None` leaves the choice
    /// to "the only box".
    pub name: Option<Sourced<String>>,
    pub image: Sourced<String>,
    pub unshare: Sourced<Vec<Isolate>>,
    pub home: Sourced<Home>,
    pub catalog_dir: Option<Sourced<PathBuf>>,
    /// The defaults' mirrors with the user's lists replacing them per registry.
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// The project file that applied, if any.
    pub project_file: Option<PathBuf>,
    pub packages: Vec<String>,
    pub setup: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub hooks: Hooks,
}

/// Decides every setting: flags > project > user configuration > built-in defaults. The only
/// place that encodes this order.
pub fn resolve(
    flags: &Flags,
    project: Option<&Project>,
    user: &UserConfig,
    defaults: &Defaults,
) -> Settings {
    // A project speaks only for its own box.
    let project = project.filter(|p| !matches!(&flags.name, Some(n) if *n != p.name));

    let name = flags
        .name
        .clone()
        .map(|n| Sourced::new(n, Level::Flag))
        .or_else(|| project.map(|p| Sourced::new(p.name.clone(), Level::Project)))
        .or_else(|| {
            user.default_box
                .clone()
                .map(|n| Sourced::new(n, Level::User))
        });

    let image = flags
        .image
        .clone()
        .map(|i| Sourced::new(i, Level::Flag))
        .or_else(|| project.map(|p| Sourced::new(p.image.clone(), Level::Project)))
        .or_else(|| {
            user.default_image
                .clone()
                .map(|i| Sourced::new(i, Level::User))
        })
        .unwrap_or_else(|| Sourced::new(defaults.image.clone(), Level::Default));

    let unshare = flags
        .unshare
        .clone()
        .map(|u| Sourced::new(u, Level::Flag))
        .or_else(|| project.map(|p| Sourced::new(p.unshare.clone(), Level::Project)))
        .unwrap_or_else(|| Sourced::new(defaults.unshare.clone(), Level::Default));

    let home = project
        .map(|p| Sourced::new(p.home.clone(), Level::Project))
        .unwrap_or_else(|| Sourced::new(defaults.home.clone(), Level::Default));

    let catalog_dir = flags
        .catalog_dir
        .clone()
        .map(|c| Sourced::new(c, Level::Flag))
        .or_else(|| {
            user.catalog_dir
                .clone()
                .map(|c| Sourced::new(c, Level::User))
        })
        .or_else(|| {
            defaults
                .catalog_dir
                .clone()
                .map(|c| Sourced::new(c, Level::Default))
        });

    let mut registry_mirrors = defaults.registry_mirrors.clone();
    for (reg, mirrors) in &user.registry_mirrors {
        registry_mirrors.insert(reg.clone(), mirrors.clone());
    }

    Settings {
        name,
        image,
        unshare,
        home,
        catalog_dir,
        registry_mirrors,
        project_file: project.map(|p| p.file.clone()),
        packages: project.map(|p| p.packages.clone()).unwrap_or_default(),
        setup: project.map(|p| p.setup.clone()).unwrap_or_default(),
        env: project.map(|p| p.env.clone()).unwrap_or_default(),
        mounts: project.map(|p| p.mounts.clone()).unwrap_or_default(),
        hooks: project.map(|p| p.hooks.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostEnv {
        HostEnv::from_pairs([("HOME", "/home/u"), ("MIRROR", "mirror.example.org")])
    }

    fn user_file() -> &'static Path {
        Path::new("/home/u/.config/devbox/config.toml")
    }

    fn parse_user(text: &str) -> Result<UserConfig, ConfigError> {
        UserConfig::parse(text, user_file(), &host())
    }

    fn user_err(text: &str) -> String {
        parse_user(text).unwrap_err().to_string()
    }

    fn project(text: &str) -> Project {
        Project::parse(text, Path::new("/src/proj/devbox.toml"), &host()).unwrap()
    }

    #[test]
    fn user_config_parses() {
        let u = parse_user(
            r#"
default_image = "fedora:42"
default_box = "dev"
catalog_dir = "~/imgs"
[registry_mirrors]
"docker.io" = ["mirror.gcr.io", "https://m.example.org/v2"]
"localhost:5000" = []
"#,
        )
        .unwrap();
        assert_eq!(u.file.as_deref(), Some(user_file()));
        assert_eq!(u.default_image.as_deref(), Some("fedora:42"));
        assert_eq!(u.default_box.as_deref(), Some("dev"));
        assert_eq!(u.catalog_dir, Some(PathBuf::from("/home/u/imgs")));
        assert_eq!(
            u.registry_mirrors["docker.io"],
            vec!["mirror.gcr.io", "https://m.example.org/v2"]
        );
        assert!(u.registry_mirrors["localhost:5000"].is_empty());
        assert!(u.insecure_registries.is_empty());
        assert!(u.trusted.is_empty());
        let u = parse_user(
            "[[trusted]]\nfile = \"/srv/p/devbox.toml\"\nowner = 1002\n[[trusted]]\nfile = \"/x/devbox.toml\"\nowner = 0\n",
        )
        .unwrap();
        assert_eq!(
            u.trusted,
            [
                Trusted {
                    file: "/srv/p/devbox.toml".into(),
                    owner: 1002
                },
                Trusted {
                    file: "/x/devbox.toml".into(),
                    owner: 0
                }
            ]
        );
        let u = parse_user("insecure_registries = [\"registry.lan:5000\", \"10.0.0.7\"]").unwrap();
        assert_eq!(u.insecure_registries, ["registry.lan:5000", "10.0.0.7"]);
        // Empty file: all defaults; relative catalog_dir starts at the file's directory.
        assert_eq!(
            parse_user("").unwrap(),
            UserConfig {
                file: Some(user_file().into()),
                ..UserConfig::default()
            }
        );
        assert_eq!(
            parse_user("catalog_dir = \"images\"").unwrap().catalog_dir,
            Some(PathBuf::from("/home/u/.config/devbox/images"))
        );
    }

    #[test]
    fn user_config_errors_are_located() {
        let f = "/home/u/.config/devbox/config.toml";
        let e = user_err("default_box = \"dev\"\ndefault_imag = \"x\"\n");
        assert!(e.starts_with(&format!("{f}:2:1: unknown key `default_imag` at the top level; did you mean `default_image`?")), "{e}");
        assert!(
            e.contains("`default_image`, `default_box`, `catalog_dir`, `registry_mirrors`, `insecure_registries`"),
            "{e}"
        );
        let e = user_err("default-box = \"dev\"");
        assert!(e.contains("did you mean `default_box`?"), "{e}");
        let e = user_err("\n\ndefault_box = 3");
        assert!(
            e.starts_with(&format!(
                "{f}:3:15: `default_box` at the top level must be a string, not an integer"
            )),
            "{e}"
        );
        let e = user_err("default_box = \"-x\"");
        assert!(
            e.starts_with(&format!(
                "{f}:1:15: `default_box` is \"-x\", which is not a valid box name"
            )),
            "{e}"
        );
        assert!(e.contains("starts with a letter or digit"), "{e}");
        let e = user_err("default_image = \"  \"");
        assert!(
            e.starts_with(&format!("{f}:1:17: `default_image` is empty")),
            "{e}"
        );
        let e = user_err("catalog_dir = \"$NOPE/x\"");
        assert!(
            e.starts_with(&format!(
                "{f}:1:15: `catalog_dir` uses $NOPE, which is not set"
            )),
            "{e}"
        );
        let e = user_err("[registry_mirrors]\n\"https://docker.io\" = [\"m\"]");
        assert!(
            e.starts_with(&format!(
                "{f}:2:1: \"https://docker.io\" in [registry_mirrors] is not a registry host"
            )),
            "{e}"
        );
        let e = user_err("[registry_mirrors]\n\"docker.io\" = [\"ftp://m\"]");
        assert!(
            e.starts_with(&format!("{f}:2:16: mirror \"ftp://m\" of `docker.io`")),
            "{e}"
        );
        let e = user_err("[registry_mirrors]\n\"docker.io\" = \"m\"");
        assert!(e.starts_with(&format!("{f}:2:15: `docker.io` in [registry_mirrors] must be a list of strings, not a string")), "{e}");
        let e = user_err("registry_mirrors = [\"m\"]");
        assert!(
            e.starts_with(&format!(
                "{f}:1:20: `registry_mirrors` at the top level must be a table"
            )),
            "{e}"
        );
        let e = user_err("insecure_registries = \"registry.lan\"");
        assert!(e.starts_with(&format!("{f}:1:23: `insecure_registries` at the top level must be a list of strings, not a string")), "{e}");
        let e = user_err("\ninsecure_registries = [\"ok:5000\", \"http://registry.lan\"]");
        assert!(
            e.starts_with(&format!(
                "{f}:2:35: \"http://registry.lan\" in `insecure_registries` is not a registry host"
            )),
            "{e}"
        );
        let e = user_err("[[trusted]]\nfile = \"rel/devbox.toml\"\nowner = 1");
        assert!(e.starts_with(&format!("{f}:2:8: `file` in [[trusted]] is \"rel/devbox.toml\", which is not an absolute path")), "{e}");
        let e = user_err("[[trusted]]\nfile = \"/p/devbox.toml\"\nowner = -1");
        assert!(
            e.starts_with(&format!(
                "{f}:3:9: `owner` in [[trusted]] is -1, which is not a uid"
            )),
            "{e}"
        );
        let e = user_err("[[trusted]]\nfile = \"/p/devbox.toml\"\nowner = \"bob\"");
        assert!(
            e.starts_with(&format!(
                "{f}:3:9: `owner` in [[trusted]] must be a whole number, not a string"
            )),
            "{e}"
        );
        let e = user_err("[[trusted]]\nfile = \"/p/devbox.toml\"\n");
        assert!(e.contains("`owner` is missing in [[trusted]]"), "{e}");
        let e = user_err("default_box = \"dev");
        assert!(
            e.starts_with(&format!("{f}:1:19: this is not valid TOML")),
            "{e}"
        );
    }

    #[test]
    fn user_config_loads_missing_as_default() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        assert_eq!(
            UserConfig::load_from(&p, &host()).unwrap(),
            UserConfig::default()
        );
        std::fs::write(&p, "default_box = \"x\"\n").unwrap();
        let u = UserConfig::load_from(&p, &host()).unwrap();
        assert_eq!(u.default_box.as_deref(), Some("x"));
        std::fs::write(&p, "bogus = 1\n").unwrap();
        let e = format!("{:#}", UserConfig::load_from(&p, &host()).unwrap_err());
        assert!(e.contains(&format!("{}:1:1:", p.display())), "{e}");
    }

    fn user_all() -> UserConfig {
        UserConfig {
            file: None,
            default_image: Some("user-image".into()),
            default_box: Some("user-box".into()),
            catalog_dir: Some("/user/catalog".into()),
            registry_mirrors: [("docker.io".to_string(), vec!["user-mirror".to_string()])].into(),
            insecure_registries: Vec::new(),
            trusted: Vec::new(),
            archive_mirrors: BTreeMap::new(),
            archive_keyrings: BTreeMap::new(),
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            image: "default-image".into(),
            unshare: vec![Isolate::Ipc],
            home: Home::Shared,
            catalog_dir: Some("/default/catalog".into()),
            registry_mirrors: [
                ("docker.io".to_string(), vec!["default-mirror".to_string()]),
                ("quay.io".to_string(), vec!["q-mirror".to_string()]),
            ]
            .into(),
        }
    }

    const PROJ: &str = r#"
[box]
name = "proj"
image = "project-image"
packages = ["git"]
setup = ["make setup"]
unshare = ["net"]
home = "./h"
[box.env]
A = "1"
[[box.mounts]]
host = "/srv"
box = "/srv"
[hooks]
enter = ["echo hi"]
"#;

    #[test]
    fn defaults_apply_when_nothing_else_says() {
        let s = resolve(&Flags::default(), None, &UserConfig::default(), &defaults());
        assert_eq!(s.name, None);
        assert_eq!(
            s.image,
            Sourced::new("default-image".to_string(), Level::Default)
        );
        assert_eq!(s.unshare, Sourced::new(vec![Isolate::Ipc], Level::Default));
        assert_eq!(s.home, Sourced::new(Home::Shared, Level::Default));
        assert_eq!(
            s.catalog_dir,
            Some(Sourced::new(
                PathBuf::from("/default/catalog"),
                Level::Default
            ))
        );
        assert_eq!(s.registry_mirrors, defaults().registry_mirrors);
        assert_eq!(s.project_file, None);
        assert!(s.packages.is_empty() && s.setup.is_empty() && s.env.is_empty());
        assert!(s.mounts.is_empty() && s.hooks.enter.is_empty());
        // The built-in defaults themselves.
        let b = resolve(
            &Flags::default(),
            None,
            &UserConfig::default(),
            &Defaults::builtin(),
        );
        assert_eq!(b.image.value, "debian:13");
        assert!(b.unshare.value.is_empty());
        assert_eq!(b.catalog_dir, None);
    }

    #[test]
    fn user_config_overrides_defaults() {
        let s = resolve(&Flags::default(), None, &user_all(), &defaults());
        assert_eq!(
            s.name,
            Some(Sourced::new("user-box".to_string(), Level::User))
        );
        assert_eq!(s.image, Sourced::new("user-image".to_string(), Level::User));
        assert_eq!(
            s.catalog_dir,
            Some(Sourced::new(PathBuf::from("/user/catalog"), Level::User))
        );
        // Per registry: the user's list replaces the default's; other registries stay.
        assert_eq!(s.registry_mirrors["docker.io"], vec!["user-mirror"]);
        assert_eq!(s.registry_mirrors["quay.io"], vec!["q-mirror"]);
    }

    #[test]
    fn project_overrides_user_config() {
        let p = project(PROJ);
        let s = resolve(&Flags::default(), Some(&p), &user_all(), &defaults());
        assert_eq!(
            s.name,
            Some(Sourced::new("proj".to_string(), Level::Project))
        );
        assert_eq!(
            s.image,
            Sourced::new("project-image".to_string(), Level::Project)
        );
        assert_eq!(s.unshare, Sourced::new(vec![Isolate::Net], Level::Project));
        assert_eq!(
            s.home,
            Sourced::new(Home::Dir("/src/proj/h".into()), Level::Project)
        );
        assert_eq!(s.project_file, Some(PathBuf::from("/src/proj/devbox.toml")));
        assert_eq!(s.packages, vec!["git"]);
        assert_eq!(s.setup, vec!["make setup"]);
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.mounts.len(), 1);
        assert_eq!(s.hooks.enter, vec!["echo hi"]);
        // What the project does not set still comes from the user configuration.
        assert_eq!(
            s.catalog_dir,
            Some(Sourced::new(PathBuf::from("/user/catalog"), Level::User))
        );
        // A project without `unshare` says "none", which overrides the defaults.
        let q = project("[box]\nimage = \"x\"\n");
        let s = resolve(&Flags::default(), Some(&q), &user_all(), &defaults());
        assert_eq!(s.unshare, Sourced::new(vec![], Level::Project));
        assert_eq!(
            s.name,
            Some(Sourced::new("proj".to_string(), Level::Project))
        );
    }

    #[test]
    fn flags_override_the_project() {
        let p = project(PROJ);
        let flags = Flags {
            name: Some("proj".into()),
            image: Some("flag-image".into()),
            unshare: Some(vec![Isolate::Pid]),
            catalog_dir: Some("/flag/catalog".into()),
        };
        let s = resolve(&flags, Some(&p), &user_all(), &defaults());
        assert_eq!(s.name, Some(Sourced::new("proj".to_string(), Level::Flag)));
        assert_eq!(s.image, Sourced::new("flag-image".to_string(), Level::Flag));
        assert_eq!(s.unshare, Sourced::new(vec![Isolate::Pid], Level::Flag));
        assert_eq!(
            s.catalog_dir,
            Some(Sourced::new(PathBuf::from("/flag/catalog"), Level::Flag))
        );
        // Naming the project's own box keeps the rest of the project.
        assert_eq!(s.packages, vec!["git"]);
        assert_eq!(s.home.from, Level::Project);
        // Flags also override user configuration and defaults directly.
        let s = resolve(&flags, None, &user_all(), &defaults());
        assert_eq!(s.image.from, Level::Flag);
        assert_eq!(s.name.map(|n| n.from), Some(Level::Flag));
    }

    #[test]
    fn a_project_does_not_apply_to_another_box() {
        let p = project(PROJ);
        let flags = Flags {
            name: Some("other".into()),
            ..Flags::default()
        };
        let s = resolve(&flags, Some(&p), &user_all(), &defaults());
        assert_eq!(s.name, Some(Sourced::new("other".to_string(), Level::Flag)));
        assert_eq!(s.image, Sourced::new("user-image".to_string(), Level::User));
        assert_eq!(s.unshare.from, Level::Default);
        assert_eq!(s.home.from, Level::Default);
        assert_eq!(s.project_file, None);
        assert!(s.packages.is_empty() && s.env.is_empty() && s.hooks.enter.is_empty());
    }
}
