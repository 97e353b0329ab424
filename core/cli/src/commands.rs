//! The store commands: streams, events, projections, dlq, sagas, registry.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use futures::StreamExt as _;
use orchestrix::store::Filter;
use orchestrix_ops::Operations;
use orchestrix_ops::inspect::{DeadLetterFilter, DeadLetterView, EventView};
use orchestrix_ops::operate::Progress;
use uuid::Uuid;

use crate::output::{Out, cut, time};
use crate::{Failure, Urls, Usage};

type Res = Result<(), Failure>;

/// `streams` subcommands.
#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// List streams (scans the all-stream).
    Ls {
        /// Only streams of this category.
        #[arg(long)]
        category: Option<String>,
        /// List categories with their stream and event counts instead.
        #[arg(long, conflicts_with = "category")]
        categories: bool,
    },
    /// Read a stream's events.
    Read {
        /// The stream id, `{category}-{id}`.
        stream: String,
        /// The first revision.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The last events of the all-stream; with --follow, new events as they come.
    Tail {
        /// Only events of this stream category.
        #[arg(long)]
        category: Option<String>,
        /// Keep printing new events until interrupted (or --limit events).
        #[arg(long)]
        follow: bool,
        /// Start after this global position instead of near the head.
        #[arg(long)]
        after: Option<u64>,
        /// How many events: the last N; with --follow, stop after N new ones.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One event with its CloudEvents attributes and payload.
    Show {
        /// The event id (UUID), or `@POSITION` for a global position.
        id: String,
    },
}

/// `projections` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Checkpoint, head and lag of each projection (the application's, and
    /// any named here).
    Ls {
        /// Checkpoint names to show as well (the generic command knows none by itself).
        names: Vec<String>,
    },
    /// Rebuild a projection from the start, with progress.
    Rebuild {
        /// The projection.
        name: String,
        /// Build this new version side by side instead of rebuilding in place.
        #[arg(long)]
        into: Option<String>,
        /// With --into: switch to the new version once it has caught up.
        #[arg(long, requires = "into")]
        switch: bool,
    },
}

/// Dead-letter filters.
#[derive(Debug, Args, Clone)]
pub struct DlqFilter {
    /// Only this consumer's letters.
    #[arg(long)]
    consumer: Option<String>,
    /// Only letters whose reason or error kind contains this.
    #[arg(long)]
    reason: Option<String>,
    /// Only letters that failed since: an RFC 3339 time or an age like 30m, 2h, 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only letters that failed before: an RFC 3339 time or an age like 30m, 2h, 7d.
    #[arg(long)]
    until: Option<String>,
    /// At most this many letters (oldest first).
    #[arg(long)]
    limit: Option<usize>,
}

impl DlqFilter {
    fn build(&self) -> Result<DeadLetterFilter, Usage> {
        Ok(DeadLetterFilter {
            consumer: self.consumer.clone(),
            reason: self.reason.clone(),
            since: self
                .since
                .as_deref()
                .map(|t| parse_time("--since", t))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|t| parse_time("--until", t))
                .transpose()?,
            limit: self.limit,
        })
    }

    fn is_empty(&self) -> bool {
        self.consumer.is_none()
            && self.reason.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

/// `dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters.
    Ls {
        #[command(flatten)]
        filter: DlqFilter,
    },
    /// One dead letter with its headers and payload.
    Show {
        /// The letter's id.
        id: Uuid,
    },
    /// Replay letters through their consumer's handler (deleting each that succeeds).
    Replay {
        /// Letter ids; without ids, every letter the filters select.
        ids: Vec<Uuid>,
        #[command(flatten)]
        filter: DlqFilter,
        /// Only list what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// Without ids or filters: replay every letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete letters without replaying them.
    Delete {
        /// Letter ids; without ids, every letter the filters select.
        ids: Vec<Uuid>,
        #[command(flatten)]
        filter: DlqFilter,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Without ids or filters: delete every letter.
        #[arg(long)]
        all: bool,
    },
}

/// `sagas` subcommands.
#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// List saga instances.
    Ls {
        /// Only instances in this status: running, completed, compensating, compensated, failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// One instance: status, steps, pending timeouts, audit trail.
    Show {
        /// `NAME/CORRELATION` or the saga stream id `saga_NAME-CORRELATION`.
        id: String,
    },
}

/// `registry` subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve a Confluent-compatible schema registry (REST) plus /healthz.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// Where schemas are kept: memory://, sqlite://PATH, postgres://...
        #[arg(long, env = "ORCHESTRIX_REGISTRY_STORAGE")]
        storage: String,
    },
}

