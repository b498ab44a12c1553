//! Silences: `list_silences` (a read), and opsgate's first writes, `silence_alert` and
//! `expire_silence`.
//!
//! Each write has a plan, computed from the current state without changing anything: the alerts
//! a new silence would cover, or those whose notifications resume when a silence is expired. The
//! pipeline shows the plan to the human who approves and gives its blast radius to policy; the
//! tools never ask for approval themselves. `call` checks its arguments and the silence's state
//! again, since it may run long after the plan (once approved) or without one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use opsgate_core::{CallContext, Effect, Plan, Row, Tool, ToolError, ToolOutput, ToolSpec, parse_arguments};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{AlertmanagerClient, AlertmanagerClients, GettableAlert, GettableSilence, PostableSilence};
use super::matcher::{Matcher, api_matcher_text, parse_silence_matchers};
use super::tools::{severity_rank, state_text};
use crate::format;
use crate::http::HttpError;
use crate::prometheus::{PrometheusClients, default_service_labels, service_of};
use crate::schema::{input_schema, object};

/// The longest silence `silence_alert` creates. A longer one outlives the incident that
/// justified it and hides the next; a silence still needed at its end can be made again.
pub const MAX_SILENCE_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// Alerts a plan lists; its blast radius counts them all.
const MAX_PLAN_ITEMS: usize = 20;

/// Parses `silence_alert`'s duration: Prometheus style with a unit (`30m`, `2h`, `1d`), more
/// than zero and at most `MAX_SILENCE_DURATION`. A bare number is refused: seconds or minutes,
/// nobody reading the call could tell.
pub(crate) fn parse_silence_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.parse::<f64>().is_ok() {
        return Err(format!("duration {text:?} needs a unit, e.g. 30m, 2h, 1d"));
    }
    let duration = format::parse_duration(text)?;
    if duration > MAX_SILENCE_DURATION {
        return Err(format!(
            "duration {text:?} is longer than the {} limit; silence for less and silence again if still needed",
            format::human_duration(MAX_SILENCE_DURATION)
        ));
    }
    Ok(duration)
}

/// Alertmanager's silence ids are UUIDs. Checked before an id goes into a URL path.
pub(crate) fn is_silence_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, length)| group.len() == length && group.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

/// The labels that name an alert's service: those of the Prometheus linked to this
/// Alertmanager (else the first configured one), else the defaults.
fn service_labels(alertmanager: &AlertmanagerClient, prometheus: &PrometheusClients) -> Vec<String> {
    let linked = match alertmanager.prometheus() {
        Some(name) => prometheus.get(name),
        None => prometheus.first(),
    };
    linked.map(|client| client.service_labels().to_vec()).unwrap_or_else(default_service_labels)
}

/// Most urgent first, then newest, as `get_active_alerts` orders them.
fn sort_alerts(alerts: &mut [GettableAlert]) {
    alerts.sort_by(|a, b| {
        let rank =
            |alert: &GettableAlert| severity_rank(alert.labels.get("severity").map(String::as_str).unwrap_or(""));
        rank(a).cmp(&rank(b)).then_with(|| b.starts_at.cmp(&a.starts_at))
    });
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|time| time.with_timezone(&Utc))
}

/// RFC 3339 with milliseconds, as Alertmanager writes its own times.
fn api_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A silence's time as structured output shows it: to the second, or as Alertmanager sent it
/// when it does not parse.
fn output_time(text: &str) -> String {
    parse_time(text).map(format::rfc3339).unwrap_or_else(|| text.to_string())
}

fn n_alerts(n: usize) -> String {
    if n == 1 { "1 alert".to_string() } else { format!("{n} alerts") }
}

/// An alert in a plan or a result: what a human needs to recognise it.
fn alert_item(alert: &GettableAlert, service_labels: &[String]) -> Value {
    let label = |name: &str| alert.labels.get(name).map(String::as_str).unwrap_or("");
    json!({
        "alertname": label("alertname"),
        "severity": label("severity"),
        "service": service_of(&alert.labels, service_labels).unwrap_or(""),
        "state": alert.status.state,
        "starts_at": alert.starts_at.as_deref().map(output_time),
    })
}

