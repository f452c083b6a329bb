//! The `ar` container of a `.deb`: `debian-binary`, `control.tar.*`, `data.tar.*`. Only what
//! reading a package's files needs: the members in order, streamed.

use std::io::{self, Read};

use anyhow::{bail, Context, Result};

const MAGIC: &[u8; 8] = b"!<arch>\n";

/// A member's header: its name (GNU `name/` form trimmed) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub size: u64,
}

fn header<R: Read>(r: &mut R) -> Result<Option<Member>> {
    let mut h = [0u8; 60];
    let mut n = 0;
    while n < h.len() {
        match r.read(&mut h[n..]) {
            Ok(0) if n == 0 => return Ok(None),
            Ok(0) => bail!("the ar archive ends inside a member header"),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if &h[58..60] != b"`\n" {
        bail!("a member header of the ar archive is damaged");
    }
    let name = String::from_utf8_lossy(&h[..16])
        .trim_end()
        .trim_end_matches('/')
        .to_string();
    let size = std::str::from_utf8(&h[48..58])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .context("a member of the ar archive has no valid size")?;
    Ok(Some(Member { name, size }))
}

/// Reads a `.deb` up to its `data.tar.*` member and returns that member's name and a reader
/// of exactly its bytes. The format version (`debian-binary`, first) must be 2.x.
pub fn data_member<R: Read>(mut r: R) -> Result<(String, io::Take<R>)> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .context("the file is too short to be a .deb")?;
    if &magic != MAGIC {
        bail!("not a .deb (no ar archive signature)");
    }
    let mut first = true;
    while let Some(m) = header(&mut r)? {
        if first {
            if m.name != "debian-binary" || m.size > 64 {
                bail!("not a .deb: its first member is {:?}", m.name);
            }
            let mut v = vec![0u8; m.size as usize];
            r.read_exact(&mut v)?;
            if !v.starts_with(b"2.") {
                bail!(
                    "unsupported .deb format {:?}",
                    String::from_utf8_lossy(&v).trim()
                );
            }
            if m.size % 2 == 1 {
                io::copy(&mut (&mut r).take(1), &mut io::sink())?;
            }
            first = false;
            continue;
        }
        if m.name.starts_with("data.tar") {
            return Ok((m.name, r.take(m.size)));
        }
        let skip = m.size + m.size % 2;
        let skipped = io::copy(&mut (&mut r).take(skip), &mut io::sink())?;
        if skipped < m.size {
            bail!("the .deb ends inside its member {}", m.name);
        }
    }
    bail!("the .deb has no data.tar member")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An ar archive of (name, bytes) members.
    pub fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, data) in members {
            out.extend(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    name,
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn finds_the_data_member() {
        let deb = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", b"abc"),
            ("data.tar.zst/", b"DATA!"),
        ]);
        let (name, mut r) = data_member(&deb[..]).unwrap();
        assert_eq!(name, "data.tar.zst");
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "DATA!");
    }

    #[test]
    fn refuses_what_is_not_a_deb() {
        assert!(data_member(&b"hello"[..]).is_err());
        let no_data = ar(&[("debian-binary", b"2.0\n"), ("control.tar.xz", b"abc")]);
        assert!(format!("{}", data_member(&no_data[..]).unwrap_err()).contains("no data.tar"));
        let v3 = ar(&[("debian-binary", b"3.0\n"), ("data.tar.xz", b"x")]);
        assert!(data_member(&v3[..]).is_err());
        let mut cut = ar(&[("debian-binary", b"2.0\n"), ("control.tar.xz", b"abcdef")]);
        cut.truncate(cut.len() - 3);
        assert!(data_member(&cut[..]).is_err());
    }
}