fn parse_time(flag: &str, text: &str) -> Result<DateTime<Utc>, Usage> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let n: i64 = number.parse().map_err(|_| {
        Usage(format!(
            "{flag} `{text}`: give an RFC 3339 time or an age like 30m, 2h, 7d"
        ))
    })?;
    let age = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(Usage(format!("{flag} `{text}`: the unit is s, m, h or d"))),
    };
    Ok(Utc::now() - age)
}

fn event_row(e: &EventView) -> Vec<String> {
    vec![
        e.position.to_string(),
        e.stream.clone(),
        e.revision.to_string(),
        e.event_type.clone(),
        format!("v{}", e.schema_version),
        time(&e.time),
        e.id.to_string(),
    ]
}

const EVENT_HEADERS: [&str; 7] = ["POSITION", "STREAM", "REV", "TYPE", "SCHEMA", "TIME", "ID"];

fn print_event(out: &mut Out<'_>, e: &EventView) -> anyhow::Result<()> {
    if out.json {
        return out.json(e);
    }
    out.line(format!("event {}", e.id))?;
    out.line(format!(
        "  stream    {} @ revision {}",
        e.stream, e.revision
    ))?;
    out.line(format!("  position  {}", e.position))?;
    out.line(format!(
        "  type      {} (schema v{})",
        e.event_type, e.schema_version
    ))?;
    out.line(format!("  time      {}", time(&e.time)))?;
    out.line("  attributes")?;
    for (k, v) in &e.attributes {
        out.line(format!("    {k}: {v}"))?;
    }
    out.line("  data")?;
    let data = serde_json::to_string_pretty(&e.data)?;
    for l in data.lines() {
        out.line(format!("    {l}"))?;
    }
    Ok(())
}

pub(crate) async fn streams(cmd: StreamsCommand, ops: &Operations, out: &mut Out<'_>) -> Res {
    let inspector = ops.inspector();
    match cmd {
        StreamsCommand::Ls {
            categories: true, ..
        } => {
            let cats = inspector.categories().await?;
            if out.json {
                return Ok(out.json(&cats)?);
            }
            let rows: Vec<Vec<String>> = cats
                .iter()
                .map(|c| {
                    vec![
                        c.category.clone(),
                        c.streams.to_string(),
                        c.events.to_string(),
                    ]
                })
                .collect();
            out.table(&["CATEGORY", "STREAMS", "EVENTS"], &rows)?;
        }
        StreamsCommand::Ls { category, .. } => {
            let streams = inspector.streams(category.as_deref()).await?;
            if out.json {
                return Ok(out.json(&streams)?);
            }
            let rows: Vec<Vec<String>> = streams
                .iter()
                .map(|s| {
                    vec![
                        s.stream.clone(),
                        s.category.clone(),
                        s.events.to_string(),
                        s.revision.to_string(),
                        s.last_position.to_string(),
                        time(&s.last_time),
                    ]
                })
                .collect();
            out.table(
                &[
                    "STREAM",
                    "CATEGORY",
                    "EVENTS",
                    "REVISION",
                    "LAST POSITION",
                    "LAST EVENT",
                ],
                &rows,
            )?;
            out.line(format!("{} stream(s)", streams.len()))?;
        }
        StreamsCommand::Read {
            stream,
            from,
            limit,
        } => {
            let events = inspector.read_stream(&stream, from, limit).await?;
            if events.is_empty() && from == 0 {
                return Err(orchestrix_ops::Error::NotFound(format!("stream `{stream}`")).into());
            }
            if out.json {
                return Ok(out.json(&events)?);
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        e.revision.to_string(),
                        e.position.to_string(),
                        e.event_type.clone(),
                        format!("v{}", e.schema_version),
                        time(&e.time),
                        cut(&e.data.to_string(), 60),
                    ]
                })
                .collect();
            out.table(
                &["REV", "POSITION", "TYPE", "SCHEMA", "TIME", "DATA"],
                &rows,
            )?;
        }
    }
    Ok(())
}