/// Columns: alertname, severity, service, state, since.
fn alert_row(alert: &GettableAlert, service_labels: &[String], now: DateTime<Utc>) -> Row {
    let label = |name: &str| alert.labels.get(name).cloned().unwrap_or_default();
    let since = alert.starts_at.as_deref().and_then(parse_time).map(|time| format::time_ago(time, now));
    Row {
        cells: vec![
            label("alertname"),
            label("severity"),
            service_of(&alert.labels, service_labels).unwrap_or("").to_string(),
            state_text(alert),
            since.unwrap_or_default(),
        ],
        item: alert_item(alert, service_labels),
    }
}

fn alert_items_schema() -> Value {
    json!({"type": "array", "items": {"type": "object", "properties": {
        "alertname": {"type": "string"}, "severity": {"type": "string"}, "service": {"type": "string"},
        "state": {"type": "string"}, "starts_at": {"type": "string"}}}})
}

// --- silence_alert ------------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SilenceArgs {
    /// Matchers that must all hold: name="value", name!="value", name=~"regex", name!~"regex" (a regex must match the whole value)
    matchers: Vec<String>,
    /// How long, e.g. 30m, 2h, 1d (at most 7d)
    duration: String,
    /// Why: an incident, a ticket, maintenance
    comment: String,
}

/// A checked `silence_alert` call.
#[derive(Debug)]
struct SilenceRequest {
    matchers: Vec<Matcher>,
    duration: Duration,
    comment: String,
}

impl SilenceRequest {
    fn parse(arguments: Map<String, Value>) -> Result<SilenceRequest, ToolError> {
        let args: SilenceArgs = parse_arguments(arguments)?;
        let matchers = parse_silence_matchers(&args.matchers).map_err(ToolError::InvalidArguments)?;
        let duration = parse_silence_duration(&args.duration).map_err(ToolError::InvalidArguments)?;
        let comment = args.comment.trim();
        if comment.is_empty() {
            return Err(ToolError::InvalidArguments(
                "comment: say why the alerts are silenced (an incident, a ticket, maintenance)".to_string(),
            ));
        }
        Ok(SilenceRequest { matchers, duration, comment: comment.to_string() })
    }

    /// The matchers in Alertmanager's syntax, as `filter` parameters and as people read them.
    fn filter(&self) -> Vec<String> {
        self.matchers.iter().map(Matcher::to_string).collect()
    }
}

pub struct SilenceAlert {
    clients: Arc<AlertmanagerClients>,
    prometheus: Arc<PrometheusClients>,
    spec: ToolSpec,
}

impl SilenceAlert {
    pub fn new(clients: Arc<AlertmanagerClients>, prometheus: Arc<PrometheusClients>) -> Self {
        let spec = ToolSpec {
            name: "silence_alert".to_string(),
            title: "Silence alerts".to_string(),
            description: "Silence the Alertmanager alerts matching all matchers for a duration (max 7d). A write: \
                          policy decides, a human may have to approve its plan (the alerts silenced)."
                .to_string(),
            input_schema: input_schema::<SilenceArgs>(),
            output_schema: Some(object(json!({
                "type": "object",
                "properties": {
                    "silence_id": {"type": "string"},
                    "starts_at": {"type": "string"},
                    "ends_at": {"type": "string"},
                    "created_by": {"type": "string"},
                    "matchers": {"type": "array", "items": {"type": "string"}},
                    "n_alerts": {"type": "integer"},
                    "items": alert_items_schema(),
                }
            }))),
            effect: Effect::Write,
            target_kind: Some("alertmanager".to_string()),
            // Every call makes another silence.
            idempotent: false,
            open_world: true,
        };
        SilenceAlert { clients, prometheus, spec }
    }
}

#[async_trait::async_trait]
impl Tool for SilenceAlert {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn plan(&self, context: &CallContext, arguments: &Map<String, Value>) -> Result<Option<Plan>, ToolError> {
        let request = SilenceRequest::parse(arguments.clone())?;
        let alertmanager = self.clients.for_target(context.target.as_ref())?;
        let filter = request.filter();
        let mut alerts = alertmanager.alerts_matching(&filter).await?;
        sort_alerts(&mut alerts);
        let service_labels = service_labels(alertmanager, &self.prometheus);

