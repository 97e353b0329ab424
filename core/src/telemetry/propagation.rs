//! The W3C trace context, carried by a process-wide [`TracePropagator`].

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::event::RecordedEvent;

/// A W3C trace context: the `traceparent` and `tracestate` of a span.
///
/// ```
/// use orchestrix::telemetry::TraceContext;
/// let tc = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None)?;
/// assert_eq!(tc.trace_id(), "0af7651916cd43dd8448eb211c80319c");
/// assert_eq!(tc.span_id(), "b7ad6b7169203331");
/// assert!(tc.is_sampled());
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-b7ad6b7169203331-01", None).is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// `{version}-{trace id}-{parent span id}-{flags}`, lowercase hex.
    pub traceparent: String,
    /// Vendor-specific trace state (`key=value` pairs), if any.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Checks the form of a `traceparent` (version `00`: 32 hex digits of
    /// trace id and 16 of span id, neither all zeros, 2 of flags; a later
    /// version may append fields) and keeps `tracestate` when it is not empty.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed `traceparent`.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self> {
        let bad =
            |why: &str| Error::invalid(format!("traceparent `{traceparent}`"), why.to_owned());
        let parts: Vec<&str> = traceparent.split('-').collect();
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let [version, trace, span, flags, rest @ ..] = parts.as_slice() else {
            return Err(bad("expected version-traceid-spanid-flags"));
        };
        if !hex(version, 2) || *version == "ff" || (*version == "00" && !rest.is_empty()) {
            return Err(bad("bad version"));
        }
        if !hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
            return Err(bad("bad trace id"));
        }
        if !hex(span, 16) || span.bytes().all(|b| b == b'0') {
            return Err(bad("bad parent id"));
        }
        if !hex(flags, 2) {
            return Err(bad("bad flags"));
        }
        Ok(Self {
            traceparent: traceparent.to_owned(),
            tracestate: tracestate
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned),
        })
    }

    /// The trace id: 32 lowercase hex digits.
    #[must_use]
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// The id of the span this context names: 16 lowercase hex digits.
    #[must_use]
    pub fn span_id(&self) -> &str {
        self.traceparent.get(36..52).unwrap_or_default()
    }

    /// Whether the sampled flag is set.
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.traceparent
            .get(53..55)
            .and_then(|f| u8::from_str_radix(f, 16).ok())
            .is_some_and(|f| f & 1 == 1)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent)
    }
}

/// Connects `tracing` spans with the W3C trace context. The core calls it;
/// an OpenTelemetry integration implements it (`orchestrix-worker` does,
/// with `tracing-opentelemetry`), so that the core needs no OpenTelemetry.
///
/// Implementations are called on hot paths (every command and every handled
/// event) and must not block.
pub trait TracePropagator: Send + Sync + fmt::Debug + 'static {
    /// The context of `span`, if it belongs to a trace (`None` for a disabled
    /// span). May start the span's clock.
    fn inject(&self, span: &tracing::Span) -> Option<TraceContext>;

    /// Makes the span that `parent` names the parent of `span`. Only works
    /// before `span` is first entered; otherwise does nothing.
    fn set_parent(&self, span: &tracing::Span, parent: &TraceContext);

    /// Links `span` to the span that `to` names (for a span that works on
    /// many events, each with its own trace).
    fn add_link(&self, span: &tracing::Span, to: &TraceContext);
}

static PROPAGATOR: OnceLock<Arc<dyn TracePropagator>> = OnceLock::new();

/// Installs the process's propagator, once (like a global `tracing`
/// subscriber). Returns `false`, and changes nothing, when one was installed
/// already.
pub fn install_propagator(propagator: Arc<dyn TracePropagator>) -> bool {
    PROPAGATOR.set(propagator).is_ok()
}

/// The installed propagator, if any.
#[must_use]
pub fn propagator() -> Option<&'static Arc<dyn TracePropagator>> {
    PROPAGATOR.get()
}

/// The trace context of `span`, if a propagator is installed and the span
/// belongs to a trace.
#[must_use]
pub fn inject(span: &tracing::Span) -> Option<TraceContext> {
    if span.is_disabled() {
        return None;
    }
    propagator().and_then(|p| p.inject(span))
}

/// Makes the span that `traceparent`/`tracestate` name the parent of `span`,
/// if a propagator is installed and `traceparent` is well-formed (a malformed
/// one is ignored: telemetry never fails the work). Call before `span` is
/// first entered.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some((p, parent)) = resolve(span, traceparent, tracestate) {
        p.set_parent(span, &parent);
    }
}

/// Links `span` to the span that `traceparent`/`tracestate` name, as
/// [`set_parent`] does for a parent.
pub fn add_link(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some((p, to)) = resolve(span, traceparent, tracestate) {
        p.add_link(span, &to);
    }
}

fn resolve(
    span: &tracing::Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<(&'static Arc<dyn TracePropagator>, TraceContext)> {
    if span.is_disabled() {
        return None;
    }
    let p = propagator()?;
    match TraceContext::parse(traceparent?, tracestate) {
        Ok(context) => Some((p, context)),
        Err(e) => {
            tracing::debug!(error = %e, "ignoring a malformed trace context");
            None
        }
    }
}

/// Most traces one span links to.
const MAX_LINKS: usize = 32;

/// Links a span that works on many events (a batch handler, a publish) to
/// each distinct trace context they carry, at most 32.
pub fn link_events(span: &tracing::Span, events: &[RecordedEvent]) {
    if propagator().is_none() || span.is_disabled() {
        return;
    }
    let mut seen = HashSet::new();
    for event in events {
        let metadata = &event.record.metadata;
        let Some(traceparent) = metadata.traceparent.as_deref() else {
            continue;
        };
        if seen.len() >= MAX_LINKS {
            break;
        }
        if seen.insert(traceparent) {
            add_link(span, Some(traceparent), metadata.tracestate.as_deref());
        }
    }
}
