//! Logging and tracing: JSON logs through `tracing`, and OpenTelemetry export over OTLP
//! (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Flushes exported spans when dropped at shutdown.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("opentelemetry shutdown: {e}");
            }
        }
    }
}

/// Installs the global subscriber. Logs go to stderr, so stdout stays clean for commands
/// whose output is data (`dev token`, `dev up`).
pub fn init(otel_endpoint: Option<&str>) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let fmt = tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).with_writer(std::io::stderr);
    let mut guard = TelemetryGuard::default();
    let otel = otel_endpoint.and_then(|endpoint| {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build();
        match exporter {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
                let tracer = provider.tracer("aumos-governance-engine");
                guard.provider = Some(provider);
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the exporter: {e}");
                None
            }
        }
    });
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    guard
}
