//! `slimd daemon`: watch labelled containers and keep their reports.
use std::time::Duration;

use crate::{
    cli::DaemonArgs,
    daemon::{self, DaemonOptions, selector::Selector},
    runtime::Docker,
};

pub async fn execute(args: DaemonArgs) -> anyhow::Result<()> {
    if args.flush_interval < 0.1 {
        anyhow::bail!("--flush-interval must be at least 0.1 seconds");
    }
    let options = DaemonOptions {
        state_dir: args.state_dir,
        listen: args.listen,
        selector: Selector(args.labels),
        flush_interval: Duration::from_secs_f64(args.flush_interval),
        sensor: args.sensor,
        ring_kb: args.ring_buffer_kb,
    };
    daemon::run(options, async || {
        let docker = Docker::connect().await?;
        // The engine's cgroup driver says where its containers' cgroups are made.
        docker.engine_info().await?;
        Ok(docker)
    })
    .await
}
