//! `slimd merge`: several access reports of one image as one.
use crate::{
    build,
    cli::MergeArgs,
    report::AccessReport,
    ui::{self, Ui},
};

pub fn execute(args: MergeArgs, ui: Ui) -> anyhow::Result<()> {
    let reports = build::read_reports(&args.reports)?;
    let count = reports.len();
    let merged = AccessReport::merge(
        reports
            .into_iter()
            .map(|(p, r)| (p.display().to_string(), r))
            .collect(),
    )?;
    merged.write(&args.output)?;
    ui.result(format!(
        "Merged {count} reports of {} ({} paths) -> {}",
        merged.image.reference,
        ui::count(merged.paths.len()),
        args.output.display()
    ));
    Ok(())
}
