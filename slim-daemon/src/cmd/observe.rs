//! `slimd observe`: watch a running container and write its access report.
use std::path::Path;

use anyhow::Context;

use super::{fanotify_fallback, observed, progress_detail};
use crate::{
    cli::ObserveArgs,
    image::{
        ImageFiles,
        source::{self, ImageSpec, Via},
    },
    interrupt,
    report::{ContainerRef, ImageRef, PartialReason},
    runtime::{Docker, cgroup},
    scenario::{Ending, deadline},
    sensor::Sensor,
    session::{self, Observation},
    ui::{self, Ui},
};

pub async fn execute(args: ObserveArgs, ui: Ui) -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    let container = docker.running_container(&args.container).await?;
    let pid = container.pid.expect("a running container has a pid");
    let image = docker.image(&container.image_id).await?;
    let mut sensor = Sensor::load(args.sensor.sensor, args.sensor.ring_buffer_kb, |e| {
        ui.warn(fanotify_fallback(e))
    })?;
    let root = cgroup::unified_root()?;
    let cgroup = cgroup::Cgroup::of_process(&root, pid)?;
    let watch_id = sensor.watch_container(&cgroup, Path::new(&format!("/proc/{pid}/root")))?;
    let mut observation = Observation::new(sensor, watch_id, cgroup);
    observation.learn_mounts_from(pid);
    observation.snapshot_running();
    ui.info(format!(
        "observing container {} ({}); stop with Ctrl-C{}",
        container.name,
        &container.id[..12.min(container.id.len())],
        args.duration
            .map(|d| format!(" or after {d} s"))
            .unwrap_or_default()
    ));
    let step = ui.step("observe");
    // The container is the user's: it is watched, never stopped.
    let (ending, code) = observation
        .record_until(
            async {
                tokio::select! {
                    code = docker.wait(&container.id) => code.map(|c| (Ending::Exited, c)),
                    _ = deadline(args.duration) => Ok((Ending::Duration, 0)),
                    _ = interrupt::interrupted() => {
                        // Ctrl-C is how an open-ended observation ends: what follows is the
                        // report, which a second signal still interrupts.
                        interrupt::acknowledge();
                        Ok((Ending::Interrupted, 0))
                    }
                }
            },
            |p| step.set_detail(progress_detail(p)),
        )
        .await??;
    let recording = observation.finish()?;
    step.done(observed(ending, code, &recording));

    // The container's own mount table is the container's to change: its layer directories
    // are used only when they are the ones the engine has for the image.
    let engine_dirs = source::overlay2_layer_dirs(&image).ok();
    let layer_dirs = recording
        .mounts
        .as_ref()
        .and_then(|m| session::image_layer_dirs(m, image.layer_count))
        .filter(|dirs| {
            let same = engine_dirs
                .as_ref()
                .is_some_and(|engine| session::same_dirs(dirs, engine));
            if !same {
                ui.warn(
                    "the container's mount table names layer directories the engine does not \
                     have for its image; reading the image from the engine instead",
                );
            }
            same
        });
    let from_engine;
    let in_place;
    let files: &ImageFiles =
        match layer_dirs.map(|d| interrupt::blocking(|| ImageFiles::from_layer_dirs(&d))) {
            Some(Ok(files)) => {
                in_place = files;
                &in_place
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::debug!("reading the image from the engine: {e}");
                }
                from_engine = source::open(
                    &ImageSpec::Engine(image.id.clone()),
                    Some(&docker),
                    Via::Auto,
                )
                .await
                .context("reading the container's image")?;
                &from_engine.files
            }
        };
    let mounts = session::mount_points(&recording, &container.mount_destinations);
    let (mut report, stats) = session::make_report(
        &recording,
        files,
        &mounts,
        ImageRef {
            reference: container.image_ref.clone(),
            id: image.id.clone(),
        },
        ContainerRef::watched(
            &container.id,
            &container.name,
            container.labels.clone(),
            "observe",
            recording.started_at,
            recording.ended_at,
        ),
    )?;
    // It attached to a running container: the report saw only part of its life.
    report.mark_partial(PartialReason::StartedBeforeObserver);
    if ending != Ending::Exited {
        report.mark_partial(PartialReason::ObserverStoppedFirst);
    }
    report.write(&args.output)?;
    tracing::debug!(?stats, "resolution");
    if !report.complete {
        ui.warn(format!(
            "the report is incomplete: {}",
            report.events.gaps()
        ));
    }
    ui.result(format!(
        "Recorded {} paths of {} used by container {} ({} events) -> {}",
        ui::count(report.paths.len()),
        container.image_ref,
        container.name,
        ui::count(report.events.received as usize),
        args.output.display()
    ));
    Ok(())
}
