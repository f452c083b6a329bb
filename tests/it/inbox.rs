//! What a box offers inside, on the Debian fixture: a password-less sudo rule for the user
//! (written into each box's own layer, never into the shared image) and the host's terminfo
//! databases after the box's own.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

fn user_name() -> String {
    test_user()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_default())
}

/// Every file of a tree with its type and mode, owner, size and change times.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let facts = format!(
                "{:o} {}:{} {} {}.{} {}.{}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            );
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), facts);
            if m.is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn create_debian(env: &TestEnv, name: &str) {
    let img = fixture("debian");
    env.ok(["create", img.to_str().unwrap(), "--name", name]);
}

#[test]
fn every_box_gets_a_passwordless_sudo_rule_in_its_own_layer_not_in_the_image() {
    let env = TestEnv::new();
    create_debian(&env, "s1");
    let images: Vec<PathBuf> = std::fs::read_dir(env.data().join("images-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    let rootfs = images[0].join("rootfs");
    let before = snapshot(&rootfs);

    let user = user_name();
    let file = format!("/etc/sudoers.d/devbox-{user}");
    let check = format!(
        "stat -c '%a %U %G' /etc/sudoers.d {file}; cat {file}; command -v sudo || echo no sudo"
    );
    let out = env.ok(["run", "s1", "--root", "--", "sh", "-c", &check]);
    let rule = format!("{user} ALL=(ALL) NOPASSWD: ALL");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "750 root root", "{out}");
    assert_eq!(lines[1], "440 root root", "{out}");
    assert!(lines.contains(&rule.as_str()), "{out}");
    // The fixture has no sudo: the rule waits for it.
    assert_eq!(lines.last(), Some(&"no sudo"), "{out}");

    // It lives in the box's layer, owned by in-box root (the first subordinate id)...
    let upper = env
        .data()
        .join(format!("boxes-v1/s1/upper/etc/sudoers.d/devbox-{user}"));
    let m = std::fs::metadata(&upper).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (subuid_start(), 0o440));
    // ... and the shared image is exactly as it was.
    assert!(!rootfs.join("etc/sudoers.d").exists());
    assert!(before == snapshot(&rootfs), "the image changed");

    // A second box of the same image gets its own.
    create_debian(&env, "s2");
    let out = env.ok(["run", "s2", "--root", "--", "sh", "-c", &check]);
    assert!(out.lines().any(|l| l == rule), "{out}");
    assert!(env
        .data()
        .join(format!("boxes-v1/s2/upper/etc/sudoers.d/devbox-{user}"))
        .exists());
    assert!(before == snapshot(&rootfs), "the image changed");

    // Written once per box: a rule the user removes stays removed across restarts.
    env.ok(["run", "s1", "--root", "--", "rm", &file]);
    env.ok(["stop", "s1"]);
    env.ok(["run", "s1", "--root", "--", "test", "!", "-e", &file]);
    let toml = std::fs::read_to_string(env.data().join("boxes-v1/s1/box.toml")).unwrap();
    assert!(toml.contains("sudoers = true"), "{toml}");
}

/// A terminal the host's terminfo knows (from ncurses-term) and the Debian fixture does not.
const HOST_ONLY_TERM: &str = "alacritty";

#[test]
fn terminals_only_the_host_knows_work_in_the_box_and_the_boxs_own_entries_come_first() {
    let host_entry = Path::new("/usr/share/terminfo/a").join(HOST_ONLY_TERM);
    assert!(
        host_entry.is_file(),
        "{} is missing on the host: run `sudo tests/setup.sh` (it installs ncurses-term)",
        host_entry.display()
    );
    let env = TestEnv::new();
    create_debian(&env, "ti");
    let run = |term: &str, script: &str| {
        env.cmd(["run", "ti", "--", "sh", "-c", script])
            .env("TERM", term)
            .output()
            .unwrap()
    };

    // The box itself does not know the terminal...
    let o = run(HOST_ONLY_TERM, "env -u TERMINFO_DIRS tput colors");
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("unknown terminal"), "{}", stderr(&o));
    // ... but a session finds it in the host's database.
    let o = run(HOST_ONLY_TERM, "tput colors; infocmp | head -n1");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("256"), "{out}");
    assert!(
        out.contains(&format!(
            "from file: /run/host/usr/share/terminfo/a/{HOST_ONLY_TERM}"
        )),
        "{out}"
    );
    // A terminal both know comes from the box's own database.
    let o = run("xterm", "infocmp | head -n1; echo $TERMINFO_DIRS");
    let out = stdout(&o);
    assert!(
        out.contains("from file: /lib/terminfo/x/xterm")
            || out.contains("from file: /usr/lib/terminfo/x/xterm"),
        "{out}"
    );
    assert!(
        out.contains("/etc/terminfo:/lib/terminfo:/usr/share/terminfo:/run/host/"),
        "{out}"
    );
    // The host's database is read-only in the box, even for in-box root.
    let o = env
        .cmd([
            "run",
            "ti",
            "--root",
            "--",
            "sh",
            "-c",
            "touch /run/host/usr/share/terminfo/a/devbox-was-here",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(!Path::new("/usr/share/terminfo/a/devbox-was-here").exists());
}
