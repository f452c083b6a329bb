use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::paths::Dirs;
use crate::progress::human_bytes;
use crate::runtime::holder::Holder;
use crate::runtime::userns;
use crate::state::{self, BoxConfig, BoxPaths};

#[derive(Serialize)]
struct Row {
    name: String,
    image: String,
    image_id: String,
    status: &'static str,
    created: String,
    disk_bytes: u64,
}

pub fn run(dirs: &Dirs, json: bool) -> Result<i32> {
    let holder = Holder::current(dirs)?;
    let scan = crate::runtime::inuse::Scan::take();
    let mut rows = Vec::new();
    for name in state::list_names(dirs)? {
        let Ok(cfg) = BoxConfig::load(dirs, &name) else {
            continue;
        };
        let status = crate::runtime::status(dirs, holder.as_ref(), &scan, &name);
        rows.push(Row {
            name,
            image: cfg.image,
            image_id: cfg.image_id,
            status: status.word(),
            created: cfg.created,
            disk_bytes: 0,
        });
    }
    // The boxes' own layers hold files of subordinate ids: measure them as namespace root.
    if !rows.is_empty() && userns::as_namespace_root(dirs).is_ok() {
        for r in &mut rows {
            r.disk_bytes = crate::store::disk_usage(&BoxPaths::new(dirs, &r.name).upper);
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        return super::write_json(&mut out, &rows);
    }
    if rows.is_empty() {
        writeln!(out, "No boxes. Create one with: devbox create IMAGE")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<20} {:<8} {:>10}  {:<20}  IMAGE",
        "NAME", "STATUS", "DISK", "CREATED"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<20} {:<8} {:>10}  {:<20}  {}",
            r.name,
            r.status,
            human_bytes(r.disk_bytes),
            r.created,
            r.image
        )?;
    }
    Ok(0)
}
