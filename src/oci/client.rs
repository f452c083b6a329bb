//! One repository on one registry, over the Distribution API v2: authentication (anonymous
//! Bearer tokens, Basic credentials), redirects that never carry the Authorization header to
//! another host, and retries of transient failures.

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{
    HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{StatusCode, Url};

use super::auth::{self, Credentials, Token, TokenResponse};
use super::reference::{host_of, is_loopback, Reference};
use super::{first_line, OciError, Options};

/// Longest Retry-After honoured; a registry asking for more gets an error telling the wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// How a request failed: worth another attempt (after `after`, if the server said), or not.
pub(crate) enum Failure {
    Retry {
        err: OciError,
        after: Option<Duration>,
    },
    Fatal(OciError),
}

impl From<OciError> for Failure {
    fn from(e: OciError) -> Failure {
        Failure::Fatal(e)
    }
}

/// What a request was for, to name it in errors.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str),
}

enum AuthState {
    /// Nothing asked for yet: requests go out without credentials.
    None,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: String,
        token: Option<Token>,
    },
    Basic,
}

pub(crate) struct Client {
    http: Http,
    pub reference: Reference,
    origin: Url,
    creds: Option<Credentials>,
    /// Where credentials were looked for (told when access is denied without any).
    looked: Vec<String>,
    auth: Mutex<AuthState>,
    retries: u32,
    retry_base: Duration,
}

