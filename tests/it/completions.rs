//! Shell completion: the scripts in completions/ are current, and real bash (interactive, on a
//! pty), zsh (the same, with compinit) and fish offer subcommands, box names and catalog names
//! and releases, without touching the network or starting anything.

use std::path::PathBuf;

use crate::harness::*;

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("completions")
        .join(name)
}

#[test]
fn completion_scripts_in_the_repo_are_current() {
    let env = TestEnv::new();
    for (shell, file) in [
        ("bash", "devbox.bash"),
        ("zsh", "_devbox"),
        ("fish", "devbox.fish"),
    ] {
        let fresh = env.ok(["completions", shell]);
        let kept = std::fs::read_to_string(repo_file(file)).unwrap_or_default();
        assert_eq!(
            kept, fresh,
            "completions/{file} is out of date: run `cargo run -- completions {shell} > completions/{file}`"
        );
    }
    env.fails(2, ["completions", "tcsh"]);
}

/// PATH with the tested devbox first, as a user who installed it would have.
fn path_with_devbox(env: &TestEnv) -> String {
    format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        env.bin().parent().unwrap().display()
    )
}

/// A copy of a completion script the test user can read (the checkout may be private).
fn readable_copy(env: &TestEnv, name: &str) -> PathBuf {
    let copy = env.root.join(name);
    std::fs::copy(repo_file(name), &copy).unwrap();
    copy
}

fn fish_complete(env: &TestEnv, line: &str) -> Vec<String> {
    let script = format!(
        "source {}; complete -C '{line}'",
        readable_copy(env, "devbox.fish").display()
    );
    let out = env
        .raw("fish")
        .arg("-c")
        .arg(script)
        .env("PATH", path_with_devbox(env))
        .output()
        .expect("fish: run `sudo tests/setup.sh`");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_and_fish_complete_commands_and_box_names() {
    let env = TestEnv::new();
    env.busybox("alpha", &[]);
    env.busybox("beta", &[]);
    let holder_before = env.holder_pid();
    let lines = [
        "devbox enter ",
        "devbox run ",
        "devbox stop ",
        "devbox rm ",
        "devbox inspect ",
        "devbox apply ",
        "devbox config ",
        "devbox export ",
    ];

    let mut bash = Bash::start(&env);
    assert_eq!(bash.line_after_tab("devbox en"), "devbox enter");
    for line in lines {
        let words = bash.listed_after_tab(line);
        assert!(
            words.contains(&"alpha".to_string()) && words.contains(&"beta".to_string()),
            "{line}: {words:?}"
        );
    }
    assert_eq!(bash.line_after_tab("devbox enter al"), "devbox enter alpha");
    bash.exit();

    require("fish");
    let subs = fish_complete(&env, "devbox en");
    assert!(subs.contains(&"enter".to_string()), "{subs:?}");
    for line in lines {
        let words = fish_complete(&env, line);
        assert!(
            words.contains(&"alpha".to_string()) && words.contains(&"beta".to_string()),
            "{line}: {words:?}"
        );
    }
    assert_eq!(fish_complete(&env, "devbox enter al"), strings(&["alpha"]));

    // Completing started nothing.
    assert_eq!(env.holder_pid(), holder_before);
    assert!(!env.ok(["list"]).contains("running"));
}

/// Fails with the fix when a shell the tests drive is not installed.
fn require(program: &str) {
    let found = ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(program).is_file());
    assert!(
        found,
        "{program} is not installed: run `sudo tests/setup.sh` (it installs bash, zsh and fish)"
    );
}

/// A catalog entry of the user's own (~/.config/devbox/images), its source on a loopback port
/// that counts connections: completing its name must not resolve it.
fn user_catalog_entry(env: &TestEnv) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = env.home.join(".config/devbox/images");
    env.mkdir_as_user(&dir);
    env.mkdir_as_user(&env.home.join(".config/devbox"));
    env.write_as_user(
        &dir.join("minios.toml"),
        format!(
            r#"id = "minios"
name = "Mini OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"
aliases = ["first"]

[[source]]
kind = "pinned"
url = "http://127.0.0.1:{port}/mini.tar"
sha256 = "{}"
arch = {{ amd64 = "amd64", arm64 = "arm64" }}
"#,
            "0".repeat(64)
        )
        .as_bytes(),
    );
    listener
}

