use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::*;

const FILE: &str = "/src/my proj/devbox.toml";

fn host() -> HostEnv {
    HostEnv::from_pairs([("HOME", "/home/u"), ("USER", "u"), ("GOVER", "1.24")])
}

fn parse(text: &str) -> Result<Project, ConfigError> {
    Project::parse(text, Path::new(FILE), &host())
}

/// The error for `text`, checked to start with the file, line and column.
#[track_caller]
fn err_at(text: &str, line: usize, column: usize) -> String {
    let e = parse(text).expect_err("should fail");
    let s = e.to_string();
    assert_eq!(e.file, PathBuf::from(FILE), "{s}");
    assert_eq!((e.line, e.column), (line, column), "{s}");
    assert!(s.starts_with(&format!("{FILE}:{line}:{column}: ")), "{s}");
    assert!(e.hint.is_some(), "every error says what to do: {s}");
    s
}

#[track_caller]
fn has(s: &str, part: &str) {
    assert!(s.contains(part), "expected {part:?} in:\n{s}");
}

const FULL: &str = r#"
[box]
name = "proj"
image = "debian:13"
packages = ["build-essential", "git", "git"]
setup = ["curl -fsSL https://example.org/x.sh | sh"]
unshare = ["pid", "net", "pid"]
home = "./.home"
prompt = "(proj) \\w\\$ "

[box.env]
GOPATH = "$HOME/go"
GOTOOLCHAIN = "go${GOVER}"
PRICE = "$$5"
WHO = "${NOBODY:-$USER}"

[[box.mounts]]
host = "~/data"
box = "/data"
readonly = true

[[box.mounts]]
host = "cache"
box = "/a/cache/"

[hooks]
enter = ["source .venv/bin/activate"]
"#;

#[test]
fn a_full_file_parses() {
    let p = parse(FULL).unwrap();
    assert_eq!(p.file, PathBuf::from(FILE));
    assert_eq!(p.dir, PathBuf::from("/src/my proj"));
    assert_eq!(p.name, "proj");
    assert!(p.name_given);
    assert_eq!(p.image, "debian:13");
    assert_eq!(p.packages, vec!["build-essential", "git"]);
    assert_eq!(p.setup, vec!["curl -fsSL https://example.org/x.sh | sh"]);
    assert_eq!(p.unshare, vec![Isolate::Net, Isolate::Pid]);
    assert_eq!(p.home, Home::Dir("/src/my proj/.home".into()));
    assert_eq!(p.env["GOPATH"], "/home/u/go");
    assert_eq!(p.env["GOTOOLCHAIN"], "go1.24");
    assert_eq!(p.env["PRICE"], "$5");
    assert_eq!(p.env["WHO"], "u");
    assert_eq!(
        p.mounts,
        vec![
            Mount {
                host: "/src/my proj/cache".into(),
                box_path: "/a/cache".into(),
                readonly: false
            },
            Mount {
                host: "/home/u/data".into(),
                box_path: "/data".into(),
                readonly: true
            },
        ]
    );
    assert_eq!(p.hooks.enter, vec!["source .venv/bin/activate"]);
}

#[test]
fn the_minimal_file_has_defaults() {
    let p = parse("[box]\nimage = \"alpine\"\n").unwrap();
    assert_eq!(p.name, "my-proj");
    assert!(!p.name_given);
    assert_eq!(p.image, "alpine");
    assert!(p.packages.is_empty() && p.setup.is_empty() && p.unshare.is_empty());
    assert_eq!(p.home, Home::Shared);
    assert!(p.env.is_empty() && p.mounts.is_empty());
    assert_eq!(p.hooks, Hooks::default());
    // Dotted keys and inline tables are the same TOML.
    let q =
        parse("box.image = \"alpine\"\nbox.home = \"shared\"\nhooks = { enter = [] }\n").unwrap();
    assert_eq!(q, p);
    // "all" is the three namespaces.
    let a = parse("[box]\nimage = \"x\"\nunshare = [\"all\"]").unwrap();
    assert_eq!(a.unshare, vec![Isolate::Net, Isolate::Pid, Isolate::Ipc]);
}

