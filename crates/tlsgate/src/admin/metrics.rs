//! `GET /metrics` (SPEC §6): certificate expiry, reload outcomes, handshakes,
//! requests, backends and CRL freshness in the OpenMetrics text format.
//!
//! In: the store's expiry rows, reload counters and CA bundles, and each
//! running listener's counters and backends. Out: one text exposition.
//!
//! The data path keeps plain atomics ([`tlsgate_listener::ListenerStats`],
//! [`tlsgate_cert_store::ReloadCounters`]), not metric objects: a scrape is
//! rare, so each one copies the live values into a [`MetricsInput`] and
//! builds a fresh `prometheus-client` registry of constant metrics from it.
//! Values that only grow are exported as counters, values that go up and
//! down as gauges. A listener that is re-bound starts its counters again
//! from zero, which Prometheus treats as an ordinary counter reset.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use super::{ApiError, AppState, Shared};

/// The content type of what [`render`] produces (prometheus-client writes
/// OpenMetrics text, which Prometheus accepts under this type).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The names of the status-class label values, index 0 = 1xx … 4 = 5xx, in
/// the order [`tlsgate_listener::ListenerStats::requests`] returns them.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Everything one scrape reports, copied out of the store and the server so
/// that [`render`] is a pure function.
#[derive(Debug, Default)]
struct MetricsInput {
    /// Every certificate in the store.
    certificates: Vec<CertificateExpiry>,
    /// Certificate loads and replacements that went live.
    reloads_succeeded: u64,
    /// Certificate changes that were refused.
    reloads_failed: u64,
    /// CA loads whose CRL was already past its nextUpdate.
    expired_crl_loads: u64,
    /// Per CA bundle with at least one CRL that has a nextUpdate: the
    /// earliest nextUpdate (unix seconds), when the bundle goes stale.
    crl_next_updates: Vec<(String, i64)>,
    /// Config reloads: applied, refused, waiting for certificates.
    config_reloads: [u64; 3],
    /// Whether the last config reload went into force (true before any).
    config_last_reload_applied: bool,
    /// The running listeners, in config order.
    listeners: Vec<ListenerInput>,
}

/// One certificate's expiry.
#[derive(Debug)]
struct CertificateExpiry {
    /// Name in the store.
    name: String,
    /// `server` or `ca`.
    kind: &'static str,
    /// notAfter, unix seconds (for a CA bundle: the earliest of the bundle).
    not_after: i64,
}

/// One running listener's counters and backends.
#[derive(Debug, Default)]
struct ListenerInput {
    /// The listener's name.
    name: String,
    /// HTTPS (TLS terminated here); handshake metrics only exist for these.
    tls: bool,
    /// Completed handshakes.
    handshakes_ok: u64,
    /// Completed handshakes that resumed a session.
    handshakes_resumed: u64,
    /// Failed handshakes by reason.
    handshake_failures: BTreeMap<String, u64>,
    /// Responses by status class, index 0 = 1xx … 4 = 5xx.
    requests: [u64; 5],
    /// Client connections open now.
    connections_open: u64,
    /// Of those, idle HTTP/1.1 connections parked (HTTP buffers released).
    connections_parked: u64,
    /// Of those, connections switched to another protocol (WebSocket).
    tunnels_open: u64,
    /// Connections closed with a request head still arriving at client_idle.
    slow_request_heads: u64,
    /// HTTP/2 connections closed for flooding control frames.
    http2_floods: u64,
    /// The listener's backends.
    backends: Vec<BackendInput>,
}

/// One backend's state.
#[derive(Debug)]
struct BackendInput {
    /// `host:port`.
    address: String,
    /// In rotation as far as the health checks know.
    healthy: bool,
    /// Requests being forwarded to it now.
    in_flight: usize,
}

/// `{name, kind}` of a certificate.
#[derive(Debug, EncodeLabelSet)]
struct CertificateLabels {
    name: String,
    kind: &'static str,
}

/// `{result}` of a reload.
#[derive(Debug, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `{listener}`.
#[derive(Debug, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// `{listener, result}` of a handshake.
#[derive(Debug, EncodeLabelSet)]
struct HandshakeLabels {
    listener: String,
    result: &'static str,
}

