//! Store images as OCI images: their layout, `commit`, `save`, and names given by `--tag`.
//!
//! The store keeps images as unpacked trees. To push or save one, or to make a new image on
//! top of it, it also needs blobs: `images-v1/<id>/oci/` is an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/`) kept beside `rootfs/`, made once ([`ensure_layout`]):
//! - an image made by `commit` or loaded from an archive has it from the start;
//! - an image pulled from a registry gets the very blobs it was pulled as, from the blob
//!   cache, so its manifest digest stays the registry's;
//! - any other image (a rootfs tarball, or a pull whose blobs were pruned) gets one gzip layer
//!   packed from its tree and a config with its environment.
//!
//! `commit` makes a new image: the box's image's layers plus the box's own layer (its overlay
//! upper dir, packed by `__pack --upper`: owners as in-box ids, whiteouts and opaque
//! directories in OCI's form), a config that is the image's with one more diff_id and history
//! entry. Its rootfs is made the way a pulled image's is, by applying those layers, so a box
//! made from it sees exactly what a registry's client sees.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{short, Staging};
use crate::oci::manifest_types as mt;
use crate::paths::{private_dir, write_atomic, Dirs};
use crate::progress::Reporter;
use crate::state::ImageRecord;

/// The layout's directory in an image's store entry.
pub const LAYOUT_DIR: &str = "oci";

/// A blob of an image: a layer or its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// An image's layout in the store, read.
#[derive(Debug, Clone)]
pub struct StoreLayout {
    /// The layout directory.
    pub dir: PathBuf,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<String>,
}

impl StoreLayout {
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// The blobs a registry needs before the manifest: layers, then the config.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut all = self.layers.clone();
        all.push(self.config.clone());
        all
    }

    /// The layers as the layer helper applies them.
    fn oci_layers(&self) -> Vec<crate::oci::Layer> {
        self.layers
            .iter()
            .zip(&self.diff_ids)
            .map(|(l, diff_id)| crate::oci::Layer {
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                path: self.blob_path(&l.digest),
                diff_id: diff_id.clone(),
            })
            .collect()
    }
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    crate::pack::hex_digest(sha2::Sha256::digest(data).as_slice())
}

/// Reads the layout in `dir` (one image: the first manifest of `index.json`).
pub fn read_layout(dir: &Path) -> Result<StoreLayout> {
    let index: Index = serde_json::from_slice(
        &std::fs::read(dir.join("index.json"))
            .with_context(|| format!("cannot read {}/index.json", dir.display()))?,
    )
    .with_context(|| format!("{}/index.json", dir.display()))?;
    let desc = index
        .manifests
        .first()
        .with_context(|| format!("{}/index.json lists no image", dir.display()))?;
    let manifest = std::fs::read(blob_path(dir, &desc.digest))
        .with_context(|| format!("cannot read the manifest {}", desc.digest))?;
    if sha256_digest(&manifest) != desc.digest {
        bail!(
            "the manifest {} in {} is damaged",
            desc.digest,
            dir.display()
        );
    }
    let m: Manifest = serde_json::from_slice(&manifest).context("the image's manifest")?;
    let config = std::fs::read(blob_path(dir, &m.config.digest))
        .with_context(|| format!("cannot read the config {}", m.config.digest))?;
    if sha256_digest(&config) != m.config.digest {
        bail!(
            "the config {} in {} is damaged",
            m.config.digest,
            dir.display()
        );
    }
    let parsed = crate::oci::parse_config(&config).map_err(|e| anyhow::anyhow!(e))?;
    if parsed.diff_ids.len() != m.layers.len() {
        bail!(
            "the image in {} lists {} layers and {} diff_ids",
            dir.display(),
            m.layers.len(),
            parsed.diff_ids.len()
        );
    }
    Ok(StoreLayout {
        dir: dir.to_path_buf(),
        manifest_type: m
            .media_type
            .clone()
            .unwrap_or_else(|| desc.media_type.clone()),
        manifest,
        manifest_digest: desc.digest.clone(),
        config: m.config,
        layers: m.layers,
        diff_ids: parsed.diff_ids,
    })
}