#[test]
fn names_come_from_the_directory_sanitised() {
    for (dir, name) in [
        ("/src/proj", "proj"),
        ("/src/My Project (2)", "My-Project--2-"),
        ("/src/.hidden", "hidden"),
        ("/src/_x.y-z", "x.y-z"),
        ("/src/ünï", "n-"),
        ("/", "box"),
        ("/src/...", "box"),
    ] {
        assert_eq!(name_from_dir(Path::new(dir)), name, "{dir}");
        state::validate_name(&name_from_dir(Path::new(dir))).unwrap();
    }
    let long = format!("/src/{}", "a".repeat(100));
    assert_eq!(name_from_dir(Path::new(&long)), "a".repeat(64));
}

#[test]
fn local_images_are_relative_to_the_project() {
    let img = |s: &str| parse(&format!("[box]\nimage = \"{s}\"")).unwrap().image;
    assert_eq!(img("./rootfs.tar.gz"), "/src/my proj/rootfs.tar.gz");
    assert_eq!(img("../r.tar"), "/src/my proj/../r.tar");
    assert_eq!(img("~/r.tar"), "/home/u/r.tar");
    assert_eq!(img("/abs/r.tar"), "/abs/r.tar");
    assert_eq!(img("https://h/r.tar?x=1"), "https://h/r.tar?x=1");
    assert_eq!(img("ubuntu:24.04"), "ubuntu:24.04");
    assert_eq!(img("  debian:13 "), "debian:13");
}

#[test]
fn syntax_errors_are_located() {
    let s = err_at("[box]\nimage = \"debian:13\nname = \"x\"\n", 2, 19);
    has(&s, "this is not valid TOML");
    let s = err_at("[box]\nimage = \"a\"\nimage = \"b\"\n", 3, 1);
    has(&s, "duplicate key");
    err_at("[box\nimage = \"a\"", 1, 5);
}

#[test]
fn unknown_keys_are_named_with_a_suggestion_and_the_allowed_keys() {
    let s = err_at("[box]\nimage = \"x\"\npakages = [\"git\"]\n", 3, 1);
    has(
        &s,
        "unknown key `pakages` in [box]; did you mean `packages`?\n  hint: the keys allowed in [box] are: `name`, `image`, `packages`, `setup`, `unshare`, `home`, `prompt`, `env`, `mounts`",
    );
    let s = err_at("[bx]\nimage = \"x\"\n", 1, 2);
    has(&s, "unknown key `bx` at the top level; did you mean `box`?");
    has(&s, "`box`, `hooks`");
    let s = err_at("[box]\nimage = \"x\"\nvolumes = []\n", 3, 1);
    has(&s, "unknown key `volumes` in [box]\n");
    let s = err_at(
        "[box]\nimage = \"x\"\n[[box.mounts]]\nhost = \"/a\"\nbox = \"/a\"\nread_only = true\n",
        6,
        1,
    );
    has(
        &s,
        "unknown key `read_only` in [[box.mounts]]; did you mean `readonly`?",
    );
    has(&s, "`host`, `box`, `readonly`");
    let s = err_at("[box]\nimage = \"x\"\n[hooks]\nentr = []\n", 4, 1);
    has(&s, "unknown key `entr` in [hooks]; did you mean `enter`?");
    // Inside inline tables too, at the key.
    let s = err_at(
        "[box]\nimage = \"x\"\nmounts = [{ host = \"/a\", bx = \"/a\" }]\n",
        3,
        26,
    );
    has(
        &s,
        "unknown key `bx` in [[box.mounts]]; did you mean `box`?",
    );
    // Several problems: the first in the file is reported.
    let s = err_at("[box]\nzzz = 1\nimage = 2\naaa = 3\n", 2, 1);
    has(&s, "`zzz`");
}

