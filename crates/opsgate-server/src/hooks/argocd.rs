//! `/hooks/argocd`: Argo CD notifications' webhook service, authenticated with a bearer token
//! (the service's `Authorization` header). Argo CD posts whatever body a template renders, so
//! opsgate defines the template: `testdata/hooks/argocd/argocd-notifications-cm.yaml` is the
//! ready-to-paste `argocd-notifications-cm` (service `opsgate`, template `opsgate-sync`, trigger
//! `on-opsgate-sync`, a conditions bundle sending on Running, Succeeded and Error/Failed). The
//! body it renders, one JSON object:
//!
//! ```json
//! {"event": "sync", "app": "guestbook", "project": "default", "environment": "staging",
//!  "destination": {"server": "https://kubernetes.default.svc", "name": "", "namespace": "guestbook"},
//!  "revision": "f3937462080c6946ff5ec4b5fa393e7c22388e4c", "syncStatus": "Synced",
//!  "healthStatus": "Healthy", "phase": "Succeeded", "startedAt": "", "finishedAt": "2023-08-03T11:16:17Z",
//!  "message": "successfully synced (all tasks run)", "initiatedBy": "admin", "automated": false,
//!  "url": "https://argocd.example.com/applications/guestbook"}
//! ```
//!
//! from `.app.metadata.name`, `.app.spec.project`, the Application's `environment` label,
//! `.app.spec.destination.*`, `.app.status.sync.revision`/`.status`, `.app.status.health.status`,
//! `.app.status.operationState.{phase,startedAt,finishedAt,message,operation.initiatedBy}` and
//! `.context.argocdUrl`. `app` and `phase` are required. Each sync phase kept (Running,
//! Succeeded, Failed, Error) is a deploy of the app (the service) to the label's environment (none
//! without the label); the delivery id digests app, revision, phase and the operation's times, so
//! a notification Argo CD retries is stored once.

use axum::http::HeaderMap;

use super::{
    Event, EventKind, HookError, Ingest, digest_id, first_line, normalize_time, parse_object, text_at, text_of,
};

pub const SOURCE: &str = "argocd";

/// The operation phases kept: a sync that started, and the three ways one ends.
const PHASES: [&str; 4] = ["Running", "Succeeded", "Failed", "Error"];

pub fn verify(token: &str, headers: &HeaderMap) -> Result<(), HookError> {
    super::verify_bearer(token, headers)
}

