//! Numbers a fleet can alert on: counters kept since the service started, and `/metrics` in the
//! Prometheus text exposition format 0.0.4 (`gym_checkin_` names, `# HELP` and `# TYPE` for each).
//!
//! Counters are counted where things happen (the recorder, delivery, the EGYM client); what the
//! database knows (events by state, the oldest pending tap, readers, pause, clock) is read when
//! `/metrics` is asked for, and handed to [`Metrics::render`] as [`Gauges`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The upper bounds of the EGYM request-duration histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The version, git commit and target the binary was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("GYM_CHECKIN_COMMIT");
pub const TARGET: &str = env!("GYM_CHECKIN_TARGET");

#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or below each bucket's bound.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Counts {
    /// (reader, outcome) → taps.
    taps: BTreeMap<(String, &'static str), u64>,
    /// outcome → delivery outcomes.
    deliveries: BTreeMap<&'static str, u64>,
    /// call → request durations.
    requests: BTreeMap<&'static str, Histogram>,
    /// 429 answers.
    rate_limited: u64,
}

/// The service's counters. Shared by the tasks that count.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<Counts>);

/// What is read from the database (and the clock) for one scrape.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// (state, events).
    pub events: Vec<(&'static str, u64)>,
    pub oldest_pending_age_s: Option<f64>,
    /// (reader, connected).
    pub readers: Vec<(String, bool)>,
    pub delivery_paused: bool,
    pub clock_trusted: bool,
    /// Taps held until the clock is trusted.
    pub held_for_clock: u64,
}

impl Metrics {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tap on `reader`: `recorded`, `ignored` (the repeat window) or `lost`.
    pub fn tap(&self, reader: &str, outcome: &'static str) {
        *self
            .counts()
            .taps
            .entry((reader.to_string(), outcome))
            .or_default() += 1;
    }

    /// A delivery attempt's outcome: `delivered`, `retry`, `paused`, `unknown_tag`, `rejected`,
    /// `admission_refused`.
    pub fn delivery(&self, outcome: &'static str) {
        *self.counts().deliveries.entry(outcome).or_default() += 1;
    }