#[test]
fn wrong_types_name_the_key_and_what_is_allowed() {
    let s = err_at("[box]\nimage = 13\n", 2, 9);
    has(&s, "`image` in [box] must be a string, not an integer");
    has(&s, "hint: write it like: image = \"debian:13\"");
    let s = err_at("[box]\nimage = \"x\"\npackages = \"git\"\n", 3, 12);
    has(
        &s,
        "`packages` in [box] must be a list of strings, not a string",
    );
    let s = err_at("[box]\nimage = \"x\"\npackages = [\"git\", 3]\n", 3, 20);
    has(
        &s,
        "`packages` in [box] must be a list of strings, not a list whose item 2 is an integer",
    );
    let s = err_at(
        "[box]\nimage = \"x\"\n[[box.mounts]]\nhost = \"/a\"\nbox = \"/a\"\nreadonly = \"yes\"\n",
        6,
        12,
    );
    has(
        &s,
        "`readonly` in [[box.mounts]] must be true or false, not a string",
    );
    let s = err_at("[box]\nimage = \"x\"\n[box.env]\nN = 1\n", 4, 5);
    has(&s, "`N` in [box.env] must be a string, not an integer");
    has(&s, "hint: quote the value: N = \"...\"");
    let s = err_at("[box]\nimage = \"x\"\nenv = [\"A=1\"]\n", 3, 7);
    has(&s, "`env` in [box] must be a table of strings, not a list");
    let s = err_at("[box]\nimage = \"x\"\n[box.mounts]\nhost = \"/a\"\n", 3, 1);
    has(
        &s,
        "`mounts` in [box] must be a list of tables ([[box.mounts]]), not a table",
    );
    let s = err_at("[box]\nimage = \"x\"\nmounts = [\"/a:/a\"]\n", 3, 11);
    has(
        &s,
        "must be a list of tables ([[box.mounts]]), not a list holding a string",
    );
    let s = err_at("box = \"debian\"\n", 1, 7);
    has(
        &s,
        "`box` at the top level must be a table ([box]), not a string",
    );
    let s = err_at("[box]\nimage = \"x\"\n[hooks]\nenter = \"echo\"\n", 4, 9);
    has(
        &s,
        "`enter` in [hooks] must be a list of strings, not a string",
    );
    let s = err_at("[box]\nimage = \"x\"\nhome = 1979-05-27\n", 3, 8);
    has(&s, "not a date-time");
}

#[test]
fn missing_keys_say_what_to_add() {
    let s = err_at("", 1, 1);
    has(&s, "there is no [box] table");
    has(&s, "hint: add it:\n    [box]\n    image = \"debian:13\"");
    let s = err_at("[hooks]\nenter = []\n", 1, 1);
    has(&s, "there is no [box] table");
    let s = err_at("# comment\n[box]\nname = \"x\"\n", 2, 1);
    has(
        &s,
        "`image` is missing in [box]\n  hint: add it: image = \"debian:13\"",
    );
    let s = err_at(
        "[box]\nimage = \"x\"\n[[box.mounts]]\nhost = \"/a\"\n",
        3,
        1,
    );
    has(&s, "`box` is missing in [[box.mounts]]");
}

#[test]
fn bad_names_give_the_rule() {
    let s = err_at("[box]\nname = \"my box\"\nimage = \"x\"\n", 2, 8);
    has(
        &s,
        "`name` in [box] is \"my box\", which is not a valid box name",
    );
    has(&s, "starts with a letter or digit");
    has(&s, "e.g. name = \"my-box\"");
    err_at(
        &format!("[box]\nname = \"{}\"\nimage = \"x\"\n", "a".repeat(65)),
        2,
        8,
    );
    err_at("[box]\nname = \"\"\nimage = \"x\"\n", 2, 8);
    err_at("[box]\nname = \"-x\"\nimage = \"x\"\n", 2, 8);
}

