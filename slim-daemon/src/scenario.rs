//! What happens to a started container: HTTP probes, commands in the container and on the
//! host, and when to stop it. The same scenario drives `slimd run` (observed) and
//! `slimd verify` (played against the original and the slim image alike).
use std::{future::Future, time::Duration};

use crate::{
    probe::{self, HttpProbe, ProbeResult},
    runtime::{
        Docker, RuntimeError,
        docker::{ExecOutput, capture},
    },
};

/// Seconds a container gets to stop on its StopSignal before it is killed.
const STOP_GRACE_SECS: i32 = 10;

/// When to stop the container once it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ContinueAfter {
    /// After the probes and commands when there are any, else when the container exits.
    #[default]
    Auto,
    /// When the container exits by itself.
    Exit,
    /// As soon as the probes and commands are done.
    Probes,
    /// This many seconds after the probes and commands are done.
    Secs(f64),
}

impl std::str::FromStr for ContinueAfter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exit" => Ok(ContinueAfter::Exit),
            "probes" => Ok(ContinueAfter::Probes),
            secs => parse_secs(secs)
                .map(ContinueAfter::Secs)
                .map_err(|_| format!("expected exit, probes or a number of seconds, not {secs:?}")),
        }
    }
}

/// What to do with the container.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// Requests sent to each probed port.
    pub probes: Vec<HttpProbe>,
    /// The container ports to probe (`80` or `80/tcp`); empty: every published port.
    pub probe_ports: Vec<String>,
    /// Commands run in the container (`sh -c`), observed like the workload itself.
    pub execs: Vec<String>,
    /// Commands run on the host (`sh -c`), with `SLIMD_PORT_<port>` set to each published
    /// port on 127.0.0.1; not observed.
    pub host_execs: Vec<String>,
    pub continue_after: ContinueAfter,
    /// Stop the container after this many seconds at the latest.
    pub duration: Option<f64>,
}

impl Scenario {
    fn interacts(&self) -> bool {
        !self.probes.is_empty() || !self.execs.is_empty() || !self.host_execs.is_empty()
    }

    /// Whether the container's ports must be published.
    pub fn needs_ports(&self) -> bool {
        !self.probes.is_empty() || !self.host_execs.is_empty()
    }
}

/// Why the container stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself.
    Exited,
    /// slimd stopped it once the probes and commands were done.
    Done,
    Duration,
    /// `observe` was stopped by Ctrl-C or SIGTERM.
    Interrupted,
}

/// What a scenario saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub ending: Ending,
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub probes: Vec<ProbeResult>,
    pub execs: Vec<(String, ExecOutput)>,
    pub host_execs: Vec<(String, ExecOutput)>,
}

#[derive(Default)]
struct Interactions {
    probes: Vec<ProbeResult>,
    execs: Vec<(String, ExecOutput)>,
    host_execs: Vec<(String, ExecOutput)>,
}

/// The longest wait slimd accepts: about a hundred years.
const MAX_SECS: f64 = 3.2e9;

/// A number of seconds as the user writes it: finite, not negative, at most a century.
pub fn parse_secs(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=MAX_SECS).contains(&s) => Ok(s),
        _ => Err(format!(
            "expected a number of seconds from 0 to {MAX_SECS:e}, not {text:?}"
        )),
    }
}

