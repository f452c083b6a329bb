//! The image store: archives unpacked once, by sha256, into `images-v1/<sha256>/rootfs`.
//!
//! An entry is unpacked into `images-v1/.tmp-PID-N` by the `__unpack` helper (inside the user
//! namespace, so ownership lands mapped) and renamed into place only when complete, under a lock.
//! Temp dirs left by interrupted commands (imports, creates, removals, image layouts, doctor) are
//! swept by the next command that takes the store lock; see "Leftovers" below.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::fetch;
use crate::paths::{private_dir, write_atomic, Dirs, Lock};
use crate::progress::{human_bytes, Relay, Reporter};
use crate::state::ImageRecord;

pub mod layout;

/// What an IMAGE argument names. The grammar, tried in this order: an `http://`/`https://`
/// URL; a local path (absolute, `./`, `../`, `~/`, or an existing file); an OCI reference
/// (`HOST/PATH[:TAG|@sha256:...]`, or a Docker Hub name with a `/`); else a catalog name
/// `DISTRO[:RELEASE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Url(String),
    File(PathBuf),
    Oci(String),
    Catalog(String),
}

impl ImageRef {
    pub fn classify(s: &str) -> ImageRef {
        if fetch::is_url(s) {
            return ImageRef::Url(s.to_string());
        }
        let looks_like_path = s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s.starts_with("~/")
            || Path::new(s).exists();
        if looks_like_path {
            let expanded = match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => PathBuf::from(s),
            };
            return ImageRef::File(expanded);
        }
        if crate::oci::Reference::looks_like_oci(s) {
            return ImageRef::Oci(s.to_string());
        }
        ImageRef::Catalog(s.to_string())
    }
}

/// Makes sure the image `source` is in the store and returns its record.
pub fn import(
    dirs: &Dirs,
    source: &str,
    sha256: Option<&str>,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    import_with(dirs, source, sha256, &[], r)
}

/// [`import`] for a project's box: a root built from a package archive installs `packages`
/// with the rest of it (one dpkg run instead of a second apt pass). Other sources ignore them.
pub fn import_with(
    dirs: &Dirs,
    source: &str,
    sha256: Option<&str>,
    packages: &[String],
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    dirs.ensure_store()?;
    if let Some(h) = sha256 {
        fetch::validate_sha256_arg(h)?;
        let id = h.trim().trim_start_matches("sha256:").to_ascii_lowercase();
        if let Some(rec) = load(dirs, &id) {
            r.step(&format!("Using image {} from the store", short(&id)));
            return Ok(rec);
        }
    }
    // An image made by `devbox commit --tag NAME` goes by that name; any image of the store
    // by its id (12 hex digits or more, as `image list` shows it).
    if let Some(rec) = crate::store::layout::tagged(dirs, source).or_else(|| by_id(dirs, source)) {
        r.step(&format!(
            "Using image {} ({source}) from the store",
            short(&rec.id)
        ));
        return Ok(rec);
    }
    match ImageRef::classify(source) {
        ImageRef::Url(url) => import_url(dirs, &url, sha256, r),
        ImageRef::File(path) => import_file(dirs, &path, source, sha256, r),
        ImageRef::Oci(reference) => {
            if sha256.is_some() {
                bail!("--sha256 is for archives; an OCI image is verified by its digest: name it as {reference}@sha256:HEX");
            }
            import_oci(dirs, &reference, r)
        }
        ImageRef::Catalog(name) => import_catalog(dirs, &name, sha256, packages, r),
    }
}

/// The store image whose id starts with `s` (at least 12 hex digits, `sha256:` allowed).
fn by_id(dirs: &Dirs, s: &str) -> Option<ImageRecord> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() < 12
        || !hex
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return None;
    }
    let mut found = list(dirs)
        .ok()?
        .into_iter()
        .filter(|r| r.id.starts_with(hex));
    let one = found.next()?;
    found.next().is_none().then_some(one)
}