/// `{listener, reason}` of a failed handshake.
#[derive(Debug, EncodeLabelSet)]
struct FailureLabels {
    listener: String,
    reason: String,
}

/// `{listener, status_class}` of a response.
#[derive(Debug, EncodeLabelSet)]
struct RequestLabels {
    listener: String,
    status_class: &'static str,
}

/// `{listener, backend}`.
#[derive(Debug, EncodeLabelSet)]
struct BackendLabels {
    listener: String,
    backend: String,
}

/// `{ca}` of a CA bundle.
#[derive(Debug, EncodeLabelSet)]
struct CaLabels {
    ca: String,
}

/// Gauges hold `i64`; a `u64` or `usize` past `i64::MAX` cannot happen for
/// these values, and saturating keeps a broken one visible, not wrapped.
fn gauge_value(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// A labelled metric family written in the order its samples were added.
///
/// prometheus-client's `Family` keeps its samples in a `HashMap` and writes
/// them in hash order, which shuffles every scrape; this keeps config order
/// (listeners, then their backends) and 1xx…5xx, so a scrape reads well and
/// two scrapes diff cleanly. Its samples are constants: nothing here is
/// updated after the scrape's values are copied in.
#[derive(Debug)]
struct Series<L, M>(Vec<(L, M)>);

impl<L, M> Series<L, M> {
    fn new() -> Self {
        Series(Vec::new())
    }

    fn push(&mut self, labels: L, metric: M) {
        self.0.push((labels, metric));
    }
}

impl<L, M: TypedMetric> TypedMetric for Series<L, M> {
    const TYPE: MetricType = M::TYPE;
}

impl<L: EncodeLabelSet, M: EncodeMetric + TypedMetric> EncodeMetric for Series<L, M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// A family of counter samples.
type Counted<L> = Series<L, ConstCounter<u64>>;
/// A family of gauge samples.
type Gauged<L> = Series<L, ConstGauge<i64>>;

/// Builds the OpenMetrics text for `input`.
///
/// Counter names are registered without `_total` and timestamps with
/// [`Unit::Seconds`]: prometheus-client appends the suffixes (and writes the
/// `# UNIT` line) itself, so the samples come out as
/// `tlsgate_handshakes_total` and
/// `tlsgate_certificate_expiry_timestamp_seconds`. Every family is declared
/// (`# HELP`, `# TYPE`) even before it has a sample, so the list of metrics
/// can be read off any scrape. Samples keep the order of `input`.
///
/// # Errors
///
/// Only what the text encoder reports; writing into a `String` does not fail.
fn render(input: &MetricsInput) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();

    let mut expiry = Gauged::new();
    for cert in &input.certificates {
        let labels = CertificateLabels {
            name: cert.name.clone(),
            kind: cert.kind,
        };
        expiry.push(labels, ConstGauge::new(cert.not_after));
    }
    registry.register_with_unit(
        "tlsgate_certificate_expiry_timestamp",
        "When a certificate in the store expires (notAfter, unix seconds; \
         for a CA bundle the earliest of the bundle)",
        Unit::Seconds,
        expiry,
    );

    let mut reloads = Counted::new();
    for (result, count) in [
        ("success", input.reloads_succeeded),
        ("failure", input.reloads_failed),
    ] {
        reloads.push(ResultLabels { result }, ConstCounter::new(count));
    }
    registry.register(
        "tlsgate_certificate_reloads",
        "Certificate loads and replacements by outcome: success (went live) \
         or failure (refused; the last good version stays in service)",
        reloads,
    );

    let mut config_reloads = Counted::new();
    for (result, count) in ["applied", "refused", "waiting"]
        .into_iter()
        .zip(input.config_reloads)
    {
        config_reloads.push(ResultLabels { result }, ConstCounter::new(count));
    }
    registry.register(
        "tlsgate_config_reloads",
        "Configuration reloads (file change, SIGHUP) by outcome: applied, \
         refused (the running configuration stays) or waiting (it names \
         certificates the store does not serve yet)",
        config_reloads,
    );
    registry.register(
        "tlsgate_config_last_reload_applied",
        "1 when the last configuration reload went into force (or none was \
         made yet), 0 when it was refused or waits for certificates: alert on 0",
        ConstGauge::new(i64::from(input.config_last_reload_applied)),
    );

    let mut handshakes = Counted::new();
    let mut failures = Counted::new();
    let mut resumed = Counted::new();
    let mut requests = Counted::new();
    let mut connections = Gauged::new();
    let mut parked = Gauged::new();
    let mut tunnels = Gauged::new();
    let mut slow_heads = Counted::new();
    let mut floods = Counted::new();
    let mut backend_up = Gauged::new();
    let mut backend_in_flight = Gauged::new();
    for listener in &input.listeners {
        let name = &listener.name;
        let by_listener = || ListenerLabels {
            listener: name.clone(),
        };
        if listener.tls {
            let failed: u64 = listener.handshake_failures.values().sum();
            for (result, count) in [("success", listener.handshakes_ok), ("failure", failed)] {
                let labels = HandshakeLabels {
                    listener: name.clone(),
                    result,
                };
                handshakes.push(labels, ConstCounter::new(count));
            }
            for (reason, count) in &listener.handshake_failures {
                let labels = FailureLabels {
                    listener: name.clone(),
                    reason: reason.clone(),
                };
                failures.push(labels, ConstCounter::new(*count));
            }
            resumed.push(
                by_listener(),
                ConstCounter::new(listener.handshakes_resumed),
            );
        }
        for (status_class, count) in STATUS_CLASSES.into_iter().zip(listener.requests) {
            let labels = RequestLabels {
                listener: name.clone(),
                status_class,
            };
            requests.push(labels, ConstCounter::new(count));
        }
        connections.push(
            by_listener(),
            ConstGauge::new(gauge_value(listener.connections_open)),
        );
        parked.push(
            by_listener(),
            ConstGauge::new(gauge_value(listener.connections_parked)),
        );
        tunnels.push(
            by_listener(),
            ConstGauge::new(gauge_value(listener.tunnels_open)),
        );
        slow_heads.push(
            by_listener(),
            ConstCounter::new(listener.slow_request_heads),
        );
        floods.push(by_listener(), ConstCounter::new(listener.http2_floods));
        for backend in &listener.backends {
            let labels = || BackendLabels {
                listener: name.clone(),
                backend: backend.address.clone(),
            };
            backend_up.push(labels(), ConstGauge::new(i64::from(backend.healthy)));
            backend_in_flight.push(labels(), ConstGauge::new(gauge_value(backend.in_flight)));
        }
    }
    registry.register(
        "tlsgate_handshakes",
        "TLS handshakes by listener and result (success or failure)",
        handshakes,
    );
    registry.register(
        "tlsgate_handshake_failures",
        "Failed TLS handshakes by listener and reason",
        failures,
    );
    registry.register(
        "tlsgate_handshakes_resumed",
        "Successful TLS handshakes that resumed a session; divide by \
         tlsgate_handshakes_total{result=\"success\"} for the resumption ratio",
        resumed,
    );
    registry.register(
        "tlsgate_requests",
        "Responses sent to clients by listener and status class (1xx to 5xx)",
        requests,
    );
    registry.register(
        "tlsgate_connections_open",
        "Client connections open now",
        connections,
    );
    registry.register(
        "tlsgate_connections_parked",
        "Open client connections idle with their HTTP buffers released (HTTP/1.1 keep-alive, quiet for 0.5-1 s)",
        parked,
    );
    registry.register(
        "tlsgate_tunnels_open",
        "Open client connections switched to another protocol by a backend's 101 (WebSocket), carried as bytes both ways",
        tunnels,
    );
    registry.register(
        "tlsgate_slow_request_heads",
        "HTTP/1.1 client connections closed because a request head was still \
         arriving when timeouts.client_idle ran out (stalled or slowloris clients)",
        slow_heads,
    );
    registry.register(
        "tlsgate_http2_floods",
        "HTTP/2 client connections closed for sending control frames (PRIORITY, \
         WINDOW_UPDATE, SETTINGS, PING) far beyond what their requests need",
        floods,
    );
    registry.register(
        "tlsgate_backend_up",
        "1 when a backend is healthy (in rotation), 0 when it is not",
        backend_up,
    );
    registry.register(
        "tlsgate_backend_in_flight",
        "Requests being forwarded to a backend now",
        backend_in_flight,
    );

    let mut crl_next_update = Gauged::new();
    for (ca, next_update) in &input.crl_next_updates {
        crl_next_update.push(CaLabels { ca: ca.clone() }, ConstGauge::new(*next_update));
    }
    registry.register_with_unit(
        "tlsgate_crl_next_update_timestamp",
        "The earliest nextUpdate of a CA bundle's CRLs (unix seconds): \
         past it the CRL is stale and a fresh one is due",
        Unit::Seconds,
        crl_next_update,
    );

    registry.register(
        "tlsgate_crl_expired_loads",
        "CA loads whose CRL was already past its nextUpdate (still enforced)",
        ConstCounter::new(input.expired_crl_loads),
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// Copies the live values out of the store and the server.
async fn gather(state: &AppState) -> MetricsInput {
    // Only names and protocols are needed from the config; copying them
    // releases the lock at once, so a scrape never holds up a reload.
    let configured: Vec<(String, bool)> = state
        .config
        .lock()
        .await
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.tls().is_some()))
        .collect();

    let mut listeners = Vec::with_capacity(configured.len());
    for (name, tls) in configured {
        // A listener the server does not run has nothing to count.
        let Some(stats) = state.server.stats(&name).await else {
            continue;
        };
        let backends = state
            .server
            .backends(&name)
            .await
            .into_iter()
            .map(|(address, _weight, healthy, in_flight)| BackendInput {
                address,
                healthy,
                in_flight,
            })
            .collect();
        listeners.push(ListenerInput {
            tls,
            handshakes_ok: stats.handshakes_ok(),
            handshakes_resumed: stats.handshakes_resumed(),
            handshake_failures: stats
                .handshake_failures()
                .into_iter()
                .map(|(reason, count)| (reason.to_owned(), count))
                .collect(),
            requests: stats.requests(),
            connections_open: stats.connections_open(),
            connections_parked: stats.connections_parked(),
            tunnels_open: stats.tunnels_open(),
            slow_request_heads: stats.slow_request_heads(),
            http2_floods: stats.http2_floods(),
            backends,
            name,
        });
    }

    let certificates = state
        .store
        .expiry()
        .into_iter()
        .map(|row| CertificateExpiry {
            name: row.name.as_str().to_owned(),
            kind: row.kind.as_str(),
            not_after: row.not_after,
        })
        .collect();
    let snapshot = state.store.snapshot();
    let mut crl_next_updates: Vec<(String, i64)> = snapshot
        .cas()
        .filter_map(|ca| {
            // A CRL without nextUpdate never goes stale, so it has no say.
            let earliest = ca.crls.iter().filter_map(|crl| crl.next_update).min()?;
            Some((ca.name.as_str().to_owned(), earliest))
        })
        .collect();
    // The snapshot's map is unordered; sorted keeps scrapes comparable.
    crl_next_updates.sort();
    let counters = state.store.counters();

    MetricsInput {
        certificates,
        reloads_succeeded: counters.successes(),
        reloads_failed: counters.failures(),
        expired_crl_loads: counters.expired_crls(),
        crl_next_updates,
        config_reloads: [
            state.config_reloads.applied.load(Ordering::Relaxed),
            state.config_reloads.refused.load(Ordering::Relaxed),
            state.config_reloads.waiting.load(Ordering::Relaxed),
        ],
        config_last_reload_applied: !state
            .config_reloads
            .last_not_applied
            .load(Ordering::Relaxed),
        listeners,
    }
}

