//! The console's pages and actions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use orchestrix::catalog::Catalog;
use uuid::Uuid;

use super::Console;
use super::html::{action, enc, esc, json_block, link, page, table};
use crate::error::Error;
use crate::inspect::{DeadLetterFilter, DeadLetterView, EventView};

type Shared = State<Arc<Console>>;

/// Events per page of a stream or of the live view's first rows.
const ROWS: usize = 100;

/// Security headers of every page: no framing, nothing but this origin
/// and the inline assets.
fn html(body: String) -> Response {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(body),
    )
        .into_response()
}

/// A failed page: 404 for what does not exist, 400 for bad input, 500
/// otherwise, as a page.
pub(super) struct PageError(Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<orchestrix::Error> for PageError {
    fn from(e: orchestrix::Error) -> Self {
        Self(Error::Store(e))
    }
}

fn status_of(e: &Error) -> StatusCode {
    if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else if e.is_invalid_input() {
        StatusCode::BAD_REQUEST
    } else if matches!(e, Error::NeedsApplication(_)) {
        StatusCode::CONFLICT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title>\
             <link rel=\"icon\" href=\"data:,\"></head><body><h1>{status}</h1><p>{}</p></body></html>",
            esc(&self.0.to_string())
        );
        (status, Html(body)).into_response()
    }
}

pub(super) type PageResult = Result<Response, PageError>;

