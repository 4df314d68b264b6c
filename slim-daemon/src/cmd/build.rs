//! `slimd build`: a slim image from access reports and selection rules.
use super::{seccomp::profile_line, summary_line};
use crate::{
    build::{self, BuildOptions},
    cli::BuildArgs,
    image::source::ImageSpec,
    interrupt,
    runtime::Docker,
    seccomp,
    ui::Ui,
};

pub async fn execute(args: BuildArgs, ui: Ui) -> anyhow::Result<()> {
    let source_date_epoch = build::source_date_epoch()?;
    let reports = build::read_reports(&args.reports).await?;
    // The profile is checked before the build, and written only once the image is.
    let profile = match &args.seccomp.seccomp {
        Some(path) => Some((
            path.clone(),
            args.seccomp.profile_of(&reports, args.allow_incomplete)?,
        )),
        None => None,
    };
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
    if let Some((path, profile)) = profile {
        interrupt::blocking(|| seccomp::write_profile(&path, &profile))?;
        ui.result(profile_line(&profile, &path));
    }
    Ok(())
}