/// An archive at a URL. With its sha256 known (--sha256, a catalog entry) and a verified copy
/// in the download cache, that copy is unpacked and the network is not used. Otherwise it is
/// downloaded and unpacked in one pass (see [`fetch::download`]): the bytes go from the socket
/// through the hash into the cache file and the unpack helper's stdin at once. The unpacked
/// tree becomes an image only when the download's size and sha256 check out and the helper
/// succeeded; otherwise neither it nor the cache file is kept.
fn import_url(
    dirs: &Dirs,
    url: &str,
    sha256: Option<&str>,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let dl = downloads_dir(dirs)?;
    let want = sha256.map(|h| h.trim().trim_start_matches("sha256:").to_ascii_lowercase());
    let _same_image = match &want {
        Some(id) => {
            if let Some(rec) = load(dirs, id) {
                r.step(&format!("Using image {} from the store", short(id)));
                return Ok(rec);
            }
            let lock = id_lock(dirs, id)?;
            if let Some(rec) = load(dirs, id) {
                return Ok(rec);
            }
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

fn import_file(
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
    let (id, size) = fetch::hash_file(path)?;
    fetch::check_sha256(source, sha256, &id)?;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if load(dirs, &id).is_none() && is_image_layout(&abs)? {
        return import_layout_archive(dirs, &abs, r);
    }
    unpack_file(dirs, &abs, &id, size, &abs.display().to_string(), r)
}

/// Whether an archive holds an image layout rather than a root filesystem, from its entries:
/// `oci-layout`, `index.json` or `manifest.json` at the top, before anything a rootfs has.
fn is_image_layout(archive: &Path) -> Result<bool> {
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
fn import_layout_archive(dirs: &Dirs, archive: &Path, r: &dyn Reporter) -> Result<ImageRecord> {
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
fn import_oci(dirs: &Dirs, reference: &str, r: &dyn Reporter) -> Result<ImageRecord> {
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
fn finish_unpack(
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
const FAILURE_FILE: &str = "failure";

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
fn helper_failed(dest: &Path, source: &str) -> anyhow::Error {
    match std::fs::read_to_string(dest.join(FAILURE_FILE)) {
        Ok(why) if !why.trim().is_empty() => {
            anyhow::anyhow!("cannot unpack {source}, nothing was kept: {}", why.trim())
        }
        _ => anyhow::anyhow!("cannot unpack {source} (see above); nothing was kept"),
    }
}

/// What the unpack helper found in an archive.
#[derive(Debug, PartialEq, Eq)]
enum Unpacked {
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
    if let Some(rec) = load(dirs, &id) {
        r.step(&format!("Using image {} from the store", short(&id)));
        return Ok(rec);
    }
    let _same_image = id_lock(dirs, &id)?;
    if let Some(rec) = load(dirs, &id) {
        return Ok(rec);
    }
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
fn import_catalog(
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
    if let Some(rec) = load(dirs, &id) {
        r.step(&format!("Using image {} from the store", short(&id)));
        return Ok(rec);
    }
    let _same_image = id_lock(dirs, &id)?;
    if let Some(rec) = load(dirs, &id) {
        return Ok(rec);
    }
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

fn resolutions_dir(dirs: &Dirs) -> PathBuf {
    dirs.data.join("resolved-v1")
}

fn record_resolution(dirs: &Dirs, key: &str, id: &str) -> Result<()> {
    let d = resolutions_dir(dirs);
    private_dir(&d)?;
    write_atomic(
        &d.join(key.replace(['/', ':'], "_")),
        format!("{id}\n").as_bytes(),
    )
}

fn last_resolution(dirs: &Dirs, key: &str) -> Option<String> {
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
fn unpack_file(
    dirs: &Dirs,
    archive: &Path,
    id: &str,
    size: u64,
    source: &str,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    if let Some(rec) = load(dirs, id) {
        r.step(&format!("Using image {} from the store", short(id)));
        return Ok(rec);
    }
    let _same_image = id_lock(dirs, id)?;
    if let Some(rec) = load(dirs, id) {
        return Ok(rec);
    }
    unpack_file_locked(dirs, archive, id, size, source, r)
}

/// [`unpack_file`] with the image's [`id_lock`] held by the caller.
fn unpack_file_locked(
    dirs: &Dirs,
    archive: &Path,
    id: &str,
    size: u64,
    source: &str,
    r: &dyn Reporter,
) -> Result<ImageRecord> {
    let staging = Staging::begin(dirs)?;
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
        drop(staging);
        return import_layout_archive(dirs, archive, r);
    }
    if !status.success() {
        return Err(helper_failed(&staging.tmp, source));
    }
    let rec = ImageRecord {
        id: id.to_string(),
        source: source.to_string(),
        unpacked: crate::state::now_rfc3339(),
        archive_bytes: size,
        digest: None,
        env: Vec::new(),
        packages: Vec::new(),
        base_source: None,
    };
    staging.commit(dirs, rec)
}

/// Starts `devbox __unpack DEST SOURCE`, which unpacks the archive on its stdin into
/// DEST/rootfs (SOURCE names it in messages).
/// Starts the `__unpack` helper; its stderr comes to the user through `r` (see
/// [`Reporter::relay`]).
fn spawn_unpack(
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
fn id_lock(dirs: &Dirs, id: &str) -> Result<Lock> {
    private_dir(&dirs.runtime)?;
    Lock::acquire(
        &dirs.runtime.join(format!("import-{id}.lock")),
        &format!("image {}", short(id)),
        3600,
    )
}

/// An import in progress: a temp dir in the store (`images-v1/.tmp-PID-N`), claimed (see
/// [`claim_dir`]) for as long as this lives, so that another devbox's sweep of leftovers never
/// removes it. Dropped without `commit`, it is removed.
pub(crate) struct Staging {
    pub(crate) tmp: PathBuf,
    _held: Option<Claim>,
    done: bool,
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

/// Every complete image in the store.
pub fn list(dirs: &Dirs) -> Result<Vec<ImageRecord>> {
    let rd = match std::fs::read_dir(&dirs.images) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dirs.images.display())),
    };
    Ok(rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            load(dirs, &name)
        })
        .collect())
}

/// Removes an image from the store: renamed away first (`images-v1/.tmp-rm-<id>`), so it never
/// looks half there, and flocked before that, so no sweep of leftovers takes it while this
/// devbox removes it; a removal that is interrupted leaves it unlocked, for the next sweep.
pub fn remove_image(dirs: &Dirs, id: &str) -> Result<()> {
    let (trash, held) = {
        let _lock = store_lock(dirs)?;
        let dir = dirs.image_dir(id);
        let what = format!("image {}", short(id));
        let held = lock_dir(&dir, &what).with_context(|| format!("cannot remove {what}"))?;
        let trash = unused_name(&dirs.images, &format!(".tmp-rm-{id}"));
        std::fs::rename(&dir, &trash).with_context(|| format!("cannot remove {what}"))?;
        (trash, held)
    };
    let removed = remove_tree(&trash);
    drop(held);
    removed
}

/// Removes box `name`'s directory: renamed away first (`boxes-v1/.trash-NAME-PID`), so a
/// half-removed box never looks like a box, and flocked before that, so no sweep of leftovers
/// takes it while this devbox removes it; a removal that is interrupted (a killed `rm`) leaves
/// it unlocked, for the next sweep.
pub fn remove_box_dir(dirs: &Dirs, name: &str) -> Result<()> {
    let dir = dirs.box_dir(name);
    let held = lock_dir(&dir, &format!("box '{name}'"))
        .with_context(|| format!("cannot remove box '{name}'"))?;
    let trash = unused_name(
        &dirs.boxes,
        &format!(".trash-{name}-{}", std::process::id()),
    );
    std::fs::rename(&dir, &trash).with_context(|| format!("cannot remove box '{name}'"))?;
    let removed = remove_tree(&trash);
    drop(held);
    removed
}

/// `dir/name`, or `dir/name-N` for the first N that is not there (a leftover of the same name
/// that could not be removed must not make the next removal fail).
fn unused_name(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 1;
    while std::fs::symlink_metadata(&path).is_ok() {
        path = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    path
}

/// Empties the caches: downloaded archives (`downloads-v1`), OCI blobs (`blobs-v1`) and archive
/// packages and indexes (`debs-v1`), partial
/// downloads included, except files a running devbox has locked (a download under way).
/// Returns the bytes freed.
pub fn clear_cache(dirs: &Dirs) -> Result<u64> {
    let mut freed = 0;
    for d in [
        dirs.cache.join("downloads-v1"),
        dirs.cache.join("blobs-v1").join("sha256"),
        dirs.cache.join("debs-v1"),
    ] {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            if name == "CACHEDIR.TAG" || !meta.is_file() {
                continue;
            }
            let Ok(file) = std::fs::File::open(e.path()) else {
                continue;
            };
            // A download under way holds its file locked.
            let Ok(_held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            match std::fs::remove_file(e.path()) {
                Ok(()) => freed += meta.len(),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err)
                        .with_context(|| format!("cannot remove {}", e.path().display()))
                }
            }
        }
    }
    Ok(freed)
}

pub fn load(dirs: &Dirs, id: &str) -> Option<ImageRecord> {
    let text = std::fs::read_to_string(dirs.image_dir(id).join("image.toml")).ok()?;
    toml::from_str(&text).ok()
}

/// The cache directory, made private and tagged (CACHEDIR.TAG, so backup tools skip it).
fn cache_dir(dirs: &Dirs) -> Result<()> {
    private_dir(&dirs.cache)?;
    crate::paths::mark_cache_dir(&dirs.cache);
    Ok(())
}

fn downloads_dir(dirs: &Dirs) -> Result<PathBuf> {
    cache_dir(dirs)?;
    let d = dirs.cache.join("downloads-v1");
    private_dir(&d)?;
    crate::paths::mark_cache_dir(&d);
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// Leftovers of interrupted commands
//
// Every temp dir a devbox command makes is marked as in use for as long as the command lives,
// so that a sweep (run by the next command that takes the store lock, and by `image prune`)
// removes only those whose command is gone:
//
//   images-v1/.tmp-PID-N       an import's staging dir         flock on the dir (claim_dir)
//   images-v1/.tmp-rm-ID       an image being removed          flock on the dir (remove_image)
//   boxes-v1/.tmp-NAME-PID     a box being assembled           flock on the dir (claim_dir)
//   boxes-v1/.trash-NAME-PID   a box being removed             flock on the dir (remove_box_dir)
//   CACHE/layout-PID-N         an image layout archive, read   flock on the dir (claim_dir)
//   RUNTIME/doctor-PID-START-X doctor's overlay probe          its name: the pid and start time
//                                                              of the doctor (Scratch)
//
// A flock is released by the kernel when its process dies, however it dies. Dirs are made and
// flocked under the store lock and looked over under it, so a sweep never sees one between its
// mkdir and its flock; a dir that is renamed into a leftover's name is flocked before the
// rename. A sweep takes each stale dir's flock itself and holds it while it removes the dir, so
// two sweeps never work on one dir.
// ---------------------------------------------------------------------------------------------

/// The lock of the image store (`images-v1/.lock`), held to make, rename and look over its
/// temp dirs.
pub(crate) fn store_lock(dirs: &Dirs) -> Result<Lock> {
    Lock::acquire(&dirs.images.join(".lock"), "the image store", 600)
}

/// The store lock when there is a store (without one there is nothing of it to look over, and
/// a look makes none).
fn store_lock_if_any(dirs: &Dirs) -> Result<Option<Lock>> {
    if dirs.images.is_dir() {
        store_lock(dirs).map(Some)
    } else {
        Ok(None)
    }
}

/// An exclusive flock on a directory, held until dropped.
pub struct Claim {
    _held: nix::fcntl::Flock<std::fs::File>,
}

/// Opens a directory (not following a symlink) for its flock.
fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Takes the flock of an existing directory, waiting up to ten seconds for another devbox
/// command that holds it.
fn lock_dir(path: &Path, what: &str) -> Result<Claim> {
    use nix::fcntl::{Flock, FlockArg};
    let mut file = open_dir(path).with_context(|| format!("cannot open {}", path.display()))?;
    let start = std::time::Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Claim { _held: held }),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed().as_secs() < 10 => {
                file = f;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "{what} is busy: another devbox command is working on {}\n  hint: wait for it to finish, or find it with `fuser {}`",
                path.display(),
                path.display()
            ),
            Err((_, e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Makes the temp dir `dir` (0700) and flocks it, both under the store lock, so that no sweep
/// of leftovers takes it while the returned claim lives. Sweeps on the way: stale leftovers
/// found under the lock are removed after it is released (one of the same name at once).
pub fn claim_dir(dirs: &Dirs, dir: &Path) -> Result<Claim> {
    use std::os::unix::fs::DirBuilderExt;
    let (claim, stale) = {
        let store = store_lock(dirs)?;
        let mut stale = scan(dirs, Some(&store));
        if let Some(i) = stale.iter().position(|l| l.path == dir) {
            // The same name (a reused pid): it must go before the name can be taken.
            let same = stale.swap_remove(i);
            remove_leftover(&same)?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let claim = lock_dir(dir, &dir.display().to_string())?;
        (claim, stale)
    };
    report_in_passing(&remove_leftovers(dirs, stale, false));
    Ok(claim)
}

/// A temp dir of this devbox ([`claim_dir`]), removed through the removal helper when dropped.
struct WorkDir {
    path: PathBuf,
    _held: Claim,
}

impl WorkDir {
    /// `parent/PREFIX-PID-N`.
    fn new(dirs: &Dirs, parent: &Path, prefix: &str) -> Result<WorkDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = parent.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let held = claim_dir(dirs, &path)?;
        Ok(WorkDir { path, _held: held })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            eprintln!("devbox: {e:#}");
        }
    }
}

/// A scratch dir named after the process that uses it, `PARENT/PREFIX-PID-STARTTIME-XXXXXX`,
/// for places outside the store (no store lock, no removal helper): it is stale once that
/// process is gone. Its files must be the user's own; it is removed when dropped, also on
/// error paths.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(parent: &Path, prefix: &str) -> Result<Scratch> {
        let pid = std::process::id();
        let start = crate::runtime::holder::start_time(pid as i32)
            .context("cannot read this process's start time from /proc")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-{pid}-{start}-"))
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a scratch dir in {}", parent.display()))?;
        Ok(Scratch { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_own_tree(&self.path) {
            eprintln!("devbox: cannot remove {}: {e:#}", self.path.display());
        }
    }
}

/// Whether a scratch dir's name (`PREFIX-PID-STARTTIME-XXXXXX`) names a living process. A name
/// of the older form (`PREFIX-XXXXXX`, without the process) counts as in use for a minute.
fn scratch_in_use(name: &str, path: &Path) -> bool {
    let mut parts = name.splitn(4, '-').skip(1);
    let pid = parts.next().and_then(|p| p.parse::<i32>().ok());
    let start = parts.next().and_then(|s| s.parse::<u64>().ok());
    match (pid, start, parts.next()) {
        (Some(pid), Some(start), Some(_)) => crate::runtime::holder::alive(pid, start),
        _ => std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 60)),
    }
}

/// Removes a tree of the user's own files, making its directories writable first (an overlay's
/// `work/work` is made with mode 0).
fn remove_own_tree(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn open_up(dir: &Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&e.path());
                }
            }
        }
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(path);
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// What a leftover was left by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    Import,
    ImageRm,
    Create,
    Rm,
    Layout,
    Doctor,
}

impl Left {
    fn by(self) -> &'static str {
        match self {
            Left::Import => "an interrupted image import",
            Left::ImageRm => "an interrupted image removal",
            Left::Create => "an interrupted create",
            Left::Rm => "an interrupted rm",
            Left::Layout => "an interrupted import of an image archive",
            Left::Doctor => "an interrupted doctor",
        }
    }
}

/// A stale leftover, claimed by the sweep that found it (its flock held) until dropped.
struct Leftover {
    path: PathBuf,
    left: Left,
    _claim: Claim,
}

/// Finds the leftovers whose command is gone and claims them: with `store`, the store lock,
/// in the store and the cache; in any case the doctor's scratch dirs, which need no lock.
fn scan(dirs: &Dirs, store: Option<&Lock>) -> Vec<Leftover> {
    let mut found = Vec::new();
    let mut places = vec![(&dirs.runtime, "doctor-", Left::Doctor)];
    if store.is_some() {
        places.extend([
            (&dirs.images, ".tmp-", Left::Import),
            (&dirs.boxes, ".tmp-", Left::Create),
            (&dirs.boxes, ".trash-", Left::Rm),
            (&dirs.cache, "layout-", Left::Layout),
        ]);
    }
    for (dir, prefix, left) in places {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if left == Left::Doctor && scratch_in_use(&name, &path) {
                continue;
            }
            let left = if left == Left::Import && name.starts_with(".tmp-rm-") {
                Left::ImageRm
            } else {
                left
            };
            let Ok(file) = open_dir(&path) else {
                continue;
            };
            // Held by the devbox that uses it (or by another sweep): not ours to remove.
            let Ok(held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            found.push(Leftover {
                path,
                left,
                _claim: Claim { _held: held },
            });
        }
    }
    found
}

/// What a sweep removed, or what a look found removable.
#[derive(Debug, Default)]
pub struct Reclaimed {
    /// Leftovers removed (or found).
    pub count: usize,
    /// Their disk use.
    pub bytes: u64,
    /// False when `bytes` counts only what the user could read: devbox's user namespace was
    /// not available to measure the files of subordinate ids, or nothing was measured.
    pub exact: bool,
    /// Leftovers that could not be removed, and why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Reclaimed {
    /// "N leftover(s) of interrupted devbox commands (SIZE)".
    pub fn describe(&self) -> String {
        format!(
            "{} leftover{} of interrupted devbox commands ({}{})",
            self.count,
            if self.count == 1 { "" } else { "s" },
            if self.exact { "" } else { "at least " },
            human_bytes(self.bytes)
        )
    }

    /// "SIZE reclaimable by `devbox image prune` (N leftover(s) of interrupted devbox commands)".
    pub fn reclaimable(&self) -> String {
        format!(
            "{}{} reclaimable by `devbox image prune` ({} leftover{} of interrupted devbox commands{})",
            if self.exact { "" } else { "at least " },
            human_bytes(self.bytes),
            self.count,
            if self.count == 1 { "" } else { "s" },
            if self.exact {
                ""
            } else {
                "; some files of subordinate ids could not be measured"
            }
        )
    }

    /// The error for leftovers that could not be removed, with what to do.
    pub fn failure(&self) -> Option<anyhow::Error> {
        let (first, _) = self.failed.first()?;
        let lines: Vec<String> = self
            .failed
            .iter()
            .map(|(p, why)| format!("  {}: {why}", p.display()))
            .collect();
        Some(anyhow::anyhow!(
            "cannot remove {} leftover{} of interrupted devbox commands:\n{}\n  hint: see `devbox doctor`; or remove one by hand with `devbox unshare -- rm -rf {}`",
            self.failed.len(),
            if self.failed.len() == 1 { "" } else { "s" },
            lines.join("\n"),
            first.display()
        ))
    }
}

/// Removes the leftovers of interrupted devbox commands whose command is gone (see the table
/// above), and returns what it reclaimed. With `measure`, their disk use is measured first (as
/// root of devbox's user namespace, in a forked child: only from a single-threaded process).
/// Leftovers that cannot be removed are listed in the result, not an error.
pub fn sweep_leftovers(dirs: &Dirs, measure: bool) -> Result<Reclaimed> {
    let stale = {
        let store = store_lock_if_any(dirs)?;
        scan(dirs, store.as_ref())
    };
    Ok(remove_leftovers(dirs, stale, measure))
}

/// [`sweep_leftovers`] on the way of another command (create, rm): what it could not remove
/// is said on stderr and left for the next sweep; the command goes on.
pub fn sweep_in_passing(dirs: &Dirs) {
    match sweep_leftovers(dirs, false) {
        Ok(r) => report_in_passing(&r),
        Err(e) => crate::ui::note(format_args!(
            "devbox: leftovers of interrupted commands were not looked at: {e:#}"
        )),
    }
}

fn report_in_passing(r: &Reclaimed) {
    if r.count > 0 {
        crate::ui::detail(format_args!(
            "removed {} leftover{} of interrupted devbox commands",
            r.count,
            if r.count == 1 { "" } else { "s" }
        ));
    }
    for (path, why) in &r.failed {
        crate::ui::note(format_args!(
            "devbox: cannot remove {} (left by an interrupted command): {why}; `devbox image prune` tries again",
            path.display()
        ));
    }
}

/// The leftovers a sweep would remove now, measured, without removing anything.
pub fn leftovers(dirs: &Dirs) -> Result<Reclaimed> {
    let stale: Vec<PathBuf> = {
        let store = store_lock_if_any(dirs)?;
        scan(dirs, store.as_ref())
            .into_iter()
            .map(|l| l.path)
            .collect()
    };
    let mut r = Reclaimed {
        count: stale.len(),
        exact: true,
        ..Reclaimed::default()
    };
    if !stale.is_empty() {
        (r.bytes, r.exact) = measure_trees(dirs, &stale);
    }
    Ok(r)
}

fn remove_leftovers(dirs: &Dirs, stale: Vec<Leftover>, measure: bool) -> Reclaimed {
    let mut r = Reclaimed {
        exact: measure,
        ..Reclaimed::default()
    };
    if stale.is_empty() {
        r.exact = true;
        return r;
    }
    if measure {
        let paths: Vec<PathBuf> = stale.iter().map(|l| l.path.clone()).collect();
        (r.bytes, r.exact) = measure_trees(dirs, &paths);
    }
    for l in &stale {
        match remove_leftover(l) {
            Ok(()) => {
                r.count += 1;
                crate::ui::detail(format_args!(
                    "removed {} (left by {})",
                    l.path.display(),
                    l.left.by()
                ));
            }
            Err(e) => r.failed.push((l.path.clone(), format!("{e:#}"))),
        }
    }
    r
}

fn remove_leftover(l: &Leftover) -> Result<()> {
    match l.left {
        // Outside the store, and the user's own files.
        Left::Doctor => remove_own_tree(&l.path),
        _ => remove_tree(&l.path),
    }
}

/// Removes the doctor's stale scratch dirs (`RUNTIME/doctor-*`, see [`Scratch`]), which needs
/// no store lock; what could not be removed is said on stderr.
pub fn sweep_scratch(dirs: &Dirs) {
    report_in_passing(&remove_leftovers(dirs, scan(dirs, None), false));
}

/// The disk use of `paths` together, and whether all of it could be read: measured as root of
/// devbox's user namespace in a forked child (the process itself keeps its credentials), else
/// as the user, who may not read every directory of subordinate ids.
fn measure_trees(dirs: &Dirs, paths: &[PathBuf]) -> (u64, bool) {
    match measure_as_root(dirs, paths) {
        Ok(total) => (total, true),
        Err(e) => {
            crate::ui::detail(format_args!(
                "measured the leftovers as the user only: {e:#}"
            ));
            (paths.iter().map(|p| disk_usage(p)).sum(), false)
        }
    }
}

fn measure_as_root(dirs: &Dirs, paths: &[PathBuf]) -> Result<u64> {
    use crate::sys::Forked;
    use std::io::Write;
    use std::os::fd::OwnedFd;
    // Nothing buffered may be written twice (by the child too).
    std::io::stdout().flush()?;
    let (rx, tx): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match crate::sys::fork()? {
        Forked::Child => {
            drop(rx);
            let code = match crate::runtime::holder::as_namespace_root(dirs) {
                Ok(()) => {
                    let total: u64 = paths.iter().map(|p| disk_usage(p)).sum();
                    let mut out = std::fs::File::from(tx);
                    i32::from(out.write_all(total.to_string().as_bytes()).is_err())
                }
                Err(_) => 2,
            };
            std::process::exit(code);
        }
        Forked::Parent(child) => {
            drop(tx);
            let mut text = String::new();
            let _ = std::fs::File::from(rx).read_to_string(&mut text);
            match nix::sys::wait::waitpid(child, None)? {
                nix::sys::wait::WaitStatus::Exited(_, 0) => text
                    .trim()
                    .parse()
                    .context("the measuring child gave no number"),
                nix::sys::wait::WaitStatus::Exited(_, 2) => {
                    bail!("cannot enter devbox's user namespace")
                }
                other => bail!("the measuring child ended with {other:?}"),
            }
        }
    }
}

/// Deletes a tree that may hold files owned by subordinate ids, through the `__rmtree` helper.
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let status = crate::runtime::helper("__rmtree")
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("cannot run devbox's removal helper")?;
    if !status.success() {
        bail!("cannot remove {}", path.display());
    }
    Ok(())
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `devbox __unpack DEST SOURCE`: unpacks the archive on stdin into DEST/rootfs as root of
/// devbox's user namespace (SOURCE names it in messages). Reads stdin to its end even after
/// the archive's last entry, so the devbox feeding it never sees a closed pipe from a
/// successful unpack.
pub fn unpack_helper(dest: &Path, source: &str) -> Result<()> {
    use std::os::fd::AsFd;
    let dirs = Dirs::from_env()?;
    let stdin = std::io::stdin();
    let file = std::fs::File::from(
        stdin
            .as_fd()
            .try_clone_to_owned()
            .context("cannot read the archive from stdin")?,
    );
    let parent = nix::unistd::getppid();
    crate::runtime::holder::as_namespace_root(&dirs)?;
    // If the create that started us dies (Ctrl-C, kill), stop too: the half-unpacked temp dir
    // is then removed by the next import. (Set after the credential change, which clears it.)
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        anyhow::bail!("the devbox command that started this unpack has ended");
    }
    let root = dest.join("rootfs");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut reader = crate::unpack::decompressed(file)?;
    let opts = crate::unpack::Options {
        preserve_owner: true,
        ..Default::default()
    };
    let stats = match crate::unpack::unpack(&mut reader, &root, &opts, &mut |_| {}) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e.into());
        }
    };
    if stats.entries == 0 {
        let _ = std::fs::remove_dir_all(&root);
        anyhow::bail!("{source} contains no files: it is not a root filesystem archive");
    }
    // What follows the end-of-archive marker (padding, trailing bytes) is read and dropped.
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    drop(reader);
    let _ = std::io::copy(&mut stdin.lock(), &mut std::io::sink());
    // An image layout (a container image saved as files: Rocky Linux's container tarballs,
    // `podman save`) is not a root: the caller reads it as an image instead.
    if is_layout_dir(&root) {
        let _ = std::fs::remove_dir_all(&root);
        std::process::exit(EXIT_IS_LAYOUT);
    }
    if let Err(why) = crate::unpack::check_usable_root(&root) {
        let _ = std::fs::remove_dir_all(&root);
        anyhow::bail!("no usable root file system: {why}");
    }
    if stats.devices_skipped > 0 {
        crate::ui::note(format_args!(
            "Skipped {} device nodes (boxes use the host's /dev)",
            stats.devices_skipped
        ));
    }
    if let Some(p) = &stats.stripped_prefix {
        let beside = if stats.dropped.is_empty() {
            String::new()
        } else {
            format!(" (left out beside it: {})", stats.dropped.join(", "))
        };
        eprintln!(
            "The archive keeps its root in {p}/: unpacked that directory as the root{beside}"
        );
    }
    Ok(())
}