fn num(n: impl std::fmt::Display) -> String {
    format!("<span class=\"num\">{n}</span>")
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    esc(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

pub(super) async fn overview(State(c): Shared) -> PageResult {
    let inspector = c.ops.inspector();
    let head = inspector.head().await?;
    let categories = inspector.categories().await?;
    let letters = inspector.dead_letters(&DeadLetterFilter::default()).await?;
    let sagas = inspector.sagas(None).await?;
    let projections = inspector.projections(&c.ops.consumer_names()).await?;
    let b = &c.base;
    let rows = vec![
        vec![link(&format!("{b}/live"), "head position"), num(head)],
        vec![
            link(&format!("{b}/streams"), "categories"),
            num(categories.len()),
        ],
        vec![
            link(&format!("{b}/streams"), "streams"),
            num(categories.iter().map(|c| c.streams).sum::<u64>()),
        ],
        vec![
            link(&format!("{b}/projections"), "consumers"),
            num(projections.len()),
        ],
        vec![
            link(&format!("{b}/dlq"), "dead letters"),
            num(letters.len()),
        ],
        vec![
            link(&format!("{b}/sagas"), "saga instances"),
            num(sagas.len()),
        ],
    ];
    let mode = match (&c.token, c.ops.app()) {
        (Some(_), Some(_)) => "Actions (rebuild, replay) are enabled with the token.",
        (None, _) => "Read-only: start the console with a token to enable actions.",
        (Some(_), None) => {
            "Actions need the application's code: run the console from its own binary or worker."
        }
    };
    let body = format!(
        "<p id=\"mode\">{}</p>{}",
        esc(mode),
        table("overview", &["what", "count"], &rows)
    );
    Ok(html(page(b, "Overview", &body)))
}

#[derive(serde::Deserialize)]
pub(super) struct CategoryQuery {
    category: Option<String>,
}

pub(super) async fn streams(State(c): Shared, Query(q): Query<CategoryQuery>) -> PageResult {
    let inspector = c.ops.inspector();
    let b = &c.base;
    let Some(category) = q.category.filter(|s| !s.is_empty()) else {
        let rows: Vec<Vec<String>> = inspector
            .categories()
            .await?
            .into_iter()
            .map(|cat| {
                vec![
                    link(
                        &format!("{b}/streams?category={}", enc(&cat.category)),
                        &cat.category,
                    ),
                    num(cat.streams),
                    num(cat.events),
                ]
            })
            .collect();
        let body = table("categories", &["category", "streams", "events"], &rows);
        return Ok(html(page(b, "Categories", &body)));
    };
    let rows: Vec<Vec<String>> = inspector
        .streams(Some(&category))
        .await?
        .into_iter()
        .map(|s| {
            vec![
                link(&format!("{b}/stream/{}", enc(&s.stream)), &s.stream),
                num(s.events),
                num(s.revision),
                num(s.last_position),
                time(s.last_time),
            ]
        })
        .collect();
    let body = format!(
        "<p>{}</p>{}",
        link(&format!("{b}/streams"), "← all categories"),
        table(
            "streams",
            &[
                "stream",
                "events",
                "revision",
                "last position",
                "last event"
            ],
            &rows
        )
    );
    Ok(html(page(b, &format!("Streams of {category}"), &body)))
}

fn event_rows(base: &str, events: &[EventView]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| {
            vec![
                num(e.position),
                link(&format!("{base}/stream/{}", enc(&e.stream)), &e.stream),
                num(e.revision),
                link(&format!("{base}/event/{}", e.id), &e.event_type),
                time(e.time),
            ]
        })
        .collect()
}

#[derive(serde::Deserialize)]
pub(super) struct FromQuery {
    from: Option<u64>,
}

pub(super) async fn stream(
    State(c): Shared,
    Path(stream): Path<String>,
    Query(q): Query<FromQuery>,
) -> PageResult {
    let b = &c.base;
    let from = q.from.unwrap_or(0);
    let events = c.ops.inspector().read_stream(&stream, from, ROWS).await?;
    if events.is_empty() && from == 0 {
        return Err(Error::NotFound(format!("stream `{stream}`")).into());
    }
    let mut body = table(
        "events",
        &["position", "stream", "revision", "type", "time"],
        &event_rows(b, &events),
    );
    if events.len() == ROWS {
        let next = from + u64::try_from(ROWS).unwrap_or(u64::MAX);
        body.push_str(&link(
            &format!("{b}/stream/{}?from={next}", enc(&stream)),
            "next page →",
        ));
    }
    Ok(html(page(b, &format!("Stream {stream}"), &body)))
}

pub(super) async fn event(State(c): Shared, Path(id): Path<String>) -> PageResult {
    let b = &c.base;
    let inspector = c.ops.inspector();
    let found = match (id.strip_prefix('@'), Uuid::parse_str(&id)) {
        (Some(position), _) => {
            let position = position
                .parse()
                .map_err(|_| Error::InvalidInput(format!("`{id}` is not @POSITION")))?;
            inspector.event_at(position).await?
        }
        (None, Ok(uuid)) => inspector.event(uuid).await?,
        (None, Err(_)) => {
            return Err(Error::InvalidInput(format!("`{id}` is not an event id")).into());
        }
    };
    let e = found.ok_or_else(|| Error::NotFound(format!("event {id}")))?;
    let rows: Vec<Vec<String>> = e
        .attributes
        .iter()
        .map(|(k, v)| vec![format!("<code>{}</code>", esc(k)), esc(v)])
        .collect();
    let body = format!(
        "<p>{} · revision {} · position {}</p><h2>CloudEvents attributes</h2>{}<h2>Payload \
         (schema version {})</h2>{}",
        link(&format!("{b}/stream/{}", enc(&e.stream)), &e.stream),
        e.revision,
        e.position,
        table("attributes", &["attribute", "value"], &rows),
        e.schema_version,
        json_block("payload", &e.data)
    );
    Ok(html(page(b, &e.event_type, &body)))
}

pub(super) async fn live(State(c): Shared) -> PageResult {
    let b = &c.base;
    let events = c.ops.inspector().last(50, None).await?;
    let after = events.iter().map(|e| e.position).max().unwrap_or(0);
    let mut newest_first = events;
    newest_first.reverse();
    let rows = event_rows(b, &newest_first);
    let mut body = format!(
        "<p>The all-stream, newest first; new events appear as they are appended (polled \
         every second). Head: <span id=\"live-count\">{after}</span>.</p>"
    );
    body.push_str(&format!(
        "<table id=\"live\" data-after=\"{after}\"><thead><tr><th>position</th><th>stream</th>\
         <th>revision</th><th>type</th><th>time</th></tr></thead><tbody>"
    ));
    for row in rows {
        body.push_str("<tr>");
        for cell in row {
            body.push_str(&format!("<td>{cell}</td>"));
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    Ok(html(page(b, "Live", &body)))
}

#[derive(serde::Deserialize)]
pub(super) struct AfterQuery {
    after: Option<u64>,
    limit: Option<usize>,
    category: Option<String>,
}

pub(super) async fn api_events(
    State(c): Shared,
    Query(q): Query<AfterQuery>,
) -> Result<Json<Vec<EventView>>, PageError> {
    let limit = q.limit.unwrap_or(ROWS).clamp(1, 1000);
    let events = c
        .ops
        .inspector()
        .read_all(q.after.unwrap_or(0), limit, q.category.as_deref())
        .await?;
    Ok(Json(events))
}

pub(super) async fn projections(State(c): Shared) -> PageResult {
    let b = &c.base;
    let projections = c.ops.projection_names();
    let statuses = c
        .ops
        .inspector()
        .projections(&c.ops.consumer_names())
        .await?;
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            let lag = if s.lag_events > 0 {
                format!("<span class=\"lag\">{}</span>", s.lag_events)
            } else {
                "0".to_owned()
            };
            let button = if projections.contains(&s.name) {
                action(
                    &format!("{b}/projections/{}/rebuild", enc(&s.name)),
                    "rebuild",
                    None,
                )
            } else {
                String::new()
            };
            vec![
                esc(&s.name),
                s.checkpoint
                    .map_or_else(|| "—".to_owned(), |p| p.to_string()),
                num(s.head),
                lag,
                format!("{:.1}", s.lag_seconds),
                button,
            ]
        })
        .collect();
    let mut body = table(
        "projections",
        &[
            "consumer",
            "checkpoint",
            "head",
            "lag (events)",
            "lag (s)",
            "",
        ],
        &rows,
    );
    if c.ops.app().is_none() {
        body.push_str(
            "<p class=\"empty\">Only consumers of an application are listed: run the console \
             from the application's own binary or worker.</p>",
        );
    }
    Ok(html(page(b, "Projections", &body)))
}

/// The consumers, partition by partition: from the running worker's
/// runtime when the console has a [`super::ConsumerSource`], else the store
/// checkpoints of the application's consumers.
async fn consumer_views(c: &Console) -> Result<(Vec<super::ConsumerView>, bool), PageError> {
    if let Some(source) = &c.consumers {
        let views = source()
            .await
            .map_err(|e| Error::Store(orchestrix::Error::invalid("consumers", e)))?;
        return Ok((views, true));
    }
    let statuses = c
        .ops
        .inspector()
        .projections(&c.ops.consumer_names())
        .await?;
    let views = statuses
        .into_iter()
        .map(|s| super::ConsumerView {
            consumer: s.name,
            group: String::new(),
            partition: None,
            owner: None,
            position: s.checkpoint,
            lag_events: s.lag_events,
            lag_seconds: Some(s.lag_seconds),
        })
        .collect();
    Ok((views, false))
}

pub(super) async fn consumers(State(c): Shared) -> PageResult {
    let b = &c.base;
    let (views, live) = consumer_views(&c).await?;
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let lag = if v.lag_events > 0 {
                format!("<span class=\"lag\">{}</span>", v.lag_events)
            } else {
                "0".to_owned()
            };
            vec![
                esc(&v.consumer),
                esc(&v.group),
                v.partition
                    .map_or_else(|| "all".to_owned(), |p| p.to_string()),
                v.owner.as_deref().map_or_else(|| "—".to_owned(), esc),
                v.position.map_or_else(|| "—".to_owned(), num),
                lag,
                v.lag_seconds
                    .map_or_else(|| "—".to_owned(), |s| format!("{s:.1}")),
            ]
        })
        .collect();
    let mut body = table(
        "consumers",
        &[
            "consumer",
            "group",
            "partition",
            "owner",
            "position",
            "lag (events)",
            "lag (s)",
        ],
        &rows,
    );
    if !live {
        body.push_str(
            "<p class=\"empty\">Store checkpoints only: the console served by a worker \
             shows each partition with its owner and lag.</p>",
        );
    }
    Ok(html(page(b, "Consumers", &body)))
}

