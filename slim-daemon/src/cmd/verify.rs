//! `slimd verify`: run the original and the slim image the same way and compare.
use crate::{
    cli::VerifyArgs,
    runtime::Docker,
    scenario::Scenario,
    ui::Ui,
    verify::{compares_stdout, differences, outcome_of},
};

pub async fn execute(args: VerifyArgs, ui: Ui) -> anyhow::Result<()> {
    let scenario = args.scenario.scenario()?;
    let docker = Docker::connect().await?;
    crate::runtime::cleanup::stale_containers(&docker).await;
    let cmd = (!args.cmd.is_empty()).then(|| args.cmd.clone());
    let original = Named::resolve(&docker, &args.original).await?;
    let slim = Named::resolve(&docker, &args.slim).await?;
    compare(&docker, &ui, &original, &slim, cmd, &scenario).await
}

/// An image by the name the user knows and the id that was resolved once: a tag that moves
/// while slimd works does not change what is compared.
pub struct Named {
    pub name: String,
    pub id: String,
}

impl Named {
    async fn resolve(docker: &Docker, name: &str) -> anyhow::Result<Self> {
        Ok(Named {
            name: name.to_owned(),
            id: docker.image(name).await?.id,
        })
    }
}

/// Runs both images and fails, naming every difference, unless they did the same.
pub async fn compare(
    docker: &Docker,
    ui: &Ui,
    original: &Named,
    slim: &Named,
    cmd: Option<Vec<String>>,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let step = ui.step(format!("run {}", original.name));
    let want = outcome_of(docker, &original.id, cmd.clone(), scenario).await?;
    step.done(format!("exit code {}", want.exit_code));
    let step = ui.step(format!("run {}", slim.name));
    let got = outcome_of(docker, &slim.id, cmd, scenario).await?;
    let (original, slim) = (&original.name, &slim.name);
    step.done(format!("exit code {}", got.exit_code));
    let found = differences(&want, &got);
    if found.is_empty() {
        let output = if compares_stdout(&want, &got) {
            format!("same output ({} bytes)", want.stdout.len())
        } else {
            "output not compared (stopped services log times)".to_owned()
        };
        ui.result(format!(
            "Verified {slim} against {original}: same exit code ({}), {output}, {} probe(s) and {} command(s) alike",
            want.exit_code,
            want.probes.len(),
            want.execs.len() + want.host_execs.len()
        ));
        return Ok(());
    }
    for d in &found {
        eprintln!("  {d}");
    }
    anyhow::bail!(
        "{slim} does not do what {original} does: {}",
        found.join("; ")
    )
}
