//! The command line, as plain data. Handlers live in `cmd/`. Completion (`completions.rs`)
//! builds on this definition and adds what it offers for each argument; nothing here knows
//! about it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "devbox",
    version,
    about = "Mutable dev environments of any Linux distro, rootless, without a daemon",
    long_about = "devbox turns a root filesystem tarball into a box: an overlay of the unpacked image \
in a user namespace, with your user, your home and your working directory inside.\n\n\
Exit status: 0 ok, 1 error, 2 usage error. `enter` and `run` exit with the command's own status, \
126 when it cannot be executed, 127 when it is not found, and 125 when devbox failed before it ran; \
a command killed by signal N is reported by your shell as 128+N.",
    after_help = "Quick start:\n  devbox create ./debian-rootfs.tar.gz --name deb\n  devbox enter deb\n  devbox run deb -- make"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// The options of every command, taken before its name and after it (`devbox -v run` and
/// `devbox run -v`). Each command declares them itself (the `_g` fields) instead of clap's
/// `global = true`, which copies them into every one of the 30 commands at each start, a fifth
/// of what clap did for a warm `devbox run`; a command's own arguments are built only when it
/// is the one used. `Global::from_matches` merges the levels.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Global {
    /// Print only errors
    #[arg(short, long)]
    pub quiet: bool,
    /// Also say which image, project file, id-mapping commands and helpers devbox uses
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,
    /// The project file to use instead of the devbox.toml found in this directory or above
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Cli {
    /// The command line from clap's matches, with the options of every level merged.
    pub fn from_matches(m: &clap::ArgMatches) -> Result<Cli, clap::Error> {
        use clap::FromArgMatches;
        let mut cli = Cli::from_arg_matches(m)?;
        cli.global = Global::from_matches(m);
        Ok(cli)
    }
}

impl Global {
    /// The options as given at any level of the command line: a flag given anywhere is set, and
    /// the innermost `--config` wins (as it would if given twice at one level).
    pub fn from_matches(m: &clap::ArgMatches) -> Global {
        let mut g = Global::default();
        let mut level = Some(m);
        while let Some(m) = level {
            let flag = |id: &str| m.try_get_one::<bool>(id).ok().flatten() == Some(&true);
            g.quiet |= flag("quiet");
            g.verbose |= flag("verbose");
            if let Ok(Some(c)) = m.try_get_one::<PathBuf>("config") {
                g.config = Some(c.clone());
            }
            level = m.subcommand().map(|(_, sub)| sub);
        }
        g
    }
}

