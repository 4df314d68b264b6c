//! `slimd merge`: several access reports of one image as one.
use crate::{
    build,
    cli::MergeArgs,
    interrupt,
    report::AccessReport,
    ui::{self, Ui},
};

pub async fn execute(args: MergeArgs, ui: Ui) -> anyhow::Result<()> {
    let reports = build::read_reports(&args.reports).await?;
    let count = reports.len();
    let merged = AccessReport::merge_files(reports)?;
    interrupt::blocking(|| merged.write(&args.output))?;
    ui.result(format!(
        "Merged {count} reports of {} ({} paths) -> {}",
        merged.image.reference,
        ui::count(merged.paths.len()),
        args.output.display()
    ));
    Ok(())
}
