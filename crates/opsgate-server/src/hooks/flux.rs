//! `/hooks/flux`: Flux notification-controller's `generic-hmac` Provider, which posts each event
//! (the `event.toolkit.fluxcd.io` Event: `involvedObject`, `severity`, `timestamp`, `message`,
//! `reason`, `metadata`, `reportingController`) signed with `X-Signature: sha256=<hex HMAC-SHA256
//! of the body>` under the token in the Provider's secret. Kept: Kustomization and HelmRelease
//! events as deploys (applied, progressing, failed), and a source's new artifact (GitRepository,
//! OCIRepository, HelmRepository, HelmChart, Bucket) as a config change; trace events, other
//! source events and other kinds are answered with the reason they are not kept.
//!
//! The service is the object's name (mapping rules can change it), the environment the Alert's
//! `eventMetadata` `env` or `environment` when set, else none. The revision is read from
//! `metadata.revision` (notification-controller strips the controller's group prefix before it
//! posts) or a `<group>/revision` key. The delivery id digests the object, reason, revision and
//! timestamp; for `ReconciliationSucceeded`, which kustomize-controller repeats every interval
//! with the same revision, it leaves the timestamp out, so the applied revision is stored once.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::{
    Event, EventKind, HookError, Ingest, digest_id, first_line, header, normalize_time, parse_object, text_at,
};

pub const SOURCE: &str = "flux";

/// Objects whose events are deploys: they apply manifests or charts to the cluster.
const APPLIERS: [&str; 2] = ["Kustomization", "HelmRelease"];
/// Source objects: a new artifact is a configuration change.
const SOURCES: [&str; 5] = ["GitRepository", "OCIRepository", "HelmRepository", "HelmChart", "Bucket"];

pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), HookError> {
    super::verify_hmac_sha256(secret.as_bytes(), header(headers, "x-signature"), body, "X-Signature")
}

pub fn normalize(body: &[u8], now: &str) -> Result<Ingest, HookError> {
    let payload = parse_object(body, SOURCE)?;
    let object =
        payload.get("involvedObject").filter(|object| object.is_object()).ok_or_else(|| missing("involvedObject"))?;
    let required = |value: &Value, pointer: &str, what: &str| {
        text_at(value, pointer).filter(|text| !text.is_empty()).ok_or_else(|| missing(what))
    };
    let kind = required(object, "/kind", "involvedObject.kind")?;
    let name = required(object, "/name", "involvedObject.name")?;
    let namespace = text_at(object, "/namespace").unwrap_or_default();
    let reason = required(&payload, "/reason", "reason")?;
    let severity = required(&payload, "/severity", "severity")?;
    let message = text_at(&payload, "/message").unwrap_or_default();
    let metadata = match payload.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata.clone(),
        Some(_) => return Err(HookError::BadRequest("flux payload's metadata is not an object".to_string())),
    };
    let object_ref = if namespace.is_empty() { name.clone() } else { format!("{namespace}/{name}") };

    if severity == "trace" {
        return Ok(Ingest::Ignored(format!("{kind} {object_ref} {reason}: trace events are not kept")));
    }
    let revision = meta(&metadata, "revision").or_else(|| {
        // source-controller before v1 said "Fetched revision: <rev>" with no metadata.
        message.strip_prefix("Fetched revision: ").map(|rest| rest.trim().to_string()).filter(|rev| !rev.is_empty())
    });
    let event_kind = if APPLIERS.contains(&kind.as_str()) {
        EventKind::Deploy
    } else if SOURCES.contains(&kind.as_str()) {
        let new_artifact = reason == "NewArtifact" || (severity == "info" && message.starts_with("Fetched revision: "));
        if !new_artifact {
            return Ok(Ingest::Ignored(format!(
                "{kind} {object_ref} {reason}: only a source's new artifacts are kept"
            )));
        }
        EventKind::Config
    } else {
        return Ok(Ingest::Ignored(format!("Flux {kind} events are not kept")));
    };
    let status = if severity == "error" {
        "failed"
    } else if reason.ends_with("Succeeded") || reason == "NewArtifact" || event_kind == EventKind::Config {
        "succeeded"
    } else {
        "progressing"
    };

    let mut summary = format!("{kind} {object_ref}: {reason}");
    if let Some(revision) = &revision {
        summary.push_str(&format!(" ({})", short_revision(revision)));
    }
    let first = first_line(&message, 160);
    if !first.is_empty() {
        summary.push_str(": ");
        summary.push_str(&first);
    }
    let timestamp = text_at(&payload, "/timestamp").and_then(|time| normalize_time(&time));
    let heartbeat = reason == "ReconciliationSucceeded";
    let delivery = digest_id(&[
        SOURCE,
        &kind,
        &namespace,
        &name,
        &reason,
        revision.as_deref().unwrap_or_default(),
        if heartbeat { "" } else { timestamp.as_deref().unwrap_or_default() },
    ]);
    let mut event = Event::new(timestamp.unwrap_or_else(|| now.to_string()), SOURCE, event_kind, summary, delivery);
    event.service = Some(name.clone());
    event.environment = meta(&metadata, "env").or_else(|| meta(&metadata, "environment"));
    event.attribute("flux_kind", Some(kind));
    event.attribute("namespace", Some(namespace));
    event.attribute("name", Some(name));
    event.attribute("reason", Some(reason));
    event.attribute("severity", Some(severity));
    event.attribute("status", Some(status));
    event.attribute("sha", revision.as_deref().and_then(commit_of));
    event.attribute("revision", revision);
    event.attribute("origin_revision", meta(&metadata, "originRevision"));
    event.attribute("reporting_controller", text_at(&payload, "/reportingController"));
    event.attribute("message", Some(super::truncate_chars(&message, 2000)));
    for (key, value) in metadata.iter().take(20) {
        if let Some(value) = value.as_str() {
            event.attribute(&format!("metadata.{key}"), Some(super::truncate_chars(value, 500)));
        }
    }
    Ok(Ingest::Events(vec![event]))
}

