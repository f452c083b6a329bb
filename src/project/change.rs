//! Change detection between two versions of a project: a fingerprint to notice that something
//! changed, and a diff to say what and what it takes to apply it.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::{Home, Mount, Project};
use crate::state::Isolate;

/// What applying a change takes, from least to most. Ordered, so the largest of a diff's
/// actions is what the whole diff takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Nothing: the next session picks it up (env, hooks), or it waits for the next recreate
    /// (removed packages stay installed until then).
    None,
    /// Run the new work in the existing box as in-box root: install added packages, run
    /// appended setup commands.
    Provision,
    /// Stop and start the box again: its mounts, home and namespaces are made when it starts;
    /// its own layer of changes is kept.
    Restart,
    /// Remove the box and make it again: its image or name differ, or setup commands that
    /// already ran were changed.
    Recreate,
}

/// One difference between the old and the new project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A different name is a different box.
    Name {
        old: String,
        new: String,
    },
    Image {
        old: String,
        new: String,
    },
    Unshare {
        old: Vec<Isolate>,
        new: Vec<Isolate>,
    },
    PackagesAdded(Vec<String>),
    PackagesRemoved(Vec<String>),
    /// New commands after the ones that already ran.
    SetupAppended(Vec<String>),
    /// Commands that already ran were edited, removed or reordered.
    SetupChanged {
        old: Vec<String>,
        new: Vec<String>,
    },
    Home {
        old: Home,
        new: Home,
    },
    MountsAdded(Vec<Mount>),
    MountsRemoved(Vec<Mount>),
    /// Variables added or given another value, with their new values.
    EnvSet(BTreeMap<String, String>),
    EnvRemoved(Vec<String>),
    EnterHooks {
        old: Vec<String>,
        new: Vec<String>,
    },
}

impl Change {
    pub fn action(&self) -> Action {
        match self {
            Change::Name { .. } | Change::Image { .. } | Change::SetupChanged { .. } => {
                Action::Recreate
            }
            Change::Unshare { .. }
            | Change::Home { .. }
            | Change::MountsAdded(_)
            | Change::MountsRemoved(_) => Action::Restart,
            Change::PackagesAdded(_) | Change::SetupAppended(_) => Action::Provision,
            Change::PackagesRemoved(_)
            | Change::EnvSet(_)
            | Change::EnvRemoved(_)
            | Change::EnterHooks { .. } => Action::None,
        }
    }

    /// Whether the box must be removed and made again (image, name, or setup that already ran
    /// changed). Namespaces, mounts, home, env, hooks and added packages do not need it.
    #[cfg(test)]
    pub fn needs_recreate(&self) -> bool {
        self.action() == Action::Recreate
    }

    /// Whether a running box must be stopped and started again (namespaces, mounts, home).
    #[cfg(test)]
    pub fn needs_restart(&self) -> bool {
        self.action() == Action::Restart
    }
}

fn isolates(v: &[Isolate]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|i| match i {
            Isolate::Net => "net",
            Isolate::Pid => "pid",
            Isolate::Ipc => "ipc",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn joined<T: fmt::Display>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Name { old, new } => write!(f, "name changed from {old} to {new}"),
            Change::Image { old, new } => write!(f, "image changed from {old} to {new}"),
            Change::Unshare { old, new } => write!(
                f,
                "unshare changed from {} to {}",
                isolates(old),
                isolates(new)
            ),
            Change::PackagesAdded(p) => write!(f, "packages added: {}", p.join(", ")),
            Change::PackagesRemoved(p) => write!(
                f,
                "packages removed: {} (they stay installed until the box is recreated)",
                p.join(", ")
            ),
            Change::SetupAppended(c) => write!(f, "setup commands added: {}", c.len()),
            Change::SetupChanged { .. } => f.write_str("setup commands changed"),
            Change::Home { old, new } => write!(f, "home changed from {old} to {new}"),
            Change::MountsAdded(m) => write!(f, "mounts added: {}", joined(m)),
            Change::MountsRemoved(m) => write!(f, "mounts removed: {}", joined(m)),
            Change::EnvSet(e) => write!(
                f,
                "env set: {}",
                e.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Change::EnvRemoved(k) => write!(f, "env removed: {}", k.join(", ")),
            Change::EnterHooks { .. } => f.write_str("enter hooks changed"),
        }
    }
}

