//! Command-line arguments (clap types only; the logic lives in `cmd` and the library).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{image::engine::Via, sensor::SensorChoice};

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
    /// Build a slim image from access reports of an image.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct SensorArgs {
    /// How to watch: eBPF, fanotify (which cannot see stat calls or symlinks), or eBPF with
    /// fanotify as the fallback.
    #[arg(long, value_enum, default_value_t = SensorChoice::Auto)]
    pub sensor: SensorChoice,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// The container (name or id); it must be running.
    pub container: String,
    /// Where to write the access report.
    #[arg(short, long, default_value = "slimd-report.json")]
    pub output: PathBuf,
    /// Stop after this many seconds (default: when the container exits, or on Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub sensor: SensorArgs,
}

#[derive(Debug, Args)]
pub struct ImageSourceArgs {
    /// How to read the original image: its layer directories in place (fast) or the
    /// `docker save` stream.
    #[arg(long, value_enum, default_value_t = Via::Auto, hide = true)]
    pub image_source: Via,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The original image (name:tag or id).
    pub image: String,
    /// An access report of the image; repeat to merge several.
    #[arg(short, long = "report", value_name = "FILE", required = true)]
    pub reports: Vec<PathBuf>,
    /// Tag of the slim image (default: <repo>:<tag>-slim).
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Build even from reports that lost events.
    #[arg(long)]
    pub allow_incomplete: bool,
    #[command(flatten)]
    pub source: ImageSourceArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to run and slim.
    pub image: String,
    /// Tag of the slim image (default: <repo>:<tag>-slim).
    #[arg(short, long)]
    pub tag: Option<String>,
    /// Stop the container after this many seconds (default: wait for it to exit).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Also keep the access report here.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Build even if events were lost.
    #[arg(long)]
    pub allow_incomplete: bool,
    #[command(flatten)]
    pub sensor: SensorArgs,
    #[command(flatten)]
    pub source: ImageSourceArgs,
    /// The command to run instead of the image's Cmd while observing (the slim image keeps
    /// the original command).
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}