pub fn normalize(body: &[u8], now: &str) -> Result<Ingest, HookError> {
    let payload = parse_object(body, SOURCE)?;
    let field = |name: &str| payload.get(name).and_then(text_of).filter(|value| !value.is_empty());
    let app = field("app").ok_or_else(|| missing("app", ".app.metadata.name"))?;
    let phase = field("phase").ok_or_else(|| missing("phase", ".app.status.operationState.phase"))?;
    if let Some(event) = field("event").filter(|event| event != "sync") {
        return Ok(Ingest::Ignored(format!("Argo CD event {event:?} is not kept: only \"sync\" is")));
    }
    if !PHASES.contains(&phase.as_str()) {
        return Ok(Ingest::Ignored(format!(
            "sync of {app} is {phase}: only Running, Succeeded, Failed and Error syncs are kept"
        )));
    }
    let status = match phase.as_str() {
        "Running" => "running",
        "Succeeded" => "succeeded",
        _ => "failed",
    };
    let revision = field("revision");
    let started_at = field("startedAt").and_then(|time| normalize_time(&time));
    let finished_at = field("finishedAt").and_then(|time| normalize_time(&time));
    let destination = |name: &str| text_at(&payload, &format!("/destination/{name}")).filter(|value| !value.is_empty());
    let target = destination("namespace")
        .or_else(|| destination("name"))
        .or_else(|| destination("server"))
        .unwrap_or_else(|| "its destination".to_string());
    let health = field("healthStatus");
    let message = field("message");

    let mut summary = format!("sync of {app}");
    if let Some(revision) = &revision {
        summary.push(' ');
        summary.push_str(short_revision(revision));
    }
    summary.push_str(&format!(" to {target}: {phase}"));
    if let Some(health) = &health {
        summary.push_str(&format!(" ({health})"));
    }
    if let Some(message) = message.as_deref().map(|message| first_line(message, 160)).filter(|m| !m.is_empty()) {
        summary.push_str(": ");
        summary.push_str(&message);
    }
    let delivery = digest_id(&[
        SOURCE,
        &app,
        revision.as_deref().unwrap_or_default(),
        &phase,
        started_at.as_deref().unwrap_or_default(),
        finished_at.as_deref().unwrap_or_default(),
    ]);
    let time = if phase == "Running" { started_at.clone() } else { finished_at.clone().or_else(|| started_at.clone()) };
    let mut event = Event::new(time.unwrap_or_else(|| now.to_string()), SOURCE, EventKind::Deploy, summary, delivery);
    event.service = Some(app.clone());
    event.environment = field("environment");
    event.attribute("app", Some(app));
    event.attribute("project", field("project"));
    event.attribute("revision", revision.clone());
    event.attribute("sha", revision.filter(|revision| super::is_commit_sha(revision)));
    event.attribute("phase", Some(phase));
    event.attribute("status", Some(status));
    event.attribute("sync_status", field("syncStatus"));
    event.attribute("health_status", health);
    event.attribute("started_at", started_at);
    event.attribute("finished_at", finished_at);
    event.attribute("destination_server", destination("server"));
    event.attribute("destination_name", destination("name"));
    event.attribute("destination_namespace", destination("namespace"));
    let automated = text_at(&payload, "/automated").as_deref() == Some("true");
    event.attribute("initiated_by", field("initiatedBy").or_else(|| automated.then(|| "automated sync".to_string())));
    event.attribute("message", message.map(|message| first_line(&message, 500)));
    event.attribute("event", field("event"));
    event.link(field("url").filter(|url| super::is_url(url)));
    Ok(Ingest::Events(vec![event]))
}

fn missing(field: &str, template: &str) -> HookError {
    HookError::BadRequest(format!("argocd payload has no {field:?} (the opsgate template sends {template} there)"))
}

