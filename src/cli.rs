//! The command line, as plain data. Handlers live in `cmd/`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter};

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
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The project file to use instead of the devbox.toml found in this directory or above
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnshareArg {
    Net,
    Pid,
    Ipc,
    All,
}

#[derive(Debug, Subcommand)]
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
        /// DISTRO[:RELEASE] from the catalog, an OCI reference, or the path or URL of a rootfs tarball
        #[arg(add = ArgValueCompleter::new(crate::completions::image_names))]
        image: String,
        /// Name of the box [default: derived from the image file name]
        #[arg(long, short)]
        name: Option<String>,
        /// Expected sha256 of the archive; a mismatch keeps nothing
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// Give the box its own namespace instead of sharing the host's (repeatable)
        #[arg(long, value_enum, value_delimiter = ',')]
        unshare: Vec<UnshareArg>,
    },
    /// Open an interactive login shell in a box
    Enter {
        /// Box to enter [default: the only box]
        #[arg(add = ArgValueCandidates::new(crate::completions::box_names))]
        name: Option<String>,
        /// Be root inside the box (a subordinate id on the host), e.g. to install packages
        #[arg(long)]
        root: bool,
    },
    /// Run one command in a box, passing its exit status through
    #[command(after_help = "Example: devbox run deb -- make -j4")]
    Run {
        /// Box to run in [default: the only box]
        #[arg(add = ArgValueCandidates::new(crate::completions::box_names))]
        name: Option<String>,
        /// Run as root inside the box
        #[arg(long)]
        root: bool,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// List boxes
    #[command(visible_alias = "ls")]
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Stop boxes: end their processes and release their namespaces
    Stop {
        /// Boxes to stop
        #[arg(required_unless_present = "all", add = ArgValueCandidates::new(crate::completions::box_names))]
        names: Vec<String>,
        /// Stop every box (and devbox's holder process)
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
    /// Remove boxes and their changes (the image stays in the store)
    #[command(
        long_about = "Remove boxes with their own layer of changes. A running box is refused \
unless --force is given, which stops it first. Your home directory is never touched."
    )]
    Rm {
        #[arg(required = true, add = ArgValueCandidates::new(crate::completions::box_names))]
        names: Vec<String>,
        /// Stop running boxes first instead of refusing
        #[arg(long, short)]
        force: bool,
    },
    /// Run a host command as root of devbox's user namespace (to inspect or delete files owned by subordinate ids)
    Unshare {
        /// The command and its arguments, after `--` [default: $SHELL]
        #[arg(last = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        long_about = "Print the script that registers devbox's completions with a shell.\n\n\
Install: bash: `devbox completions bash > ~/.local/share/bash-completion/completions/devbox`; \
zsh: `devbox completions zsh > ~/.zfunc/_devbox` (with ~/.zfunc in $fpath); \
fish: `devbox completions fish > ~/.config/fish/completions/devbox.fish`."
    )]
    Completions {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::completions::SHELLS))]
        shell: String,
    },
    /// Write a commented starter devbox.toml in the current directory
    Init {
        /// Image for the project's box [default: your default image, else debian:13]
        #[arg(long)]
        image: Option<String>,
        /// Overwrite an existing devbox.toml
        #[arg(long)]
        force: bool,
    },
    /// Show a box's settings, image, layers and state
    Inspect {
        #[arg(add = ArgValueCandidates::new(crate::completions::box_names))]
        name: String,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Check this machine for what devbox needs, and say how to fix what is missing
    Doctor,
    /// Manage the store of unpacked images
    #[command(subcommand)]
    Image(ImageCmd),
    #[command(name = "__holder", hide = true)]
    Holder { ns_dir: PathBuf },
    #[command(name = "__start", hide = true)]
    Start { name: String },
    #[command(name = "__stop", hide = true)]
    StopHelper { name: String },
    #[command(name = "__unpack", hide = true)]
    Unpack { dest: PathBuf, source: String },
    #[command(name = "__unpack-layers", hide = true)]
    UnpackLayers { spec: PathBuf, dest: PathBuf },
    #[command(name = "__rmtree", hide = true)]
    RmTree { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List unpacked images with the boxes that use them
    #[command(visible_alias = "ls")]
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Remove images from the store (refused while a box uses them, unless --force)
    Rm {
        /// Image id (at least 4 hex digits) or source, as `devbox image list` shows
        #[arg(required = true)]
        images: Vec<String>,
        /// Also remove the boxes made from the image (says which)
        #[arg(long, short)]
        force: bool,
    },
    /// Download and unpack an image into the store without making a box
    Pull {
        /// DISTRO[:RELEASE], an OCI reference, or the path or URL of a rootfs tarball
        #[arg(add = ArgValueCompleter::new(crate::completions::image_names))]
        image: String,
        /// Expected sha256 of an archive
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Remove images no box uses, and the download cache
    Prune,
    /// Search the catalog of distributions (names, releases, aliases, sources)
    Search {
        /// Text to look for in names, aliases, families and releases
        text: Option<String>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}
