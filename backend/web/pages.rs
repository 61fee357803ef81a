//! Server-rendered pages: the overview and an output's detail. Each has a
//! fragment route that renders only its live part, which the page's script
//! fetches every few seconds; without scripts the page is still whole.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::response::{Html, Response};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::Caller;
use super::error::ApiError;
use super::flash::{redirect_with, Flash};
use super::html::{form_urlencode, render, Confirm, ConfirmForm};
use super::rates::{self, sparkline_points};
use super::Context;
use crate::auth::Role;
use crate::bbdo::inputs::{ConnectionSnapshot, ConnectionState};
use crate::control::{AdminError, Control};
use crate::ingest::SourceKind;
use crate::journal::Reposition;
use crate::output::status::{FlushRecord, FoldedFlush};
use crate::output::tail::LogLine;
use crate::output::{OutputState, OutputStatus, ParamType};

/// The signed-in user, as every page's header and buttons need them.
pub struct Me {
    pub name: String,
    pub role: String,
    pub csrf: String,
    pub can_operate: bool,
    pub is_admin: bool,
    /// What the action that led here did, shown once (base.html).
    pub flash: Option<Flash>,
}

impl From<&Caller> for Me {
    fn from(caller: &Caller) -> Me {
        Me {
            name: caller.name.clone(),
            role: caller.role.to_string(),
            csrf: caller.csrf().to_owned(),
            can_operate: caller.role >= Role::Operator,
            is_admin: caller.role >= Role::Admin,
            flash: None,
        }
    }
}

impl Me {
    /// For a page that actions send the browser back to: takes the
    /// session's waiting message, so that a reload no longer shows it.
    pub fn with_flash(ctx: &Context, caller: &Caller) -> Me {
        Me {
            flash: ctx.flashes.take(caller),
            ..Me::from(caller)
        }
    }
}

fn health_name(status: Option<&OutputStatus>) -> String {
    status
        .and_then(|s| s.health.as_ref())
        .map_or("unknown", |h| h.state.as_str())
        .to_owned()
}

/// `HTTP 401 …; 12 events pending (since 2026-12-02 13:02:11 UTC)`.
fn health_reason(status: Option<&OutputStatus>) -> String {
    status
        .and_then(|s| s.health.as_ref())
        .map(|h| format!("{} (since {})", h.reason, full_time(h.since)))
        .unwrap_or_default()
}

/// `disabled` for a disabled output, whose worker status says only
/// `stopped`; otherwise the worker's state.
fn state_name(status: Option<&OutputStatus>, enabled: bool) -> String {
    if !enabled {
        return "disabled".into();
    }
    status
        .and_then(|s| serde_json::to_value(s.state).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "stopped".into())
}

