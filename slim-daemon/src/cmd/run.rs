//! `slimd run`: run an image, observe it from its first instruction, build the slim image.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;

use super::{fanotify_fallback, observed, progress_detail, seccomp::profile_line, summary_line};
use crate::{
    build::{self, BuildOptions, BuildSummary, SelectionRules},
    cli::RunArgs,
    image::source::ImageSpec,
    interrupt,
    report::{ContainerRef, ImageRef},
    resolve::mountinfo,
    runtime::{
        ContainerInfo, CreateSpec, Docker, ImageInfo, RuntimeError,
        cgroup::{self, Cgroup},
        cleanup,
    },
    scenario::{self, Ending, Scenario},
    seccomp,
    sensor::{FanotifySensor, Sensor, SensorError},
    session::{self, Observation, Recording},
    ui::Ui,
};

/// The cgroup, below the unified root, that holds the cgroups slimd makes for its containers.
const CGROUP_PARENT: &str = "slimd";
/// How often to look for the container's root mount while it starts (fanotify).
const MOUNT_POLL: Duration = Duration::from_millis(1);

pub async fn execute(args: RunArgs, ui: Ui) -> anyhow::Result<()> {
    // Checked before anything starts, so that a bad value costs no container.
    build::source_date_epoch()?;
    let rules = args.selection.rules()?;
    let scenario = args.scenario.scenario()?;
    if args.verify && args.outputs.no_load {
        anyhow::bail!("--verify runs the slim image from the engine: drop --no-load");
    }
    let docker = Docker::connect().await?;
    cleanup::stale_containers(&docker).await;
    let image = docker.image(&args.image).await?;
    if scenario.needs_ports() && image.exposed_ports.is_empty() {
        ui.warn(format!(
            "{} exposes no ports: there is nothing to probe",
            args.image
        ));
    }
    let engine_info = docker.engine_info().await?;
    if engine_info.cgroup_driver != "cgroupfs" {
        anyhow::bail!(
            "slimd run needs Docker's cgroupfs cgroup driver (this engine uses {}); \
             start the container yourself and use `slimd observe`",
            engine_info.cgroup_driver
        );
    }
    let sensor = Sensor::load(args.sensor.sensor, args.sensor.ring_buffer_kb, |e| {
        ui.warn(fanotify_fallback(e))
    })?;
    let root = cgroup::unified_root()?;
    cleanup::stale_cgroups(&root.join(CGROUP_PARENT));
    let run_id = format!("{:x}-{:x}", std::process::id(), rand_suffix());
    // The container starts in a cgroup below one slimd made, so that the sensor can watch it
    // before its first instruction.
    let parent_rel = format!("/{CGROUP_PARENT}/{run_id}");
    let parent = Cgroup::create(&root, parent_rel.as_ref())?;
    let name = format!("slimd-run-{run_id}");
    let spec = CreateSpec {
        image: image.id.clone(),
        name: name.clone(),
        cmd: (!args.cmd.is_empty()).then(|| args.cmd.clone()),
        cgroup_parent: Some(parent_rel.clone()),
        labels: HashMap::from([
            ("slimd.run".to_owned(), run_id.clone()),
            (cleanup::OWNER_LABEL.to_owned(), cleanup::owner()),
        ]),
        publish: if scenario.needs_ports() {
            image.exposed_ports.clone()
        } else {
            Vec::new()
        },
        seccomp: None,
    };
    let plan = Plan {
        docker: &docker,
        args: &args,
        ui,
        image: &image,
        spec: &spec,
        parent: &parent,
        scenario: &scenario,
        created: OnceLock::new(),
        create_sent: AtomicBool::new(false),
    };
    let result = interrupt::cancellable(plan.run_and_build(sensor, rules)).await;
    // Only the container this run created is removed, by its id. Interrupted while the
    // engine created it, the id never came back: the container by its name is this run's
    // when it carries this run's labels.
    let created = match plan.created.get() {
        Some(id) => Some(id.clone()),
        None if plan.create_sent.load(Ordering::Acquire) => {
            created_by_name(&docker, &name, &run_id).await
        }
        None => None,
    };
    if let Some(id) = created
        && let Err(e) = docker.remove_container(&id).await
    {
        ui.warn(format!("could not remove container {name}: {e}"));
    }
    if let Err(e) = parent.remove() {
        tracing::debug!("leaving cgroup {}: {e}", parent.dir.display());
    }
    result
}

