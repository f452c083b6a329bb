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
            "source {}; bind 'set completion-display-width 0'; bind 'set completion-query-items 0'; bind 'set show-all-if-ambiguous on'; bind 'set bell-style none'\n",
            readable_copy(env, "devbox.bash").display()
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
        require("zsh");
        let fpath = env.root.join("zfunc");
        std::fs::create_dir_all(&fpath).unwrap();
        std::fs::copy(repo_file("_devbox"), fpath.join("_devbox")).unwrap();
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