/// Shells devbox has a completion script for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish", "elvish", "powershell"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnshareArg {
    Net,
    Pid,
    Ipc,
    All,
    /// Share every namespace with the host (the default)
    None,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Cmd {
    /// Create a box from a catalog distro, an OCI image or a rootfs tarball
    #[command(long_about = "Create a box.\n\n\
IMAGE is, in this order: an http:// or https:// URL of a rootfs tarball; a local path (absolute, ./, \
../, ~/ or an existing file) of one (.tar, .tar.gz/.tgz, .tar.xz, .tar.zst; the compression is \
detected from the content); an OCI image reference HOST/PATH[:TAG|@sha256:DIGEST] (or a Docker Hub \
name with a '/', e.g. library/debian); else a catalog name DISTRO[:RELEASE] such as debian, \
debian:13, ubuntu:noble or arch (see `devbox image search`). The image is unpacked once into the \
store and shared by every box made from it; each box keeps its own changes in an overlay layer.")]
    Create {
        /// DISTRO[:RELEASE] from the catalog, an OCI reference, an image made by `devbox commit
        /// --tag`, or the path or URL of a rootfs tarball [default: default_image of
        /// ~/.config/devbox/config.toml, else debian:13]. With --from: the new box's name.
        image: Option<String>,
        /// Name of the box [default: derived from the image file name]
        #[arg(long, short)]
        name: Option<String>,
        /// Expected sha256 of the archive; a mismatch keeps nothing
        #[arg(long, value_name = "HEX", conflicts_with = "from")]
        sha256: Option<String>,
        /// Make the box a clone of box BOX: the same image (shared, not copied) and a copy of
        /// BOX's own layer and settings
        #[arg(long, value_name = "BOX")]
        from: Option<String>,
        /// Give the box its own namespace instead of sharing the host's (repeatable)
        #[arg(long, value_enum, value_delimiter = ',')]
        unshare: Vec<UnshareArg>,
        #[command(flatten)]
        _g: Global,
    },
    /// Make a new image in the store from a box: its image plus the box's own layer
    #[command(
        long_about = "Make a new image in the store from a box: the box's image with the box's own \
layer of changes as one more layer (files it deleted are deleted in the image too, owners are the \
in-box ones) and the image's configuration (its environment). New boxes can be made from it \
(`devbox create NAME`), and it can be pushed (`devbox image push`) or saved (`devbox image save`).\n\n\
A running box is committed as its layer is on disk at that moment; stop it first for an image \
no process is writing to.",
        after_help = "Example: devbox commit deb --tag deb-tools:v1 && devbox create deb-tools:v1 --name deb2"
    )]
    Commit {
        name: String,
        /// A name for the image: NAME[:TAG] (lowercase, no '/'), usable as IMAGE of create
        #[arg(long, value_name = "NAME[:TAG]")]
        tag: Option<String>,
        #[command(flatten)]
        _g: Global,
    },
    /// Open an interactive login shell in a box
    Enter {
        /// Box to enter [default: the project's box here, else default_box of
        /// ~/.config/devbox/config.toml, else the only box]
        name: Option<String>,
        /// Be root inside the box (a subordinate id on the host), e.g. to install packages
        #[arg(long)]
        root: bool,
        /// Set a variable in the session, over the box's and the project's (repeatable)
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[command(flatten)]
        _g: Global,
    },
    /// Run one command in a box, passing its exit status through
    #[command(after_help = "Example: devbox run deb -- make -j4")]
    Run {
        /// Box to run in [default: as for enter: the project's, default_box, the only box]
        name: Option<String>,
        /// Run as root inside the box
        #[arg(long)]
        root: bool,
        /// Set a variable in the session, over the box's and the project's (repeatable)
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<OsString>,
        #[command(flatten)]
        _g: Global,
    },
    /// List boxes
    #[command(visible_alias = "ls")]
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Stop boxes: end their processes and release their namespaces
    Stop {
        /// Boxes to stop
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Stop every box (and devbox's holder process)
        #[arg(long, conflicts_with = "names")]
        all: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Restart boxes: stop them (their processes end) and start them with their saved settings
    Restart {
        /// Boxes to restart
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        _g: Global,
    },
    /// Remove boxes and their changes (the image stays in the store)
    #[command(
        long_about = "Remove boxes with their own layer of changes. A running box is refused \
unless --force is given, which stops it first. Your home directory is never touched."
    )]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Stop running boxes first instead of refusing
        #[arg(long, short)]
        force: bool,
        /// Also remove the boxes' exports (launchers, menu entries) without asking
        #[arg(long, short)]
        yes: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Make a box's program or desktop application runnable from the host
    #[command(
        long_about = "Make a box's program or desktop application runnable from the host.\n\n\
--bin PROGRAM writes a launcher ~/.local/bin/BASENAME that runs the program in the box with \
your working directory and arguments, and exits with its status (`devbox run NAME -- PROGRAM`). \
PROGRAM is an absolute path in the box, or a name looked up in the box's PATH.\n\n\
--app APP copies the box's desktop entry /usr/share/applications/APP.desktop (or \
/usr/local/share/applications) to ~/.local/share/applications/devbox-NAME-APP.desktop, its \
Exec lines running through devbox and its name followed by \"(NAME)\".\n\n\
Looking into the box starts it if it is stopped. A file devbox did not write is never \
replaced unless --force is given. Exports are found again by a marker line in each file; \
`devbox rm` offers to remove a box's exports.",
        after_help = "Examples:\n  devbox export deb --bin rg\n  devbox export deb --app org.gnome.gedit\n  devbox export deb --list\n  devbox export deb --delete --bin rg\n  devbox export deb --delete --all"
    )]
    #[command(group(clap::ArgGroup::new("what").required(true).args(["bin", "app", "list", "all"])))]
    Export {
        /// The box (it may already be removed, for --list and --delete)
        name: String,
        /// A program of the box: writes the launcher ~/.local/bin/BASENAME
        #[arg(long, value_name = "PROGRAM")]
        bin: Option<String>,
        /// A desktop application of the box (its .desktop file's name): writes a menu entry
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        /// Remove the export named by --bin or --app (or every export of the box with --all)
        #[arg(long)]
        delete: bool,
        /// With --delete: every export of the box
        #[arg(long, requires = "delete")]
        all: bool,
        /// Show the box's exports
        #[arg(long, conflicts_with_all = ["delete", "force"])]
        list: bool,
        /// Replace a file devbox did not write, or another box's export
        #[arg(long, short, conflicts_with = "delete")]
        force: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Run a host command as root of devbox's user namespace (to inspect or delete files owned by subordinate ids)
    Unshare {
        /// The command and its arguments, after `--` [default: $SHELL]
        #[arg(last = true, value_name = "CMD")]
        cmd: Vec<OsString>,
        #[command(flatten)]
        _g: Global,
    },
    /// Print the shell completion script, or install it where the shell finds it
    #[command(
        long_about = "Print the script that registers devbox's completions with a shell, or with \
--install write it where that shell looks for completions (SHELL defaults to your login shell, \
from $SHELL or your passwd entry):\n\n\
bash: ${XDG_DATA_HOME:-~/.local/share}/bash-completion/completions/devbox (read by the \
bash-completion package);\n\
zsh: ${XDG_DATA_HOME:-~/.local/share}/zsh/site-functions/_devbox (a directory that must be in \
$fpath before compinit: devbox prints the line to add to ~/.zshrc and never edits it);\n\
fish: ${XDG_CONFIG_HOME:-~/.config}/fish/completions/devbox.fish.\n\n\
The file is written atomically (a temp file, then a rename), its directories made as needed.",
        after_help = "Examples:\n  devbox completions --install\n  devbox completions --install zsh\n  devbox completions fish > ~/.config/fish/completions/devbox.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell [default with --install: your login shell]
        #[arg(required_unless_present = "install", value_parser = clap::builder::PossibleValuesParser::new(SHELLS))]
        shell: Option<String>,
        /// Write the script where the shell finds it instead of printing it
        #[arg(long)]
        install: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Write a commented starter devbox.toml in the current directory
    Init {
        /// Image for the project's box [default: your default image, else debian:13]
        #[arg(long)]
        image: Option<String>,
        /// Overwrite an existing devbox.toml
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Bring the project's box in line with its devbox.toml (made if missing)
    #[command(
        long_about = "Bring a project's box in line with its devbox.toml, or make it.\n\n\
Without NAME, the project is the devbox.toml in this directory or above (or --config); with NAME, \
the file box NAME was made from. devbox compares the file with the one the box was made from and \
does the least that applies it: env and enter hooks need nothing (every session reads them); \
added packages are installed and appended setup commands run in the box as it is; changed \
namespaces, mounts or home are saved and take effect when the box starts again (a running box is \
stopped, after asking); a new image or edited setup commands recreate the box, after asking, which \
discards its own layer. Your home is never touched. Removed packages stay installed until the \
box is recreated.\n\n\
The image is the one devbox.lock (next to devbox.toml) pins, written when the box was first \
made: an OCI image by manifest digest, an archive by URL and sha256, a catalog name by the source \
it chose. Keep devbox.lock in version control: other machines then make the box from the same \
image. --update resolves the image anew and rewrites the lock; --locked (or CI=true) refuses to \
resolve when the lock is missing or does not match devbox.toml's image."
    )]
    Apply {
        /// The box whose project file to apply [default: the project here]
        name: Option<String>,
        /// Answer yes to the questions: recreate or stop the box without asking
        #[arg(long, short)]
        yes: bool,
        /// Resolve the image anew (a moved tag, a new catalog release) and rewrite devbox.lock;
        /// a new image recreates the box (after asking)
        #[arg(long, conflicts_with = "locked")]
        update: bool,
        /// Use devbox.lock only: a missing or stale lock is an error (also with CI=true)
        #[arg(long)]
        locked: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Accept a project file devbox refuses: another user's, or one in a directory others can write
    #[command(
        long_about = "Accept a devbox.toml that devbox would refuse, or stop accepting one.\n\n\
A project file runs code as you (setup commands, env, enter hooks), so devbox uses one only when \
it is yours and nobody else can change it: it belongs to you (not to another user, not to root), \
neither its group nor others may write it, and every directory above it belongs to you or root \
and is closed to others or sticky (like /tmp). `devbox trust PATH` accepts a file that is not: \
it records the file's canonical path and its owner's uid in your configuration \
(~/.config/devbox/config.toml, [[trusted]]), like git's safe.directory. The same path written by \
another user is refused again. PATH may be the project's directory.",
        after_help = "Examples:\n  devbox trust /srv/shared/proj\n  devbox trust --list\n  devbox trust --remove /srv/shared/proj/devbox.toml"
    )]
    Trust {
        /// The devbox.toml to accept (or its directory)
        #[arg(required_unless_present = "list", conflicts_with = "list", value_hint = clap::ValueHint::AnyPath)]
        path: Option<PathBuf>,
        /// Show the project files you trust
        #[arg(long)]
        list: bool,
        /// Stop trusting PATH
        #[arg(long, requires = "path", conflicts_with = "list")]
        remove: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Change a box's mounts, environment, namespaces or home (no new image needed)
    #[command(
        long_about = "Change the settings of a box made with `devbox create`. Mounts, namespaces \
and home take effect when the box starts again (`devbox stop NAME` first if it is running); \
variables from the next session on. Without options, prints the box's settings. A project's box \
takes its settings from its devbox.toml: edit the file and run `devbox apply`.",
        after_help = "Example: devbox config deb --mount ~/data:/data:ro --env EDITOR=vim --unshare net"
    )]
    Config {
        name: String,
        /// Bind a host directory into the box: HOST:BOX[:ro] (repeatable; replaces a mount at BOX)
        #[arg(long, value_name = "HOST:BOX[:ro]")]
        mount: Vec<String>,
        /// Remove the mount at this path inside the box (repeatable)
        #[arg(long, value_name = "BOX")]
        unmount: Vec<PathBuf>,
        /// Set a variable in every session: NAME=VALUE (repeatable)
        #[arg(long, value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Remove a variable set with --env (repeatable)
        #[arg(long, value_name = "NAME")]
        unset_env: Vec<String>,
        /// The namespaces the box has of its own (replaces the list; `none` shares all)
        #[arg(long, value_enum, value_delimiter = ',')]
        unshare: Option<Vec<UnshareArg>>,
        /// A directory that becomes $HOME inside the box, or `shared` for your home
        #[arg(long, value_name = "DIR|shared")]
        home: Option<PathBuf>,
        #[command(flatten)]
        _g: Global,
    },
    /// Show a box's settings, image, layers and state
    Inspect {
        name: String,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Check this machine for what devbox needs, and say how to fix what is missing
    Doctor {
        #[command(flatten)]
        _g: Global,
    },
    /// Manage the store of unpacked images
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
        #[command(flatten)]
        _g: Global,
    },
    #[command(name = "__holder", hide = true)]
    Holder { ns_dir: PathBuf, store: PathBuf },
    #[command(name = "__start", hide = true)]
    Start { name: String },
    #[command(name = "__stop", hide = true)]
    StopHelper { name: String },
    #[command(name = "__unpack", hide = true)]
    Unpack { dest: PathBuf, source: String },
    #[command(name = "__unpack-layers", hide = true)]
    UnpackLayers { spec: PathBuf, dest: PathBuf },
    #[command(name = "__bootstrap", hide = true)]
    Bootstrap { spec: PathBuf, dest: PathBuf },
    #[command(name = "__rmtree", hide = true)]
    RmTree { path: PathBuf },
    #[command(name = "__pack", hide = true)]
    Pack {
        #[arg(long)]
        upper: bool,
        tree: PathBuf,
    },
    #[command(name = "__clone", hide = true)]
    CloneLayer { from: PathBuf, to: PathBuf },
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum ImageCmd {
    /// List unpacked images with the boxes that use them
    #[command(visible_alias = "ls")]
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Remove images from the store (refused while a box uses them, unless --force)
    Rm {
        /// Image id (at least 4 hex digits) or source, as `devbox image list` shows
        #[arg(required = true)]
        images: Vec<String>,
        /// Also remove the boxes made from the image (says which)
        #[arg(long, short)]
        force: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Download and unpack an image into the store without making a box
    Pull {
        /// DISTRO[:RELEASE], an OCI reference, or the path or URL of a rootfs tarball
        image: String,
        /// Expected sha256 of an archive
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        #[command(flatten)]
        _g: Global,
    },
    /// Remove images no box uses, and the download cache
    Prune {
        #[command(flatten)]
        _g: Global,
    },
    /// Upload an image from the store to an OCI registry
    #[command(
        long_about = "Upload an image of the store to an OCI registry, as REFERENCE \
(HOST[:PORT]/PATH[:TAG]). Blobs the registry has are skipped, blobs of an image pulled from \
another repository of the same registry are mounted from there, the others are uploaded (large \
ones in chunks; a push that broke off continues where it stopped when run again). Credentials and \
TLS are those of pulls: ~/.docker/config.json, $REGISTRY_AUTH_FILE, podman's auth.json; plain \
http only to loopback registries and insecure_registries.",
        after_help = "Example: devbox image push deb-tools:v1 localhost:5000/team/deb-tools:v1"
    )]
    Push {
        /// Image id (at least 4 hex digits), source or `commit --tag` name
        image: String,
        /// Where to: HOST[:PORT]/PATH[:TAG]
        reference: String,
        #[command(flatten)]
        _g: Global,
    },
    /// Write an image as an OCI image archive (for machines without a registry)
    Save {
        /// Image id (at least 4 hex digits), source or `commit --tag` name
        image: String,
        /// The archive to write
        file: PathBuf,
        #[command(flatten)]
        _g: Global,
    },
    /// Read an image archive into the store: `devbox image save`'s, `podman save`'s or `docker save`'s
    Load {
        /// The archive (an OCI archive or a docker-archive, compressed or not)
        file: PathBuf,
        #[command(flatten)]
        _g: Global,
    },
    /// Search the catalog of distributions (names, releases, aliases, sources)
    Search {
        /// Text to look for in names, aliases, families and releases
        text: Option<String>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        _g: Global,
    },
    /// Ask the servers whether every catalog source still serves its release (for maintainers)
    #[command(
        long_about = "Ask the live servers whether each source of each release still \
answers, without downloading an image: OCI manifests and indexes (the platform chosen as a pull \
would), the LXC server's index, checksum lists and Alpine's release index, and a HEAD request \
for each archive. One row per release and source.\n\n\
Exit status 1 when a release has no working source; a failed source whose release another \
source serves is a warning. Run it before a release of devbox and whenever a distribution ships."
    )]
    Check {
        /// DISTRO (all its releases) or DISTRO:RELEASE [default: the whole catalog]
        names: Vec<String>,
        /// The sources for this architecture (amd64, arm64, armhf, i386, ppc64el, s390x,
        /// riscv64, loong64), or `all` for every one a source serves [default: this machine's]
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        _g: Global,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let m = Cli::command()
            .try_get_matches_from(std::iter::once("devbox").chain(argv.iter().copied()))?;
        Cli::from_matches(&m)
    }

    #[test]
    fn options_are_taken_before_and_after_the_command() {
        for argv in [
            &["-v", "run", "b", "--", "true"][..],
            &["run", "-v", "b", "--", "true"],
            &["run", "b", "--verbose", "--", "true"],
            &["image", "-v", "list"],
            &["image", "list", "--verbose"],
            &["-v", "image", "list"],
        ] {
            let g = parse(argv).unwrap().global;
            assert!(g.verbose && !g.quiet, "{argv:?}: {g:?}");
        }
        for argv in [
            &["-q", "stop", "--all"][..],
            &["stop", "--all", "-q"],
            &["image", "prune", "-q"],
        ] {
            assert!(parse(argv).unwrap().global.quiet, "{argv:?}");
        }
        let g = parse(&["--config", "a.toml", "enter", "--config", "b.toml"])
            .unwrap()
            .global;
        assert_eq!(g.config, Some(PathBuf::from("b.toml")));
        let g = parse(&["--config", "a.toml", "enter"]).unwrap().global;
        assert_eq!(g.config, Some(PathBuf::from("a.toml")));
        let g = parse(&["doctor"]).unwrap().global;
        assert!(!g.quiet && !g.verbose && g.config.is_none());
    }

    #[test]
    fn quiet_and_verbose_conflict_at_one_level() {
        for argv in [&["-v", "-q", "list"][..], &["list", "-q", "-v"]] {
            let e = parse(argv).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{argv:?}"
            );
        }
    }

    /// Every command a user can type declares the common options (its `_g` field); only
    /// devbox's own helpers (hidden) go without.
    #[test]
    fn every_visible_command_takes_the_common_options() {
        fn check(cmd: &mut clap::Command, path: &str) {
            cmd.build();
            for sub in cmd.get_subcommands_mut() {
                let name = format!("{path} {}", sub.get_name());
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                sub.build();
                for id in ["quiet", "verbose", "config"] {
                    assert!(
                        sub.get_arguments().any(|a| a.get_id() == id),
                        "`{name}` lacks --{id}: give its variant `#[command(flatten)] _g: Global`"
                    );
                }
                check(sub, &name);
            }
        }
        check(&mut Cli::command(), "devbox");
    }
}
