//! `devbox image list|rm|prune`: the store of unpacked images.

use std::io::Write;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::paths::Dirs;
use crate::state::{self, BoxConfig};
use crate::store;

#[derive(Serialize)]
struct Row {
    id: String,
    source: String,
    /// The OCI manifest digest it was pulled by.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    unpacked: String,
    archive_bytes: u64,
    boxes: Vec<String>,
}

fn rows(dirs: &Dirs) -> Result<Vec<Row>> {
    let boxes: Vec<BoxConfig> = state::list_names(dirs)?
        .iter()
        .filter_map(|n| BoxConfig::load(dirs, n).ok())
        .collect();
    let mut rows: Vec<Row> = store::list(dirs)?
        .into_iter()
        .map(|rec| Row {
            boxes: boxes
                .iter()
                .filter(|b| b.image_id == rec.id)
                .map(|b| b.name.clone())
                .collect(),
            id: rec.id,
            source: rec.source,
            digest: rec.digest,
            unpacked: rec.unpacked,
            archive_bytes: rec.archive_bytes,
        })
        .collect();
    rows.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(rows)
}

pub fn list(dirs: &Dirs, json: bool) -> Result<i32> {
    let rows = rows(dirs)?;
    let mut out = std::io::stdout().lock();
    if json {
        return super::write_json(&mut out, &rows);
    }
    if rows.is_empty() {
        writeln!(out, "No images. `devbox create IMAGE` unpacks one.")?;
        return leftovers_footer(dirs, &mut out);
    }
    writeln!(
        out,
        "{:<12}  {:>10}  {:<20}  {:<16}  SOURCE",
        "ID", "ARCHIVE", "UNPACKED", "BOXES"
    )?;
    for r in rows {
        let boxes = if r.boxes.is_empty() {
            "-".to_string()
        } else {
            r.boxes.join(",")
        };
        writeln!(
            out,
            "{:<12}  {:>10}  {:<20}  {:<16}  {}",
            store::short(&r.id),
            crate::progress::human_bytes(r.archive_bytes),
            r.unpacked,
            boxes,
            r.source
        )?;
    }
    leftovers_footer(dirs, &mut out)
}

/// The last line of `image list` when interrupted commands left something behind: how much
/// `image prune` would reclaim. Best effort: a failure to look is a `--verbose` line.
fn leftovers_footer(dirs: &Dirs, out: &mut impl Write) -> Result<i32> {
    match store::leftovers(dirs) {
        Ok(r) if r.count > 0 => writeln!(out, "\n{}", r.reclaimable())?,
        Ok(_) => {}
        Err(e) => crate::ui::detail(format_args!(
            "cannot look for leftovers of interrupted commands: {e:#}"
        )),
    }
    Ok(0)
}

/// Finds the image a user names: an id prefix (at least 4 hex digits) or its exact source.
fn find(rows: &[Row], what: &str) -> Result<usize> {
    let by_source: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].source == what)
        .collect();
    if by_source.len() == 1 {
        return Ok(by_source[0]);
    }
    let by_id: Vec<usize> = (0..rows.len())
        .filter(|&i| what.len() >= 4 && rows[i].id.starts_with(what.trim_start_matches("sha256:")))
        .collect();
    match by_id.len() {
        1 => Ok(by_id[0]),
        0 => bail!(
            "no image {what:?} in the store\n  hint: `devbox image list` shows the ids and sources"
        ),
        _ => bail!("{what:?} matches several images; give more digits of the id"),
    }
}

pub fn rm(dirs: &Dirs, what: &[String], force: bool, quiet: bool) -> Result<i32> {
    store::sweep_in_passing(dirs);
    let rows = rows(dirs)?;
    let mut picked = Vec::new();
    for w in what {
        let i = find(&rows, w)?;
        let r = &rows[i];
        if !r.boxes.is_empty() && !force {
            bail!(
                "image {} is used by {}: {}\n  hint: remove those boxes first, or use `devbox image rm --force {w}` to remove them with it",
                store::short(&r.id),
                if r.boxes.len() == 1 { "a box" } else { "boxes" },
                r.boxes.join(", ")
            );
        }
        picked.push(i);
    }
    for i in picked {
        let r = &rows[i];
        if !r.boxes.is_empty() {
            if !quiet {
                eprintln!(
                    "Removing boxes made from image {}: {}",
                    store::short(&r.id),
                    r.boxes.join(", ")
                );
            }
            super::rm::run(dirs, &r.boxes, true, super::rm::Exports::Ask, quiet)?;
        }
        store::remove_image(dirs, &r.id)?;
        if !quiet {
            println!("Removed image {} ({})", store::short(&r.id), r.source);
        }
    }
    Ok(0)
}