fn assert_no_connection(listener: &std::net::TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("completion connected to the catalog source (from {peer})"),
        Err(e) => panic!("accept: {e}"),
    }
}

/// An interactive bash on a pty with devbox's completion loaded: what readline really does
/// with the words (bash splits `debian:13` at the `:`).
struct Bash {
    t: crate::terminal::Pty,
    n: u32,
}

impl Bash {
    fn start(env: &TestEnv) -> Bash {
        let script = readable_copy(env, "devbox.bash");
        Bash::start_with(env, &format!("source {}", script.display()))
    }

    /// bash with `load` run first (sourcing a script, or the bash-completion loader).
    fn start_with(env: &TestEnv, load: &str) -> Bash {
        require("bash");
        let mut cmd = env.raw("setsid");
        cmd.args(["-w", "-c", "bash", "--norc", "--noprofile", "-i"])
            .env("PATH", path_with_devbox(env))
            .env("TERM", "dumb")
            .env("PS1", "$ ");
        let mut b = Bash {
            t: crate::terminal::Pty::start(cmd),
            n: 0,
        };
        // One candidate per line, no "show all?" question, one Tab lists, no bell.
        b.t.send(&format!(
            "{load}; bind 'set completion-display-width 0'; bind 'set completion-query-items 0'; bind 'set show-all-if-ambiguous on'; bind 'set bell-style none'\n"
        ));
        b.sync();
        b
    }

    /// Waits until everything typed so far has been handled; returns the output until then.
    fn sync(&mut self) -> String {
        self.n += 1;
        self.t.send(&format!("echo SYNC$((0+{}))\n", self.n));
        self.t.expect(&format!("SYNC{}\r\n", self.n))
    }

    /// Types `typed`, presses Tab, and returns the command line that results.
    fn line_after_tab(&mut self, typed: &str) -> String {
        self.n += 1;
        let n = self.n;
        // Ctrl-A, then make the line print itself.
        self.t.send(&format!("{typed}\t\x01echo L$((0+{n}))=\n"));
        self.t.expect(&format!("L{n}="));
        self.t.expect("\r\n").trim_end().to_string()
    }