/// The layout of store image `rec`, made first if it has none (see the module's text).
pub fn ensure_layout(dirs: &Dirs, rec: &ImageRecord, r: &dyn Reporter) -> Result<StoreLayout> {
    let dir = dirs.image_dir(&rec.id).join(LAYOUT_DIR);
    if dir.join("index.json").is_file() {
        return read_layout(&dir);
    }
    let staging = Staging::begin(dirs)?;
    let work = staging.tmp.join(LAYOUT_DIR);
    std::fs::create_dir_all(work.join("blobs/sha256"))?;
    match from_blob_cache(dirs, rec, &work) {
        Ok(true) => r.step(&format!(
            "Keeping the blobs image {} was pulled as",
            short(&rec.id)
        )),
        Ok(false) => pack_image(dirs, rec, &work, r)?,
        Err(e) => {
            crate::ui::detail(format_args!("the cached blobs are not usable: {e:#}"));
            pack_image(dirs, rec, &work, r)?;
        }
    }
    read_layout(&work)?;
    {
        let _store = super::store_lock(dirs)?;
        if super::load(dirs, &rec.id).is_none() {
            bail!("image {} was removed meanwhile", short(&rec.id));
        }
        if !dir.join("index.json").is_file() {
            std::fs::rename(&work, &dir)
                .with_context(|| format!("cannot move the layout to {}", dir.display()))?;
        }
    }
    drop(staging);
    read_layout(&dir)
}

/// Puts the blobs a pulled image came as (manifest, config, layers) from the blob cache into
/// `work`; false when the image was not pulled or a blob is gone.
fn from_blob_cache(dirs: &Dirs, rec: &ImageRecord, work: &Path) -> Result<bool> {
    let Some(digest) = &rec.digest else {
        return Ok(false);
    };
    // The blob cache is `blobs-v1/sha256/<hex>` (a layout's blobs are `blobs/sha256/<hex>`).
    let cached = |d: &str| {
        dirs.cache
            .join("blobs-v1/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let Ok(manifest) = std::fs::read(cached(digest)) else {
        return Ok(false);
    };
    if &sha256_digest(&manifest) != digest {
        return Ok(false);
    }
    let m: Manifest = serde_json::from_slice(&manifest)?;
    if m.config.digest.trim_start_matches("sha256:") != rec.id {
        return Ok(false);
    }
    for d in m.layers.iter().chain(std::iter::once(&m.config)) {
        let from = cached(&d.digest);
        match std::fs::metadata(&from) {
            Ok(meta) if meta.len() == d.size => {}
            _ => return Ok(false),
        }
        link_or_copy(&from, &blob_path(work, &d.digest))?;
    }
    write_atomic(&blob_path(work, digest), &manifest)?;
    let media_type = m
        .media_type
        .clone()
        .unwrap_or_else(|| mt::OCI_MANIFEST.to_string());
    write_index(work, digest, manifest.len() as u64, &media_type, None)?;
    Ok(true)
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        std::fs::rename(&tmp, to)?;
    }
    Ok(())
}

/// An image without blobs: its tree as one gzip layer, a config with its environment.
fn pack_image(dirs: &Dirs, rec: &ImageRecord, work: &Path, r: &dyn Reporter) -> Result<()> {
    r.step(&format!(
        "Packing image {} ({}) as a layer",
        short(&rec.id),
        rec.source
    ));
    let blobs = work.join("blobs/sha256");
    let layer = crate::pack::pack_layer(&dirs.image_dir(&rec.id).join("rootfs"), false, &blobs, r)?;
    let now = crate::state::now_rfc3339();
    let host = crate::oci::Platform::host();
    let mut config = serde_json::json!({
        "created": now,
        "architecture": host.architecture,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": now, "created_by": format!("devbox: image {}", rec.source)}],
    });
    if host.architecture.starts_with("arm") {
        if let Some(v) = &host.variant {
            config["variant"] = v.clone().into();
        }
    }
    if !rec.env.is_empty() {
        config["config"]["Env"] = rec.env.clone().into();
    }
    let layers = vec![Descriptor {
        media_type: crate::pack::GZIP_LAYER.into(),
        digest: layer.digest,
        size: layer.size,
        annotations: Default::default(),
    }];
    write_image(work, &serde_json::to_vec(&config)?, layers, None)?;
    Ok(())
}