/// `12:03:04` for the table, the full time for a tooltip.
pub fn clock(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

/// A script log line as the page shows it: `2026-12-02 07:31:29.475 UTC`.
pub struct ShownLogLine {
    pub at: String,
    pub level: &'static str,
    pub text: String,
}

impl From<LogLine> for ShownLogLine {
    fn from(line: LogLine) -> Self {
        let at = line.at;
        ShownLogLine {
            at: format!("{} {}.{:03} UTC", at.date(), clock(at), at.millisecond()),
            level: line.level,
            text: line.text,
        }
    }
}

/// RFC 3339 to the second: what a person reads; the API keeps the
/// fractions.
pub fn full_time(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A sparkline of events per second: the polyline's points and the latest rate.
pub struct Spark {
    pub points: String,
    pub current: String,
    pub summary: String,
}

const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 24.0;

fn spark(values: Vec<f64>, what: &str) -> Spark {
    let current = values.last().copied().unwrap_or(0.0);
    let max = values.iter().cloned().fold(0.0_f64, f64::max);
    Spark {
        points: sparkline_points(&values, SPARK_W, SPARK_H),
        current: format!("{current:.1}"),
        summary: format!(
            "{current:.1} events/s {what} now, at most {max:.1} over the last {} s",
            values.len() as u64 * rates::SAMPLE_EVERY.as_secs()
        ),
    }
}

const HOUR_W: f64 = 600.0;
const HOUR_H: f64 = 80.0;

/// The detail page's chart of the last hour: received and delivered per
/// second, a point a minute, on one scale so that the gap between the two
/// lines is the backlog growing.
pub struct HourChart {
    pub received: String,
    pub delivered: String,
    /// Minutes covered so far (the history starts with the service).
    pub minutes: usize,
    pub max: String,
    pub summary: String,
}

fn hour_chart(ctx: &Context, name: &str) -> HourChart {
    let history = ctx.rates.hour(name);
    let max = history
        .received
        .iter()
        .chain(&history.delivered)
        .cloned()
        .fold(0.0_f64, f64::max);
    let received = hour_points(&history.received, max);
    let delivered = hour_points(&history.delivered, max);
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let minutes = history.received.len();
    HourChart {
        summary: format!(
            "Over the last {minutes} min: {:.1} events/s received and {:.1} delivered on average; at most {max:.1}/s",
            mean(&history.received),
            mean(&history.delivered)
        ),
        received,
        delivered,
        minutes,
        max: format!("{max:.1}"),
    }
}

/// A polyline's points, a minute apart, the latest at the right edge (a
/// history shorter than an hour starts inside the chart), on the scale of
/// `max`.
fn hour_points(values: &[f64], max: f64) -> String {
    let step = HOUR_W / 59.0;
    // A single minute would be a lone point, which draws nothing: it is
    // drawn as a level line across that minute.
    let single;
    let values = if let [only] = values {
        single = [*only, *only];
        &single[..]
    } else {
        values
    };
    let n = values.len();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = HOUR_W - (n - 1 - i) as f64 * step;
            format!("{x:.1},{:.1}", rates::chart_y(*v, max, HOUR_H))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Events received per second (read from the journal, or by the ingest).
fn received_spark(ctx: &Context, series: &str) -> Spark {
    spark(ctx.rates.per_second(series), "received")
}

/// Events delivered (acknowledged by the destination) per second.
fn delivered_spark(ctx: &Context, series: &str) -> Spark {
    spark(ctx.rates.delivered_per_second(series), "delivered")
}

struct OutputRow {
    name: String,
    kind: String,
    enabled: bool,
    state: String,
    /// `ok`, `degraded`, `stalled` or `failing`, and why, since when.
    health: String,
    health_reason: String,
    last_error: String,
    rate: Spark,
    delivered: Spark,
    queue_depth: u64,
    last_flush_at: String,
    last_flush_title: String,
    last_flush_result: String,
    last_flush_ok: bool,
}

#[derive(Template)]
#[template(path = "overview_body.html")]
struct OverviewBody {
    /// For the Enable/Disable buttons, an admin's.
    csrf: String,
    is_admin: bool,
    outputs: Vec<OutputRow>,
    sources: Vec<SourceRow>,
    journal: JournalLine,
}

/// The journal's fill against its limit, as `GET /api/v1/journal` gives it.
struct JournalLine {
    /// `ok`, `degraded` or `failing`.
    state: String,
    reason: String,
    /// `3.2 MiB of 1024.0 MiB (0 %), 1200 events, oldest 0:05 old`.
    summary: String,
    /// `output-a (120 pending), output-b (3 pending)`; empty when nothing
    /// is held back.
    holding: String,
}

/// Bytes in MiB, or KiB below one MiB.
fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

fn journal_line(info: &crate::journal::JournalInfo) -> JournalLine {
    let mut summary = format!(
        "{} of {} ({:.0} %), {} events",
        size(info.bytes),
        size(info.max_bytes),
        info.fill_ratio * 100.0,
        info.events
    );
    if let Some(age) = info.oldest_age_secs {
        summary.push_str(&format!(", oldest {}:{:02} old", age / 3600, age / 60 % 60));
    }
    let holding = info
        .holding
        .iter()
        .map(|h| format!("{} ({} pending)", h.name, h.unacked))
        .collect::<Vec<_>>()
        .join(", ");
    JournalLine {
        state: serde_json::to_value(info.health.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        reason: info.health.reason.clone(),
        summary,
        holding,
    }
}

/// One source of events on the overview: always listed, with its own rate
/// and counters, and for BBDO its open connections.
struct SourceRow {
    /// `HTTP`, `BBDO listener`…
    kind: &'static str,
    /// The route, the address, the simulator's rate.
    name: String,
    /// `listening`, `connected`, `retrying`…; empty for the HTTP route.
    state: String,
    /// What the state means now: `2 brokers connected`, the last error.
    detail: String,
    rate: Spark,
    accepted: u64,
    refused: u64,
    connections: Vec<ConnectionRow>,
}

/// One BBDO connection still open, as `GET /api/v1/inputs` describes it.
struct ConnectionRow {
    peer: String,
    state: &'static str,
    version: String,
    acknowledged: u64,
    refusals: u64,
    last_error: String,
    /// `TLS anonymous, TLSv1.2`; empty for a session in clear.
    tls: String,
}

fn connection_rows(connections: &[ConnectionSnapshot]) -> Vec<ConnectionRow> {
    connections
        .iter()
        .filter(|c| c.negotiated.state != ConnectionState::Closed)
        .map(|c| {
            let n = &c.negotiated;
            ConnectionRow {
                peer: c.peer.clone(),
                state: n.state.as_str(),
                version: n.version.clone().unwrap_or_default(),
                acknowledged: c.events_acknowledged,
                refusals: c.errors.ingest_refusals,
                last_error: n
                    .last_error
                    .as_ref()
                    .map_or_else(String::new, |e| e.message.clone()),
                tls: if n.tls == "none" {
                    String::new()
                } else {
                    format!(
                        "TLS {}, {}",
                        n.tls,
                        n.tls_version.as_deref().unwrap_or_default()
                    )
                },
            }
        })
        .collect()
}

fn source_rows(ctx: &Context) -> Vec<SourceRow> {
    let bbdo = ctx.inputs.snapshot();
    ctx.ingest
        .sources()
        .into_iter()
        .map(|source| {
            let (state, detail, connections) = match source.kind {
                SourceKind::Http => (String::new(), String::new(), Vec::new()),
                SourceKind::Simulator => ("running".into(), String::new(), Vec::new()),
                SourceKind::BbdoListener => {
                    let connections = bbdo
                        .listeners
                        .iter()
                        .find(|l| l.address.to_string() == source.name)
                        .map(|l| connection_rows(&l.connections))
                        .unwrap_or_default();
                    let detail = match connections.len() {
                        0 => "no broker connected".to_owned(),
                        1 => "1 broker connected".to_owned(),
                        n => format!("{n} brokers connected"),
                    };
                    ("listening".into(), detail, connections)
                }
                SourceKind::BbdoConnector => bbdo
                    .connectors
                    .iter()
                    .find(|c| c.address == source.name)
                    .map(|c| {
                        let progress = &c.progress;
                        let state = progress.state.as_str().to_owned();
                        let detail = progress.last_error.as_ref().map_or_else(
                            || format!("{} attempts", progress.attempts),
                            |e| format!("last error at {}: {}", clock(e.at), e.message),
                        );
                        (state, detail, connection_rows(&c.connections))
                    })
                    .unwrap_or_default(),
            };
            SourceRow {
                kind: source.kind.label(),
                rate: received_spark(ctx, &source.series()),
                name: source.name,
                state,
                detail,
                accepted: source.events_accepted,
                refused: source.events_refused,
                connections,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    me: Me,
    body: OverviewBody,
}

async fn overview_body(ctx: &Context, caller: &Caller) -> Result<OverviewBody, ApiError> {
    let mut outputs = Vec::new();
    for stored in ctx.store.list_outputs().await? {
        let name = stored.spec.name;
        let status = ctx.supervisor.status(&name).await;
        let last_flush = status.as_ref().and_then(|s| s.last_flush.clone());
        outputs.push(OutputRow {
            kind: stored.spec.kind,
            enabled: stored.spec.enabled,
            state: state_name(status.as_ref(), stored.spec.enabled),
            health: health_name(status.as_ref()),
            health_reason: health_reason(status.as_ref()),
            last_error: status
                .as_ref()
                .and_then(|s| s.last_error.clone())
                .unwrap_or_default(),
            rate: received_spark(ctx, &name),
            delivered: delivered_spark(ctx, &name),
            queue_depth: status.as_ref().map_or(0, |s| s.queue_depth),
            last_flush_at: last_flush
                .as_ref()
                .map_or_else(|| "never".into(), |f| clock(f.at)),
            last_flush_title: last_flush.as_ref().map_or_else(String::new, |f| {
                format!(
                    "{} ({}), {} events",
                    full_time(f.at),
                    serde_json::to_value(f.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    f.events
                )
            }),
            last_flush_result: last_flush
                .as_ref()
                .map_or_else(String::new, |f| f.result.clone()),
            last_flush_ok: last_flush.as_ref().is_none_or(FlushRecord::ok),
            name,
        });
    }
    Ok(OverviewBody {
        csrf: caller.csrf().to_owned(),
        is_admin: caller.role >= Role::Admin,
        outputs,
        sources: source_rows(ctx),
        journal: journal_line(&ctx.journal.info()),
    })
}

pub async fn overview(
    State(ctx): State<Context>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    render(&Overview {
        me: Me::with_flash(&ctx, &caller),
        body: overview_body(&ctx, &caller).await?,
    })
}

pub async fn overview_fragment(
    State(ctx): State<Context>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    render(&overview_body(&ctx, &caller).await?)
}

struct FlushRow {
    at: String,
    title: String,
    /// Flushes this row stands for (identical ones are folded).
    count: u64,
    reason: String,
    events: usize,
    bytes: usize,
    duration: String,
    result: String,
    ok: bool,
}

struct Bar {
    x: String,
    y: String,
    height: String,
    ok: bool,
    title: String,
}

struct ParamRow {
    name: String,
    ty: String,
    value: String,
}

#[derive(Template)]
#[template(path = "detail_body.html")]
struct DetailBody {
    state: String,
    health: String,
    health_reason: String,
    last_error: String,
    last_error_at: String,
    attempts: u32,
    next_retry_at: String,
    received: u64,
    filtered_out: u64,
    written: u64,
    acknowledged: u64,
    failed: u64,
    queue_depth: u64,
    oldest_pending: String,
    lost: u64,
    buffered: usize,
    /// Empty, or since when `write()` is paused at the queue bound.
    held_back_since: String,
    rate: Spark,
    delivered: Spark,
    hour: HourChart,
    flushes: Vec<FlushRow>,
    bars: Vec<Bar>,
    logs: Vec<ShownLogLine>,
}

#[derive(Template)]
#[template(path = "detail.html")]
struct Detail {
    me: Me,
    name: String,
    kind: String,
    path: String,
    enabled: bool,
    filters: String,
    parameters: Vec<ParamRow>,
    /// Which buttons apply: a worker to flush, a pause to end.
    can_flush: bool,
    paused: bool,
    /// Journal events not yet delivered by this output.
    pending: u64,
    /// What a replay from the oldest event sends: every event held, and
    /// how many of them were delivered already.
    replay_all: u64,
    replay_again: u64,
    body: DetailBody,
    dead_letters: Option<DeadLetterSection>,
}

/// The detail page's list of dead letters, a page at a time.
struct DeadLetterSection {
    held: u64,
    replaying: u64,
    rows: Vec<LetterRow>,
    /// 1-based numbers of the first and last row shown.
    first: u64,
    last: u64,
    previous: Option<u64>,
    next: Option<u64>,
    /// Why the list could not be read.
    error: String,
}

struct LetterRow {
    at: String,
    reason: String,
    record: String,
    unreadable: bool,
}

/// A record longer than this is cut on the page; the API has it whole.
const RECORD_SHOWN: usize = 2000;

async fn dead_letter_section(ctx: &Context, name: &str, offset: u64) -> DeadLetterSection {
    let size = super::deadletters::DEFAULT_PAGE;
    let mut section = DeadLetterSection {
        held: 0,
        replaying: 0,
        rows: Vec::new(),
        first: 0,
        last: 0,
        previous: None,
        next: None,
        error: String::new(),
    };
    match ctx.admin.dead_letters(name, offset, size).await {
        Ok(page) => {
            section.held = page.held;
            section.replaying = page.replaying;
            section.first = offset + 1;
            section.last = offset + page.letters.len() as u64;
            section.previous = (offset > 0).then(|| offset.saturating_sub(size as u64));
            section.next = (section.last < page.held).then_some(section.last);
            section.rows = page
                .letters
                .into_iter()
                .map(|letter| LetterRow {
                    at: OffsetDateTime::parse(&letter.at, &Rfc3339)
                        .map(full_time)
                        .unwrap_or(letter.at),
                    reason: letter.reason,
                    record: cut(&letter.record, RECORD_SHOWN),
                    unreadable: letter.unreadable,
                })
                .collect();
        }
        Err(e) => section.error = e.to_string(),
    }
    section
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;

/// A failed flush's bar is at least this high, so that it shows however
/// many events the other flushes wrote.
const FAILED_BAR_H: f64 = CHART_H * 0.2;

/// `×30 since 2026-12-02T07:00:00Z, ` for a folded row, nothing otherwise.
fn times(f: &FoldedFlush) -> String {
    if f.count > 1 {
        format!("×{} since {}, last ", f.count, full_time(f.first_at))
    } else {
        String::new()
    }
}

fn chart(flushes: &[FoldedFlush]) -> Vec<Bar> {
    let max = flushes.iter().map(|f| f.events).max().unwrap_or(0).max(1) as f64;
    let n = crate::output::status::FLUSH_HISTORY as f64;
    let width = CHART_W / n;
    // Oldest on the left, as a time axis reads.
    flushes
        .iter()
        .rev()
        .enumerate()
        .map(|(i, f)| {
            // An empty flush still shows, as a short bar; a failed one as a
            // red bar a fifth of the chart high.
            let floor = if f.ok() { 3.0 } else { FAILED_BAR_H };
            let height = ((f.events as f64 / max) * (CHART_H - 4.0)).max(floor);
            Bar {
                x: format!("{:.1}", i as f64 * width + 1.0),
                y: format!("{:.1}", CHART_H - height),
                height: format!("{height:.1}"),
                ok: f.ok(),
                title: format!(
                    "{}{}: {} events, {}",
                    times(f),
                    full_time(f.at),
                    f.events,
                    f.result
                ),
            }
        })
        .collect()
}

async fn detail_body(ctx: &Context, name: &str) -> Result<DetailBody, ApiError> {
    let enabled = ctx.store.get_output(name).await?.spec.enabled;
    let status = ctx
        .supervisor
        .status(name)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no output named `{name}`")))?;
    let logs = match ctx.supervisor.tail(name).await {
        Some(tail) => tail.logs().into_iter().map(ShownLogLine::from).collect(),
        None => Vec::new(),
    };
    let flushes: Vec<FoldedFlush> = status.flushes.iter().cloned().collect();
    Ok(DetailBody {
        state: state_name(Some(&status), enabled),
        health: health_name(Some(&status)),
        health_reason: health_reason(Some(&status)),
        last_error: status.last_error.clone().unwrap_or_default(),
        last_error_at: status.last_error_at.map(full_time).unwrap_or_default(),
        attempts: status.attempts,
        next_retry_at: status.next_retry_at.map(full_time).unwrap_or_default(),
        received: status.counters.received,
        filtered_out: status.counters.filtered_out,
        written: status.counters.written,
        acknowledged: status.counters.acknowledged,
        failed: status.counters.failed,
        queue_depth: status.queue_depth,
        oldest_pending: status
            .oldest_pending_age_secs
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "none".into()),
        lost: status.lost,
        buffered: status.buffered,
        held_back_since: status.held_back_since.map(full_time).unwrap_or_default(),
        rate: received_spark(ctx, name),
        delivered: delivered_spark(ctx, name),
        hour: hour_chart(ctx, name),
        bars: chart(&flushes),
        flushes: flushes
            .iter()
            .map(|f| FlushRow {
                at: if f.count > 1 {
                    format!("{}–{}", clock(f.first_at), clock(f.at))
                } else {
                    clock(f.at)
                },
                title: format!("{}{}", times(f), full_time(f.at)),
                count: f.count,
                reason: serde_json::to_value(f.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                events: f.events,
                bytes: f.bytes,
                duration: format!("{:.1} ms", f.duration_ms),
                result: f.result.clone(),
                ok: f.ok(),
            })
            .collect(),
        logs,
    })
}

#[derive(Deserialize)]
pub struct DetailQuery {
    /// Where the dead-letter list starts.
    dead_letters_from: Option<u64>,
}

pub async fn detail(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<DetailQuery>,
) -> Result<Html<String>, ApiError> {
    let stored = ctx.store.get_output(&name).await?;
    let spec = stored.spec;
    let body = detail_body(&ctx, &name).await?;
    let section = dead_letter_section(&ctx, &name, query.dead_letters_from.unwrap_or(0)).await;
    // A script keeps its own retention; the section shows for a script
    // output only if the file holds something (an output renamed from
    // another kind).
    let shown =
        !spec.runs_script() || section.held + section.replaying > 0 || !section.error.is_empty();
    let backlog = ctx.journal.backlog(&name);
    let (replay_all, replay_again) = replay_counts(&ctx, backlog.unacked);
    render(&Detail {
        dead_letters: shown.then_some(section),
        me: Me::with_flash(&ctx, &caller),
        can_flush: matches!(body.state.as_str(), "running" | "retrying"),
        paused: body.state == "paused",
        pending: backlog.unacked,
        replay_all,
        replay_again,
        kind: spec.kind.clone(),
        path: spec.path.clone().unwrap_or_default(),
        enabled: spec.enabled,
        filters: if spec.filters.is_empty() {
            "every event".into()
        } else {
            spec.filters.join(", ")
        },
        parameters: spec
            .parameters
            .iter()
            .map(|p| ParamRow {
                name: p.name.clone(),
                ty: p.ty.to_string(),
                value: if p.ty == ParamType::Password {
                    "(hidden)".into()
                } else {
                    p.value.clone()
                },
            })
            .collect(),
        name,
        body,
    })
}

/// Events a replay from the oldest would send (all the journal holds) and
/// how many of them the output had delivered already (all but its
/// `pending`).
fn replay_counts(ctx: &Context, pending: u64) -> (u64, u64) {
    let info = ctx.journal.info();
    let held = info
        .oldest_seq
        .map_or(0, |oldest| (info.head_seq + 1).saturating_sub(oldest));
    (held, held.saturating_sub(pending))
}

pub async fn detail_fragment(
    State(ctx): State<Context>,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    render(&detail_body(&ctx, &name).await?)
}

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    #[serde(default)]
    since: String,
    /// The box a replay from the oldest event needs ticked: it sends
    /// again what was delivered already.
    #[serde(default)]
    confirm: Confirm,
    /// `overview` for the overview's Enable/Disable buttons, which send
    /// the browser back there.
    #[serde(default)]
    back: String,
}

fn detail_url(name: &str) -> String {
    format!("/outputs/{}", form_urlencode(name))
}

/// A refusal of the control layer as a page tells it; a missing output
/// is the page's 404 instead.
fn refused(what: &str, e: AdminError) -> Result<Flash, ApiError> {
    match e {
        AdminError::NotFound(m) => Err(ApiError::NotFound(m)),
        AdminError::Invalid(errors) => Ok(Flash::error(format!(
            "{what}: {}",
            errors
                .0
                .iter()
                .map(|(field, message)| format!("{field} {message}"))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        // The full text is in the service log; a page shows no internals.
        AdminError::Internal(_) => Ok(Flash::error(format!(
            "{what}: an internal error occurred; the service log has the details"
        ))),
        other => Ok(Flash::error(format!("{what}: {other}"))),
    }
}

/// The detail page's buttons, as plain form posts (they work without
/// scripts); the answer sends the browser back to the page, where a
/// message says what was done.
pub async fn action(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, ApiError> {
    let state = ctx
        .supervisor
        .status(&name)
        .await
        .map(|s| s.state)
        .ok_or_else(|| ApiError::NotFound(format!("no output named `{name}`")))?;
    let flash = match form.action.as_str() {
        "flush" => match ctx.admin.flush(&caller.name, &name).await {
            Ok(record) if record.ok() => {
                Flash::success(format!("Flushed: {} events, ok", record.events))
            }
            Ok(record) => Flash::error(format!(
                "Flushed {} events, which failed: {}",
                record.events, record.result
            )),
            Err(e) => refused("Cannot flush", e)?,
        },
        // Said as it is, not "done", when nothing had to change.
        "pause" if state == OutputState::Paused => {
            Flash::info(format!("`{name}` is paused already; nothing changed"))
        }
        "resume" if state != OutputState::Paused && state != OutputState::Stopped => {
            Flash::info(format!("`{name}` is not paused; nothing changed"))
        }
        "pause" | "resume" | "restart" => {
            let what = match form.action.as_str() {
                "pause" => Control::Pause,
                "resume" => Control::Resume,
                _ => Control::Restart,
            };
            match ctx.admin.control(&caller.name, &name, what).await {
                Ok(_) => {
                    Flash::success(match what {
                        Control::Pause => {
                            format!("Paused `{name}`: its events wait in the journal until it is resumed")
                        }
                        Control::Resume => format!("Resumed `{name}`: it reads on from its cursor"),
                        Control::Restart => format!("Restarted `{name}`"),
                    })
                }
                Err(e) => refused(&format!("{what:?} refused"), e)?,
            }
        }
        "enable" | "disable" if caller.role < Role::Admin => {
            Flash::error("Enabling and disabling an output needs the admin role")
        }
        "enable" | "disable" => {
            let enable = form.action == "enable";
            match ctx.admin.set_enabled(&caller.name, &name, enable).await {
                Ok((_, false)) => Flash::info(format!(
                    "`{name}` is {} already; nothing changed",
                    if enable { "enabled" } else { "disabled" }
                )),
                Ok((_, true)) if enable => Flash::success(format!(
                    "Enabled `{name}`: it delivers its backlog from its cursor"
                )),
                Ok((_, true)) => Flash::success(format!(
                    "Disabled `{name}`: its events wait in the journal until it is enabled"
                )),
                Err(e) => refused(
                    if enable {
                        "Cannot enable"
                    } else {
                        "Cannot disable"
                    },
                    e,
                )?,
            }
        }
        "replay" if form.since.trim().is_empty() && !form.confirm.ticked() => Flash::error(
            "Nothing replayed: tick the box to confirm that delivered events are sent again",
        ),
        "replay" => {
            let to = if form.since.trim().is_empty() {
                Ok(Reposition::Oldest)
            } else {
                parse_local_utc(form.since.trim()).map(|t| Reposition::Since(t.into()))
            };
            match to {
                Ok(to) => match ctx.admin.reposition(&caller.name, &name, to).await {
                    Ok(position) => Flash::success(format!("Replaying from position {position}")),
                    Err(e) => refused("Cannot replay", e)?,
                },
                Err(message) => Flash::error(format!("Cannot replay: {message}")),
            }
        }
        other => Flash::error(format!("Unknown action `{other}`")),
    };
    let back = if form.back == "overview" {
        "/".to_owned()
    } else {
        detail_url(&name)
    };
    Ok(redirect_with(&ctx, &caller, &back, flash))
}

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage {
    me: Me,
    name: String,
    pending: u64,
    dead_letters: u64,
}

/// `GET /outputs/{name}/delete`: what deleting does, and the form that
/// does it once its box is ticked (no script needed).
pub async fn delete_page(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Html<String>, ApiError> {
    ctx.store.get_output(&name).await?;
    let dead_letters = ctx.supervisor.dead_letters().held(&name).unwrap_or(0);
    render(&DeletePage {
        me: Me::with_flash(&ctx, &caller),
        pending: ctx.journal.backlog(&name).unacked,
        dead_letters,
        name,
    })
}

/// `POST /outputs/{name}/delete`: refused unless confirmed.
pub async fn delete(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, ApiError> {
    if !form.confirm.ticked() {
        let back = format!("{}/delete", detail_url(&name));
        let flash = Flash::error("Nothing deleted: tick the box to confirm the deletion");
        return Ok(redirect_with(&ctx, &caller, &back, flash));
    }
    match ctx.admin.delete(&caller.name, &name).await {
        Ok(()) => {
            let flash = Flash::success(format!("Deleted the output `{name}`"));
            Ok(redirect_with(&ctx, &caller, "/", flash))
        }
        Err(e) => {
            let flash = refused("Cannot delete", e)?;
            Ok(redirect_with(&ctx, &caller, &detail_url(&name), flash))
        }
    }
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /outputs/{name}/rename`: to the page under its new name.
pub async fn rename(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<NameForm>,
) -> Result<Response, ApiError> {
    let to = form.name.trim();
    match ctx.admin.rename(&caller.name, &name, to).await {
        Ok(stored) => {
            ctx.rates.rename(&name, to);
            let flash = Flash::success(format!(
                "Renamed `{name}` to `{to}`: its backlog, dead letters and history came along"
            ));
            Ok(redirect_with(
                &ctx,
                &caller,
                &detail_url(&stored.spec.name),
                flash,
            ))
        }
        Err(e) => {
            let flash = refused(&format!("Cannot rename `{name}` to `{to}`"), e)?;
            Ok(redirect_with(&ctx, &caller, &detail_url(&name), flash))
        }
    }
}

/// `POST /outputs/{name}/clone`: to the copy's page.
pub async fn clone(
    State(ctx): State<Context>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<NameForm>,
) -> Result<Response, ApiError> {
    let to = form.name.trim();
    match ctx.admin.clone_output(&caller.name, &name, to).await {
        Ok(stored) => {
            let flash = Flash::success(format!(
                "Created `{to}`, a copy of `{name}`. It is disabled: check it, then enable it"
            ));
            Ok(redirect_with(
                &ctx,
                &caller,
                &detail_url(&stored.spec.name),
                flash,
            ))
        }
        Err(e) => {
            let flash = refused(&format!("Cannot copy `{name}` as `{to}`"), e)?;
            Ok(redirect_with(&ctx, &caller, &detail_url(&name), flash))
        }
    }
}

/// A `datetime-local` field's value, read as UTC (the page says so).
fn parse_local_utc(text: &str) -> Result<OffsetDateTime, String> {
    use time::macros::format_description;
    let with_seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let without = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::PrimitiveDateTime::parse(text, with_seconds)
        .or_else(|_| time::PrimitiveDateTime::parse(text, without))
        .map(|t| t.assume_utc())
        .or_else(|_| OffsetDateTime::parse(text, &Rfc3339))
        .map_err(|_| format!("`{text}` is not a time such as 2026-11-25T10:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_times_are_read_as_utc() {
        let t = parse_local_utc("2026-11-25T10:00").unwrap();
        assert_eq!(full_time(t), "2026-11-25T10:00:00Z");
        assert!(parse_local_utc("yesterday").is_err());
    }

    #[test]
    fn notices_are_url_encoded() {
        assert_eq!(form_urlencode("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }
}
