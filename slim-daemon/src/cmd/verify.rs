//! `slimd verify`: run the original and the slim image the same way and compare.
use anyhow::Context;

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
    let seccomp = match &args.seccomp {
        Some(path) => Some(Profile::read(path)?),
        None => None,
    };
    compare(
        &docker,
        &ui,
        &original,
        &slim,
        cmd,
        seccomp.as_ref(),
        &scenario,
    )
    .await
}

/// A seccomp profile to run the slim image under.
pub struct Profile {
    pub name: String,
    /// Its JSON, as the engine takes it.
    pub text: String,
}

/// Profiles are a few KiB; a larger file is not one.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

impl Profile {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let file = crate::fsutil::open_regular(path)
            .with_context(|| format!("cannot read seccomp profile {}", path.display()))?;
        let bytes = crate::fsutil::read_bounded(file, MAX_PROFILE_BYTES, "a seccomp profile")
            .with_context(|| format!("cannot read seccomp profile {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a seccomp profile: {e}", path.display()))?;
        anyhow::ensure!(
            value.get("defaultAction").is_some_and(|a| a.is_string()),
            "{} is not a seccomp profile: it has no defaultAction",
            path.display()
        );
        Ok(Profile {
            name: path.display().to_string(),
            text: value.to_string(),
        })
    }
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
    seccomp: Option<&Profile>,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let step = ui.step(format!("run {}", original.name));
    let want = outcome_of(docker, &original.id, cmd.clone(), None, scenario).await?;
    step.done(format!("exit code {}", want.exit_code));
    let confined = seccomp.map_or(String::new(), |p| format!(" under {}", p.name));
    let step = ui.step(format!("run {}{confined}", slim.name));
    let text = seccomp.map(|p| p.text.as_str());
    let got = outcome_of(docker, &slim.id, cmd, text, scenario).await?;
    let (original, slim) = (&original.name, &format!("{}{confined}", slim.name));
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
