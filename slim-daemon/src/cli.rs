//! Command-line arguments (clap types only; the logic lives in `cmd` and the library).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    image::source::Via,
    scenario::ContinueAfter,
    sensor::{SensorChoice, ebpf::DEFAULT_RING_KB},
};

#[derive(Debug, Parser)]
#[command(
    name = "slimd",
    version,
    about = "Make container images small by watching, from the host kernel, which files a workload uses"
)]
pub struct Cli {
    /// More output: -v for progress details, -vv for debug logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print only errors and the final result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an image, watch it from its first instruction, and build <image>-slim.
    Run(RunArgs),
    /// Watch a running container and write an access report.
    Observe(ObserveArgs),
    /// Build a slim image from access reports of an image (or from --include rules alone).
    Build(BuildArgs),
    /// Merge access reports of one image into one report.
    Merge(MergeArgs),
    /// Show an image's layers and a Dockerfile reverse-engineered from its history and config.
    Info(InfoArgs),
    /// Run an image and its slim image the same way and compare what they do.
    Verify(VerifyArgs),
    /// Write a seccomp profile that allows the syscalls the reports' workloads made.
    Seccomp(SeccompArgs),
    /// Watch every labelled container of this host from its first instruction, keep its
    /// access report, and serve the reports over HTTP.
    Daemon(DaemonArgs),
}

#[derive(Debug, Args)]
pub struct SeccompArgs {
    /// Access reports (files, or http:// URLs); several are merged.
    #[arg(required = true, num_args = 1..)]
    pub reports: Vec<String>,
    /// Where to write the profile.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Write a profile even from reports that saw only part of their containers' lives.
    #[arg(long)]
    pub allow_partial: bool,
}

/// How a seccomp profile is made.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The runtime whose steps after installing the filter are allowed.
    #[arg(long, value_enum, default_value_t = crate::seccomp::Baseline::Runc)]
    pub baseline: crate::seccomp::Baseline,
    /// Log what the profile would deny (SCMP_ACT_LOG) instead of denying it.
    #[arg(long)]
    pub complain: bool,
}

/// A seccomp profile written beside the slim image.
#[derive(Debug, Args)]
pub struct SeccompOutArgs {
    /// Also write a seccomp profile of the observed syscalls here (`run --verify` then runs
    /// the slim image under it).
    #[arg(long, value_name = "FILE")]
    pub seccomp: Option<PathBuf>,
    /// The runtime whose steps after installing the filter the profile allows.
    #[arg(long, value_enum, default_value_t = crate::seccomp::Baseline::Runc, requires = "seccomp")]
    pub seccomp_baseline: crate::seccomp::Baseline,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where the reports are kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/slimd")]
    pub state_dir: PathBuf,
    /// Where the HTTP API listens (read-only, no authentication: keep it node-local).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9410")]
    pub listen: std::net::SocketAddr,
    /// Watch containers with this label (KEY, or KEY=VALUE); repeat to require several.
    #[arg(
        long = "label",
        value_name = "KEY[=VALUE]",
        default_value = "slimd.observe=true"
    )]
    pub labels: Vec<crate::daemon::selector::LabelRule>,
    /// Seconds between writes of the reports that changed (they are also written when a
    /// container exits, and when the daemon stops).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = crate::scenario::parse_secs)]
    pub flush_interval: f64,
    /// How to watch: eBPF, fanotify, or eBPF with fanotify as the fallback.
    #[arg(long, value_enum, default_value_t = SensorChoice::Auto)]
    pub sensor: SensorChoice,
    /// Size of the eBPF ring buffer in KiB (a power of two).
    #[arg(long, value_name = "KIB", default_value_t = crate::sensor::ebpf::DAEMON_RING_KB)]
    pub ring_buffer_kb: u32,
}

