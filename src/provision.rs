//! Making a project's box: its packages installed with the image's package manager and its
//! setup commands run, once, as in-box root, with their output shown. A box whose provisioning
//! fails is removed again, so a broken project never leaves a half-made box.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::paths::Dirs;
use crate::project::Project;

/// The install command for `packages` with the package manager the rootfs has.
pub fn install_command(rootfs: &Path, packages: &[String]) -> Option<String> {
    let quoted: Vec<String> = packages
        .iter()
        .map(|p| format!("'{}'", p.replace('\'', "'\\''")))
        .collect();
    let list = quoted.join(" ");
    let has = |p: &str| rootfs.join(p.trim_start_matches('/')).exists();
    let cmd = if has("/usr/bin/apt-get") {
        format!("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {list}")
    } else if has("/usr/bin/dnf") || has("/usr/bin/dnf5") {
        format!("dnf install -y {list}")
    } else if has("/sbin/apk") || has("/usr/sbin/apk") || has("/bin/apk") {
        format!("apk add {list}")
    } else if has("/usr/bin/pacman") {
        format!("pacman -Sy --noconfirm {list}")
    } else if has("/usr/bin/zypper") {
        format!("zypper --non-interactive install {list}")
    } else if has("/usr/bin/xbps-install") {
        format!("xbps-install -Sy {list}")
    } else {
        return None;
    };
    Some(cmd)
}

/// Creates the project's box from its devbox.toml and provisions it.
pub fn create_project_box(dirs: &Dirs, p: &Project, quiet: bool) -> Result<()> {
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    say(&format!(
        "Creating box '{}' for {} ...",
        p.name,
        p.file.display()
    ));
    let fingerprint = crate::project::fingerprint(p);
    let mounts = p
        .mounts
        .iter()
        .map(|m| crate::state::MountSpec {
            host: m.host.clone(),
            target: m.box_path.clone(),
            readonly: m.readonly,
        })
        .collect();
    let spec = crate::cmd::create::NewBox {
        image: &p.image,
        name: &p.name,
        sha256: None,
        isolate: p.unshare.clone(),
        project: Some(fingerprint),
        mounts,
    };
    let mut cfg = crate::cmd::create::make(dirs, spec, quiet)?;
    if let crate::project::Home::Dir(home) = &p.home {
        // The box's own home: made now (by the user, so it is theirs), kept across boxes.
        std::fs::create_dir_all(home)
            .with_context(|| format!("cannot create the box's home {}", home.display()))?;
        cfg.home = Some(home.clone());
        cfg.project_dir = Some(p.dir.clone());
        cfg.save_in(&dirs.box_dir(&p.name))?;
    }
    let result = provision(dirs, p, &cfg, &say);
    if let Err(e) = result {
        let _ = crate::cmd::rm::run(
            dirs,
            std::slice::from_ref(&p.name),
            true,
            crate::cmd::rm::Exports::Keep,
            true,
        );
        return Err(e.context(format!("the box '{}' was not kept", p.name)));
    }
    Ok(())
}

fn provision(
    dirs: &Dirs,
    p: &Project,
    cfg: &crate::state::BoxConfig,
    say: &dyn Fn(&str),
) -> Result<()> {
    if !p.packages.is_empty() {
        let rootfs = dirs.image_dir(&cfg.image_id).join("rootfs");
        let Some(cmd) = install_command(&rootfs, &p.packages) else {
            bail!(
                "{}: the image has none of the package managers devbox knows (apt, dnf, apk, pacman, zypper, xbps), so `packages` cannot be installed\n  hint: install them with `setup` commands instead",
                p.file.display()
            );
        };
        say(&format!(
            "Installing {} package{}",
            p.packages.len(),
            if p.packages.len() == 1 { "" } else { "s" }
        ));
        run_as_root(&p.name, &cmd).context("installing the packages failed")?;
    }
    for (i, cmd) in p.setup.iter().enumerate() {
        say(&format!("Setup {}/{}: {cmd}", i + 1, p.setup.len()));
        run_as_root(&p.name, cmd)
            .with_context(|| format!("setup command {} failed: {cmd}", i + 1))?;
    }
    say(&format!("Created box '{}'.", p.name));
    Ok(())
}

/// `devbox run NAME --root -- sh -c CMD`, in a child process (the join execs).
fn run_as_root(name: &str, cmd: &str) -> Result<()> {
    let status = crate::runtime::helper("run")
        .args([name, "--root", "--", "/bin/sh", "-c", cmd])
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        bail!(
            "exit status {}",
            status.code().map_or("killed".into(), |c| c.to_string())
        );
    }
    Ok(())
}
