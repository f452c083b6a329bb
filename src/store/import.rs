//! Getting an image into the store, one function per kind of IMAGE (URL, local archive or
//! OCI layout, registry, catalog entry, package archive), and the plumbing they share: the
//! unpack helpers fed while bytes arrive, staging directories renamed into place, the
//! recorded resolutions of catalog names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::fetch;
use crate::paths::{private_dir, write_atomic, Dirs, Lock};
use crate::progress::{human_bytes, Relay, Reporter};
use crate::state::ImageRecord;

use super::*;

/// An archive at a URL. With its sha256 known (--sha256, a catalog entry) and a verified copy
/// in the download cache, that copy is unpacked and the network is not used. Otherwise it is
/// downloaded and unpacked in one pass (see [`fetch::download`]): the bytes go from the socket
/// through the hash into the cache file and the unpack helper's stdin at once. The unpacked
/// tree becomes an image only when the download's size and sha256 check out and the helper
/// succeeded; otherwise neither it nor the cache file is kept.
pub(super) fn import_url(
    dirs: &Dirs,
    url: &str,
    sha256: Option<&str>,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let dl = downloads_dir(dirs)?;
    let want = sha256.map(|h| h.trim().trim_start_matches("sha256:").to_ascii_lowercase());
    let _same_image = match &want {
        Some(id) => {
            let lock = match load_or_lock(dirs, id, r)? {
                Stored::Found(rec) => return Ok(rec),
                Stored::Locked(lock) => lock,
            };
            let cached = dl.join(format!("{id}.archive"));
            if cached.is_file() {
                let (actual, size) = fetch::hash_file(&cached)?;
                if &actual == id {
                    r.step(&format!(
                        "Using the downloaded archive {} from the cache",
                        short(id)
                    ));
                    return unpack_file_locked(dirs, &cached, id, size, url, r);
                }
                // Damaged: download it again.
                let _ = std::fs::remove_file(&cached);
            }
            Some(lock)
        }
        None => None,
    };
    let staging = Staging::begin(dirs)?;
    let (mut child, relay) = spawn_unpack(&staging.tmp, url, Stdio::piped(), r)?;
    let mut stdin = child
        .stdin
        .take()
        .context("the unpack helper has no stdin")?;
    let fetched = fetch::download(url, &dl, want.as_deref(), Some(&mut stdin), r);
    drop(stdin);
    let (fetched, fed) = match fetched {
        Ok(f) => (Some(f), Ok(())),
        Err(fetch::StreamError::Download(e)) => (None, Err(Fed::Source(e))),
        Err(fetch::StreamError::Sink(e)) => (None, Err(Fed::Sink(e.to_string()))),
    };
    let unpacked = finish_unpack(&mut child, relay, &staging.tmp, fed, url, url, r)?;
    let fetched = fetched.context("the download ended without a result")?;
    if unpacked == Unpacked::Layout {
        // Verified and kept like any download; read as the image it holds.
        drop(staging);
        let archive = fetched.keep()?;
        return import_layout_archive(dirs, &archive, r);
    }
    let rec = ImageRecord {
        id: fetched.sha256.clone(),
        source: url.to_string(),
        unpacked: crate::state::now_rfc3339(),
        archive_bytes: fetched.size,
        digest: None,
        env: Vec::new(),
        packages: Vec::new(),
        base_source: None,
    };
    // Kept in the cache, so the image can be made again without the network.
    fetched.keep()?;
    staging.commit(dirs, rec)
}