/// The container an interrupted creation made: the engine finishes the request, so it shows
/// up under its name within moments (it is this run's when it carries this run's labels).
async fn created_by_name(docker: &Docker, name: &str, run_id: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + CREATE_SETTLES;
    loop {
        match docker.container(name).await {
            Ok(c)
                if c.labels.get("slimd.run").map(String::as_str) == Some(run_id)
                    && c.labels.get(cleanup::OWNER_LABEL) == Some(&cleanup::owner()) =>
            {
                return Some(c.id);
            }
            Ok(_) => return None,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return None,
        }
    }
}

/// How long an interrupted creation is given to land.
const CREATE_SETTLES: Duration = Duration::from_secs(2);

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Creates and starts the container with the sensor watching from its first instruction.
async fn start_observed(
    docker: &Docker,
    spec: &CreateSpec,
    sensor: Sensor,
    parent: &Cgroup,
    created: &OnceLock<String>,
    create_sent: &AtomicBool,
) -> anyhow::Result<(String, Observation)> {
    let create = async || -> anyhow::Result<String> {
        create_sent.store(true, Ordering::Release);
        let id = docker.create(spec).await?;
        let _ = created.set(id.clone());
        Ok(id)
    };
    match sensor {
        Sensor::Ebpf(_) => {
            let mut sensor = sensor;
            let watch_id = sensor.watch_cgroup(parent)?;
            let id = create().await?;
            docker.start(&id).await?;
            Ok((id, Observation::new(sensor, watch_id, parent.clone())))
        }
        Sensor::Fanotify(mut fanotify) => {
            let id = create().await?;
            let merged = docker.container(&id).await?.merged_dir;
            // The root file system only exists once the engine mounts it, just before the
            // container's first process runs: mark it the moment it appears.
            let (started, marked) = tokio::join!(docker.start(&id), async {
                mark_when_mounted(&mut fanotify, merged.as_deref(), parent).await
            });
            started?;
            let container = docker.container(&id).await?;
            if !marked? {
                let pid = container.pid.ok_or_else(|| {
                    RuntimeError::NotRunning(
                        spec.name.clone(),
                        "it exited before it could be watched".into(),
                    )
                })?;
                fanotify.mark(Path::new(&format!("/proc/{pid}/root")), parent)?;
            }
            // The container may already be gone: then there is nothing running to snapshot.
            let cgroup = container
                .pid
                .and_then(|pid| Cgroup::of_process(&cgroup::unified_root().ok()?, pid).ok())
                .unwrap_or_else(|| parent.clone());
            let mut observation = Observation::new(Sensor::Fanotify(fanotify), parent.id, cgroup);
            observation.snapshot_running();
            Ok((id, observation))
        }
    }
}

/// Marks the overlay at `merged` as soon as it is mounted; false when there is no such
/// directory to wait for, or it did not appear within a few seconds.
async fn mark_when_mounted(
    fanotify: &mut FanotifySensor,
    merged: Option<&Path>,
    parent: &Cgroup,
) -> Result<bool, SensorError> {
    let Some(merged) = merged else {
        return Ok(false);
    };
    for _ in 0..5000 {
        let mounted = mountinfo::read_self()
            .map(|table| table.iter().any(|m| m.mount_point == merged))
            .unwrap_or(false);
        if mounted {
            fanotify.mark(merged, parent)?;
            return Ok(true);
        }
        tokio::time::sleep(MOUNT_POLL).await;
    }
    Ok(false)
}

/// One `slimd run`: what to run, where, and what to build from it.
struct Plan<'a> {
    docker: &'a Docker,
    args: &'a RunArgs,
    ui: Ui,
    image: &'a ImageInfo,
    spec: &'a CreateSpec,
    parent: &'a Cgroup,
    scenario: &'a Scenario,
    /// The id of the container this run created, once it did.
    created: OnceLock<String>,
    /// The creation was asked for (its answer may not have come).
    create_sent: AtomicBool,
}