#[test]
fn bad_unshare_values_suggest_and_list() {
    let s = err_at(
        "[box]\nimage = \"x\"\nunshare = [\"net\", \"pdi\"]\n",
        3,
        19,
    );
    has(
        &s,
        "unknown namespace \"pdi\" in `unshare` in [box]; did you mean \"pid\"?",
    );
    has(&s, "`net`, `pid`, `ipc`, `all`");
    let s = err_at("[box]\nimage = \"x\"\nunshare = [\"user\"]\n", 3, 12);
    has(&s, "unknown namespace \"user\"");
}

#[test]
fn empty_images_and_bad_packages_are_errors() {
    let s = err_at("[box]\nimage = \"\"\n", 2, 9);
    has(&s, "`image` in [box] is empty");
    err_at("[box]\nimage = \"   \"\n", 2, 9);
    err_at("[box]\nimage = \"a\\nb\"\n", 2, 9);
    let s = err_at("[box]\nimage = \"x\"\npackages = [\"git\", \"\"]\n", 3, 20);
    has(&s, "package \"\" in `packages` in [box] is empty");
    let s = err_at("[box]\nimage = \"x\"\npackages = [\"git make\"]\n", 3, 13);
    has(&s, "contains white space");
    let s = err_at("[box]\nimage = \"x\"\npackages = [\"--yes\"]\n", 3, 13);
    has(&s, "starts with `-`");
    let s = err_at("[box]\nimage = \"x\"\nsetup = [\"make\", \" \"]\n", 3, 18);
    has(&s, "command 2 of `setup` in [box] is empty");
    let s = err_at("[box]\nimage = \"x\"\n[hooks]\nenter = [\"\"]\n", 4, 10);
    has(&s, "command 1 of `enter` in [hooks] is empty");
}

#[test]
fn mount_box_paths_must_be_absolute_and_free() {
    let m = |host: &str, b: &str| {
        format!("[box]\nimage = \"x\"\n[[box.mounts]]\nhost = \"{host}\"\nbox = \"{b}\"\n")
    };
    let s = err_at(&m("/a", "data"), 5, 7);
    has(&s, "`box` in [[box.mounts]] is \"data\", a relative path");
    has(&s, "must be absolute");
    let s = err_at(&m("/a", "/data/../etc"), 5, 7);
    has(&s, "has a `..` component");
    let s = err_at(&m("/a", "/"), 5, 7);
    has(&s, "the box's root");
    let s = err_at(&m("/a", "/proc/x"), 5, 7);
    has(&s, "under /proc, which devbox mounts itself");
    err_at(&m("/a", "/run/host"), 5, 7);
    let s = err_at(&m("", "/a"), 4, 8);
    has(&s, "`host` in [[box.mounts]] is empty");
    let s = err_at(&m("~bob/x", "/a"), 4, 8);
    has(&s, "`host` in [[box.mounts]] uses `~user`");
    let s = err_at(&m("$NOPE/x", "/a"), 4, 8);
    has(
        &s,
        "`host` in [[box.mounts]] uses $NOPE, which is not set in your environment",
    );
    // /procfs is not /proc.
    parse(&m("/a", "/procfs")).unwrap();
    let dup = "[box]\nimage = \"x\"\n[[box.mounts]]\nhost = \"/a\"\nbox = \"/data\"\n[[box.mounts]]\nhost = \"/b\"\nbox = \"/data/\"\n";
    let s = err_at(dup, 8, 7);
    has(
        &s,
        "two mounts at /data in [[box.mounts]] (the other is on line 5)",
    );
}

