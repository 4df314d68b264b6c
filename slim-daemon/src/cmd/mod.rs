//! One module per subcommand, dispatched from [`Command::execute`].
mod build;
mod observe;
mod run;

use std::time::Duration;

use crate::{
    build::BuildSummary,
    cli::Command,
    ui::{self, Ui},
};

impl Command {
    pub async fn execute(self, ui: Ui) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => run::execute(args, ui).await,
            Command::Observe(args) => observe::execute(args, ui).await,
            Command::Build(args) => build::execute(args, ui).await,
        }
    }
}

/// Why a recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Exited(i64),
    Duration,
    Interrupted,
}

/// Completes on Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Completes after `secs`, or never.
async fn deadline(secs: Option<f64>) {
    match secs {
        Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
        None => std::future::pending().await,
    }
}

/// The warning when `--sensor auto` falls back to fanotify.
fn fanotify_fallback(e: &crate::sensor::SensorError) -> String {
    format!(
        "eBPF is not available ({e}); watching with fanotify, which cannot see stat calls or symlinks"
    )
}

fn summary_line(s: &BuildSummary) -> String {
    let percent = if s.original_size == 0 {
        0.0
    } else {
        s.slim_size as f64 * 100.0 / s.original_size as f64
    };
    format!(
        "Slimmed {} -> {}: {} -> {} ({percent:.1}%), kept {} of {} files",
        s.original,
        s.tag,
        ui::size(s.original_size),
        ui::size(s.slim_size),
        ui::count(s.kept_files),
        ui::count(s.total_files),
    )
}
