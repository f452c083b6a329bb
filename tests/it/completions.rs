//! Shell completion: the scripts in completions/ are current, and the real bash and fish
//! completion machinery offers subcommands and box names.

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

fn bash_complete(env: &TestEnv, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let script = format!(
        "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\nCOMP_TYPE=9\n_clap_complete_devbox devbox '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        readable_copy(env, "devbox.bash").display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = env
        .raw("bash")
        .arg("-c")
        .arg(script)
        .env("PATH", path_with_devbox(env))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
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
    for complete in [
        bash_complete as fn(&TestEnv, &str) -> Vec<String>,
        fish_complete,
    ] {
        let subs = complete(&env, "devbox en");
        assert!(subs.contains(&"enter".to_string()), "{subs:?}");
        for line in [
            "devbox enter ",
            "devbox run ",
            "devbox stop ",
            "devbox rm ",
            "devbox inspect ",
        ] {
            let words = complete(&env, line);
            assert!(
                words.contains(&"alpha".to_string()) && words.contains(&"beta".to_string()),
                "{line}: {words:?}"
            );
        }
        let words = complete(&env, "devbox enter al");
        assert_eq!(words, vec!["alpha".to_string()]);
    }
    // Completing started nothing.
    assert_eq!(env.holder_pid(), holder_before);
    assert!(!env.ok(["list"]).contains("running"));
}
