//! `/hooks/gitlab`: GitLab project or group webhooks, authenticated by the shared secret GitLab
//! sends in `X-Gitlab-Token`. Kept: `Pipeline Hook` (running and finished pipelines: running,
//! success, failed, canceled, skipped), `Deployment Hook` (running, success, failed, canceled)
//! and `Merge Request Hook` when the action is `merge`; every other event or state is answered
//! with the reason it is not kept. `X-Gitlab-Event-UUID` is the delivery id when GitLab sends it,
//! else a digest of the project, the object and its state. The service defaults to the project's
//! name, the environment to the deployment's. GitLab writes most times as `2016-08-12 15:23:28
//! UTC` or `2021-04-28 21:50:00 +0200`, not RFC 3339: both become the store's UTC milliseconds.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{Event, EventKind, HookError, Ingest, digest_id, first_line, header, parse_object, text_at};

pub const SOURCE: &str = "gitlab";

/// Pipeline states kept: the finished ones and `running` (a pipeline that started).
const PIPELINE_STATES: [&str; 5] = ["running", "success", "failed", "canceled", "skipped"];
/// Deployment states GitLab sends a hook for.
const DEPLOYMENT_STATES: [&str; 4] = ["running", "success", "failed", "canceled"];

pub fn verify(token: &str, headers: &HeaderMap) -> Result<(), HookError> {
    let given = header(headers, "x-gitlab-token")
        .ok_or_else(|| HookError::Unauthorized("missing X-Gitlab-Token header".to_string()))?;
    super::verify_token(token, given, "X-Gitlab-Token")
}

pub fn normalize(headers: &HeaderMap, body: &[u8], now: &str) -> Result<Ingest, HookError> {
    let hook = header(headers, "x-gitlab-event")
        .ok_or_else(|| HookError::BadRequest("missing X-Gitlab-Event header".to_string()))?
        .to_string();
    let payload = parse_object(body, SOURCE)?;
    // `object_kind` names the event in the body; a system hook sends the same bodies under
    // `X-Gitlab-Event: System Hook`, so the body decides and the header is the fallback.
    let kind = text_at(&payload, "/object_kind").unwrap_or_else(|| match hook.as_str() {
        "Pipeline Hook" => "pipeline".to_string(),
        "Deployment Hook" => "deployment".to_string(),
        "Merge Request Hook" => "merge_request".to_string(),
        _ => String::new(),
    });
    let outcome = match kind.as_str() {
        "pipeline" => pipeline(&payload)?,
        "deployment" => deployment(&payload)?,
        "merge_request" => merge_request(&payload)?,
        _ => return Ok(Ingest::Ignored(format!("GitLab event {hook:?} is not kept"))),
    };
    let mut event = match outcome {
        Outcome::Kept(event) => event,
        Outcome::Ignored(reason) => return Ok(Ingest::Ignored(reason)),
    };
    if let Some(uuid) = header(headers, "x-gitlab-event-uuid").filter(|uuid| !uuid.is_empty()) {
        event.delivery_id = uuid.to_string();
    }
    if event.time.is_empty() {
        event.time = now.to_string();
    }
    event.service = text_at(&payload, "/project/name")
        .filter(|name| !name.is_empty())
        .or_else(|| project_path(&payload).and_then(|path| path.rsplit('/').next().map(str::to_string)));
    event.attribute("project", project_path(&payload));
    event.attribute("gitlab_event", Some(hook));
    Ok(Ingest::Events(vec![event]))
}

