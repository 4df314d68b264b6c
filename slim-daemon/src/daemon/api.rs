//! The daemon's HTTP API: read-only JSON of what was last flushed, and Prometheus metrics.
//! It has no authentication: it belongs on a node-local or cluster-internal address.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;

use super::{metrics::Metrics, store::Store};
use crate::report::{AccessReport, CoverageState};

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

async fn image_report(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let store = s.store.clone();
    let key = id.clone();
    let bytes = tokio::task::spawn_blocking(move || store.image_bytes(&key))
        .await
        .ok()
        .flatten();
    match bytes {
        Some(b) => report_bytes(b),
        None => not_found(&format!("no report of image {id}; see /images")),
    }
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