        let mut summary = format!(
            "silence {} matching {} in alertmanager {} for {}",
            n_alerts(alerts.len()),
            filter.join(", "),
            alertmanager.name(),
            format::human_duration(request.duration)
        );
        if alerts.is_empty() {
            summary.push_str("; none is firing now, so it only mutes matching alerts that fire before it ends");
        }
        let n_already = alerts.iter().filter(|alert| !alert.status.silenced_by.is_empty()).count();
        if n_already > 0 {
            summary.push_str(&format!("; {n_already} of them already silenced"));
        }
        if alerts.len() > MAX_PLAN_ITEMS {
            summary.push_str(&format!("; the first {MAX_PLAN_ITEMS} are listed"));
        }
        Ok(Some(Plan {
            summary,
            blast_radius: alerts.len() as u64,
            unit: "alerts".to_string(),
            items: alerts.iter().take(MAX_PLAN_ITEMS).map(|alert| alert_item(alert, &service_labels)).collect(),
        }))
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let request = SilenceRequest::parse(arguments)?;
        let alertmanager = self.clients.for_target(context.target.as_ref())?;
        let starts_at = Utc::now();
        let ends_at = chrono::Duration::from_std(request.duration)
            .ok()
            .and_then(|duration| starts_at.checked_add_signed(duration))
            .ok_or_else(|| ToolError::Internal("the silence's end time is out of range".to_string()))?;
        let created_by = format!("opsgate:{}", context.principal.id);
        let silence = PostableSilence {
            matchers: request.matchers.iter().map(Matcher::to_api).collect(),
            starts_at: api_time(starts_at),
            ends_at: api_time(ends_at),
            created_by: created_by.clone(),
            comment: request.comment.clone(),
        };
        let id = alertmanager.create_silence(&silence).await.map_err(|error| creation_failed(alertmanager, error))?;

        // The silence exists from here on: a failure to list its alerts is a note, not an error,
        // or the agent would think nothing happened and silence again.
        let filter = request.filter();
        let mut footer = vec![format!("expire_silence id={id} ends it early")];
        let mut alerts = match alertmanager.alerts_matching(&filter).await {
            Ok(alerts) => alerts,
            Err(error) => {
                footer.push(format!("the silence is in place, but listing the alerts it covers failed: {error}"));
                Vec::new()
            }
        };
        sort_alerts(&mut alerts);
        let service_labels = service_labels(alertmanager, &self.prometheus);
        let now = Utc::now();
        let rows: Vec<Row> = alerts.iter().map(|alert| alert_row(alert, &service_labels, now)).collect();
        let n_rows = rows.len();
        Ok(ToolOutput {
            summary: vec![format!(
                "created silence {id} in alertmanager {}: {} matching {} silenced until {} ({})",
                alertmanager.name(),
                n_alerts(n_rows),
                filter.join(", "),
                format::rfc3339(ends_at),
                format::human_duration(request.duration)
            )],
            columns: ["alertname", "severity", "service", "state", "since"].into_iter().map(str::to_string).collect(),
            rows,
            footer,
            ..ToolOutput::default()
        }
        .field("silence_id", id)
        .field("starts_at", format::rfc3339(starts_at))
        .field("ends_at", format::rfc3339(ends_at))
        .field("created_by", created_by)
        .field("matchers", filter)
        .field("n_alerts", n_rows))
    }
}

/// A failed create, worded for what the agent should do next. When the request may have reached
/// Alertmanager (it timed out, or the connection dropped after it was sent), the silence may
/// exist: silencing again would make a second one.
fn creation_failed(alertmanager: &AlertmanagerClient, error: HttpError) -> ToolError {
    let maybe_created = match &error {
        HttpError::Timeout { .. } => true,
        HttpError::Unreachable { detail, .. } => detail != "connection refused",
        _ => false,
    };
    if !maybe_created {
        return error.into();
    }
    let reason = match &error {
        HttpError::Timeout { seconds, .. } => format!("did not answer within {seconds}s"),
        other => other.to_string(),
    };
    ToolError::Unavailable(format!(
        "creating the silence in alertmanager {} failed: {reason}; it may have been created anyway: \
         check list_silences before silencing again",
        alertmanager.name()
    ))
}

// --- expire_silence -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExpireArgs {
    /// The silence's id, as list_silences and silence_alert show it
    id: String,
}

