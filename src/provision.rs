//! Making a project's box and keeping it in line with its devbox.toml.
//!
//! A project's box is made with its packages installed by the image's package manager and its
//! setup commands run, once, as in-box root, with their output shown. A box whose provisioning
//! fails is removed again, so a broken project never leaves a half-made box.
//!
//! The box keeps the project it was made from (`project.json` in its directory, with its
//! fingerprint in `box.toml`). `apply` compares that with the file as it is now and does the
//! least that brings the box in line (see [`crate::project::Action`]): nothing for env and
//! hooks (read at every session), an in-place install for added packages and appended setup
//! commands, new settings and a restart for namespaces, mounts and home (the box's own layer
//! is kept), and a recreate, asked first, for a new image or edited setup commands.
//!
//! A project's box belongs to one project file: its canonical path is recorded in `box.toml`
//! (`project_file`) when the box is made, and [`claim`] refuses any other file that comes to
//! the same box name (two directories both called `app`, a `name` copied from another
//! project) and any box made with `devbox create`, naming both sides and a free name to write.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::project::lock::Mode as LockMode;
use anyhow::{bail, Context, Result};

use crate::paths::{write_atomic, Dirs};
use crate::progress::Term;
use crate::project::{Action, Change, Home, Project};
use crate::state::{BoxConfig, MountSpec};

/// The project a box was made from (or last brought in line with), in the box's directory.
const SNAPSHOT: &str = "project.json";

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
pub fn create_project_box(dirs: &Dirs, p: &Project, mode: LockMode, quiet: bool) -> Result<()> {
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
    // One provisioning of a box at a time; held until it is done, so a command that finds the
    // box still provisioning knows whether a devbox is at work on it or was killed.
    let _provisioning = provision_lock(dirs, &p.name)?;
    let (image, sha256, pin) = crate::project::lock::image_for(p, mode)?;
    let spec = crate::cmd::create::NewBox {
        image: &image,
        name: &p.name,
        sha256: sha256.as_deref(),
        isolate: p.unshare.clone(),
        project: Some(crate::project::fingerprint(p)),
        project_file: Some(p.file.clone()),
        provisioning: true,
        mounts: mount_specs(p),
        packages: &p.packages,
    };
    let mut cfg = match crate::cmd::create::make(dirs, spec, quiet) {
        Ok(cfg) => cfg,
        Err(e) => {
            return Err(match &pin {
                Some(pin) => crate::project::lock::explain(e, p, pin),
                None => e,
            })
        }
    };
    let result = (|| {
        if p.home != Home::Shared {
            set_home(&mut cfg, p)?;
            cfg.save_in(&dirs.box_dir(&p.name))?;
        }
        provision(dirs, p, &cfg, &say)?;
        save_snapshot(dirs, p)?;
        // Only now is the box made.
        cfg.provisioning = false;
        cfg.save_in(&dirs.box_dir(&p.name))
    })();
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
    if pin.is_none() {
        write_lock(dirs, p, &cfg.image_id, &say)?;
    }
    say(&format!(
        "Created box '{}'. Enter with: devbox enter (in {})",
        p.name,
        p.dir.display()
    ));
    Ok(())
}

/// Writes devbox.lock for the project whose box is made from image `id` (just resolved).
fn write_lock(dirs: &Dirs, p: &Project, id: &str, say: &dyn Fn(&str)) -> Result<()> {
    let Some(rec) = crate::store::load(dirs, id) else {
        return Ok(());
    };
    let pin = crate::project::lock::pin_of(dirs, p, &rec);
    if crate::project::lock::load(p).ok().flatten().as_ref() == Some(&pin) {
        return Ok(());
    }
    crate::project::lock::write(p, &pin)?;
    say(&format!(
        "Pinned {} to {} in {} (keep it in version control with devbox.toml)",
        p.image,
        pin.resolved,
        crate::project::lock::path(p).display()
    ));
    Ok(())
}