pub(super) fn import_file(
    dirs: &Dirs,
    path: &Path,
    source: &str,
    sha256: Option<&str>,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    // The reason first, then the hint: anyhow's context would put the OS error last.
    let meta = std::fs::metadata(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        anyhow::anyhow!("{source}: {why}\n  hint: IMAGE is a path to a rootfs tarball (.tar, .tar.gz, .tar.xz, .tar.zst), an http(s):// URL, an OCI reference (HOST/PATH:TAG) or a catalog name (see `devbox image search`)")
    })?;
    if !meta.is_file() {
        bail!("image {source:?} is not a file\n  hint: IMAGE is a path to a rootfs tarball or an http(s):// URL");
    }
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = abs.display().to_string();
    // Two creates from this file at once: the second waits here, then finds the first's
    // image (below, as `seen`) instead of unpacking it again.
    let _same_file = file_lock(dirs, &abs, meta.len())?;
    // A new archive is hashed while it unpacks (its id, the sha256, is known only at the
    // end; if the store has it after all, the unpack is dropped). The hash comes first when
    // a checksum is to be verified, when the store holds an image from this very path and
    // size (most likely the same archive again), and for an image layout.
    let seen = list(dirs).is_ok_and(|recs| {
        recs.iter()
            .any(|rec| rec.source == name && rec.archive_bytes == meta.len())
    });
    if sha256.is_some() || seen || is_image_layout(&abs)? {
        let (id, size) = fetch::hash_file(path)?;
        fetch::check_sha256(source, sha256, &id)?;
        if load(dirs, &id).is_none() && is_image_layout(&abs)? {
            return import_layout_archive(dirs, &abs, r);
        }
        return unpack_file(dirs, &abs, &id, size, &name, r);
    }
    let staging = Staging::begin(dirs)?;
    let (unpacked, hashed) = std::thread::scope(|s| {
        let hashing = s.spawn(|| fetch::hash_file(&abs));
        let unpacked = unpack_into(&staging, &abs, meta.len(), &name, r);
        let hashed = hashing
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("hashing {name} failed unexpectedly")));
        (unpacked, hashed)
    });
    let (id, size) = hashed?;
    if !unpacked? {
        drop(staging);
        return import_layout_archive(dirs, &abs, r);
    }
    if let Some(rec) = load(dirs, &id) {
        r.step(&format!("Using image {} from the store", short(&id)));
        return Ok(rec);
    }
    staging.commit(dirs, file_record(&id, &name, size))
}

/// Whether an archive holds an image layout rather than a root filesystem, from its entries:
/// `oci-layout`, `index.json` or `manifest.json` at the top, before anything a rootfs has.
pub(super) fn is_image_layout(archive: &Path) -> Result<bool> {
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(crate::unpack::decompressed(file)?);
    let Ok(entries) = tar.entries() else {
        return Ok(false);
    };
    for entry in entries.take(10_000) {
        let Ok(entry) = entry else { return Ok(false) };
        let Ok(path) = entry.path() else { continue };
        let name = path.to_string_lossy();
        let name = name.trim_start_matches("./").trim_end_matches('/');
        if crate::oci::is_layout_entry(name) {
            return Ok(true);
        }
        let top = name.split('/').next().unwrap_or("");
        if matches!(top, "etc" | "usr" | "bin" | "lib" | "sbin" | "var") {
            return Ok(false);
        }
    }
    Ok(false)
}

/// An archive of an OCI image layout or a docker-archive: unpacked (as the user, confined) into
/// the cache, read like a registry's image, its layers applied.
pub(super) fn import_layout_archive(
    dirs: &Dirs,
    archive: &Path,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    cache_dir(dirs)?;
    let work = WorkDir::new(dirs, &dirs.cache, "layout")?;
    r.step(&format!(
        "{} is an image layout; reading its image",
        archive.display()
    ));
    let file = std::fs::File::open(archive)?;
    crate::unpack::unpack(
        crate::unpack::decompressed(file)?,
        work.path(),
        &crate::unpack::Options {
            preserve_owner: false,
            ..Default::default()
        },
        &mut |_| {},
    )
    .with_context(|| format!("cannot read the image layout in {}", archive.display()))?;
    let image = crate::oci::read_layout(work.path())
        .map_err(|e| anyhow::anyhow!("{}: {e}", archive.display()))?;
    // The blobs stay with the image (a layout of its own, for push and save): saved and loaded
    // again, or pushed, it is the same image. Best effort: without them it is still an image.
    let keep = |dst: &Path| -> Result<Option<String>> {
        match crate::store::layout::keep_layout(
            work.path(),
            image.manifest_digest.as_deref(),
            &image.config_digest,
            &image.layers,
            dst,
        ) {
            Ok(d) => Ok(Some(d)),
            Err(e) => {
                crate::ui::detail(format_args!("the archive's blobs are not kept: {e:#}"));
                let _ = std::fs::remove_dir_all(dst);
                Ok(None)
            }
        }
    };
    apply_layers(
        dirs,
        &image.config_digest,
        &image.layers,
        &archive.display().to_string(),
        image.manifest_digest.clone(),
        &image.config.env,
        r,
        &mut |sink| feed_files(&image.layers, sink),
        Some(&keep),
    )
}

