//! `devbox init`: writes a commented starter `devbox.toml` for the project in a directory.
//!
//! Uses only `crate::` paths: it is compiled from `project/mod.rs` until `cmd/mod.rs` declares
//! it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::paths::Dirs;
use crate::project::{self, Defaults, Flags, HostEnv, UserConfig};

/// Writes `DIR/devbox.toml` (refusing to replace one unless `force`) and says so. The image is
/// `image`, else the user configuration's `default_image`, else devbox's default; the box name
/// is the directory's name, sanitised to the box-name rule, or, when a box of that name
/// belongs to another project file or was made with `devbox create`, the first free `NAME-2`,
/// `NAME-3`... (`dirs`: the store, to look; `None` takes the directory's name as it is). When
/// devbox would not use the file where it is (a directory others can write), it says so.
pub fn run(dirs: Option<&Dirs>, dir: &Path, image: Option<&str>, force: bool) -> Result<i32> {
    let user = UserConfig::load(&HostEnv::current())?;
    // A catalog name is checked now (from the catalog files, without the network), so a typo
    // is caught with its close matches here rather than at the box's first use.
    if let Some(i) = image {
        if let crate::store::ImageRef::Catalog(c) = crate::store::ImageRef::classify(i) {
            crate::catalog::Catalog::load()?
                .lookup(&c)
                .map_err(|e| anyhow::anyhow!("--image {i}: {e}"))?;
        }
    }
    let target = std::path::absolute(dir)
        .ok()
        .and_then(|d| std::fs::canonicalize(d).ok())
        .map(|d| d.join(project::FILE_NAME));
    let taken = |name: &str| -> bool {
        let Some(dirs) = dirs else { return false };
        let Ok(cfg) = crate::state::BoxConfig::load(dirs, name) else {
            return false;
        };
        crate::provision::recorded_file(dirs, &cfg) != target
    };
    let (path, name, image) = write(dir, image, force, &user, &taken)?;
    let default = project::name_from_dir(path.parent().unwrap_or(dir));
    if name != default {
        println!(
            "Box '{default}' belongs to another project (or was made with `devbox create`), so this project's box is '{name}'."
        );
    }
    println!(
        "Wrote {} for box '{name}' from {image}.\n  Edit it to add packages, setup commands, env and mounts.",
        path.display()
    );
    if let Ok(i) = project::trust::inspect(&path, project::trust::me()) {
        if !i.problems.is_empty() {
            let reasons: Vec<String> = i
                .problems
                .iter()
                .map(project::trust::Problem::describe)
                .collect();
            eprintln!(
                "devbox: note: devbox will not use this file where it is: {}\n  accept it with `devbox trust {}` if that is what you want",
                reasons.join("; "),
                project::trust::shell_quote(&i.file)
            );
        }
    }
    Ok(0)
}

/// The work of [`run`] without printing: returns the file written, the box name and the image.
/// `taken` says whether a box name is another's (the name then gets a `-2`, `-3`... suffix).
pub fn write(
    dir: &Path,
    image: Option<&str>,
    force: bool,
    user: &UserConfig,
    taken: &dyn Fn(&str) -> bool,
) -> Result<(PathBuf, String, String)> {
    let dir =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory\n  hint: create it first, or run `devbox init` in the project's directory",
            dir.display()
        );
    }
    let flags = Flags {
        image: image.map(str::to_string),
        ..Flags::default()
    };
    let image = project::resolve(&flags, None, user, &Defaults::builtin())
        .image
        .value;
    if image.trim().is_empty() {
        bail!("the image is empty\n  hint: name one, e.g. `devbox init --image debian:13`");
    }
    let base = project::name_from_dir(&dir);
    let name = std::iter::once(base.clone())
        .chain((2u32..1000).map(|n| {
            let suffix = format!("-{n}");
            format!("{}{suffix}", &base[..base.len().min(64 - suffix.len())])
        }))
        .find(|n| !taken(n))
        .unwrap_or(base);
    let path = dir.join(project::FILE_NAME);
    if !force && path.exists() {
        bail!(
            "{} already exists\n  hint: edit it, or pass --force to replace it with a starter file",
            path.display()
        );
    }
    let text = starter(&name, &image);
    let mut tmp = tempfile::Builder::new()
        .prefix(".devbox.toml.")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if force {
        tmp.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    } else {
        // Never replace a file that appeared meanwhile.
        tmp.persist_noclobber(&path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists\n  hint: edit it, or pass --force to replace it with a starter file",
                    path.display()
                )
            } else {
                anyhow::Error::new(e.error).context(format!("cannot write {}", path.display()))
            }
        })?;
    }
    Ok((path, name, image))
}

