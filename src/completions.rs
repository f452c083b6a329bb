//! Shell completion. The scripts in `completions/` only register devbox with the shell; the
//! words themselves come from devbox at completion time (`DEVBOX_COMPLETE=SHELL devbox -- ARGS`),
//! so box names are always current. Completion reads the store's directory listing, the
//! catalog files and the box's image and layer directories, and nothing else: no network, no
//! holder, no box is started.
//!
//! `cli` is the command line as plain data; this module builds on it ([`command`] adds what
//! each argument offers) and `cli` knows nothing of completion.
//!
//! clap_complete writes the fish, elvish and powershell scripts. devbox writes its own bash and
//! zsh scripts (the words are still computed by clap_complete's engine):
//! - bash splits a word at every `COMP_WORDBREAKS` character, `:` and `=` among them, so
//!   `debian:tri` reaches a completion function as `debian`, `:`, `tri`, and only `tri` is
//!   replaced by what it offers. devbox's function glues such pieces back into the word the
//!   user typed before asking devbox, and hands bash only the part after the break.
//! - zsh loads a completion file found in `$fpath` as the body of its function; clap's script
//!   then only registers itself and the first Tab offers nothing. devbox's script completes on
//!   that first call too, and still works when sourced. It adds `~/...` paths unquoted, so the
//!   line keeps the `~` the user typed.
//!
//! Options are offered only for a word that starts with `-` (or where nothing else fits), so
//! Tab after `devbox stop ` lists boxes and a second Tab never picks `--all`.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::engine::{
    ArgValueCandidates, ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter as _,
};
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Shells, Zsh};

use crate::cli::SHELLS;

/// The environment variable through which the shell asks devbox for completions.
pub const VAR: &str = "DEVBOX_COMPLETE";

const ALL: Shells<'static> = Shells(&[
    &OwnScript {
        shell: "bash",
        script: BASH_SCRIPT,
        words: Bash,
    },
    &OwnScript {
        shell: "zsh",
        script: ZSH_SCRIPT,
        words: Zsh,
    },
    &OwnScript {
        shell: "fish",
        script: "",
        words: Fish,
    },
    &Elvish,
    &Powershell,
]);

/// A shell whose registration script is devbox's own (`script`, with `VAR` and `BIN` filled
/// in) and whose words are computed as clap_complete's `words` computes them.
struct OwnScript<C> {
    shell: &'static str,
    script: &'static str,
    words: C,
}

impl<C: EnvCompleter> EnvCompleter for OwnScript<C> {
    fn name(&self) -> &'static str {
        self.shell
    }
    fn is(&self, name: &str) -> bool {
        name == self.shell
    }
    fn write_registration(
        &self,
        var: &str,
        _name: &str,
        bin: &str,
        _completer: &str,
        buf: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        if self.script.is_empty() {
            return self
                .words
                .write_registration(var, _name, bin, _completer, buf);
        }
        let script = self.script.replace("VAR", var).replace("BIN", bin);
        buf.write_all(script.as_bytes())
    }
    fn write_complete(
        &self,
        cmd: &mut clap::Command,
        args: Vec<std::ffi::OsString>,
        current_dir: Option<&std::path::Path>,
        buf: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let typed = Typed::from_env(&args).current().to_string();
        let mut all = Vec::new();
        self.words
            .write_complete(cmd, args, current_dir, &mut all)?;
        // The shells' answers are lists of candidates (with their help after a separator),
        // one per line, or (bash) separated by `_CLAP_IFS`.
        let sep = match self.shell {
            "bash" => std::env::var("_CLAP_IFS").unwrap_or_else(|_| "\u{b}".into()),
            _ => "\n".into(),
        };
        let text = String::from_utf8_lossy(&all);
        let items: Vec<&str> = text.split(sep.as_str()).collect();
        let kept = options_last_resort(&items, &typed);
        buf.write_all(kept.join(sep.as_str()).as_bytes())
    }
}