pub(super) async fn api_consumers(State(c): Shared) -> PageResult {
    let (views, _) = consumer_views(&c).await?;
    Ok(Json(views).into_response())
}

/// An action's answer: `{"message": ...}` plus details.
fn answer(status: StatusCode, message: String, details: serde_json::Value) -> Response {
    let mut body = serde_json::json!({ "message": message });
    if let (Some(map), serde_json::Value::Object(more)) = (body.as_object_mut(), details) {
        map.extend(more);
    }
    (status, Json(body)).into_response()
}

fn forbidden(c: &Console) -> Response {
    let message = if c.token.is_some() {
        "a valid bearer token is needed for this action".to_owned()
    } else {
        "the console is read-only: start it with a token (--token or \
         ORCHESTRIX_CONSOLE_TOKEN) to enable actions"
            .to_owned()
    };
    answer(StatusCode::FORBIDDEN, message, serde_json::Value::Null)
}

fn failed(e: &Error) -> Response {
    answer(status_of(e), e.to_string(), serde_json::Value::Null)
}

fn auth_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

pub(super) async fn rebuild(
    State(c): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if !c.authorized(auth_header(&headers)) {
        return forbidden(&c);
    }
    match c
        .ops
        .rebuild(&name, None, false, Duration::from_secs(1), |_| {})
        .await
    {
        Ok(report) => answer(
            StatusCode::OK,
            format!(
                "rebuilt `{}` up to position {} in {} ms",
                report.projection, report.head, report.millis
            ),
            serde_json::to_value(&report).unwrap_or_default(),
        ),
        Err(e) => failed(&e),
    }
}

