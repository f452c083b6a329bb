//! Simplestreams, as served by LXC/Incus image servers:
//!
//! ```text
//! ROOT/streams/v1/index.json   {"format": "index:1.0", "index": {"images": {
//!                                 "datatype": "image-downloads", "format": "products:1.0",
//!                                 "path": "streams/v1/images.json",
//!                                 "products": ["debian:trixie:amd64:default", ...]}}}
//! ROOT/streams/v1/images.json  {"products": {"debian:trixie:amd64:default": {
//!                                 "versions": {"20250101_05:24": {"items": {
//!                                   "root.tar.xz": {"ftype": "root.tar.xz",
//!                                     "path": "images/debian/.../rootfs.tar.xz",
//!                                     "sha256": "...", "size": 123}, ...}}}}}}
//! ```
//!
//! A product key is `DISTRO:RELEASE:ARCH:VARIANT`; its newest version (by `version::compare`)
//! that has a `root.tar.xz` item is the image. Paths are relative to ROOT.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::version;

/// The item name (and `ftype`) of a plain root filesystem tarball.
const ROOTFS_ITEM: &str = "root.tar.xz";

#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub index: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Deserialize)]
pub struct IndexEntry {
    #[serde(default)]
    pub datatype: Option<String>,
    pub path: String,
    #[serde(default)]
    pub products: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Products {
    #[serde(default)]
    pub products: BTreeMap<String, Product>,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    #[serde(default)]
    pub versions: BTreeMap<String, ProductVersion>,
}

#[derive(Debug, Deserialize)]
pub struct ProductVersion {
    #[serde(default)]
    pub items: BTreeMap<String, Item>,
}

#[derive(Debug, Deserialize)]
pub struct Item {
    #[serde(default)]
    pub ftype: Option<String>,
    pub path: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Relative to the server root.
    pub path: String,
    pub sha256: Option<String>,
    pub version: String,
}

/// The path (relative to the server root) of the products file that lists `product`.
pub fn products_path(index: &Index, product: &str) -> Result<String, String> {
    let downloads = || {
        index.index.values().filter(|e| {
            e.datatype
                .as_deref()
                .map_or(true, |d| d == "image-downloads")
        })
    };
    if let Some(e) = downloads().find(|e| e.products.iter().any(|p| p == product)) {
        return Ok(e.path.clone());
    }
    // An index that does not list its products: the only image-downloads stream, if one.
    let unlisted: Vec<&IndexEntry> = downloads().filter(|e| e.products.is_empty()).collect();
    if let [only] = unlisted.as_slice() {
        return Ok(only.path.clone());
    }
    let all: Vec<&str> = downloads()
        .flat_map(|e| e.products.iter().map(String::as_str))
        .collect();
    Err(missing_product(product, &all))
}

/// The newest rootfs image of `product`.
pub fn newest(products: &Products, product: &str) -> Result<Image, String> {
    let Some(p) = products.products.get(product) else {
        let all: Vec<&str> = products.products.keys().map(String::as_str).collect();
        return Err(missing_product(product, &all));
    };
    p.versions
        .iter()
        .filter_map(|(v, pv)| {
            pv.items
                .iter()
                .find(|(name, it)| {
                    name.as_str() == ROOTFS_ITEM || it.ftype.as_deref() == Some(ROOTFS_ITEM)
                })
                .map(|(_, it)| (v, it))
        })
        .max_by(|a, b| version::compare(a.0, b.0))
        .map(|(v, it)| Image {
            path: it.path.clone(),
            sha256: it.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            version: v.clone(),
        })
        .ok_or_else(|| format!("the server has no {ROOTFS_ITEM} for {product}"))
}

/// "the server has no X; for DISTRO on ARCH it has: RELEASE, ..." (same distro, arch, variant).
fn missing_product(product: &str, all: &[&str]) -> String {
    let want: Vec<&str> = product.split(':').collect();
    let mut same: Vec<&str> = all
        .iter()
        .filter_map(|p| {
            let f: Vec<&str> = p.split(':').collect();
            (f.len() == 4
                && want.len() == 4
                && f[0] == want[0]
                && f[2] == want[2]
                && f[3] == want[3])
                .then_some(f[1])
        })
        .collect();
    same.sort();
    same.dedup();
    if same.is_empty() {
        format!("the image server does not list {product}")
    } else {
        format!(
            "the image server does not list {product}; for {} on {} it has releases {}",
            want[0],
            want[2],
            same.join(", ")
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const INDEX: &str = r#"{
  "format": "index:1.0",
  "index": {
    "images": {
      "datatype": "image-downloads",
      "format": "products:1.0",
      "path": "streams/v1/images.json",
      "products": [
        "alpine:3.22:amd64:default",
        "debian:bookworm:amd64:cloud",
        "debian:bookworm:amd64:default",
        "debian:bookworm:arm64:default",
        "debian:trixie:amd64:default",
        "debian:trixie:arm64:default"
      ]
    }
  }
}"#;

    pub const SHA_OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    pub const SHA_NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    pub const SHA_ARM: &str = "3333333333333333333333333333333333333333333333333333333333333333";

    /// Shaped like images.linuxcontainers.org's images.json: several products and versions,
    /// lxd/incus items beside the rootfs, a newest build without a rootfs item.
    pub fn images_json() -> String {
        r#"{
  "content_id": "images",
  "datatype": "image-downloads",
  "format": "products:1.0",
  "products": {
    "debian:trixie:amd64:default": {
      "aliases": "debian/trixie/default,debian/trixie,debian/13/default,debian/13",
      "arch": "amd64",
      "distro": "debian",
      "os": "Debian",
      "release": "trixie",
      "release_title": "trixie",
      "requirements": {},
      "variant": "default",
      "versions": {
        "20251126_05:24": {
          "items": {
            "incus.tar.xz": {"ftype": "incus.tar.xz", "path": "images/debian/trixie/amd64/default/20251126_05:24/incus.tar.xz", "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "size": 864,
              "combined_rootxz_sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
            "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/debian/trixie/amd64/default/20251126_05:24/rootfs.tar.xz", "sha256": "SHA_OLD", "size": 92861304}
          }
        },
        "20251128_05:24": {
          "items": {
            "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/debian/trixie/amd64/default/20251128_05:24/rootfs.tar.xz", "sha256": "SHA_NEW", "size": 92871200},
            "rootfs.squashfs": {"ftype": "squashfs", "path": "images/debian/trixie/amd64/default/20251128_05:24/rootfs.squashfs", "sha256": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", "size": 99000000}
          }
        },
        "20251127_05:24": {
          "items": {
            "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/debian/trixie/amd64/default/20251127_05:24/rootfs.tar.xz", "sha256": "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd", "size": 92871000}
          }
        },
        "20251129_05:24": {
          "items": {
            "incus.tar.xz": {"ftype": "incus.tar.xz", "path": "images/debian/trixie/amd64/default/20251129_05:24/incus.tar.xz", "sha256": "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "size": 864}
          }
        }
      }
    },
    "debian:trixie:arm64:default": {
      "arch": "arm64", "distro": "debian", "release": "trixie", "variant": "default",
      "versions": {
        "20251128_05:24": {
          "items": {
            "root.tar.xz": {"ftype": "root.tar.xz", "path": "images/debian/trixie/arm64/default/20251128_05:24/rootfs.tar.xz", "sha256": "SHA_ARM", "size": 90000000}
          }
        }
      }
    },
    "debian:bookworm:amd64:default": {
      "arch": "amd64", "distro": "debian", "release": "bookworm", "variant": "default",
      "versions": {}
    }
  }
}"#
        .replace("SHA_OLD", SHA_OLD)
        .replace("SHA_NEW", SHA_NEW)
        .replace("SHA_ARM", SHA_ARM)
    }

    #[test]
    fn index_names_the_products_file() {
        let index: Index = serde_json::from_str(INDEX).unwrap();
        assert_eq!(
            products_path(&index, "debian:trixie:amd64:default").unwrap(),
            "streams/v1/images.json"
        );
        let e = products_path(&index, "debian:forky:amd64:default").unwrap_err();
        assert!(e.contains("debian:forky:amd64:default"), "{e}");
        assert!(e.contains("bookworm, trixie"), "{e}");
        assert!(!e.contains("3.22"), "{e}");
    }

    #[test]
    fn newest_build_with_a_rootfs_wins() {
        let p: Products = serde_json::from_str(&images_json()).unwrap();
        let img = newest(&p, "debian:trixie:amd64:default").unwrap();
        assert_eq!(
            img,
            Image {
                path: "images/debian/trixie/amd64/default/20251128_05:24/rootfs.tar.xz".into(),
                sha256: Some(SHA_NEW.into()),
                version: "20251128_05:24".into(),
            }
        );
        let arm = newest(&p, "debian:trixie:arm64:default").unwrap();
        assert_eq!(arm.sha256.as_deref(), Some(SHA_ARM));
        let e = newest(&p, "debian:bookworm:amd64:default").unwrap_err();
        assert!(e.contains("no root.tar.xz"), "{e}");
        let e = newest(&p, "debian:sid:amd64:default").unwrap_err();
        assert!(e.contains("bookworm, trixie"), "{e}");
    }

    #[test]
    fn index_without_product_lists() {
        let index: Index = serde_json::from_str(
            r#"{"index": {"images": {"datatype": "image-downloads", "path": "streams/v1/x.json"}}}"#,
        )
        .unwrap();
        assert_eq!(
            products_path(&index, "a:b:amd64:default").unwrap(),
            "streams/v1/x.json"
        );
    }
}
