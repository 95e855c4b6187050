//! Numbers a fleet can alert on: counters kept since the service started, and `/metrics` in the
//! Prometheus text exposition format 0.0.4 (`gym_checkin_` names, `# HELP` and `# TYPE` for each).
//!
//! Counters are counted where things happen (the recorder, delivery, the EGYM client); what the
//! database knows (events by state, the oldest pending tap, readers, pause, clock) is read when
//! `/metrics` is asked for, and handed to [`Metrics::render`] as [`Gauges`].
//!
//! Every label value a counter can take is one of a closed set named here ([`TapOutcome`],
//! [`DeliveryOutcome`], [`RefusalReason`], [`EgymCall`]; readers are the service's own), and
//! every series is exposed from the start, at 0. An alert on `increase(…) > 0` can then fire
//! at the first count: a series that appeared only with its first count would have no earlier
//! sample to increase from (see `config/alerts.yml`).

use std::collections::{BTreeMap, BTreeSet};
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

/// A closed set of label values: an enum whose `ALL` lists every variant (in the order
/// `/metrics` shows them) and whose `label` is the value exposed.
macro_rules! label_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_doc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// Its place in `ALL`.
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_set! {
    /// What became of a tap (`gym_checkin_taps_total{outcome}`).
    TapOutcome {
        /// Committed to the outbox.
        Recorded => "recorded",
        /// Within the repeat window of the tag's last tap.
        Ignored => "ignored",
        /// Not kept: the database could not be written and the memory buffer was full.
        Lost => "lost",
    }
}

label_set! {
    /// A delivery attempt's outcome (`gym_checkin_deliveries_total{outcome}`).
    DeliveryOutcome {
        Delivered => "delivered",
        Retry => "retry",
        Paused => "paused",
        UnknownTag => "unknown_tag",
        Rejected => "rejected",
        AdmissionRefused => "admission_refused",
        /// EGYM answered, but its answer could not be read: tried again later.
        Unreadable => "unreadable",
    }
}

label_set! {
    /// Why EGYM refused a Wellpass member's admission
    /// (`gym_checkin_admissions_refused_total{reason}`).
    RefusalReason {
        MembershipExpired => "membership_expired",
        MembershipNotStarted => "membership_not_started",
        GymNotInNetwork => "gym_not_in_network",
        GymNotInNetworkPlus1 => "gym_not_in_network_plus1",
    }
}

label_set! {
    /// A request to EGYM (`gym_checkin_egym_request_duration_seconds{call}`).
    EgymCall {
        /// `GET accounts/rfid/{rfid}`.
        Lookup => "lookup",
        /// `GET accounts/email/…` or `accounts/membership/…` (`calibrate`, enrolling a card).
        Account => "account",
        /// `GET accounts/{id}/rfids` (`calibrate`, enrolling a card).
        Rfids => "rfids",
        /// `POST accounts/{id}/rfids` (enrolling a card).
        AddRfid => "add_rfid",
        /// `POST accounts/{id}/admissions`.
        Admission => "admission",
        /// `POST accounts/{id}/checkins` or `checkouts`.
        Post => "post",
    }
}

