//! Image layouts on disk: an OCI image layout (`oci-layout`, `index.json`, `blobs/`) or a
//! docker-archive (`manifest.json` with its config and layer tars), as some distributions ship
//! their container images. Read into the same description a registry pull gives.

use std::path::{Path, PathBuf};

use super::manifest::{
    parse_config, parse_manifest, select_platform, ImageConfig, Manifest, Platform,
};
use super::Layer;

/// What an image layout holds, ready to be applied.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub manifest_digest: Option<String>,
    pub config_digest: String,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
}

/// True when `names` (top-level entry names of an archive) look like an image layout.
pub fn is_layout_entry(name: &str) -> bool {
    matches!(name, "oci-layout" | "index.json" | "manifest.json")
}

fn sha256_file(path: &Path) -> Result<String, String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!(
        "sha256:{}",
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, String> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("bad digest {digest:?}"))?;
    if algo != "sha256" || hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("unsupported digest {digest:?}"));
    }
    Ok(dir.join("blobs").join(algo).join(hex))
}

/// Reads a blob, checking it against its digest.
fn verified(dir: &Path, digest: &str) -> Result<PathBuf, String> {
    let p = blob_path(dir, digest)?;
    let actual = sha256_file(&p)?;
    if actual != digest {
        return Err(format!(
            "blob {digest} is damaged: its content hashes to {actual}"
        ));
    }
    Ok(p)
}

/// Reads the image in layout directory `dir` (an unpacked layout archive).
pub fn read(dir: &Path) -> Result<LayoutImage, String> {
    if dir.join("index.json").is_file() && dir.join("blobs").is_dir() {
        read_oci(dir)
    } else if dir.join("manifest.json").is_file() {
        read_docker(dir)
    } else {
        Err(
            "neither an OCI image layout (index.json, blobs/) nor a docker-archive (manifest.json)"
                .into(),
        )
    }
}

fn read_oci(dir: &Path) -> Result<LayoutImage, String> {
    let index = std::fs::read(dir.join("index.json"))
        .map_err(|e| format!("cannot read index.json: {e}"))?;
    let mut manifest = parse_manifest(None, &index)?;
    let mut manifest_digest = None;
    // index.json is an index; follow indexes down to the host platform's image manifest.
    for _ in 0..4 {
        let Manifest::Index(idx) = manifest else {
            break;
        };
        let want = Platform::host();
        let d = if idx.manifests.len() == 1 {
            &idx.manifests[0]
        } else {
            select_platform(&idx.manifests, &want).map_err(|available| {
                format!(
                    "no image for {want} in the layout (it has: {})",
                    available.join(", ")
                )
            })?
        };
        let body = std::fs::read(verified(dir, &d.digest)?).map_err(|e| e.to_string())?;
        manifest_digest = Some(d.digest.clone());
        manifest = parse_manifest(Some(&d.media_type), &body)?;
    }
    let Manifest::Image(m) = manifest else {
        return Err("the layout's indexes nest too deep".into());
    };
    let config_bytes =
        std::fs::read(verified(dir, &m.config.digest)?).map_err(|e| e.to_string())?;
    let config = parse_config(&config_bytes)?;
    if config.diff_ids.len() != m.layers.len() {
        return Err(format!(
            "the config lists {} layers, the manifest {}",
            config.diff_ids.len(),
            m.layers.len()
        ));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in m.layers.iter().zip(&config.diff_ids) {
        layers.push(Layer {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
            path: verified(dir, &d.digest)?,
            diff_id: diff_id.clone(),
        });
    }
    Ok(LayoutImage {
        manifest_digest,
        config_digest: m.config.digest,
        config,
        layers,
    })
}

fn read_docker(dir: &Path) -> Result<LayoutImage, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let text = std::fs::read(dir.join("manifest.json"))
        .map_err(|e| format!("cannot read manifest.json: {e}"))?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&text).map_err(|e| format!("manifest.json: {e}"))?;
    let entry = entries
        .into_iter()
        .next()
        .ok_or("manifest.json lists no image")?;
    let inside = |rel: &str| -> Result<PathBuf, String> {
        let p = Path::new(rel);
        if p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "manifest.json names a path outside the archive: {rel:?}"
            ));
        }
        Ok(dir.join(p))
    };
    let config_path = inside(&entry.config)?;
    let config_digest = sha256_file(&config_path)?;
    let config_bytes = std::fs::read(&config_path).map_err(|e| e.to_string())?;
    let config = parse_config(&config_bytes)?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(format!(
            "the config lists {} layers, manifest.json {}",
            config.diff_ids.len(),
            entry.layers.len()
        ));
    }
    let mut layers = Vec::new();
    for (rel, diff_id) in entry.layers.iter().zip(&config.diff_ids) {
        let path = inside(rel)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("{rel}: {e}"))?
            .len();
        layers.push(Layer {
            digest: sha256_file(&path)?,
            size,
            media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
            path,
            diff_id: diff_id.clone(),
        });
    }
    Ok(LayoutImage {
        manifest_digest: None,
        config_digest,
        config,
        layers,
    })
}