impl Client {
    pub fn new(r: &Reference, opts: &Options) -> Result<(Client, Vec<String>), OciError> {
        let scheme = if plain_http(&r.registry, &opts.plain_http) {
            "http"
        } else {
            "https"
        };
        let origin = Url::parse(&format!("{scheme}://{}/", r.registry)).map_err(|e| {
            OciError::InvalidReference {
                input: r.to_string(),
                reason: format!("registry {:?} does not make a URL: {e}", r.registry),
            }
        })?;
        let mut b = Http::builder()
            .user_agent(concat!("devbox/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            // Per operation in the blocking client: sending, and each read of a body. A
            // stalled transfer fails after this long and is retried (and resumed).
            .timeout(opts.timeout);
        if is_loopback(&r.registry) {
            // A proxy cannot reach this machine's loopback registry.
            b = b.no_proxy();
        }
        let http = b.build().map_err(|e| OciError::Network {
            registry: r.registry.clone(),
            url: origin.to_string(),
            detail: error_chain(&e),
            hint: String::new(),
        })?;
        let files = match &opts.auth_files {
            Some(f) => f.clone(),
            None => auth::default_auth_files(),
        };
        let found = auth::find_credentials(
            &r.registry,
            &r.repository,
            &files,
            opts.helper_path.as_deref(),
        );
        let (creds, notes, looked) = (found.credentials, found.notes, found.looked);
        Ok((
            Client {
                http,
                reference: r.clone(),
                origin,
                creds,
                looked,
                auth: Mutex::new(AuthState::None),
                retries: opts.retries,
                retry_base: opts.retry_base,
            },
            notes,
        ))
    }

    /// `ORIGIN/v2/REPOSITORY/TAIL`.
    pub fn repo_url(&self, tail: &str) -> String {
        format!("{}v2/{}/{tail}", self.origin, self.reference.repository)
    }

    /// A URL the registry gave (an upload's `Location`), made absolute against its origin.
    pub fn absolute(&self, location: &str) -> Result<Url, OciError> {
        self.origin.join(location).map_err(|e| OciError::Invalid {
            reference: self.reference.to_string(),
            what: "upload location".into(),
            detail: format!("{location:?}: {e}"),
        })
    }

    /// One request of a push (HEAD, POST, PATCH, PUT) with authentication, as [`Client::get`]
    /// does it: a 401 challenge is answered once and the request repeated, with a body made
    /// anew by `body`. Redirects are not followed (the upload API answers with `Location`s
    /// that the caller reads).
    pub fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        headers: &HeaderMap,
        body: &dyn Fn() -> Option<reqwest::blocking::Body>,
    ) -> Result<Response, Failure> {
        let mut answered = false;
        loop {
            let authz = self.authorization()?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = authz.filter(|_| same_origin(url, &self.origin)) {
                req = req.header(AUTHORIZATION, a);
            }
            match body() {
                Some(b) => req = req.body(b),
                None if method != reqwest::Method::HEAD && method != reqwest::Method::GET => {
                    req = req.header(reqwest::header::CONTENT_LENGTH, "0")
                }
                None => {}
            }
            let resp = req.send().map_err(|e| self.net_failure(url.as_str(), e))?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !answered
                && same_origin(resp.url(), &self.origin)
            {
                answered = true;
                self.answer_challenge(&resp)?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Whether credentials were found for the registry.
    pub fn has_credentials(&self) -> bool {
        self.creds.is_some()
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!(
            "{}v2/{}/{kind}/{reference}",
            self.origin, self.reference.repository
        )
    }

    /// A manifest (by tag or digest), at most `limit` bytes: its body and Content-Type.
    pub fn manifest(
        &self,
        reference: &str,
        limit: u64,
        note: &dyn Fn(String),
    ) -> Result<(Vec<u8>, Option<String>), OciError> {
        let url = self.url("manifests", reference);
        let target = Target::Manifest(reference);
        self.retrying(&format!("manifest {reference}"), note, || {
            let mut headers = HeaderMap::new();
            headers.insert(
                ACCEPT,
                super::manifest::ACCEPT.parse().expect("static header"),
            );
            let resp = self.get(&url, &headers)?;
            if !resp.status().is_success() {
                return Err(self.status_failure(resp, target));
            }
            let ct = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let body = self.read_small(resp, &url, limit, "manifest")?;
            Ok((body, ct))
        })
    }

    /// A small blob (an image config) read into memory.
    pub fn small_blob(
        &self,
        digest: &str,
        limit: u64,
        note: &dyn Fn(String),
    ) -> Result<Vec<u8>, OciError> {
        let url = self.url("blobs", digest);
        self.retrying(&format!("blob {}", super::short(digest)), note, || {
            let resp = self.get(&url, &HeaderMap::new())?;
            if !resp.status().is_success() {
                return Err(self.status_failure(resp, Target::Blob(digest)));
            }
            self.read_small(resp, &url, limit, "config")
        })
    }

    /// Starts a blob download from byte `offset` (a Range request when it is not 0). The
    /// response is successful (200 or 206), or 416 when the range cannot be served.
    pub fn blob_response(&self, digest: &str, offset: u64) -> Result<Response, Failure> {
        let url = self.url("blobs", digest);
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(
                RANGE,
                format!("bytes={offset}-").parse().expect("ascii header"),
            );
        }
        let resp = self.get(&url, &headers)?;
        if resp.status().is_success() || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        Err(self.status_failure(resp, Target::Blob(digest)))
    }

    fn read_small(
        &self,
        resp: Response,
        url: &str,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        if resp.content_length().is_some_and(|l| l > limit) {
            return Err(Failure::Fatal(self.too_large(what, limit)));
        }
        let mut body = Vec::new();
        match resp.take(limit + 1).read_to_end(&mut body) {
            Ok(_) if body.len() as u64 > limit => Err(Failure::Fatal(self.too_large(what, limit))),
            Ok(_) => Ok(body),
            Err(e) => Err(Failure::Retry {
                err: OciError::Network {
                    registry: self.reference.registry_display().to_string(),
                    url: url.to_string(),
                    detail: format!("the answer broke off: {e}"),
                    hint: String::new(),
                },
                after: None,
            }),
        }
    }

    fn too_large(&self, what: &str, limit: u64) -> OciError {
        OciError::Invalid {
            reference: self.reference.to_string(),
            what: what.to_string(),
            detail: format!("it is larger than {limit} bytes"),
        }
    }

    /// Runs `f` until it succeeds, fails for good, or has failed transiently `retries + 1`
    /// times, waiting (Retry-After, else exponential backoff) and saying so between attempts.
    pub fn retrying<T>(
        &self,
        what: &str,
        note: &dyn Fn(String),
        mut f: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T, OciError> {
        let mut attempt = 0;
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { err, after }) => {
                    attempt += 1;
                    if attempt > self.retries {
                        return Err(err);
                    }
                    let wait = after.unwrap_or_else(|| self.backoff(attempt));
                    note(format!(
                        "{what}: {}; retrying in {} (attempt {} of {})",
                        first_line(&err.to_string()),
                        human_duration(wait),
                        attempt + 1,
                        self.retries + 1
                    ));
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// 1, 2, 4, 8... times the base delay, at most 30 s.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(5);
        (self.retry_base * factor).min(Duration::from_secs(30))
    }

    /// Sets the retries of later requests (a mirror gets few until it has answered).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    pub fn max_attempts(&self) -> u32 {
        self.retries + 1
    }

    /// One GET with authentication: answers a 401 challenge from the registry once (fetching
    /// a token or switching to Basic) and repeats the request.
    fn get(&self, url: &str, headers: &HeaderMap) -> Result<Response, Failure> {
        let mut answered = false;
        loop {
            let authz = self.authorization()?;
            let resp = self.follow(url, headers, authz.as_deref())?;
            if resp.status() == StatusCode::UNAUTHORIZED
                && !answered
                && same_origin(resp.url(), &self.origin)
            {
                answered = true;
                self.answer_challenge(&resp)?;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The Authorization header for the registry, renewing an expired token.
    fn authorization(&self) -> Result<Option<String>, Failure> {
        let mut state = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            AuthState::None => Ok(None),
            AuthState::Basic => Ok(self.creds.as_ref().map(|c| c.basic_header())),
            AuthState::Bearer {
                realm,
                service,
                scope,
                token,
            } => {
                let fresh = token.as_ref().filter(|t| t.fresh_at(Instant::now()));
                if let Some(t) = fresh {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let t = self.fetch_token(realm, service.as_deref(), scope)?;
                let header = format!("Bearer {}", t.value);
                *token = Some(t);
                Ok(Some(header))
            }
        }
    }

    fn answer_challenge(&self, resp: &Response) -> Result<(), Failure> {
        let challenges: Vec<auth::Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        let registry = self.reference.registry_display().to_string();
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let Some(realm) = b.param("realm") else {
                return Err(Failure::Fatal(OciError::Unauthorized {
                    registry,
                    detail: "it asks for a Bearer token but names no token service (realm)".into(),
                }));
            };
            let service = b.param("service").map(String::from);
            let scope = b
                .param("scope")
                .map(String::from)
                .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
            let token = self.fetch_token(realm, service.as_deref(), &scope)?;
            *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = AuthState::Bearer {
                realm: realm.to_string(),
                service,
                scope,
                token: Some(token),
            };
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if self.creds.is_none() {
                return Err(Failure::Fatal(OciError::Unauthorized {
                    registry,
                    detail: "it asks for a user name and password (Basic authentication) and none are stored for it".into(),
                }));
            }
            if self.origin.scheme() != "https" && !is_loopback(&registry) {
                return Err(Failure::Fatal(OciError::Unauthorized {
                    registry,
                    detail: "it asks for a password over plain http; devbox sends passwords only over https".into(),
                }));
            }
            *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = AuthState::Basic;
            return Ok(());
        }
        let detail = match challenges.first() {
            None => "it answered 401 Unauthorized without a WWW-Authenticate challenge, so there is no way to log in to it anonymously".to_string(),
            Some(c) => format!("it asks for the {:?} authentication scheme, which devbox does not speak", c.scheme),
        };
        Err(Failure::Fatal(OciError::Unauthorized { registry, detail }))
    }

    /// Gets a token from the realm for `scope`, with Basic credentials when there are any
    /// (anonymous otherwise).
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, Failure> {
        let registry = self.reference.registry_display().to_string();
        let mut url = Url::parse(realm).map_err(|e| {
            Failure::Fatal(OciError::Unauthorized {
                registry: registry.clone(),
                detail: format!("its token service address {realm:?} is not a URL: {e}"),
            })
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.http.get(url.clone());
        let secure = url.scheme() == "https" || url.host_str().is_some_and(is_loopback);
        let with_creds = match &self.creds {
            Some(c) if secure => {
                req = req.header(AUTHORIZATION, c.basic_header());
                true
            }
            _ => false,
        };
        let resp = req.send().map_err(|e| self.net_failure(url.as_str(), e))?;
        let status = resp.status();
        if status.is_success() {
            let body: TokenResponse = serde_json::from_reader(resp.take(1 << 20)).map_err(|e| {
                Failure::Fatal(OciError::Unauthorized {
                    registry: registry.clone(),
                    detail: format!(
                        "its token service answered something that is not a token: {e}"
                    ),
                })
            })?;
            let value = body
                .token
                .or(body.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Failure::Fatal(OciError::Unauthorized {
                        registry: registry.clone(),
                        detail: "its token service answered without a token".into(),
                    })
                })?;
            return Ok(Token::new(value, body.expires_in, Instant::now()));
        }
        if is_transient(status) {
            let after = retry_after(resp.headers());
            return Err(Failure::Retry {
                err: OciError::Http {
                    registry,
                    url: redact(url.as_str()),
                    status: status.as_u16(),
                    detail: " (token service)".into(),
                },
                after,
            });
        }
        let detail = if with_creds {
            format!("its token service refused the stored credentials ({status})")
        } else {
            format!("its token service refused anonymous access ({status})")
        };
        Err(Failure::Fatal(OciError::Unauthorized { registry, detail }))
    }

    /// Sends a GET, following redirects by hand: the Authorization header goes only to the
    /// registry itself, never to another host a redirect points to (blob storage).
    fn follow(
        &self,
        url: &str,
        headers: &HeaderMap,
        authz: Option<&str>,
    ) -> Result<Response, Failure> {
        let mut url = Url::parse(url).map_err(|e| {
            Failure::Fatal(OciError::Invalid {
                reference: self.reference.to_string(),
                what: "URL".into(),
                detail: format!("{url}: {e}"),
            })
        })?;
        for _ in 0..=MAX_REDIRECTS {
            let mut req: RequestBuilder = self.http.get(url.clone()).headers(headers.clone());
            if let Some(a) = authz.filter(|_| same_origin(&url, &self.origin)) {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = req.send().map_err(|e| self.net_failure(url.as_str(), e))?;
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(String::from);
            let (true, Some(loc)) = (resp.status().is_redirection(), location) else {
                return Ok(resp);
            };
            let next = url.join(&loc).map_err(|e| {
                Failure::Fatal(OciError::Invalid {
                    reference: self.reference.to_string(),
                    what: "redirect".into(),
                    detail: format!("{loc:?} is not a URL: {e}"),
                })
            })?;
            if url.scheme() == "https" && next.scheme() != "https" {
                return Err(Failure::Fatal(OciError::Invalid {
                    reference: self.reference.to_string(),
                    what: "redirect".into(),
                    detail: format!(
                        "{} redirects from https to {}, which devbox refuses",
                        redact(url.as_str()),
                        redact(next.as_str())
                    ),
                }));
            }
            url = next;
        }
        Err(Failure::Fatal(OciError::Invalid {
            reference: self.reference.to_string(),
            what: "redirect".into(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    fn net_failure(&self, url: &str, e: reqwest::Error) -> Failure {
        let detail = error_chain(&e);
        let registry = self.reference.registry_display().to_string();
        let url = redact(url);
        let lower = detail.to_ascii_lowercase();
        if lower.contains("certificate") {
            return Failure::Fatal(OciError::Network {
                registry,
                url,
                detail,
                hint: "the server's TLS certificate is not trusted; check the registry name, or install its CA certificate into the system trust store".into(),
            });
        }
        if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
            return Failure::Fatal(OciError::Network {
                registry: registry.clone(),
                url,
                detail,
                hint: format!("the registry seems to speak plain http, not https; devbox speaks plain http only to registries on this machine (localhost, 127.0.0.1, ::1) and to those listed in insecure_registries in ~/.config/devbox/config.toml, e.g. insecure_registries = [\"{registry}\"]"),
            });
        }
        if lower.contains("name or service not known")
            || lower.contains("no address associated with hostname")
        {
            // The name does not exist (not a temporary resolver failure): asking again is
            // only waiting.
            return Failure::Fatal(OciError::Network {
                hint: format!("the host name of {registry} does not resolve: check the image reference, or your network's DNS"),
                registry,
                url,
                detail,
            });
        }
        Failure::Retry {
            err: OciError::Network {
                registry,
                url,
                detail,
                hint: String::new(),
            },
            after: None,
        }
    }

    /// Turns an unsuccessful answer into an error, reading the registry's error body.
    pub fn status_failure(&self, resp: Response, target: Target<'_>) -> Failure {
        let status = resp.status();
        let url = redact(resp.url().as_str());
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let _ = resp.take(64 * 1024).read_to_end(&mut body);
        let (codes, message) = registry_errors(&body);
        let registry = self.reference.registry_display().to_string();
        let reference = match target {
            Target::Manifest(r) if r.starts_with("sha256:") => self.reference.with_digest(r),
            Target::Manifest(r) => Reference {
                tag: Some(r.to_string()),
                digest: None,
                ..self.reference.clone()
            },
            Target::Blob(_) => self.reference.clone(),
        };
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        match status {
            StatusCode::NOT_FOUND => match target {
                Target::Manifest(_) => Failure::Fatal(OciError::NotFound {
                    reference: reference.to_string(),
                    repository_missing: codes.iter().any(|c| c == "NAME_UNKNOWN"),
                }),
                Target::Blob(d) => Failure::Fatal(OciError::BlobNotFound {
                    reference: reference.to_string(),
                    digest: d.to_string(),
                }),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Fatal(OciError::Denied {
                reference: reference.to_string(),
                registry,
                detail: format!("{status}{detail}"),
                logged_in: self.creds.is_some(),
                looked: self.looked.join(", "),
            }),
            StatusCode::TOO_MANY_REQUESTS => {
                let after = retry_after(&headers);
                let err = OciError::RateLimited {
                    registry,
                    retry_after: after,
                };
                match after {
                    // Without Retry-After it is a pull limit (Docker Hub's answer): retrying
                    // only spends more of it.
                    None => Failure::Fatal(err),
                    Some(a) if a > MAX_RETRY_AFTER => Failure::Fatal(err),
                    _ => Failure::Retry { err, after },
                }
            }
            s if is_transient(s) => {
                let after = retry_after(&headers).filter(|a| *a <= MAX_RETRY_AFTER);
                Failure::Retry {
                    err: OciError::Http {
                        registry,
                        url,
                        status: s.as_u16(),
                        detail,
                    },
                    after,
                }
            }
            s => Failure::Fatal(OciError::Http {
                registry,
                url,
                status: s.as_u16(),
                detail,
            }),
        }
    }
}

/// Loopback registries, and those the user lists (`Options::plain_http`, later from the user
/// configuration's insecure registries), are spoken to over plain http; all others over https.
pub(crate) fn plain_http(registry: &str, extra: &[String]) -> bool {
    is_loopback(registry)
        || extra
            .iter()
            .any(|r| r.eq_ignore_ascii_case(registry) || r.eq_ignore_ascii_case(host_of(registry)))
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

pub(crate) fn is_transient(s: StatusCode) -> bool {
    matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Retry-After in seconds (an HTTP date is not parsed: the caller then backs off by itself).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// The codes and first message of a registry error body:
/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`.
pub(crate) fn registry_errors(body: &[u8]) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => {
            let msg = b
                .errors
                .iter()
                .map(|e| e.message.clone())
                .find(|m| !m.is_empty())
                .unwrap_or_default();
            (b.errors.into_iter().map(|e| e.code).collect(), clip(&msg))
        }
        Err(_) => (Vec::new(), clip(String::from_utf8_lossy(body).trim())),
    }
}

fn clip(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

/// The error and its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// A URL without its query string (pre-signed blob URLs carry credentials there).
pub(crate) fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?..."),
        None => url.to_string(),
    }
}

pub(crate) fn human_duration(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_registries_use_plain_http() {
        assert!(plain_http("localhost:5000", &[]));
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("[::1]:5000", &[]));
        assert!(!plain_http("quay.io", &[]));
        assert!(!plain_http("registry.lan:5000", &[]));
        assert!(plain_http(
            "registry.lan:5000",
            &["registry.lan:5000".into()]
        ));
        assert!(plain_http("registry.lan:5000", &["registry.lan".into()]));
    }

    #[test]
    fn compares_origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://Quay.io/v2/x"),
            &u("https://quay.io:443/")
        ));
        assert!(!same_origin(
            &u("https://quay.io/"),
            &u("https://cdn.quay.io/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://127.0.0.1:2/")
        ));
        assert!(!same_origin(&u("http://quay.io/"), &u("https://quay.io/")));
    }

    #[test]
    fn reads_registry_errors() {
        let (codes, msg) = registry_errors(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
        );
        assert_eq!(codes, ["MANIFEST_UNKNOWN"]);
        assert_eq!(msg, "manifest unknown");
        let (codes, msg) = registry_errors(b"<html>\x1b[31mbad gateway</html>");
        assert!(codes.is_empty());
        assert_eq!(msg, "<html>[31mbad gateway</html>");
        assert_eq!(
            redact("https://s3/x?X-Amz-Signature=abc"),
            "https://s3/x?..."
        );
    }
}