/// Pulls an OCI image and applies its layers in order, each streaming into the layer helper
/// while it downloads (see [`crate::oci::Prepared::download`]); blobs stay in the cache.
pub(super) fn import_oci(dirs: &Dirs, reference: &str, r: &dyn Reporter) -> Result<ImageRecord> {
    let parsed = crate::oci::Reference::parse(reference)?;
    cache_dir(dirs)?;
    let prepared = crate::oci::prepare(&parsed, &dirs.cache, r, &oci_options()?)?;
    let p = &prepared.pulled;
    crate::ui::detail(format_args!(
        "{parsed}: manifest {}{}",
        p.manifest_digest,
        p.index_digest
            .as_deref()
            .map(|i| format!(" chosen from index {i}"))
            .unwrap_or_default()
    ));
    apply_layers(
        dirs,
        &p.config_digest,
        &p.layers,
        &parsed.to_string(),
        Some(p.manifest_digest.clone()),
        &p.config.env,
        r,
        &mut |sink| match prepared.download(r, Some(sink)) {
            Ok(()) => Ok(()),
            Err(crate::oci::OciError::Feed { detail }) => Err(Fed::Sink(detail)),
            Err(e) => Err(Fed::Source(e.into())),
        },
        None,
    )
}

/// How feeding the layer helper failed.
/// Waits for an unpack helper fed with `what` from `source`, given how the feeding ended, and
/// turns the outcome into the import's: any failure keeps nothing (the helper is stopped; the
/// caller's staging dir goes when it is dropped).
pub(super) fn finish_unpack(
    child: &mut std::process::Child,
    relay: Relay,
    dest: &Path,
    fed: Result<(), Fed>,
    what: &str,
    source: &str,
    r: &dyn Reporter,
) -> Result<Unpacked> {
    match fed {
        Ok(()) => {}
        Err(Fed::Source(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            relay.wait();
            return Err(e);
        }
        Err(Fed::Sink(detail)) => {
            // The helper stopped reading: it failed, and said why.
            let status = child.wait()?;
            relay.wait();
            if status.success() {
                bail!("cannot pass {what} to devbox's unpack helper: {detail}; nothing was kept");
            }
            return Err(helper_failed(dest, source));
        }
    }
    let spinner = r.activity("Unpacking");
    let status = child
        .wait()
        .context("cannot wait for devbox's unpack helper")?;
    relay.wait();
    spinner.finish();
    if status.code() == Some(EXIT_IS_LAYOUT) {
        return Ok(Unpacked::Layout);
    }
    if !status.success() {
        return Err(helper_failed(dest, source));
    }
    Ok(Unpacked::Root)
}

/// Where an unpack helper that failed leaves its reason, in the directory it was to unpack
/// into: the command that started it says it in its own error, which then is whole on one
/// line (a catalog's list of failed sources shows one line per source).
pub(super) const FAILURE_FILE: &str = "failure";

/// The exit of an unpack helper (`__unpack`, `__unpack-layers`) given `dest`: a failure is
/// left in `dest` for the caller to say (status 1, nothing printed here); only when that
/// cannot be written is it this process's error.
pub fn helper_exit(dest: &Path, result: Result<()>) -> Result<i32> {
    match result {
        Ok(()) => Ok(0),
        Err(e) => match std::fs::write(dest.join(FAILURE_FILE), format!("{e:#}")) {
            Ok(()) => Ok(1),
            Err(_) => Err(e),
        },
    }
}

/// The error for an unpack helper given `dest` that failed: its reason, else a pointer to
/// what it printed.
pub(super) fn helper_failed(dest: &Path, source: &str) -> anyhow::Error {
    match std::fs::read_to_string(dest.join(FAILURE_FILE)) {
        Ok(why) if !why.trim().is_empty() => {
            anyhow::anyhow!("cannot unpack {source}, nothing was kept: {}", why.trim())
        }
        _ => anyhow::anyhow!("cannot unpack {source} (see above); nothing was kept"),
    }
}

/// What the unpack helper found in an archive.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unpacked {
    Root,
    /// An image layout: nothing was kept; read the archive as an image.
    Layout,
}

pub(crate) enum Fed {
    /// Getting the bytes (a download, a file).
    Source(anyhow::Error),
    /// The helper stopped reading (it failed, and said why).
    Sink(String),
}