/// What changed from `old` to `new`, in a fixed order (name, image, unshare, packages, setup,
/// home, mounts, env, hooks). Empty when the projects are equivalent; where the files are
/// does not count.
pub fn diff(old: &Project, new: &Project) -> Vec<Change> {
    let mut out = Vec::new();
    if old.name != new.name {
        out.push(Change::Name {
            old: old.name.clone(),
            new: new.name.clone(),
        });
    }
    if old.image != new.image {
        out.push(Change::Image {
            old: old.image.clone(),
            new: new.image.clone(),
        });
    }
    if old.unshare != new.unshare {
        out.push(Change::Unshare {
            old: old.unshare.clone(),
            new: new.unshare.clone(),
        });
    }
    let added: Vec<String> = new
        .packages
        .iter()
        .filter(|p| !old.packages.contains(p))
        .cloned()
        .collect();
    if !added.is_empty() {
        out.push(Change::PackagesAdded(added));
    }
    let removed: Vec<String> = old
        .packages
        .iter()
        .filter(|p| !new.packages.contains(p))
        .cloned()
        .collect();
    if !removed.is_empty() {
        out.push(Change::PackagesRemoved(removed));
    }
    if old.setup != new.setup {
        if new.setup.len() > old.setup.len() && new.setup.starts_with(&old.setup) {
            out.push(Change::SetupAppended(new.setup[old.setup.len()..].to_vec()));
        } else {
            out.push(Change::SetupChanged {
                old: old.setup.clone(),
                new: new.setup.clone(),
            });
        }
    }
    if old.home != new.home {
        out.push(Change::Home {
            old: old.home.clone(),
            new: new.home.clone(),
        });
    }
    let added: Vec<Mount> = new
        .mounts
        .iter()
        .filter(|m| !old.mounts.contains(m))
        .cloned()
        .collect();
    if !added.is_empty() {
        out.push(Change::MountsAdded(added));
    }
    let removed: Vec<Mount> = old
        .mounts
        .iter()
        .filter(|m| !new.mounts.contains(m))
        .cloned()
        .collect();
    if !removed.is_empty() {
        out.push(Change::MountsRemoved(removed));
    }
    let set: BTreeMap<String, String> = new
        .env
        .iter()
        .filter(|(k, v)| old.env.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !set.is_empty() {
        out.push(Change::EnvSet(set));
    }
    let gone: Vec<String> = old
        .env
        .keys()
        .filter(|k| !new.env.contains_key(*k))
        .cloned()
        .collect();
    if !gone.is_empty() {
        out.push(Change::EnvRemoved(gone));
    }
    if old.hooks.enter != new.hooks.enter {
        out.push(Change::EnterHooks {
            old: old.hooks.enter.clone(),
            new: new.hooks.enter.clone(),
        });
    }
    out
}

/// `sha256:` and the hex sha256 of the project's canonical form: what the project means, not
/// how the file is written (comments, white space, key order, package order and repeats do not
/// count; values are taken after expansion). Projects with the same fingerprint have an empty
/// [`diff`]. The form is versioned (`devbox-project-v1`), so stored fingerprints stay
/// comparable across devbox versions.
pub fn fingerprint(p: &Project) -> String {
    let digest = Sha256::digest(canonical(p).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One line per field; every string is length-prefixed (`LEN:TEXT`), so no value can be
/// mistaken for a separator.
fn canonical(p: &Project) -> String {
    fn s(out: &mut String, v: &str) {
        out.push(' ');
        out.push_str(&v.len().to_string());
        out.push(':');
        out.push_str(v);
    }
    fn line<'a>(out: &mut String, key: &str, items: impl IntoIterator<Item = &'a str>) {
        out.push_str(key);
        for i in items {
            s(out, i);
        }
        out.push('\n');
    }
    let mut out = String::from("devbox-project-v1\n");
    line(&mut out, "name", [p.name.as_str()]);
    line(&mut out, "image", [p.image.as_str()]);
    let mut packages: Vec<&str> = p.packages.iter().map(String::as_str).collect();
    packages.sort_unstable();
    packages.dedup();
    line(&mut out, "packages", packages);
    line(&mut out, "setup", p.setup.iter().map(String::as_str));
    let mut unshare: Vec<&str> = p
        .unshare
        .iter()
        .map(|i| match i {
            Isolate::Net => "net",
            Isolate::Pid => "pid",
            Isolate::Ipc => "ipc",
        })
        .collect();
    unshare.sort_unstable();
    unshare.dedup();
    line(&mut out, "unshare", unshare);
    let home = match &p.home {
        Home::Shared => vec!["shared".to_string()],
        Home::Dir(d) => vec!["dir".to_string(), d.to_string_lossy().into_owned()],
    };
    line(&mut out, "home", home.iter().map(String::as_str));
    for (k, v) in &p.env {
        line(&mut out, "env", [k.as_str(), v.as_str()]);
    }
    let mut mounts = p.mounts.clone();
    mounts.sort();
    for m in &mounts {
        let host = m.host.to_string_lossy();
        let boxp = m.box_path.to_string_lossy();
        line(
            &mut out,
            "mount",
            [&*host, &*boxp, if m.readonly { "ro" } else { "rw" }],
        );
    }
    line(
        &mut out,
        "hooks.enter",
        p.hooks.enter.iter().map(String::as_str),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::HostEnv;
    use super::*;

    fn project(text: &str) -> Project {
        Project::parse(
            text,
            Path::new("/src/proj/devbox.toml"),
            &HostEnv::from_pairs([("HOME", "/home/u"), ("V", "1")]),
        )
        .unwrap()
    }

    const BASE: &str = r#"
[box]
name = "proj"
image = "debian:13"
packages = ["git", "make"]
setup = ["one", "two"]
unshare = ["net"]
[box.env]
A = "1"
B = "2"
[[box.mounts]]
host = "/data"
box = "/data"
[hooks]
enter = ["echo hi"]
"#;

    fn changed(from: &str, to: &str) -> Vec<Change> {
        diff(&project(BASE), &project(&BASE.replacen(from, to, 1)))
    }

    #[test]
    fn fingerprints_ignore_form_but_not_meaning() {
        let a = project(BASE);
        let f = fingerprint(&a);
        assert!(f.starts_with("sha256:") && f.len() == 7 + 64, "{f}");
        // Comments, white space, key order, string style, package order and repeats.
        let b = project(
            r#"
# a comment
[hooks]
enter = [ 'echo hi' ]

[box]
image   = "debian:13"   # trailing comment
name = "proj"
unshare = ["net", "net"]
packages = ["make", "git", "git"]
setup = ["one",
         "two"]
env = { B = "2", A = "$V" }
mounts = [{ host = "/data/.", box = "/data/" }]
"#,
        );
        assert_eq!(fingerprint(&b), f);
        assert!(diff(&a, &b).is_empty());
        // The location of the file alone does not count.
        let moved = Project::parse(
            BASE,
            Path::new("/elsewhere/devbox.toml"),
            &HostEnv::default(),
        )
        .unwrap();
        assert_eq!(fingerprint(&moved), f);
        // Any change of meaning does.
        for (from, to) in [
            ("debian:13", "debian:12"),
            ("\"git\", ", ""),
            ("\"two\"", "\"two\", \"three\""),
            ("[\"net\"]", "[\"pid\"]"),
            ("B = \"2\"", "B = \"3\""),
            ("box = \"/data\"", "box = \"/data\"\nreadonly = true"),
            ("echo hi", "echo ho"),
            ("name = \"proj\"", "name = \"proj2\""),
            ("[box.env]", "home = \"./h\"\n[box.env]"),
        ] {
            let other = project(&BASE.replacen(from, to, 1));
            assert_ne!(fingerprint(&other), f, "{from} -> {to}");
        }
    }

    #[test]
    fn length_prefixes_keep_values_apart() {
        let a = project("[box]\nimage = \"x\"\nsetup = [\"a b\"]\n");
        let b = project("[box]\nimage = \"x\"\nsetup = [\"a\", \"b\"]\n");
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn image_changes_recreate_and_unshare_restarts() {
        let c = changed("debian:13", "fedora:42");
        assert_eq!(
            c,
            vec![Change::Image {
                old: "debian:13".into(),
                new: "fedora:42".into()
            }]
        );
        assert!(c[0].needs_recreate());
        assert_eq!(
            c[0].to_string(),
            "image changed from debian:13 to fedora:42"
        );
        let c = changed("[\"net\"]", "[\"net\", \"pid\"]");
        assert_eq!(
            c,
            vec![Change::Unshare {
                old: vec![Isolate::Net],
                new: vec![Isolate::Net, Isolate::Pid]
            }]
        );
        assert!(!c[0].needs_recreate() && c[0].needs_restart());
        assert_eq!(c[0].to_string(), "unshare changed from net to net, pid");
        let c = changed("unshare = [\"net\"]", "");
        assert_eq!(c[0].to_string(), "unshare changed from net to none");
        let c = changed("name = \"proj\"", "name = \"other\"");
        assert!(c[0].needs_recreate());
    }

    #[test]
    fn packages_added_provision_and_removed_wait() {
        let c = changed("[\"git\", \"make\"]", "[\"git\", \"make\", \"curl\"]");
        assert_eq!(c, vec![Change::PackagesAdded(vec!["curl".into()])]);
        assert!(!c[0].needs_recreate());
        assert_eq!(c[0].action(), Action::Provision);
        assert_eq!(c[0].to_string(), "packages added: curl");
        let c = changed("[\"git\", \"make\"]", "[\"make\", \"vim\"]");
        assert_eq!(
            c,
            vec![
                Change::PackagesAdded(vec!["vim".into()]),
                Change::PackagesRemoved(vec!["git".into()])
            ]
        );
        assert_eq!(c[1].action(), Action::None);
        assert!(c[1].to_string().contains("stay installed"));
    }

    #[test]
    fn setup_appended_provisions_and_edited_recreates() {
        let c = changed("[\"one\", \"two\"]", "[\"one\", \"two\", \"three\"]");
        assert_eq!(c, vec![Change::SetupAppended(vec!["three".into()])]);
        assert_eq!(c[0].action(), Action::Provision);
        let c = changed("[\"one\", \"two\"]", "[\"one\", \"2\"]");
        assert!(matches!(c[..], [Change::SetupChanged { .. }]));
        assert!(c[0].needs_recreate());
        let c = changed("[\"one\", \"two\"]", "[\"one\"]");
        assert!(c[0].needs_recreate());
    }

    #[test]
    fn mounts_and_home_restart_without_recreating() {
        let c = changed("host = \"/data\"", "host = \"/data2\"");
        assert_eq!(
            c,
            vec![
                Change::MountsAdded(vec![Mount {
                    host: "/data2".into(),
                    box_path: "/data".into(),
                    readonly: false
                }]),
                Change::MountsRemoved(vec![Mount {
                    host: "/data".into(),
                    box_path: "/data".into(),
                    readonly: false
                }]),
            ]
        );
        assert!(c.iter().all(|c| !c.needs_recreate() && c.needs_restart()));
        assert_eq!(c[0].to_string(), "mounts added: /data2 -> /data");
        let c = changed("[box.env]", "home = \"~/h\"\n[box.env]");
        assert_eq!(
            c,
            vec![Change::Home {
                old: Home::Shared,
                new: Home::Dir(PathBuf::from("/home/u/h"))
            }]
        );
        assert!(!c[0].needs_recreate() && c[0].needs_restart());
        assert_eq!(c[0].to_string(), "home changed from shared to /home/u/h");
    }

    #[test]
    fn env_and_hooks_take_effect_next_session() {
        let c = changed("B = \"2\"", "B = \"3\"\nC = \"4\"");
        assert_eq!(
            c,
            vec![Change::EnvSet(
                [("B".into(), "3".into()), ("C".into(), "4".into())].into()
            )]
        );
        assert_eq!(c[0].action(), Action::None);
        assert_eq!(c[0].to_string(), "env set: B, C");
        let c = changed("A = \"1\"\n", "");
        assert_eq!(c, vec![Change::EnvRemoved(vec!["A".into()])]);
        let c = changed("echo hi", "echo ho");
        assert!(matches!(c[..], [Change::EnterHooks { .. }]));
        assert!(!c[0].needs_recreate() && !c[0].needs_restart());
    }

    #[test]
    fn the_largest_action_wins() {
        let c = changed("debian:13\"", "debian:12\"\nhome = \"./h\"");
        let worst = c.iter().map(Change::action).max();
        assert_eq!(worst, Some(Action::Recreate));
        assert_eq!(c.len(), 2);
    }
}