pub(super) async fn dead_letters(
    State(c): Shared,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let b = &c.base;
    let filter = DeadLetterFilter {
        consumer: q.get("consumer").filter(|s| !s.is_empty()).cloned(),
        reason: q.get("reason").filter(|s| !s.is_empty()).cloned(),
        ..DeadLetterFilter::default()
    };
    let letters = c.ops.inspector().dead_letters(&filter).await?;
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                link(&format!("{b}/dlq/{}", l.id), &l.id.to_string()),
                esc(&l.consumer),
                esc(l.event_type.as_deref().unwrap_or("—")),
                esc(l.stream_id.as_deref().unwrap_or("—")),
                esc(&l.reason),
                num(l.attempts),
                time(l.failed_at),
                action(&format!("{b}/dlq/{}/replay", l.id), "replay", None),
            ]
        })
        .collect();
    let mut body = format!(
        "<p id=\"dead-letter-queue\">Dead letters in {}.</p>",
        esc(&c.ops.inspector().dead_letter_queue().describe())
    );
    body += &table(
        "dead-letters",
        &[
            "id",
            "consumer",
            "event type",
            "stream",
            "reason",
            "attempts",
            "failed at",
            "",
        ],
        &rows,
    );
    Ok(html(page(b, "Dead letters", &body)))
}

fn parse_id(id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::InvalidInput(format!("`{id}` is not a dead letter id")))
}