/// The starter file: every key, the used ones set, the others as commented examples.
pub fn starter(name: &str, image: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        r#"# devbox.toml: the box for this project. devbox uses it in this directory and below.
# Every key is checked: a misspelt key or a bad value is an error that names its line.

[box]
# The box's name: letters, digits, '_', '.', '-', at most 64 characters.
# Without it, the name of this directory is used.
name = {name}
# What the box is made from: a catalog name (debian:13, ubuntu:24.04, fedora), an OCI image
# reference, or the path (./rootfs.tar.gz) or URL of a root filesystem tarball.
image = {image}
# Distribution packages, installed as root inside the box when it is made (and when added here).
packages = []
# Shell commands run once as root inside the box, after the packages.
setup = []
# Namespaces the box gets of its own instead of sharing the host's: "net", "pid", "ipc", "all".
# unshare = ["net"]
# "shared" (your home directory) or a directory that becomes $HOME inside the box:
# "./.home" (in this project), "~/homes/{name_plain}" or an absolute path.
home = "shared"

# Environment variables set in every session. "$VAR" and "${{VAR}}" come from your environment
# (an unset variable is an error; "${{VAR:-default}}" gives a fallback), "$$" is a "$".
[box.env]
# EDITOR = "vim"
# GOPATH = "$HOME/go"

# Host directories bound into the box; one [[box.mounts]] table each.
# [[box.mounts]]
# host = "~/data"     # on the host: "~/...", absolute, or relative to this directory
# box = "/data"       # inside the box: absolute
# readonly = true     # default false

[hooks]
# Shell commands run as you at the start of every `devbox enter` and `devbox run` session.
enter = []
"#,
        name = q(name),
        image = q(image),
        name_plain = name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{Home, Project};

    fn host() -> HostEnv {
        HostEnv::from_pairs([("HOME", "/home/u")])
    }

    fn none(_: &str) -> bool {
        false
    }

    #[test]
    fn a_name_another_box_has_gets_a_suffix() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        let taken = |n: &str| n == "app" || n == "app-2";
        let (path, name, _) = write(&dir, None, false, &UserConfig::default(), &taken).unwrap();
        assert_eq!(name, "app-3");
        assert_eq!(Project::load(&path, &host()).unwrap().name, "app-3");
    }

    #[test]
    fn writes_a_starter_that_parses() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("My Project!");
        std::fs::create_dir(&dir).unwrap();
        let (path, name, image) = write(&dir, None, false, &UserConfig::default(), &none).unwrap();
        assert_eq!(path, dir.join("devbox.toml"));
        assert_eq!(name, "My-Project-");
        assert_eq!(image, "debian:13");
        let p = Project::load(&path, &host()).unwrap();
        assert_eq!(p.name, "My-Project-");
        assert!(p.name_given);
        assert_eq!(p.image, "debian:13");
        assert!(p.packages.is_empty() && p.setup.is_empty() && p.unshare.is_empty());
        assert_eq!(p.home, Home::Shared);
        assert!(p.env.is_empty() && p.mounts.is_empty() && p.hooks.enter.is_empty());
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn refuses_to_overwrite_unless_forced() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("devbox.toml");
        std::fs::write(&path, "mine").unwrap();
        let e = write(d.path(), None, false, &UserConfig::default(), &none).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
        write(
            d.path(),
            Some("alpine:3.22"),
            true,
            &UserConfig::default(),
            &none,
        )
        .unwrap();
        let p = Project::load(&path, &host()).unwrap();
        assert_eq!(p.image, "alpine:3.22");
    }

    #[test]
    fn image_comes_from_the_flag_then_user_config_then_default() {
        let d = tempfile::tempdir().unwrap();
        let user = UserConfig {
            default_image: Some("fedora:42".into()),
            ..UserConfig::default()
        };
        let (_, _, image) = write(d.path(), None, false, &user, &none).unwrap();
        assert_eq!(image, "fedora:42");
        let (path, _, image) = write(d.path(), Some("x \"quoted\""), true, &user, &none).unwrap();
        assert_eq!(image, "x \"quoted\"");
        assert_eq!(Project::load(&path, &host()).unwrap().image, "x \"quoted\"");
        let e = write(d.path(), Some(" "), true, &user, &none).unwrap_err();
        assert!(format!("{e:#}").contains("the image is empty"));
    }

    #[test]
    fn the_commented_examples_parse_too() {
        // Uncommenting every example line gives a valid file with every key set.
        let text: String = starter("proj", "debian:13")
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[[")
                        || (rest.contains(" = ") && !rest.contains("). ")) =>
                {
                    rest.to_string()
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let p = Project::parse(&text, Path::new("/src/proj/devbox.toml"), &host()).unwrap();
        assert_eq!(p.unshare, vec![crate::state::Isolate::Net]);
        assert_eq!(p.env["GOPATH"], "/home/u/go");
        assert_eq!(p.env["EDITOR"], "vim");
        assert_eq!(p.mounts.len(), 1);
        assert!(p.mounts[0].readonly);
        assert_eq!(p.mounts[0].host, PathBuf::from("/home/u/data"));
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = write(
            &d.path().join("nope"),
            None,
            false,
            &UserConfig::default(),
            &none,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("is not a directory"));
    }
}
