//! `slimd build`: a slim image from access reports.
use super::summary_line;
use crate::{
    build::{self, BuildOptions},
    cli::BuildArgs,
    runtime::Docker,
    ui::Ui,
};

pub async fn execute(args: BuildArgs, ui: Ui) -> anyhow::Result<()> {
    let reports = build::read_reports(&args.reports)?;
    let docker = Docker::connect().await?;
    let options = BuildOptions {
        tag: args.tag,
        allow_incomplete: args.allow_incomplete,
        via: args.source.image_source,
        source_date_epoch: build::source_date_epoch(),
    };
    ui.info(format!(
        "building a slim image of {} from {} report(s)",
        args.image,
        reports.len()
    ));
    let summary = build::build(&docker, &args.image, reports, &options).await?;
    ui.result(summary_line(&summary));
    Ok(())
}
