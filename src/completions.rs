//! Shell completion. The scripts in `completions/` only register devbox with the shell; the
//! words themselves come from devbox at completion time (`DEVBOX_COMPLETE=SHELL devbox -- ARGS`),
//! so box names are always current. Completion reads the store's directory listing and the
//! catalog files and nothing else: no network, no holder, no box is started.
//!
//! clap_complete writes the fish, elvish and powershell scripts. devbox writes its own bash and
//! zsh scripts (the words are still computed by clap_complete's engine):
//! - bash splits a word at every `COMP_WORDBREAKS` character, `:` and `=` among them, so
//!   `debian:tri` reaches a completion function as `debian`, `:`, `tri`, and only `tri` is
//!   replaced by what it offers. devbox's function glues such pieces back into the word the
//!   user typed before asking devbox, and hands bash only the part after the break.
//! - zsh loads a completion file found in `$fpath` as the body of its function; clap's script
//!   then only registers itself and the first Tab offers nothing. devbox's script completes on
//!   that first call too, and still works when sourced.

use std::ffi::OsStr;

use clap_complete::engine::{CompletionCandidate, ValueCompleter as _};
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Shells, Zsh};

/// The environment variable through which the shell asks devbox for completions.
pub const VAR: &str = "DEVBOX_COMPLETE";

/// Shells with a registration script.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish", "elvish", "powershell"];

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
    &Fish,
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
        self.words.write_complete(cmd, args, current_dir, buf)
    }
}

/// Answers a completion request and exits, when the shell made one.
pub fn answer_if_asked() {
    if std::env::var_os(VAR).is_some() {
        clap_complete::CompleteEnv::with_factory(
            <crate::cli::Cli as clap::CommandFactory>::command,
        )
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
    for c in $reply; do
        [[ -n $c ]] || continue
        # Directories get their `/` as a removable suffix, like zsh's own file completion.
        if [[ $c == */ ]]; then
            dirs+=("${c%/}")
        else
            other+=("$c")
        fi
    done
    (( $#dirs )) && _describe -V values dirs -S / -r /
    (( $#other )) && _describe -V values other
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
    fn every_shell_has_a_script() {
        for shell in SHELLS {
            let s = script(shell).unwrap();
            assert!(s.contains(VAR), "{shell}: {s}");
        }
        assert!(script("tcsh").is_err());
    }
}