/// Any time GitLab writes, as the store's format: RFC 3339, `2016-08-12 15:23:28 UTC` (webhook
/// bodies) or `2021-04-28 21:50:00 +0200` (`status_changed_at`). `None` for anything else.
pub fn gitlab_time(text: &str) -> Option<String> {
    let text = text.trim();
    if let Some(time) = super::normalize_time(text) {
        return Some(time);
    }
    if let Some(utc) = text.strip_suffix(" UTC") {
        let naive = chrono::NaiveDateTime::parse_from_str(utc.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
        return super::store_time(naive.and_utc());
    }
    let parsed = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f %z").ok()?;
    super::store_time(parsed.with_timezone(&chrono::Utc))
}

fn time_at(value: &Value, pointer: &str) -> Option<String> {
    text_at(value, pointer).and_then(|time| gitlab_time(&time))
}

fn missing(what: &str) -> HookError {
    HookError::BadRequest(format!("gitlab payload has no {what}"))
}

fn project_path(payload: &Value) -> Option<String> {
    text_at(payload, "/project/path_with_namespace")
}

/// What a pipeline, deployment or merge request hook became: its event, or why it is not kept,
/// told by the function that read the object's state.
enum Outcome {
    Kept(Event),
    Ignored(String),
}

/// An object in a state opsgate does not keep: `pipeline 31 is pending: only running, success, …
/// pipelines are kept`.
fn ignored_state(what: &str, id: &str, state: &str, kept: &[&str]) -> Outcome {
    Outcome::Ignored(format!("{what} {id} is {state}: only {} {what}s are kept", kept.join(", ")))
}

/// A pipeline that started or finished; ignored in the states in between (created, pending…).
fn pipeline(payload: &Value) -> Result<Outcome, HookError> {
    let attributes =
        payload.get("object_attributes").filter(|a| a.is_object()).ok_or_else(|| missing("object_attributes"))?;
    let id = text_at(attributes, "/id").ok_or_else(|| missing("object_attributes.id"))?;
    let status = text_at(attributes, "/status").ok_or_else(|| missing("object_attributes.status"))?;
    if !PIPELINE_STATES.contains(&status.as_str()) {
        return Ok(ignored_state("pipeline", &id, &status, &PIPELINE_STATES));
    }
    let reference = text_at(attributes, "/ref").unwrap_or_default();
    let name = text_at(attributes, "/name").filter(|name| !name.is_empty());
    let mut summary = format!("pipeline #{id} on {reference}: {status}");
    if let Some(name) = &name {
        summary.push_str(&format!(" ({})", first_line(name, 80)));
    }
    let commit_title = text_at(payload, "/commit/title").or_else(|| text_at(payload, "/commit/message"));
    if let Some(title) = commit_title.as_deref().map(|title| first_line(title, 100)).filter(|title| !title.is_empty()) {
        summary.push_str(": ");
        summary.push_str(&title);
    }
    let time = if status == "running" {
        time_at(attributes, "/created_at")
    } else {
        time_at(attributes, "/finished_at").or_else(|| time_at(attributes, "/created_at"))
    };
    let project = text_at(payload, "/project/id").unwrap_or_default();
    let delivery = digest_id(&["pipeline", &project, &id, &status]);
    let mut event = Event::new(time.unwrap_or_default(), SOURCE, EventKind::Pipeline, summary, delivery);
    event.attribute("pipeline_id", Some(id));
    event.attribute("pipeline_iid", text_at(attributes, "/iid"));
    event.attribute("pipeline_name", name);
    event.attribute("status", Some(status));
    event.attribute("branch", Some(reference));
    event.attribute("tag", text_at(attributes, "/tag"));
    event.attribute("sha", text_at(attributes, "/sha"));
    event.attribute("before_sha", text_at(attributes, "/before_sha"));
    event.attribute("trigger", text_at(attributes, "/source"));
    event.attribute("duration_s", text_at(attributes, "/duration"));
    event.attribute("user", text_at(payload, "/user/username"));
    event.attribute("merge_request_iid", text_at(payload, "/merge_request/iid"));
    // The jobs that failed, by stage and name: what a person asks first about a red pipeline.
    let failed: Vec<String> = payload
        .get("builds")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|build| text_at(build, "/status").as_deref() == Some("failed"))
        .take(20)
        .map(|build| {
            let stage = text_at(build, "/stage").unwrap_or_default();
            let name = text_at(build, "/name").unwrap_or_default();
            let reason = text_at(build, "/failure_reason").map(|reason| format!(" ({reason})")).unwrap_or_default();
            format!("{stage}:{name}{reason}")
        })
        .collect();
    if !failed.is_empty() {
        event.attribute("failed_jobs", Some(failed.join(", ")));
    }
    event.link(text_at(attributes, "/url"));
    event.link(text_at(payload, "/commit/url"));
    Ok(Outcome::Kept(event))
}

