//! A root file system built from a Debian-format package archive (Debian, Ubuntu), the way
//! debootstrap's minbase variant makes one, for networks that reach an apt mirror but no
//! container registry or image server.
//!
//! 1. Where from (`sources`): `archive_mirrors` of the user configuration, else the host's
//!    own apt configuration when the host runs that distribution. devbox names no mirror.
//! 2. Verified (`release`): the suite's `InRelease` signature against the distribution's
//!    keyring (`archive_keyrings`, the `Signed-By` of the host's entry, or
//!    `/usr/share/keyrings/ID-archive-keyring.{gpg,pgp,asc}`); the `Packages` index against
//!    the Release's SHA256 and size; every `.deb` against the index.
//! 3. Minimal (`depsolve`): Essential, required and apt, with their dependencies.
//! 4. Cached: indexes and `.deb` files in `~/.cache/devbox/debs-v1/` under their sha256,
//!    downloaded in parallel with one progress bar.
//! 5. Made (`install`, the `__bootstrap` helper): every package's `data.tar` unpacked as
//!    in-box root, then `dpkg --install` of them all chrooted into the new root.
//!
//! The image id is a hash over the suite and the sorted `.deb` sums, so the same package set
//! is the same image, found in the store without a download.

pub mod ar;
pub mod deb822;
pub mod depsolve;
pub mod install;
pub mod release;
pub mod sources;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::paths::{private_dir, Dirs};
use crate::progress::{human_bytes, Reporter, Transfer};

/// What a catalog source of kind `archive` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The catalog id (`debian`, `ubuntu`): the key of `archive_mirrors` and of the keyring.
    pub distro: String,
    pub suite: String,
    pub components: Vec<String>,
    /// What the box's `/etc/apt/sources.list` names (`components` and perhaps more).
    pub apt_components: Vec<String>,
    /// The archive's name for the architecture (`amd64`).
    pub arch: String,
}

/// The user's settings for archives: mirror and keyring per distribution.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub mirrors: BTreeMap<String, String>,
    pub keyrings: BTreeMap<String, PathBuf>,
}

impl Settings {
    pub fn from_user_config() -> Result<Settings> {
        use crate::project::{HostEnv, UserConfig};
        let user = UserConfig::load(&HostEnv::current())?;
        Ok(Settings {
            mirrors: user.archive_mirrors,
            keyrings: user.archive_keyrings,
        })
    }
}

/// One package to install: where it is in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deb {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// URL on the mirror.
    pub url: String,
}

/// Everything the bootstrap needs, decided before anything is downloaded: the `__bootstrap`
/// helper's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The image id: sha256 over the distribution, suite, architecture and sorted .deb sums.
    pub id: String,
    pub mirror: String,
    pub suite: String,
    pub components: Vec<String>,
    /// What the box's `/etc/apt/sources.list` names.
    pub apt_components: Vec<String>,
    pub arch: String,
    pub debs: Vec<Deb>,
    /// Where the `.deb` files are (`debs-v1/<sha256>.deb`).
    pub cache: PathBuf,
}

impl Plan {
    pub fn deb_path(&self, d: &Deb) -> PathBuf {
        self.cache.join(format!("{}.deb", d.sha256))
    }

    pub fn describe(&self) -> String {
        format!("{} {} ({})", self.mirror, self.suite, self.arch)
    }
}

/// The cache of verified indexes and packages.
pub fn cache_dir(dirs: &Dirs) -> Result<PathBuf> {
    private_dir(&dirs.cache)?;
    crate::paths::mark_cache_dir(&dirs.cache);
    let d = dirs.cache.join("debs-v1");
    private_dir(&d)?;
    crate::paths::mark_cache_dir(&d);
    Ok(d)
}

