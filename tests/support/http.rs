//! The tests' one HTTP/1.1 server, on a loopback address. Both test crates compile this file:
//! the binary's unit tests (`test_http` in src/main.rs) and the integration tests
//! (`http` in tests/it/main.rs).
//!
//! A test gives [`Server::start`] a handler, `Fn(&Request) -> Response`; what a route serves,
//! and any state it keeps, stays in the test. The server records every request (see
//! [`Server::requests`] and [`Server::hits`]), answers each connection's one request on a
//! thread of its own and closes it, and takes:
//!   - requests in proxy form (`GET http://HOST/PATH`), served as PATH and marked `proxied`;
//!   - HEAD requests, answered with the headers of a GET (its Content-Length too), no body;
//!   - Range requests, with [`Response::ranged`];
//!   - failures on demand: any status, a body cut short after its Content-Length was sent
//!     ([`Response::cut`]), or a body held back at some byte until the test says go on
//!     ([`Response::pause`]: slow bodies, or ones that wait for something to happen).
//!
//! The server stops accepting when it is dropped; a body held back by a pause learns of that
//! through [`Stop`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request, as the handler sees it and the server records it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target (path and query), a proxy form's `http://HOST` taken off.
    pub target: String,
    /// The target without its query.
    pub path: String,
    /// Whether the request came in proxy form (`GET http://HOST/PATH`).
    pub proxied: bool,
    /// The headers, their names in lower case.
    pub headers: HashMap<String, String>,
}

impl Request {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// N of a `Range: bytes=N-` header.
    pub fn range_from(&self) -> Option<usize> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    }
}

/// What a handler answers: a status, headers and a body (Content-Length and
/// `Connection: close` are added), maybe with pauses in the body.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// At these bytes of the body: flush and ask whether to go on (else close there).
    pauses: Vec<(usize, Box<Pause>)>,
}

/// Called at a pause in a body; true to send the rest, false to close the connection there.
type Pause = dyn FnOnce(&Stop) -> bool + Send;

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            pauses: Vec::new(),
        }
    }

    /// 404, `not found` in plain text.
    pub fn not_found() -> Response {
        Response::new(404, "not found\n").header("Content-Type", "text/plain")
    }

    /// `data` for `req`: from byte N on for a `Range: bytes=N-` (206 with its Content-Range,
    /// or 416 if N is at or past the end), else all of it (200).
    pub fn ranged(req: &Request, data: &[u8]) -> Response {
        match req.range_from() {
            Some(from) if from < data.len() => Response::new(206, &data[from..]).header(
                "Content-Range",
                &format!("bytes {from}-{}/{}", data.len() - 1, data.len()),
            ),
            Some(_) => Response::new(416, Vec::new()),
            None => Response::new(200, data),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Holds the body back after its first `at` bytes (flushed) until `wait` returns: the rest
    /// follows if it returns true, else the connection closes there. `wait` may block as long
    /// as it likes, though not past the server's end (its [`Stop`]) if the test could end
    /// without letting it go on.
    pub fn pause(
        mut self,
        at: usize,
        wait: impl FnOnce(&Stop) -> bool + Send + 'static,
    ) -> Response {
        self.pauses.push((at, Box::new(wait)));
        self
    }

    /// Sends only the first `at` bytes of the body (with the whole body's Content-Length), then
    /// closes the connection.
    pub fn cut(self, at: usize) -> Response {
        self.pause(at, |_| false)
    }
}

/// Set when the server is dropped.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// The server; see the module's documentation.
pub struct Server {
    host: String,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Stop,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// A server on 127.0.0.1 answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Server {
        Server::start_on("127.0.0.1", handler)
    }

    /// A server on `ip` (another loopback address, to be another host) answering with `handler`.
    pub fn start_on(
        ip: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Server {
        let handler: Arc<Handler> = Arc::new(handler);
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = format!("{ip}:{}", listener.local_addr().unwrap().port());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Stop::default();
        let thread = {
            let (log, stop) = (Arc::clone(&log), stop.clone());
            std::thread::spawn(move || {
                while !stop.is_set() {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (log, handler, stop) =
                                (Arc::clone(&log), Arc::clone(&handler), stop.clone());
                            std::thread::spawn(move || {
                                let _ = serve(stream, &*handler, &log, &stop);
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Server {
            host,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// `IP:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://IP:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// The requests so far whose target starts with `prefix`, in the order they came.
    pub fn requests(&self, prefix: &str) -> Vec<Request> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|r| r.target.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// How many requests there were for `what`: a PATH (GET and the like, not in proxy form),
    /// `HEAD:PATH` or `proxied:PATH` (a request for PATH in proxy form). Queries do not count.
    pub fn hits(&self, what: &str) -> usize {
        let (kind, path) = match what.split_once(':') {
            Some((kind @ ("HEAD" | "proxied"), path)) => (kind, path),
            _ => ("", what),
        };
        self.requests("")
            .iter()
            .filter(|r| r.path == path)
            .filter(|r| match kind {
                "proxied" => r.proxied,
                "HEAD" => !r.proxied && r.method == "HEAD",
                _ => !r.proxied && r.method != "HEAD",
            })
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request from `stream`, records it, and answers it with `handler`.
fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Request>>,
    stop: &Stop,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    // The request head (a request body, if any, is not read).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("/");
    let (target, proxied) = match target.strip_prefix("http://") {
        Some(rest) => (
            format!("/{}", rest.split_once('/').map_or("", |(_, p)| p)),
            true,
        ),
        None => (target.to_string(), false),
    };
    let req = Request {
        path: target.split('?').next().unwrap_or("/").to_string(),
        method,
        target,
        proxied,
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
    };
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req);

    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if req.method != "HEAD" {
        let mut pauses = resp.pauses;
        pauses.sort_by_key(|(at, _)| *at);
        let mut sent = 0;
        for (at, wait) in pauses {
            let at = at.clamp(sent, resp.body.len());
            stream.write_all(&resp.body[sent..at])?;
            stream.flush()?;
            sent = at;
            if !wait(stop) {
                // Cut short: let the client read what was sent before the connection goes.
                std::thread::sleep(Duration::from_millis(50));
                let _ = stream.shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
        }
        stream.write_all(&resp.body[sent..])?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        _ => "Status",
    }
}
