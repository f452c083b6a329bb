//! Registry authentication: `WWW-Authenticate` challenges, anonymous Bearer tokens, and Basic
//! credentials from the files `podman login` and `docker login` write.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::reference::DOCKER_HUB;

/// One challenge of a `WWW-Authenticate` header: a scheme (lower-cased) and its parameters
/// (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `WWW-Authenticate` (RFC 7235): `Bearer realm="https://a/token",service="s",
/// scope="repository:a/b:pull,push"`. Quoted values may hold commas, colons, '=' and
/// backslash escapes; several challenges may share one header.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let is_tchar = |c: u8| !matches!(c, b' ' | b'\t' | b',' | b'=' | b'"');
    while i < b.len() {
        skip_ws(&mut i);
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if start == i {
            // Stray character ('=' or '"' where a token belongs): skip it.
            i += 1;
            continue;
        }
        let token = &header[start..i];
        let mut j = i;
        skip_ws(&mut j);
        if j < b.len() && b[j] == b'=' && j + 1 < b.len() && b[j + 1] != b'=' {
            // name=value
            i = j + 1;
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    v.push(b[i]);
                    i += 1;
                }
                i += 1; // closing quote
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                    i += 1;
                }
                header[s..i].to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
        } else if j < b.len() && b[j] == b'=' {
            // token68 ("abc==") after a scheme: not used by registries; skip it.
            i = j;
            while i < b.len() && b[i] == b'=' {
                i += 1;
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    out
}

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.username)
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

/// Where credentials are looked for, in order. `$REGISTRY_AUTH_FILE` alone when it is set
/// (as podman does); else podman's runtime auth file (`$XDG_RUNTIME_DIR/containers/auth.json`,
/// or without XDG_RUNTIME_DIR where podman then keeps it: `/run/user/UID/...` and
/// `$TMPDIR/podman-run-UID/...`) and `~/.config/containers/auth.json`, then Docker's
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn default_auth_files() -> Vec<PathBuf> {
    auth_files(
        &|name| std::env::var_os(name),
        nix::unistd::getuid().as_raw(),
    )
}

/// [`default_auth_files`] for the environment `var` and user `uid` (unit-tested with both
/// made up).
fn auth_files(var: &dyn Fn(&str) -> Option<std::ffi::OsString>, uid: u32) -> Vec<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(f) = var("REGISTRY_AUTH_FILE") {
        return vec![PathBuf::from(f)];
    }
    let mut files = Vec::new();
    match var("XDG_RUNTIME_DIR") {
        Some(rt) => files.push(Path::new(&rt).join("containers/auth.json")),
        None => {
            files.push(PathBuf::from(format!(
                "/run/user/{uid}/containers/auth.json"
            )));
            let tmp = var("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            files.push(tmp.join(format!("podman-run-{uid}/containers/auth.json")));
        }
    }
    let home = var("HOME");
    match var("XDG_CONFIG_HOME") {
        Some(c) => files.push(Path::new(&c).join("containers/auth.json")),
        None => {
            if let Some(h) = &home {
                files.push(Path::new(h).join(".config/containers/auth.json"));
            }
        }
    }
    match var("DOCKER_CONFIG") {
        Some(d) => files.push(Path::new(&d).join("config.json")),
        None => {
            if let Some(h) = &home {
                files.push(Path::new(h).join(".docker/config.json"));
            }
        }
    }
    files
}

/// What a credentials search found, and where it looked (for the error when nothing was).
#[derive(Debug, Default)]
pub struct Found {
    pub credentials: Option<Credentials>,
    /// Files that could not be used, helpers that failed: one line each, to show.
    pub notes: Vec<String>,
    /// Every place looked at, in order.
    pub looked: Vec<String>,
}