#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or below each bucket's bound.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Counts {
    /// reader → taps by outcome.
    taps: BTreeMap<String, [u64; TapOutcome::ALL.len()]>,
    deliveries: [u64; DeliveryOutcome::ALL.len()],
    refusals: [u64; RefusalReason::ALL.len()],
    requests: [Histogram; EgymCall::ALL.len()],
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
    /// How long the oldest tap pending delivery has waited (taps that wait only for a card's
    /// enrolment are not pending delivery).
    pub oldest_pending_age_s: Option<f64>,
    /// Taps that wait only behind an earlier tap of the same card, which EGYM does not know.
    pub waiting_for_enrolment: u64,
    /// (reader, connected): the service's readers. Each has its tap counters from the start.
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

    /// A tap on `reader`.
    pub fn tap(&self, reader: &str, outcome: TapOutcome) {
        self.counts().taps.entry(reader.to_string()).or_default()[outcome.index()] += 1;
    }

    /// A delivery attempt's outcome.
    pub fn delivery(&self, outcome: DeliveryOutcome) {
        self.counts().deliveries[outcome.index()] += 1;
    }

    /// EGYM refused a Wellpass member's admission (at the door or after the member came in).
    pub fn admission_refused(&self, reason: RefusalReason) {
        self.counts().refusals[reason.index()] += 1;
    }

    /// A request to EGYM that took `seconds`, with the status it was answered (none: no
    /// answer).
    pub fn request(&self, call: EgymCall, seconds: f64, status: Option<u16>) {
        let mut counts = self.counts();
        if status == Some(429) {
            counts.rate_limited += 1;
        }
        let histogram = &mut counts.requests[call.index()];
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
            "Events in the outbox, by state (pending: waiting for delivery; taps that wait only \
             for a card's enrolment are in gym_checkin_outbox_waiting_for_enrolment).",
        );
        for (state, n) in &gauges.events {
            let _ = writeln!(text, "gym_checkin_outbox_events{{state=\"{state}\"}} {n}");
        }
        header(
            &mut text,
            "outbox_oldest_pending_age_seconds",
            "gauge",
            "How long the oldest tap pending delivery has waited (0 with none pending).",
        );
        let _ = writeln!(
            text,
            "gym_checkin_outbox_oldest_pending_age_seconds {}",
            gauges.oldest_pending_age_s.unwrap_or(0.0)
        );
        header(
            &mut text,
            "outbox_waiting_for_enrolment",
            "gauge",
            "Taps that wait only behind an earlier tap of the same card, which EGYM does not know \
             (yet): they go out once the card is enrolled.",
        );
        let _ = writeln!(
            text,
            "gym_checkin_outbox_waiting_for_enrolment {}",
            gauges.waiting_for_enrolment
        );
        header(
            &mut text,
            "taps_total",
            "counter",
            "Taps since the service started, by reader and outcome (recorded, ignored, lost).",
        );
        let readers: BTreeSet<&str> = gauges
            .readers
            .iter()
            .map(|(reader, _)| reader.as_str())
            .chain(counts.taps.keys().map(String::as_str))
            .collect();
        for reader in readers {
            let by_outcome = counts.taps.get(reader).copied().unwrap_or_default();
            for outcome in TapOutcome::ALL {
                let _ = writeln!(
                    text,
                    "gym_checkin_taps_total{{reader=\"{}\",outcome=\"{}\"}} {}",
                    escape(reader),
                    outcome.label(),
                    by_outcome[outcome.index()]
                );
            }
        }
        header(
            &mut text,
            "deliveries_total",
            "counter",
            "Delivery attempts since the service started, by outcome.",
        );
        for outcome in DeliveryOutcome::ALL {
            let _ = writeln!(
                text,
                "gym_checkin_deliveries_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                counts.deliveries[outcome.index()]
            );
        }
        header(
            &mut text,
            "admissions_refused_total",
            "counter",
            "Wellpass admissions EGYM refused since the service started, by reason.",
        );
        for reason in RefusalReason::ALL {
            let _ = writeln!(
                text,
                "gym_checkin_admissions_refused_total{{reason=\"{}\"}} {}",
                reason.label(),
                counts.refusals[reason.index()]
            );
        }
        header(
            &mut text,
            "egym_request_duration_seconds",
            "histogram",
            "How long requests to EGYM took, by call.",
        );
        for call in EgymCall::ALL {
            let histogram = &counts.requests[call.index()];
            let call = call.label();
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
        metrics.tap("entrance", TapOutcome::Recorded);
        metrics.tap("entrance", TapOutcome::Recorded);
        metrics.tap("exit \"2\"", TapOutcome::Ignored);
        metrics.delivery(DeliveryOutcome::Delivered);
        metrics.admission_refused(RefusalReason::MembershipExpired);
        metrics.request(EgymCall::Lookup, 0.02, Some(200));
        metrics.request(EgymCall::Lookup, 3.0, Some(429));
        let text = metrics.render(&Gauges {
            events: vec![("pending", 3)],
            waiting_for_enrolment: 2,
            readers: vec![("entrance".into(), true)],
            ..Gauges::default()
        });
        for line in [
            "gym_checkin_taps_total{reader=\"entrance\",outcome=\"recorded\"} 2",
            "gym_checkin_taps_total{reader=\"exit \\\"2\\\"\",outcome=\"ignored\"} 1",
            "gym_checkin_deliveries_total{outcome=\"delivered\"} 1",
            "gym_checkin_admissions_refused_total{reason=\"membership_expired\"} 1",
            "gym_checkin_egym_request_duration_seconds_bucket{call=\"lookup\",le=\"0.025\"} 1",
            "gym_checkin_egym_request_duration_seconds_bucket{call=\"lookup\",le=\"5\"} 2",
            "gym_checkin_egym_request_duration_seconds_bucket{call=\"lookup\",le=\"+Inf\"} 2",
            "gym_checkin_egym_request_duration_seconds_count{call=\"lookup\"} 2",
            "gym_checkin_egym_rate_limited_total 1",
            "gym_checkin_outbox_events{state=\"pending\"} 3",
            "gym_checkin_outbox_waiting_for_enrolment 2",
            "gym_checkin_reader_connected{reader=\"entrance\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn every_counter_is_exposed_at_zero_for_every_label_value_before_anything_is_counted() {
        let text = Metrics::default().render(&Gauges {
            readers: vec![("entrance".into(), true), ("exit".into(), false)],
            ..Gauges::default()
        });
        let mut expected = Vec::new();
        for reader in ["entrance", "exit"] {
            for outcome in TapOutcome::ALL {
                expected.push(format!(
                    "gym_checkin_taps_total{{reader=\"{reader}\",outcome=\"{}\"}} 0",
                    outcome.label()
                ));
            }
        }
        for outcome in DeliveryOutcome::ALL {
            expected.push(format!(
                "gym_checkin_deliveries_total{{outcome=\"{}\"}} 0",
                outcome.label()
            ));
        }
        for reason in RefusalReason::ALL {
            expected.push(format!(
                "gym_checkin_admissions_refused_total{{reason=\"{}\"}} 0",
                reason.label()
            ));
        }
        for call in EgymCall::ALL {
            expected.push(format!(
                "gym_checkin_egym_request_duration_seconds_count{{call=\"{}\"}} 0",
                call.label()
            ));
        }
        expected.push("gym_checkin_egym_rate_limited_total 0".into());
        for line in &expected {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(expected.iter().any(|l| l.contains("outcome=\"lost\"")));
    }

    #[test]
    fn each_label_sets_values_are_distinct_and_in_the_order_of_their_variants() {
        fn check<T: Copy + std::fmt::Debug>(
            all: &[T],
            label: fn(T) -> &'static str,
            index: fn(T) -> usize,
        ) {
            let labels: BTreeSet<&str> = all.iter().map(|v| label(*v)).collect();
            assert_eq!(labels.len(), all.len(), "{all:?}");
            for (i, value) in all.iter().enumerate() {
                assert_eq!(index(*value), i, "{value:?}");
            }
        }
        check(TapOutcome::ALL, TapOutcome::label, TapOutcome::index);
        check(
            DeliveryOutcome::ALL,
            DeliveryOutcome::label,
            DeliveryOutcome::index,
        );
        check(
            RefusalReason::ALL,
            RefusalReason::label,
            RefusalReason::index,
        );
        check(EgymCall::ALL, EgymCall::label, EgymCall::index);
    }
}
