//! `devbox __bootstrap SPEC DEST`: makes DEST/rootfs from the packages of a [`Plan`], as root
//! of devbox's user namespace, so every file lands with its in-box owner.
//!
//! 1. The merged-/usr links (`bin`, `sbin`, `lib`, and `lib64` on amd64) are made first, as
//!    debootstrap does; a package's `./bin/` entry then keeps the link.
//! 2. Every package's `data.tar` is unpacked over the root with the project's extractor
//!    (paths confined to the root, `..` refused, devices skipped), so dpkg, its libraries and
//!    a shell are there to run.
//! 3. In a mount namespace of its own the helper binds `/dev`, `/proc` and `/sys` and the
//!    package cache into the root, chroots into it and runs `dpkg --install` over all the
//!    packages: dpkg records them and runs their maintainer scripts in dependency order.
//!    `/usr/sbin/policy-rc.d` keeps services from starting meanwhile.
//! 4. `/etc/apt/sources.list` names the mirror and suite the packages came from.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{ar, Plan};
use crate::paths::Dirs;

/// Where the package cache is bound inside the root while dpkg runs.
const DEBS_IN_ROOT: &str = "run/devbox-debs";

pub fn helper(spec: &Path, dest: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let plan: Plan = serde_json::from_str(
        &std::fs::read_to_string(spec)
            .with_context(|| format!("cannot read {}", spec.display()))?,
    )?;
    let log_path = dest.join("dpkg.log");
    crate::runtime::holder::as_namespace_root_for_parent(&dirs, "bootstrap")?;
    let root = dest.join("rootfs");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    merged_usr(&root, &plan.arch)?;
    let opts = crate::unpack::Options {
        preserve_owner: true,
        keep_directory_symlinks: true,
    };
    for d in &plan.debs {
        let path = plan.deb_path(d);
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let (member, data) = ar::data_member(BufReader::with_capacity(256 * 1024, file))
            .with_context(|| format!("package {} ({})", d.name, path.display()))?;
        let tar = decompress(&member, data)
            .with_context(|| format!("package {} ({})", d.name, path.display()))?;
        crate::unpack::unpack_layer(tar, &root, &opts, &mut |_| {})
            .with_context(|| format!("cannot unpack package {}", d.name))?;
    }
    dpkg_state(&root)?;
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    configure(&plan, &root, log)?;
    Ok(())
}

/// `bin -> usr/bin` and the like, before any package is unpacked.
fn merged_usr(root: &Path, arch: &str) -> Result<()> {
    let mut links = vec!["bin", "sbin", "lib"];
    if arch == "amd64" {
        links.push("lib64");
    }
    for l in links {
        std::fs::create_dir_all(root.join("usr").join(l))?;
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l))
            .with_context(|| format!("cannot link /{l} to usr/{l}"))?;
    }
    Ok(())
}

/// A reader of the plain tar inside a `data.tar.*` member.
fn decompress<'a, R: Read + 'a>(member: &str, r: R) -> Result<Box<dyn Read + 'a>> {
    Ok(match member.rsplit('.').next().unwrap_or("") {
        "tar" => Box::new(r),
        "gz" => Box::new(flate2::read::GzDecoder::new(r)),
        "xz" => Box::new(liblzma::read::XzDecoder::new(r)),
        "zst" => Box::new(zstd::stream::read::Decoder::new(r)?),
        other => bail!("its {member} is compressed with {other}, which devbox does not read"),
    })
}

/// An empty dpkg database, as dpkg expects on a new system.
fn dpkg_state(root: &Path) -> Result<()> {
    let db = root.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers", "alternatives", "parts"] {
        std::fs::create_dir_all(db.join(d))?;
    }
    for f in ["status", "available"] {
        let p = db.join(f);
        if !p.exists() {
            std::fs::write(&p, b"")?;
        }
    }
    Ok(())
}

/// Runs dpkg over every package, chrooted into `root`, in a mount namespace of this helper's.
fn configure(plan: &Plan, root: &Path, log: std::fs::File) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("cannot make a mount namespace to configure the packages in")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make / private")?;
    for d in ["dev", "proc", "sys"] {
        let at = root.join(d);
        std::fs::create_dir_all(&at)?;
        mount(
            Some(Path::new("/").join(d).as_path()),
            &at,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind /{d} into the new root"))?;
    }
    let debs = root.join(DEBS_IN_ROOT);
    std::fs::create_dir_all(&debs)?;
    mount(
        Some(&plan.cache),
        &debs,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("cannot bind the package cache into the new root")?;
    // Read-only: maintainer scripts have no business in the user's cache. The flags the
    // kernel locks on the user's file system (nosuid, nodev, noexec) must be kept.
    let mut ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if let Ok(st) = nix::sys::statvfs::statvfs(&debs) {
        use nix::sys::statvfs::FsFlags;
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if st.flags().contains(fs) {
                ro |= ms;
            }
        }
    }
    if let Err(e) = mount(None::<&str>, &debs, None::<&str>, ro, None::<&str>) {
        crate::ui::detail(format_args!(
            "the package cache stays writable in the new root: {e}"
        ));
    }
    let policy = root.join("usr/sbin/policy-rc.d");
    let had_policy = policy.exists();
    if !had_policy {
        std::fs::write(
            &policy,
            "#!/bin/sh\n# devbox: no services start while the image is made\nexit 101\n",
        )?;
        std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    nix::unistd::chroot(root).context("cannot chroot into the new root")?;
    std::env::set_current_dir("/")?;
    let mut cmd = Command::new("/usr/bin/dpkg");
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .env("HOME", "/root")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .args([
            "--install",
            "--force-depends",
            "--force-unsafe-io",
            "--force-confdef",
            "--force-confold",
        ])
        .args(
            plan.debs
                .iter()
                .map(|d| format!("/{DEBS_IN_ROOT}/{}.deb", d.sha256)),
        )
        .stdin(Stdio::null());
    let mut log_back = log.try_clone()?;
    if crate::ui::verbose() {
        use std::os::fd::AsFd;
        cmd.stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?));
    } else {
        cmd.stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
    }
    let status = cmd.status().context("cannot run dpkg in the new root")?;
    let _ = umount2(
        Path::new("/").join(DEBS_IN_ROOT).as_path(),
        MntFlags::MNT_DETACH,
    );
    let _ = std::fs::remove_dir(Path::new("/").join(DEBS_IN_ROOT));
    if !had_policy {
        let _ = std::fs::remove_file("/usr/sbin/policy-rc.d");
    }
    if !status.success() {
        use std::io::Seek;
        let mut text = String::new();
        let _ = log_back.rewind();
        let _ = log_back.read_to_string(&mut text);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        bail!(
            "dpkg failed to install the packages ({status}); the end of its output:\n{tail}\n  hint: run with --verbose to see all of it"
        );
    }
    let components = plan.apt_components.join(" ");
    std::fs::create_dir_all("/etc/apt")?;
    let mut f = std::fs::File::create("/etc/apt/sources.list")?;
    writeln!(
        f,
        "# Written by devbox: the archive this image was made from.\ndeb {} {} {components}",
        plan.mirror, plan.suite
    )?;
    if let Err(why) = crate::unpack::check_usable_root(Path::new("/")) {
        bail!("the packages give no usable root file system: {why}");
    }
    Ok(())
}