/// Options of the OCI client from the user configuration: `insecure_registries` are spoken
/// to over plain http, `registry_mirrors` are tried before their registry.
pub(crate) fn oci_options() -> Result<crate::oci::Options> {
    use crate::project::{resolve, Defaults, Flags, HostEnv, UserConfig};
    let user = UserConfig::load(&HostEnv::current())?;
    let settings = resolve(&Flags::default(), None, &user, &Defaults::builtin());
    Ok(crate::oci::Options {
        plain_http: user.insecure_registries,
        mirrors: settings.registry_mirrors,
        ..crate::oci::Options::default()
    })
}

/// Puts an image's OCI layout at the path it is given; may name the manifest digest to record.
pub(crate) type PutLayout<'a> = dyn Fn(&Path) -> Result<Option<String>> + 'a;

/// Applies an image's layers into a new store entry (id: its config digest) through the
/// `__unpack-layers` helper, whose stdin `feed` fills with the layers' blobs, one after the
/// other in order. `layout`, when given, puts the image's OCI layout (its blobs, manifest and
/// config) at the path it is given (`oci/` in the new entry, before the entry's rename) and may
/// name the manifest digest to record.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_layers(
    dirs: &Dirs,
    config_digest: &str,
    layers: &[crate::oci::Layer],
    source: &str,
    digest: Option<String>,
    env: &[String],
    r: &dyn Reporter,
    feed: &mut dyn FnMut(&mut (dyn std::io::Write + Send)) -> Result<(), Fed>,
    layout: Option<&PutLayout<'_>>,
) -> Result<ImageRecord> {
    let mut digest = digest;
    let id = config_digest.trim_start_matches("sha256:").to_string();
    let _same_image = match load_or_lock(dirs, &id, r)? {
        Stored::Found(rec) => return Ok(rec),
        Stored::Locked(lock) => lock,
    };
    let staging = Staging::begin(dirs)?;
    let specs: Vec<LayerSpec> = layers
        .iter()
        .map(|l| LayerSpec {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            diff_id: l.diff_id.clone(),
        })
        .collect();
    let size: u64 = specs.iter().map(|l| l.size).sum();
    let spec = staging.tmp.join("layers.json");
    write_atomic(&spec, serde_json::to_string(&specs)?.as_bytes())?;
    r.step(&format!(
        "Unpacking {} layer{} ({})",
        specs.len(),
        if specs.len() == 1 { "" } else { "s" },
        human_bytes(size)
    ));
    let mut child = crate::runtime::helper("__unpack-layers")
        .arg(&spec)
        .arg(&staging.tmp)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run devbox's unpack helper")?;
    let relay = r.relay(child.stderr.take());
    let mut stdin = child
        .stdin
        .take()
        .context("the unpack helper has no stdin")?;
    let fed = feed(&mut stdin);
    drop(stdin);
    let fed = fed.map_err(|f| match f {
        Fed::Source(e) => Fed::Source(e.context(format!("cannot get {source}; nothing was kept"))),
        sink => sink,
    });
    finish_unpack(
        &mut child,
        relay,
        &staging.tmp,
        fed,
        &format!("the layers of {source}"),
        source,
        r,
    )?;
    let _ = std::fs::remove_file(&spec);
    if let Some(put) = layout {
        if let Some(d) = put(&staging.tmp.join(crate::store::layout::LAYOUT_DIR))
            .context("cannot keep the image's layout in the store")?
        {
            digest = Some(d);
        }
    }
    let rec = ImageRecord {
        id: id.clone(),
        source: source.to_string(),
        unpacked: crate::state::now_rfc3339(),
        archive_bytes: size,
        digest,
        env: env.to_vec(),
        packages: Vec::new(),
        base_source: None,
    };
    staging.commit(dirs, rec)
}

/// Feeds layer blobs from their files (an image layout's), in order.
pub(crate) fn feed_files(
    layers: &[crate::oci::Layer],
    sink: &mut (dyn std::io::Write + Send),
) -> Result<(), Fed> {
    let mut buf = vec![0u8; 256 * 1024];
    for l in layers {
        let mut f = std::fs::File::open(&l.path)
            .with_context(|| format!("cannot open layer {}", l.path.display()))
            .map_err(Fed::Source)?;
        let mut left = l.size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = f
                .read(&mut buf[..want])
                .with_context(|| format!("cannot read layer {}", l.path.display()))
                .map_err(Fed::Source)?;
            if n == 0 {
                return Err(Fed::Source(anyhow::anyhow!(
                    "layer {} is shorter than the {} bytes its manifest says",
                    l.path.display(),
                    l.size
                )));
            }
            sink.write_all(&buf[..n])
                .map_err(|e| Fed::Sink(e.to_string()))?;
            left -= n as u64;
        }
    }
    Ok(())
}