/// The mirror and keyring for `distro`, from the user's settings or the host's apt.
fn mirror_and_keyring(distro: &str, settings: &Settings) -> Result<(String, PathBuf)> {
    let os = sources::host_os();
    let host = sources::read_all(Path::new("/etc/apt"));
    let from_host = sources::host_mirror(distro, &os, &host);
    let mirror = match (settings.mirrors.get(distro), from_host) {
        (Some(m), _) => m.trim_end_matches('/').to_string(),
        (None, Some(s)) => {
            crate::ui::detail(format_args!(
                "{distro} archive: {} (from {})",
                s.uri,
                s.file.display()
            ));
            s.uri.clone()
        }
        (None, None) => {
            let why = if os.id == distro {
                "the host's apt configuration (/etc/apt/sources.list, sources.list.d/) has no http(s) entry for it".to_string()
            } else {
                format!(
                    "the host runs {}, so its apt configuration is not for {distro}",
                    if os.id.is_empty() {
                        "an unknown system"
                    } else {
                        &os.id
                    }
                )
            };
            bail!(
                "no {distro} package archive is known: {why}; name a mirror as {distro} = \"http://MIRROR/{distro}\" under [archive_mirrors] in ~/.config/devbox/config.toml"
            );
        }
    };
    let keyring = if let Some(k) = settings.keyrings.get(distro) {
        k.clone()
    } else if let Some(k) = from_host
        .filter(|s| {
            settings
                .mirrors
                .get(distro)
                .map_or(true, |m| m.trim_end_matches('/') == s.uri)
        })
        .and_then(|s| s.signed_by.clone())
        .filter(|k| k.is_file())
    {
        k
    } else {
        let base = Path::new("/usr/share/keyrings");
        ["gpg", "pgp", "asc"]
            .iter()
            .map(|e| base.join(format!("{distro}-archive-keyring.{e}")))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "no keyring for {distro}: /usr/share/keyrings/{distro}-archive-keyring.gpg (or .pgp, .asc) is missing; install the distribution's keyring package, or name a keyring file as {distro} = \"/path/to/keyring.gpg\" under [archive_keyrings] in ~/.config/devbox/config.toml"
                )
            })?
    };
    Ok((mirror, keyring))
}

fn client(url: &str) -> Result<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder()
        .user_agent(concat!("devbox/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(120));
    if is_loopback(url) {
        b = b.no_proxy();
    }
    Ok(b.build()?)
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host == "localhost" || host == "127.0.0.1" || rest.starts_with("[::1]")
}

/// A small file (InRelease, a directory listing) into memory; `Ok(None)` on 404.
fn get_small(url: &str) -> Result<Option<Vec<u8>>> {
    let resp = client(url)?.get(url).send().with_context(|| {
        format!("cannot fetch {url}\n  hint: check your network or proxy settings")
    })?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        bail!("cannot fetch {url}: the server answered {}", resp.status());
    }
    let mut body = Vec::new();
    resp.take(64 << 20)
        .read_to_end(&mut body)
        .with_context(|| format!("reading {url} broke off\n  hint: try again"))?;
    Ok(Some(body))
}

/// Suite names a mirror's `dists/` listing shows (an HTML index, as most mirrors serve).
fn listed_suites(mirror: &str) -> Vec<String> {
    let Ok(Some(body)) = get_small(&format!("{mirror}/dists/")) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&body);
    let mut out = Vec::new();
    for part in text.split("href=\"").skip(1) {
        let link = part.split('"').next().unwrap_or("");
        if let Some(name) = link.strip_suffix('/') {
            if !name.is_empty()
                && !name.contains(['/', '?', '.', ':'])
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
        }
    }
    out
}

fn close_matches(word: &str, candidates: &[String]) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (crate::ui::edit_distance(word, c), c))
        .filter(|(d, c)| {
            *d <= 3.max(word.len() / 3) || c.starts_with(word) || word.starts_with(c.as_str())
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, c)| c.clone()).collect()
}

