//! `/hooks/github`: GitHub webhooks, signed with `X-Hub-Signature-256` (HMAC-SHA256 of the body
//! under the webhook's secret). Kept: `deployment`, `deployment_status`, `workflow_run`
//! (requested and completed), `push`, `pull_request` closed and merged, `release` published.
//! `X-GitHub-Delivery` is the delivery id (a redelivery keeps it). The service defaults to the
//! repository's name, the environment to the deployment's.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{Event, EventKind, HookError, Ingest, first_line, header, normalize_time, parse_json, text_at, text_of};

pub const SOURCE: &str = "github";

pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), HookError> {
    super::verify_hmac_sha256(secret.as_bytes(), header(headers, "x-hub-signature-256"), body, "X-Hub-Signature-256")
}

pub fn normalize(headers: &HeaderMap, body: &[u8], now: &str) -> Result<Ingest, HookError> {
    let kind = header(headers, "x-github-event")
        .ok_or_else(|| HookError::BadRequest("missing X-GitHub-Event header".to_string()))?
        .to_string();
    let payload = parse_json(body, SOURCE)?;
    let action = text_at(&payload, "/action").unwrap_or_default();
    let mut event = match kind.as_str() {
        "ping" => return Ok(Ingest::Ignored("ping: the webhook works".to_string())),
        "deployment" => deployment(&payload, None),
        "deployment_status" => deployment(&payload, payload.get("deployment_status")),
        "workflow_run" if action == "requested" || action == "completed" => workflow_run(&payload, &action),
        "workflow_run" => {
            return Ok(Ingest::Ignored(format!("workflow_run {action}: only requested and completed runs are kept")));
        }
        "push" => push(&payload),
        "pull_request" if action == "closed" && payload.pointer("/pull_request/merged") == Some(&Value::Bool(true)) => {
            merged(&payload)
        }
        "pull_request" => {
            return Ok(Ingest::Ignored(format!("pull_request {action}: only merged pull requests are kept")));
        }
        "release" if action == "published" => release(&payload),
        "release" => return Ok(Ingest::Ignored(format!("release {action}: only published releases are kept"))),
        other => return Ok(Ingest::Ignored(format!("GitHub event {other:?} is not kept"))),
    }?;
    event.delivery_id = header(headers, "x-github-delivery")
        .map(str::to_string)
        .unwrap_or_else(|| super::digest_id(&[&kind, &String::from_utf8_lossy(body)]));
    if event.time.is_empty() {
        event.time = now.to_string();
    }
    event.service = text_at(&payload, "/repository/name");
    event.attribute("repository", text_at(&payload, "/repository/full_name"));
    event.attribute("sender", text_at(&payload, "/sender/login"));
    event.attribute("github_event", Some(kind));
    Ok(Ingest::Events(vec![event]))
}

fn time_at(payload: &Value, pointer: &str) -> String {
    text_at(payload, pointer).and_then(|time| normalize_time(&time)).unwrap_or_default()
}

fn missing(what: &str) -> HookError {
    HookError::BadRequest(format!("github payload has no {what}"))
}

fn deployment(payload: &Value, status: Option<&Value>) -> Result<Event, HookError> {
    let deployment = payload.get("deployment").ok_or_else(|| missing("deployment"))?;
    let sha = text_at(deployment, "/sha").unwrap_or_default();
    let environment = text_at(deployment, "/environment");
    let reference = text_at(deployment, "/ref").unwrap_or_else(|| super::short_sha(&sha).to_string());
    let repository = text_at(payload, "/repository/full_name").unwrap_or_else(|| "a repository".to_string());
    let target = environment.as_deref().unwrap_or("an environment");
    let (summary, time, state) = match status {
        Some(status) => {
            let state = text_at(status, "/state").ok_or_else(|| missing("deployment_status.state"))?;
            (
                format!("deploy of {repository} {reference} to {target}: {state}"),
                time_at(status, "/created_at"),
                Some(state),
            )
        }
        None => (
            format!("deploy of {repository} {reference} to {target} created"),
            time_at(deployment, "/created_at"),
            None,
        ),
    };
    let mut event = Event::new(time, SOURCE, EventKind::Deploy, summary, String::new());
    event.environment = environment;
    event.attribute("sha", Some(sha));
    event.attribute("ref", text_at(deployment, "/ref"));
    event.attribute("state", state);
    event.attribute("deployment_id", text_at(deployment, "/id"));
    event.attribute("creator", text_at(deployment, "/creator/login"));
    event.attribute("description", text_at(deployment, "/description"));
    if let Some(status) = status {
        event.link(text_at(status, "/target_url").or_else(|| text_at(status, "/log_url")));
    }
    event.link(text_at(deployment, "/url"));
    Ok(event)
}