/// Writes config, manifest and index.json of an image whose layers are in `work` already.
/// Returns (manifest digest, config digest).
fn write_image(
    work: &Path,
    config: &[u8],
    layers: Vec<Descriptor>,
    name: Option<&str>,
) -> Result<(String, String)> {
    let config_digest = sha256_digest(config);
    write_atomic(&blob_path(work, &config_digest), config)?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(mt::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: mt::OCI_CONFIG.into(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            annotations: Default::default(),
        },
        layers,
    };
    let body = serde_json::to_vec(&m)?;
    let digest = sha256_digest(&body);
    write_atomic(&blob_path(work, &digest), &body)?;
    write_index(work, &digest, body.len() as u64, mt::OCI_MANIFEST, name)?;
    Ok((digest, config_digest))
}

fn write_index(
    work: &Path,
    digest: &str,
    size: u64,
    media_type: &str,
    name: Option<&str>,
) -> Result<()> {
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(n) = name {
        annotations.insert(
            "org.opencontainers.image.ref.name".to_string(),
            n.to_string(),
        );
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(mt::OCI_INDEX.into()),
        manifests: vec![Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
            annotations,
        }],
    };
    write_atomic(&work.join("index.json"), &serde_json::to_vec(&index)?)?;
    write_atomic(
        &work.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(())
}

/// Makes `dst` the layout of an image read from an archive's layout in `src` (an OCI layout or
/// a docker-archive): its layers and config, and its manifest, or for a docker-archive (which
/// has none) an OCI manifest of the same blobs. Returns the manifest's digest.
pub fn keep_layout(
    src: &Path,
    manifest_digest: Option<&str>,
    config_digest: &str,
    layers: &[crate::oci::Layer],
    dst: &Path,
) -> Result<String> {
    std::fs::create_dir_all(dst.join("blobs/sha256"))?;
    for l in layers {
        link_or_copy(&l.path, &blob_path(dst, &l.digest))?;
    }
    let hex = config_digest.trim_start_matches("sha256:");
    let config_src = [
        blob_path(src, config_digest),
        src.join(format!("{hex}.json")),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .context("the archive's config is not where its manifest says")?;
    let config = std::fs::read(&config_src)?;
    if sha256_digest(&config) != config_digest {
        bail!("the archive's config does not match its digest");
    }
    if let Some(md) = manifest_digest {
        let body = std::fs::read(blob_path(src, md))?;
        if sha256_digest(&body) != md {
            bail!("the archive's manifest does not match its digest");
        }
        write_atomic(&blob_path(dst, config_digest), &config)?;
        write_atomic(&blob_path(dst, md), &body)?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&body)?["mediaType"]
            .as_str()
            .unwrap_or(mt::OCI_MANIFEST)
            .to_string();
        write_index(dst, md, body.len() as u64, &media_type, None)?;
        return Ok(md.to_string());
    }
    let descs = layers
        .iter()
        .map(|l| Descriptor {
            media_type: oci_layer_type(&l.media_type),
            digest: l.digest.clone(),
            size: l.size,
            annotations: Default::default(),
        })
        .collect();
    let (md, _) = write_image(dst, &config, descs, None)?;
    Ok(md)
}