    /// A request to EGYM (`call`: `lookup`, `post`, `admission`, …) that took `seconds`, with the
    /// status it was answered (none: no answer).
    pub fn request(&self, call: &'static str, seconds: f64, status: Option<u16>) {
        let mut counts = self.counts();
        if status == Some(429) {
            counts.rate_limited += 1;
        }
        let histogram = counts.requests.entry(call).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// `/metrics`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let counts = self.counts();
        let mut text = String::new();
        header(
            &mut text,
            "build_info",
            "gauge",
            "The version, git commit and target of the running binary.",
        );
        let _ = writeln!(
            text,
            "gym_checkin_build_info{{version=\"{}\",commit=\"{}\",target=\"{}\"}} 1",
            escape(VERSION),
            escape(COMMIT),
            escape(TARGET)
        );
        header(
            &mut text,
            "outbox_events",
            "gauge",
            "Events in the outbox, by state.",
        );
        for (state, n) in &gauges.events {
            let _ = writeln!(text, "gym_checkin_outbox_events{{state=\"{state}\"}} {n}");
        }
        header(
            &mut text,
            "outbox_oldest_pending_age_seconds",
            "gauge",
            "How long the oldest pending tap has waited (0 with none pending).",
        );
        let _ = writeln!(
            text,
            "gym_checkin_outbox_oldest_pending_age_seconds {}",
            gauges.oldest_pending_age_s.unwrap_or(0.0)
        );
        header(
            &mut text,
            "taps_total",
            "counter",
            "Taps since the service started, by reader and outcome (recorded, ignored, lost).",
        );
        for ((reader, outcome), n) in &counts.taps {
            let _ = writeln!(
                text,
                "gym_checkin_taps_total{{reader=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(reader)
            );
        }
        header(
            &mut text,
            "deliveries_total",
            "counter",
            "Delivery attempts since the service started, by outcome.",
        );
        for (outcome, n) in &counts.deliveries {
            let _ = writeln!(
                text,
                "gym_checkin_deliveries_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        header(
            &mut text,
            "egym_request_duration_seconds",
            "histogram",
            "How long requests to EGYM took, by call.",
        );
        for (call, histogram) in &counts.requests {
            for (bound, n) in BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(
                    text,
                    "gym_checkin_egym_request_duration_seconds_bucket{{call=\"{call}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                text,
                "gym_checkin_egym_request_duration_seconds_bucket{{call=\"{call}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                text,
                "gym_checkin_egym_request_duration_seconds_sum{{call=\"{call}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                text,
                "gym_checkin_egym_request_duration_seconds_count{{call=\"{call}\"}} {}",
                histogram.count
            );
        }
        header(
            &mut text,
            "egym_rate_limited_total",
            "counter",
            "Requests EGYM answered 429 (rate limit) since the service started.",
        );
        let _ = writeln!(
            text,
            "gym_checkin_egym_rate_limited_total {}",
            counts.rate_limited
        );
        header(
            &mut text,
            "reader_connected",
            "gauge",
            "Whether each reader's device is open (1) or not (0).",
        );
        for (reader, connected) in &gauges.readers {
            let _ = writeln!(
                text,
                "gym_checkin_reader_connected{{reader=\"{}\"}} {}",
                escape(reader),
                u8::from(*connected)
            );
        }
        header(
            &mut text,
            "delivery_paused",
            "gauge",
            "Whether delivery is paused because EGYM refused the API key (1) or not (0).",
        );
        let _ = writeln!(
            text,
            "gym_checkin_delivery_paused {}",
            u8::from(gauges.delivery_paused)
        );
        header(
            &mut text,
            "clock_trusted",
            "gauge",
            "Whether the wall clock is trusted (1) or not (0).",
        );
        let _ = writeln!(
            text,
            "gym_checkin_clock_trusted {}",
            u8::from(gauges.clock_trusted)
        );
        header(
            &mut text,
            "taps_held_for_clock",
            "gauge",
            "Taps recorded while the clock was not trusted, held until it is.",
        );
        let _ = writeln!(
            text,
            "gym_checkin_taps_held_for_clock {}",
            gauges.held_for_clock
        );
        text
    }
}

fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP gym_checkin_{name} {help}");
    let _ = writeln!(text, "# TYPE gym_checkin_{name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_the_histogram_are_rendered_with_their_labels() {
        let metrics = Metrics::default();
        metrics.tap("entrance", "recorded");
        metrics.tap("entrance", "recorded");
        metrics.tap("exit \"2\"", "ignored");
        metrics.delivery("delivered");
        metrics.request("lookup", 0.02, Some(200));
        metrics.request("lookup", 3.0, Some(429));
        let text = metrics.render(&Gauges {
            events: vec![("pending", 3)],
            readers: vec![("entrance".into(), true)],
            ..Gauges::default()
        });
        for line in [
            "gym_checkin_taps_total{reader=\"entrance\",outcome=\"recorded\"} 2",
            "gym_checkin_taps_total{reader=\"exit \\\"2\\\"\",outcome=\"ignored\"} 1",
            "gym_checkin_deliveries_total{outcome=\"delivered\"} 1",
            "gym_checkin_egym_request_duration_seconds_bucket{call=\"lookup\",le=\"0.025\"} 1",
            "gym_checkin_egym_request_duration_seconds_bucket{call=\"lookup\",le=\"5\"} 2",
            "gym_checkin_egym_request_duration_seconds_bucket{call=\"lookup\",le=\"+Inf\"} 2",
            "gym_checkin_egym_request_duration_seconds_count{call=\"lookup\"} 2",
            "gym_checkin_egym_rate_limited_total 1",
            "gym_checkin_outbox_events{state=\"pending\"} 3",
            "gym_checkin_reader_connected{reader=\"entrance\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
