//! `/hooks/alertmanager`: Alertmanager's webhook receiver payload (version 4), authenticated with
//! a bearer token (`webhook_configs[].http_config.authorization.credentials`). One event per
//! alert and state: firing at `startsAt`, resolved at `endsAt`. Alertmanager repeats a firing
//! alert every `repeat_interval`; the delivery id (fingerprint, state, start) stores it once.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{Event, EventKind, HookError, Ingest, digest_id, normalize_time, parse_json, text_at};

pub const SOURCE: &str = "alertmanager";

pub fn verify(token: &str, headers: &HeaderMap) -> Result<(), HookError> {
    super::verify_bearer(token, headers)
}

pub fn normalize(body: &[u8], now: &str) -> Result<Ingest, HookError> {
    let payload = parse_json(body, SOURCE)?;
    let alerts = payload
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or_else(|| HookError::BadRequest("alertmanager payload has no \"alerts\" array".to_string()))?;
    let external_url = text_at(&payload, "/externalURL");
    let mut events = Vec::with_capacity(alerts.len());
    for (index, alert) in alerts.iter().enumerate() {
        events.push(alert_event(alert, index, external_url.as_deref(), now)?);
    }
    if events.is_empty() {
        return Ok(Ingest::Ignored("the notification carries no alerts".to_string()));
    }
    Ok(Ingest::Events(events))
}

fn alert_event(alert: &Value, index: usize, external_url: Option<&str>, now: &str) -> Result<Event, HookError> {
    let status = text_at(alert, "/status")
        .filter(|status| status == "firing" || status == "resolved")
        .ok_or_else(|| HookError::BadRequest(format!("alerts[{index}].status must be \"firing\" or \"resolved\"")))?;
    let labels = alert
        .get("labels")
        .and_then(Value::as_object)
        .ok_or_else(|| HookError::BadRequest(format!("alerts[{index}] has no labels")))?;
    let label = |name: &str| labels.get(name).and_then(Value::as_str).map(str::to_string);
    let alertname = label("alertname").unwrap_or_else(|| "unnamed alert".to_string());
    let starts_at = text_at(alert, "/startsAt").and_then(|time| normalize_time(&time));
    let ends_at = text_at(alert, "/endsAt").and_then(|time| normalize_time(&time));
    let time = if status == "resolved" { ends_at.clone() } else { starts_at.clone() };
    let fingerprint = text_at(alert, "/fingerprint").unwrap_or_else(|| {
        // Older Alertmanagers send no fingerprint: the sorted labels identify the alert.
        let labels: Vec<String> = labels.iter().map(|(name, value)| format!("{name}={value}")).collect();
        digest_id(&labels.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let start = starts_at.clone().unwrap_or_default();
    let delivery_id = format!("{fingerprint}:{status}:{start}");

    let severity = label("severity");
    let description = text_at(alert, "/annotations/summary").or_else(|| text_at(alert, "/annotations/description"));
    let mut summary = format!("{} {alertname}", status.to_uppercase());
    if let Some(severity) = &severity {
        summary.push_str(&format!(" ({severity})"));
    }
    if let Some(description) = &description {
        summary.push_str(": ");
        summary.push_str(&super::first_line(description, 160));
    }
    let mut event = Event::new(time.unwrap_or_else(|| now.to_string()), SOURCE, EventKind::Alert, summary, delivery_id);
    event.service = label("service").or_else(|| label("app")).or_else(|| label("job"));
    event.environment = label("environment").or_else(|| label("env"));
    event.attribute("alertname", Some(alertname));
    event.attribute("status", Some(status));
    event.attribute("fingerprint", Some(fingerprint));
    event.attribute("starts_at", starts_at);
    event.attribute("ends_at", ends_at);
    event.attribute("runbook_url", text_at(alert, "/annotations/runbook_url"));
    for (name, value) in labels {
        if let Some(value) = value.as_str() {
            event.attribute(&format!("label.{name}"), Some(value));
        }
    }
    event.link(text_at(alert, "/generatorURL"));
    event.link(external_url);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-21T12:30:00.000Z";

    fn payload(status: &str, ends_at: &str) -> Vec<u8> {
        serde_json::json!({
            "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
            "status": status, "receiver": "opsgate", "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [{
                "status": status,
                "labels": {"alertname": "HighErrorRate", "service": "payments-api", "env": "production", "severity": "critical"},
                "annotations": {"summary": "5xx above 5% for 5m", "runbook_url": "https://runbooks/high-error-rate"},
                "startsAt": "2026-11-21T12:00:00.5+00:00", "endsAt": ends_at,
                "generatorURL": "http://prometheus:9090/graph?g0.expr=x", "fingerprint": "c0ffee1234567890"
            }]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_firing_and_a_resolved_alert_become_two_events_with_their_own_times() {
        let Ok(Ingest::Events(firing)) = normalize(&payload("firing", "0001-01-01T00:00:00Z"), NOW) else {
            panic!("firing payload rejected")
        };
        let Ok(Ingest::Events(resolved)) = normalize(&payload("resolved", "2026-11-21T12:20:00Z"), NOW) else {
            panic!("resolved payload rejected")
        };
        let (firing, resolved) = (&firing[0], &resolved[0]);
        assert_eq!(firing.kind, EventKind::Alert);
        assert_eq!(firing.time, "2026-11-21T12:00:00.500Z");
        assert_eq!(resolved.time, "2026-11-21T12:20:00.000Z");
        assert_eq!(firing.summary, "FIRING HighErrorRate (critical): 5xx above 5% for 5m");
        assert!(resolved.summary.starts_with("RESOLVED HighErrorRate"));
        assert_eq!(firing.service.as_deref(), Some("payments-api"));
        assert_eq!(firing.environment.as_deref(), Some("production"));
        assert_eq!(firing.attributes.get("label.severity").map(String::as_str), Some("critical"));
        assert_eq!(firing.attributes.get("ends_at"), None, "Go's zero time is no end");
        assert_ne!(firing.delivery_id, resolved.delivery_id);
        let again = normalize(&payload("firing", "0001-01-01T00:00:00Z"), "2026-11-21T13:30:00.000Z");
        assert_eq!(again, Ok(Ingest::Events(vec![firing.clone()])), "a repeated notification is the same event");
    }

    #[test]
    fn malformed_payloads_are_refused_with_the_reason() {
        let cases: [(&[u8], &str); 4] = [
            (b"not json", "not valid JSON"),
            (br#"{"status":"firing"}"#, "no \"alerts\" array"),
            (br#"{"alerts":[{"status":"weird","labels":{}}]}"#, "alerts[0].status"),
            (br#"{"alerts":[{"status":"firing"}]}"#, "alerts[0] has no labels"),
        ];
        for (body, reason) in cases {
            match normalize(body, NOW) {
                Err(HookError::BadRequest(message)) => assert!(message.contains(reason), "{message}"),
                other => panic!("{} gave {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(matches!(normalize(br#"{"alerts":[]}"#, NOW), Ok(Ingest::Ignored(_))));
    }
}