/// Options are offered when the word being completed starts with `-`, or when nothing else
/// fits; otherwise only the values (box names, subcommands, files).
fn options_last_resort<'a>(items: &[&'a str], typed: &str) -> Vec<&'a str> {
    let is_option = |c: &&str| c.starts_with('-');
    if typed.starts_with('-') || items.iter().filter(|c| !c.is_empty()).all(is_option) {
        return items.to_vec();
    }
    items.iter().copied().filter(|c| !is_option(c)).collect()
}

/// Answers a completion request and exits, when the shell made one.
pub fn answer_if_asked() {
    if std::env::var_os(VAR).is_some() {
        clap_complete::CompleteEnv::with_factory(command)
            .var(VAR)
            .bin("devbox")
            .shells(ALL)
            .complete();
    }
}

/// The registration script for `shell`.
pub fn script(shell: &str) -> anyhow::Result<String> {
    let Some(completer) = ALL.completer(shell) else {
        anyhow::bail!(
            "no completion support for {shell:?}; choose one of: {}",
            SHELLS.join(", ")
        );
    };
    let mut buf = Vec::new();
    completer.write_registration(VAR, "devbox", "devbox", "devbox", &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The command line with devbox's completers: box names where a box is named, image
/// references, commands and files after `--`, images of the store, host paths for mounts, and
/// a box's programs and applications for `export`.
pub fn command() -> clap::Command {
    let boxes = || ArgValueCandidates::new(box_names);
    let images = || ArgValueCompleter::new(image_names);
    let mut cmd = crate::cli::Cli::command();
    // The subcommands' arguments are added when a subcommand is parsed (`defer` in `cli`, which
    // keeps a one-line `devbox run` from building them all); completion needs them all now.
    cmd.build();
    for (sub, arg) in [
        ("enter", "name"),
        ("stop", "names"),
        ("restart", "names"),
        ("rm", "names"),
        ("export", "name"),
        ("apply", "name"),
        ("config", "name"),
        ("inspect", "name"),
        ("commit", "name"),
        ("create", "from"),
    ] {
        cmd = cmd.mut_subcommand(sub, |c| c.mut_arg(arg, |a| a.add(boxes())));
    }
    cmd.mut_subcommand("create", |c| c.mut_arg("image", |a| a.add(images())))
        .mut_subcommand("init", |c| c.mut_arg("image", |a| a.add(images())))
        .mut_subcommand("run", |c| {
            // `run -- CMD` without a box: the engine takes CMD's place for NAME's.
            c.mut_arg("name", |a| a.add(ArgValueCompleter::new(box_or_command)))
                .mut_arg("cmd", |a| a.add(ArgValueCompleter::new(command_words)))
        })
        .mut_subcommand("config", |c| {
            c.mut_arg("mount", |a| a.add(ArgValueCompleter::new(mount_spec)))
                .mut_arg("home", |a| {
                    a.add(ArgValueCompleter::new(PathCompleter::dir()))
                })
        })
        .mut_subcommand("export", |c| {
            c.mut_arg("bin", |a| a.add(ArgValueCompleter::new(box_programs)))
                .mut_arg("app", |a| a.add(ArgValueCandidates::new(box_apps)))
        })
        .mut_subcommand("image", |c| {
            c.mut_subcommand("pull", |p| p.mut_arg("image", |a| a.add(images())))
                .mut_subcommand("check", |p| p.mut_arg("names", |a| a.add(images())))
                .mut_subcommand("rm", |r| {
                    r.mut_arg("images", |a| a.add(ArgValueCandidates::new(store_images)))
                })
        })
}

/// `devbox completions --install [SHELL]`: writes the script where SHELL (default: the user's
/// login shell) looks for completions, and says what the user still has to do. Only files in
/// the shells' own per-user data directories are written; startup files (`~/.zshrc`,
/// `~/.bashrc`) are never touched: the line to add is printed instead.
pub fn install(shell: Option<&str>) -> Result<i32> {
    let shell = match shell {
        Some(s) => s.to_string(),
        None => login_shell().context(
            "cannot tell your shell from $SHELL or your passwd entry\n  hint: name it: devbox completions --install bash|zsh|fish",
        )?,
    };
    let base =
        directories::BaseDirs::new().context("cannot determine your home directory: set $HOME")?;
    let home = base.home_dir().to_path_buf();
    let file = match shell.as_str() {
        "bash" => base.data_dir().join("bash-completion/completions/devbox"),
        "zsh" => base.data_dir().join("zsh/site-functions/_devbox"),
        "fish" => base.config_dir().join("fish/completions/devbox.fish"),
        "elvish" | "powershell" => bail!(
            "--install knows where bash, zsh and fish look for completions, not {shell}\n  hint: print the script and load it from your {shell} profile: devbox completions {shell}"
        ),
        other => bail!(
            "no completion support for {other:?}\n  hint: name one of bash, zsh, fish: devbox completions --install bash"
        ),
    };
    let text = script(&shell)?;
    let dir = file.parent().context("no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::paths::write_atomic(&file, text.as_bytes())?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(|| format!("cannot set the mode of {}", file.display()))?;
    println!("Wrote {shell} completion for devbox to {}", file.display());
    let shown = |p: &Path| match p.strip_prefix(&home) {
        Ok(rest) => format!("~/{}", rest.display()),
        Err(_) => p.display().to_string(),
    };
    match shell.as_str() {
        "bash" => {
            let loader = [
                "/usr/share/bash-completion/bash_completion",
                "/usr/local/share/bash-completion/bash_completion",
                "/etc/bash_completion",
            ]
            .into_iter()
            .find(|p| Path::new(p).is_file());
            match loader {
                Some(_) => println!(
                    "bash-completion loads it in new shells; in this one: source {}",
                    shown(&file)
                ),
                None => println!(
                    "bash-completion is not installed, and it is what reads this directory: install it (Debian, Ubuntu: sudo apt install bash-completion; Fedora: sudo dnf install bash-completion), or add this line to ~/.bashrc:\n  source {}",
                    shown(&file)
                ),
            }
        }
        "zsh" => {
            let zdotdir = std::env::var_os("ZDOTDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.clone());
            let zshrc = zdotdir.join(".zshrc");
            let rc = std::fs::read_to_string(&zshrc).unwrap_or_default();
            let listed = [dir.display().to_string(), shown(dir)]
                .iter()
                .any(|d| rc.contains(d.as_str()));
            if listed {
                println!(
                    "{} names its directory; new zsh sessions load it (exec zsh)",
                    shown(&zshrc)
                );
            } else {
                println!(
                    "zsh finds it only when its directory is in $fpath before compinit runs. Add this line to {} above `compinit` (devbox does not edit it):\n  fpath=({} $fpath)\nthen start a new zsh (exec zsh)",
                    shown(&zshrc),
                    shown(dir)
                );
            }
        }
        _ => println!("New fish sessions load it."),
    }
    Ok(0)
}

/// The user's shell by name (`bash`, `zsh`...): `$SHELL`, else the passwd entry's.
fn login_shell() -> Option<String> {
    let path = std::env::var_os("SHELL")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.shell)
        })?;
    Some(path.file_name()?.to_string_lossy().into_owned())
}

/// Box names, for arguments that take a box.
pub fn box_names() -> Vec<CompletionCandidate> {
    let Ok(dirs) = crate::paths::Dirs::from_env() else {
        return Vec::new();
    };
    crate::state::list_names(&dirs)
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The words of the line being completed, as the shell handed them to devbox
/// (`devbox -- devbox run deb -- ma`), and which of them is under the cursor.
struct Typed {
    words: Vec<String>,
    at: usize,
}

impl Typed {
    fn from_env(args: &[OsString]) -> Typed {
        let words: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = std::env::var("_CLAP_COMPLETE_INDEX")
            .ok()
            .and_then(|i| i.parse().ok())
            .unwrap_or(words.len().saturating_sub(1))
            .min(words.len().saturating_sub(1));
        Typed { words, at }
    }

    /// From the process's own arguments (inside a completer, which is handed only the word).
    fn from_process() -> Typed {
        let args: Vec<OsString> = std::env::args_os()
            .skip_while(|a| a != "--")
            .skip(1)
            .collect();
        Typed::from_env(&args)
    }

    fn current(&self) -> &str {
        self.words.get(self.at).map(String::as_str).unwrap_or("")
    }

    /// The words before the cursor, after the program's name.
    fn before(&self) -> &[String] {
        self.words.get(1..self.at).unwrap_or(&[])
    }

    /// The box the line names: the first word after the subcommand that is neither an option
    /// nor an option's value, before any `--`.
    fn box_name(&self) -> Option<String> {
        const TAKES_VALUE: &[&str] = &[
            "--env",
            "--config",
            "--bin",
            "--app",
            "--mount",
            "--unmount",
            "--unset-env",
            "--unshare",
            "--home",
            "--name",
            "-n",
            "--sha256",
            "--image",
        ];
        let mut words = self.before().iter();
        words.find(|w| ["run", "enter", "export", "config"].contains(&w.as_str()))?;
        let mut skip = false;
        for w in words {
            if w == "--" {
                break;
            }
            if std::mem::take(&mut skip) {
                continue;
            }
            if w.starts_with('-') {
                skip = TAKES_VALUE.contains(&w.as_str());
                continue;
            }
            return Some(w.clone());
        }
        None
    }

    /// How many words stand between a `--` and the cursor (`None`: no `--` before it).
    fn after_escape(&self) -> Option<usize> {
        let before = self.before();
        before
            .iter()
            .position(|w| w == "--")
            .map(|i| before.len() - i - 1)
    }
}

/// The box named on the line, else the only box, with its layers.
fn named_box() -> Option<BoxLayers> {
    let dirs = crate::paths::Dirs::from_env().ok()?;
    let name = match Typed::from_process().box_name() {
        Some(n) => n,
        None => match crate::state::list_names(&dirs).ok()?.as_slice() {
            [only] => only.clone(),
            _ => return None,
        },
    };
    crate::state::validate_name(&name).ok()?;
    let cfg = crate::state::BoxConfig::load(&dirs, &name).ok()?;
    let path = cfg
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(crate::runtime::join::DEFAULT_PATH)
        .to_string();
    Some(BoxLayers {
        // The box's own layer over its image: what the box sees, without mounting anything.
        layers: vec![
            crate::state::BoxPaths::new(&dirs, &name).upper,
            dirs.image_dir(&cfg.image_id).join("rootfs"),
        ],
        path,
    })
}

/// A stopped or running box's files as read from the store: its layers, top first.
struct BoxLayers {
    layers: Vec<PathBuf>,
    path: String,
}

impl BoxLayers {
    /// The names in directory `dir` of the box (an absolute path inside it) that `keep`
    /// accepts, the upper layer's deletions (whiteouts) taken into account.
    fn names(&self, dir: &str, keep: &dyn Fn(&Path) -> bool) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut gone = std::collections::BTreeSet::new();
        for layer in &self.layers {
            let Some(real) = resolve_in(layer, dir) else {
                continue;
            };
            let Ok(rd) = std::fs::read_dir(&real) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(ft) = e.file_type() else { continue };
                if let Some(w) = name.strip_prefix(".wh.") {
                    gone.insert(w.to_string());
                    continue;
                }
                if std::os::unix::fs::FileTypeExt::is_char_device(&ft) {
                    gone.insert(name);
                    continue;
                }
                if !gone.contains(&name) && keep(&e.path()) {
                    seen.insert(name);
                }
            }
        }
        seen.into_iter().collect()
    }

    /// Programs on the box's PATH.
    fn programs(&self) -> Vec<String> {
        let mut all = std::collections::BTreeSet::new();
        for dir in self.path.split(':').filter(|d| d.starts_with('/')) {
            all.extend(self.names(dir, &|p| {
                // A link is taken as what it names (usually a program); only plain files are
                // checked for an execute bit, so no link is followed on the host.
                std::fs::symlink_metadata(p).is_ok_and(|m| {
                    m.file_type().is_symlink()
                        || (m.is_file()
                            && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111
                                != 0)
                })
            }));
        }
        all.into_iter().collect()
    }

    /// Desktop entries (their names without `.desktop`), as `export --app` takes them.
    fn apps(&self) -> Vec<String> {
        let mut all = std::collections::BTreeSet::new();
        for dir in ["/usr/share/applications", "/usr/local/share/applications"] {
            all.extend(
                self.names(dir, &|p| p.extension() == Some(OsStr::new("desktop")))
                    .into_iter()
                    .filter_map(|n| n.strip_suffix(".desktop").map(str::to_string)),
            );
        }
        all.into_iter().collect()
    }
}

