//! HTTP probes: requests sent to a container's published ports, only ever on 127.0.0.1.
//! The first request to a port is retried until the service answers (a published port
//! accepts connections before the service behind it listens), never after a fixed sleep.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::runtime::docker::{MAX_CAPTURE, capture};

/// How long a service may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The first pause between attempts; it doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(10);
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A probe file larger than this is refused.
const MAX_PROBE_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read probe file {0}: {1}")]
    File(String, String),
    #[error("probe path {0:?} must start with '/' (it is sent to 127.0.0.1 only)")]
    Path(String),
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct HttpProbe {
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

fn default_method() -> String {
    "GET".into()
}

fn default_path() -> String {
    "/".into()
}

impl HttpProbe {
    pub fn get(path: &str) -> Self {
        HttpProbe {
            method: default_method(),
            path: if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            },
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// Probes from a JSON file: a list of `{"method", "path", "headers": [[name, value]],
    /// "body"}` objects, every field optional.
    pub fn from_file(path: &Path) -> Result<Vec<Self>, ProbeError> {
        let bad = |e: String| ProbeError::File(path.display().to_string(), e);
        let file = crate::fsutil::open_regular(path).map_err(|e| bad(e.to_string()))?;
        let text = crate::fsutil::read_bounded(file, MAX_PROBE_FILE, "the probe file")
            .map_err(|e| bad(e.to_string()))?;
        let probes: Vec<Self> = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        for probe in &probes {
            probe.url(0)?;
        }
        Ok(probes)
    }

    /// The URL on 127.0.0.1:`host_port`; refused unless the path keeps it there.
    fn url(&self, host_port: u16) -> Result<reqwest::Url, ProbeError> {
        let bad = || ProbeError::Path(self.path.clone());
        if !self.path.starts_with('/') {
            return Err(bad());
        }
        let url = reqwest::Url::parse(&format!("http://{LOOPBACK}:{host_port}{}", self.path))
            .map_err(|_| bad())?;
        let stays = url.host_str() == Some(LOOPBACK)
            && url.port_or_known_default() == Some(host_port)
            && url.username().is_empty()
            && url.password().is_none();
        if stays { Ok(url) } else { Err(bad()) }
    }
}

const LOOPBACK: &str = "127.0.0.1";

/// What one probe got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The container's port (`80/tcp`).
    pub port: String,
    pub method: String,
    pub path: String,
    /// The HTTP status, or the error that took its place.
    pub status: Result<u16, String>,
    pub body: Vec<u8>,
}

impl ProbeResult {
    pub fn describe(&self) -> String {
        let status = match &self.status {
            Ok(code) => code.to_string(),
            Err(e) => format!("failed: {e}"),
        };
        format!(
            "{} {} on {} -> {status} ({} bytes)",
            self.method,
            self.path,
            self.port,
            self.body.len()
        )
    }
}

/// Sends the probes to 127.0.0.1:`host_port`, which publishes the container's `port`.
pub async fn send(port: &str, host_port: u16, probes: &[HttpProbe]) -> Vec<ProbeResult> {
    // A container must not make slimd fetch another address: no redirect is followed.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client without TLS builds");
    let mut out = Vec::with_capacity(probes.len());
    for (i, probe) in probes.iter().enumerate() {
        let (status, body) = if i == 0 {
            request_when_ready(&client, host_port, probe).await
        } else {
            request(&client, host_port, probe).await
        };
        out.push(ProbeResult {
            port: port.to_owned(),
            method: probe.method.clone(),
            path: probe.path.clone(),
            status,
            body,
        });
    }
    out
}

async fn request(
    client: &reqwest::Client,
    host_port: u16,
    probe: &HttpProbe,
) -> (Result<u16, String>, Vec<u8>) {
    let url = match probe.url(host_port) {
        Ok(url) => url,
        Err(e) => return (Err(e.to_string()), Vec::new()),
    };
    let method =
        reqwest::Method::from_bytes(probe.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut request = client.request(method, url).body(probe.body.clone());
    for (name, value) in &probe.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let mut body = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) if body.len() < MAX_CAPTURE => capture(&mut body, &chunk),
                    // The rest of an endless body is not read.
                    Ok(Some(_)) | Ok(None) => return (Ok(status), body),
                    Err(e) => return (Err(e.to_string()), Vec::new()),
                }
            }
        }
        Err(e) => (Err(e.to_string()), Vec::new()),
    }
}

/// `request`, retried while no answer comes, with growing pauses, up to `READY_TIMEOUT`.
async fn request_when_ready(
    client: &reqwest::Client,
    host_port: u16,
    probe: &HttpProbe,
) -> (Result<u16, String>, Vec<u8>) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        let answer = request(client, host_port, probe).await;
        if answer.0.is_ok() || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_files_fill_in_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probes.json");
        std::fs::write(&path, r#"[{"path": "/health"}, {"method": "POST", "path": "/api", "headers": [["X-A", "1"]], "body": "{}"}]"#).unwrap();
        let probes = HttpProbe::from_file(&path).unwrap();
        assert_eq!(probes[0], HttpProbe::get("/health"));
        assert_eq!(probes[1].method, "POST");
        assert_eq!(
            probes[1].headers,
            vec![("X-A".to_string(), "1".to_string())]
        );
        assert!(HttpProbe::from_file(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn probe_paths_cannot_leave_loopback() {
        for path in ["@evil.example/", "//evil.example/", "evil", "/a@b"] {
            let probe = HttpProbe {
                path: path.into(),
                ..HttpProbe::get("/")
            };
            let url = probe.url(8080);
            assert!(
                url.as_ref().is_err() || url.as_ref().unwrap().host_str() == Some("127.0.0.1"),
                "{path}: {url:?}"
            );
        }
        let escaping = HttpProbe {
            path: "@evil.example/".into(),
            ..HttpProbe::get("/")
        };
        assert!(escaping.url(80).is_err());
        assert_eq!(
            HttpProbe::get("/health").url(8080).unwrap().as_str(),
            "http://127.0.0.1:8080/health"
        );
    }
}
