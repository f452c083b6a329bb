//! devbox's integration tests: the real binary, real namespaces, real newuidmap, real images.
//! One test binary, a module per area.

mod archives;
mod completions;
mod doctor;
mod download;
mod harness;
mod images;
mod runtime;
mod terminal;
