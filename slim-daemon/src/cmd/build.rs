//! `slimd build`: a slim image from access reports and selection rules.
use super::summary_line;
use crate::{
    build::{self, BuildOptions},
    cli::BuildArgs,
    image::source::ImageSpec,
    runtime::Docker,
    ui::Ui,
};

pub async fn execute(args: BuildArgs, ui: Ui) -> anyhow::Result<()> {
    let source_date_epoch = build::source_date_epoch()?;
    let reports = build::read_reports(&args.reports).await?;
    let spec = ImageSpec::parse(&args.image);
    let options = BuildOptions {
        tag: args.tag,
        allow_incomplete: args.allow_incomplete,
        via: args.source.image_source,
        source_date_epoch,
        outputs: args.outputs.outputs(),
        force: args.outputs.force,
        rules: args.selection.rules()?,
    };
    let docker = if spec.is_engine() || options.outputs.load {
        Some(Docker::connect().await?)
    } else {
        None
    };
    let summary = build::build(docker.as_ref(), &spec, reports, &options, &ui).await?;
    ui.result(summary_line(&summary));
    Ok(())
}
