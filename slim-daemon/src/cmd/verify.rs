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
    let cmd = (!args.cmd.is_empty()).then(|| args.cmd.clone());
    compare(&docker, &ui, &args.original, &args.slim, cmd, &scenario).await
}

/// Runs both images and fails, naming every difference, unless they did the same.
pub async fn compare(
    docker: &Docker,
    ui: &Ui,
    original: &str,
    slim: &str,
    cmd: Option<Vec<String>>,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let step = ui.step(format!("run {original}"));
    let want = outcome_of(docker, original, cmd.clone(), scenario).await?;
    step.done(format!("exit code {}", want.exit_code));
    let step = ui.step(format!("run {slim}"));
    let got = outcome_of(docker, slim, cmd, scenario).await?;
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