/// A deployment that started or ended; ignored in another state.
fn deployment(payload: &Value) -> Result<Outcome, HookError> {
    let id = text_at(payload, "/deployment_id").ok_or_else(|| missing("deployment_id"))?;
    let status = text_at(payload, "/status").ok_or_else(|| missing("status"))?;
    if !DEPLOYMENT_STATES.contains(&status.as_str()) {
        return Ok(ignored_state("deployment", &id, &status, &DEPLOYMENT_STATES));
    }
    let environment = text_at(payload, "/environment").filter(|environment| !environment.is_empty());
    let commit_url = text_at(payload, "/commit_url");
    // The full SHA is the last segment of `commit_url`; `short_sha` is all the body has besides.
    let sha = commit_url
        .as_deref()
        .and_then(|url| url.rsplit('/').next())
        .filter(|last| super::is_commit_sha(last))
        .map(str::to_string)
        .or_else(|| text_at(payload, "/short_sha"));
    let reference = text_at(payload, "/ref")
        .filter(|reference| !reference.is_empty())
        // GitLab shows commits by their first 8 characters (its own `short_sha`).
        .or_else(|| sha.as_deref().map(|sha| sha.get(..8).unwrap_or(sha).to_string()))
        .unwrap_or_default();
    let project = project_path(payload).unwrap_or_else(|| "a project".to_string());
    let target = environment.as_deref().unwrap_or("an environment");
    let mut summary = format!("deploy of {project} {reference} to {target}: {status}");
    if let Some(title) =
        text_at(payload, "/commit_title").map(|title| first_line(&title, 100)).filter(|t| !t.is_empty())
    {
        summary.push_str(": ");
        summary.push_str(&title);
    }
    let project_id = text_at(payload, "/project/id").unwrap_or_default();
    let delivery = digest_id(&["deployment", &project_id, &id, &status]);
    let time = time_at(payload, "/status_changed_at").unwrap_or_default();
    let mut event = Event::new(time, SOURCE, EventKind::Deploy, summary, delivery);
    event.environment = environment;
    event.attribute("deployment_id", Some(id));
    event.attribute("status", Some(status));
    event.attribute("sha", sha);
    event.attribute("ref", text_at(payload, "/ref"));
    event.attribute("environment_tier", text_at(payload, "/environment_tier"));
    event.attribute("environment_slug", text_at(payload, "/environment_slug"));
    event.attribute("commit_title", text_at(payload, "/commit_title"));
    event.attribute("user", text_at(payload, "/user/username"));
    event.attribute("job_id", text_at(payload, "/deployable_id"));
    event.link(text_at(payload, "/deployable_url"));
    event.link(commit_url);
    event.link(text_at(payload, "/environment_external_url"));
    Ok(Outcome::Kept(event))
}