pub(super) async fn dead_letter(State(c): Shared, Path(id): Path<String>) -> PageResult {
    let b = &c.base;
    let uuid = parse_id(&id)?;
    let letter = c
        .ops
        .inspector()
        .dead_letter(uuid)
        .await?
        .ok_or_else(|| Error::NotFound(format!("dead letter {id}")))?;
    let view = DeadLetterView::of(letter);
    let l = &view.letter;
    let fields = vec![
        vec!["consumer".to_owned(), esc(&l.consumer)],
        vec![
            "event".to_owned(),
            l.event_id.map_or_else(
                || "—".to_owned(),
                |e| link(&format!("{b}/event/{e}"), &e.to_string()),
            ),
        ],
        vec![
            "event type".to_owned(),
            esc(l.event_type.as_deref().unwrap_or("—")),
        ],
        vec![
            "stream".to_owned(),
            esc(l.stream_id.as_deref().unwrap_or("—")),
        ],
        vec![
            "position".to_owned(),
            l.position.map_or_else(|| "—".to_owned(), |p| p.to_string()),
        ],
        vec!["reason".to_owned(), esc(&l.reason)],
        vec!["error kind".to_owned(), esc(&l.error_kind)],
        vec!["attempts".to_owned(), num(l.attempts)],
        vec!["failed at".to_owned(), time(l.failed_at)],
    ];
    let headers: Vec<Vec<String>> = l
        .headers
        .iter()
        .map(|(k, v)| vec![format!("<code>{}</code>", esc(k)), esc(v)])
        .collect();
    let body = format!(
        "<p>{}</p>{}<h2>Headers</h2>{}<h2>Payload</h2>{}",
        action(
            &format!("{b}/dlq/{id}/replay"),
            "replay",
            Some(&format!("{b}/dlq"))
        ),
        table("letter", &["field", "value"], &fields),
        table("headers", &["header", "value"], &headers),
        json_block("payload", &view.data)
    );
    Ok(html(page(b, &format!("Dead letter {id}"), &body)))
}

pub(super) async fn replay(
    State(c): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !c.authorized(auth_header(&headers)) {
        return forbidden(&c);
    }
    let uuid = match parse_id(&id) {
        Ok(uuid) => uuid,
        Err(e) => return failed(&e),
    };
    match c
        .ops
        .replay(&[uuid], &DeadLetterFilter::default(), false, |_| {})
        .await
    {
        Ok(outcomes) => match outcomes.into_iter().next() {
            Some(o) if o.error.is_none() => answer(
                StatusCode::OK,
                format!("dead letter {} replayed through `{}`", o.id, o.consumer),
                serde_json::to_value(&o).unwrap_or_default(),
            ),
            Some(o) => answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "dead letter {} failed again in `{}`: {}",
                    o.id,
                    o.consumer,
                    o.error.as_deref().unwrap_or("")
                ),
                serde_json::to_value(&o).unwrap_or_default(),
            ),
            None => failed(&Error::NotFound(format!("dead letter {id}"))),
        },
        Err(e) => failed(&e),
    }
}

#[derive(serde::Deserialize)]
pub(super) struct StatusQuery {
    status: Option<String>,
}

pub(super) async fn sagas(State(c): Shared, Query(q): Query<StatusQuery>) -> PageResult {
    let b = &c.base;
    let status = q.status.filter(|s| !s.is_empty());
    let rows: Vec<Vec<String>> = c
        .ops
        .inspector()
        .sagas(status.as_deref())
        .await?
        .into_iter()
        .map(|s| {
            vec![
                esc(&s.saga),
                link(
                    &format!("{b}/sagas/{}/{}", enc(&s.saga), enc(&s.correlation)),
                    &s.correlation,
                ),
                esc(&s.status),
                esc(s.reason.as_deref().unwrap_or("")),
                time(s.updated),
            ]
        })
        .collect();
    let body = table(
        "sagas",
        &["saga", "correlation", "status", "reason", "updated"],
        &rows,
    );
    Ok(html(page(b, "Sagas", &body)))
}