/// Completes after `secs`, or never.
pub async fn deadline(secs: Option<f64>) {
    match secs.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Plays the scenario against the started container `id`, whose ports are `published`
/// (container port, host port), and stops it at the end. (Interrupted, it is dropped: the
/// caller removes the container.)
pub async fn play(
    docker: &Docker,
    id: &str,
    published: &[(String, u16)],
    scenario: &Scenario,
) -> Result<Outcome, RuntimeError> {
    let mut exited = Box::pin(docker.wait(id));
    let mut done = Interactions::default();
    let limit = deadline(scenario.duration);
    tokio::pin!(limit);
    let mut ending = tokio::select! {
        code = &mut exited => return finish(docker, id, Ending::Exited, code?, done).await,
        result = interact(docker, id, published, scenario, &mut done) => {
            result?;
            None
        }
        _ = &mut limit => Some(Ending::Duration),
    };
    if ending.is_none() {
        let wait: Box<dyn Future<Output = ()> + Unpin> = match scenario.continue_after {
            ContinueAfter::Auto if scenario.interacts() => Box::new(std::future::ready(())),
            ContinueAfter::Probes => Box::new(std::future::ready(())),
            ContinueAfter::Secs(s) => Box::new(Box::pin(deadline(Some(s)))),
            ContinueAfter::Auto | ContinueAfter::Exit => Box::new(Box::pin(std::future::pending())),
        };
        ending = tokio::select! {
            code = &mut exited => return finish(docker, id, Ending::Exited, code?, done).await,
            _ = wait => Some(Ending::Done),
            _ = &mut limit => Some(Ending::Duration),
        };
    }
    // Stopped with the image's StopSignal, so that shutdown paths run (and are observed).
    docker.stop(id, STOP_GRACE_SECS).await?;
    let code = exited.await?;
    finish(docker, id, ending.unwrap_or(Ending::Done), code, done).await
}

async fn finish(
    docker: &Docker,
    id: &str,
    ending: Ending,
    exit_code: i64,
    done: Interactions,
) -> Result<Outcome, RuntimeError> {
    let (stdout, stderr) = docker.output(id).await?;
    Ok(Outcome {
        ending,
        exit_code,
        stdout,
        stderr,
        probes: done.probes,
        execs: done.execs,
        host_execs: done.host_execs,
    })
}

/// Probes, then commands in the container, then commands on the host, in order.
async fn interact(
    docker: &Docker,
    id: &str,
    published: &[(String, u16)],
    scenario: &Scenario,
    done: &mut Interactions,
) -> Result<(), RuntimeError> {
    if !scenario.probes.is_empty() {
        for (port, host_port) in probed(published, &scenario.probe_ports) {
            done.probes
                .extend(probe::send(&port, host_port, &scenario.probes).await);
        }
    }
    for cmd in &scenario.execs {
        let out = docker
            .exec(id, &["sh".into(), "-c".into(), cmd.clone()])
            .await?;
        done.execs.push((cmd.clone(), out));
    }
    for cmd in &scenario.host_execs {
        done.host_execs
            .push((cmd.clone(), host_exec(cmd, published).await));
    }
    Ok(())
}

/// The published TCP ports to probe, in a stable order.
fn probed(published: &[(String, u16)], only: &[String]) -> Vec<(String, u16)> {
    let mut ports: Vec<(String, u16)> = published
        .iter()
        .filter(|(port, _)| port.ends_with("/tcp"))
        .filter(|(port, _)| {
            only.is_empty()
                || only
                    .iter()
                    .any(|o| o == port || format!("{o}/tcp") == *port)
        })
        .cloned()
        .collect();
    ports.sort();
    ports
}

/// Runs a command on the host in a process group of its own, which is killed whole if slimd
/// stops waiting for it (Ctrl-C): nothing it started outlives slimd.
async fn host_exec(cmd: &str, published: &[(String, u16)]) -> ExecOutput {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (port, host_port) in published {
        let number = port.split('/').next().unwrap_or(port);
        command.env(format!("SLIMD_PORT_{number}"), host_port.to_string());
    }
    let failed = |e: std::io::Error| ExecOutput {
        exit_code: -1,
        stdout: Vec::new(),
        stderr: e.to_string().into_bytes(),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(e),
    };
    let _group = child.id().map(ProcessGroup);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (status, stdout, stderr) =
        tokio::join!(child.wait(), read_capped(stdout), read_capped(stderr));
    match status {
        Ok(status) => ExecOutput {
            exit_code: status.code().map_or(-1, i64::from),
            stdout,
            stderr,
        },
        Err(e) => failed(e),
    }
}

/// Kills a process group when dropped.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            // The group may be gone already: nothing to do then.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The first `MAX_CAPTURE` bytes of a pipe, read to its end so the writer never blocks.
async fn read_capped(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let Some(mut pipe) = pipe else {
        return out;
    };
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        capture(&mut out, &buf[..n]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_after_parses() {
        assert_eq!("exit".parse(), Ok(ContinueAfter::Exit));
        assert_eq!("probes".parse(), Ok(ContinueAfter::Probes));
        assert_eq!("2.5".parse(), Ok(ContinueAfter::Secs(2.5)));
        for bad in ["soon", "inf", "nan", "1e300", "-1"] {
            assert!(bad.parse::<ContinueAfter>().is_err(), "{bad}");
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probes_only_the_named_tcp_ports() {
        let published = vec![
            ("8080/tcp".into(), 3),
            ("80/tcp".into(), 1),
            ("53/udp".into(), 2),
        ];
        assert_eq!(
            probed(&published, &[]),
            vec![("80/tcp".into(), 1), ("8080/tcp".into(), 3)]
        );
        assert_eq!(
            probed(&published, &["8080".into()]),
            vec![("8080/tcp".into(), 3)]
        );
    }
}
