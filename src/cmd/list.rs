use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::paths::Dirs;
use crate::progress::human_bytes;
use crate::runtime::holder::Holder;
use crate::state::{self, BoxConfig, BoxPaths};

#[derive(Serialize)]
struct Row {
    name: String,
    image: String,
    image_id: String,
    status: &'static str,
    created: String,
    disk_bytes: u64,
    /// The devbox.toml a project's box belongs to, and its directory; null for a box made
    /// with `devbox create`.
    project_file: Option<PathBuf>,
    project_dir: Option<PathBuf>,
    /// Saved settings a running box waits to be restarted for ("mounts", "namespaces", "home").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    restart_pending: Vec<&'static str>,
}

impl Row {
    /// The PROJECT column: the project's directory, or the file when it is not a devbox.toml.
    fn project_shown(&self) -> String {
        match (&self.project_file, &self.project_dir) {
            (Some(f), _) if f.file_name() != Some(crate::project::FILE_NAME.as_ref()) => {
                f.display().to_string()
            }
            (_, Some(d)) => d.display().to_string(),
            _ => "-".to_string(),
        }
    }
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
        let restart_pending = if status == crate::runtime::Status::Running {
            state::restart_pending(dirs, &cfg)
        } else {
            Vec::new()
        };
        let project_file = crate::provision::recorded_file(dirs, &cfg);
        let project_dir = project_file
            .as_ref()
            .and_then(|f| f.parent().map(PathBuf::from));
        rows.push(Row {
            name,
            image: cfg.image,
            image_id: cfg.image_id,
            status: status.word(),
            created: cfg.created,
            disk_bytes: 0,
            project_file,
            project_dir,
            restart_pending,
        });
    }
    // The boxes' own layers hold files of subordinate ids: measure them as namespace root.
    if !rows.is_empty() && crate::runtime::holder::as_namespace_root(dirs).is_ok() {
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
    let width = rows
        .iter()
        .map(|r| r.project_shown().chars().count())
        .max()
        .unwrap_or(0)
        .max("PROJECT".len());
    writeln!(
        out,
        "{:<20} {:<8} {:>10}  {:<20}  {:<width$}  IMAGE",
        "NAME", "STATUS", "DISK", "CREATED", "PROJECT"
    )?;
    let mut notes = Vec::new();
    for r in rows {
        let status = if r.restart_pending.is_empty() {
            r.status.to_string()
        } else {
            notes.push(format!(
                "* {}: restart pending ({}): `devbox restart {}`",
                r.name,
                r.restart_pending.join(", "),
                r.name
            ));
            format!("{}*", r.status)
        };
        writeln!(
            out,
            "{:<20} {:<8} {:>10}  {:<20}  {:<width$}  {}",
            r.name,
            status,
            human_bytes(r.disk_bytes),
            r.created,
            r.project_shown(),
            r.image
        )?;
    }
    for n in notes {
        writeln!(out, "{n}")?;
    }
    Ok(0)
}
