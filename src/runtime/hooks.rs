//! What a session's shell runs before the command: a project's enter hooks, and for an
//! interactive bash the startup files and the box's prompt. Plain text generation, tested as
//! data; `join` decides which shell runs it.
//!
//! Hooks run in the session's own shell, so `export`, `source`/`.` and `PS1` take effect in
//! the session: for a command, in `SHELL -c SCRIPT devbox-hook CMD...` that ends with
//! `exec "$@"`; for an interactive bash, in its startup file (`--rcfile`), after the login
//! files and the box's prompt, so nothing the image's bashrc does undoes them. Each hook runs in the project
//! directory (relative paths work from any subdirectory); a failing one prints `error:` naming
//! it and its file, and the shell exits 125 without running the command.

use std::path::Path;

/// Exit status of a session whose enter hook failed (devbox's own failure status).
pub const EXIT_HOOK_FAILED: i32 = 125;

/// The prompt of an interactive bash in a box, unless the project sets one: a mark that says
/// "in a box", then user, host (the box's name) and directory.
pub const DEFAULT_PROMPT: &str = "⬢ \\u@\\h:\\w\\$ ";

/// The enter hooks of a project file.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub commands: Vec<String>,
    /// The devbox.toml they come from; its directory is where they run.
    pub file: std::path::PathBuf,
}

/// `'text'` for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Shell text running `hooks` in their project directory and coming back, or exiting 125 with
/// an `error:` line on the first that fails.
pub fn hook_lines(hooks: &Hooks) -> String {
    if hooks.commands.is_empty() {
        return String::new();
    }
    let file = hooks.file.display().to_string();
    let dir = hooks
        .file
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    let mut s = String::from("__devbox_cwd=$PWD\n");
    s.push_str(&format!(
        "cd -- {} 2>/dev/null || {{ printf '%s\\n' {} >&2; exit {EXIT_HOOK_FAILED}; }}\n",
        quote(&dir),
        quote(&format!(
            "error: cannot enter the project directory {dir} to run the enter hooks of {file}"
        ))
    ));
    let n = hooks.commands.len();
    for (i, cmd) in hooks.commands.iter().enumerate() {
        let what = format!(
            "error: enter hook {} of {n} in {file} failed (exit status ",
            i + 1
        );
        let tail = format!(
            "): {}\n  hint: fix it in {file}, or enter the box by its name (`devbox enter NAME`) to skip the project's hooks",
            first_line(cmd)
        );
        s.push_str(&format!(
            "{{\n{cmd}\n}} || {{ __devbox_st=$?; printf '%s%s%s\\n' {} \"$__devbox_st\" {} >&2; exit {EXIT_HOOK_FAILED}; }}\n",
            quote(&what),
            quote(&tail)
        ));
    }
    s.push_str("cd -- \"$__devbox_cwd\" 2>/dev/null\nunset __devbox_cwd __devbox_st\n");
    s
}

fn first_line(cmd: &str) -> String {
    let l = cmd.lines().next().unwrap_or("");
    if cmd.lines().count() > 1 {
        format!("{l} ...")
    } else {
        l.to_string()
    }
}

/// `SHELL -c` text for a command session: the hooks, then the command (`"$@"`).
pub fn command_script(hooks: &Hooks) -> String {
    format!("{}exec \"$@\"\n", hook_lines(hooks))
}

/// The `--rcfile` of an interactive bash: what a login bash reads (`/etc/profile`, then the
/// first of `~/.bash_profile`, `~/.bash_login`, `~/.profile`), then the box's prompt, then
/// the hooks (which may set their own). `fd` is the descriptor the file arrives on, closed
/// once read.
pub fn bash_rc(hooks: &Hooks, prompt: &str, fd: i32) -> String {
    format!(
        "exec {fd}<&-\n\
         [ -r /etc/profile ] && . /etc/profile\n\
         if [ -r ~/.bash_profile ]; then . ~/.bash_profile\n\
         elif [ -r ~/.bash_login ]; then . ~/.bash_login\n\
         elif [ -r ~/.profile ]; then . ~/.profile\n\
         fi\n\
         logout() {{ exit \"$@\"; }}\n\
         PS1={}\n{}",
        quote(prompt),
        hook_lines(hooks)
    )
}

/// Whether `shell` takes POSIX `-c` scripts with `exec "$@"` (fish, nu, xonsh and the like
/// do not: hooks then run under /bin/sh).
pub fn is_posix(shell: &Path) -> bool {
    let name = shell.file_name().and_then(|n| n.to_str()).unwrap_or("");
    matches!(
        name,
        "sh" | "bash" | "dash" | "ash" | "ksh" | "mksh" | "zsh" | "busybox" | "yash"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(cmds: &[&str]) -> Hooks {
        Hooks {
            commands: cmds.iter().map(|s| s.to_string()).collect(),
            file: "/home/a/my proj/devbox.toml".into(),
        }
    }

    fn sh(script: &str, args: &[&str]) -> std::process::Output {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("devbox-hook")
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn hooks_export_into_the_command_from_the_project_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("devbox.toml");
        std::fs::write(dir.path().join("env.sh"), "export FROM_FILE=sourced\n").unwrap();
        let h = Hooks {
            commands: vec![". ./env.sh".into(), "export A='x y'".into()],
            file,
        };
        let out = sh(
            &command_script(&h),
            &["sh", "-c", "echo \"$A|$FROM_FILE|$PWD\""],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x y|sourced|/\n");
    }

    #[test]
    fn a_failing_hook_stops_the_session_with_125_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let proj = dir.path().join("my proj");
        std::fs::create_dir(&proj).unwrap();
        let mut h = hooks(&["true", "false", "echo never"]);
        h.file = proj.join("devbox.toml");
        let out = sh(&command_script(&h), &["echo", "command ran"]);
        assert_eq!(out.status.code(), Some(125));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "error: enter hook 2 of 3 in {} failed (exit status 1): false",
                h.file.display()
            )),
            "{err}"
        );
        assert!(err.contains("hint: "), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    }

    #[test]
    fn no_hooks_is_just_the_command() {
        assert_eq!(command_script(&Hooks::default()), "exec \"$@\"\n");
    }

    #[test]
    fn bash_rc_reads_the_login_files_then_sets_the_prompt_then_runs_the_hooks() {
        let rc = bash_rc(&hooks(&["export X=1"]), DEFAULT_PROMPT, 9);
        let order: Vec<usize> = [
            "exec 9<&-",
            "/etc/profile",
            "~/.profile",
            "PS1=",
            "export X=1",
        ]
        .iter()
        .map(|k| rc.find(k).unwrap_or_else(|| panic!("{k} missing:\n{rc}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{rc}");
    }

    #[test]
    fn posix_shells_are_told_apart() {
        assert!(is_posix(Path::new("/bin/bash")));
        assert!(is_posix(Path::new("/usr/bin/zsh")));
        assert!(!is_posix(Path::new("/usr/bin/fish")));
    }
}