pub(super) async fn saga(
    State(c): Shared,
    Path((saga, correlation)): Path<(String, String)>,
) -> PageResult {
    let b = &c.base;
    let id = format!("{saga}/{correlation}");
    let detail = c
        .ops
        .inspector()
        .saga(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("saga instance {id}")))?;
    let mut timeline = String::from("<ol class=\"timeline\" id=\"timeline\">");
    for entry in &detail.trail {
        let class = if detail.steps.iter().any(|s| s.revision == entry.revision) {
            "step"
        } else if entry
            .event_type
            .starts_with(orchestrix::saga::ENGINE_EVENT_PREFIX)
        {
            "status"
        } else {
            "own"
        };
        let data = serde_json::to_string(&entry.data).unwrap_or_default();
        timeline.push_str(&format!(
            "<li class=\"{class}\"><strong>{}</strong> · {} · revision {}<br><code>{}</code></li>",
            esc(&entry.event_type),
            time(entry.time),
            entry.revision,
            esc(&data)
        ));
    }
    timeline.push_str("</ol>");
    let timeouts: Vec<Vec<String>> = detail
        .pending_timeouts
        .iter()
        .map(|t| {
            vec![
                esc(&t.name),
                esc(&t.timer_id),
                time(t.due_at),
                if t.durable { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let s = &detail.summary;
    let body = format!(
        "<p>Status <strong id=\"saga-status\">{}</strong>{} · stream {} · updated {}</p>\
         <h2>Pending timeouts</h2>{}<h2>Timeline</h2>{}",
        esc(&s.status),
        s.reason
            .as_deref()
            .map_or_else(String::new, |r| format!(" ({})", esc(r))),
        link(
            &format!("{b}/stream/{}", enc(&detail.stream)),
            &detail.stream
        ),
        time(s.updated),
        table(
            "timeouts",
            &["timeout", "timer", "due at", "durable"],
            &timeouts
        ),
        timeline
    );
    Ok(html(page(b, &format!("Saga {id}"), &body)))
}

pub(super) async fn schemas(State(c): Shared) -> PageResult {
    let b = &c.base;
    let Some(source) = &c.schemas else {
        let body = "<p class=\"empty\">No schema registry: start the console with \
                    <code>--registry URL</code> to list subjects and versions.</p>";
        return Ok(html(page(b, "Schemas", body)));
    };
    let subjects = source()
        .await
        .map_err(|e| Error::Store(orchestrix::Error::invalid("schema registry", e)))?;
    let rows: Vec<Vec<String>> = subjects
        .iter()
        .map(|s| {
            let versions: Vec<String> = s
                .versions
                .iter()
                .map(|v| format!("v{} (id {})", v.version, v.id))
                .collect();
            let latest = s
                .versions
                .last()
                .map(|v| {
                    format!(
                        "<details><summary>schema</summary><pre>{}</pre></details>",
                        esc(&v.schema)
                    )
                })
                .unwrap_or_default();
            vec![esc(&s.subject), esc(&versions.join(", ")), latest]
        })
        .collect();
    let body = table("subjects", &["subject", "versions", "latest"], &rows);
    Ok(html(page(b, "Schemas", &body)))
}

pub(super) async fn catalog(State(c): Shared) -> PageResult {
    let b = &c.base;
    let Some(app) = c.ops.app() else {
        let body = "<p class=\"empty\">The catalog lists an application's registrations: run \
                    the console from the application's own binary or worker.</p>";
        return Ok(html(page(b, "Catalog", body)));
    };
    let catalog = Catalog::of(app);
    let body = format!(
        "<p>Markdown with a Mermaid diagram, as <code>orchestrix catalog</code> prints it.</p>\
         <pre id=\"catalog\">{}</pre>",
        esc(&catalog.to_markdown())
    );
    Ok(html(page(b, "Catalog", &body)))
}