/// The credentials for `registry`/`repository` from the first of `files` that has any: in
/// each file, a credential helper named for the registry (`credHelpers`), then the `auths`
/// entries, then the file's default helper (`credsStore`). Helpers are run as
/// `docker-credential-NAME get` (Docker's helper protocol). Unreadable or malformed files are
/// skipped with a note, and so is a file in a directory another user could write to.
pub fn find_credentials(
    registry: &str,
    repository: &str,
    files: &[PathBuf],
    helper_path: Option<&std::ffi::OsStr>,
) -> Found {
    let mut found = Found::default();
    for f in files {
        found.looked.push(f.display().to_string());
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                found
                    .notes
                    .push(format!("cannot read {}: {e}", f.display()));
                continue;
            }
        };
        if let Some(why) = foreign(f) {
            found.notes.push(format!("ignoring {}: {why}", f.display()));
            continue;
        }
        let helpers = match helpers_from_json(&text, registry) {
            Ok(h) => h,
            Err(e) => {
                found.notes.push(format!("ignoring {}: {e}", f.display()));
                continue;
            }
        };
        // Runs a helper; true when it answered with credentials.
        let ask = |found: &mut Found, name: &str, key: &str| {
            found
                .looked
                .push(format!("docker-credential-{name} ({key})"));
            match run_helper(name, registry, helper_path) {
                Ok(Some(c)) => {
                    found.credentials = Some(c);
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    found.notes.push(e);
                    false
                }
            }
        };
        if let Some(name) = &helpers.for_registry {
            if ask(&mut found, name, "credHelpers") {
                return found;
            }
        }
        match credentials_from_json(&text, registry, repository) {
            Ok(Some(c)) => {
                found.credentials = Some(c);
                return found;
            }
            Ok(None) => {}
            Err(e) => found.notes.push(format!("ignoring {}: {e}", f.display())),
        }
        if let Some(name) = &helpers.store {
            if ask(&mut found, name, "credsStore") {
                return found;
            }
        }
    }
    found
}

/// Why a credentials file is not to be trusted: it, or its directory, belongs to another
/// user or may be written by others (a file under /tmp that someone else planted).
fn foreign(f: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    for p in [Some(f), f.parent()].into_iter().flatten() {
        let m = std::fs::metadata(p).ok()?;
        if m.uid() != uid && m.uid() != 0 {
            return Some(format!(
                "{} belongs to uid {}, not to you",
                p.display(),
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Some(format!("{} may be written by other users", p.display()));
        }
    }
    None
}

/// The credential helpers a file names for `registry`.
#[derive(Debug, Default, PartialEq)]
struct Helpers {
    /// `credHelpers[registry]`.
    for_registry: Option<String>,
    /// `credsStore`.
    store: Option<String>,
}

fn helpers_from_json(text: &str, registry: &str) -> Result<Helpers, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let name_ok = |n: &&str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let for_registry = v
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| same_registry(&normalize_key(k).0, registry))
                .and_then(|(_, n)| n.as_str())
        })
        .filter(name_ok)
        .map(String::from);
    let store = v
        .get("credsStore")
        .and_then(|n| n.as_str())
        .filter(name_ok)
        .map(String::from);
    Ok(Helpers {
        for_registry,
        store,
    })
}

/// The server name a helper knows a registry by: Docker Hub's old URL, else the host.
fn helper_server(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// `docker-credential-NAME get` (found in `path`, else `$PATH`), the server on its stdin,
/// `{"Username","Secret"}` on its stdout. Not found (a non-zero exit saying so) is `None`; a
/// helper that is missing or fails otherwise is an error line to show.
fn run_helper(
    name: &str,
    registry: &str,
    path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{name}");
    let search = path
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let exe = std::env::split_paths(&search)
        .map(|d| d.join(&program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("{program} (a credential helper your login configured) is not installed or not on PATH")
        })?;
    let mut child = Command::new(&exe)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run {program} (a credential helper your login configured): {e}")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(helper_server(registry).as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} failed: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if said.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(format!(
            "{program} failed ({}): {}",
            out.status,
            said.trim().lines().next().unwrap_or("")
        ));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{program} answered something that is not credentials: {e}"))?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    if a.username == "<token>" {
        return Err(format!(
            "{program} holds an identity token for {registry}, which devbox cannot use; log in with a user name and password or access token"
        ));
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

