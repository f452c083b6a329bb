//! Whose devbox.toml devbox uses (issue 9): another user's file, or one in a directory others
//! can write, is refused with its owner and `devbox trust` until the user accepts it; a box
//! belongs to one project file, so two projects never share (and rebuild) one box, and a
//! project never takes over a box made with `devbox create`; mount sources are resolved on the
//! host when the file is read, and a missing one is an error at its line before anything is
//! made.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::*;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `path` as `user` (root writes it, then gives it away).
fn write_as(user: &User, path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    chmod(path, 0o644);
}

fn mkdir_as(user: &User, path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    chmod(path, mode);
}

fn me() -> &'static User {
    test_user().expect("these tests run as root, with devbox as the test user")
}

fn in_dir(env: &TestEnv, dir: &Path, args: &[&str]) -> Output {
    env.cmd(args).current_dir(dir).output().unwrap()
}

fn no_boxes(env: &TestEnv) {
    let boxes = env.data().join("boxes-v1");
    let left: Vec<_> = std::fs::read_dir(&boxes)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "boxes were made: {left:?}");
}

/// A project file whose setup leaves a trace in its box and whose enter hook leaves one in
/// `victim_home`.
fn planted(victim_home: &Path) -> String {
    format!(
        r#"[box]
name = "planted"
image = "{img}"
setup = ["touch /etc/setup-ran"]
[box.env]
X = "1"
[hooks]
enter = ["touch {home}/hook-ran"]
"#,
        img = fixture("busybox").display(),
        home = victim_home.display()
    )
}