fn parse_silence_id(arguments: Map<String, Value>) -> Result<String, ToolError> {
    let args: ExpireArgs = parse_arguments(arguments)?;
    let id = args.id.trim();
    if !is_silence_id(id) {
        return Err(ToolError::InvalidArguments(format!(
            "id {id:?} is not a silence id: Alertmanager's are UUIDs like 8c3d2a1e-5b6f-4c7d-9e8f-0a1b2c3d4e5f \
             (list_silences shows them)"
        )));
    }
    Ok(id.to_ascii_lowercase())
}

/// What expiring a silence changes: the alerts it silences now, each with whether its
/// notifications resume (nothing else keeps it quiet: another silence, an inhibition, a mute
/// time).
struct Expiry {
    silence: GettableSilence,
    alerts: Vec<(GettableAlert, bool)>,
}

impl Expiry {
    fn n_resumed(&self) -> usize {
        self.alerts.iter().filter(|(_, resumes)| *resumes).count()
    }
}

async fn expiry(alertmanager: &AlertmanagerClient, id: &str) -> Result<Expiry, ToolError> {
    let silence = alertmanager.silence(id).await?.ok_or_else(|| unknown_silence(alertmanager, id))?;
    if silence.status.state == "expired" {
        return Err(already_expired(alertmanager, &silence));
    }
    let mut alerts: Vec<GettableAlert> = alertmanager
        .alerts()
        .await?
        .into_iter()
        .filter(|alert| alert.status.silenced_by.iter().any(|by| by == id))
        .collect();
    sort_alerts(&mut alerts);
    let alerts = alerts
        .into_iter()
        .map(|alert| {
            let resumes = alert.status.silenced_by.iter().all(|by| by == id)
                && alert.status.inhibited_by.is_empty()
                && alert.status.muted_by.is_empty();
            (alert, resumes)
        })
        .collect();
    Ok(Expiry { silence, alerts })
}

fn unknown_silence(alertmanager: &AlertmanagerClient, id: &str) -> ToolError {
    ToolError::Backend(format!(
        "alertmanager {} has no silence {id}; list_silences shows the ids (expired silences are dropped \
         after Alertmanager's retention period)",
        alertmanager.name()
    ))
}

fn already_expired(alertmanager: &AlertmanagerClient, silence: &GettableSilence) -> ToolError {
    ToolError::Backend(format!(
        "silence {} in alertmanager {} already expired at {}; there is nothing to expire",
        silence.id,
        alertmanager.name(),
        output_time(&silence.ends_at)
    ))
}

/// `alertname="X", severity="critical" by opsgate:user:alice: "deploy in progress"`.
fn describe(silence: &GettableSilence) -> String {
    let matchers: Vec<String> = silence.matchers.iter().map(api_matcher_text).collect();
    format!("{} by {}: {:?}", matchers.join(", "), silence.created_by, silence.comment)
}

pub struct ExpireSilence {
    clients: Arc<AlertmanagerClients>,
    prometheus: Arc<PrometheusClients>,
    spec: ToolSpec,
}

impl ExpireSilence {
    pub fn new(clients: Arc<AlertmanagerClients>, prometheus: Arc<PrometheusClients>) -> Self {
        let spec = ToolSpec {
            name: "expire_silence".to_string(),
            title: "Expire a silence".to_string(),
            description: "End an Alertmanager silence now, by id; notifications resume for the alerts it silenced. A \
                          write: policy decides, a human may have to approve its plan (those alerts)."
                .to_string(),
            input_schema: input_schema::<ExpireArgs>(),
            output_schema: Some(object(json!({
                "type": "object",
                "properties": {
                    "silence_id": {"type": "string"},
                    "state": {"type": "string"},
                    "ends_at": {"type": "string"},
                    "matchers": {"type": "array", "items": {"type": "string"}},
                    "n_alerts_resumed": {"type": "integer"},
                    "items": alert_items_schema(),
                }
            }))),
            effect: Effect::Write,
            target_kind: Some("alertmanager".to_string()),
            // Once expired, a silence stays expired; a second call changes nothing (and says so).
            idempotent: true,
            open_world: true,
        };
        ExpireSilence { clients, prometheus, spec }
    }
}