fn missing(what: &str) -> HookError {
    HookError::BadRequest(format!("flux payload has no {what}"))
}

/// A metadata value by its key, or by `<group>/<key>` as the controllers write it.
fn meta(metadata: &Map<String, Value>, key: &str) -> Option<String> {
    let suffix = format!("/{key}");
    metadata
        .get(key)
        .or_else(|| metadata.iter().find(|(name, _)| name.ends_with(&suffix)).map(|(_, value)| value))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// The Git commit in a revision: `main@sha1:<40 hex>` or, before Flux 2.0, `main/<40 hex>`.
fn commit_of(revision: &str) -> Option<String> {
    let tail =
        revision.rsplit_once("sha1:").map(|(_, tail)| tail).or_else(|| revision.rsplit_once('/').map(|(_, t)| t))?;
    super::is_commit_sha(tail).then(|| tail.to_string())
}

/// A revision with its digest cut to 7 characters: `main@sha1:8027230`, `main/731f7ea`,
/// `latest@sha256:3b6cdcc`; a chart version as it is.
fn short_revision(revision: &str) -> String {
    for separator in [':', '/'] {
        if let Some((head, digest)) = revision.rsplit_once(separator)
            && digest.len() > 12
            && is_hex(digest)
        {
            return format!("{head}{separator}{}", super::short_sha(digest));
        }
    }
    revision.to_string()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::hooks::test_support::{attribute, one};

    const NOW: &str = "2026-11-21T12:30:00.000Z";

    /// An event from `testdata/hooks/flux/` (Flux's documented examples, see the README there).
    fn testdata(name: &str) -> Vec<u8> {
        crate::hooks::test_support::testdata(&format!("flux/{name}"))
    }

    fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        crate::hooks::test_support::edited(&format!("flux/{name}"), edit)
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_exact_body() {
        let body = testdata("kustomization-validation-failed.json");
        let mut headers = HeaderMap::new();
        let signature = crate::hooks::test_support::signature("flux-token", &body);
        headers.insert("x-signature", signature.parse().expect("header"));
        assert_eq!(verify("flux-token", &headers, &body), Ok(()));
        let tampered = String::from_utf8(body.clone()).expect("UTF-8").replace("webapp", "webapq");
        assert!(matches!(verify("flux-token", &headers, tampered.as_bytes()), Err(HookError::Unauthorized(_))));
        assert!(matches!(verify("other-token", &headers, &body), Err(HookError::Unauthorized(_))));
        assert!(matches!(
            verify("flux-token", &HeaderMap::new(), &body),
            Err(HookError::Unauthorized(reason)) if reason.contains("X-Signature")
        ));
    }

    #[test]
    fn a_reconciled_kustomization_is_a_deploy_stored_once_per_revision() {
        let event = one(normalize(&testdata("kustomization-reconciliation-succeeded.json"), NOW));
        assert_eq!(event.kind, EventKind::Deploy);
        assert_eq!(event.service.as_deref(), Some("flux-system"));
        assert_eq!(event.environment, None, "no environment unless the Alert sends one");
        assert_eq!(event.time, "2023-08-16T10:26:43.000Z");
        assert_eq!(
            event.summary,
            "Kustomization flux-system/flux-system: ReconciliationSucceeded (main@sha1:8027230): \
             Reconciliation finished in 436.493292ms, next run in 10m0s"
        );
        assert_eq!(attribute(&event, "status"), Some("succeeded"));
        assert_eq!(attribute(&event, "sha"), Some("802723078affd3eb2a3898630261ab3ca5d6dd40"));
        assert_eq!(attribute(&event, "revision"), Some("main@sha1:802723078affd3eb2a3898630261ab3ca5d6dd40"));

        // The next interval's heartbeat, same revision: the same event.
        let next = edited("kustomization-reconciliation-succeeded.json", |body| {
            body["timestamp"] = "2023-08-16T10:36:43Z".into();
            body["message"] = "Reconciliation finished in 448.00332ms, next run in 10m0s".into();
        });
        assert_eq!(one(normalize(&next, NOW)).delivery_id, event.delivery_id);
        // A new revision applied: another event.
        let newer = edited("kustomization-reconciliation-succeeded.json", |body| {
            body["metadata"]["revision"] = "main@sha1:4d768edba5d409feb60870dd3b0ac0d307299898".into();
        });
        assert_ne!(one(normalize(&newer, NOW)).delivery_id, event.delivery_id);
    }

    #[test]
    fn progressing_and_failed_applies_keep_their_time_and_metadata() {
        let progressing = one(normalize(&testdata("kustomization-progressing.json"), NOW));
        assert_eq!(progressing.kind, EventKind::Deploy);
        assert_eq!(
            progressing.summary,
            "Kustomization flux-system/podinfo: Progressing (main/9613996): Deployment/podinfo/podinfo configured"
        );
        assert_eq!(attribute(&progressing, "status"), Some("progressing"));
        assert_eq!(attribute(&progressing, "sha"), Some("96139968ca46b53462d1bf94de410a811d2026a1"));
        assert_eq!(attribute(&progressing, "metadata.summary"), Some("staging (us-west-2)"));
        let later = edited("kustomization-progressing.json", |body| body["timestamp"] = "2022-04-20T13:20:28Z".into());
        assert_ne!(one(normalize(&later, NOW)).delivery_id, progressing.delivery_id, "each apply is kept");

        // The controller's prefixed metadata key, as the event API documents it.
        let failed = one(normalize(&testdata("kustomization-validation-failed.json"), NOW));
        assert_eq!(failed.kind, EventKind::Deploy);
        assert_eq!(failed.service.as_deref(), Some("webapp"));
        assert_eq!(failed.time, "2022-10-28T07:26:19.000Z");
        assert_eq!(attribute(&failed, "status"), Some("failed"));
        assert_eq!(attribute(&failed, "revision"), Some("main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"));
        assert_eq!(
            failed.summary,
            "Kustomization apps/webapp: ValidationFailed (main/731f7ea): \
             service/apps/webapp validation error: spec.type: Unsupported value: Ingress"
        );

        let with_env = edited("kustomization-progressing.json", |body| body["metadata"]["env"] = "production".into());
        assert_eq!(
            one(normalize(&with_env, NOW)).environment.as_deref(),
            Some("production"),
            "Alert eventMetadata env"
        );
    }

    #[test]
    fn a_new_source_artifact_is_a_config_change() {
        let event = one(normalize(&testdata("gitrepository-new-artifact.json"), NOW));
        assert_eq!(event.kind, EventKind::Config);
        assert_eq!(event.service.as_deref(), Some("podinfo"));
        assert_eq!(event.time, "2022-02-14T11:23:36.000Z");
        assert_eq!(
            event.summary,
            "GitRepository default/podinfo: NewArtifact (master@sha1:132f4e7): \
             stored artifact for commit 'Merge pull request #160 from stefanprodan/release-6.0.3'"
        );
        assert_eq!(attribute(&event, "sha"), Some("132f4e719209eb10b9485302f8593fc0e680f4fc"));

        // source-controller's older form: reason "info", the revision only in the message.
        let legacy = one(normalize(&testdata("gitrepository-fetched.v1beta1.json"), NOW));
        assert_eq!(legacy.kind, EventKind::Config);
        assert_eq!(attribute(&legacy, "revision"), Some("main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"));
        assert_eq!(legacy.time, "2006-01-02T15:04:05.000Z");

        let failing = edited("gitrepository-new-artifact.json", |body| {
            body["reason"] = "GitOperationFailed".into();
            body["severity"] = "error".into();
        });
        assert!(matches!(
            normalize(&failing, NOW),
            Ok(Ingest::Ignored(reason)) if reason.contains("GitRepository default/podinfo GitOperationFailed")
        ));
    }

    #[test]
    fn trace_events_and_other_kinds_are_ignored() {
        let trace = edited("kustomization-progressing.json", |body| body["severity"] = "trace".into());
        assert!(matches!(normalize(&trace, NOW), Ok(Ingest::Ignored(reason)) if reason.contains("trace")));
        let policy =
            edited("kustomization-progressing.json", |body| body["involvedObject"]["kind"] = "ImagePolicy".into());
        assert!(matches!(normalize(&policy, NOW), Ok(Ingest::Ignored(reason)) if reason.contains("ImagePolicy")));
    }

    #[test]
    fn malformed_events_are_refused_naming_the_field() {
        let no_object = edited("kustomization-progressing.json", |body| body["involvedObject"] = Value::Null);
        let no_kind = edited("kustomization-progressing.json", |body| body["involvedObject"]["kind"] = "".into());
        let no_name = edited("kustomization-progressing.json", |body| {
            body["involvedObject"].as_object_mut().map(|object| object.remove("name"));
        });
        let no_reason = edited("kustomization-progressing.json", |body| {
            body.as_object_mut().map(|object| object.remove("reason"));
        });
        let no_severity = edited("kustomization-progressing.json", |body| body["severity"] = Value::Null);
        let bad_metadata = edited("kustomization-progressing.json", |body| body["metadata"] = "revision".into());
        let cases: [(&[u8], &str); 8] = [
            (b"{", "not valid JSON"),
            (b"\"event\"", "not a JSON object"),
            (&no_object, "involvedObject"),
            (&no_kind, "involvedObject.kind"),
            (&no_name, "involvedObject.name"),
            (&no_reason, "no reason"),
            (&no_severity, "no severity"),
            (&bad_metadata, "metadata is not an object"),
        ];
        for (body, reason) in cases {
            match normalize(body, NOW) {
                Err(HookError::BadRequest(message)) => assert!(message.contains(reason), "{reason}: {message}"),
                other => panic!("{} gave {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn revisions_are_shortened_to_their_commit() {
        assert_eq!(short_revision("main@sha1:802723078affd3eb2a3898630261ab3ca5d6dd40"), "main@sha1:8027230");
        assert_eq!(short_revision("main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"), "main/731f7ea");
        assert_eq!(
            short_revision("latest@sha256:3b6cdcc7adcc9a84d3214ee1c029543789d90b5ae69debe9efa3f66e982875de"),
            "latest@sha256:3b6cdcc"
        );
        assert_eq!(short_revision("6.0.3"), "6.0.3");
        assert_eq!(
            short_revision("environment/dev@sha1:a1afe267b54f38b46b487f6e938a6fd508278c07"),
            "environment/dev@sha1:a1afe26"
        );
        assert_eq!(
            commit_of("environment/dev@sha1:a1afe267b54f38b46b487f6e938a6fd508278c07").as_deref(),
            Some("a1afe267b54f38b46b487f6e938a6fd508278c07")
        );
        assert_eq!(commit_of("latest@sha256:3b6cdcc7adcc9a84d3214ee1c029543789d90b5ae69debe9efa3f66e982875de"), None);
    }
}
