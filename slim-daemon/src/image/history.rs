//! A Dockerfile reverse-engineered from an image's history and config.
use std::fmt::Write as _;

use serde_json::Value;

/// One history entry, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub created_by: String,
    /// Bytes of the layer the step made (0 for steps that only change the config).
    pub size: u64,
}

const NOP: &str = "/bin/sh -c #(nop) ";
const SHELL: &str = "/bin/sh -c ";
const BUILDKIT: &str = " # buildkit";

/// Dockerfile instructions, as BuildKit writes them into the history.
const INSTRUCTIONS: [&str; 17] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The instruction a history entry stands for.
fn instruction(created_by: &str) -> String {
    let text = created_by.trim();
    if text == "Imported from -" {
        return "ADD rootfs.tar /".to_owned();
    }
    if let Some(rest) = text.strip_prefix(NOP) {
        return classic_nop(rest.trim());
    }
    if let Some(rest) = text.strip_suffix(BUILDKIT) {
        return rest.trim().to_owned();
    }
    if text
        .split(' ')
        .next()
        .is_some_and(|verb| INSTRUCTIONS.contains(&verb))
    {
        return text.to_owned();
    }
    // `|2 A=1 B=2 /bin/sh -c cmd`: a RUN with build arguments.
    let command = match text.strip_prefix('|') {
        Some(rest) => rest.split_once(SHELL).map_or(text, |(_, cmd)| cmd),
        None => text.strip_prefix(SHELL).unwrap_or(text),
    };
    if command.is_empty() {
        String::new()
    } else {
        format!("RUN {command}")
    }
}

/// A classic-builder step that made no layer: `ADD file:<hash> in /dest`,
/// `EXPOSE map[80/tcp:{}]`, and exec forms as Go prints them, `["sh" "-c"]`.
fn classic_nop(step: &str) -> String {
    let Some((verb, args)) = step.split_once(' ') else {
        return step.to_owned();
    };
    let args = args.trim();
    if (verb == "ADD" || verb == "COPY")
        && let Some((src, dest)) = args.split_once(" in ")
    {
        return format!("{verb} {} {}", src.trim(), dest.trim());
    }
    if let Some(ports) = args.strip_prefix("map[").and_then(|p| p.strip_suffix(']')) {
        let ports: Vec<&str> = ports
            .split(' ')
            .filter_map(|p| p.strip_suffix(":{}"))
            .collect();
        return format!("{verb} {}", ports.join(" "));
    }
    if args.starts_with("[\"") && args.ends_with("\"]") {
        return format!("{verb} {}", args.replace("\" \"", "\",\""));
    }
    format!("{verb} {args}")
}

fn json_list(value: &Value) -> Option<String> {
    value
        .as_array()
        .filter(|a| !a.is_empty())
        .map(|a| Value::Array(a.clone()).to_string())
}

/// Instructions for config settings that no history entry made (as for imported images).
fn from_config(config: &Value, present: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    let str_field = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if !present("ENV")
        && let Some(env) = config.get("Env").and_then(Value::as_array)
    {
        for var in env.iter().filter_map(Value::as_str) {
            out.push(format!("ENV {var}"));
        }
    }
    if !present("LABEL")
        && let Some(labels) = config.get("Labels").and_then(Value::as_object)
    {
        for (k, v) in labels {
            out.push(format!(
                "LABEL {k}={}",
                Value::from(v.as_str().unwrap_or_default())
            ));
        }
    }
    // The engine's map of ports, or a list of them.
    let ports: Vec<String> = match config.get("ExposedPorts") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if !present("EXPOSE") && !ports.is_empty() {
        out.push(format!("EXPOSE {}", ports.join(" ")));
    }
    for (key, verb) in [
        ("WorkingDir", "WORKDIR"),
        ("User", "USER"),
        ("StopSignal", "STOPSIGNAL"),
    ] {
        if !present(verb)
            && let Some(v) = str_field(key)
        {
            out.push(format!("{verb} {v}"));
        }
    }
    for (key, verb) in [("Entrypoint", "ENTRYPOINT"), ("Cmd", "CMD")] {
        if !present(verb)
            && let Some(v) = config.get(key).and_then(json_list)
        {
            out.push(format!("{verb} {v}"));
        }
    }
    out
}

/// The Dockerfile: one instruction per history entry, then whatever the config holds that
/// the history does not explain. `config` is the image's `config` object.
pub fn dockerfile(history: &[HistoryEntry], config: &Value) -> String {
    let lines: Vec<String> = history
        .iter()
        .map(|h| instruction(&h.created_by))
        .filter(|l| !l.is_empty())
        .collect();
    let present = |verb: &str| lines.iter().any(|l| l.split(' ').next() == Some(verb));
    let mut out = String::from("FROM scratch\n");
    for line in lines.iter().chain(&from_config(config, &present)) {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(created_by: &str) -> HistoryEntry {
        HistoryEntry {
            created_by: created_by.into(),
            size: 0,
        }
    }

    #[test]
    fn classic_builder_history() {
        let history = [
            entry("/bin/sh -c #(nop) ADD file:abc123 in / "),
            entry("/bin/sh -c #(nop)  CMD [\"bash\"]"),
            entry("/bin/sh -c apt-get update && apt-get install -y nginx"),
            entry("/bin/sh -c #(nop)  EXPOSE map[80/tcp:{}]"),
            entry("|1 VERSION=2 /bin/sh -c echo $VERSION"),
            entry("/bin/sh -c #(nop) COPY file:def in /srv/ "),
            entry("/bin/sh -c #(nop)  ENTRYPOINT [\"sh\" \"-c\"]"),
        ];
        let want = "FROM scratch\nADD file:abc123 /\nCMD [\"bash\"]\nRUN apt-get update && apt-get install -y nginx\n\
                    EXPOSE 80/tcp\nRUN echo $VERSION\nCOPY file:def /srv/\nENTRYPOINT [\"sh\",\"-c\"]\n";
        assert_eq!(dockerfile(&history, &json!({})), want);
    }

    #[test]
    fn buildkit_history_and_imported_images() {
        let history = [
            entry("RUN /bin/sh -c make # buildkit"),
            entry("WORKDIR /app"),
        ];
        assert_eq!(
            dockerfile(&history, &json!({})),
            "FROM scratch\nRUN /bin/sh -c make\nWORKDIR /app\n"
        );
        let imported = [entry("Imported from -")];
        let config =
            json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "ExposedPorts": {"80/tcp": {}}});
        assert_eq!(
            dockerfile(&imported, &config),
            "FROM scratch\nADD rootfs.tar /\nENV PATH=/bin\nEXPOSE 80/tcp\nCMD [\"/bin/sh\"]\n"
        );
    }
}