/// Exit status of `__unpack` for an archive that holds an image layout rather than a root.
pub const EXIT_IS_LAYOUT: i32 = 4;

/// Whether an unpacked archive is an OCI image layout or a docker-archive.
fn is_layout_dir(root: &Path) -> bool {
    let has = |n: &str| std::fs::symlink_metadata(root.join(n)).is_ok();
    (has("oci-layout") && has("index.json")) || (has("manifest.json") && !has("etc"))
}

/// `devbox __unpack-layers SPEC DEST`: applies an OCI image's layers, lowest first, onto
/// DEST/rootfs as root of devbox's user namespace. The layers' blobs come on stdin one after
/// the other, each exactly its size (SPEC lists them); each layer's uncompressed digest is
/// checked against the image config's diff_id as it streams.
pub fn unpack_layers_helper(spec: &Path, dest: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let layers: Vec<LayerSpec> = serde_json::from_str(
        &std::fs::read_to_string(spec)
            .with_context(|| format!("cannot read {}", spec.display()))?,
    )?;
    let parent = nix::unistd::getppid();
    crate::runtime::holder::as_namespace_root(&dirs)?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        anyhow::bail!("the devbox command that started this unpack has ended");
    }
    let root = dest.join("rootfs");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let opts = crate::unpack::Options {
        preserve_owner: true,
        ..Default::default()
    };
    let mut input = {
        use std::os::fd::AsFd;
        std::fs::File::from(
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .context("cannot read the layers from stdin")?,
        )
    };
    let mut devices = 0;
    for (i, l) in layers.iter().enumerate() {
        let layer = crate::oci::Layer {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            path: PathBuf::from(format!("layer {} ({})", i + 1, l.digest)),
            diff_id: l.diff_id.clone(),
        };
        let mut blob = (&mut input).take(l.size);
        let result = (|| -> Result<crate::unpack::Stats> {
            let mut reader = crate::oci::layer_stream(
                &layer,
                std::io::BufReader::with_capacity(256 * 1024, &mut blob),
            )?;
            let stats = crate::unpack::unpack_layer(&mut reader, &root, &opts, &mut |_| {})?;
            // The tar reader stops at the end-of-archive marker: read the rest, so the
            // uncompressed digest is checked against the config's diff_id at EOF.
            std::io::copy(&mut reader, &mut std::io::sink())?;
            Ok(stats)
        })();
        let result = result.and_then(|stats| {
            // Bytes of the blob after the compressed stream's end are read and dropped.
            std::io::copy(&mut blob, &mut std::io::sink())?;
            if blob.limit() > 0 {
                bail!(
                    "its blob ended after {} of {} bytes",
                    l.size - blob.limit(),
                    l.size
                );
            }
            Ok(stats)
        });
        match result {
            Ok(stats) => devices += stats.devices_skipped,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(e.context(format!(
                    "layer {} of {} ({})",
                    i + 1,
                    layers.len(),
                    l.digest
                )));
            }
        }
    }
    if let Err(why) = crate::unpack::check_usable_root(&root) {
        let _ = std::fs::remove_dir_all(&root);
        bail!("no usable root file system: {why}");
    }
    if devices > 0 {
        crate::ui::note(format_args!(
            "Skipped {devices} device nodes (boxes use the host's /dev)"
        ));
    }
    Ok(())
}

