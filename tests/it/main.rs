//! devbox's integration tests: the real binary, real namespaces, real newuidmap, real images.
//! One test binary, a module per area.

mod archives;
mod catalog;
mod completions;
mod doctor;
mod download;
mod harness;
mod images;
mod oci_create;
mod project;
mod registry;
mod runtime;
mod terminal;
mod ui;