#[async_trait::async_trait]
impl Tool for ExpireSilence {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn plan(&self, context: &CallContext, arguments: &Map<String, Value>) -> Result<Option<Plan>, ToolError> {
        let id = parse_silence_id(arguments.clone())?;
        let alertmanager = self.clients.for_target(context.target.as_ref())?;
        let expiry = expiry(alertmanager, &id).await?;
        let service_labels = service_labels(alertmanager, &self.prometheus);

        let n_resumed = expiry.n_resumed();
        let mut summary = format!(
            "expire silence {id} ({}) in alertmanager {}: notifications resume for {}",
            describe(&expiry.silence),
            alertmanager.name(),
            n_alerts(n_resumed)
        );
        let n_kept = expiry.alerts.len() - n_resumed;
        if n_kept > 0 {
            summary.push_str(&format!(
                "; {} stay quiet (another silence, an inhibition or a mute time)",
                n_alerts(n_kept)
            ));
        }
        if expiry.silence.status.state == "pending" {
            summary.push_str(&format!(
                "; it has not started (starts {}), expiring it cancels it",
                output_time(&expiry.silence.starts_at)
            ));
        }
        if expiry.alerts.len() > MAX_PLAN_ITEMS {
            summary.push_str(&format!("; the first {MAX_PLAN_ITEMS} are listed"));
        }
        let items = expiry
            .alerts
            .iter()
            .take(MAX_PLAN_ITEMS)
            .map(|(alert, resumes)| {
                let mut item = alert_item(alert, &service_labels);
                item["resumes"] = Value::Bool(*resumes);
                item
            })
            .collect();
        Ok(Some(Plan { summary, blast_radius: n_resumed as u64, unit: "alerts".to_string(), items }))
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let id = parse_silence_id(arguments)?;
        let alertmanager = self.clients.for_target(context.target.as_ref())?;
        let expiry = expiry(alertmanager, &id).await?;
        alertmanager.expire_silence(&id).await.map_err(|error| match &error {
            HttpError::Status { status: 404, .. } => unknown_silence(alertmanager, &id),
            // Expired between the check above and now: Alertmanager answers 500.
            HttpError::Status { status: 500, body, .. } if body.contains("expired") => {
                already_expired(alertmanager, &expiry.silence)
            }
            _ => error.into(),
        })?;

        // Read it back: the state and end time Alertmanager now holds.
        let mut footer = Vec::new();
        let (state, ends_at) = match alertmanager.silence(&id).await {
            Ok(Some(silence)) => (silence.status.state, output_time(&silence.ends_at)),
            Ok(None) => ("expired".to_string(), String::new()),
            Err(error) => {
                footer.push(format!("the silence was expired, but reading it back failed: {error}"));
                ("expired".to_string(), String::new())
            }
        };
        let service_labels = service_labels(alertmanager, &self.prometheus);
        let now = Utc::now();
        let rows: Vec<Row> = expiry
            .alerts
            .iter()
            .map(|(alert, resumes)| {
                let mut row = alert_row(alert, &service_labels, now);
                // The state before expiry says nothing now; whether notifications resume does.
                row.cells[3] = if *resumes { "notifies again" } else { "still suppressed" }.to_string();
                row.item["resumes"] = Value::Bool(*resumes);
                row
            })
            .collect();
        let n_resumed = expiry.n_resumed();
        let matchers: Vec<String> = expiry.silence.matchers.iter().map(api_matcher_text).collect();
        Ok(ToolOutput {
            summary: vec![format!(
                "expired silence {id} ({}) in alertmanager {}: notifications resume for {}",
                describe(&expiry.silence),
                alertmanager.name(),
                n_alerts(n_resumed)
            )],
            columns: ["alertname", "severity", "service", "now", "since"].into_iter().map(str::to_string).collect(),
            rows,
            footer,
            ..ToolOutput::default()
        }
        .field("silence_id", id)
        .field("state", state)
        .field("ends_at", ends_at)
        .field("matchers", matchers)
        .field("n_alerts_resumed", n_resumed))
    }
}

// --- list_silences ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum SilenceState {
    Active,
    Pending,
    Expired,
}

