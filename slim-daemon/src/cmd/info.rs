//! `slimd info`: an image's layers, and the Dockerfile its history and config imply.
use crate::{
    cli::InfoArgs,
    image::history,
    runtime::Docker,
    ui::{self, Ui},
};

pub async fn execute(args: InfoArgs, ui: Ui) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let image = docker.image(&args.image).await?;
    let steps = docker.image_history(&args.image).await?;

    let layers: Vec<_> = steps.iter().filter(|s| s.size > 0).collect();
    let mut out = format!(
        "Image {} ({}): {}, {} layer(s)\n\nLayers (bottom first):\n",
        args.image,
        image.id,
        ui::size(image.size),
        image.layer_count
    );
    for (i, step) in layers.iter().enumerate() {
        let what: String = step.created_by.chars().take(100).collect();
        out.push_str(&format!(
            "{:>4}  {:>10}  {what}\n",
            i + 1,
            ui::size(step.size)
        ));
    }
    out.push_str("\nDockerfile (reverse-engineered):\n");
    out.push_str(&history::dockerfile(&steps, &image.run_config));
    ui.result(out.trim_end());
    Ok(())
}
