//! `slimd seccomp`: a seccomp profile from the syscalls that access reports saw.
use crate::{
    build,
    cli::{ProfileArgs, SeccompArgs, SeccompOutArgs},
    interrupt,
    report::AccessReport,
    seccomp::{self, ProfileOptions},
    ui::Ui,
};

pub async fn execute(args: SeccompArgs, ui: Ui) -> anyhow::Result<()> {
    let reports = build::read_reports(&args.reports).await?;
    let source = if reports.len() == 1 {
        reports[0].0.display().to_string()
    } else {
        format!("the merge of {} reports", reports.len())
    };
    let merged = AccessReport::merge_files(reports)?;
    let profile =
        seccomp::profile_of_report(&source, &merged, args.profile.options(), args.allow_partial)?;
    interrupt::blocking(|| seccomp::write_profile(&args.output, &profile))?;
    ui.result(profile_line(&profile, &args.output));
    Ok(())
}

impl SeccompOutArgs {
    /// The profile of `--seccomp` for these reports, merged.
    pub fn profile_of(
        &self,
        reports: &[(std::path::PathBuf, AccessReport)],
        allow_partial: bool,
    ) -> anyhow::Result<serde_json::Value> {
        anyhow::ensure!(
            !reports.is_empty(),
            "--seccomp needs an access report (--report FILE): the syscalls come from it"
        );
        let parts = reports
            .iter()
            .map(|(p, r)| (p.clone(), r.without_paths()))
            .collect();
        let merged = AccessReport::merge_files(parts)?;
        let source = reports
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(seccomp::profile_of_report(
            &source,
            &merged,
            self.options(),
            allow_partial,
        )?)
    }

    pub fn options(&self) -> ProfileOptions {
        ProfileOptions {
            baseline: self.seccomp_baseline,
            complain: false,
        }
    }
}

impl ProfileArgs {
    pub fn options(&self) -> ProfileOptions {
        ProfileOptions {
            baseline: self.baseline,
            complain: self.complain,
        }
    }
}

/// What a written profile allows, in one line.
pub fn profile_line(profile: &serde_json::Value, path: &std::path::Path) -> String {
    let allowed = profile["syscalls"][0]["names"]
        .as_array()
        .map_or(0, Vec::len);
    let rest = if profile["defaultAction"] == "SCMP_ACT_LOG" {
        "the rest are logged"
    } else {
        "the rest fail with EPERM"
    };
    format!(
        "Wrote seccomp profile {}: {allowed} syscalls allowed, {rest}",
        path.display()
    )
}