/// A catalog name: resolved through the entry's sources in order; the resolution is recorded,
/// so with no network the last one still works when its image is in the store.
pub(super) fn import_catalog(
    dirs: &Dirs,
    name: &str,
    sha256: Option<&str>,
    packages: &[String],
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let catalog = crate::catalog::Catalog::load()?;
    let choice = catalog.lookup(name)?;
    let key = format!("{}:{}", choice.distro, choice.release);
    r.step(&format!(
        "Resolving {name} ({} {}, {})",
        choice.name, choice.release, choice.arch
    ));
    let mut failures = Vec::new();
    for source in &choice.sources {
        let attempt = match crate::catalog::resolve(&choice, source) {
            Ok(crate::catalog::Resolved::Archive {
                url, sha256: sum, ..
            }) => {
                let want = sha256.map(str::to_string).or(sum);
                import_url(dirs, &url, want.as_deref(), r)
            }
            Ok(crate::catalog::Resolved::Oci { reference }) => import_oci(dirs, &reference, r),
            Ok(crate::catalog::Resolved::Bootstrap { target }) => {
                import_bootstrap(dirs, &target, packages, r)
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok(rec) => {
                // Each failed source is said once: here when a later one served, else in the
                // error below.
                for f in &failures {
                    r.step(&format!("{f} (another source served)"));
                }
                // The name's own image, not one with a project's packages in it.
                if rec.packages.is_empty() {
                    let _ = record_resolution(dirs, &key, &rec.id);
                }
                return Ok(rec);
            }
            Err(e) => {
                let msg = crate::catalog::one_line(&format!("{e:#}"));
                let named = source.to_string();
                // "cannot download URL" names a plain URL source itself.
                failures.push(if msg.contains(&named) {
                    format!("  {msg}")
                } else {
                    format!("  {named}: {msg}")
                });
            }
        }
    }
    if let Some(rec) = last_resolution(dirs, &key).and_then(|id| load(dirs, &id)) {
        for f in &failures {
            r.step(f);
        }
        r.step(&format!(
            "No source of {key} answered; using the image last resolved for it ({})",
            short(&rec.id)
        ));
        return Ok(rec);
    }
    bail!(
        "cannot get {key}: every source failed\n{}\n  hint: check your network or proxy; `devbox image search {}` lists the sources",
        failures.join("\n"),
        choice.distro
    )
}

/// A root built from a package archive (see `debarchive`): the indexes are read and checked
/// and the package set decided first, so an image of the same packages already in the store
/// is used without downloading any; otherwise the packages are downloaded (or taken from the
/// cache) and the `__bootstrap` helper makes the root in a staging dir, renamed into the store
/// only when dpkg has configured every package.
pub fn import_bootstrap(
    dirs: &Dirs,
    target: &crate::debarchive::Target,
    extra: &[String],
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let settings = crate::debarchive::Settings::from_user_config()?;
    let (plan, extra) = match crate::debarchive::prepare(dirs, target, extra, &settings, r) {
        Ok(plan) => (plan, extra),
        // Names apt takes but the index does not (`pkg=1.2`, `pkg/suite`, a typo): the root
        // is made without them, and the project's provisioning installs them with apt, which
        // says what is wrong with a name.
        Err(e) if !extra.is_empty() => {
            r.step(&format!(
                "The project's packages cannot join the bootstrap ({}); apt installs them afterwards",
                crate::catalog::one_line(&format!("{e:#}"))
            ));
            (
                crate::debarchive::prepare(dirs, target, &[], &settings, r)?,
                &[][..],
            )
        }
        Err(e) => return Err(e),
    };
    let id = plan.id.clone();
    let _same_image = match load_or_lock(dirs, &id, r)? {
        Stored::Found(rec) => return Ok(rec),
        Stored::Locked(lock) => lock,
    };
    crate::debarchive::download(&plan, r)?;
    let staging = Staging::begin(dirs)?;
    let spec = staging.tmp.join("bootstrap.json");
    write_atomic(&spec, serde_json::to_string(&plan)?.as_bytes())?;
    r.step(&format!(
        "Installing {} packages of {}",
        plan.debs.len(),
        plan.describe()
    ));
    let mut child = crate::runtime::helper("__bootstrap")
        .arg(&spec)
        .arg(&staging.tmp)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run devbox's bootstrap helper")?;
    let spinner = r.activity("Installing packages");
    let status = child
        .wait()
        .context("cannot wait for devbox's bootstrap helper")?;
    spinner.finish();
    if !status.success() {
        bail!(
            "cannot make {} {} (see above); nothing was kept",
            target.distro,
            target.suite
        );
    }
    let _ = std::fs::remove_file(&spec);
    let _ = std::fs::remove_file(staging.tmp.join("dpkg.log"));
    let rec = ImageRecord {
        id,
        source: format!(
            "{} {} from {} ({} packages)",
            target.distro,
            plan.suite,
            plan.mirror,
            plan.debs.len()
        ),
        unpacked: crate::state::now_rfc3339(),
        archive_bytes: plan.debs.iter().map(|d| d.size).sum(),
        digest: None,
        env: Vec::new(),
        packages: extra.to_vec(),
        base_source: None,
    };
    staging.commit(dirs, rec)
}

pub(super) fn resolutions_dir(dirs: &Dirs) -> PathBuf {
    dirs.data.join("resolved-v1")
}

pub(super) fn record_resolution(dirs: &Dirs, key: &str, id: &str) -> Result<()> {
    let d = resolutions_dir(dirs);
    private_dir(&d)?;
    write_atomic(
        &d.join(key.replace(['/', ':'], "_")),
        format!("{id}\n").as_bytes(),
    )
}

pub(super) fn last_resolution(dirs: &Dirs, key: &str) -> Option<String> {
    let text =
        std::fs::read_to_string(resolutions_dir(dirs).join(key.replace(['/', ':'], "_"))).ok()?;
    Some(text.trim().to_string())
}

/// One OCI layer as the `__unpack-layers` helper receives it (its blob comes on stdin).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerSpec {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
}