/// What to do with the running container, and when to stop it.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Send HTTP requests (GET / unless told otherwise) to the exposed ports, published on
    /// 127.0.0.1, once they accept connections.
    #[arg(long)]
    pub http_probe: bool,
    /// Request this path (repeatable; implies --http-probe).
    #[arg(long, value_name = "PATH")]
    pub http_probe_path: Vec<String>,
    /// Requests from a JSON file: [{"method", "path", "headers": [[name, value]], "body"}]
    /// (implies --http-probe).
    #[arg(long, value_name = "FILE")]
    pub http_probe_file: Option<PathBuf>,
    /// Probe only this container port (repeatable).
    #[arg(long, value_name = "PORT")]
    pub http_probe_port: Vec<String>,
    /// Run this command in the container with `sh -c` (repeatable); what it uses counts.
    #[arg(long = "exec", value_name = "CMD")]
    pub execs: Vec<String>,
    /// Run this command on the host with `sh -c` (repeatable), with SLIMD_PORT_<port> set to
    /// each published port on 127.0.0.1; what it uses does not count.
    #[arg(long = "host-exec", value_name = "CMD")]
    pub host_execs: Vec<String>,
    /// When to stop the container: when it exits, once the probes and commands are done, or
    /// that many seconds after (default: probes when there are probes or commands, else exit).
    #[arg(long, value_name = "exit|probes|SECS")]
    pub continue_after: Option<ContinueAfter>,
    /// Stop the container after this many seconds at the latest.
    #[arg(long, value_name = "SECS", value_parser = crate::scenario::parse_secs)]
    pub duration: Option<f64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The original image.
    pub original: String,
    /// The slim image.
    pub slim: String,
    /// Run the slim image under this seccomp profile.
    #[arg(long, value_name = "FILE")]
    pub seccomp: Option<PathBuf>,
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// The command to run in both instead of the image's Cmd.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SensorArgs {
    /// How to watch: eBPF, fanotify (which cannot see stat calls or symlinks), or eBPF with
    /// fanotify as the fallback.
    #[arg(long, value_enum, default_value_t = SensorChoice::Auto)]
    pub sensor: SensorChoice,
    /// Size of the eBPF ring buffer in KiB (a power of two); raise it if a report says
    /// events were lost.
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_RING_KB)]
    pub ring_buffer_kb: u32,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// The container (name or id); it must be running.
    pub container: String,
    /// Where to write the access report.
    #[arg(short, long, default_value = "slimd-report.json")]
    pub output: PathBuf,
    /// Stop after this many seconds (default: when the container exits, or on Ctrl-C).
    #[arg(long, value_name = "SECS", value_parser = crate::scenario::parse_secs)]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub sensor: SensorArgs,
}

#[derive(Debug, Args)]
pub struct ImageSourceArgs {
    /// How to read an original image from the engine: its layer directories in place (fast)
    /// or the `docker save` stream.
    #[arg(long, value_enum, default_value_t = Via::Auto, hide = true)]
    pub image_source: Via,
}

/// What to keep besides the used paths, and what to leave out.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Also keep this path (a directory with everything below it) or glob (`*`, `**`).
    #[arg(long, value_name = "PATH|GLOB")]
    pub include: Vec<String>,
    /// Also keep the paths and globs listed in this file, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub include_file: Vec<PathBuf>,
    /// Also keep this executable with its ELF interpreter and shared libraries.
    #[arg(long, value_name = "PATH")]
    pub include_bin: Vec<PathBuf>,
    /// Leave out this path or glob, whatever else asks for it.
    #[arg(long, value_name = "PATH|GLOB")]
    pub exclude: Vec<String>,
}

/// Where the slim image goes.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Also write it as an OCI image layout into this new directory.
    #[arg(long, value_name = "DIR")]
    pub oci_dir: Option<PathBuf>,
    /// Also write it as a docker-archive tar (what `docker load` reads).
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Do not load it into the engine.
    #[arg(long)]
    pub no_load: bool,
    /// Move the tag even when it names an image that slimd did not build.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The original image: name:tag or id in the engine, `oci:DIR[:REF]` or
    /// `docker-archive:FILE`.
    pub image: String,
    /// An access report of the image (a file, or an http:// URL such as a daemon's
    /// /images/<id>/report); repeat to merge several.
    #[arg(short, long = "report", value_name = "FILE|URL")]
    pub reports: Vec<String>,
    /// Tag of the slim image (default: <repo>:<tag>-slim).
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Build even from reports that lost events (and write a profile from reports that saw
    /// part of their containers' lives).
    #[arg(long)]
    pub allow_incomplete: bool,
    #[command(flatten)]
    pub seccomp: SeccompOutArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub source: ImageSourceArgs,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Reports of one image: files, or http:// URLs.
    #[arg(required = true, num_args = 1..)]
    pub reports: Vec<String>,
    /// Where to write the merged report.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image (name:tag or id in the engine).
    pub image: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run and slim.
    pub image: String,
    /// Tag of the slim image (default: <repo>:<tag>-slim).
    #[arg(short, long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Then run the original and the slim image the same way and compare what they do.
    #[arg(long)]
    pub verify: bool,
    /// Also keep the access report here.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Build even if events were lost.
    #[arg(long)]
    pub allow_incomplete: bool,
    #[command(flatten)]
    pub seccomp: SeccompOutArgs,
    #[command(flatten)]
    pub sensor: SensorArgs,
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// The command to run instead of the image's Cmd while observing (the slim image keeps
    /// the original command).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}
