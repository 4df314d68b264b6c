//! One module per subcommand, dispatched from [`Command::execute`].
mod build;
mod info;
mod merge;
mod observe;
mod run;

use std::time::Duration;

use anyhow::Context;

use crate::{
    build::{BuildSummary, Outputs, SelectionRules},
    cli::{Command, OutputArgs, SelectionArgs},
    ui::{self, Ui},
};

impl Command {
    pub async fn execute(self, ui: Ui) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => run::execute(args, ui).await,
            Command::Observe(args) => observe::execute(args, ui).await,
            Command::Build(args) => build::execute(args, ui).await,
            Command::Merge(args) => merge::execute(args, ui),
            Command::Info(args) => info::execute(args, ui).await,
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

/// How an observation ended and what it saw.
fn observed(stop: Stop, recording: &crate::session::Recording) -> String {
    let why = match stop {
        Stop::Exited(code) => format!("the container exited ({code})"),
        Stop::Duration => "the duration ended".into(),
        Stop::Interrupted => "interrupted".into(),
    };
    format!(
        "{why}: {} events, {} distinct accesses",
        recording.events.received,
        recording.accesses.len()
    )
}

fn progress_detail(p: crate::session::Progress) -> String {
    format!("{} events, {} distinct accesses", p.events, p.distinct)
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

impl SelectionArgs {
    /// The rules, with the include files read.
    fn rules(&self) -> anyhow::Result<SelectionRules> {
        let mut include = self.include.clone();
        for file in &self.include_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read include file {}", file.display()))?;
            include.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        Ok(SelectionRules {
            include,
            exclude: self.exclude.clone(),
            include_bin: self.include_bin.clone(),
        })
    }
}

impl OutputArgs {
    fn outputs(&self) -> Outputs {
        Outputs {
            load: !self.no_load,
            oci_dir: self.oci_dir.clone(),
            archive: self.archive.clone(),
        }
    }
}

fn summary_line(s: &BuildSummary) -> String {
    let percent = if s.original_size == 0 {
        0.0
    } else {
        s.slim_size as f64 * 100.0 / s.original_size as f64
    };
    let mut line = format!(
        "Slimmed {} -> {}: {} -> {} ({percent:.1}%), kept {} of {} files",
        s.original,
        s.tag,
        ui::size(s.original_size),
        ui::size(s.slim_size),
        ui::count(s.kept_files),
        ui::count(s.total_files),
    );
    if s.written.iter().any(|w| !w.starts_with("engine")) {
        line.push_str(&format!("; wrote {}", s.written.join(", ")));
    }
    line
}