fn provision_lock(dirs: &Dirs, name: &str) -> Result<crate::paths::Lock> {
    dirs.ensure_runtime()?;
    crate::paths::Lock::acquire(
        &dirs.lock_file(&format!("provision-{name}")),
        &format!("the provisioning of box '{name}'"),
        3600,
    )
}

/// A project box whose provisioning did not finish (its devbox was killed, or the terminal
/// closed): waits for a devbox still at work on it, else removes the half-made box and makes
/// it again from the file, saying so. Setup commands need not be safe to run twice, so the
/// box is not finished in place. Nothing happens to a box that is made.
pub fn settle(dirs: &Dirs, p: &Project, quiet: bool) -> Result<()> {
    let name = &p.name;
    if !BoxConfig::load(dirs, name)?.provisioning {
        return Ok(());
    }
    let lock = provision_lock(dirs, name)?;
    if !BoxConfig::load(dirs, name)?.provisioning {
        return Ok(()); // the devbox that held the lock finished it
    }
    eprintln!(
        "devbox: box '{name}' was left half-made (its packages and setup did not finish); removing it and making it again"
    );
    remove_box(dirs, name).with_context(|| format!("cannot remove the half-made box '{name}'"))?;
    drop(lock);
    create_project_box(dirs, p, LockMode::new(false, false), quiet)
}

/// `devbox rm --force NAME`, quietly, keeping its exports (the box comes back by that name).
fn remove_box(dirs: &Dirs, name: &str) -> Result<()> {
    crate::cmd::rm::run(
        dirs,
        std::slice::from_ref(&name.to_string()),
        true,
        crate::cmd::rm::Exports::Keep,
        true,
    )
    .map(|_| ())
}

fn mount_specs(p: &Project) -> Vec<MountSpec> {
    p.mounts
        .iter()
        .map(|m| MountSpec {
            host: m.host.clone(),
            target: m.box_path.clone(),
            readonly: m.readonly,
        })
        .collect()
}

/// Points the box at the project's home: a directory of its own (made now, by the user, so it
/// is theirs, and kept across boxes), or the shared home.
fn set_home(cfg: &mut BoxConfig, p: &Project) -> Result<()> {
    match &p.home {
        Home::Dir(home) => {
            std::fs::create_dir_all(home)
                .with_context(|| format!("cannot create the box's home {}", home.display()))?;
            // As the host sees it now that it exists (the box binds this path).
            let home = std::fs::canonicalize(home)
                .with_context(|| format!("cannot resolve the box's home {}", home.display()))?;
            cfg.home = Some(home);
            cfg.project_dir = Some(p.dir.clone());
        }
        Home::Shared => {
            cfg.home = None;
            cfg.project_dir = None;
        }
    }
    Ok(())
}

fn save_snapshot(dirs: &Dirs, p: &Project) -> Result<()> {
    let json = serde_json::to_vec_pretty(p)?;
    write_atomic(&dirs.box_dir(&p.name).join(SNAPSHOT), &json)
}

