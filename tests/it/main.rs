//! devbox's integration tests: the real binary, real namespaces, real newuidmap, real images.
//! One test binary, a module per area.

mod apply;
mod archives;
mod catalog;
mod completions;
mod doctor;
mod download;
mod export;
mod harness;
mod images;
mod inbox;
mod leftovers;
mod nofollow;
mod oci_create;
mod onebox;
mod project;
mod registry;
mod runtime;
mod share;
mod terminal;
mod trust;
mod ui;
