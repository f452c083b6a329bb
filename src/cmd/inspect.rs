//! `devbox inspect NAME`: everything devbox knows about a box, for people and scripts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::paths::Dirs;
use crate::runtime::holder::Holder;
use crate::state::{self, BoxConfig, BoxPaths};

#[derive(Serialize)]
struct Inspect {
    name: String,
    status: &'static str,
    image: String,
    image_id: String,
    created: String,
    isolate: Vec<state::Isolate>,
    backend: Option<state::Backend>,
    layers: Layers,
    holder_pid: Option<i32>,
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
    let holder = Holder::current(dirs)?;
    let running = holder.is_some_and(|h| {
        crate::runtime::is_running(dirs, &crate::runtime::box_ns_path(dirs, &h, name), &cfg)
    });
    let p = BoxPaths::new(dirs, name);
    let info = Inspect {
        name: cfg.name.clone(),
        status: if running { "running" } else { "stopped" },
        image: cfg.image.clone(),
        image_id: cfg.image_id.clone(),
        created: cfg.created.clone(),
        isolate: cfg.isolate.clone(),
        backend: cfg.backend,
        layers: Layers {
            lower: dirs.image_dir(&cfg.image_id).join("rootfs"),
            upper: p.upper,
            work: p.work,
            mountpoint: p.merged,
        },
        holder_pid: holder.filter(|_| running).map(|h| h.pid),
    };
    let mut out = std::io::stdout().lock();
    if json {
        return super::write_json(&mut out, &info);
    }
    writeln!(out, "name:      {}", info.name)?;
    writeln!(out, "status:    {}", info.status)?;
    writeln!(out, "image:     {}", info.image)?;
    writeln!(out, "image id:  sha256:{}", info.image_id)?;
    writeln!(out, "created:   {}", info.created)?;
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
    writeln!(out, "lower:     {}", info.layers.lower.display())?;
    writeln!(out, "upper:     {}", info.layers.upper.display())?;
    Ok(0)
}
