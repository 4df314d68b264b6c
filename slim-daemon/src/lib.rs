//! slimd: make container images small by watching, from the host kernel, which files a
//! workload uses, and building a single-layer image of only those files.
pub mod build;
pub mod cli;
pub mod cmd;
pub mod daemon;
pub mod fsutil;
pub mod image;
pub mod interrupt;
pub mod probe;
pub mod report;
pub mod resolve;
pub mod runtime;
pub mod scenario;
pub mod seccomp;
pub mod sensor;
pub mod session;
pub mod ui;
pub mod verify;
