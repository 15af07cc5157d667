//! One place that sets up logging and tracing: JSON (or pretty) lines on stdout, and
//! OpenTelemetry spans over OTLP/HTTP when `BALANCE_OTLP_ENDPOINT` is set.

use std::{sync::Arc, time::Duration};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
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
    if s.ends_with("/v1/traces") {
        s.to_string()
    } else {
        format!("{s}/v1/traces")
    }
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
            let exporter = OnTokio {
                inner: Arc::new(exporter),
                handle: tokio::runtime::Handle::current(),
            };
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("balance").build())
                .build();
            let tracer = provider.tracer("balance");
            (
                Some(tracing_opentelemetry::layer().with_tracer(tracer)),
                Some(provider),
            )
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// Runs the OTLP exporter's HTTP calls on our tokio runtime. The SDK's batch processor
/// exports from a thread of its own, where the hyper client finds no reactor.
#[derive(Debug)]
struct OnTokio {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    handle: tokio::runtime::Handle,
}

impl SpanExporter for OnTokio {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.handle.spawn(async move { inner.export(batch).await });
        async move {
            task.await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