pub fn prune(dirs: &Dirs, quiet: bool) -> Result<i32> {
    // First what interrupted commands left behind (their temp dirs in the store and the cache),
    // measured before it goes.
    let swept = store::sweep_leftovers(dirs, true)?;
    if swept.count > 0 && !quiet {
        println!("Removed {}", swept.describe());
    }
    let mut removed = 0;
    for r in rows(dirs)?.into_iter().filter(|r| r.boxes.is_empty()) {
        store::remove_image(dirs, &r.id)?;
        removed += 1;
        if !quiet {
            println!(
                "Removed unused image {} ({})",
                store::short(&r.id),
                r.source
            );
        }
    }
    let freed = store::clear_cache(dirs)?;
    if !quiet {
        println!(
            "Pruned {removed} image{} and {} of cached downloads and layers",
            if removed == 1 { "" } else { "s" },
            crate::progress::human_bytes(freed)
        );
    }
    match swept.failure() {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

pub fn pull(dirs: &Dirs, image: &str, sha256: Option<&str>, quiet: bool) -> Result<i32> {
    let rec = store::import(dirs, image, sha256, &crate::progress::Term::new(quiet))?;
    if !quiet {
        println!(
            "Image {} ({}) is in the store",
            store::short(&rec.id),
            rec.source
        );
    }
    Ok(0)
}

/// The store image a user names: a `commit --tag` name, an id prefix or a source.
fn named(dirs: &Dirs, what: &str) -> Result<crate::state::ImageRecord> {
    if let Some(rec) = crate::store::layout::tagged(dirs, what) {
        return Ok(rec);
    }
    let rows = rows(dirs)?;
    let i = find(&rows, what)?;
    store::load(dirs, &rows[i].id)
        .ok_or_else(|| anyhow::anyhow!("image {what:?} was removed meanwhile"))
}

pub fn push(dirs: &Dirs, image: &str, reference: &str, quiet: bool) -> Result<i32> {
    let target = crate::oci::Reference::parse(reference)?;
    let rec = named(dirs, image)?;
    let term = crate::progress::Term::new(quiet);
    let layout = crate::store::layout::ensure_layout(dirs, &rec, &term)?;
    let blobs = layout
        .blobs()
        .into_iter()
        .map(|b| crate::oci::PushBlob {
            path: layout.blob_path(&b.digest),
            digest: b.digest,
            size: b.size,
        })
        .collect();
    let mount_from = rec
        .base_source
        .as_deref()
        .or(Some(rec.source.as_str()))
        .filter(|s| matches!(store::ImageRef::classify(s), store::ImageRef::Oci(_)))
        .and_then(|s| crate::oci::Reference::parse(s).ok());
    let image = crate::oci::PushImage {
        blobs,
        manifest: layout.manifest.clone(),
        manifest_type: layout.manifest_type.clone(),
        manifest_digest: layout.manifest_digest.clone(),
        mount_from,
    };
    use crate::progress::Reporter;
    term.step(&format!(
        "Pushing image {} to {target}",
        store::short(&rec.id)
    ));
    let stats = crate::oci::push(&target, &image, &dirs.cache, &store::oci_options()?, &term)
        .map_err(anyhow::Error::from)
        .map_err(|e| {
            e.context(format!(
                "cannot push image {} to {target}",
                store::short(&rec.id)
            ))
        })?;
    if !quiet {
        println!(
            "Pushed image {} to {target}: manifest {} ({} blob{} uploaded ({}){}{}{})",
            store::short(&rec.id),
            layout.manifest_digest,
            stats.uploaded,
            if stats.uploaded == 1 { "" } else { "s" },
            crate::progress::human_bytes(stats.bytes),
            if stats.resumed > 0 {
                format!(", {} resumed", stats.resumed)
            } else {
                String::new()
            },
            if stats.mounted > 0 {
                format!(", {} mounted", stats.mounted)
            } else {
                String::new()
            },
            if stats.present > 0 {
                format!(", {} already there", stats.present)
            } else {
                String::new()
            },
        );
    }
    Ok(0)
}

pub fn save(dirs: &Dirs, image: &str, file: &std::path::Path, quiet: bool) -> Result<i32> {
    let rec = named(dirs, image)?;
    let term = crate::progress::Term::new(quiet);
    crate::store::layout::save(dirs, &rec, file, &term)?;
    if !quiet {
        println!(
            "Saved image {} ({}) to {}",
            store::short(&rec.id),
            rec.source,
            file.display()
        );
    }
    Ok(0)
}

pub fn load(dirs: &Dirs, file: &std::path::Path, quiet: bool) -> Result<i32> {
    if !file.is_file() {
        bail!("{} is not a file\n  hint: `devbox image load` reads an archive written by `devbox image save`, `podman save` or `docker save`", file.display());
    }
    let abs = std::path::absolute(file)?;
    let rec = store::import(
        dirs,
        &abs.display().to_string(),
        None,
        &crate::progress::Term::new(quiet),
    )?;
    if !quiet {
        println!(
            "Loaded image {} from {}{}",
            store::short(&rec.id),
            file.display(),
            rec.digest
                .as_deref()
                .map(|d| format!(" (manifest {d})"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}