/// `path` (absolute, inside the box) resolved within `root`, as the box would see it: links
/// are followed inside `root` (an absolute target starts again at `root`, `..` stops at it),
/// never on the host. `None` when it does not resolve to a directory within a few links.
fn resolve_in(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: Vec<OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut inside: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            inside.pop();
            continue;
        }
        let candidate: PathBuf = root.join(inside.iter().collect::<PathBuf>()).join(&part);
        let meta = std::fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 16 {
                return None;
            }
            let target = std::fs::read_link(&candidate).ok()?;
            if target.is_absolute() {
                inside.clear();
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_os_string()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
        } else {
            inside.push(part);
        }
    }
    let out = root.join(inside.iter().collect::<PathBuf>());
    std::fs::symlink_metadata(&out)
        .is_ok_and(|m| m.is_dir())
        .then_some(out)
}

/// `run`'s first word: a box name, or after `--` the command.
pub fn box_or_command(current: &OsStr) -> Vec<CompletionCandidate> {
    if Typed::from_process().after_escape().is_some() {
        return command_words(current);
    }
    let text = current.to_string_lossy();
    box_names()
        .into_iter()
        .filter(|c| c.get_value().to_string_lossy().starts_with(text.as_ref()))
        .collect()
}

/// After `run [BOX] --`: the command (the box's programs, read from its layers, and paths),
/// then its arguments (paths).
pub fn command_words(current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = Typed::from_process();
    let mut out = Vec::new();
    let first = !matches!(typed.after_escape(), Some(n) if n > 0);
    let text = current.to_string_lossy();
    if first && !text.contains('/') {
        if let Some(b) = named_box() {
            out.extend(
                b.programs()
                    .into_iter()
                    .filter(|p| p.starts_with(text.as_ref()))
                    .map(CompletionCandidate::new),
            );
        }
    }
    out.extend(PathCompleter::any().complete(current));
    out
}