/// `devbox __rmtree PATH`: deletes PATH (inside devbox's data or cache dirs only).
pub fn rmtree_helper(path: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let abs = std::path::absolute(path)?;
    if !(abs.starts_with(&dirs.data) || abs.starts_with(&dirs.cache)) || abs == dirs.data {
        bail!(
            "refusing to remove {}: not inside devbox's store",
            abs.display()
        );
    }
    crate::runtime::holder::as_namespace_root(&dirs)?;
    match std::fs::remove_dir_all(&abs) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", abs.display())),
    }
}

/// `devbox __clone FROM TO`: copies box layer FROM to TO (both inside devbox's box store, TO
/// new) as root of devbox's user namespace, keeping owners, modes, times, xattrs (overlay's
/// opaque marks) and whiteouts (character devices 0/0, which unprivileged processes may make).
pub fn clone_helper(from: &Path, to: &Path) -> Result<()> {
    let dirs = Dirs::from_env()?;
    let (from, to) = (std::path::absolute(from)?, std::path::absolute(to)?);
    for p in [&from, &to] {
        if !p.starts_with(&dirs.boxes) || p == &dirs.boxes {
            bail!(
                "refusing to copy {}: not inside devbox's boxes",
                p.display()
            );
        }
    }
    crate::runtime::holder::as_namespace_root(&dirs)?;
    let status = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(&from)
        .arg(&to)
        .stdin(Stdio::null())
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("cannot copy {} to {}", from.display(), to.display());
    }
    Ok(())
}

/// Disk used by a tree (allocated blocks, hard links counted once). Needs namespace root for
/// trees holding subordinate-owned directories.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
