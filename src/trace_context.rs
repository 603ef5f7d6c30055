//! W3C Trace Context between the split service's processes, so one trace spans the
//! gateway and the service behind it: a process continues the trace its request's
//! `traceparent` names, and the gateway hands its own span on in the `traceparent` of
//! the request it forwards.
//!
//! Sampling follows the parent, as OpenTelemetry's `ParentBased` sampler does: a
//! request whose `traceparent` says sampled is traced whatever `--trace-sample-ratio`
//! says, one whose `traceparent` says not sampled is not, and only a request without
//! a valid one is decided by the ratio. The process in front decides for the whole
//! trace: two independent decisions at the default ratio of 0.01 would keep both
//! halves of only 1 trace in 10,000.
//!
//! Parsing is OpenTelemetry's own propagator (version, lengths, all-zero ids and flags
//! checked there); a header that does not parse counts as none.

use http::HeaderMap;
use http::header::HeaderValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries a trace from one process to the next.
pub const TRACEPARENT: &str = "traceparent";

/// The trace a request arrives in: the caller's span, if `traceparent` is valid.
pub fn incoming(headers: &HeaderMap) -> Option<SpanContext> {
    // Most requests carry none: no propagator, no context, one header lookup.
    headers.get(TRACEPARENT)?;
    let context = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let caller = context.span().span_context().clone();
    caller.is_valid().then_some(caller)
}

/// Whether to trace a request: the caller's decision when it sent one, otherwise
/// about `ratio` of requests. `None` (no trace export) keeps every request's spans,
/// which then exist only if a debug log filter wants them.
pub fn sampled(caller: Option<&SpanContext>, ratio: Option<f64>) -> bool {
    match caller {
        Some(caller) => caller.is_sampled(),
        None => ratio.is_none_or(crate::chance::one_in),
    }
}

/// The span of a request that arrived with `headers`: `span()` when the request is
/// traced ([`sampled`]), continuing the caller's trace if it sent one; otherwise
/// `Span::none()`, and nothing is built.
pub fn request_span(headers: &HeaderMap, ratio: Option<f64>, span: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let caller = incoming(headers);
    if !sampled(caller.as_ref(), ratio) {
        return tracing::Span::none();
    }
    let span = span();
    if let Some(caller) = caller {
        continue_from(&span, caller);
    }
    span
}

/// Makes `span` a child of the caller's span in another process. Nothing happens to
/// a span no exporter records (disabled, or no OpenTelemetry layer).
pub fn continue_from(span: &tracing::Span, caller: SpanContext) {
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(caller));
}

/// A `traceparent` naming `span` as the caller of the next process; `None` when no
/// exporter records `span`.
pub fn traceparent(span: &tracing::Span) -> Option<HeaderValue> {
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    let value = format!("00-{}-{}-{:02x}", own.trace_id(), own.span_id(), own.trace_flags().to_u8());
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(value).unwrap());
        headers
    }

    const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_is_the_caller_and_decides_sampling() {
        let caller = incoming(&with(SAMPLED)).expect("valid");
        assert_eq!(caller.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(caller.span_id().to_string(), "b7ad6b7169203331");
        assert!(caller.is_remote());
        // Sampled by the caller: traced even at ratio 0.
        assert!(sampled(Some(&caller), Some(0.0)));
        let unsampled = incoming(&with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")).unwrap();
        // Not sampled by the caller: not traced even at ratio 1.
        assert!(!sampled(Some(&unsampled), Some(1.0)));
    }

    #[test]
    fn no_or_an_invalid_traceparent_leaves_the_ratio_to_decide() {
        assert!(incoming(&HeaderMap::new()).is_none());
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "not a traceparent",
        ] {
            assert!(incoming(&with(bad)).is_none(), "{bad}");
        }
        assert!(sampled(None, Some(1.0)) && !sampled(None, Some(0.0)));
        assert!(sampled(None, None), "no export: the log filter decides");
    }

    #[test]
    fn a_span_nobody_records_hands_on_no_traceparent() {
        assert!(traceparent(&tracing::Span::none()).is_none());
    }
}