/// `GET /metrics`: the OpenMetrics text exposition.
pub async fn metrics(State(state): State<Shared>) -> Response {
    let input = gather(&state).await;
    match render(&input) {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(err) => ApiError::new("InternalError", format!("cannot encode the metrics: {err}"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// One sample line: `name{labels} value`.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A metric family as declared by `# HELP` / `# TYPE` / `# UNIT`.
    #[derive(Debug, Default)]
    struct FamilyText {
        help: String,
        kind: String,
        unit: Option<String>,
        samples: Vec<Sample>,
    }

    /// Parses `{a="x",b="y\"z"}`, undoing OpenMetrics escapes.
    fn parse_labels(text: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label key");
            assert!(
                key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name {key:?}"
            );
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("unterminated label value") {
                    (_, '\\') => match chars.next().expect("dangling escape").1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            assert!(
                labels.insert(key.to_owned(), value).is_none(),
                "label {key} twice"
            );
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        labels
    }

    /// A small parser of the OpenMetrics text format: checks the line
    /// structure (descriptors before samples, samples named after their
    /// family, `# EOF` last) and returns the families by name.
    fn parse(text: &str) -> BTreeMap<String, FamilyText> {
        let mut families: BTreeMap<String, FamilyText> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut lines = text.lines().peekable();
        let mut saw_eof = false;
        while let Some(line) = lines.next() {
            if line == "# EOF" {
                assert!(lines.peek().is_none(), "text after # EOF");
                saw_eof = true;
                break;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP without text");
                assert!(!families.contains_key(name), "{name} declared twice");
                families.insert(
                    name.to_owned(),
                    FamilyText {
                        help: help.to_owned(),
                        ..FamilyText::default()
                    },
                );
                current = Some(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE without type");
                assert_eq!(Some(name), current.as_deref(), "TYPE for another family");
                families.get_mut(name).expect("declared").kind = kind.to_owned();
            } else if let Some(rest) = line.strip_prefix("# UNIT ") {
                let (name, unit) = rest.split_once(' ').expect("UNIT without unit");
                assert_eq!(Some(name), current.as_deref(), "UNIT for another family");
                assert!(name.ends_with(&format!("_{unit}")), "{name} lacks _{unit}");
                families.get_mut(name).expect("declared").unit = Some(unit.to_owned());
            } else {
                assert!(!line.starts_with('#'), "unknown comment {line:?}");
                let family = current.as_deref().expect("sample before any family");
                let (series, value) = line.rsplit_once(' ').expect("sample without value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => {
                        (name, parse_labels(labels.strip_suffix('}').expect("}")))
                    }
                    None => (series, BTreeMap::new()),
                };
                let entry = families.get_mut(family).expect("declared");
                let expected = match entry.kind.as_str() {
                    "counter" => format!("{family}_total"),
                    _ => family.to_owned(),
                };
                assert_eq!(name, expected, "sample of another family");
                entry.samples.push(Sample {
                    name: name.to_owned(),
                    labels,
                    value: value.parse().expect("numeric value"),
                });
            }
        }
        assert!(saw_eof, "no # EOF");
        families
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The value of the sample with exactly these labels.
    fn value(families: &BTreeMap<String, FamilyText>, family: &str, pairs: &[(&str, &str)]) -> f64 {
        let wanted = labels(pairs);
        let found: Vec<&Sample> = families[family]
            .samples
            .iter()
            .filter(|s| s.labels == wanted)
            .collect();
        assert_eq!(found.len(), 1, "{family}{wanted:?}: {found:?}");
        found[0].value
    }

    fn sample_input() -> MetricsInput {
        MetricsInput {
            certificates: vec![
                CertificateExpiry {
                    name: "www-ecdsa".into(),
                    kind: "server",
                    not_after: 1_900_000_000,
                },
                CertificateExpiry {
                    name: "corp/ca".into(),
                    kind: "ca",
                    not_after: 2_000_000_000,
                },
            ],
            reloads_succeeded: 7,
            reloads_failed: 2,
            expired_crl_loads: 1,
            crl_next_updates: vec![("corp/ca".into(), 1_800_000_000)],
            config_reloads: [5, 2, 1],
            config_last_reload_applied: false,
            listeners: vec![
                ListenerInput {
                    name: "web".into(),
                    tls: true,
                    handshakes_ok: 10,
                    handshakes_resumed: 4,
                    handshake_failures: BTreeMap::from([
                        ("no_certificate".to_owned(), 2),
                        ("bad \"quoted\" reason".to_owned(), 1),
                    ]),
                    requests: [0, 90, 3, 5, 2],
                    connections_open: 6,
                    connections_parked: 2,
                    tunnels_open: 1,
                    slow_request_heads: 4,
                    http2_floods: 3,
                    backends: vec![
                        BackendInput {
                            address: "127.0.0.1:8081".into(),
                            healthy: true,
                            in_flight: 3,
                        },
                        BackendInput {
                            address: "127.0.0.1:8082".into(),
                            healthy: false,
                            in_flight: 0,
                        },
                    ],
                },
                ListenerInput {
                    name: "plain".into(),
                    tls: false,
                    requests: [1, 2, 3, 4, 5],
                    connections_open: 1,
                    ..ListenerInput::default()
                },
            ],
        }
    }

    /// Every family SPEC §6 asks for (and the additions: parked, tunnels
    /// slow request heads, HTTP/2 floods and config reloads), with its type, sample name
    /// and unit.
    const FAMILIES: [(&str, &str, Option<&str>); 17] = [
        (
            "tlsgate_certificate_expiry_timestamp_seconds",
            "gauge",
            Some("seconds"),
        ),
        ("tlsgate_certificate_reloads", "counter", None),
        ("tlsgate_config_reloads", "counter", None),
        ("tlsgate_config_last_reload_applied", "gauge", None),
        ("tlsgate_handshakes", "counter", None),
        ("tlsgate_handshake_failures", "counter", None),
        ("tlsgate_handshakes_resumed", "counter", None),
        ("tlsgate_requests", "counter", None),
        ("tlsgate_connections_open", "gauge", None),
        ("tlsgate_connections_parked", "gauge", None),
        ("tlsgate_tunnels_open", "gauge", None),
        ("tlsgate_slow_request_heads", "counter", None),
        ("tlsgate_http2_floods", "counter", None),
        ("tlsgate_backend_up", "gauge", None),
        ("tlsgate_backend_in_flight", "gauge", None),
        (
            "tlsgate_crl_next_update_timestamp_seconds",
            "gauge",
            Some("seconds"),
        ),
        ("tlsgate_crl_expired_loads", "counter", None),
    ];

    #[test]
    fn every_family_has_help_and_the_right_type() {
        let text = render(&sample_input()).expect("render");
        let families = parse(&text);
        for (name, kind, unit) in FAMILIES {
            let family = families
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
            assert_eq!(family.kind, kind, "{name}");
            assert_eq!(family.unit.as_deref(), unit, "{name}");
            assert!(family.help.len() > 10, "{name} has no real help text");
        }
        assert_eq!(
            families.len(),
            FAMILIES.len(),
            "unexpected families:\n{text}"
        );
    }

    #[test]
    fn values_and_labels() {
        let text = render(&sample_input()).expect("render");
        let f = parse(&text);

        let expiry = "tlsgate_certificate_expiry_timestamp_seconds";
        assert_eq!(
            value(&f, expiry, &[("name", "www-ecdsa"), ("kind", "server")]),
            1.9e9
        );
        assert_eq!(
            value(&f, expiry, &[("name", "corp/ca"), ("kind", "ca")]),
            2.0e9
        );

        let reloads = "tlsgate_certificate_reloads";
        assert_eq!(value(&f, reloads, &[("result", "success")]), 7.0);
        assert_eq!(value(&f, reloads, &[("result", "failure")]), 2.0);
        let config = "tlsgate_config_reloads";
        assert_eq!(value(&f, config, &[("result", "applied")]), 5.0);
        assert_eq!(value(&f, config, &[("result", "refused")]), 2.0);
        assert_eq!(value(&f, config, &[("result", "waiting")]), 1.0);
        assert_eq!(value(&f, "tlsgate_config_last_reload_applied", &[]), 0.0);

        let hs = "tlsgate_handshakes";
        assert_eq!(
            value(&f, hs, &[("listener", "web"), ("result", "success")]),
            10.0
        );
        assert_eq!(
            value(&f, hs, &[("listener", "web"), ("result", "failure")]),
            3.0
        );
        let failures = "tlsgate_handshake_failures";
        assert_eq!(
            value(
                &f,
                failures,
                &[("listener", "web"), ("reason", "no_certificate")]
            ),
            2.0
        );
        // Label values are escaped on the way out and read back intact.
        assert_eq!(
            value(
                &f,
                failures,
                &[("listener", "web"), ("reason", "bad \"quoted\" reason")]
            ),
            1.0
        );
        assert_eq!(
            value(&f, "tlsgate_handshakes_resumed", &[("listener", "web")]),
            4.0
        );

        // A plain-HTTP listener has no handshakes, but has requests and connections.
        for family in [hs, failures, "tlsgate_handshakes_resumed"] {
            assert!(
                f[family]
                    .samples
                    .iter()
                    .all(|s| s.labels["listener"] != "plain"),
                "{family} has a sample for the HTTP listener"
            );
        }
        let requests = "tlsgate_requests";
        for (class, web, plain) in [("1xx", 0.0, 1.0), ("2xx", 90.0, 2.0), ("5xx", 2.0, 5.0)] {
            assert_eq!(
                value(
                    &f,
                    requests,
                    &[("listener", "web"), ("status_class", class)]
                ),
                web
            );
            assert_eq!(
                value(
                    &f,
                    requests,
                    &[("listener", "plain"), ("status_class", class)]
                ),
                plain
            );
        }
        assert_eq!(f[requests].samples.len(), 10, "five classes per listener");
        assert_eq!(
            value(&f, "tlsgate_connections_open", &[("listener", "web")]),
            6.0
        );
        assert_eq!(
            value(&f, "tlsgate_connections_open", &[("listener", "plain")]),
            1.0
        );
        assert_eq!(
            value(&f, "tlsgate_connections_parked", &[("listener", "web")]),
            2.0
        );
        assert_eq!(
            value(&f, "tlsgate_tunnels_open", &[("listener", "web")]),
            1.0
        );
        assert_eq!(
            value(&f, "tlsgate_slow_request_heads", &[("listener", "web")]),
            4.0
        );
        assert_eq!(
            value(&f, "tlsgate_http2_floods", &[("listener", "web")]),
            3.0
        );

        let one = [("listener", "web"), ("backend", "127.0.0.1:8081")];
        let two = [("listener", "web"), ("backend", "127.0.0.1:8082")];
        assert_eq!(value(&f, "tlsgate_backend_up", &one), 1.0);
        assert_eq!(value(&f, "tlsgate_backend_up", &two), 0.0);
        assert_eq!(value(&f, "tlsgate_backend_in_flight", &one), 3.0);
        assert_eq!(value(&f, "tlsgate_backend_in_flight", &two), 0.0);

        assert_eq!(
            value(
                &f,
                "tlsgate_crl_next_update_timestamp_seconds",
                &[("ca", "corp/ca")]
            ),
            1.8e9
        );
        assert_eq!(value(&f, "tlsgate_crl_expired_loads", &[]), 1.0);

        // Counter samples carry the `_total` suffix.
        let names: HashMap<&str, &str> = f
            .iter()
            .filter_map(|(family, t)| {
                t.samples
                    .first()
                    .map(|s| (family.as_str(), s.name.as_str()))
            })
            .collect();
        assert_eq!(names["tlsgate_handshakes"], "tlsgate_handshakes_total");
        assert_eq!(names["tlsgate_backend_up"], "tlsgate_backend_up");
    }

    #[test]
    fn empty_input_still_declares_every_family() {
        let text = render(&MetricsInput::default()).expect("render");
        let families = parse(&text);
        for (name, kind, _) in FAMILIES {
            assert_eq!(
                families.get(name).map(|f| f.kind.as_str()),
                Some(kind),
                "{name}:\n{text}"
            );
        }
        // The unlabelled and fixed-label counters are there at 0; the rest wait
        // for a certificate or a listener.
        assert_eq!(
            value(
                &families,
                "tlsgate_certificate_reloads",
                &[("result", "failure")]
            ),
            0.0
        );
        assert_eq!(value(&families, "tlsgate_crl_expired_loads", &[]), 0.0);
        assert!(families["tlsgate_handshakes"].samples.is_empty());
    }

    #[test]
    fn samples_keep_input_order() {
        let text = render(&sample_input()).expect("render");
        let f = parse(&text);
        let order: Vec<(&str, &str)> = f["tlsgate_requests"]
            .samples
            .iter()
            .map(|s| {
                (
                    s.labels["listener"].as_str(),
                    s.labels["status_class"].as_str(),
                )
            })
            .collect();
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let expected: Vec<(&str, &str)> = ["web", "plain"]
            .into_iter()
            .flat_map(|l| classes.into_iter().map(move |c| (l, c)))
            .collect();
        assert_eq!(order, expected);
        let backends: Vec<&str> = f["tlsgate_backend_up"]
            .samples
            .iter()
            .map(|s| s.labels["backend"].as_str())
            .collect();
        assert_eq!(backends, ["127.0.0.1:8081", "127.0.0.1:8082"]);
        // Identical input, identical text.
        assert_eq!(render(&sample_input()).expect("render"), text);
    }
}