fn workflow_run(payload: &Value, action: &str) -> Result<Event, HookError> {
    let run = payload.get("workflow_run").ok_or_else(|| missing("workflow_run"))?;
    // A run's `name` can be empty (GitHub's own documented `workflow_run` example has `""`): the
    // workflow's name then.
    let name = text_at(run, "/name")
        .filter(|name| !name.is_empty())
        .or_else(|| text_at(payload, "/workflow/name"))
        .unwrap_or_else(|| "workflow".to_string());
    let number = text_at(run, "/run_number").map(|number| format!(" #{number}")).unwrap_or_default();
    let branch = text_at(run, "/head_branch").unwrap_or_default();
    let outcome = if action == "completed" {
        text_at(run, "/conclusion").unwrap_or_else(|| "completed".to_string())
    } else {
        "started".to_string()
    };
    let time = if action == "completed" { time_at(run, "/updated_at") } else { time_at(run, "/run_started_at") };
    let summary = format!("workflow {name}{number} on {branch}: {outcome}");
    let mut event = Event::new(time, SOURCE, EventKind::Pipeline, summary, String::new());
    event.attribute("workflow", Some(name));
    event.attribute("run_id", text_at(run, "/id"));
    event.attribute("branch", Some(branch));
    event.attribute("sha", text_at(run, "/head_sha"));
    event.attribute("status", text_at(run, "/status"));
    event.attribute("conclusion", text_at(run, "/conclusion"));
    event.attribute("trigger", text_at(run, "/event"));
    event.link(text_at(run, "/html_url"));
    Ok(event)
}