impl SilenceState {
    fn as_str(self) -> &'static str {
        match self {
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
            SilenceState::Expired => "expired",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListSilencesArgs {
    /// Default: active and pending
    #[serde(default)]
    state: Option<SilenceState>,
    /// Only silences having exactly this matcher, e.g. alertname="HighErrorRate"
    #[serde(default)]
    matcher: Option<String>,
}

pub struct ListSilences {
    clients: Arc<AlertmanagerClients>,
    spec: ToolSpec,
}

impl ListSilences {
    pub fn new(clients: Arc<AlertmanagerClients>) -> Self {
        let spec = ToolSpec {
            name: "list_silences".to_string(),
            title: "Silences".to_string(),
            description: "Alertmanager silences (default: active and pending) with id, matchers, creator, comment and \
                          end."
                .to_string(),
            input_schema: input_schema::<ListSilencesArgs>(),
            output_schema: Some(object(json!({
                "type": "object",
                "properties": {
                    "n_silences": {"type": "integer"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "state": {"type": "string"},
                        "matchers": {"type": "array", "items": {"type": "string"}},
                        "created_by": {"type": "string"}, "comment": {"type": "string"},
                        "starts_at": {"type": "string"}, "ends_at": {"type": "string"}}}}
                }
            }))),
            effect: Effect::Read,
            target_kind: Some("alertmanager".to_string()),
            idempotent: true,
            open_world: true,
        };
        ListSilences { clients, spec }
    }
}

/// Active first (soonest to end first), then pending (soonest to start), then expired (most
/// recent first), as Alertmanager's own UI orders them.
fn sort_silences(silences: &mut [GettableSilence]) {
    let rank = |silence: &GettableSilence| match silence.status.state.as_str() {
        "active" => 0,
        "pending" => 1,
        "expired" => 2,
        _ => 3,
    };
    silences.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then_with(|| match a.status.state.as_str() {
            "pending" => parse_time(&a.starts_at).cmp(&parse_time(&b.starts_at)),
            "expired" => parse_time(&b.ends_at).cmp(&parse_time(&a.ends_at)),
            _ => parse_time(&a.ends_at).cmp(&parse_time(&b.ends_at)),
        })
    });
}

#[async_trait::async_trait]
impl Tool for ListSilences {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        let args: ListSilencesArgs = parse_arguments(arguments)?;
        let matcher = match args.matcher.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
            Some(text) => Some(
                Matcher::parse(text)
                    .map_err(|reason| ToolError::InvalidArguments(format!("matcher {text:?}: {reason}")))?,
            ),
            None => None,
        };
        let alertmanager = self.clients.for_target(context.target.as_ref())?;
        let filter: Vec<String> = matcher.iter().map(Matcher::to_string).collect();
        let mut silences = alertmanager.silences(&filter).await?;
        silences.retain(|silence| match args.state {
            Some(state) => silence.status.state == state.as_str(),
            None => silence.status.state != "expired",
        });
        sort_silences(&mut silences);

        let now = Utc::now();
        let rows: Vec<Row> = silences
            .iter()
            .map(|silence| {
                let matchers: Vec<String> = silence.matchers.iter().map(api_matcher_text).collect();
                let ends = parse_time(&silence.ends_at)
                    .map(|time| format::relative_time(time, now))
                    .unwrap_or_else(|| silence.ends_at.clone());
                Row {
                    cells: vec![
                        silence.id.clone(),
                        silence.status.state.clone(),
                        matchers.join(", "),
                        silence.created_by.clone(),
                        silence.comment.clone(),
                        ends,
                    ],
                    item: json!({
                        "id": silence.id,
                        "state": silence.status.state,
                        "matchers": matchers,
                        "created_by": silence.created_by,
                        "comment": silence.comment,
                        "starts_at": output_time(&silence.starts_at),
                        "ends_at": output_time(&silence.ends_at),
                    }),
                }
            })
            .collect();

        let states = args.state.map(SilenceState::as_str).unwrap_or("active or pending");
        let matching = filter.first().map(|matcher| format!(" with matcher {matcher}")).unwrap_or_default();
        let summary = if rows.is_empty() {
            format!("no {states} silences{matching} in alertmanager {}", alertmanager.name())
        } else {
            format!("{} {states} silences{matching} in alertmanager {}", rows.len(), alertmanager.name())
        };
        let n_rows = rows.len();
        Ok(ToolOutput {
            summary: vec![summary],
            columns: ["id", "state", "matchers", "created_by", "comment", "ends"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            rows,
            ..ToolOutput::default()
        }
        .field("n_silences", n_rows))
    }
}