    /// Types `typed`, presses Tab, and returns the candidates bash lists.
    fn listed_after_tab(&mut self, typed: &str) -> Vec<String> {
        self.t.send(&format!("{typed}\t\x15"));
        let out = self.sync();
        // The typed line, one candidate per line, then the prompt and the line again.
        let mut lines = out.split("\r\n");
        lines.next();
        lines
            .take_while(|l| !l.starts_with("$ "))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn exit(mut self) {
        self.t.send("exit\n");
        self.t.wait();
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bash_completes_catalog_names_and_releases_across_its_colon_split() {
    let env = TestEnv::new();
    let listener = user_catalog_entry(&env);
    let mut bash = Bash::start(&env);
    assert_eq!(
        bash.line_after_tab("devbox create deb"),
        "devbox create debian"
    );
    assert_eq!(
        bash.line_after_tab("devbox create debian:tri"),
        "devbox create debian:trixie"
    );
    assert_eq!(
        bash.line_after_tab("devbox create debian:sta"),
        "devbox create debian:stable"
    );
    assert_eq!(
        bash.line_after_tab("devbox image pull ubuntu:nob"),
        "devbox image pull ubuntu:noble"
    );
    assert_eq!(
        bash.line_after_tab("devbox init --image deb"),
        "devbox init --image debian"
    );
    assert_eq!(
        bash.line_after_tab("devbox init --image=debian:trix"),
        "devbox init --image=debian:trixie"
    );
    assert_eq!(
        bash.line_after_tab("devbox create --name x debian:13 --unshare ne"),
        "devbox create --name x debian:13 --unshare net"
    );
    // The user's own catalog entry, offered without resolving it.
    assert_eq!(
        bash.line_after_tab("devbox create mini"),
        "devbox create minios"
    );
    assert_eq!(
        bash.line_after_tab("devbox create minios:fir"),
        "devbox create minios:first"
    );
    // After the colon bash replaces only what follows it, so it is offered just that.
    let listed = bash.listed_after_tab("devbox create debian:");
    for want in ["13", "trixie", "stable", "12", "bookworm"] {
        assert!(listed.contains(&want.to_string()), "{want}: {listed:?}");
    }
    assert!(listed.iter().all(|c| !c.contains(':')), "{listed:?}");
    assert_eq!(
        bash.listed_after_tab("devbox create minios:"),
        strings(&["1", "first"])
    );
    bash.exit();
    assert_no_connection(&listener);
}

#[test]
fn fish_completes_catalog_names_and_releases() {
    let env = TestEnv::new();
    let listener = user_catalog_entry(&env);
    require("fish");
    assert_eq!(
        fish_complete(&env, "devbox create deb"),
        strings(&["debian"])
    );
    let releases = fish_complete(&env, "devbox create debian:");
    for want in ["debian:13", "debian:trixie", "debian:stable", "debian:12"] {
        assert!(releases.contains(&want.to_string()), "{want}: {releases:?}");
    }
    assert!(
        releases.iter().all(|c| c.starts_with("debian:")),
        "{releases:?}"
    );
    assert_eq!(
        fish_complete(&env, "devbox image pull debian:tri"),
        strings(&["debian:trixie"])
    );
    assert_eq!(
        fish_complete(&env, "devbox init --image deb"),
        strings(&["debian"])
    );
    assert_eq!(
        fish_complete(&env, "devbox create minios:"),
        strings(&["minios:1", "minios:first"])
    );
    assert_no_connection(&listener);
}

/// An interactive zsh on a pty, its completion system started by `compinit` in a ZDOTDIR of
/// its own, with completions/_devbox in `$fpath` as a user installs it. `compadd` is wrapped
/// to write every candidate zsh accepts for the word into a file, so the test reads what
/// completion offered rather than parsing the screen.
struct Zsh {
    t: crate::terminal::Pty,
    capture: PathBuf,
    n: u32,
}

impl Zsh {
    fn start(env: &TestEnv) -> Zsh {
        let fpath = env.root.join("zfunc");
        std::fs::create_dir_all(&fpath).unwrap();
        std::fs::copy(repo_file("_devbox"), fpath.join("_devbox")).unwrap();
        Zsh::start_with(env, &fpath)
    }

    /// zsh with `fpath` (a directory holding `_devbox`) first in `$fpath`.
    fn start_with(env: &TestEnv, fpath: &std::path::Path) -> Zsh {
        require("zsh");
        let zdotdir = env.root.join("zdotdir");
        std::fs::create_dir_all(&zdotdir).unwrap();
        let capture = env.home.join("zsh-candidates");
        std::fs::write(
            zdotdir.join(".zshrc"),
            format!(
                r#"bindkey -e
fpath=({fpath} $fpath)
autoload -Uz compinit
compinit -u -d "$HOME/.zcompdump"
LISTMAX=100000
PS1='%% '
unsetopt beep
compadd() {{
    # Calls that only collect matches (-O, -A, -D) pass through; the others are recorded.
    if (( ${{@[(I)-[OAD]]}} )); then
        builtin compadd "$@"
        return
    fi
    local -a devbox_seen
    builtin compadd -O devbox_seen "$@"
    (( $#devbox_seen )) && print -rl -- $devbox_seen >> {capture}
    builtin compadd "$@"
}}
"#,
                fpath = fpath.display(),
                capture = capture.display()
            ),
        )
        .unwrap();
        let mut cmd = env.raw("setsid");
        cmd.args(["-w", "-c", "zsh", "-i"])
            .env("PATH", path_with_devbox(env))
            .env("TERM", "dumb")
            .env("ZDOTDIR", &zdotdir);
        let mut z = Zsh {
            t: crate::terminal::Pty::start(cmd),
            capture,
            n: 0,
        };
        z.sync();
        z
    }

    fn sync(&mut self) -> String {
        self.n += 1;
        self.t.send(&format!("echo SYNC$((0+{}))\n", self.n));
        self.t.expect(&format!("SYNC{}\r\n", self.n))
    }

    /// Types `typed`, presses Tab, clears the line; returns the candidates completion offered.
    fn offered(&mut self, typed: &str) -> Vec<String> {
        let _ = std::fs::remove_file(&self.capture);
        self.t.send(&format!("{typed}\t\x15"));
        self.sync();
        std::fs::read_to_string(&self.capture)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Types `typed`, presses Tab, and returns the command line that results.
    fn line_after_tab(&mut self, typed: &str) -> String {
        self.n += 1;
        let n = self.n;
        self.t.send(&format!("{typed}\t\x01echo L$((0+{n}))=\n"));
        self.t.expect(&format!("L{n}="));
        self.t.expect("\r\n").trim_end().to_string()
    }

    fn exit(mut self) {
        self.t.send("exit\n");
        self.t.wait();
    }
}

#[test]
fn zsh_completes_commands_box_names_and_catalog_names() {
    let env = TestEnv::new();
    env.busybox("alpha", &[]);
    env.busybox("beta", &[]);
    let listener = user_catalog_entry(&env);
    let holder_before = env.holder_pid();
    let mut zsh = Zsh::start(&env);

    // The very first Tab completes (the file is autoloaded from $fpath on that Tab).
    let commands = zsh.offered("devbox ");
    for want in [
        "create",
        "enter",
        "run",
        "list",
        "rm",
        "image",
        "completions",
    ] {
        assert!(commands.contains(&want.to_string()), "{want}: {commands:?}");
    }
    assert!(
        !commands.iter().any(|c| c.starts_with("__")),
        "{commands:?}"
    );
    assert_eq!(zsh.offered("devbox ent"), strings(&["enter"]));
    for line in ["devbox enter ", "devbox run ", "devbox rm ", "devbox stop "] {
        let boxes = zsh.offered(line);
        assert!(
            boxes.contains(&"alpha".to_string()) && boxes.contains(&"beta".to_string()),
            "{line}: {boxes:?}"
        );
    }
    assert_eq!(zsh.offered("devbox enter al"), strings(&["alpha"]));

    assert_eq!(zsh.offered("devbox create deb"), strings(&["debian"]));
    let releases = zsh.offered("devbox create debian:");
    for want in ["debian:13", "debian:trixie", "debian:stable", "debian:12"] {
        assert!(releases.contains(&want.to_string()), "{want}: {releases:?}");
    }
    assert!(
        releases.iter().all(|c| c.starts_with("debian:")),
        "{releases:?}"
    );
    assert_eq!(zsh.offered("devbox image pull mini"), strings(&["minios"]));
    assert_eq!(
        zsh.line_after_tab("devbox init --image debian:tri"),
        "devbox init --image debian:trixie"
    );
    zsh.exit();

    assert_no_connection(&listener);
    assert_eq!(
        env.holder_pid(),
        holder_before,
        "completing started nothing"
    );
}

/// `completions --install` on an account where none of the shells' directories exist: each
/// file lands where its shell looks (bash through the bash-completion loader, zsh through the
/// `fpath` line devbox prints, fish by itself), atomically, and completion then works there.
#[test]
fn completions_install_puts_each_script_where_its_shell_finds_it() {
    let env = TestEnv::new();
    env.busybox("alpha", &[]);
    assert!(!env.home.join(".local/share/bash-completion").exists());

    // bash: named; bash-completion is installed here (tests/setup.sh), so it is said to load it.
    let out = env.ok(["completions", "--install", "bash"]);
    let bash_file = env
        .home
        .join(".local/share/bash-completion/completions/devbox");
    assert!(
        out.contains(&format!(
            "Wrote bash completion for devbox to {}",
            bash_file.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("bash-completion loads it in new shells"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&bash_file).unwrap(),
        env.ok(["completions", "bash"])
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bash_file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let left: Vec<_> = std::fs::read_dir(bash_file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("devbox")],
        "no temp file left"
    );
    // Only the loader is sourced: it finds devbox's file by itself.
    require("bash");
    assert!(
        std::path::Path::new("/usr/share/bash-completion/bash_completion").exists(),
        "bash-completion is not installed: run `sudo tests/setup.sh`"
    );
    let mut bash = Bash::start_with(&env, "source /usr/share/bash-completion/bash_completion");
    assert_eq!(bash.line_after_tab("devbox en"), "devbox enter");
    assert_eq!(bash.line_after_tab("devbox enter al"), "devbox enter alpha");
    bash.exit();

    // zsh: the login shell from $SHELL; the line for ~/.zshrc is printed, ~/.zshrc not written.
    let out = env
        .cmd(["completions", "--install"])
        .env("SHELL", "/usr/bin/zsh")
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(out.status.success(), "{said}{}", stderr(&out));
    let zsh_dir = env.home.join(".local/share/zsh/site-functions");
    assert!(
        said.contains(&format!("to {}", zsh_dir.join("_devbox").display())),
        "{said}"
    );
    assert!(
        said.contains("fpath=(~/.local/share/zsh/site-functions $fpath)")
            && said.contains("devbox does not edit it"),
        "{said}"
    );
    assert!(!env.home.join(".zshrc").exists());
    let mut zsh = Zsh::start_with(&env, &zsh_dir);
    assert_eq!(zsh.offered("devbox ent"), strings(&["enter"]));
    assert_eq!(zsh.offered("devbox enter al"), strings(&["alpha"]));
    zsh.exit();

    // fish: nothing sourced; fish finds the file itself.
    let out = env.ok(["completions", "--install", "fish"]);
    let fish_file = env.home.join(".config/fish/completions/devbox.fish");
    assert!(out.contains(&fish_file.display().to_string()), "{out}");
    require("fish");
    let got = env
        .raw("fish")
        .args(["-c", "complete -C 'devbox enter al'"])
        .env("PATH", path_with_devbox(&env))
        .output()
        .unwrap();
    assert_eq!(stdout(&got).trim(), "alpha", "{}", stderr(&got));

    // A shell --install does not know.
    let err = env.fails(1, ["completions", "--install", "elvish"]);
    assert!(err.contains("devbox completions elvish"), "{err}");
}

/// The README's lines for installing by hand work on a new account (no directories yet).
#[test]
fn the_readme_lines_for_completion_by_hand_work_on_a_new_account() {
    let env = TestEnv::new();
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let lines: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("mkdir -p ~/") && l.contains("devbox completions"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in lines {
        let out = env
            .raw("sh")
            .args(["-c", line])
            .env("PATH", path_with_devbox(&env))
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {}", stderr(&out));
    }
    for (file, shell) in [
        (".local/share/bash-completion/completions/devbox", "bash"),
        (".local/share/zsh/site-functions/_devbox", "zsh"),
        (".config/fish/completions/devbox.fish", "fish"),
    ] {
        assert_eq!(
            std::fs::read_to_string(env.home.join(file)).unwrap(),
            env.ok(["completions", shell]),
            "{file}"
        );
    }
}

/// A box with a program of its own (in its layer), a desktop entry, a host file and a host
/// directory to complete.
fn box_with_things(env: &TestEnv) {
    env.busybox("alpha", &[]);
    env.busybox("beta", &[]);
    env.ok([
        "run",
        "alpha",
        "--root",
        "--",
        "sh",
        "-c",
        "mkdir -p /usr/local/bin /usr/share/applications && printf '#!/bin/sh\\n' > /usr/local/bin/probe-prog && chmod 755 /usr/local/bin/probe-prog && printf '[Desktop Entry]\\nName=P\\nExec=probe-prog\\n' > /usr/share/applications/org.probe.App.desktop && rm /bin/dmesg",
    ]);
    env.ok(["stop", "alpha"]);
    env.write_as_user(&env.home.join("notes-file.txt"), b"x");
    env.mkdir_as_user(&env.home.join("datadir"));
}

#[test]
fn bash_completes_after_dashdash_image_rm_mounts_and_exports() {
    let env = TestEnv::new();
    box_with_things(&env);
    let holder_before = env.holder_pid();
    let mut bash = Bash::start(&env);
    // After --: the box's programs (its layer's and its image's), then files.
    assert_eq!(
        bash.line_after_tab("devbox run alpha -- probe-p"),
        "devbox run alpha -- probe-prog"
    );
    assert_eq!(
        bash.line_after_tab("devbox run alpha -- busyb"),
        "devbox run alpha -- busybox"
    );
    assert_eq!(
        bash.line_after_tab("devbox run --root alpha -- busyb"),
        "devbox run --root alpha -- busybox"
    );
    // A program the box's layer deleted is not offered.
    let listed = bash.listed_after_tab("devbox run alpha -- dm");
    assert!(!listed.contains(&"dmesg".to_string()), "{listed:?}");
    assert_eq!(
        bash.line_after_tab("devbox run alpha -- cat notes-f"),
        "devbox run alpha -- cat notes-file.txt"
    );
    // The only-box rule does not apply with two boxes, but files still come.
    assert_eq!(
        bash.line_after_tab("devbox run -- ./notes-f"),
        "devbox run -- ./notes-file.txt"
    );
    // image rm: ids and sources.
    let listed = bash.listed_after_tab("devbox image rm ");
    let images: serde_json::Value =
        serde_json::from_str(&env.ok(["image", "list", "--json"])).unwrap();
    let id = images[0]["id"].as_str().unwrap();
    assert!(
        listed
            .iter()
            .any(|c| id.starts_with(c.as_str()) && c.len() >= 12),
        "{id}: {listed:?}"
    );
    assert!(
        listed.contains(&fixture("busybox").display().to_string()),
        "{listed:?}"
    );
    // config --mount: host directories; export: the box's programs and desktop entries.
    // The line is echoed, so a `~` kept unquoted shows as the home directory.
    assert_eq!(
        bash.line_after_tab("devbox config alpha --mount ~/data"),
        format!(
            "devbox config alpha --mount {}/datadir/",
            env.home.display()
        )
    );
    assert_eq!(
        bash.line_after_tab("devbox export alpha --bin probe-p"),
        "devbox export alpha --bin probe-prog"
    );
    assert_eq!(
        bash.line_after_tab("devbox export alpha --app org.pro"),
        "devbox export alpha --app org.probe.App"
    );
    // Box names, not options, for an empty word.
    let listed = bash.listed_after_tab("devbox stop ");
    assert_eq!(listed, strings(&["alpha", "beta"]));
    assert!(bash
        .listed_after_tab("devbox stop -")
        .contains(&"--all".to_string()));
    bash.exit();
    assert_eq!(
        env.holder_pid(),
        holder_before,
        "completing started nothing"
    );
    assert!(!env.ok(["list"]).contains("running"));
}

#[test]
fn zsh_keeps_the_tilde_offers_boxes_before_options_and_completes_after_dashdash() {
    let env = TestEnv::new();
    box_with_things(&env);
    let mut zsh = Zsh::start(&env);
    // The ~ stays as typed (not \~).
    // The line is echoed: a `~` kept unquoted shows as the home directory, `\~` as `~`.
    assert_eq!(
        zsh.line_after_tab("devbox config alpha --mount ~/data"),
        format!(
            "devbox config alpha --mount {}/datadir/",
            env.home.display()
        )
    );
    assert_eq!(
        zsh.line_after_tab("devbox run alpha -- cat ~/notes-f"),
        format!(
            "devbox run alpha -- cat {}/notes-file.txt",
            env.home.display()
        )
    );
    // Boxes first: the list has no options, and a second Tab picks a box, never --all.
    let offered = zsh.offered("devbox stop ");
    assert_eq!(offered, strings(&["alpha", "beta"]));
    let line = zsh.line_after_tab("devbox stop \t");
    assert!(
        line == "devbox stop alpha" || line == "devbox stop beta",
        "{line:?}"
    );
    assert!(zsh.offered("devbox stop -").contains(&"--all".to_string()));
    assert_eq!(
        zsh.offered("devbox run alpha -- probe-p"),
        strings(&["probe-prog"])
    );
    assert_eq!(
        zsh.offered("devbox export alpha --app org."),
        strings(&["org.probe.App"])
    );
    zsh.exit();
}

#[test]
fn fish_completes_after_dashdash_and_exports() {
    let env = TestEnv::new();
    box_with_things(&env);
    require("fish");
    assert_eq!(
        fish_complete(&env, "devbox run alpha -- probe-p"),
        strings(&["probe-prog"])
    );
    assert_eq!(
        fish_complete(&env, "devbox export alpha --bin probe-p"),
        strings(&["probe-prog"])
    );
    assert_eq!(
        fish_complete(&env, "devbox export alpha --app org."),
        strings(&["org.probe.App"])
    );
    assert_eq!(
        fish_complete(&env, "devbox stop "),
        strings(&["alpha", "beta"])
    );
}
