//! The daemon's Prometheus metrics, in the text exposition format at `/metrics`.
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
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
        // A gauge of 1 rather than an OpenMetrics info metric: the classic text format, which
        // promtool and older scrapers read, has no info type.
        let sensor: Family<Vec<(String, String)>, Gauge> = Family::default();
        sensor
            .get_or_create(&vec![
                ("kind".to_owned(), sensor_kind.to_owned()),
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ])
            .set(1);
        registry.register("sensor_info", "The sensor and slimd's version", sensor);
        Metrics { registry, ..m }
    }

    /// The exposition text in Prometheus's classic text format (0.0.4), which every scraper
    /// and promtool read. prometheus-client writes OpenMetrics; the two differ only in how a
    /// counter's family is named (`foo` there, `foo_total` here) and in the `# EOF` line.
    pub fn encode(&self) -> String {
        let mut open_metrics = String::new();
        encode(&mut open_metrics, &self.registry).expect("writing to a String does not fail");
        let counters: Vec<String> = open_metrics
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .map(str::to_owned)
            .collect();
        let mut out = String::with_capacity(open_metrics.len());
        for line in open_metrics.lines() {
            if line == "# EOF" {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .iter()
                    .any(|c| c == name)
                    .then(|| format!("{prefix}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_as_the_classic_format_wants() {
        let m = Metrics::new("ebpf");
        m.events_received.inc();
        let text = m.encode();
        assert!(
            text.contains("# TYPE slimd_events_total counter\nslimd_events_total 1\n"),
            "{text}"
        );
        assert!(text.contains("slimd_sensor_info{kind=\"ebpf\""), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