pub(crate) async fn events(cmd: EventsCommand, ops: &Operations, out: &mut Out<'_>) -> Res {
    let inspector = ops.inspector();
    match cmd {
        EventsCommand::Show { id } => {
            let found = match id.strip_prefix('@') {
                Some(position) => {
                    let position: u64 = position
                        .parse()
                        .map_err(|_| Usage(format!("`{id}`: @ takes a global position")))?;
                    inspector.event_at(position).await?
                }
                None => {
                    let uuid: Uuid = id.parse().map_err(|_| {
                        Usage(format!("`{id}` is not an event id (UUID) or @POSITION"))
                    })?;
                    inspector.event(uuid).await?
                }
            };
            let event =
                found.ok_or_else(|| orchestrix_ops::Error::NotFound(format!("event {id}")))?;
            print_event(out, &event)?;
        }
        EventsCommand::Tail {
            category,
            follow: false,
            after,
            limit,
        } => {
            let limit = limit.unwrap_or(20);
            let events = match after {
                Some(after) => {
                    inspector
                        .read_all(after, limit, category.as_deref())
                        .await?
                }
                None => inspector.last(limit, category.as_deref()).await?,
            };
            if out.json {
                return Ok(out.json(&events)?);
            }
            let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
            out.table(&EVENT_HEADERS, &rows)?;
        }
        EventsCommand::Tail {
            category,
            follow: true,
            after,
            limit,
        } => {
            let store = inspector.store().clone();
            let after = match after {
                Some(a) => a,
                None => store.head_position().await.map_err(anyhow::Error::from)?,
            };
            let filter = category.map_or_else(Filter::all, |c| Filter::all().categories([c]));
            let mut live = Box::pin(store.subscribe(after, filter));
            if !out.json {
                out.line(format!(
                    "following the all-stream after position {after} (Ctrl-C stops)"
                ))?;
            }
            let mut seen = 0usize;
            while limit.is_none_or(|l| seen < l) {
                let next = tokio::select! {
                    next = live.next() => next,
                    _ = tokio::signal::ctrl_c() => None,
                };
                let Some(event) = next else { break };
                let view = EventView::of(&event.map_err(anyhow::Error::from)?);
                if out.json {
                    out.json_line(&view)?;
                } else {
                    out.line(format!(
                        "{}  {}@{}  {}  v{}  {}  {}",
                        view.position,
                        view.stream,
                        view.revision,
                        view.event_type,
                        view.schema_version,
                        time(&view.time),
                        cut(&view.data.to_string(), 80)
                    ))?;
                    out.w.flush()?;
                }
                seen += 1;
            }
        }
    }
    Ok(())
}

/// Reports progress: a bar on a terminal, `VERB N/M UNIT` lines otherwise.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last: Option<Progress>,
    verb: &'static str,
    unit: &'static str,
}

