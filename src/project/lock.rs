//! `devbox.lock`: the image a project's box is made from, pinned, next to its `devbox.toml`.
//!
//! `devbox.toml` names an image as people write it (`debian:13`, `host/app:latest`, a URL);
//! what that resolves to changes when a tag moves or a catalog entry is updated. The lock
//! records what it resolved to when the project's box was first made: an OCI image by its
//! manifest digest (`host/app@sha256:...`), an archive by its URL and sha256, a catalog name by
//! the source it chose and that source's identity. Every other machine (or user) making the box
//! from the two files uses the lock and gets the same bytes. `devbox apply --update` resolves
//! anew and rewrites it; with `--locked`, or `CI=true` in the environment, a missing or stale
//! lock (one whose `requested` is not the file's `image`) is an error instead of a resolution.
//! The lock belongs in version control with `devbox.toml`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::Project;
use crate::paths::Dirs;
use crate::state::ImageRecord;
use crate::store::ImageRef;

pub const FILE_NAME: &str = "devbox.lock";

/// How a command treats the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Use it when it matches devbox.toml; write it when missing or stale.
    Use,
    /// Resolve anew and rewrite it (`apply --update`).
    Update,
    /// Use it; a missing or stale lock is an error (`--locked`, `CI=true`).
    Locked,
}

impl Mode {
    /// From the flags of `apply` and the environment: `CI` set to true (or 1, yes) means
    /// `--locked` unless `--update` was asked for.
    pub fn new(update: bool, locked: bool) -> Mode {
        let ci = std::env::var("CI")
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
        if update {
            Mode::Update
        } else if locked || ci {
            Mode::Locked
        } else {
            Mode::Use
        }
    }
}

/// The file's `[image]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// `image` of devbox.toml when the lock was written.
    pub requested: String,
    /// oci, url, file, catalog or store.
    pub kind: String,
    /// What is fetched: `HOST/PATH@sha256:DIGEST`, a URL, a path, or a store image id.
    pub resolved: String,
    /// The archive's sha256 (url, file, a catalog name resolved to an archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For a catalog name: the source it resolved through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_source: Option<String>,
    /// The image's id in devbox's store (the OCI config digest, or the archive's sha256).
    pub id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    image: Pin,
}

pub fn path(p: &Project) -> PathBuf {
    p.dir.join(FILE_NAME)
}

pub fn load(p: &Project) -> Result<Option<Pin>> {
    let file = path(p);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let lock: LockFile = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a devbox lock file\n  hint: remove it and run `devbox apply --update` to write it anew",
            file.display()
        )
    })?;
    if lock.version != 1 {
        bail!(
            "{} has version {}, which this devbox does not read\n  hint: update devbox",
            file.display(),
            lock.version
        );
    }
    Ok(Some(lock.image))
}

/// What the project's box is made from: (IMAGE, sha256) for `store::import`, and the pin it
/// came from when the lock was used.
pub fn image_for(p: &Project, mode: Mode) -> Result<(String, Option<String>, Option<Pin>)> {
    let pin = load(p)?;
    let fresh = pin.as_ref().filter(|pin| pin.requested == p.image);
    match (mode, fresh) {
        (Mode::Update, _) => Ok((p.image.clone(), None, None)),
        (_, Some(pin)) => {
            crate::ui::detail(format_args!(
                "{} pins {} to {}",
                path(p).display(),
                p.image,
                pin.resolved
            ));
            Ok((pin.resolved.clone(), pin.sha256.clone(), Some(pin.clone())))
        }
        (Mode::Locked, None) => {
            let why = match &pin {
                None => format!("there is no {FILE_NAME} next to {}", p.file.display()),
                Some(pin) => format!(
                    "{} pins image {:?}, and devbox.toml now says {:?}",
                    path(p).display(),
                    pin.requested,
                    p.image
                ),
            };
            bail!("{why}; with --locked (or CI=true) devbox does not resolve the image anew\n  hint: run `devbox apply --update` where the image may be resolved, and commit {FILE_NAME} with devbox.toml")
        }
        (Mode::Use, None) => Ok((p.image.clone(), None, None)),
    }
}