fn push(payload: &Value) -> Result<Event, HookError> {
    let reference = text_at(payload, "/ref").ok_or_else(|| missing("ref"))?;
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(&reference).to_string();
    let commits = payload.get("commits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let pusher = text_at(payload, "/pusher/name").unwrap_or_else(|| "someone".to_string());
    let head = payload.get("head_commit").filter(|head| !head.is_null());
    let message = head.and_then(|head| text_at(head, "/message")).map(|message| first_line(&message, 120));
    let mut summary =
        format!("{} commit{} pushed to {branch} by {pusher}", commits.len(), if commits.len() == 1 { "" } else { "s" });
    if let Some(message) = &message {
        summary.push_str(": ");
        summary.push_str(message);
    }
    let time = head.map(|head| time_at(head, "/timestamp")).unwrap_or_default();
    let mut event = Event::new(time, SOURCE, EventKind::Push, summary, String::new());
    event.attribute("branch", Some(branch));
    event.attribute("before", text_at(payload, "/before"));
    event.attribute("sha", text_at(payload, "/after"));
    event.attribute("pusher", Some(pusher));
    event.attribute("n_commits", Some(commits.len().to_string()));
    // The commit list, newest last, one line each: what `what_changed` shows for a push.
    let lines: Vec<String> = commits
        .iter()
        .take(20)
        .filter_map(|commit| {
            let id = text_at(commit, "/id")?;
            let message = text_at(commit, "/message").unwrap_or_default();
            Some(format!("{} {}", super::short_sha(&id), first_line(&message, 100)))
        })
        .collect();
    event.attribute("commits", Some(lines.join("\n")));
    event.link(text_at(payload, "/compare"));
    Ok(event)
}

fn merged(payload: &Value) -> Result<Event, HookError> {
    let pull = payload.get("pull_request").ok_or_else(|| missing("pull_request"))?;
    let number = text_at(pull, "/number").unwrap_or_default();
    let title = text_at(pull, "/title").map(|title| first_line(&title, 120)).unwrap_or_default();
    let base = text_at(pull, "/base/ref").unwrap_or_default();
    let summary = format!("pull request #{number} merged into {base}: {title}");
    let mut event = Event::new(time_at(pull, "/merged_at"), SOURCE, EventKind::Merge, summary, String::new());
    event.attribute("number", Some(number));
    event.attribute("title", Some(title));
    event.attribute("branch", Some(base));
    event.attribute("head_branch", text_at(pull, "/head/ref"));
    event.attribute("sha", text_at(pull, "/merge_commit_sha"));
    event.attribute("author", text_at(pull, "/user/login"));
    event.attribute("merged_by", text_at(pull, "/merged_by/login"));
    let changes = [("additions", "+"), ("deletions", "-"), ("changed_files", "files ")]
        .iter()
        .filter_map(|(field, sign)| pull.get(field).and_then(text_of).map(|n| format!("{sign}{n}")))
        .collect::<Vec<_>>();
    if !changes.is_empty() {
        event.attribute("diff", Some(changes.join(" ")));
    }
    event.link(text_at(pull, "/html_url"));
    Ok(event)
}

fn release(payload: &Value) -> Result<Event, HookError> {
    let release = payload.get("release").ok_or_else(|| missing("release"))?;
    let tag = text_at(release, "/tag_name").unwrap_or_default();
    let name = text_at(release, "/name").filter(|name| !name.is_empty() && *name != tag);
    let summary = match &name {
        Some(name) => format!("release {tag} published: {name}"),
        None => format!("release {tag} published"),
    };
    let mut event = Event::new(time_at(release, "/published_at"), SOURCE, EventKind::Release, summary, String::new());
    event.attribute("tag", Some(tag));
    event.attribute("sha", text_at(release, "/target_commitish"));
    event.attribute("author", text_at(release, "/author/login"));
    event.link(text_at(release, "/html_url"));
    Ok(event)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::hooks::test_support::{attribute, one};

    const NOW: &str = "2026-11-21T12:30:00.000Z";

    /// A payload from `testdata/hooks/github/` (GitHub's documented examples, see the README there).
    fn testdata(name: &str) -> Vec<u8> {
        crate::hooks::test_support::testdata(&format!("github/{name}"))
    }

    fn headers(event: &str, delivery: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", event.parse().expect("header"));
        headers.insert("x-github-delivery", delivery.parse().expect("header"));
        headers
    }

    #[test]
    fn a_push_lists_its_commits() {
        let event = one(normalize(&headers("push", "d-push"), &testdata("push.json"), NOW));
        assert_eq!(event.kind, EventKind::Push);
        assert_eq!(event.service.as_deref(), Some("Hello-World"));
        assert_eq!(event.summary, "1 commit pushed to master by Codertocat: Initial commit");
        assert_eq!(event.time, "2019-05-15T15:19:25.000Z");
        assert_eq!(event.delivery_id, "d-push");
        assert_eq!(attribute(&event, "branch"), Some("master"));
        assert_eq!(attribute(&event, "sha"), Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
        assert_eq!(attribute(&event, "commits"), Some("6113728 Initial commit"));
        assert_eq!(attribute(&event, "repository"), Some("Codertocat/Hello-World"));
    }

    #[test]
    fn a_deployment_status_is_a_deploy_to_its_environment() {
        let event = one(normalize(&headers("deployment_status", "d-ds"), &testdata("deployment_status.json"), NOW));
        assert_eq!(event.kind, EventKind::Deploy);
        assert_eq!(event.service.as_deref(), Some("Hello-World"));
        assert_eq!(event.environment.as_deref(), Some("production"));
        assert_eq!(event.summary, "deploy of Codertocat/Hello-World master to production: success");
        assert_eq!(event.time, "2019-05-15T15:20:55.000Z", "the status's time, not the deployment's");
        assert_eq!(attribute(&event, "state"), Some("success"));
        assert_eq!(attribute(&event, "sha"), Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"));
        assert_eq!(event.links, vec!["https://api.github.com/repos/Codertocat/Hello-World/deployments/145988746"]);
    }

    #[test]
    fn a_completed_workflow_run_is_a_pipeline_named_after_its_workflow() {
        let event = one(normalize(&headers("workflow_run", "d-wr"), &testdata("workflow_run.completed.json"), NOW));
        assert_eq!(event.kind, EventKind::Pipeline);
        assert_eq!(event.service.as_deref(), Some("octo-repo"));
        // The documented run has `"name": ""`: the workflow's name stands in.
        assert_eq!(event.summary, "workflow test #163 on master: success");
        assert_eq!(event.time, "2020-10-05T16:33:49.000Z");
        assert_eq!(attribute(&event, "conclusion"), Some("success"));
        assert_eq!(attribute(&event, "sha"), Some("3484a3fb816e0859fd6e1cea078d76385ff50625"));
        assert_eq!(event.links, vec!["https://github.com/octo-org/octo-repo/actions/runs/289782451"]);
    }

    #[test]
    fn only_a_merged_pull_request_is_kept() {
        let closed = normalize(&headers("pull_request", "d-pr1"), &testdata("pull_request.closed.json"), NOW);
        assert_eq!(closed, Ok(Ingest::Ignored("pull_request closed: only merged pull requests are kept".to_string())));
        let event =
            one(normalize(&headers("pull_request", "d-pr2"), &testdata("pull_request.closed.merged.json"), NOW));
        assert_eq!(event.kind, EventKind::Merge);
        assert_eq!(event.summary, "pull request #2 merged into master: Update the README with new information.");
        assert_eq!(event.time, "2019-05-15T15:21:18.000Z");
        assert_eq!(attribute(&event, "merged_by"), Some("Codertocat"));
        assert_eq!(attribute(&event, "sha"), Some("c4295bd74fb0f4fda03689c3df3f2803b658fd85"));
        assert_eq!(attribute(&event, "diff"), Some("+1 -1 files 1"));
    }

    #[test]
    fn a_published_release_is_kept_and_a_ping_is_not() {
        let event = one(normalize(&headers("release", "d-rel"), &testdata("release.published.json"), NOW));
        assert_eq!(event.kind, EventKind::Release);
        assert_eq!(event.summary, "release 0.0.1 published", "an empty release name is left out");
        assert_eq!(event.time, "2019-05-15T15:20:53.000Z");
        assert_eq!(attribute(&event, "tag"), Some("0.0.1"));
        assert_eq!(
            normalize(&headers("ping", "d-ping"), &testdata("ping.json"), NOW),
            Ok(Ingest::Ignored("ping: the webhook works".to_string()))
        );
    }

    #[test]
    fn unknown_events_are_ignored_and_a_missing_event_header_refused() {
        let body = testdata("ping.json");
        assert!(matches!(
            normalize(&headers("star", "d-star"), &body, NOW),
            Ok(Ingest::Ignored(reason)) if reason.contains("\"star\"")
        ));
        assert!(matches!(
            normalize(&HeaderMap::new(), &body, NOW),
            Err(HookError::BadRequest(reason)) if reason.contains("X-GitHub-Event")
        ));
        assert!(matches!(
            normalize(&headers("push", "d-bad"), b"{\"ref\": 1", NOW),
            Err(HookError::BadRequest(reason)) if reason.contains("not valid JSON")
        ));
    }

    #[test]
    fn without_a_delivery_header_the_id_is_a_digest_of_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", "push".parse().expect("header"));
        let body = testdata("push.json");
        // The same JSON written compactly: other bytes, so another delivery.
        let compact = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).expect("JSON")).expect("serialise");
        let first = one(normalize(&headers, &body, NOW));
        let again = one(normalize(&headers, &body, NOW));
        let other = one(normalize(&headers, &compact, NOW));
        assert_eq!(first.delivery_id, again.delivery_id);
        assert_ne!(first.delivery_id, other.delivery_id);
    }

    #[test]
    fn the_signature_must_match_the_exact_body() {
        let body = testdata("push.json");
        let signature = crate::hooks::test_support::signature("It's a Secret to Everybody", &body);
        let mut headers = headers("push", "d-sig");
        headers.insert("x-hub-signature-256", signature.parse().expect("header"));
        assert_eq!(verify("It's a Secret to Everybody", &headers, &body), Ok(()));
        let mut tampered = body.clone();
        if let Some(byte) = tampered.iter_mut().find(|byte| **byte == b'1') {
            *byte = b'2';
        }
        assert!(matches!(verify("It's a Secret to Everybody", &headers, &tampered), Err(HookError::Unauthorized(_))));
        assert!(matches!(verify("another secret", &headers, &body), Err(HookError::Unauthorized(_))));
        headers.remove("x-hub-signature-256");
        assert!(matches!(verify("It's a Secret to Everybody", &headers, &body), Err(HookError::Unauthorized(_))));
    }
}