/// A Git commit shortened to 7 characters; a chart version or tag as it is.
fn short_revision(revision: &str) -> &str {
    if super::is_commit_sha(revision) { super::short_sha(revision) } else { revision }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::hooks::test_support::one;

    const NOW: &str = "2026-11-21T12:30:00.000Z";

    /// A body rendered by the opsgate template (see `testdata/hooks/README.md`).
    fn testdata(name: &str) -> Vec<u8> {
        crate::hooks::test_support::testdata(&format!("argocd/{name}"))
    }

    fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        crate::hooks::test_support::edited(&format!("argocd/{name}"), edit)
    }

    #[test]
    fn the_bearer_token_must_match() {
        let mut headers = HeaderMap::new();
        assert!(matches!(verify("t0k", &headers), Err(HookError::Unauthorized(_))));
        headers.insert("authorization", "Bearer t0k".parse().expect("header"));
        assert_eq!(verify("t0k", &headers), Ok(()));
        headers.insert("authorization", "Bearer t0k2".parse().expect("header"));
        assert!(matches!(verify("t0k", &headers), Err(HookError::Unauthorized(_))));
    }

    #[test]
    fn a_succeeded_sync_is_a_deploy_of_the_app_to_its_environment() {
        let event = one(normalize(&testdata("guestbook-succeeded.json"), NOW));
        assert_eq!(event.kind, EventKind::Deploy);
        assert_eq!(event.service.as_deref(), Some("guestbook"));
        assert_eq!(event.environment.as_deref(), Some("staging"), "the Application's environment label");
        assert_eq!(event.time, "2023-08-03T11:16:17.000Z", "finishedAt");
        assert_eq!(
            event.summary,
            "sync of guestbook f393746 to guestbook: Succeeded (Healthy): successfully synced (all tasks run)"
        );
        let attribute = |name: &str| event.attributes.get(name).map(String::as_str);
        assert_eq!(attribute("sha"), Some("f3937462080c6946ff5ec4b5fa393e7c22388e4c"));
        assert_eq!(attribute("status"), Some("succeeded"));
        assert_eq!(attribute("sync_status"), Some("Synced"));
        assert_eq!(attribute("initiated_by"), Some("admin"));
        assert_eq!(attribute("destination_server"), Some("https://kubernetes.default.svc"));
        assert_eq!(attribute("destination_name"), None, "empty fields are left out");
        assert_eq!(event.links, vec!["https://argocd.example.com/applications/guestbook".to_string()]);
    }

    #[test]
    fn running_and_failed_syncs_are_their_own_events() {
        let succeeded = one(normalize(&testdata("guestbook-succeeded.json"), NOW));
        let running = one(normalize(&testdata("guestbook-running.json"), NOW));
        assert_eq!(running.time, "2023-08-03T11:16:02.000Z", "a running sync is placed at startedAt");
        assert_eq!(running.attributes.get("status").map(String::as_str), Some("running"));
        assert_eq!(running.attributes.get("initiated_by").map(String::as_str), Some("automated sync"));
        assert_ne!(running.delivery_id, succeeded.delivery_id);

        let failed = one(normalize(&testdata("sealed-secrets-failed.json"), NOW));
        assert_eq!(failed.service.as_deref(), Some("sealed-secrets"));
        assert_eq!(failed.environment, None, "no environment label, no environment");
        assert_eq!(failed.attributes.get("status").map(String::as_str), Some("failed"));
        assert_eq!(failed.attributes.get("sha"), None, "a chart version is no commit");
        assert!(
            failed.summary.starts_with("sync of sealed-secrets 1.16.1 to kubeseal: Failed (Degraded): one or more")
        );
        assert!(failed.summary.chars().count() < 240, "the summary is bounded: {}", failed.summary);

        let again = one(normalize(&testdata("guestbook-succeeded.json"), "2026-11-22T08:00:00.000Z"));
        assert_eq!(again, succeeded, "a retried notification is the same event");
        let resynced = one(normalize(
            &edited("guestbook-succeeded.json", |body| body["finishedAt"] = "2023-08-03T12:00:00Z".into()),
            NOW,
        ));
        assert_ne!(resynced.delivery_id, succeeded.delivery_id, "a later sync of the same revision is another event");
    }

    #[test]
    fn without_times_the_event_is_placed_now() {
        let body = edited("guestbook-succeeded.json", |body| body["finishedAt"] = "".into());
        assert_eq!(one(normalize(&body, NOW)).time, NOW);
    }

    #[test]
    fn other_phases_and_events_are_ignored_and_malformed_bodies_refused() {
        let terminating = edited("guestbook-running.json", |body| body["phase"] = "Terminating".into());
        assert!(matches!(normalize(&terminating, NOW), Ok(Ingest::Ignored(reason)) if reason.contains("Terminating")));
        let created = edited("guestbook-running.json", |body| body["event"] = "created".into());
        assert!(matches!(normalize(&created, NOW), Ok(Ingest::Ignored(reason)) if reason.contains("\"created\"")));
        let no_app = edited("guestbook-running.json", |body| body["app"] = "".into());
        let no_phase = edited("guestbook-running.json", |body| {
            body.as_object_mut().map(|object| object.remove("phase"));
        });
        let cases: [(&[u8], &str); 4] = [
            (b"Application guestbook synced", "not valid JSON"),
            (b"[]", "not a JSON object"),
            (&no_app, "no \"app\""),
            (&no_phase, "no \"phase\""),
        ];
        for (body, reason) in cases {
            match normalize(body, NOW) {
                Err(HookError::BadRequest(message)) => assert!(message.contains(reason), "{message}"),
                other => panic!("{} gave {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