/// The mirror for `target` and its suite's Release, read from `InRelease` after its signature
/// verified with the distribution's keyring; the suite and architecture checked against it.
/// `r`, when given, is told what is read.
fn signed_release(
    target: &Target,
    settings: &Settings,
    r: Option<&dyn Reporter>,
) -> Result<(String, release::Release)> {
    let (mirror, keyring) = mirror_and_keyring(&target.distro, settings)?;
    let suite = &target.suite;
    let dist = format!("{mirror}/dists/{suite}");
    if let Some(r) = r {
        r.step(&format!(
            "Reading {} {suite} ({}) from the package archive {mirror}",
            target.distro, target.arch
        ));
    }
    let inrelease_url = format!("{dist}/InRelease");
    let Some(body) = get_small(&inrelease_url)? else {
        let listed = listed_suites(&mirror);
        let near = close_matches(suite, &listed);
        let hint = if !near.is_empty() {
            format!("did you mean {}?", near.join(", "))
        } else if !listed.is_empty() {
            format!("the mirror has: {}", listed.join(", "))
        } else {
            "check the suite's name and the mirror".to_string()
        };
        bail!("the archive {mirror} has no suite {suite:?} ({inrelease_url} is not there); {hint}");
    };
    let text = String::from_utf8(body).map_err(|_| anyhow!("{inrelease_url} is not text"))?;
    let keys = release::load_keyring(&keyring)?;
    let signed = release::verify(&text, &keys, &inrelease_url).map_err(|e| {
        anyhow!(
            "{e:#} (keyring {}; if the archive is signed by other keys, name their keyring in [archive_keyrings] of your configuration)",
            keyring.display()
        )
    })?;
    crate::ui::detail(format_args!(
        "{inrelease_url}: signature verified with {}",
        keyring.display()
    ));
    let rel = release::parse(&signed).with_context(|| format!("in {inrelease_url}"))?;
    // A signed Release of another suite served at this one's place (an old release put back,
    // say) is refused, as apt does.
    if (!rel.codename.is_empty() || !rel.suite.is_empty())
        && rel.codename != *suite
        && rel.suite != *suite
    {
        bail!(
            "{inrelease_url} is signed but describes suite {:?} (codename {:?}), not {suite:?}; nothing was kept",
            rel.suite,
            rel.codename
        );
    }
    if !rel.architectures.is_empty() && !rel.architectures.contains(&target.arch) {
        bail!(
            "{mirror} {suite} has no packages for {} (it has {})",
            target.arch,
            rel.architectures.join(" ")
        );
    }
    Ok((mirror, rel))
}

/// What `devbox image check` says of an archive source: the suite's signed Release is there,
/// verifies and lists this architecture (`http://MIRROR/debian trixie: signed Release, 3
/// components`). Nothing else is downloaded.
pub fn check(target: &Target, settings: &Settings) -> Result<String> {
    let (mirror, rel) = signed_release(target, settings, None)?;
    Ok(format!(
        "{mirror} {}: signed Release, {} component{}",
        target.suite,
        rel.components.len(),
        if rel.components.len() == 1 { "" } else { "s" }
    ))
}

/// Fetches and checks the suite's indexes and decides the package set (`extra` joins it).
/// Downloads no package.
pub fn prepare(
    dirs: &Dirs,
    target: &Target,
    extra: &[String],
    settings: &Settings,
    r: &dyn Reporter,
) -> Result<Plan> {
    let (mirror, rel) = signed_release(target, settings, Some(r))?;
    let suite = &target.suite;
    let cache = cache_dir(dirs)?;
    let mut text = String::new();
    for comp in &target.components {
        text.push_str(&packages_index(
            &mirror,
            suite,
            comp,
            &target.arch,
            &rel,
            &cache,
            r,
        )?);
        text.push('\n');
    }
    let idx = depsolve::Index::parse(&text, &target.arch);
    let chosen = idx
        .minbase(extra)
        .with_context(|| format!("cannot make a {} {suite} root from {mirror}", target.distro))?;
    let mut debs = Vec::new();
    for p in chosen {
        let rel_path = p.filename.trim_start_matches('/');
        if rel_path.split('/').any(|s| s == ".." || s.is_empty()) || rel_path.contains("://") {
            bail!(
                "the index gives {} an unusable file name {:?}",
                p.name,
                p.filename
            );
        }
        debs.push(Deb {
            name: p.name.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            url: format!("{mirror}/{rel_path}"),
        });
    }
    let mut sums: Vec<&str> = debs.iter().map(|d| d.sha256.as_str()).collect();
    sums.sort_unstable();
    let mut h = Sha256::new();
    h.update(format!(
        "devbox debarchive v1\n{}\n{suite}\n{}\n",
        target.distro, target.arch
    ));
    // The box's sources.list is part of the image; when it names only the components the
    // packages came from, the id stays what it was before apt_components existed.
    if target.apt_components != target.components {
        h.update(format!("apt {}\n", target.apt_components.join(" ")));
    }
    for s in sums {
        h.update(s);
        h.update("\n");
    }
    Ok(Plan {
        id: crate::fetch::hex(&h.finalize()),
        mirror,
        suite: suite.clone(),
        components: target.components.clone(),
        apt_components: target.apt_components.clone(),
        arch: target.arch.clone(),
        debs,
        cache,
    })
}