/// The pin for image `rec`, which `p.image` resolved to.
pub fn pin_of(dirs: &Dirs, p: &Project, rec: &ImageRecord) -> Pin {
    let oci_pin = |source: &str| -> Option<String> {
        let digest = rec.digest.as_ref()?;
        let mut r = crate::oci::Reference::parse(source)
            .ok()?
            .with_digest(digest);
        // The digest alone says which image; a tag beside it would only mislead a reader.
        r.tag = None;
        Some(r.to_string())
    };
    let (kind, resolved, sha256, catalog_source) =
        if crate::store::layout::tagged(dirs, &p.image).is_some() {
            ("store", rec.id.clone(), None, None)
        } else {
            match ImageRef::classify(&p.image) {
                ImageRef::Oci(r) => match oci_pin(&r) {
                    Some(pinned) => ("oci", pinned, None, None),
                    None => ("store", rec.id.clone(), None, None),
                },
                ImageRef::Url(u) => ("url", u, Some(rec.id.clone()), None),
                ImageRef::File(f) => ("file", f.display().to_string(), Some(rec.id.clone()), None),
                ImageRef::Catalog(_) => match oci_pin(&rec.source) {
                    Some(pinned) => ("catalog", pinned, None, Some(rec.source.clone())),
                    None if crate::fetch::is_url(&rec.source) => (
                        "catalog",
                        rec.source.clone(),
                        Some(rec.id.clone()),
                        Some(rec.source.clone()),
                    ),
                    None => ("store", rec.id.clone(), None, None),
                },
            }
        };
    Pin {
        requested: p.image.clone(),
        kind: kind.into(),
        resolved,
        sha256,
        catalog_source,
        id: rec.id.clone(),
    }
}

/// Writes the lock (temp file and rename). A project directory the user cannot write is not
/// an error: the box is made, and a line says the lock was not written.
pub fn write(p: &Project, pin: &Pin) -> Result<()> {
    let lock = LockFile {
        version: 1,
        image: pin.clone(),
    };
    let text = format!(
        "# devbox.lock: the image of devbox.toml's box, pinned, so every machine gets the same one.\n# Written by devbox; keep it in version control with devbox.toml. `devbox apply --update`\n# resolves the image anew and rewrites it.\n{}",
        toml::to_string(&lock)?
    );
    let file = path(p);
    if let Err(e) = crate::paths::write_atomic_shared(&file, text.as_bytes()) {
        eprintln!("devbox: {FILE_NAME} was not written: {e:#}");
    }
    Ok(())
}

/// The error for a pinned image the registry no longer has: the pin, and the fix.
pub fn explain(e: anyhow::Error, p: &Project, pin: &Pin) -> anyhow::Error {
    e.context(format!(
        "{} pins {:?} to {}, which cannot be fetched\n  hint: if the image is gone from its registry, run `devbox apply --update` to resolve {:?} anew and rewrite the lock (then commit it); or push the pinned image back",
        path(p).display(),
        pin.requested,
        pin.resolved,
        pin.requested
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_round_trips_and_refuses_unknown_keys() {
        let lock = LockFile {
            version: 1,
            image: Pin {
                requested: "127.0.0.1:5000/app:latest".into(),
                kind: "oci".into(),
                resolved: format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64)),
                sha256: None,
                catalog_source: None,
                id: "b".repeat(64),
            },
        };
        let text = toml::to_string(&lock).unwrap();
        let back: LockFile = toml::from_str(&text).unwrap();
        assert_eq!(back.image, lock.image);
        assert!(toml::from_str::<LockFile>(&format!("{text}\nextra = 1\n")).is_err());
    }
}
