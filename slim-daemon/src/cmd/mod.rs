//! One module per subcommand, dispatched from [`Command::execute`].
mod build;
mod daemon;
mod info;
mod merge;
mod observe;
mod run;
mod seccomp;
mod verify;

use anyhow::Context;

use crate::{
    build::{BuildSummary, Outputs, SelectionRules},
    cli::{Command, OutputArgs, ScenarioArgs, SelectionArgs},
    interrupt::cancellable,
    probe::HttpProbe,
    scenario::{Ending, Scenario},
    ui::{self, Ui},
};

impl Command {
    /// Ctrl-C or SIGTERM stops any command: its work unwinds and removes what it made (`run`
    /// and `verify` remove their containers first). Only `observe` takes the first one as the
    /// end of its observation, and writes its report.
    pub async fn execute(self, ui: Ui) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => run::execute(args, ui).await,
            Command::Observe(args) => observe::execute(args, ui).await,
            Command::Build(args) => cancellable(build::execute(args, ui)).await,
            Command::Merge(args) => cancellable(merge::execute(args, ui)).await,
            Command::Info(args) => cancellable(info::execute(args, ui)).await,
            Command::Verify(args) => verify::execute(args, ui).await,
            Command::Seccomp(args) => cancellable(seccomp::execute(args, ui)).await,
            // The daemon takes signals as the order to write its reports and stop.
            Command::Daemon(args) => daemon::execute(args).await,
        }
    }
}

/// The warning when `--sensor auto` falls back to fanotify.
fn fanotify_fallback(e: &crate::sensor::SensorError) -> String {
    format!(
        "eBPF is not available ({e}); watching with fanotify, which cannot see stat calls or symlinks"
    )
}

/// How an observation ended and what it saw.
fn observed(ending: Ending, exit_code: i64, recording: &crate::session::Recording) -> String {
    let why = match ending {
        Ending::Exited => format!("the container exited ({exit_code})"),
        Ending::Done => "done".into(),
        Ending::Duration => "the duration ended".into(),
        Ending::Interrupted => "interrupted".into(),
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

impl ScenarioArgs {
    /// The scenario, with the probe file read.
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut probes: Vec<HttpProbe> = self
            .http_probe_path
            .iter()
            .map(|p| HttpProbe::get(p))
            .collect();
        if let Some(file) = &self.http_probe_file {
            probes.extend(HttpProbe::from_file(file)?);
        }
        if self.http_probe && probes.is_empty() {
            probes.push(HttpProbe::get("/"));
        }
        Ok(Scenario {
            probes,
            probe_ports: self.http_probe_port.clone(),
            execs: self.execs.clone(),
            host_execs: self.host_execs.clone(),
            continue_after: self.continue_after.unwrap_or_default(),
            duration: self.duration,
        })
    }
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