/// `config --mount HOST:BOX[:ro]`: host directories while no `:` is typed.
pub fn mount_spec(current: &OsStr) -> Vec<CompletionCandidate> {
    if current.to_string_lossy().contains(':') {
        return Vec::new();
    }
    PathCompleter::dir().complete(current)
}

/// `export --bin`: the programs on the box's PATH (read from its layers).
pub fn box_programs(current: &OsStr) -> Vec<CompletionCandidate> {
    let text = current.to_string_lossy();
    named_box()
        .map(|b| b.programs())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.starts_with(text.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// `export --app`: the box's desktop entries.
pub fn box_apps() -> Vec<CompletionCandidate> {
    named_box()
        .map(|b| b.apps())
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// `image rm`: the store's images, by short id (with the source as help) and by source.
pub fn store_images() -> Vec<CompletionCandidate> {
    let Ok(dirs) = crate::paths::Dirs::from_env() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rec in crate::store::list(&dirs).unwrap_or_default() {
        let short = crate::store::short(&rec.id).to_string();
        out.push(CompletionCandidate::new(&short).help(Some(rec.source.clone().into())));
        out.push(CompletionCandidate::new(&rec.source).help(Some(short.into())));
    }
    out
}

/// Image references (`create`, `image pull`, `init --image`): catalog names and releases
/// (`deb` -> `debian`, `debian:` -> its releases), then local files. The catalog is the
/// builtin entries plus the user's catalog files, read from disk only: nothing is resolved.
pub fn image_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let names = crate::catalog::Catalog::load()
        .map(|c| c.names())
        .unwrap_or_default();
    let mut out: Vec<CompletionCandidate> = catalog_candidates(&names, &current.to_string_lossy())
        .into_iter()
        .map(CompletionCandidate::new)
        .collect();
    out.extend(clap_complete::engine::PathCompleter::file().complete(current));
    out
}

/// The catalog names (`Catalog::names`: `debian`, `debian:13`, ...) that complete `current`:
/// distribution names while no `:` is typed, then that distribution's `NAME:RELEASE` forms.
pub fn catalog_candidates(names: &[String], current: &str) -> Vec<String> {
    let releases = current.contains(':');
    names
        .iter()
        .filter(|n| n.starts_with(current) && n.contains(':') == releases)
        .cloned()
        .collect()
}

/// bash: clap_complete's protocol, with words glued back across `:` and `=` (see the module
/// documentation).
const BASH_SCRIPT: &str = r#"# bash completion for BIN; the words come from BIN itself (VAR=bash).
_BIN_complete() {
    local IFS=$'\013'
    local line=${COMP_LINE:0:COMP_POINT} piece rest glue= i last
    local -a words=()
    # COMP_WORDS holds bash's pieces: `debian:tri` is `debian` `:` `tri`. Pieces that touch
    # across a `:` or `=` are glued back into the word that was typed.
    for ((i = 0; i < COMP_CWORD; i++)); do
        rest=${line#"${line%%[![:space:]]*}"}
        piece=${COMP_WORDS[i]}
        if [[ $rest != "$piece"* ]]; then
            # Not the line bash split: fall back to its pieces as they are.
            words=("${COMP_WORDS[@]:0:COMP_CWORD}")
            line=
            break
        fi
        last=$((${#words[@]} - 1))
        if ((last >= 0)) && [[ $rest == "$line" ]] &&
            [[ ${words[last]} == *[:=] || $piece == [:=]* ]]; then
            words[last]+=$piece
        else
            words+=("$piece")
        fi
        line=${rest:${#piece}}
    done
    # The word under the cursor: the pieces glued before it, then what bash will replace ($2).
    # Right after a `:`, bash's piece is the `:` itself while $2 is empty.
    rest=${line#"${line%%[![:space:]]*}"}
    last=$((${#words[@]} - 1))
    if [[ -n $line && $rest == "$line" ]] && ((last >= 0)) &&
        [[ ${words[last]} == *[:=] || $rest == [:=]* ]]; then
        glue=${words[last]}
        unset "words[last]"
    fi
    if [[ -n $rest && -z ${rest//[:=]/} ]]; then
        glue+=$rest
    fi
    words+=("$glue$2")
    local space=true
    if compopt +o nospace 2>/dev/null; then
        space=false
    fi
    local reply
    reply=$(
        _CLAP_IFS="$IFS" \
        _CLAP_COMPLETE_INDEX=$((${#words[@]} - 1)) \
        _CLAP_COMPLETE_COMP_TYPE="$COMP_TYPE" \
        _CLAP_COMPLETE_SPACE="$space" \
        VAR=bash \
        "BIN" -- "${words[@]}"
    ) || { unset COMPREPLY; return; }
    COMPREPLY=()
    local c
    for c in $reply; do
        # Bash replaces only the piece after the last break: hand it that piece.
        [[ $c == "$glue"* ]] && COMPREPLY+=("${c:${#glue}}")
    done
    if [[ $space == false && ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} =~ [=/:]$ ]]; then
        compopt -o nospace
    fi
}
complete -o nospace -o bashdefault -o nosort -F _BIN_complete BIN 2>/dev/null ||
    complete -o nospace -o bashdefault -F _BIN_complete BIN
"#;

/// zsh: clap_complete's protocol, in a script that completes when autoloaded from `$fpath`
/// as well as when sourced.
const ZSH_SCRIPT: &str = r#"#compdef BIN
# zsh completion for BIN; the words come from BIN itself (VAR=zsh). Put this file in a
# directory of $fpath as _BIN before compinit runs, or source it after compinit.
_BIN() {
    local -a reply dirs other
    local c
    reply=("${(@f)$(
        _CLAP_IFS=$'\n' \
        _CLAP_COMPLETE_INDEX=$((CURRENT - 1)) \
        VAR=zsh \
        BIN -- "${words[@]}" 2>/dev/null
    )}")
    local -a home home_dirs
    for c in $reply; do
        [[ -n $c ]] || continue
        # Directories get their `/` as a removable suffix, like zsh's own file completion.
        if [[ $c == \~* ]]; then
            # A path from ~ keeps its `~`: quoted here, all but the tilde, and added as is.
            c=${c%%:*}
            if [[ $c == */ ]]; then
                c=${c%/}
                home_dirs+=("~${(q)c#\~}")
            else
                home+=("~${(q)c#\~}")
            fi
        elif [[ $c == */ ]]; then
            dirs+=("${c%/}")
        else
            other+=("$c")
        fi
    done
    (( $#other )) && _describe -V values other
    (( $#dirs )) && _describe -V values dirs -S / -r /
    (( $#home_dirs )) && compadd -Q -V values -S / -r / -- $home_dirs
    (( $#home )) && compadd -Q -V values -- $home
    return 0
}
if [[ ${funcstack[1]-} == _BIN ]]; then
    # Autoloaded by compinit: this is the first completion, answer it.
    _BIN "$@"
else
    compdef _BIN BIN
fi
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        crate::catalog::Catalog::builtin().unwrap().names()
    }

    #[test]
    fn a_distro_prefix_completes_to_distro_names_only() {
        let got = catalog_candidates(&names(), "deb");
        assert_eq!(got, vec!["debian".to_string()]);
        let all = catalog_candidates(&names(), "");
        assert!(all.contains(&"ubuntu".to_string()), "{all:?}");
        assert!(all.contains(&"arch".to_string()), "aliases too: {all:?}");
        assert!(all.iter().all(|n| !n.contains(':')), "{all:?}");
    }

    #[test]
    fn a_colon_completes_to_releases_and_their_aliases() {
        let got = catalog_candidates(&names(), "debian:");
        for want in ["debian:13", "debian:trixie", "debian:stable", "debian:12"] {
            assert!(got.contains(&want.to_string()), "{want}: {got:?}");
        }
        assert!(got.iter().all(|n| n.starts_with("debian:")), "{got:?}");
        assert_eq!(
            catalog_candidates(&names(), "debian:tri"),
            vec!["debian:trixie".to_string()]
        );
        assert!(catalog_candidates(&names(), "debian:zz").is_empty());
        assert!(catalog_candidates(&names(), "nosuch:").is_empty());
    }

    #[test]
    fn user_catalog_entries_complete_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mini.toml"),
            r#"id = "minios"
name = "Mini OS"
family = "apk"
default_release = "1"

[[release]]
name = "1"
aliases = ["first"]

[[source]]
kind = "pinned"
url = "http://127.0.0.1:9/mini.tar"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
arch = { amd64 = "amd64", arm64 = "arm64" }
"#,
        )
        .unwrap();
        let names = crate::catalog::Catalog::from_dirs(&[dir.path()])
            .unwrap()
            .names();
        assert_eq!(
            catalog_candidates(&names, "min"),
            vec!["minios".to_string()]
        );
        assert_eq!(
            catalog_candidates(&names, "minios:"),
            vec!["minios:1".to_string(), "minios:first".to_string()]
        );
    }

    #[test]
    fn links_in_a_box_are_followed_inside_it_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        // An absolute link names the box's /usr, not the host's.
        std::os::unix::fs::symlink("/usr", r.join("u")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("usr/up")).unwrap();
        assert_eq!(resolve_in(r, "/bin"), Some(r.join("usr/bin")));
        assert_eq!(resolve_in(r, "/u/bin"), Some(r.join("usr/bin")));
        assert_eq!(resolve_in(r, "/usr/up/usr/bin"), Some(r.join("usr/bin")));
        assert_eq!(resolve_in(r, "/../../usr/bin"), Some(r.join("usr/bin")));
        assert_eq!(resolve_in(r, "/nope"), None);
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in(r, "/loop"), None);
    }

    #[test]
    fn options_come_only_for_a_dash_or_when_nothing_else_fits() {
        let items = ["alpha", "beta", "--all:Stop every box"];
        assert_eq!(options_last_resort(&items, ""), ["alpha", "beta"]);
        assert_eq!(options_last_resort(&items, "-"), items);
        assert_eq!(options_last_resort(&["--json", ""], ""), ["--json", ""]);
    }

    #[test]
    fn every_shell_has_a_script() {
        for shell in SHELLS {
            let s = script(shell).unwrap();
            assert!(s.contains(VAR), "{shell}: {s}");
        }
        assert!(script("tcsh").is_err());
    }
}