#[test]
fn env_keys_and_values_are_checked() {
    let s = err_at("[box]\nimage = \"x\"\n[box.env]\n\"1BAD\" = \"x\"\n", 4, 1);
    has(
        &s,
        "\"1BAD\" in [box.env] is not a valid environment variable name",
    );
    has(&s, "letters, digits and `_`");
    err_at("[box]\nimage = \"x\"\n[box.env]\n\"A-B\" = \"x\"\n", 4, 1);
    err_at("[box]\nimage = \"x\"\n[box.env]\n\"A=B\" = \"x\"\n", 4, 1);
    let s = err_at(
        "[box]\nimage = \"x\"\n[box.env]\nOK = \"1\"\nGOPATH = \"$GOROOT/x\"\n",
        5,
        10,
    );
    has(
        &s,
        "`GOPATH` in [box.env] uses $GOROOT, which is not set in your environment",
    );
    has(&s, "hint: set GOROOT before running devbox, write ${GOROOT:-DEFAULT} for a fallback, or $$ for a literal `$`");
    let s = err_at("[box]\nimage = \"x\"\n[box.env]\nP = \"5$\"\n", 4, 5);
    has(&s, "`P` in [box.env] has a `$` that starts no variable");
    let s = err_at("[box]\nimage = \"x\"\n[box.env]\nP = \"${HOME\"\n", 4, 5);
    has(&s, "without its closing `}`");
    let s = err_at("[box]\nimage = \"x\"\n[box.env]\nP = \"a\\u0000b\"\n", 4, 5);
    has(&s, "NUL");
    // Inline env table, error at the value.
    let s = err_at("[box]\nimage = \"x\"\nenv = { A = \"$NOPE\" }\n", 3, 13);
    has(&s, "`A` in [box.env] uses $NOPE");
}

#[test]
fn home_is_shared_or_a_path() {
    let home = |v: &str| parse(&format!("[box]\nimage = \"x\"\nhome = \"{v}\"")).map(|p| p.home);
    assert_eq!(home("shared").unwrap(), Home::Shared);
    assert_eq!(home("~").unwrap(), Home::Dir("/home/u".into()));
    assert_eq!(
        home("~/homes/p").unwrap(),
        Home::Dir("/home/u/homes/p".into())
    );
    assert_eq!(home("/srv/h").unwrap(), Home::Dir("/srv/h".into()));
    assert_eq!(home("./h").unwrap(), Home::Dir("/src/my proj/h".into()));
    assert_eq!(
        home("homes/p").unwrap(),
        Home::Dir("/src/my proj/homes/p".into())
    );
    assert_eq!(home("$HOME/x").unwrap(), Home::Dir("/home/u/x".into()));
    let s = err_at("[box]\nimage = \"x\"\nhome = \"sharde\"\n", 3, 8);
    has(&s, "`home` in [box] is \"sharde\", which is neither \"shared\" nor a path; did you mean \"shared\"?");
    has(&s, "home = \"./sharde\"");
    let s = err_at("[box]\nimage = \"x\"\nhome = \"\"\n", 3, 8);
    has(&s, "neither \"shared\" nor a path");
    let s = err_at("[box]\nimage = \"x\"\nhome = \"~bob\"\n", 3, 8);
    has(&s, "`home` in [box] uses `~user`");
    let no_home = Project::parse(
        "[box]\nimage = \"x\"\nhome = \"~/h\"\n",
        Path::new(FILE),
        &HostEnv::default(),
    )
    .unwrap_err();
    assert_eq!((no_home.line, no_home.column), (3, 8));
    has(&no_home.to_string(), "starts with `~` but $HOME is not set");
}

#[test]
fn columns_count_characters() {
    // "ä" is two bytes; the column is still the character position.
    let s = err_at("[box]\nimage = \"x\"\n[box.env]\n\"Ä\" = \"1\"\n", 4, 1);
    has(&s, "\"Ä\" in [box.env]");
    err_at("[box]\nimage = \"x\"\nsetup = [\"ä\", 1]\n", 3, 15);
}

#[test]
fn load_reads_files_and_makes_paths_absolute() {
    let d = tempfile::tempdir().unwrap();
    let proj = d.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    let f = proj.join("devbox.toml");
    std::fs::write(&f, "[box]\nimage = \"x\"\nhome = \"./h\"\n").unwrap();
    let p = Project::load(&f, &host()).unwrap();
    assert_eq!(p.name, "proj");
    assert_eq!(p.home, Home::Dir(proj.join("h")));
    std::fs::write(&f, "[box]\nimage = \"x\"\nhme = \"./h\"\n").unwrap();
    let e = format!("{:#}", Project::load(&f, &host()).unwrap_err());
    has(
        &e,
        &format!(
            "{}:3:1: unknown key `hme` in [box]; did you mean `home`?",
            f.display()
        ),
    );
    let e = format!(
        "{:#}",
        Project::load(&proj.join("nope.toml"), &host()).unwrap_err()
    );
    has(&e, "cannot read");
    has(&e, "nope.toml");
}

