//! devbox's integration tests: the real binary, real namespaces, real newuidmap, real images.
//! One test binary, a module per area.

mod apply;
mod archives;
mod catalog;
mod completions;
mod debarchive;
mod doctor;
mod download;
mod export;
mod harness;
#[path = "../support/http.rs"]
mod http;
mod imagecheck;
mod images;
mod inbox;
mod leftovers;
mod nofollow;
mod oci_create;
mod onebox;
mod polish;
mod project;
mod registry;
mod registry_auth;
mod runtime;
mod share;
mod terminal;
mod trust;
mod ui;