#[test]
fn trust_another_users_file_in_a_shared_sticky_dir_is_refused_until_trusted() {
    let env = TestEnv::new();
    let other = other_user("devbox-test2");
    // A shared directory like /tmp: root's, world-writable, sticky.
    let shared = env.root.join("shared");
    mkdir_as(
        &User {
            name: "root".into(),
            uid: 0,
            gid: 0,
        },
        &shared,
        0o1777,
    );
    let file = shared.join("devbox.toml");
    write_as(&other, &file, &planted(&env.home));
    let sub = shared.join("mine");
    mkdir_as(me(), &sub, 0o755);

    for args in [
        &["run", "--", "true"][..],
        &["enter"][..],
        &["apply", "--yes"][..],
    ] {
        let out = in_dir(&env, &sub, args);
        assert!(!out.status.success(), "{args:?} ran");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: devbox does not use {}: it belongs to devbox-test2 (uid {}), not to you",
                file.display(),
                other.uid
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("hint: ") && err.contains(&format!("`devbox trust {}`", file.display())),
            "{err}"
        );
    }
    // Named with --config: the same.
    let out = env
        .cmd(["run", "--config", file.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("devbox does not use"),
        "{}",
        stderr(&out)
    );
    // Nothing of it ran, nothing was made.
    assert!(!env.home.join("hook-ran").exists());
    no_boxes(&env);

    // Accepted deliberately: recorded with its owner, then used.
    let said = env.ok(["trust", shared.to_str().unwrap()]);
    assert!(
        said.contains(&format!(
            "Trusted {} (owner devbox-test2 (uid {}))",
            file.display(),
            other.uid
        )),
        "{said}"
    );
    let cfg = std::fs::read_to_string(env.home.join(".config/devbox/config.toml")).unwrap();
    assert!(
        cfg.contains(&format!("file = \"{}\"", file.display()))
            && cfg.contains(&format!("owner = {}", other.uid)),
        "{cfg}"
    );
    let listed = env.ok(["trust", "--list"]);
    assert!(listed.contains(&file.display().to_string()), "{listed}");
    let out = in_dir(&env, &sub, &["run", "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.home.join("hook-ran").exists());
    env.ok(["run", "planted", "--", "test", "-e", "/etc/setup-ran"]);

    // The same path owned by someone else is refused again.
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    let out = in_dir(&env, &sub, &["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("it belongs to root (uid 0)")
            && err.contains("You trusted it when it belonged to devbox-test2"),
        "{err}"
    );
    assert!(env.ok(["trust", "--list"]).contains("now belongs to root"));

    // Removed: refused again; the list is empty.
    std::os::unix::fs::chown(&file, Some(other.uid), Some(other.gid)).unwrap();
    let said = env.ok(["trust", "--remove", file.to_str().unwrap()]);
    assert!(said.contains("is no longer trusted"), "{said}");
    assert!(env
        .ok(["trust", "--list"])
        .contains("No trusted project files"));
    let out = in_dir(&env, &sub, &["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = env.fails(1, ["trust", "--remove", file.to_str().unwrap()]);
    assert!(err.contains("is not trusted"), "{err}");
}

#[test]
fn trust_a_file_in_a_directory_others_can_write_is_refused_and_not_passed_over() {
    let env = TestEnv::new();
    // The user's own good project, and below it a directory anyone may write holding a file
    // of the user's: the nearest file is refused, never skipped for the one above.
    let code = env.home.join("code");
    env.mkdir_as_user(&code);
    env.write_as_user(&code.join("devbox.toml"), planted(&env.home).as_bytes());
    for (mode, what) in [
        (0o777, "mode 777, writable by its group and others"),
        (0o775, "mode 775, writable by its group"),
    ] {
        let open = code.join(format!("open{mode:o}"));
        mkdir_as(me(), &open, mode);
        let file = open.join("devbox.toml");
        env.write_as_user(&file, planted(&env.home).as_bytes());
        let out = in_dir(&env, &open, &["run", "--", "true"]);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "devbox does not use {} (owner: devbox-test (uid {})): it is in {}, which other users may write ({what}, without the sticky bit)",
                file.display(),
                me().uid,
                open.display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("`devbox trust {}`", file.display())),
            "{err}"
        );
    }
    // A file others may write, in the user's own directory.
    let loose = code.join("loose");
    env.mkdir_as_user(&loose);
    env.write_as_user(&loose.join("devbox.toml"), planted(&env.home).as_bytes());
    chmod(&loose.join("devbox.toml"), 0o666);
    let err = stderr(&in_dir(&env, &loose, &["run", "--", "true"]));
    assert!(err.contains("other users may change it (mode 666"), "{err}");
    // A sticky directory that belongs to another user: they may still rename what is in it.
    let other = other_user("devbox-test2");
    let theirs = env.root.join("theirs");
    mkdir_as(&other, &theirs, 0o1777);
    let mine = theirs.join("mine");
    mkdir_as(me(), &mine, 0o755);
    env.write_as_user(&mine.join("devbox.toml"), planted(&env.home).as_bytes());
    let err = stderr(&in_dir(&env, &mine, &["run", "--", "true"]));
    assert!(
        err.contains(&format!(
            "it is in {}, which belongs to devbox-test2 (uid {}), who can replace it",
            theirs.display(),
            other.uid
        )),
        "{err}"
    );
    assert!(!env.home.join("hook-ran").exists());
    no_boxes(&env);
    // `devbox trust` on a file that needs none says so and records nothing.
    let said = env.ok(["trust", code.to_str().unwrap()]);
    assert!(said.contains("devbox uses it without trust"), "{said}");
    assert!(!env.home.join(".config/devbox/config.toml").exists());
}

fn app_project(env: &TestEnv, dir: &Path, extra: &str) -> PathBuf {
    env.mkdir_as_user(dir);
    let file = dir.join("devbox.toml");
    let text = format!(
        "[box]\nimage = \"{}\"\n{extra}",
        fixture("busybox").display()
    );
    env.write_as_user(&file, text.as_bytes());
    file
}

#[test]
fn trust_two_projects_named_alike_never_share_or_rebuild_a_box() {
    let env = TestEnv::new();
    let one = env.home.join("work1/app");
    let two = env.home.join("work2/app");
    let f1 = app_project(&env, &one, "");
    // The second differs in what a recreate would be needed for.
    let f2 = app_project(&env, &two, "setup = [\"echo two > /etc/two\"]\n");
    let out = in_dir(&env, &one, &["run", "--root", "--", "touch", "/x"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Creating box 'app'"),
        "{}",
        stderr(&out)
    );

    for args in [&["run", "--", "true"][..], &["apply", "--yes"][..]] {
        let out = in_dir(&env, &two, args);
        assert!(!out.status.success(), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: box 'app' belongs to {}, not to {}, which names no box and so takes its directory's name, 'app'",
                f1.display(),
                f2.display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "write name = \"app-2\" in [box] of {}",
                f2.display()
            )),
            "{err}"
        );
    }
    // The first project's layer is intact, and its box is still its own.
    env.ok(["run", "app", "--", "test", "-e", "/x"]);
    let out = in_dir(&env, &one, &["run", "--", "test", "-e", "/x"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // With a name of its own, the second project gets its own box.
    app_project(
        &env,
        &two,
        "name = \"app-2\"\nsetup = [\"echo two > /etc/two\"]\n",
    );
    let out = in_dir(&env, &two, &["run", "--root", "--", "touch", "/y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Creating box 'app-2'"),
        "{}",
        stderr(&out)
    );
    env.ok(["run", "app-2", "--", "test", "-e", "/y"]);
    env.fails(1, ["run", "app-2", "--", "test", "-e", "/x"]);
    env.ok(["run", "app", "--", "test", "-e", "/x"]);
    env.fails(1, ["run", "app", "--", "test", "-e", "/y"]);
    let out = in_dir(&env, &one, &["apply", "--yes"]);
    assert!(
        stderr(&out).contains("Box 'app' is up to date"),
        "{}",
        stderr(&out)
    );

    // `list` shows each project box's directory, in the table and in JSON.
    let list = env.ok(["list"]);
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"))
            .to_string()
    };
    assert!(list.lines().next().unwrap().contains("PROJECT"), "{list}");
    assert!(
        row("app").contains(&format!(" {} ", one.display())),
        "{list}"
    );
    assert!(
        row("app-2").contains(&format!(" {} ", two.display())),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(["list", "--json"])).unwrap();
    let by_name = |n: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("app")["project_dir"], one.display().to_string());
    assert_eq!(by_name("app")["project_file"], f1.display().to_string());
    assert_eq!(by_name("app-2")["project_dir"], two.display().to_string());
    // `init` in a third directory called app picks a free name.
    let three = env.home.join("work3/app");
    env.mkdir_as_user(&three);
    let said = stdout(&in_dir(&env, &three, &["init", "--image", "debian"]));
    assert!(said.contains("this project's box is 'app-3'"), "{said}");
}

#[test]
fn trust_a_project_naming_a_created_box_is_refused() {
    let env = TestEnv::new();
    env.busybox("made", &[]);
    env.ok(["run", "made", "--root", "--", "touch", "/mine"]);
    let dir = env.home.join("proj");
    let file = app_project(
        &env,
        &dir,
        "name = \"made\"\nsetup = [\"touch /from-project\"]\n",
    );
    for (args, code) in [
        (&["run", "--", "true"][..], 125),
        (&["apply", "--yes"][..], 1),
    ] {
        let out = in_dir(&env, &dir, args);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: box 'made' was made with `devbox create`, not made from a devbox.toml, so {}, which names box 'made', cannot use it",
                file.display()
            )) && err.contains("write name = \"made-2\""),
            "{err}"
        );
    }
    env.ok(["run", "made", "--", "test", "-e", "/mine"]);
    env.fails(1, ["run", "made", "--", "test", "-e", "/from-project"]);
    let list = env.ok(["list"]);
    let row = list.lines().find(|l| l.starts_with("made ")).unwrap();
    assert!(row.contains(" - "), "a created box has no project: {list}");
}