/// Looks `registry`/`repository` up in an auth file's `auths`: keys are a registry host
/// (`quay.io`), optionally with a repository path (`quay.io/org`, the longest match wins) or
/// an old-style URL (`https://index.docker.io/v1/`). An entry gives `auth` (base64 of
/// `user:password`) or `username` and `password`. Credential helpers are [`find_credentials`]'s.
pub fn credentials_from_json(
    text: &str,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let mut best: Option<(usize, &serde_json::Value)> = None;
    for (key, entry) in auths {
        let (host, path) = normalize_key(key);
        if !same_registry(&host, registry) {
            continue;
        }
        let matches =
            path.is_empty() || repository == path || repository.starts_with(&format!("{path}/"));
        let longer = match best {
            None => true,
            Some((len, _)) => len < path.len(),
        };
        if matches && longer {
            best = Some((path.len(), entry));
        }
    }
    let Some((_, entry)) = best else {
        return Ok(None);
    };
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64_decode(auth).ok_or("an \"auth\" value is not valid base64")?;
        let raw = String::from_utf8(raw).map_err(|_| "an \"auth\" value is not UTF-8")?;
        let (u, p) = raw
            .split_once(':')
            .ok_or("an \"auth\" value does not decode to USER:PASSWORD")?;
        if u.is_empty() && p.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    let field = |k: &str| entry.get(k).and_then(|x| x.as_str()).unwrap_or("");
    if !field("username").is_empty() || !field("password").is_empty() {
        return Ok(Some(Credentials {
            username: field("username").to_string(),
            password: field("password").to_string(),
        }));
    }
    Ok(None)
}

/// `https://index.docker.io/v1/` → (`index.docker.io`, ``); `quay.io/org/` → (`quay.io`, `org`).
fn normalize_key(key: &str) -> (String, String) {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k.split_once('/') {
        Some((h, p)) => (h.to_ascii_lowercase(), p.to_string()),
        None => (k.to_ascii_lowercase(), String::new()),
    }
}

fn same_registry(key_host: &str, registry: &str) -> bool {
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    if registry == DOCKER_HUB {
        hub(key_host)
    } else {
        key_host.eq_ignore_ascii_case(registry)
    }
}

/// A Bearer token and when to stop using it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
}

impl Token {
    /// A token valid for `expires_in` seconds from `now` (60 when the server says nothing, as
    /// the token specification prescribes), renewed a little early.
    pub fn new(value: String, expires_in: Option<u64>, now: Instant) -> Token {
        let secs = expires_in.filter(|&s| s > 0).unwrap_or(60);
        let margin = (secs / 10).min(30);
        Token {
            value,
            expires: now + Duration::from_secs(secs - margin),
        }
    }

    pub fn fresh_at(&self, now: Instant) -> bool {
        now < self.expires
    }
}