/// The `Packages` index of one component, checked against the Release and kept in the cache
/// by its sha256 (the plain file's, when the Release lists it).
fn packages_index(
    mirror: &str,
    suite: &str,
    comp: &str,
    arch: &str,
    rel: &release::Release,
    cache: &Path,
    r: &dyn Reporter,
) -> Result<String> {
    let base = format!("{comp}/binary-{arch}/Packages");
    let (name, want) = ["xz", "gz", ""]
        .iter()
        .map(|ext| {
            if ext.is_empty() {
                base.clone()
            } else {
                format!("{base}.{ext}")
            }
        })
        .find_map(|n| rel.files.get(&n).map(|f| (n, f.clone())))
        .ok_or_else(|| anyhow!("the Release of {suite} on {mirror} lists no {base} index"))?;
    let kept = cache.join(format!("index-{}", want.sha256));
    let fresh =
        crate::fetch::hash_file(&kept).is_ok_and(|(s, n)| s == want.sha256 && n == want.size);
    if !fresh {
        let url = format!("{mirror}/dists/{suite}/{name}");
        let quiet = Quiet::new(r, "Downloading the index", Some(want.size));
        let fetched = crate::fetch::download(&url, cache, Some(&want.sha256), None, &quiet)
            .map_err(|e| match e {
                crate::fetch::StreamError::Download(e) => e,
                crate::fetch::StreamError::Sink(e) => e.into(),
            })
            .with_context(|| {
                format!("the {name} index of {suite} does not match its Release; nothing was kept")
            })?;
        quiet.finish();
        if fetched.size != want.size {
            bail!(
                "{url} has {} bytes, its Release says {}; nothing was kept",
                fetched.size,
                want.size
            );
        }
        fetched.keep_as(&kept)?;
    }
    let file = std::fs::File::open(&kept)?;
    let mut reader = crate::unpack::decompressed(file)?;
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {name} index"))?;
    Ok(text)
}

/// A reporter for downloads that run many at once: their byte counts go to one bar, their
/// step lines only to `--verbose`.
struct Quiet {
    tx: mpsc::Sender<u64>,
    rx: mpsc::Receiver<u64>,
    bar: Box<dyn Transfer>,
}

impl Quiet {
    fn new(r: &dyn Reporter, what: &str, total: Option<u64>) -> Quiet {
        let (tx, rx) = mpsc::channel();
        Quiet {
            tx,
            rx,
            bar: r.transfer(what, total),
        }
    }

    /// Shows what the downloads reported so far.
    fn pump(&self) {
        while let Ok(n) = self.rx.try_recv() {
            self.bar.inc(n);
        }
    }

    fn finish(&self) {
        self.pump();
        self.bar.finish();
    }
}

struct Counter(mpsc::Sender<u64>);

impl Transfer for Counter {
    fn inc(&self, n: u64) {
        let _ = self.0.send(n);
    }
    fn finish(&self) {}
}

