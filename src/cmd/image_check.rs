//! `devbox image check [NAME[:RELEASE]...] [--arch ARCH|all]`: asks the live servers whether
//! every source of the catalog's releases still answers, without downloading an image (see
//! `catalog::check`). One row per release, architecture and source, printed as each is
//! checked.
//!
//! Exit policy: a release none of whose sources works (on an architecture checked) is an
//! error (exit 1); a source that fails while another of its release works is a warning, since
//! `create` falls through to the next source (but may then give a different image: not the
//! toolbox-ready one, say).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::catalog::check::{self, Outcome};
use crate::catalog::{host_arch, Catalog, CatalogError, Source, ARCHES};

#[derive(Debug, Serialize)]
struct Row {
    image: String,
    release: String,
    /// devbox's name of the architecture whose sources these are.
    arch: String,
    /// The source kind (`oci`, `simplestreams`, ...); `-` when the release has no source for
    /// this machine's architecture.
    kind: String,
    source: String,
    result: String,
    detail: String,
}

/// One line of work: a source of a release, or a release without a source for this machine.
struct Planned {
    image: String,
    release: String,
    arch: &'static str,
    source: Result<Source, String>,
}

pub fn run(refs: &[String], arch: Option<&str>, json: bool) -> Result<i32> {
    let arches: Vec<&'static str> = match arch {
        None => vec![host_arch()],
        Some("all") => ARCHES.to_vec(),
        Some(a) => match ARCHES.iter().find(|k| **k == a) {
            Some(k) => vec![*k],
            None => bail!(
                "unknown architecture {a:?}\n  hint: use one of {}, or all",
                ARCHES.join(", ")
            ),
        },
    };
    let catalog = Catalog::load()?;
    let mut plan = Vec::new();
    for name in catalog.releases_named(refs)? {
        let (image, release) = name.split_once(':').expect("DISTRO:RELEASE");
        for &a in &arches {
            let planned = |source| Planned {
                image: image.to_string(),
                release: release.to_string(),
                arch: a,
                source,
            };
            match catalog.lookup_for_arch(&name, a) {
                Ok(choice) => plan.extend(choice.sources.into_iter().map(|s| planned(Ok(s)))),
                // With `all`, only the architectures some source serves.
                Err(CatalogError::NoImageForArch { .. }) if arches.len() > 1 => {}
                Err(e @ CatalogError::NoImageForArch { .. }) => {
                    plan.push(planned(Err(crate::catalog::one_line(&e.to_string()))))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    let opts = crate::oci::Options {
        // A check reports what answers now; it does not wait long for what does not.
        retries: 1,
        timeout: std::time::Duration::from_secs(30),
        ..crate::store::oci_options()?
    };
    // This machine's platform is chosen as a pull chooses it (x86-64 levels included).
    let opts_for = |a: &str| crate::oci::Options {
        platform: (a != host_arch()).then(|| crate::oci::platform_of_arch(a)),
        ..opts.clone()
    };
    // Several releases share an index file (the LXC server's, a checksum list): read once.
    let fetched: RefCell<HashMap<String, Vec<u8>>> = RefCell::new(HashMap::new());
    let get = |url: &str| -> Result<Vec<u8>> {
        if let Some(b) = fetched.borrow().get(url) {
            return Ok(b.clone());
        }
        let b = crate::catalog::get_bytes(url)?;
        fetched.borrow_mut().insert(url.to_string(), b.clone());
        Ok(b)
    };

    let mut out = std::io::stdout().lock();
    let width = |f: &dyn Fn(&Planned) -> usize, head: &str| {
        plan.iter().map(f).max().unwrap_or(0).max(head.len())
    };
    let w_image = width(&|p| p.image.len(), "IMAGE");
    let w_release = width(&|p| p.release.len(), "RELEASE");
    let w_arch = width(&|p| p.arch.len(), "ARCH");
    let w_source = width(&|p| source_cell(&p.source).chars().count(), "SOURCE");
    let line = |r: [&str; 6]| {
        let l = format!(
            "{:<w_image$}  {:<w_release$}  {:<w_arch$}  {:<w_source$}  {:<7}  {}",
            r[0], r[1], r[2], r[3], r[4], r[5]
        );
        format!("{}\n", l.trim_end())
    };
    if !json {
        let head = ["IMAGE", "RELEASE", "ARCH", "SOURCE", "RESULT", "DETAIL"];
        out.write_all(line(head).as_bytes())?;
        out.flush()?;
    }
    let mut rows = Vec::new();
    for p in &plan {
        let (result, detail) = match &p.source {
            Ok(s) => {
                let f = check::check(s, &opts_for(p.arch), &get);
                (f.outcome.as_str(), f.detail)
            }
            Err(why) => ("-", why.clone()),
        };
        let row = Row {
            image: p.image.clone(),
            release: p.release.clone(),
            arch: p.arch.to_string(),
            kind: p.source.as_ref().map_or("-", |s| s.kind_name()).to_string(),
            source: p.source.as_ref().map_or("-".into(), |s| s.reference()),
            result: result.to_string(),
            detail,
        };
        if !json {
            let cells = [
                row.image.as_str(),
                row.release.as_str(),
                row.arch.as_str(),
                &source_cell(&p.source),
                row.result.as_str(),
                row.detail.as_str(),
            ];
            out.write_all(line(cells).as_bytes())?;
            out.flush()?;
        }
        rows.push(row);
    }
    if json {
        super::write_json(&mut out, &rows)?;
    }
    drop(out);
    verdict(&rows)
}

/// `oci quay.io/...`: the kind and what it names.
fn source_cell(s: &Result<Source, String>) -> String {
    match s {
        Ok(s) => format!("{} {}", s.kind_name(), s.reference()),
        Err(_) => "-".to_string(),
    }
}

/// The counts and warnings on stderr; an error naming the releases that have no working
/// source.
fn verdict(rows: &[Row]) -> Result<i32> {
    let checked: Vec<&Row> = rows.iter().filter(|r| r.kind != "-").collect();
    let count = |o: Outcome| checked.iter().filter(|r| r.result == o.as_str()).count();
    let mut releases: Vec<(String, bool, usize)> = Vec::new();
    for r in &checked {
        let name = format!("{}:{} ({})", r.image, r.release, r.arch);
        let ok = r.result == Outcome::Ok.as_str();
        match releases.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, any_ok, failed)) => {
                *any_ok |= ok;
                *failed += usize::from(!ok);
            }
            None => releases.push((name, ok, usize::from(!ok))),
        }
    }
    let arches = checked
        .iter()
        .map(|r| &r.arch)
        .collect::<BTreeSet<_>>()
        .len();
    crate::ui::note(format_args!(
        "Checked {} source{} of {} release{}{}: {} ok, {} missing, {} denied, {} error",
        checked.len(),
        if checked.len() == 1 { "" } else { "s" },
        releases.len(),
        if releases.len() == 1 { "" } else { "s" },
        if arches > 1 { " and architectures" } else { "" },
        count(Outcome::Ok),
        count(Outcome::Missing),
        count(Outcome::Denied),
        count(Outcome::Error),
    ));
    for (name, _, failed) in releases.iter().filter(|(_, ok, f)| *ok && *f > 0) {
        crate::ui::note(format_args!(
            "warning: {name}: {failed} source{} failed; another source serves it",
            if *failed == 1 { "" } else { "s" }
        ));
    }
    let broken: Vec<&str> = releases
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(n, _, _)| n.as_str())
        .collect();
    if !broken.is_empty() {
        bail!(
            "{} {} no working source: {}\n  hint: fix or remove those sources in images/*.toml (the DETAIL column says why each failed)",
            broken.len(),
            if broken.len() == 1 { "release has" } else { "releases have" },
            broken.join(", ")
        );
    }
    Ok(0)
}