/// The JSON answer of a token endpoint.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= n {
                out.push(B64[((v >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe alphabet, padding optional, whitespace ignored.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where podman (and then Docker) keep credentials, for each way the environment can be.
    #[test]
    fn auth_files_are_where_podman_and_docker_write_them() {
        let files = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            auth_files(
                &|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()),
                1000,
            )
            .into_iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
        };
        let home = ("HOME", "/home/u");
        assert_eq!(
            files(&[home, ("XDG_RUNTIME_DIR", "/run/user/1000")]),
            [
                "/run/user/1000/containers/auth.json",
                "/home/u/.config/containers/auth.json",
                "/home/u/.docker/config.json"
            ]
        );
        // Without XDG_RUNTIME_DIR podman uses /run/user/UID when it can, else a directory
        // in $TMPDIR (default /tmp).
        assert_eq!(
            files(&[home]),
            [
                "/run/user/1000/containers/auth.json",
                "/tmp/podman-run-1000/containers/auth.json",
                "/home/u/.config/containers/auth.json",
                "/home/u/.docker/config.json"
            ]
        );
        assert_eq!(
            files(&[home, ("XDG_RUNTIME_DIR", ""), ("TMPDIR", "/var/tmp/u")])[1],
            "/var/tmp/u/podman-run-1000/containers/auth.json"
        );
        assert_eq!(
            files(&[
                home,
                ("XDG_RUNTIME_DIR", "/rt"),
                ("XDG_CONFIG_HOME", "/cfg"),
                ("DOCKER_CONFIG", "/dk")
            ]),
            [
                "/rt/containers/auth.json",
                "/cfg/containers/auth.json",
                "/dk/config.json"
            ]
        );
        // REGISTRY_AUTH_FILE alone, as podman reads it.
        assert_eq!(
            files(&[
                home,
                ("XDG_RUNTIME_DIR", "/rt"),
                ("REGISTRY_AUTH_FILE", "/etc/my-auth.json")
            ]),
            ["/etc/my-auth.json"]
        );
        assert_eq!(
            files(&[("XDG_RUNTIME_DIR", "/rt")]),
            ["/rt/containers/auth.json"]
        );
    }

    #[test]
    fn parses_bearer_challenges_with_commas_in_quotes() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn parses_odd_challenges() {
        // Spaces, unquoted values, escapes, several challenges, upper-case names.
        let c = parse_challenges(
            r#"Basic realm="Registry \"Realm\"" , BEARER Realm = "http://h:1/t?x=1,y" ,service=svc, error="insufficient_scope",scope="repository:x:pull repository:y:pull""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"Registry "Realm""#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://h:1/t?x=1,y"));
        assert_eq!(c[1].param("service"), Some("svc"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(
            c[1].param("scope"),
            Some("repository:x:pull repository:y:pull")
        );
        assert!(parse_challenges("").is_empty());
        let c = parse_challenges("Negotiate abc==, Basic realm=x");
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[1].param("realm"), Some("x"));
    }

    #[test]
    fn reads_credentials_from_auth_files() {
        let auth = base64_encode(b"alice:s3cr:et");
        let text = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{ "auth": "{auth}" }},
                "quay.io": {{ "username": "bob", "password": "pw" }},
                "quay.io/team": {{ "auth": "{}" }},
                "localhost:5000": {{ "auth": "" }},
                "ghcr.io": {{ "identitytoken": "x" }}
              }},
              "credsStore": "desktop"
            }}"#,
            base64_encode(b"carol:pw2")
        );
        let get = |reg: &str, repo: &str| {
            credentials_from_json(&text, reg, repo)
                .unwrap()
                .map(|c| (c.username, c.password))
        };
        assert_eq!(
            get(DOCKER_HUB, "library/debian"),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(
            get("quay.io", "toolbx/ubuntu-toolbox"),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(
            get("quay.io", "team/app"),
            Some(("carol".into(), "pw2".into()))
        );
        assert_eq!(
            get("quay.io", "teamx/app"),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(get("localhost:5000", "a"), None);
        assert_eq!(get("ghcr.io", "a/b"), None);
        assert_eq!(get("example.com", "a/b"), None);
        assert_eq!(credentials_from_json("{}", "quay.io", "a").unwrap(), None);
        assert!(credentials_from_json("{", "quay.io", "a").is_err());
        assert!(
            credentials_from_json(r#"{"auths":{"quay.io":{"auth":"!!"}}}"#, "quay.io", "a")
                .is_err()
        );
    }

    #[test]
    fn finds_credentials_in_the_first_file_that_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(&a, r#"{"auths":{"other.io":{"auth":"dTpw"}}}"#).unwrap();
        std::fs::write(
            &b,
            r#"{"auths":{"quay.io":{"auth":"dTpwdw=="}}}"#, // u:pw
        )
        .unwrap();
        let missing = dir.path().join("missing.json");
        let found = find_credentials(
            "quay.io",
            "x/y",
            &[missing.clone(), a.clone(), b.clone()],
            None,
        );
        assert_eq!(
            found.credentials,
            Some(Credentials {
                username: "u".into(),
                password: "pw".into()
            })
        );
        assert!(found.notes.is_empty(), "{:?}", found.notes);
        let none = find_credentials("ghcr.io", "x/y", &[missing, a, b], None);
        assert!(none.credentials.is_none());
        assert_eq!(none.looked.len(), 3, "{:?}", none.looked);
    }

    /// A credential helper speaking Docker's protocol, written by the test: it knows one
    /// server and logs what it was asked.
    fn helper(dir: &Path, name: &str, server: &str) {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join(format!("docker-credential-{name}"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r s\necho \"$s\" >> {log}\nif [ \"$s\" = \"{server}\" ]; then echo '{{\"ServerURL\":\"{server}\",\"Username\":\"hu\",\"Secret\":\"hs-{name}\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
                log = dir.join(format!("{name}.log")).display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn credential_helpers_answer_for_their_registries() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        helper(&bin, "per", "quay.io");
        helper(&bin, "store", "https://index.docker.io/v1/");
        let conf = dir.path().join("config.json");
        std::fs::write(
            &conf,
            r#"{"auths":{"ghcr.io":{"auth":"dTpwdw=="}},"credHelpers":{"quay.io":"per"},"credsStore":"store"}"#,
        )
        .unwrap();
        let path = Some(bin.as_os_str());
        let files = [conf.clone()];
        let hs = |user: &str, pw: &str| {
            Some(Credentials {
                username: user.into(),
                password: pw.into(),
            })
        };
        // credHelpers for its registry; auths before credsStore; credsStore for the rest
        // (Docker Hub under its old server URL).
        assert_eq!(
            find_credentials("quay.io", "a/b", &files, path).credentials,
            hs("hu", "hs-per")
        );
        assert_eq!(
            find_credentials("ghcr.io", "a/b", &files, path).credentials,
            hs("u", "pw")
        );
        assert_eq!(
            find_credentials(DOCKER_HUB, "library/debian", &files, path).credentials,
            hs("hu", "hs-store")
        );
        // A registry no helper knows: none, nothing to complain about, every place named.
        let none = find_credentials("example.com", "a", &files, path);
        assert!(none.credentials.is_none());
        assert!(none.notes.is_empty(), "{:?}", none.notes);
        assert!(
            none.looked
                .iter()
                .any(|l| l.contains("docker-credential-store (credsStore)")),
            "{:?}",
            none.looked
        );
        // A helper that is not installed is said, not fatal.
        std::fs::write(&conf, r#"{"credsStore":"missing"}"#).unwrap();
        let miss = find_credentials("example.com", "a", &files, path);
        assert!(miss.credentials.is_none());
        assert!(
            miss.notes[0].contains("docker-credential-missing"),
            "{:?}",
            miss.notes
        );
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "user:pass", "ü:∂"] {
            let e = base64_encode(s.as_bytes());
            assert_eq!(base64_decode(&e).unwrap(), s.as_bytes(), "{s}");
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("dXNlcjpwYXNz\n").unwrap(), b"user:pass");
    }

    #[test]
    fn tokens_expire() {
        let now = Instant::now();
        let t = Token::new("x".into(), Some(300), now);
        assert!(t.fresh_at(now + Duration::from_secs(200)));
        assert!(!t.fresh_at(now + Duration::from_secs(300)));
        let t = Token::new("x".into(), None, now);
        assert!(t.fresh_at(now + Duration::from_secs(50)));
        assert!(!t.fresh_at(now + Duration::from_secs(60)));
        let t = Token::new("x".into(), Some(1), now);
        assert!(!t.fresh_at(now + Duration::from_secs(1)));
    }
}