/// The part of [`Quiet`] each download thread gets.
struct Worker(mpsc::Sender<u64>);

impl Reporter for Worker {
    fn step(&self, msg: &str) {
        crate::ui::detail(msg);
    }
    fn transfer(&self, _: &str, _: Option<u64>) -> Box<dyn Transfer> {
        Box::new(Counter(self.0.clone()))
    }
}

impl Reporter for Quiet {
    fn step(&self, msg: &str) {
        crate::ui::detail(msg);
    }
    fn transfer(&self, _: &str, _: Option<u64>) -> Box<dyn Transfer> {
        Box::new(Counter(self.tx.clone()))
    }
}

/// How many packages download at once.
const PARALLEL: usize = 4;

/// Makes sure every package of the plan is in the cache, verified: cached ones are hashed
/// again (a damaged file is fetched anew), the others downloaded in parallel, each checked
/// against the index's sha256 before it is kept. On any failure nothing unverified is kept.
pub fn download(plan: &Plan, r: &dyn Reporter) -> Result<()> {
    let todo: Vec<&Deb> = plan
        .debs
        .iter()
        .filter(|d| {
            let p = plan.deb_path(d);
            match crate::fetch::hash_file(&p) {
                Ok((s, _)) if s == d.sha256 => false,
                Ok(_) => {
                    let _ = std::fs::remove_file(&p);
                    true
                }
                Err(_) => true,
            }
        })
        .collect();
    let cached = plan.debs.len() - todo.len();
    if todo.is_empty() {
        r.step(&format!(
            "Using {} packages from the cache",
            plan.debs.len()
        ));
        return Ok(());
    }
    let total: u64 = todo.iter().map(|d| d.size).sum();
    r.step(&format!(
        "Downloading {} package{} ({}){}",
        todo.len(),
        if todo.len() == 1 { "" } else { "s" },
        human_bytes(total),
        if cached > 0 {
            format!("; {cached} from the cache")
        } else {
            String::new()
        }
    ));
    let quiet = Quiet::new(r, "Downloading", Some(total));
    // One client for all: its connections to the mirror are reused from package to package.
    let http = crate::fetch::client()?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..PARALLEL.min(todo.len()) {
            let worker = Worker(quiet.tx.clone());
            let (todo, next, failed, http) = (&todo, &next, &failed, &http);
            handles.push(s.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(d) = todo.get(i) else { break };
                if !failed.lock().map(|f| f.is_empty()).unwrap_or(false) {
                    break;
                }
                let got = crate::fetch::download_with(
                    http,
                    &d.url,
                    &plan.cache,
                    Some(&d.sha256),
                    None,
                    &worker,
                )
                .map_err(|e| match e {
                    crate::fetch::StreamError::Download(e) => e,
                    crate::fetch::StreamError::Sink(e) => e.into(),
                })
                .and_then(|f| f.keep_as(&plan.deb_path(d)).map(|_| ()));
                if let Err(e) = got {
                    if let Ok(mut f) = failed.lock() {
                        f.push(format!("{} ({}): {e:#}", d.name, d.url));
                    }
                }
            }));
        }
        // The bar is drawn from here, the thread that owns it.
        loop {
            quiet.pump();
            if handles.iter().all(|h| h.is_finished()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    quiet.finish();
    let failed = failed.into_inner().unwrap_or_default();
    if let Some(first) = failed.first() {
        bail!(
            "cannot download package {first}{}; the packages verified so far stay in the cache for the next try",
            if failed.len() > 1 {
                format!(" (and {} more)", failed.len() - 1)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_suites() {
        let listed: Vec<String> = ["bookworm", "bookworm-updates", "trixie", "sid", "stable"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(close_matches("trixi", &listed), ["trixie"]);
        assert_eq!(close_matches("bookwrm", &listed)[0], "bookworm");
        assert!(close_matches("zzzzzzzzzz", &listed).is_empty());
        assert_eq!(crate::ui::edit_distance("kitten", "sitting"), 3);
    }
}
