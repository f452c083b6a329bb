//! `devbox inspect NAME`: everything devbox knows about a box, for people and scripts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::paths::Dirs;
use crate::state::{self, BoxConfig, BoxPaths};

#[derive(Serialize)]
struct Inspect {
    name: String,
    status: &'static str,
    image: String,
    image_id: String,
    created: String,
    /// The OCI manifest digest the image was pulled by, when it came from a registry.
    image_digest: Option<String>,
    isolate: Vec<state::Isolate>,
    backend: Option<state::Backend>,
    mounts: Vec<state::MountSpec>,
    /// Variables set with `devbox config --env`.
    env: std::collections::BTreeMap<String, String>,
    /// The box's own home directory; `null` is your home, shared.
    home: Option<PathBuf>,
    /// The devbox.toml the box was made from.
    project_file: Option<PathBuf>,
    layers: Layers,
    holder_pid: Option<i32>,
    /// Saved settings the running box waits to be restarted for.
    restart_pending: Vec<&'static str>,
}

#[derive(Serialize)]
struct Layers {
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    mountpoint: PathBuf,
}

pub fn run(dirs: &Dirs, name: &str, json: bool) -> Result<i32> {
    state::validate_name(name)?;
    let cfg = BoxConfig::load(dirs, name)?;
    let status = crate::runtime::status_now(dirs, name)?;
    let p = BoxPaths::new(dirs, name);
    let info = Inspect {
        name: cfg.name.clone(),
        status: status.word(),
        image: cfg.image.clone(),
        image_id: cfg.image_id.clone(),
        created: cfg.created.clone(),
        image_digest: crate::store::load(dirs, &cfg.image_id).and_then(|r| r.digest),
        isolate: cfg.isolate.clone(),
        backend: cfg.backend,
        mounts: cfg.mounts.clone(),
        env: cfg.vars.clone(),
        home: cfg.home.clone(),
        project_file: cfg
            .project
            .is_some()
            .then(|| crate::provision::project_file_of(dirs, name).ok())
            .flatten(),
        layers: Layers {
            lower: dirs.image_dir(&cfg.image_id).join("rootfs"),
            upper: p.upper,
            work: p.work,
            mountpoint: p.merged,
        },
        restart_pending: if status == crate::runtime::Status::Running {
            state::restart_pending(dirs, &cfg)
        } else {
            Vec::new()
        },
        holder_pid: (status == crate::runtime::Status::Running)
            .then(|| crate::runtime::holder::Holder::current(dirs).ok().flatten())
            .flatten()
            .map(|h| h.pid),
    };
    let mut out = std::io::stdout().lock();
    if json {
        return super::write_json(&mut out, &info);
    }
    writeln!(out, "name:      {}", info.name)?;
    if info.restart_pending.is_empty() {
        writeln!(out, "status:    {}", info.status)?;
    } else {
        writeln!(
            out,
            "status:    {}, restart pending ({}): `devbox restart {}`",
            info.status,
            info.restart_pending.join(", "),
            info.name
        )?;
    }
    writeln!(out, "image:     {}", info.image)?;
    writeln!(out, "image id:  sha256:{}", info.image_id)?;
    if let Some(d) = &info.image_digest {
        writeln!(out, "digest:    {d}")?;
    }
    writeln!(out, "created:   {}", info.created)?;
    if let Some(f) = &info.project_file {
        writeln!(out, "project:   {}", f.display())?;
    }
    let iso: Vec<String> = info
        .isolate
        .iter()
        .map(|i| format!("{i:?}").to_lowercase())
        .collect();
    writeln!(
        out,
        "isolated:  {}",
        if iso.is_empty() {
            "none (shares the host's net, pid, ipc)".into()
        } else {
            iso.join(", ")
        }
    )?;
    writeln!(
        out,
        "overlay:   {}",
        match info.backend {
            Some(state::Backend::Kernel) => "kernel overlayfs",
            Some(state::Backend::FuseOverlayfs) => "fuse-overlayfs",
            None => "not started yet",
        }
    )?;
    match &info.home {
        Some(h) => writeln!(out, "home:      {} (the box's own)", h.display())?,
        None => writeln!(out, "home:      yours, shared")?,
    }
    for m in &info.mounts {
        writeln!(
            out,
            "mount:     {} -> {}{}",
            m.host.display(),
            m.target.display(),
            if m.readonly { " (read-only)" } else { "" }
        )?;
    }
    for (k, v) in &info.env {
        writeln!(out, "env:       {k}={v}")?;
    }
    writeln!(out, "lower:     {}", info.layers.lower.display())?;
    writeln!(out, "upper:     {}", info.layers.upper.display())?;
    Ok(0)
}
