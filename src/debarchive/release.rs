//! A suite's `InRelease`: its OpenPGP clear-text signature checked against a keyring, then
//! the signed text read as a Release file (the index files of the suite with their SHA256
//! sums and sizes). Only the signed text is ever parsed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use pgp::cleartext::CleartextSignedMessage;
use pgp::types::PublicKeyTrait;
use pgp::{Deserializable, SignedPublicKey};

use super::deb822;

/// The keys of a keyring file: binary (`.gpg`, `.pgp`) or ASCII-armored (`.asc`). Keys the
/// OpenPGP library cannot read (old formats, algorithms it lacks) are passed over; a file
/// with no usable key at all is an error.
pub fn load_keyring(path: &Path) -> Result<Vec<SignedPublicKey>> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read the keyring {} (install the distribution's archive keyring package, such as debian-archive-keyring or ubuntu-keyring, or name a keyring under [archive_keyrings] in your configuration)",
            path.display()
        )
    })?;
    let keys = parse_keys(&bytes);
    if keys.is_empty() {
        bail!(
            "{} holds no OpenPGP public key devbox can read",
            path.display()
        );
    }
    Ok(keys)
}

pub fn parse_keys(bytes: &[u8]) -> Vec<SignedPublicKey> {
    let armored = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN PGP"));
    let iter: Box<dyn Iterator<Item = pgp::errors::Result<SignedPublicKey>>> = if armored {
        match SignedPublicKey::from_armor_many(bytes) {
            Ok((it, _)) => it,
            Err(_) => return Vec::new(),
        }
    } else {
        SignedPublicKey::from_bytes_many(bytes)
    };
    iter.filter_map(|k| k.ok()).collect()
}

/// Checks the clear-text signature of an `InRelease` file: at least one of its signatures
/// must verify with a key of `keys` (primary key or subkey) that had not expired when it
/// signed. Returns the signed text (LF line ends).
pub fn verify(inrelease: &str, keys: &[SignedPublicKey], what: &str) -> Result<String> {
    let (msg, _) = CleartextSignedMessage::from_string(inrelease).map_err(|e| {
        anyhow!("{what} is not an OpenPGP clear-signed file ({e}); an unsigned Release is not used")
    })?;
    let text = msg.signed_text();
    let mut issuers = Vec::new();
    for sig in msg.signatures() {
        let s = &sig.signature;
        let ids: Vec<String> = s.issuer().iter().map(|k| format!("{k:X}")).collect();
        let created = s.created().copied();
        for key in keys {
            if let (Some(end), Some(c)) = (key.expires_at(), created) {
                if c > end {
                    continue;
                }
            }
            let matches = |id: String| ids.is_empty() || ids.contains(&id);
            if matches(format!("{:X}", key.key_id())) && sig.verify(key, text.as_bytes()).is_ok() {
                return Ok(text.replace("\r\n", "\n"));
            }
            for sub in &key.public_subkeys {
                if matches(format!("{:X}", sub.key_id()))
                    && sig.verify(&sub.key, text.as_bytes()).is_ok()
                {
                    return Ok(text.replace("\r\n", "\n"));
                }
            }
        }
        issuers.extend(ids);
    }
    if issuers.is_empty() {
        issuers.push("unknown".into());
    }
    bail!(
        "{what}: no signature verifies with a key of the keyring (signed by key {}), so nothing was kept",
        issuers.join(", ")
    )
}

/// One index file the Release lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub sha256: String,
    pub size: u64,
}

/// The parts of a Release file devbox uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub suite: String,
    pub codename: String,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// Path below `dists/SUITE/` → sum and size (the SHA256 list).
    pub files: BTreeMap<String, IndexFile>,
}

pub fn parse(text: &str) -> Result<Release> {
    let stanza = deb822::parse(text)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the Release file is empty"))?;
    let words = |k| -> Vec<String> {
        stanza
            .get(k)
            .map(|v| v.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    let mut files = BTreeMap::new();
    for line in stanza.get("SHA256").unwrap_or("").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [sum, size, name] = f[..] {
            if let Ok(size) = size.parse() {
                files.insert(
                    name.to_string(),
                    IndexFile {
                        sha256: sum.to_ascii_lowercase(),
                        size,
                    },
                );
            }
        }
    }
    if files.is_empty() {
        bail!("the Release file lists no SHA256 sums");
    }
    Ok(Release {
        suite: stanza.get("Suite").unwrap_or("").to_string(),
        codename: stanza.get("Codename").unwrap_or("").to_string(),
        architectures: words("Architectures"),
        components: words("Components"),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_fields_and_sums() {
        let r = parse("Origin: Debian\nSuite: stable\nCodename: trixie\nArchitectures: all amd64\nComponents: main contrib\nMD5Sum:\n 00 12 main/binary-amd64/Packages\nSHA256:\n AB 12 main/binary-amd64/Packages\n cd 34 main/binary-amd64/Packages.xz\n").unwrap();
        assert_eq!(r.codename, "trixie");
        assert_eq!(r.architectures, ["all", "amd64"]);
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.files["main/binary-amd64/Packages"].sha256, "ab");
        assert_eq!(r.files["main/binary-amd64/Packages.xz"].size, 34);
        assert!(parse("Suite: x\n").is_err());
    }

    #[test]
    fn unsigned_text_is_refused() {
        let e = verify("Suite: x\n", &[], "InRelease").unwrap_err();
        assert!(
            format!("{e}").contains("not an OpenPGP clear-signed file"),
            "{e}"
        );
    }
}