impl Reporter {
    fn new(tty: bool, json: bool, verb: &'static str, unit: &'static str) -> Self {
        let bar = (tty && !json).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(verb);
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last: None,
            verb,
            unit,
        }
    }

    fn report(&mut self, p: Progress, out: &mut Out<'_>) {
        if self.last == Some(p) {
            return;
        }
        self.last = Some(p);
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
            None if out.json => {}
            None => {
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                #[allow(clippy::cast_precision_loss)]
                let rate = p.done as f64 / secs;
                #[allow(clippy::cast_precision_loss)]
                let eta = if rate > 0.0 {
                    p.total.saturating_sub(p.done) as f64 / rate
                } else {
                    0.0
                };
                let _ = out.line(format!(
                    "{} {}/{} {} ({rate:.0}/s, ETA {eta:.0}s)",
                    self.verb, p.done, p.total, self.unit
                ));
                let _ = out.w.flush();
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

pub(crate) async fn projections(
    cmd: ProjectionsCommand,
    ops: &Operations,
    out: &mut Out<'_>,
) -> Res {
    match cmd {
        ProjectionsCommand::Ls { names } => {
            let mut all: Vec<String> = ops.consumer_names();
            for n in names {
                if !all.contains(&n) {
                    all.push(n);
                }
            }
            let statuses = ops.inspector().projections(&all).await?;
            if out.json {
                return Ok(out.json(&statuses)?);
            }
            if statuses.is_empty() {
                out.line("no projections known: name them (`projections ls NAME...`) or run the application's own command")?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = statuses
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.checkpoint
                            .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                        s.head.to_string(),
                        s.lag_events.to_string(),
                        format!("{:.1}", s.lag_seconds),
                    ]
                })
                .collect();
            out.table(
                &["NAME", "CHECKPOINT", "HEAD", "LAG EVENTS", "LAG SECONDS"],
                &rows,
            )?;
        }
        ProjectionsCommand::Rebuild { name, into, switch } => {
            let mut reporter = Reporter::new(out.tty, out.json, "rebuilt", "events");
            let report = {
                let progress = |p: Progress| reporter.report(p, out);
                ops.rebuild(
                    &name,
                    into.as_deref(),
                    switch,
                    Duration::from_millis(250),
                    progress,
                )
                .await?
            };
            reporter.finish();
            if out.json {
                return Ok(out.json(&report)?);
            }
            match &report.replaced {
                Some(old) => out.line(format!(
                    "switched `{old}` to `{}` at position {} in {} ms",
                    report.projection, report.head, report.millis
                ))?,
                None => out.line(format!(
                    "rebuilt `{}` up to position {} in {} ms",
                    report.projection, report.head, report.millis
                ))?,
            }
        }
    }
    Ok(())
}

fn letter_rows(letters: &[orchestrix::store::DeadLetter]) -> Vec<Vec<String>> {
    letters
        .iter()
        .map(|l| {
            vec![
                l.id.to_string(),
                l.consumer.clone(),
                l.event_type.clone().unwrap_or_default(),
                l.stream_id.clone().unwrap_or_default(),
                l.attempts.to_string(),
                time(&l.failed_at),
                cut(&l.reason, 60),
            ]
        })
        .collect()
}

const LETTER_HEADERS: [&str; 7] = [
    "ID",
    "CONSUMER",
    "TYPE",
    "STREAM",
    "ATTEMPTS",
    "FAILED AT",
    "REASON",
];