fn load_snapshot(dirs: &Dirs, name: &str) -> Option<Project> {
    let text = std::fs::read(dirs.box_dir(name).join(SNAPSHOT)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The project file box `cfg` belongs to: the one recorded in `box.toml`, else (a box made
/// before that was recorded) the file of its snapshot, made canonical if it still exists.
/// `None` for a box made with `devbox create`, or one whose file is unknown.
pub fn recorded_file(dirs: &Dirs, cfg: &BoxConfig) -> Option<PathBuf> {
    if let Some(f) = &cfg.project_file {
        return Some(f.clone());
    }
    cfg.project.as_ref()?;
    let old = load_snapshot(dirs, &cfg.name)?;
    Some(std::fs::canonicalize(&old.file).unwrap_or(old.file))
}

/// The devbox.toml box `name` was made from.
pub fn project_file_of(dirs: &Dirs, name: &str) -> Result<PathBuf> {
    let cfg = BoxConfig::load(dirs, name)?;
    if cfg.project.is_none() {
        bail!("box '{name}' was not made from a devbox.toml\n  hint: change its settings with `devbox config {name}`");
    }
    let Some(file) = recorded_file(dirs, &cfg) else {
        bail!("box '{name}' does not record which devbox.toml it was made from (an older devbox made it)\n  hint: run `devbox apply` in the project's directory");
    };
    if !file.is_file() {
        bail!(
            "{}, which box '{name}' was made from, is gone\n  hint: remove the box with `devbox rm {name}`, or restore the file",
            file.display()
        );
    }
    Ok(file)
}

/// Checks that box `p.name`, if it exists, is project `p`'s own: made from this very file
/// (canonical paths compared). Returns whether it exists. Another project's box, a box made
/// with `devbox create`, or a project box that does not say which file it belongs to is an
/// error naming both sides and a free name for `name = ...`, before anything is made or run.
pub fn claim(dirs: &Dirs, p: &Project) -> Result<bool> {
    let name = &p.name;
    if !dirs.box_dir(name).join("box.toml").exists() {
        return Ok(false);
    }
    let cfg = BoxConfig::load(dirs, name)?;
    let owner = recorded_file(dirs, &cfg);
    if owner.as_deref() == Some(p.file.as_path()) {
        return Ok(true);
    }
    let why_name = if p.name_given {
        format!("names box '{name}'")
    } else {
        format!("names no box and so takes its directory's name, '{name}'")
    };
    let fix = format!(
        "give this project a box of its own: write name = \"{}\" in [box] of {}",
        free_name(dirs, name),
        p.file.display()
    );
    match owner {
        Some(other) => {
            let gone = if other.exists() {
                String::new()
            } else {
                format!(" ({} no longer exists: if the project moved here, `devbox rm {name}` removes its old box, layer and all)", other.display())
            };
            bail!(
                "box '{name}' belongs to {}, not to {}, which {why_name}\n  hint: two project files never share a box (applying one would rebuild the other's); {fix}{gone}",
                other.display(),
                p.file.display()
            )
        }
        None if cfg.project.is_none() => bail!(
            "box '{name}' was made with `devbox create`, not made from a devbox.toml, so {}, which {why_name}, cannot use it\n  hint: a project's box is made from its file; {fix}, or remove the other box with `devbox rm {name}`",
            p.file.display()
        ),
        None => bail!(
            "box '{name}' was made from a devbox.toml by an older devbox, which did not record which one, so {}, which {why_name}, cannot use it\n  hint: {fix}, or remove the old box with `devbox rm {name}`",
            p.file.display()
        ),
    }
}

/// `NAME-2`, `NAME-3`...: the first such name no box has (shortened to fit 64 characters).
pub fn free_name(dirs: &Dirs, name: &str) -> String {
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = name.len().min(64 - suffix.len());
            format!("{}{suffix}", &name[..keep])
        })
        .find(|c| !dirs.box_dir(c).exists())
        .unwrap_or_else(|| format!("{name}-2"))
}

/// What changed in project `p` since its box (`cfg`) was made or last brought in line: `None`
/// when the box is up to date or not a project's; else the changes, empty when devbox cannot tell
/// (a box made by a devbox without snapshots).
pub fn pending(dirs: &Dirs, cfg: &BoxConfig, p: &Project) -> Option<Vec<Change>> {
    let recorded = cfg.project.as_deref()?;
    if recorded == crate::project::fingerprint(p) {
        return None;
    }
    Some(
        load_snapshot(dirs, &p.name)
            .map(|old| crate::project::diff(&old, p))
            .unwrap_or_default(),
    )
}

/// The changes a session should point at `apply` for: none when the file is as the box
/// records it, and none when all that changed is read by every session anyway (env, hooks,
/// the prompt) — the box's record is then brought up to date on the spot, without a word.
pub fn pending_for_apply(dirs: &Dirs, cfg: &BoxConfig, p: &Project) -> Result<Option<Vec<Change>>> {
    let Some(changes) = pending(dirs, cfg, p) else {
        return Ok(None);
    };
    let per_session = |c: &Change| {
        matches!(
            c,
            Change::EnvSet(_) | Change::EnvRemoved(_) | Change::EnterHooks { .. }
        )
    };
    if changes.is_empty() || !changes.iter().all(per_session) {
        return Ok(Some(changes));
    }
    // Only the box's record changes, under its lock (a start reads it).
    // The snapshot first, the fingerprint last: cut short in between, the next session finds
    // the fingerprint still different and records again.
    let _lock = crate::runtime::stop::box_lock(dirs, &p.name)?;
    save_snapshot(dirs, p)?;
    let mut cfg = BoxConfig::load(dirs, &p.name)?;
    cfg.project = Some(crate::project::fingerprint(p));
    cfg.save_in(&dirs.box_dir(&p.name))?;
    Ok(None)
}

/// `devbox apply`: makes the project's box if it does not exist, else brings it in line with
/// the project file. `yes` answers the recreate and restart questions.
pub fn apply(dirs: &Dirs, p: &Project, yes: bool, mode: LockMode, quiet: bool) -> Result<()> {
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let name = &p.name;
    if !claim(dirs, p)? {
        return create_project_box(dirs, p, mode, quiet);
    }
    settle(dirs, p, quiet)?;
    let mut cfg = BoxConfig::load(dirs, name)?;
    // The image the lock names (or, with --update, the image resolved anew) is not the box's:
    // the box is made again from it.
    if let Some(id) = locked_image(dirs, p, &cfg, mode, &say)? {
        say(&format!(
            "The image of {} is now {} (box '{name}' has {})",
            p.file.display(),
            crate::store::short(&id),
            crate::store::short(&cfg.image_id)
        ));
        return recreate(dirs, p, yes, mode, quiet);
    }
    // A box made before boxes recorded their file learns it with the next change.
    cfg.project_file = Some(p.file.clone());
    let Some(changes) = pending(dirs, &cfg, p) else {
        // Saved by an earlier apply that could not stop the box: carried out now.
        let waiting = crate::state::restart_pending(dirs, &cfg);
        if !waiting.is_empty() && crate::runtime::status_now(dirs, name)?.in_use() {
            restart_now(dirs, name, &waiting, yes, &say)?;
        }
        say(&format!(
            "Box '{name}' is up to date with {}.",
            p.file.display()
        ));
        return Ok(());
    };
    say(&format!(
        "{} changed since box '{name}' was made:",
        p.file.display()
    ));
    for c in &changes {
        say(&format!("  - {c}"));
    }
    let action = if changes.is_empty() {
        // No snapshot (an older devbox made the box): only a recreate is sure to match.
        say("  (devbox cannot tell what: the box predates recorded projects)");
        Action::Recreate
    } else {
        changes
            .iter()
            .map(Change::action)
            .max()
            .unwrap_or(Action::None)
    };
    if action == Action::Recreate {
        return recreate(dirs, p, yes, mode, quiet);
    }

    let was_running = crate::runtime::status_now(dirs, name)?.in_use();
    if action == Action::Restart {
        // Saved first, so a box that provisioning starts comes up with them.
        cfg.mounts = mount_specs(p);
        cfg.isolate = p.unshare.clone();
        set_home(&mut cfg, p)?;
        cfg.save_in(&dirs.box_dir(name))?;
    }
    for c in &changes {
        match c {
            Change::PackagesAdded(pkgs) => install(dirs, p, &cfg, pkgs, &say)?,
            Change::SetupAppended(cmds) => run_setup(name, cmds, &say)?,
            _ => {}
        }
    }
    cfg.project = Some(crate::project::fingerprint(p));
    cfg.save_in(&dirs.box_dir(name))?;
    save_snapshot(dirs, p)?;
    if action == Action::Restart && was_running {
        let waiting = crate::state::restart_pending(dirs, &cfg);
        restart_now(dirs, name, &waiting, yes, &say)?;
    } else if action == Action::None {
        say("Nothing to do in the box: env and hooks take effect in the next session.");
    }
    say(&format!(
        "Box '{name}' is up to date with {}.",
        p.file.display()
    ));
    Ok(())
}

/// Stops a running box whose saved settings wait for a restart, after asking (or `yes`); it
/// starts with them on the next enter. Without an answer the restart stays pending, and
/// `list`, `inspect`, `run` and the next `apply` say so.
fn restart_now(
    dirs: &Dirs,
    name: &str,
    waiting: &[&str],
    yes: bool,
    say: &dyn Fn(&str),
) -> Result<()> {
    let what = if waiting.is_empty() {
        "the new settings".to_string()
    } else {
        format!("the new {}", waiting.join(", "))
    };
    let question = format!(
        "Box '{name}' is running; {what} apply when it starts again. Stop it now (its processes end)?"
    );
    if ask(&question, yes)? {
        crate::runtime::stop::stop_box(dirs, name)?;
        say(&format!(
            "Stopped box '{name}'; it starts with the new settings on the next enter."
        ));
    } else {
        say(&format!(
            "Restart pending: {what} apply after `devbox restart {name}` (or `devbox apply --yes`)."
        ));
    }
    Ok(())
}

/// Removes the box and makes it again from the project, after saying what is lost and asking
/// (unless `yes`). The new image is fetched before the old box goes, so a bad reference or no
/// network leaves the old box as it was.
fn recreate(dirs: &Dirs, p: &Project, yes: bool, mode: LockMode, quiet: bool) -> Result<()> {
    let name = &p.name;
    eprintln!(
        "Applying this recreates box '{name}': its own layer (packages installed and files changed inside it, outside your home) is discarded. Your home is not touched."
    );
    if !ask(&format!("Recreate box '{name}'?"), yes)? {
        bail!("box '{name}' was left as it was\n  hint: run `devbox apply --yes` to recreate it without asking");
    }
    let (image, sha256, pin) = crate::project::lock::image_for(p, mode)?;
    if let Err(e) = crate::store::import(dirs, &image, sha256.as_deref(), &Term::new(quiet)) {
        return Err(match &pin {
            Some(pin) => crate::project::lock::explain(e, p, pin),
            None => e,
        });
    }
    remove_box(dirs, name)?;
    // Resolved once: the box is made from what was just fetched (an update wrote the lock).
    let mode = if mode == LockMode::Update {
        LockMode::Use
    } else {
        mode
    };
    create_project_box(dirs, p, mode, quiet)
}

/// The image the project's box should have when that is not the box's: the lock's (a lock
/// pulled from version control that pins another image), or with `--update` the image
/// resolved anew (the lock is rewritten). A box without a lock gets one written for its image.
fn locked_image(
    dirs: &Dirs,
    p: &Project,
    cfg: &BoxConfig,
    mode: LockMode,
    say: &dyn Fn(&str),
) -> Result<Option<String>> {
    use crate::project::lock;
    if mode == LockMode::Update {
        let rec = crate::store::import(dirs, &p.image, None, &Term::new(false))?;
        let pin = lock::pin_of(dirs, p, &rec);
        if lock::load(p)?.as_ref() != Some(&pin) {
            lock::write(p, &pin)?;
            say(&format!(
                "Pinned {} to {} in {}",
                p.image,
                pin.resolved,
                lock::path(p).display()
            ));
        } else {
            say(&format!("{} is up to date", lock::path(p).display()));
        }
        return Ok((rec.id != cfg.image_id).then_some(rec.id));
    }
    let pin = lock::load(p)?;
    match pin.filter(|pin| pin.requested == p.image) {
        Some(pin) => Ok((pin.id != cfg.image_id).then_some(pin.id)),
        None if mode == LockMode::Locked => {
            lock::image_for(p, mode)?;
            Ok(None)
        }
        // Missing (a box older than locks): pinned to the box's image, if the file still names
        // it. Stale: the image changed in devbox.toml, which the diff below recreates.
        None => {
            if crate::project::lock::load(p)?.is_none() && !project_image_changed(dirs, cfg, p) {
                write_lock(dirs, p, &cfg.image_id, say)?;
            }
            Ok(None)
        }
    }
}

/// Whether devbox.toml names another image than the box was made from.
fn project_image_changed(dirs: &Dirs, cfg: &BoxConfig, p: &Project) -> bool {
    match load_snapshot(dirs, &cfg.name) {
        Some(old) => old.image != p.image,
        None => true,
    }
}

/// Asks a yes/no question on the terminal; `yes` answers it. Without a terminal to ask on, the
/// answer is no.
fn ask(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    Ok(crate::ui::ask(question)?.unwrap_or_else(|| {
        eprintln!("{question} [y/N] no (not a terminal; pass --yes to answer yes)");
        false
    }))
}

fn provision(dirs: &Dirs, p: &Project, cfg: &BoxConfig, say: &dyn Fn(&str)) -> Result<()> {
    // Those installed when the image was built from a package archive are there already.
    let built_in = crate::store::load(dirs, &cfg.image_id)
        .map(|rec| rec.packages)
        .unwrap_or_default();
    let packages: Vec<String> = p
        .packages
        .iter()
        .filter(|x| !built_in.contains(x))
        .cloned()
        .collect();
    if packages.len() < p.packages.len() {
        say(&format!(
            "{} of the project's packages came with the image",
            p.packages.len() - packages.len()
        ));
    }
    if !packages.is_empty() {
        install(dirs, p, cfg, &packages, say)?;
    }
    run_setup(&p.name, &p.setup, say)
}

/// Installs `packages` in the box with the package manager its image has.
fn install(
    dirs: &Dirs,
    p: &Project,
    cfg: &BoxConfig,
    packages: &[String],
    say: &dyn Fn(&str),
) -> Result<()> {
    let rootfs = dirs.image_dir(&cfg.image_id).join("rootfs");
    let Some(cmd) = install_command(&rootfs, packages) else {
        bail!(
            "{}: the image has none of the package managers devbox knows (apt, dnf, apk, pacman, zypper, xbps), so `packages` cannot be installed\n  hint: install them with `setup` commands instead",
            p.file.display()
        );
    };
    say(&format!(
        "Installing {} package{}",
        packages.len(),
        if packages.len() == 1 { "" } else { "s" }
    ));
    run_as_root(&p.name, &cmd).context("installing the packages failed")
}

fn run_setup(name: &str, cmds: &[String], say: &dyn Fn(&str)) -> Result<()> {
    for (i, cmd) in cmds.iter().enumerate() {
        say(&format!("Setup {}/{}: {cmd}", i + 1, cmds.len()));
        run_as_root(name, cmd).with_context(|| format!("setup command {} failed: {cmd}", i + 1))?;
    }
    Ok(())
}

/// `devbox run NAME --root -- sh -c CMD`, in a child process (the join execs).
fn run_as_root(name: &str, cmd: &str) -> Result<()> {
    use nix::sys::signal::Signal;
    use std::os::unix::process::ExitStatusExt;
    // Ctrl-C reaches the command and devbox alike: devbox waits for the command to end (as
    // system(3) does) and then stops the provisioning, which removes the half-made box.
    // Ignored only once the child exists: an ignored signal stays ignored across exec.
    let mut child = crate::runtime::helper("run")
        .args([name, "--root", "--", "/bin/sh", "-c", cmd])
        .stdin(Stdio::null())
        .spawn()?;
    crate::sys::ignore_signal(Signal::SIGINT);
    crate::sys::ignore_signal(Signal::SIGQUIT);
    let status = child.wait();
    crate::sys::default_signal(Signal::SIGINT);
    crate::sys::default_signal(Signal::SIGQUIT);
    let status = status?;
    if status.signal() == Some(Signal::SIGINT as i32) || status.code() == Some(130) {
        bail!("interrupted (Ctrl-C)");
    }
    if !status.success() {
        bail!(
            "exit status {}",
            status.code().map_or("killed".into(), |c| c.to_string())
        );
    }
    Ok(())
}