#[test]
fn load_resolves_mount_sources_and_home_on_the_host() {
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    let proj = root.join("proj");
    let data = root.join("data");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::os::unix::fs::symlink(&data, root.join("datalink")).unwrap();
    std::os::unix::fs::symlink("/etc", proj.join("etclink")).unwrap();
    std::os::unix::fs::symlink(&root, proj.join("up")).unwrap();
    let f = proj.join("devbox.toml");
    let write = |mounts: &str| {
        std::fs::write(
            &f,
            format!("[box]\nimage = \"x\"\nhome = \"./up/homes/h\"\n{mounts}"),
        )
        .unwrap()
    };
    write(&format!(
        "[[box.mounts]]\nhost = \"{}/datalink/sub/..\"\nbox = \"/a\"\n[[box.mounts]]\nhost = \"./etclink\"\nbox = \"/b\"\n[[box.mounts]]\nhost = \"/../../etc\"\nbox = \"/c\"\n",
        root.display()
    ));
    let p = Project::load(&f, &host()).unwrap();
    let hosts: Vec<&Path> = p.mounts.iter().map(|m| m.host.as_path()).collect();
    assert_eq!(
        hosts,
        [data.as_path(), Path::new("/etc"), Path::new("/etc")]
    );
    // The part of home that exists is resolved; the rest is made later.
    assert_eq!(p.home, Home::Dir(root.join("homes/h")));

    // A source that does not exist: located at its value, nothing else happens.
    write("\n[[box.mounts]]\nbox = \"/a\"\nhost = \"./nope\"\n");
    let e = format!("{:#}", Project::load(&f, &host()).unwrap_err());
    has(
        &e,
        &format!(
            "{}:7:8: `host` in [[box.mounts]] is \"./nope\" ({}), which does not exist on this host",
            f.display(),
            proj.join("nope").display()
        ),
    );
    has(&e, "hint: create it first");
    // A home below a file cannot be made.
    std::fs::write(root.join("afile"), "").unwrap();
    std::fs::write(&f, "[box]\nimage = \"x\"\nhome = \"./up/afile/h\"\n").unwrap();
    let e = format!("{:#}", Project::load(&f, &host()).unwrap_err());
    has(&e, "devbox.toml:3:8: `home` in [box] is \"./up/afile/h\"");
    // Parsing alone looks nothing up.
    let p =
        parse("[box]\nimage = \"x\"\n[[box.mounts]]\nhost = \"/no/such\"\nbox = \"/a\"\n").unwrap();
    assert_eq!(p.mounts[0].host, PathBuf::from("/no/such"));
}

/// The walker's schema and the serde structs must accept exactly the same keys.
#[test]
fn schema_and_serde_agree() {
    assert_eq!(schema::PROJECT.keys(), ["box", "hooks"]);
    assert_eq!(
        schema::BOX.keys(),
        ["name", "image", "packages", "setup", "unshare", "home", "prompt", "env", "mounts"]
    );
    assert_eq!(schema::MOUNT.keys(), ["host", "box", "readonly"]);
    assert_eq!(schema::HOOKS.keys(), ["enter"]);
    assert_eq!(
        schema::USER.keys(),
        [
            "default_image",
            "default_box",
            "catalog_dir",
            "registry_mirrors",
            "insecure_registries",
            "archive_mirrors",
            "archive_keyrings",
            "trusted"
        ]
    );
    assert_eq!(schema::TRUSTED.keys(), ["file", "owner"]);
    // FULL sets every key of every table, and serde takes it.
    for k in schema::BOX.keys() {
        assert!(
            FULL.contains(&format!("\n{k} = ")) || FULL.contains(&format!("box.{k}]")),
            "{k}"
        );
    }
    let _: RawFile = toml::from_str(FULL).unwrap();
    // serde's own unknown-key check still backs up the walker.
    let e = toml::from_str::<RawFile>("[box]\nimage = \"x\"\nbogus = 1\n")
        .err()
        .unwrap();
    let doc = Doc {
        text: "[box]\nimage = \"x\"\nbogus = 1\n",
        file: Path::new(FILE),
    };
    let root = DeTable::parse(doc.text).unwrap();
    let ce = schema::serde_error(&doc, root.get_ref(), &e);
    assert_eq!((ce.line, ce.column), (3, 1));
    has(&ce.to_string(), "box.bogus");
}

