//! Prometheus metrics: the recorder, the per-request middleware and `GET /metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds: fine below 10 ms, where the terminal API should live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Event fan-out buckets in seconds (append to the last socket of a shard handed the
/// frame): millisecond steps up to 10 ms, the delivery target with 1,000 terminals.
const FANOUT_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01, 0.015, 0.02, 0.05, 0.1,
    0.5,
];

/// Installs the process-wide recorder (once) and returns its render handle.
pub(crate) fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("posbridge_http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("posbridge_event_fanout_seconds".into()),
                    FANOUT_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    metrics::describe_counter!(
                        "posbridge_http_requests_total",
                        "HTTP requests by method, route and status"
                    );
                    metrics::describe_histogram!(
                        "posbridge_http_request_duration_seconds",
                        "HTTP request latency"
                    );
                    metrics::describe_gauge!(
                        "posbridge_websocket_connections",
                        "Open terminal WebSockets"
                    );
                    metrics::describe_histogram!(
                        "posbridge_event_fanout_seconds",
                        "Time from an event's append until every live socket of a fan-out shard was handed its frame"
                    );
                    metrics::describe_counter!(
                        "posbridge_events_appended_total",
                        "Events appended to tenant logs"
                    );
                    metrics::describe_counter!(
                        "posbridge_transaction_retries_total",
                        "Transactions run again after the database aborted them to resolve a deadlock or serialization conflict"
                    );
                    metrics::describe_histogram!(
                        "posbridge_write_batch_jobs",
                        "Writes taken by one group-commit transaction"
                    );
                    metrics::describe_histogram!(
                        "posbridge_write_batch_tenants",
                        "Tenants whose events one group-commit transaction writes (and whose sequence rows it locks until its commit)"
                    );
                    metrics::describe_histogram!(
                        "posbridge_point_read_batch_reads",
                        "PostgreSQL: point reads (balances, points) answered by one statement"
                    );
                    metrics::describe_counter!(
                        "posbridge_write_batch_reruns_total",
                        "Group-commit batches rolled back and run again with savepoints because a write that had touched the database failed"
                    );
                    metrics::describe_gauge!(
                        "posbridge_dead_letters",
                        "Dead letters held (webhook deliveries, sync sales and pages, hook events set aside), by kind"
                    );
                    metrics::describe_counter!(
                        "posbridge_dead_lettered_total",
                        "Items set aside as dead letters since start, by kind"
                    );
                    for kind in crate::dead_letters::Kind::ALL {
                        metrics::gauge!("posbridge_dead_letters", "kind" => kind.as_str()).set(0.0);
                        metrics::counter!("posbridge_dead_lettered_total", "kind" => kind.as_str()).absolute(0);
                    }
                    metrics::gauge!("posbridge_websocket_connections").set(0.0);
                    metrics::counter!("posbridge_events_appended_total").absolute(0);
                    metrics::counter!("posbridge_transaction_retries_total").absolute(0);
                    metrics::counter!("posbridge_write_batch_reruns_total").absolute(0);
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Middleware: counts and times every request by its route template (never the raw path,
/// which would carry phone numbers and card codes into the metrics).
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("posbridge_http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("posbridge_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` in Prometheus text format. Gauges of shared database state (dead
/// letters) are read from the database first, so every host reports the same figures.
#[utoipa::path(get, path = "/metrics", tag = "public", summary = "Prometheus metrics", responses(
    (status = 200, description = "The metrics, Prometheus text format.", content_type = "text/plain", body = String),
    (status = 503, description = "`error`: the metrics recorder is not installed."),
))]
pub(crate) async fn render(State(store): State<Store>) -> Response {
    crate::dead_letters::refresh_gauge(&store).await;
    match HANDLE.get().and_then(Option::as_ref) {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed",
        )
            .into_response(),
    }
}
