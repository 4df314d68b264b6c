//! The daemon's HTTP API: read-only JSON of what was last flushed, and Prometheus metrics.
//! It has no authentication: it belongs on a node-local or cluster-internal address.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use serde_json::json;

use super::{metrics::Metrics, store::Store};
use crate::{
    report::{AccessReport, CoverageState},
    seccomp::{self, Baseline, ProfileOptions},
};

/// One container's report, in short.
#[derive(Clone, Debug, Serialize)]
pub struct ReportSummary {
    pub container: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub running: bool,
    pub state: CoverageState,
    pub started: String,
    pub ended: String,
    pub events: u64,
    pub lost: u64,
    pub paths: usize,
    /// Where the whole report is.
    pub report: String,
}

/// One image's merged report, in short.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    pub id: String,
    pub reference: String,
    pub containers: usize,
    pub state: CoverageState,
    pub paths: usize,
    pub report: String,
}

impl ReportSummary {
    pub fn of(report: &AccessReport, running: bool) -> Self {
        let container = report.containers.first().cloned().unwrap_or_default();
        ReportSummary {
            report: format!("/reports/{}", container.id),
            container: container.id,
            name: container.name,
            image: report.image.reference.clone(),
            image_id: report.image.id.clone(),
            running,
            state: report.coverage.state,
            started: report.started_at.clone(),
            ended: report.ended_at.clone(),
            events: report.events.received,
            lost: report.events.lost,
            paths: report.paths.len(),
        }
    }
}

impl ImageSummary {
    pub fn of(report: &AccessReport) -> Self {
        ImageSummary {
            id: report.image.id.clone(),
            reference: report.image.reference.clone(),
            containers: report.containers.len() + report.containers_omitted as usize,
            state: report.coverage.state,
            paths: report.paths.len(),
            report: format!("/images/{}/report", report.image.id),
        }
    }
}

/// What the daemon last flushed, as the API lists it.
#[derive(Default)]
pub struct Snapshot {
    pub reports: Vec<ReportSummary>,
    pub images: Vec<ImageSummary>,
}

pub struct ApiState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub snapshot: RwLock<Snapshot>,
    /// Connected to the runtime and has taken stock of its containers: from here on, a
    /// container that starts or runs is watched.
    pub ready: AtomicBool,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/reports", get(reports))
        .route("/reports/{key}", get(report))
        .route("/images", get(images))
        .route("/images/{id}/report", get(image_report))
        .route("/images/{id}/seccomp", get(image_seccomp))
        .route("/metrics", get(metrics))
        .fallback(|| async { not_found("no such resource; see /reports and /images") })
        .with_state(state)
}

fn json(value: &impl Serialize) -> Response {
    let mut body = serde_json::to_vec_pretty(value).expect("summaries serialise");
    body.push(b'\n');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn report_bytes(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn not_found(what: &str) -> Response {
    let body = serde_json::json!({ "error": what });
    (StatusCode::NOT_FOUND, json(&body)).into_response()
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        "ok\n".into_response()
    } else {
        let body = "waiting for the container runtime\n";
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn reports(State(s): State<Arc<ApiState>>) -> Response {
    let snapshot = s
        .snapshot
        .read()
        .expect("the snapshot lock is never poisoned");
    json(&snapshot.reports)
}

async fn images(State(s): State<Arc<ApiState>>) -> Response {
    let snapshot = s
        .snapshot
        .read()
        .expect("the snapshot lock is never poisoned");
    json(&snapshot.images)
}

/// A container's report, by id, name, or a unique prefix of the id.
async fn report(State(s): State<Arc<ApiState>>, Path(key): Path<String>) -> Response {
    let id = {
        let snapshot = s
            .snapshot
            .read()
            .expect("the snapshot lock is never poisoned");
        let by_prefix: Vec<&ReportSummary> = snapshot
            .reports
            .iter()
            .filter(|r| key.len() >= 4 && r.container.starts_with(&key))
            .collect();
        snapshot
            .reports
            .iter()
            .find(|r| r.container == key || r.name == key)
            .or(match by_prefix.as_slice() {
                [one] => Some(*one),
                _ => None,
            })
            .map(|r| r.container.clone())
    };
    let store = s.store.clone();
    let bytes = match id {
        Some(id) => tokio::task::spawn_blocking(move || store.container_bytes(&id))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    match bytes {
        Some(b) => report_bytes(b),
        None => not_found(&format!("no report of container {key}; see /reports")),
    }
}

async fn image_bytes(s: &ApiState, id: &str) -> Option<Vec<u8>> {
    let store = s.store.clone();
    let key = id.to_owned();
    tokio::task::spawn_blocking(move || store.image_bytes(&key))
        .await
        .ok()
        .flatten()
}

async fn image_report(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let bytes = image_bytes(&s, &id).await;
    match bytes {
        Some(b) => report_bytes(b),
        None => not_found(&format!("no report of image {id}; see /images")),
    }
}

/// The seccomp profile of an image's merged report (`?baseline=runc|crun|none`,
/// `?complain`). It is served even when the report is partial: `X-Slimd-Coverage` says so.
async fn image_seccomp(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(options) = profile_options(query.as_deref().unwrap_or("")) else {
        let body = json!({ "error": "unknown query; use baseline=runc|crun|none and complain" });
        return (StatusCode::BAD_REQUEST, json(&body)).into_response();
    };
    let bytes = image_bytes(&s, &id).await;
    let Some(bytes) = bytes else {
        return not_found(&format!("no report of image {id}; see /images"));
    };
    let source = format!("the report of image {id}");
    let report = match AccessReport::from_slice(&bytes, std::path::Path::new(&source)) {
        Ok(r) => r,
        Err(e) => return server_error(&e.to_string()),
    };
    match seccomp::profile_of_report(&source, &report, options, true) {
        Ok(profile) => {
            let state = serde_json::to_value(report.coverage.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let coverage = header::HeaderValue::from_str(&state)
                .unwrap_or(header::HeaderValue::from_static("unknown"));
            ([("x-slimd-coverage", coverage)], json(&profile)).into_response()
        }
        Err(e) => {
            let body = json!({ "error": e.to_string() });
            (StatusCode::CONFLICT, json(&body)).into_response()
        }
    }
}

fn profile_options(query: &str) -> Option<ProfileOptions> {
    let mut options = ProfileOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("baseline", "runc") => options.baseline = Baseline::Runc,
            ("baseline", "crun") => options.baseline = Baseline::Crun,
            ("baseline", "none") => options.baseline = Baseline::None,
            ("complain", "" | "true" | "1") => options.complain = true,
            _ => return None,
        }
    }
    Some(options)
}

fn server_error(what: &str) -> Response {
    let body = json!({ "error": what });
    (StatusCode::INTERNAL_SERVER_ERROR, json(&body)).into_response()
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}