#[test]
fn trust_mount_sources_are_resolved_on_the_host() {
    let env = TestEnv::new();
    // Links and `..` that, read inside the box, would name the box's own /etc.
    std::os::unix::fs::symlink("/etc", env.home.join("etclink")).unwrap();
    std::os::unix::fs::lchown(env.home.join("etclink"), Some(me().uid), Some(me().gid)).unwrap();
    let data = env.home.join("data");
    env.mkdir_as_user(&data);
    env.write_as_user(&data.join("marker"), b"host data\n");
    std::os::unix::fs::symlink(&data, env.home.join("datalink")).unwrap();
    let dir = env.home.join("mnt");
    // An isolated home: the home's path inside is another directory, so a link to the home
    // read inside the box would not find the host's data.
    app_project(
        &env,
        &dir,
        "name = \"mnt\"\nhome = \"./.home\"\n[[box.mounts]]\nhost = \"~/etclink\"\nbox = \"/hostetc\"\n[[box.mounts]]\nhost = \"/../../../../etc\"\nbox = \"/dotdot\"\n[[box.mounts]]\nhost = \"~/datalink\"\nbox = \"/data\"\n",
    );
    let out = in_dir(
        &env,
        &dir,
        &["run", "--", "sh", "-c", "grep -c devbox-test /hostetc/subuid; grep -c devbox-test /dotdot/subuid; cat /data/marker"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "2\n2\nhost data\n");
    // What the box records is the host's canonical path.
    let toml = std::fs::read_to_string(env.data().join("boxes-v1/mnt/box.toml")).unwrap();
    assert!(toml.contains("host = \"/etc\""), "{toml}");
    assert!(
        toml.contains(&format!("host = \"{}\"", data.display())),
        "{toml}"
    );
}

#[test]
fn trust_a_missing_mount_source_is_an_error_at_its_line_before_anything_is_made() {
    let env = TestEnv::new();
    let dir = env.home.join("bad");
    let file = app_project(
        &env,
        &dir,
        "name = \"bad\"\n[[box.mounts]]\nbox = \"/data\"\nhost = \"~/nope\"\n",
    );
    for (args, code) in [(&["run", "--", "true"][..], 125), (&["apply"][..], 1)] {
        let out = in_dir(&env, &dir, args);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "error: {}:6:8: `host` in [[box.mounts]] is \"~/nope\" ({}), which does not exist on this host",
                file.display(),
                env.home.join("nope").display()
            )),
            "{err}"
        );
        assert!(err.contains("hint: create it first"), "{err}");
    }
    no_boxes(&env);
    let images: Vec<_> = std::fs::read_dir(env.data().join("images-v1"))
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(images.is_empty(), "an image was imported: {images:?}");
}
