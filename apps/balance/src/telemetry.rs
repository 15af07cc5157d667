//! One place that sets up logging and tracing: JSON (or pretty) lines on stdout, and
//! OpenTelemetry spans over OTLP/HTTP when `BALANCE_OTLP_ENDPOINT` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogConfig, LogFormat};

/// Flushes pending spans when dropped; keep it alive for the life of the process.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The OTLP traces URL for a configured endpoint: a base URL gets `/v1/traces`, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does; a URL that already names the path is used as is.
pub fn traces_url(endpoint: &url::Url) -> String {
    let s = endpoint.as_str().trim_end_matches('/');
    if s.ends_with("/v1/traces") { s.to_string() } else { format!("{s}/v1/traces") }
}

/// Installs the global subscriber. Call once, from `main`, inside the tokio runtime.
pub fn init(config: &LogConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.filter)?;
    let fmt = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let (otel, provider) = match &config.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(endpoint))
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("balance").build())
                .build();
            let tracer = provider.tracer("balance");
            (Some(tracing_opentelemetry::layer().with_tracer(tracer)), Some(provider))
        }
    };
    tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init()?;
    Ok(TelemetryGuard { provider })
}