/// Unpacks an archive file whose sha256 is `id` into the store (unless it is there).
pub(super) fn unpack_file(
    dirs: &Dirs,
    archive: &Path,
    id: &str,
    size: u64,
    source: &str,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let _same_image = match load_or_lock(dirs, id, r)? {
        Stored::Found(rec) => return Ok(rec),
        Stored::Locked(lock) => lock,
    };
    unpack_file_locked(dirs, archive, id, size, source, r)
}

/// What the store has of an image: the image, or nothing yet and its [`id_lock`], held.
enum Stored {
    Found(ImageRecord),
    Locked(Lock),
}

/// Image `id` from the store, or, when it is not there, its lock; the store is looked at again
/// under the lock, since another create may have finished the same image meanwhile.
fn load_or_lock(dirs: &Dirs, id: &str, r: &dyn Reporter) -> Result<Stored> {
    if let Some(rec) = load(dirs, id) {
        r.step(&format!("Using image {} from the store", short(id)));
        return Ok(Stored::Found(rec));
    }
    let lock = id_lock(dirs, id)?;
    Ok(match load(dirs, id) {
        Some(rec) => Stored::Found(rec),
        None => Stored::Locked(lock),
    })
}

/// [`unpack_file`] with the image's [`id_lock`] held by the caller.
pub(super) fn unpack_file_locked(
    dirs: &Dirs,
    archive: &Path,
    id: &str,
    size: u64,
    source: &str,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let staging = Staging::begin(dirs)?;
    if !unpack_into(&staging, archive, size, source, r)? {
        drop(staging);
        return import_layout_archive(dirs, archive, r);
    }
    staging.commit(dirs, file_record(id, source, size))
}

/// The record of an image unpacked from an archive file.
fn file_record(id: &str, source: &str, size: u64) -> ImageRecord {
    ImageRecord {
        id: id.to_string(),
        source: source.to_string(),
        unpacked: crate::state::now_rfc3339(),
        archive_bytes: size,
        digest: None,
        env: Vec::new(),
        packages: Vec::new(),
        base_source: None,
    }
}