mod discovery {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "[box]\nimage = \"x\"\n").unwrap();
    }

    #[test]
    fn the_nearest_parent_file_is_found() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        // Nothing in the tree: whatever is above the temp dir (normally nothing).
        let above = root
            .ancestors()
            .map(|a| a.join(FILE_NAME))
            .find(|f| f.is_file());
        assert_eq!(find(&deep, None, None).unwrap(), above);
        touch(&root.join("a/devbox.toml"));
        assert_eq!(
            find(&deep, None, None).unwrap(),
            Some(root.join("a/devbox.toml"))
        );
        touch(&root.join("a/b/c/devbox.toml"));
        assert_eq!(
            find(&deep, None, None).unwrap(),
            Some(deep.join("devbox.toml"))
        );
        // A directory named devbox.toml is not a project file.
        std::fs::create_dir_all(root.join("x/devbox.toml")).unwrap();
        std::fs::create_dir_all(root.join("x/y")).unwrap();
        let found = find(&root.join("x/y"), None, None).unwrap();
        assert_ne!(found, Some(root.join("x/devbox.toml")));
    }

    #[test]
    fn explicit_beats_env_beats_discovery() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(&root.join("devbox.toml"));
        touch(&root.join("env.toml"));
        touch(&root.join("flag.toml"));
        let env = root.join("env.toml");
        let env = Some(env.as_os_str());
        assert_eq!(
            find(root, Some(Path::new("flag.toml")), env).unwrap(),
            Some(root.join("flag.toml"))
        );
        assert_eq!(find(root, None, env).unwrap(), Some(root.join("env.toml")));
        assert_eq!(
            find(root, None, Some(OsStr::new(""))).unwrap(),
            Some(root.join("devbox.toml"))
        );
        // A directory stands for its devbox.toml.
        assert_eq!(
            find(Path::new("/"), Some(root), None).unwrap(),
            Some(root.join("devbox.toml"))
        );
    }

    #[test]
    fn named_files_that_do_not_exist_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(&root.join("devbox.toml"));
        let e = format!(
            "{:#}",
            find(root, Some(Path::new("nope.toml")), None).unwrap_err()
        );
        has(
            &e,
            &format!(
                "{} (named by --config) does not exist",
                root.join("nope.toml").display()
            ),
        );
        has(&e, "hint:");
        let e = format!(
            "{:#}",
            find(root, None, Some(OsStr::new("/no/such/devbox.toml"))).unwrap_err()
        );
        has(
            &e,
            "/no/such/devbox.toml (named by DEVBOX_CONFIG) does not exist",
        );
        let empty = root.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = format!("{:#}", find(root, Some(&empty), None).unwrap_err());
        has(
            &e,
            &format!(
                "{} (named by --config) does not exist",
                empty.join("devbox.toml").display()
            ),
        );
    }

    #[test]
    fn discovery_stops_at_the_root() {
        // From the root itself there is nothing above to look at (and no file on this machine
        // is expected at /devbox.toml).
        if !Path::new("/devbox.toml").exists() {
            assert_eq!(find(Path::new("/"), None, None).unwrap(), None);
        }
    }
}
