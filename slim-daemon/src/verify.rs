//! Does the slim image do what the original did? Both are run the same way (same command,
//! probes and commands) and what they did is compared: exit code, standard output, HTTP
//! responses, and the commands' results.
use std::collections::HashMap;

use crate::{
    interrupt,
    runtime::{CreateSpec, Docker, RuntimeError, cleanup, docker::ExecOutput},
    scenario::{self, Ending, Outcome, Scenario},
};

/// Runs `image` (with `cmd` instead of its Cmd when given, and under the seccomp profile
/// `seccomp` when given) through the scenario, in a container that is removed afterwards.
pub async fn outcome_of(
    docker: &Docker,
    image: &str,
    cmd: Option<Vec<String>>,
    seccomp: Option<&str>,
    scenario: &Scenario,
) -> Result<Outcome, RuntimeError> {
    let info = docker.image(image).await?;
    let name = format!("slimd-verify-{:x}-{:x}", std::process::id(), unique());
    let spec = CreateSpec {
        image: info.id.clone(),
        name: name.clone(),
        cmd,
        publish: if scenario.needs_ports() {
            info.exposed_ports.clone()
        } else {
            Vec::new()
        },
        labels: HashMap::from([
            ("slimd.verify".to_owned(), image.to_owned()),
            (cleanup::OWNER_LABEL.to_owned(), cleanup::owner()),
        ]),
        seccomp: seccomp.map(str::to_owned),
        ..Default::default()
    };
    let id = docker.create(&spec).await?;
    let played = interrupt::cancellable(async {
        docker.start(&id).await?;
        let published = docker.container(&id).await?.published;
        scenario::play(docker, &id, &published, scenario).await
    })
    .await;
    docker.remove_container(&id).await?;
    played
}

fn unique() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Whether standard output is compared: only for containers that exit by themselves. A
/// service that slimd stops logs times and process ids; what it answered is compared instead.
pub fn compares_stdout(original: &Outcome, slim: &Outcome) -> bool {
    original.ending == Ending::Exited && slim.ending == Ending::Exited
}

/// Every difference between what the original and the slim image did, for people to read.
pub fn differences(original: &Outcome, slim: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if original.ending != slim.ending {
        out.push(format!(
            "ending: the original {}, the slim image {}",
            ending(original.ending),
            ending(slim.ending)
        ));
    }
    if original.exit_code != slim.exit_code {
        out.push(format!(
            "exit code: the original exited with {}, the slim image with {}{}",
            original.exit_code,
            slim.exit_code,
            last_line(&slim.stderr)
        ));
    }
    if compares_stdout(original, slim)
        && let Some(d) = bytes_difference(&original.stdout, &slim.stdout)
    {
        out.push(format!("standard output: {d}"));
    }
    if original.probes.len() != slim.probes.len() {
        out.push(format!(
            "probes: {} answered for the original, {} for the slim image",
            original.probes.len(),
            slim.probes.len()
        ));
    }
    for (a, b) in original.probes.iter().zip(&slim.probes) {
        let what = format!("{} {} on {}", a.method, a.path, a.port);
        if a.status != b.status {
            out.push(format!(
                "{what}: status {} vs {}",
                status(&a.status),
                status(&b.status)
            ));
        } else if let Some(d) = bytes_difference(&a.body, &b.body) {
            out.push(format!("{what}: response body {d}"));
        }
    }
    for (kind, a, b) in [
        ("command in the container", &original.execs, &slim.execs),
        (
            "command on the host",
            &original.host_execs,
            &slim.host_execs,
        ),
    ] {
        if a.len() != b.len() {
            out.push(format!(
                "{kind}s: {} ran for the original, {} for the slim image",
                a.len(),
                b.len()
            ));
        }
        for ((cmd, x), (_, y)) in a.iter().zip(b) {
            out.extend(exec_differences(kind, cmd, x, y));
        }
    }
    out
}

fn ending(e: Ending) -> &'static str {
    match e {
        Ending::Exited => "exited by itself",
        Ending::Done => "was stopped after the probes and commands",
        Ending::Duration => "was stopped at the end of the duration",
        Ending::Interrupted => "was interrupted",
    }
}

fn status(s: &Result<u16, String>) -> String {
    match s {
        Ok(code) => code.to_string(),
        Err(e) => format!("(no answer: {e})"),
    }
}

/// The last line of an error output, as a hint: ` (last line)`.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(" ({})", l.trim()))
        .unwrap_or_default()
}

fn exec_differences(kind: &str, cmd: &str, a: &ExecOutput, b: &ExecOutput) -> Vec<String> {
    let mut out = Vec::new();
    if a.exit_code != b.exit_code {
        out.push(format!(
            "{kind} {cmd:?}: exit code {} vs {}{}",
            a.exit_code,
            b.exit_code,
            last_line(&b.stderr)
        ));
    }
    if let Some(d) = bytes_difference(&a.stdout, &b.stdout) {
        out.push(format!("{kind} {cmd:?}: output {d}"));
    }
    out
}

/// Where two outputs part, or None when they are the same.
fn bytes_difference(a: &[u8], b: &[u8]) -> Option<String> {
    if a == b {
        return None;
    }
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let line = a[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    let excerpt = |s: &[u8]| {
        let start = s[..at.min(s.len())]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        let rest = &s[start..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .unwrap_or(rest.len())
            .min(80);
        format!("{:?}", String::from_utf8_lossy(&rest[..end]))
    };
    Some(format!(
        "differs from byte {at} (line {line}): original {}, slim {} ({} vs {} bytes)",
        excerpt(a),
        excerpt(b),
        a.len(),
        b.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeResult;

    fn outcome(code: i64, stdout: &str) -> Outcome {
        Outcome {
            ending: Ending::Exited,
            exit_code: code,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            probes: Vec::new(),
            execs: Vec::new(),
            host_execs: Vec::new(),
        }
    }

    #[test]
    fn names_what_differs() {
        let a = outcome(0, "same\nfirst\n");
        assert!(differences(&a, &a.clone()).is_empty());
        let b = outcome(1, "same\nfrist\n");
        let d = differences(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("exited with 0") && d[0].contains("with 1"));
        assert!(
            d[1].contains("line 2") && d[1].contains("\"first\"") && d[1].contains("\"frist\""),
            "{}",
            d[1]
        );
    }

    #[test]
    fn compares_probe_answers() {
        let probe = |status: Result<u16, String>, body: &str| ProbeResult {
            port: "80/tcp".into(),
            method: "GET".into(),
            path: "/".into(),
            status,
            body: body.as_bytes().to_vec(),
        };
        let mut a = outcome(0, "");
        let mut b = outcome(0, "");
        a.probes.push(probe(Ok(200), "<html>"));
        b.probes.push(probe(Ok(404), "nope"));
        assert_eq!(
            differences(&a, &b),
            vec!["GET / on 80/tcp: status 200 vs 404".to_string()]
        );
    }
}