/// Unpacks `archive` (`size` bytes) into `staging` through the `__unpack` helper, with a
/// progress bar. Returns false when the helper found an image layout, not a root filesystem.
fn unpack_into(
    staging: &Staging,
    archive: &Path,
    size: u64,
    source: &str,
    r: &dyn Reporter,
) -> Result<bool> {
    r.step(&format!("Unpacking {} ({})", source, human_bytes(size)));
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    // The helper reads the file as its stdin; this handle shares its offset, which is the
    // progress.
    let mut offset = file.try_clone()?;
    let (mut child, relay) = spawn_unpack(&staging.tmp, source, Stdio::from(file), r)?;
    let bar = r.transfer("Unpacking", Some(size));
    let mut shown = 0;
    let status = loop {
        if !bar.shown() {
            break child.wait()?;
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        use std::io::Seek;
        if let Ok(pos) = offset.stream_position() {
            bar.inc(pos.saturating_sub(shown));
            shown = shown.max(pos);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    relay.wait();
    bar.finish();
    if status.code() == Some(EXIT_IS_LAYOUT) {
        return Ok(false);
    }
    if !status.success() {
        return Err(helper_failed(&staging.tmp, source));
    }
    Ok(true)
}

/// Starts `devbox __unpack DEST SOURCE`, which unpacks the archive on its stdin into
/// DEST/rootfs (SOURCE names it in messages).
/// Starts the `__unpack` helper; its stderr comes to the user through `r` (see
/// [`Reporter::relay`]).
pub(super) fn spawn_unpack(
    dest: &Path,
    source: &str,
    stdin: Stdio,
    r: &dyn Reporter,
) -> Result<(std::process::Child, Relay)> {
    let mut child = crate::runtime::helper("__unpack")
        .arg(dest)
        .arg(source)
        .stdin(stdin)
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run devbox's unpack helper")?;
    let relay = r.relay(child.stderr.take());
    Ok((child, relay))
}

/// Held while an image of a known id is being imported, so that two devbox commands making
/// the same image at once unpack it once (the second waits, then finds it in the store). The
/// lock files live in the runtime directory.
pub(super) fn id_lock(dirs: &Dirs, id: &str) -> Result<Lock> {
    private_dir(&dirs.runtime)?;
    Lock::acquire(
        &dirs.runtime.join(format!("import-{id}.lock")),
        &format!("image {}", short(id)),
        3600,
    )
}

/// Held while an archive file is imported, before its id is known: the lock is named after
/// the file's path and size.
fn file_lock(dirs: &Dirs, path: &Path, size: u64) -> Result<Lock> {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    let mut key = sha2::Sha256::new();
    key.update(path.as_os_str().as_bytes());
    key.update(size.to_le_bytes());
    let key = fetch::hex(&key.finalize()[..8]);
    private_dir(&dirs.runtime)?;
    Lock::acquire(
        &dirs.runtime.join(format!("import-file-{key}.lock")),
        &format!("archive {}", path.display()),
        3600,
    )
}

/// An import in progress: a temp dir in the store (`images-v1/.tmp-PID-N`), claimed (see
/// [`claim_dir`]) for as long as this lives, so that another devbox's sweep of leftovers never
/// removes it. Dropped without `commit`, it is removed.
pub(crate) struct Staging {
    pub(crate) tmp: PathBuf,
    pub(super) _held: Option<Claim>,
    pub(super) done: bool,
}

impl Staging {
    pub(crate) fn begin(dirs: &Dirs) -> Result<Staging> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let tmp = dirs.images.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let held = claim_dir(dirs, &tmp)?;
        Ok(Staging {
            tmp,
            _held: Some(held),
            done: false,
        })
    }

    /// Writes the record and renames the temp dir to `images-v1/<id>`; if another devbox put
    /// the same image there meanwhile, that one is used and this one removed.
    fn commit(mut self, dirs: &Dirs, rec: ImageRecord) -> Result<ImageRecord> {
        write_atomic(
            &self.tmp.join("image.toml"),
            toml::to_string(&rec)?.as_bytes(),
        )?;
        let _store = store_lock(dirs)?;
        if let Some(existing) = load(dirs, &rec.id) {
            return Ok(existing);
        }
        std::fs::rename(&self.tmp, dirs.image_dir(&rec.id))
            .context("cannot move the unpacked image into the store")?;
        self.done = true;
        Ok(rec)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = remove_tree(&self.tmp) {
                eprintln!("devbox: {e:#}");
            }
        }
    }
}