pub(crate) async fn dlq(cmd: DlqCommand, ops: &Operations, urls: &Urls, out: &mut Out<'_>) -> Res {
    let inspector = ops.inspector();
    // On a bus the listing says where the letters are; the store's read as
    // they always did.
    let place = match urls.bus {
        Some(_) => format!(" on {}", inspector.dead_letter_queue().describe()),
        None => String::new(),
    };
    match cmd {
        DlqCommand::Ls { filter } => {
            let letters = inspector.dead_letters(&filter.build()?).await?;
            if out.json {
                let views: Vec<DeadLetterView> =
                    letters.into_iter().map(DeadLetterView::of).collect();
                return Ok(out.json(&views)?);
            }
            out.table(&LETTER_HEADERS, &letter_rows(&letters))?;
            out.line(format!("{} dead letter(s){place}", letters.len()))?;
        }
        DlqCommand::Show { id } => {
            let letter = inspector
                .dead_letter(id)
                .await?
                .ok_or_else(|| orchestrix_ops::Error::NotFound(format!("dead letter {id}")))?;
            let view = DeadLetterView::of(letter);
            if out.json {
                return Ok(out.json(&view)?);
            }
            let l = &view.letter;
            out.line(format!("dead letter {}{place}", l.id))?;
            out.line(format!("  consumer   {}", l.consumer))?;
            out.line(format!(
                "  event      {} {}",
                l.event_type.as_deref().unwrap_or("-"),
                l.event_id.map(|i| i.to_string()).unwrap_or_default()
            ))?;
            out.line(format!(
                "  stream     {}",
                l.stream_id.as_deref().unwrap_or("-")
            ))?;
            out.line(format!(
                "  position   {}",
                l.position
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into())
            ))?;
            out.line(format!("  attempts   {}", l.attempts))?;
            out.line(format!("  failed at  {}", time(&l.failed_at)))?;
            out.line(format!("  error      {} ({})", l.reason, l.error_kind))?;
            out.line("  headers")?;
            for (k, v) in &l.headers {
                out.line(format!("    {k}: {v}"))?;
            }
            out.line("  data")?;
            for line in serde_json::to_string_pretty(&view.data)?.lines() {
                out.line(format!("    {line}"))?;
            }
        }
        DlqCommand::Replay {
            ids,
            filter,
            dry_run,
            all,
        } => {
            if ids.is_empty() && filter.is_empty() && !all {
                return Err(Usage(
                    "name letters, give a filter (--consumer, --reason, --since, --until) or --all"
                        .into(),
                )
                .into());
            }
            let mut reporter = Reporter::new(out.tty, out.json, "replayed", "letters");
            let outcomes = {
                let progress = |p: Progress| {
                    if !dry_run {
                        reporter.report(p, out);
                    }
                };
                ops.replay(&ids, &filter.build()?, dry_run, progress)
                    .await?
            };
            reporter.finish();
            let failed = outcomes.iter().filter(|o| o.outcome == "failed").count();
            if out.json {
                out.json(&outcomes)?;
            } else {
                let rows: Vec<Vec<String>> = outcomes
                    .iter()
                    .map(|o| {
                        vec![
                            o.id.to_string(),
                            o.consumer.clone(),
                            o.outcome.clone(),
                            o.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                out.table(&["ID", "CONSUMER", "OUTCOME", "ERROR"], &rows)?;
                let verb = if dry_run { "would replay" } else { "replayed" };
                out.line(format!(
                    "{verb} {} letter(s), {failed} failed",
                    outcomes.len() - failed
                ))?;
            }
            if failed > 0 {
                return Err(Failure {
                    code: crate::EXIT_FAILED,
                    error: anyhow::anyhow!("{failed} letter(s) failed again and were kept"),
                });
            }
        }
        DlqCommand::Delete {
            ids,
            filter,
            dry_run,
            all,
        } => {
            if ids.is_empty() && filter.is_empty() && !all {
                return Err(Usage(
                    "name letters, give a filter (--consumer, --reason, --since, --until) or --all"
                        .into(),
                )
                .into());
            }
            let targets: Vec<Uuid> = if ids.is_empty() {
                inspector
                    .dead_letters(&filter.build()?)
                    .await?
                    .iter()
                    .map(|l| l.id)
                    .collect()
            } else {
                ids
            };
            let mut deleted = Vec::new();
            let mut missing = BTreeSet::new();
            let mut reporter = Reporter::new(out.tty, out.json, "deleted", "letters");
            let total = u64::try_from(targets.len()).unwrap_or(u64::MAX);
            for (i, id) in targets.iter().enumerate() {
                let present = if dry_run {
                    inspector.dead_letter(*id).await?.is_some()
                } else {
                    inspector.delete_dead_letter(*id).await?
                };
                if present {
                    deleted.push(*id);
                } else {
                    missing.insert(*id);
                }
                if !dry_run {
                    reporter.report(
                        Progress {
                            done: u64::try_from(i + 1).unwrap_or(u64::MAX),
                            total,
                        },
                        out,
                    );
                }
            }
            reporter.finish();
            if out.json {
                out.json(&serde_json::json!({
                    "dry_run": dry_run,
                    "deleted": deleted,
                    "missing": missing,
                }))?;
            } else {
                for id in &deleted {
                    out.line(format!(
                        "{} {id}",
                        if dry_run { "would delete" } else { "deleted" }
                    ))?;
                }
                for id in &missing {
                    out.line(format!("not found {id}"))?;
                }
            }
            if !missing.is_empty() && deleted.is_empty() {
                return Err(orchestrix_ops::Error::NotFound(format!(
                    "{} dead letter(s)",
                    missing.len()
                ))
                .into());
            }
        }
    }
    Ok(())
}

pub(crate) async fn sagas(cmd: SagasCommand, ops: &Operations, out: &mut Out<'_>) -> Res {
    let inspector = ops.inspector();
    match cmd {
        SagasCommand::Ls { status } => {
            let list = inspector.sagas(status.as_deref()).await?;
            if out.json {
                return Ok(out.json(&list)?);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.status.clone(),
                        time(&s.updated),
                        cut(s.reason.as_deref().unwrap_or(""), 60),
                    ]
                })
                .collect();
            out.table(&["SAGA", "STATUS", "UPDATED", "REASON"], &rows)?;
            out.line(format!("{} instance(s)", list.len()))?;
        }
        SagasCommand::Show { id } => {
            let detail = inspector
                .saga(&id)
                .await?
                .ok_or_else(|| orchestrix_ops::Error::NotFound(format!("saga instance `{id}`")))?;
            if out.json {
                return Ok(out.json(&detail)?);
            }
            let s = &detail.summary;
            out.line(format!("saga {} ({})", s.id, detail.stream))?;
            out.line(format!("  status   {}", s.status))?;
            if let Some(reason) = &s.reason {
                out.line(format!("  reason   {reason}"))?;
            }
            out.line(format!("  updated  {}", time(&s.updated)))?;
            out.line("  state (saga events)")?;
            for e in &detail.saga_events {
                out.line(format!("    {} {} {}", e.revision, e.event_type, e.data))?;
            }
            out.line("  steps")?;
            for e in &detail.steps {
                out.line(format!(
                    "    {} {} {}",
                    e.revision,
                    e.event_type
                        .trim_start_matches(orchestrix::saga::ENGINE_EVENT_PREFIX),
                    cut(&e.data.to_string(), 100)
                ))?;
            }
            out.line("  pending timeouts")?;
            for t in &detail.pending_timeouts {
                out.line(format!(
                    "    {} due {} (timer {}{})",
                    t.name,
                    time(&t.due_at),
                    t.timer_id,
                    if t.durable {
                        ", durable"
                    } else {
                        ", not in the timer store"
                    }
                ))?;
            }
            out.line("  audit trail")?;
            let rows: Vec<Vec<String>> = detail
                .trail
                .iter()
                .map(|e| {
                    vec![
                        e.revision.to_string(),
                        time(&e.time),
                        e.event_type.clone(),
                        cut(&e.data.to_string(), 80),
                    ]
                })
                .collect();
            let mut table = Vec::new();
            {
                let mut inner = Out {
                    w: &mut table,
                    json: false,
                    tty: false,
                };
                inner.table(&["REV", "TIME", "TYPE", "DATA"], &rows)?;
            }
            for line in String::from_utf8_lossy(&table).lines() {
                out.line(format!("    {line}"))?;
            }
        }
    }
    Ok(())
}

