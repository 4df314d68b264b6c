//! The daemon's Prometheus metrics, in the text exposition format at `/metrics`.
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

/// Every metric, updated by the daemon and read by the HTTP server.
pub struct Metrics {
    registry: Registry,
    pub containers_watched: Gauge,
    pub containers_unlabelled: Counter,
    pub events_received: Counter,
    pub events_unlabelled: Counter,
    pub events_deduplicated: Gauge,
    pub events_lost: Family<Vec<(String, String)>, Gauge>,
    pub reports_written: Counter,
    pub flush_errors: Counter,
    pub syscall_program_attached: Gauge,
}

impl Metrics {
    pub fn new(sensor_kind: &str) -> Self {
        let mut registry = Registry::with_prefix("slimd");
        let m = Metrics {
            containers_watched: Gauge::default(),
            containers_unlabelled: Counter::default(),
            events_received: Counter::default(),
            events_unlabelled: Counter::default(),
            events_deduplicated: Gauge::default(),
            events_lost: Family::default(),
            reports_written: Counter::default(),
            flush_errors: Counter::default(),
            syscall_program_attached: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "containers_watched",
            "Labelled containers being watched (running or exited, not removed)",
            m.containers_watched.clone(),
        );
        registry.register(
            "containers_unlabelled",
            "Containers seen that the label selector does not select (never recorded)",
            m.containers_unlabelled.clone(),
        );
        registry.register(
            "events",
            "Events received from the kernel for watched containers",
            m.events_received.clone(),
        );
        registry.register(
            "events_unlabelled",
            "Events of containers that turned out not to be selected, dropped",
            m.events_unlabelled.clone(),
        );
        registry.register(
            "events_deduplicated",
            "Repeated events the kernel dropped before sending them (not a loss)",
            m.events_deduplicated.clone(),
        );
        registry.register(
            "events_lost",
            "Events the kernel could not deliver (ring buffer full), by CPU",
            m.events_lost.clone(),
        );
        registry.register(
            "reports_written",
            "Access reports written to the state directory",
            m.reports_written.clone(),
        );
        registry.register(
            "flush_errors",
            "Reports that could not be written (the previous version stays)",
            m.flush_errors.clone(),
        );
        registry.register(
            "syscall_program_attached",
            "1 while the sys_enter program is attached (only while labelled containers exist)",
            m.syscall_program_attached.clone(),
        );
        registry.register(
            "sensor",
            "The sensor and slimd's version",
            Info::new(vec![
                ("kind".to_owned(), sensor_kind.to_owned()),
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ]),
        );
        Metrics { registry, ..m }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }

    pub fn set_lost(&self, per_cpu: &[u64]) {
        for (cpu, lost) in per_cpu.iter().enumerate() {
            self.events_lost
                .get_or_create(&vec![("cpu".to_owned(), cpu.to_string())])
                .set(i64::try_from(*lost).unwrap_or(i64::MAX));
        }
    }
}