/// A merge request merged; ignored for any other action (open, update, approved, close…).
fn merge_request(payload: &Value) -> Result<Outcome, HookError> {
    let attributes =
        payload.get("object_attributes").filter(|a| a.is_object()).ok_or_else(|| missing("object_attributes"))?;
    let id = text_at(attributes, "/id").ok_or_else(|| missing("object_attributes.id"))?;
    let iid = text_at(attributes, "/iid").unwrap_or_else(|| id.clone());
    let action = text_at(attributes, "/action");
    if action.as_deref() != Some("merge") {
        let action = action.unwrap_or_else(|| "without action".to_string());
        return Ok(Outcome::Ignored(format!("merge request !{iid} {action}: only merged merge requests are kept")));
    }
    let title = text_at(attributes, "/title").map(|title| first_line(&title, 120)).unwrap_or_default();
    let target = text_at(attributes, "/target_branch").unwrap_or_default();
    let summary = format!("merge request !{iid} merged into {target}: {title}");
    let project_id = text_at(payload, "/project/id").unwrap_or_default();
    let delivery = digest_id(&["merge_request", &project_id, &id, "merge"]);
    let time = time_at(attributes, "/updated_at").unwrap_or_default();
    let mut event = Event::new(time, SOURCE, EventKind::Merge, summary, delivery);
    event.attribute("number", Some(iid));
    event.attribute("title", Some(title));
    event.attribute("branch", Some(target));
    event.attribute("head_branch", text_at(attributes, "/source_branch"));
    event.attribute(
        "sha",
        text_at(attributes, "/merge_commit_sha")
            .filter(|sha| !sha.is_empty())
            .or_else(|| text_at(attributes, "/last_commit/id")),
    );
    event.attribute("merged_by", text_at(payload, "/user/username"));
    event.attribute("author_id", text_at(attributes, "/author_id"));
    event.link(text_at(attributes, "/url"));
    Ok(Outcome::Kept(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::test_support::one;

    const NOW: &str = "2026-11-21T12:30:00.000Z";

    fn testdata(name: &str) -> Value {
        let text = crate::hooks::test_support::testdata(&format!("gitlab/{name}"));
        serde_json::from_slice(&text).expect("testdata is JSON")
    }

    fn headers(event: &str, uuid: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-gitlab-event", event.parse().expect("header"));
        if let Some(uuid) = uuid {
            headers.insert("x-gitlab-event-uuid", uuid.parse().expect("header"));
        }
        headers
    }

    fn body(value: &Value) -> Vec<u8> {
        serde_json::to_vec(value).expect("serialise")
    }

    #[test]
    fn the_token_header_must_match() {
        let mut headers = HeaderMap::new();
        assert!(matches!(verify("s3cret", &headers), Err(HookError::Unauthorized(m)) if m.contains("X-Gitlab-Token")));
        headers.insert("x-gitlab-token", "s3cret".parse().expect("header"));
        assert_eq!(verify("s3cret", &headers), Ok(()));
        headers.insert("x-gitlab-token", "s3cret2".parse().expect("header"));
        assert!(matches!(verify("s3cret", &headers), Err(HookError::Unauthorized(_))));
    }

    #[test]
    fn gitlab_times_become_utc_milliseconds() {
        assert_eq!(gitlab_time("2016-08-12 15:26:29 UTC").as_deref(), Some("2016-08-12T15:26:29.000Z"));
        assert_eq!(gitlab_time("2021-04-28 21:50:00 +0200").as_deref(), Some("2021-04-28T19:50:00.000Z"));
        assert_eq!(gitlab_time("2013-12-03T17:23:34Z").as_deref(), Some("2013-12-03T17:23:34.000Z"));
        assert_eq!(gitlab_time("2012-01-03T23:36:29+02:00").as_deref(), Some("2012-01-03T21:36:29.000Z"));
        assert_eq!(gitlab_time("2016-08-12 15:26:29.5 UTC").as_deref(), Some("2016-08-12T15:26:29.500Z"));
        assert_eq!(gitlab_time("last tuesday"), None);
        assert_eq!(gitlab_time(""), None);
    }

    #[test]
    fn a_finished_pipeline_is_kept_with_its_failed_jobs() {
        let payload = testdata("pipeline.json");
        let event = one(normalize(&headers("Pipeline Hook", Some("7e4b-1")), &body(&payload), NOW));
        assert_eq!(event.kind, EventKind::Pipeline);
        assert_eq!(event.service.as_deref(), Some("Gitlab Test"));
        assert_eq!(event.environment, None);
        assert_eq!(event.time, "2016-08-12T15:26:29.000Z", "finished_at, UTC");
        assert_eq!(event.summary, "pipeline #31 on master: success (Pipeline for branch: master): test");
        assert_eq!(event.delivery_id, "7e4b-1", "X-Gitlab-Event-UUID is the delivery id");
        let attribute = |name: &str| event.attributes.get(name).map(String::as_str);
        assert_eq!(attribute("sha"), Some("bcbb5ec396a2c0f828686f14fac9b80b780504f2"));
        assert_eq!(attribute("branch"), Some("master"));
        assert_eq!(attribute("status"), Some("success"));
        assert_eq!(attribute("pipeline_id"), Some("31"));
        assert_eq!(attribute("project"), Some("gitlab-org/gitlab-test"));
        assert_eq!(attribute("user"), Some("root"));
        assert_eq!(attribute("failed_jobs"), Some("test:test-build (script_failure)"));
        assert_eq!(
            event.links.first().map(String::as_str),
            Some("http://example.com/gitlab-org/gitlab-test/-/pipelines/31")
        );
    }

    #[test]
    fn pipeline_delivery_ids_follow_the_state_when_gitlab_sends_no_uuid() {
        let mut payload = testdata("pipeline.json");
        let success = one(normalize(&headers("Pipeline Hook", None), &body(&payload), NOW));
        let again = one(normalize(&headers("Pipeline Hook", None), &body(&payload), "2026-11-22T00:00:00.000Z"));
        assert_eq!(success.delivery_id, again.delivery_id, "a redelivery is the same event");
        payload["object_attributes"]["status"] = "running".into();
        let running = one(normalize(&headers("Pipeline Hook", None), &body(&payload), NOW));
        assert_ne!(running.delivery_id, success.delivery_id);
        assert_eq!(running.time, "2016-08-12T15:23:28.000Z", "a running pipeline is placed at its creation");
        assert!(running.summary.contains(": running"), "{}", running.summary);
        payload["object_attributes"]["status"] = "pending".into();
        match normalize(&headers("Pipeline Hook", None), &body(&payload), NOW) {
            Ok(Ingest::Ignored(reason)) => assert!(reason.contains("pipeline 31 is pending"), "{reason}"),
            other => panic!("pending pipeline gave {other:?}"),
        }
    }

    #[test]
    fn a_deployment_is_a_deploy_to_its_environment() {
        let payload = testdata("deployment.json");
        let event = one(normalize(&headers("Deployment Hook", None), &body(&payload), NOW));
        assert_eq!(event.kind, EventKind::Deploy);
        assert_eq!(event.service.as_deref(), Some("test-deployment-webhooks"));
        assert_eq!(event.environment.as_deref(), Some("staging"));
        assert_eq!(event.time, "2021-04-28T19:50:00.000Z", "status_changed_at +0200 in UTC");
        assert_eq!(event.summary, "deploy of root/test-deployment-webhooks 279484c0 to staging: success: Add new file");
        assert_eq!(event.attributes.get("sha").map(String::as_str), Some("279484c09fbe69ededfced8c1bb6e6d24616b468"));
        assert_eq!(event.attributes.get("environment_tier").map(String::as_str), Some("staging"));
        assert_eq!(event.links[0], "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796");

        let mut failed = payload.clone();
        failed["status"] = "failed".into();
        let failed = one(normalize(&headers("Deployment Hook", None), &body(&failed), NOW));
        assert_ne!(failed.delivery_id, event.delivery_id, "another state is another event");
        assert!(failed.summary.contains(": failed"));
        let again = one(normalize(&headers("Deployment Hook", None), &body(&payload), NOW));
        assert_eq!(again.delivery_id, event.delivery_id);

        let mut created = payload;
        created["status"] = "created".into();
        assert!(matches!(
            normalize(&headers("Deployment Hook", None), &body(&created), NOW),
            Ok(Ingest::Ignored(reason)) if reason.contains("deployment 15 is created")
        ));
    }

    #[test]
    fn only_a_merged_merge_request_is_kept() {
        let opened = testdata("merge_request.json");
        match normalize(&headers("Merge Request Hook", None), &body(&opened), NOW) {
            Ok(Ingest::Ignored(reason)) => {
                assert_eq!(reason, "merge request !1 open: only merged merge requests are kept")
            }
            other => panic!("an opened merge request gave {other:?}"),
        }
        let mut merged = opened;
        merged["object_attributes"]["action"] = "merge".into();
        merged["object_attributes"]["state"] = "merged".into();
        let event = one(normalize(&headers("Merge Request Hook", None), &body(&merged), NOW));
        assert_eq!(event.kind, EventKind::Merge);
        assert_eq!(event.summary, "merge request !1 merged into master: MS-Viewport");
        assert_eq!(event.service.as_deref(), Some("Gitlab Test"));
        assert_eq!(event.time, "2013-12-03T17:23:34.000Z");
        assert_eq!(event.attributes.get("head_branch").map(String::as_str), Some("ms-viewport"));
        assert_eq!(event.attributes.get("sha").map(String::as_str), Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));
        assert_eq!(event.attributes.get("merged_by").map(String::as_str), Some("root"));
        assert_eq!(event.links, vec!["http://example.com/diaspora/merge_requests/1".to_string()]);
    }

    #[test]
    fn other_events_are_ignored_and_malformed_ones_refused() {
        let push = serde_json::json!({"object_kind": "push", "ref": "refs/heads/master"});
        assert!(matches!(
            normalize(&headers("Push Hook", None), &body(&push), NOW),
            Ok(Ingest::Ignored(reason)) if reason == "GitLab event \"Push Hook\" is not kept"
        ));
        assert!(matches!(
            normalize(&HeaderMap::new(), &body(&push), NOW),
            Err(HookError::BadRequest(reason)) if reason.contains("X-Gitlab-Event")
        ));
        let cases: [(&str, &[u8], &str); 6] = [
            ("Pipeline Hook", b"{not json", "not valid JSON"),
            ("Pipeline Hook", b"[1]", "not a JSON object"),
            ("Pipeline Hook", br#"{"object_kind":"pipeline"}"#, "object_attributes"),
            (
                "Pipeline Hook",
                br#"{"object_kind":"pipeline","object_attributes":{"id":3}}"#,
                "object_attributes.status",
            ),
            ("Deployment Hook", br#"{"object_kind":"deployment","status":"success"}"#, "deployment_id"),
            (
                "Merge Request Hook",
                br#"{"object_kind":"merge_request","object_attributes":{"action":"merge"}}"#,
                "object_attributes.id",
            ),
        ];
        for (hook, body, reason) in cases {
            match normalize(&headers(hook, None), body, NOW) {
                Err(HookError::BadRequest(message)) => assert!(message.contains(reason), "{message}"),
                other => panic!("{} gave {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