pub(crate) async fn registry(cmd: RegistryCommand, out: &mut Out<'_>) -> Res {
    match cmd {
        RegistryCommand::Serve { listen, storage } => {
            // The URL may hold a password: never print it.
            let shown = orchestrix::url::redact(&storage);
            let registry = orchestrix_schema_registry::EmbeddedRegistry::open_url(&storage)
                .await
                .map_err(|e| Usage(format!("registry storage `{shown}`: {e}")))?;
            let shared: std::sync::Arc<dyn orchestrix_schema_registry::SchemaRegistry> =
                std::sync::Arc::new(registry);
            let app = axum::Router::new()
                .route("/healthz", axum::routing::get(|| async { "ok\n" }))
                .merge(orchestrix_schema_registry::server::router(shared));
            let stop = stop_signal();
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let addr = listener.local_addr()?;
            if out.json {
                out.json_line(&serde_json::json!({ "listening": format!("http://{addr}") }))?;
            } else {
                out.line(format!(
                    "schema registry listening on http://{addr} (storage {shown})"
                ))?;
            }
            out.w.flush()?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
    }
    Ok(())
}

/// A future that resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (what
/// `docker stop` and Kubernetes send), so that the server stops accepting,
/// finishes the requests in flight and exits 0. On Unix the handlers are
/// installed here, before the future is first polled, so that a signal
/// that comes as soon as the "listening" line is out is not missed.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)))
    };
    async move {
        #[cfg(unix)]
        match handlers {
            Ok((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot install signal handlers; stopping on Ctrl-C only");
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
