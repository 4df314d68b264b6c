//! `slimd run`: run an image, observe it from its first instruction, build the slim image.
use std::collections::HashMap;

use anyhow::Context;

use super::{Stop, deadline, interrupted, summary_line};
use crate::{
    build::{self, BuildOptions},
    cli::RunArgs,
    image::engine,
    report::{ContainerRef, ImageRef},
    runtime::{
        CreateSpec, Docker,
        cgroup::{self, Cgroup},
    },
    sensor::EbpfSensor,
    session::{self, Observation},
    ui::Ui,
};

/// Seconds a container gets to stop on its StopSignal before it is killed.
const STOP_GRACE_SECS: i32 = 10;

pub async fn execute(args: RunArgs, ui: Ui) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let image = docker.image(&args.image).await?;
    let engine_info = docker.engine_info().await?;
    if engine_info.cgroup_driver != "cgroupfs" {
        anyhow::bail!(
            "slimd run needs Docker's cgroupfs cgroup driver (this engine uses {}); \
             start the container yourself and use `slimd observe`",
            engine_info.cgroup_driver
        );
    }
    let sensor = EbpfSensor::load()?;
    let root = cgroup::unified_root()?;
    let run_id = format!("{:x}{:x}", std::process::id(), rand_suffix());
    let parent_rel = format!("/slimd/{run_id}");
    let parent = Cgroup::create(&root, parent_rel.as_ref())?;
    let observation = Observation::start(sensor, parent.clone(), true)?;

    let name = format!("slimd-run-{run_id}");
    let spec = CreateSpec {
        image: image.id.clone(),
        name: name.clone(),
        cmd: (!args.cmd.is_empty()).then(|| args.cmd.clone()),
        cgroup_parent: Some(parent_rel.clone()),
        labels: HashMap::from([("slimd.run".to_owned(), run_id.clone())]),
    };
    let result = run_and_build(&docker, &args, ui, &image, &spec, observation).await;
    if let Err(e) = docker.remove_container(&name).await {
        ui.warn(format!("could not remove container {name}: {e}"));
    }
    if let Err(e) = parent.remove() {
        tracing::debug!("leaving cgroup {}: {e}", parent.dir.display());
    }
    result
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

async fn run_and_build(
    docker: &Docker,
    args: &RunArgs,
    ui: Ui,
    image: &crate::runtime::ImageInfo,
    spec: &CreateSpec,
    mut observation: Observation,
) -> anyhow::Result<()> {
    let id = docker.create(spec).await?;
    ui.info(format!("running {} as {}", args.image, spec.name));
    docker.start(&id).await?;
    let stop = observation
        .record_until(async {
            let why = tokio::select! {
                code = docker.wait(&id) => return code.map(Stop::Exited),
                _ = deadline(args.duration) => Stop::Duration,
                _ = interrupted() => Stop::Interrupted,
            };
            docker.stop(&id, STOP_GRACE_SECS).await?;
            docker.wait(&id).await?;
            Ok::<_, crate::runtime::RuntimeError>(why)
        })
        .await??;
    let recording = observation.finish()?;
    match stop {
        Stop::Exited(0) => {}
        Stop::Exited(code) => ui.warn(format!("the container exited with code {code}")),
        Stop::Duration => ui.info("stopped the container after the duration"),
        Stop::Interrupted => ui.info("interrupted: stopped the container"),
    }
    let container = docker.container(&id).await?;

    let original = engine::open(docker, &image.id, args.source.image_source)
        .await
        .context("reading the original image")?;
    let mounts = session::mount_points(&recording, &container.mount_destinations);
    let (report, _stats) = session::make_report(
        &recording,
        &original.files,
        &mounts,
        ImageRef {
            reference: args.image.clone(),
            id: image.id.clone(),
        },
        ContainerRef {
            id: container.id.clone(),
            name: container.name.clone(),
        },
    );
    if let Some(path) = &args.output {
        report.write(path)?;
    }
    if !report.complete && !args.allow_incomplete {
        anyhow::bail!(
            "events were lost while observing ({} lost, {} unreadable, {} too long), so the slim \
             image could miss files; run again, or pass --allow-incomplete",
            report.events.lost,
            report.events.unreadable,
            report.events.truncated
        );
    }
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| build::tag::slim_tag(&args.image, &image.id));
    let options = BuildOptions {
        tag: Some(tag.clone()),
        allow_incomplete: args.allow_incomplete,
        via: args.source.image_source,
        source_date_epoch: build::source_date_epoch(),
    };
    let summary =
        build::build_from(docker, &original, &args.image, &report, &tag, &options).await?;
    ui.result(summary_line(&summary));
    Ok(())
}