impl Plan<'_> {
    async fn run_and_build(&self, sensor: Sensor, rules: SelectionRules) -> anyhow::Result<()> {
        let Plan {
            docker,
            args,
            ui,
            spec,
            parent,
            scenario,
            ..
        } = *self;
        let step = ui.step(format!("start {}", args.image));
        let (id, mut observation) = start_observed(
            docker,
            spec,
            sensor,
            parent,
            &self.created,
            &self.create_sent,
        )
        .await?;
        step.done(format!("as {}", spec.name));
        let step = ui.step("observe");
        let container = docker.container(&id).await?;
        let outcome = observation
            .record_until(
                scenario::play(docker, &id, &container.published, scenario),
                |p| step.set_detail(progress_detail(p)),
            )
            .await??;
        let recording = observation.finish()?;
        step.done(observed(outcome.ending, outcome.exit_code, &recording));
        for probe in &outcome.probes {
            ui.info(format!("  probe {}", probe.describe()));
        }
        for (cmd, out) in &outcome.execs {
            ui.info(format!("  exec {cmd:?} -> exit code {}", out.exit_code));
        }
        for (cmd, out) in &outcome.host_execs {
            ui.info(format!(
                "  host exec {cmd:?} -> exit code {}",
                out.exit_code
            ));
        }
        if outcome.ending == Ending::Exited && outcome.exit_code != 0 {
            ui.warn(format!(
                "the container exited with code {}",
                outcome.exit_code
            ));
        }
        let (summary, profile) = self.build(&recording, &container, rules).await?;
        ui.result(summary_line(&summary));
        if let Some(profile) = &profile {
            ui.result(profile_line(&profile.value, &profile.path));
        }
        if args.verify {
            let cmd = (!args.cmd.is_empty()).then(|| args.cmd.clone());
            let original = super::verify::Named {
                name: args.image.clone(),
                id: self.image.id.clone(),
            };
            let slim = super::verify::Named {
                name: summary.tag.clone(),
                id: summary.image_id.clone(),
            };
            let confined = profile.map(|p| super::verify::Profile {
                name: p.path.display().to_string(),
                text: p.value.to_string(),
            });
            super::verify::compare(
                docker,
                &ui,
                &original,
                &slim,
                cmd,
                confined.as_ref(),
                scenario,
            )
            .await?;
        }
        Ok(())
    }

    /// Resolves the recording against the image and builds the slim image, and the seccomp
    /// profile of `--seccomp`.
    async fn build(
        &self,
        recording: &Recording,
        container: &ContainerInfo,
        rules: SelectionRules,
    ) -> anyhow::Result<(BuildSummary, Option<WrittenProfile>)> {
        let Plan {
            docker,
            args,
            ui,
            image,
            ..
        } = *self;
        let original = build::read_original(
            Some(docker),
            &ImageSpec::Engine(image.id.clone()),
            &args.image,
            args.source.image_source,
            &ui,
        )
        .await
        .context("reading the original image")?;
        let mounts = session::mount_points(recording, &container.mount_destinations);
        let (report, _stats) = session::make_report(
            recording,
            &original.files,
            &mounts,
            ImageRef {
                reference: args.image.clone(),
                id: image.id.clone(),
            },
            ContainerRef::watched(
                &container.id,
                &container.name,
                container.labels.clone(),
                "run",
                recording.started_at,
                recording.ended_at,
            ),
        )?;
        if let Some(path) = &args.report {
            report.write(path)?;
        }
        if !report.complete && !args.allow_incomplete {
            anyhow::bail!(
                "events were lost while observing ({}), so the slim image could miss files; run \
                 again (with a larger --ring-buffer-kb if events were lost), or pass \
                 --allow-incomplete",
                report.events.gaps()
            );
        }
        let profile = match &args.seccomp.seccomp {
            Some(path) => {
                let value = seccomp::profile_of_report(
                    "the observation",
                    &report,
                    args.seccomp.options(),
                    args.allow_incomplete,
                )?;
                Some(WrittenProfile {
                    path: path.clone(),
                    value,
                })
            }
            None => None,
        };
        let tag = args
            .tag
            .clone()
            .unwrap_or_else(|| build::tag::slim_tag(&args.image, &image.id));
        let options = BuildOptions {
            tag: Some(tag.clone()),
            allow_incomplete: args.allow_incomplete,
            via: args.source.image_source,
            source_date_epoch: build::source_date_epoch()?,
            outputs: args.outputs.outputs(),
            force: args.outputs.force,
            rules,
        };
        let summary = build::build_from(
            Some(docker),
            &original,
            &args.image,
            Some(&report),
            &tag,
            &options,
            &ui,
        )
        .await?;
        if let Some(profile) = &profile {
            interrupt::blocking(|| seccomp::write_profile(&profile.path, &profile.value))?;
        }
        Ok((summary, profile))
    }
}

/// The seccomp profile `run --seccomp` wrote.
struct WrittenProfile {
    path: PathBuf,
    value: serde_json::Value,
}