/// The OCI media type of a layer (Docker's names for the same bytes mapped to OCI's).
fn oci_layer_type(t: &str) -> String {
    match crate::oci::layer_compression_of(t) {
        Some(crate::oci::Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
        Some(crate::oci::Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
        Some(crate::oci::Compression::None) => "application/vnd.oci.image.layer.v1.tar",
        None => t,
    }
    .to_string()
}

/// `devbox commit BOX [--tag NAME]`: a new image in the store from box `name`.
pub fn commit(dirs: &Dirs, name: &str, tag: Option<&str>, r: &dyn Reporter) -> Result<ImageRecord> {
    crate::state::existing(dirs, name)?;
    if let Some(t) = tag {
        validate_tag(t)?;
    }
    let cfg = crate::state::BoxConfig::load(dirs, name)?;
    if cfg.provisioning {
        bail!("box '{name}' is still being provisioned; commit it when its setup has finished");
    }
    let base = super::load(dirs, &cfg.image_id).with_context(|| {
        format!(
            "the image of box '{name}' ({}) is no longer in the store",
            short(&cfg.image_id)
        )
    })?;
    if crate::runtime::status_now(dirs, name)?.in_use() {
        r.step(&format!(
            "Box '{name}' is running: its layer is committed as it is on disk now (what its processes write meanwhile may be caught half-way; `devbox stop {name}` first for a still image)"
        ));
    }
    let base_layout = ensure_layout(dirs, &base, r)?;
    let staging = Staging::begin(dirs)?;
    let work = staging.tmp.join(LAYOUT_DIR);
    let blobs = work.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let mut layers = Vec::new();
    for l in &base_layout.layers {
        link_or_copy(
            &base_layout.blob_path(&l.digest),
            &blob_path(&work, &l.digest),
        )?;
        layers.push(Descriptor {
            media_type: oci_layer_type(&l.media_type),
            ..l.clone()
        });
    }
    r.step(&format!("Packing the layer of box '{name}'"));
    let upper = dirs.box_dir(name).join("upper");
    let packed = crate::pack::pack_layer(&upper, true, &blobs, r)?;
    layers.push(Descriptor {
        media_type: crate::pack::GZIP_LAYER.into(),
        digest: packed.digest.clone(),
        size: packed.size,
        annotations: Default::default(),
    });
    let base_config = std::fs::read(base_layout.blob_path(&base_layout.config.digest))?;
    let mut config: serde_json::Value = serde_json::from_slice(&base_config)?;
    let now = crate::state::now_rfc3339();
    config["created"] = now.clone().into();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("the image's config has no rootfs.diff_ids")?;
    diff_ids.push(packed.diff_id.clone().into());
    let entry = serde_json::json!({"created": now, "created_by": format!("devbox commit {name}")});
    match config.get_mut("history").and_then(|h| h.as_array_mut()) {
        Some(h) => h.push(entry),
        None => config["history"] = serde_json::json!([entry]),
    }
    let (manifest_digest, config_digest) =
        write_image(&work, &serde_json::to_vec(&config)?, layers, tag)?;
    let layout = read_layout(&work)?;
    let source = match tag {
        Some(t) => t.to_string(),
        None => format!("commit of box {name}"),
    };
    let env = crate::oci::parse_config(&serde_json::to_vec(&config)?)
        .map(|c| c.env)
        .unwrap_or_default();
    let oci_layers = layout.oci_layers();
    let rec = super::apply_layers(
        dirs,
        &config_digest,
        &oci_layers,
        &source,
        Some(manifest_digest),
        &env,
        r,
        &mut |sink| super::feed_files(&oci_layers, sink),
        Some(&|dst: &Path| {
            std::fs::rename(&work, dst)?;
            Ok(None)
        }),
    )?;
    drop(staging);
    let mut rec = rec;
    let base_source = base.base_source.clone().or(Some(base.source.clone()));
    if rec.base_source.is_none() && base_source.is_some() {
        rec.base_source = base_source;
        write_atomic(
            &dirs.image_dir(&rec.id).join("image.toml"),
            toml::to_string(&rec)?.as_bytes(),
        )?;
    }
    if let Some(t) = tag {
        set_tag(dirs, t, &rec.id)?;
    }
    Ok(rec)
}

/// `devbox image save`: the image as an OCI image archive (an image layout in a tar, with a
/// `manifest.json` as `docker save` writes beside it, so `docker load` takes it too).
pub fn save(dirs: &Dirs, rec: &ImageRecord, file: &Path, r: &dyn Reporter) -> Result<()> {
    let layout = ensure_layout(dirs, rec, r)?;
    let name = match (is_tag(&rec.source), rec.source.contains(':')) {
        (true, true) => Some(rec.source.clone()),
        (true, false) => Some(format!("{}:latest", rec.source)),
        _ => None,
    };
    let abs = std::path::absolute(file)?;
    let parent = abs.parent().context("no directory for the archive")?;
    let tmp = tempfile::Builder::new()
        .prefix(".devbox-save-")
        .tempfile_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
        tar.mode(tar::HeaderMode::Deterministic);
        let mut add = |path: &str, data: &[u8]| -> Result<()> {
            let mut h = file_header(data.len() as u64);
            tar.append_data(&mut h, path, data)?;
            Ok(())
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(n) = &name {
            annotations.insert("org.opencontainers.image.ref.name".to_string(), n.clone());
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(mt::OCI_INDEX.into()),
            manifests: vec![Descriptor {
                media_type: layout.manifest_type.clone(),
                digest: layout.manifest_digest.clone(),
                size: layout.manifest.len() as u64,
                annotations,
            }],
        };
        add("index.json", &serde_json::to_vec(&index)?)?;
        let rel = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let docker = serde_json::json!([{
            "Config": rel(&layout.config.digest),
            "RepoTags": name.iter().collect::<Vec<_>>(),
            "Layers": layout.layers.iter().map(|l| rel(&l.digest)).collect::<Vec<_>>(),
        }]);
        add("manifest.json", &serde_json::to_vec(&docker)?)?;
        add(&rel(&layout.manifest_digest), &layout.manifest)?;
        for b in layout.blobs() {
            let path = layout.blob_path(&b.digest);
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut h = file_header(b.size);
            tar.append_data(&mut h, rel(&b.digest), &mut f)?;
        }
        tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    }
    // As any new file of the user's (the temp file was made 0600).
    crate::paths::set_umask_mode(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&abs)
        .with_context(|| format!("cannot write {}", abs.display()))?;
    Ok(())
}

/// The header of a plain file of an archive: root's, 0644, time 0 (every field set: readers
/// refuse empty numeric fields).
fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Whether `s` can be a `--tag` name: `NAME[:TAG]`, lowercase name, no `/` (which would make
/// it a registry's reference).
fn is_tag(s: &str) -> bool {
    let (name, tag) = match s.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (s, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let tag_ok = tag.map_or(true, |t| {
        !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    });
    name_ok && tag_ok
}

fn validate_tag(t: &str) -> Result<()> {
    if !is_tag(t) {
        bail!("invalid image name {t:?}: a name is NAME[:TAG], NAME of lowercase letters, digits, '.', '_' and '-' (no '/': to publish under a registry's name, use `devbox image push`)");
    }
    Ok(())
}

fn tags_dir(dirs: &Dirs) -> PathBuf {
    dirs.data.join("tags-v1")
}

fn tag_file(dirs: &Dirs, tag: &str) -> PathBuf {
    let full = if tag.contains(':') {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    };
    tags_dir(dirs).join(full.replace(':', "@"))
}

fn set_tag(dirs: &Dirs, tag: &str, id: &str) -> Result<()> {
    private_dir(&tags_dir(dirs))?;
    write_atomic(&tag_file(dirs, tag), format!("{id}\n").as_bytes())
}

/// The store image named `name` by `commit --tag`, if any.
pub fn tagged(dirs: &Dirs, name: &str) -> Option<ImageRecord> {
    if !is_tag(name) {
        return None;
    }
    let id = std::fs::read_to_string(tag_file(dirs, name)).ok()?;
    super::load(dirs, id.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names() {
        for ok in ["app", "app:v1", "my-app.2:1.0_rc", "0x"] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", "App", "a/b", "a:", ":v1", "a:b:c", "./x", "a b"] {
            assert!(!is_tag(bad), "{bad}");
        }
    }

    #[test]
    fn docker_layer_types_become_oci() {
        assert_eq!(
            oci_layer_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            oci_layer_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}
