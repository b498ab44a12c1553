//! `/hooks/cloudevents`: CloudEvents 1.0 over HTTP, authenticated with a bearer token. All three
//! content modes of the HTTP binding are accepted: structured (`Content-Type:
//! application/cloudevents+json`, the event is the body), batched
//! (`application/cloudevents-batch+json`, a JSON array of structured events, each kept as its own
//! event) and binary (the attributes in `ce-*` headers, percent-decoded; the body is the data).
//! A body with neither a CloudEvents media type nor `ce-*` headers is read as a structured event.
//!
//! `id`, `source`, `type` and `specversion` (`1.0`) are required; the delivery id is
//! `<source>|<id>`, the pair CloudEvents makes unique, and the time is `time`, else now. The kind
//! comes from the CDEvents vocabulary (`dev.cdevents.<subject>.<predicate>.<version>`: service →
//! deploy, pipelinerun/taskrun/build/test runs → pipeline, incident → alert, environment →
//! config, change merged → merge, artifact published → release) and otherwise from keywords in
//! `type`: `deploy`, then `pipeline`/`build`/`workflow`, `alert`, `release`, `config`, else other.
//!
//! Service: `data.service` (a string, or its `name`/`id`); for a CDEvent the subject's
//! `content.service.id`, a `service` subject's id, or the package name in `content.artifactId`
//! (the last path segment of an id, so `service/myapp` is `myapp`); then the `subject` attribute.
//! Environment: `data.environment`/`data.env` (a string, or its `name`/`id`); for a CDEvent
//! `content.environment.id` (or `name`), or an `environment` subject's name or id.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{
    Event, EventKind, HookError, Ingest, first_line, header, is_url, normalize_time, parse_json, text_at, text_of,
};

pub const SOURCE: &str = "cloudevents";

/// Context attributes of the spec, not extensions.
const CONTEXT: [&str; 10] =
    ["id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time", "data", "data_base64"];
/// At most this many extension attributes are kept per event.
const MAX_EXTENSIONS: usize = 20;

pub fn verify(token: &str, headers: &HeaderMap) -> Result<(), HookError> {
    super::verify_bearer(token, headers)
}

pub fn normalize(headers: &HeaderMap, body: &[u8], now: &str) -> Result<Ingest, HookError> {
    let media_type = header(headers, "content-type")
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media_type == "application/cloudevents-batch+json" {
        let payload = parse_json(body, SOURCE)?;
        let batch = payload
            .as_array()
            .ok_or_else(|| HookError::BadRequest("a cloudevents batch must be a JSON array of events".to_string()))?;
        if batch.is_empty() {
            return Ok(Ingest::Ignored("the batch carries no events".to_string()));
        }
        let events = batch
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let attributes = Attributes::structured(item).map_err(|error| in_batch(index, error))?;
                attributes.event(item.get("data"), now).map_err(|error| in_batch(index, error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Ingest::Events(events));
    }
    let binary = media_type != "application/cloudevents+json"
        && ["ce-specversion", "ce-id", "ce-type", "ce-source"].iter().any(|name| headers.contains_key(*name));
    let event = if binary {
        let attributes = Attributes::binary(headers)?;
        let data = binary_data(&media_type, body)?;
        attributes.event(data.as_ref(), now)?
    } else {
        let payload = parse_json(body, SOURCE)?;
        if !payload.is_object() {
            return Err(HookError::BadRequest(
                "a structured cloudevent must be a JSON object (send a batch as application/cloudevents-batch+json)"
                    .to_string(),
            ));
        }
        let attributes = Attributes::structured(&payload)?;
        attributes.event(payload.get("data"), now)?
    };
    Ok(Ingest::Events(vec![event]))
}

fn bad(message: impl Into<String>) -> HookError {
    HookError::BadRequest(message.into())
}

fn in_batch(index: usize, error: HookError) -> HookError {
    match error {
        HookError::BadRequest(message) => HookError::BadRequest(format!("event[{index}]: {message}")),
        other => other,
    }
}

/// An event's context attributes, from whichever mode carried them.
struct Attributes {
    id: Option<String>,
    source: Option<String>,
    specversion: Option<String>,
    kind: Option<String>,
    subject: Option<String>,
    time: Option<String>,
    dataschema: Option<String>,
    extensions: Vec<(String, String)>,
}

impl Attributes {
    fn structured(event: &Value) -> Result<Attributes, HookError> {
        let object = event.as_object().ok_or_else(|| bad("the cloudevent is not a JSON object"))?;
        let text = |value: &Value| text_of(value).filter(|text| !text.is_empty());
        let attribute = |name: &str| object.get(name).and_then(text);
        let extensions = object
            .iter()
            .filter(|(name, _)| !CONTEXT.contains(&name.as_str()))
            .filter_map(|(name, value)| text(value).map(|value| (name.clone(), value)))
            .take(MAX_EXTENSIONS)
            .collect();
        Ok(Attributes {
            id: attribute("id"),
            source: attribute("source"),
            specversion: attribute("specversion"),
            kind: attribute("type"),
            subject: attribute("subject"),
            time: attribute("time"),
            dataschema: attribute("dataschema"),
            extensions,
        })
    }

    fn binary(headers: &HeaderMap) -> Result<Attributes, HookError> {
        let mut attributes = Attributes {
            id: None,
            source: None,
            specversion: None,
            kind: None,
            subject: None,
            time: None,
            dataschema: None,
            extensions: Vec::new(),
        };
        for (name, value) in headers {
            let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
            let text = header_value(name.as_str(), value.as_bytes())?;
            let text = Some(text).filter(|text| !text.is_empty());
            match attribute {
                "id" => attributes.id = text,
                "source" => attributes.source = text,
                "specversion" => attributes.specversion = text,
                "type" => attributes.kind = text,
                "subject" => attributes.subject = text,
                "time" => attributes.time = text,
                "dataschema" => attributes.dataschema = text,
                extension => {
                    if let Some(text) = text
                        && attributes.extensions.len() < MAX_EXTENSIONS
                    {
                        attributes.extensions.push((extension.to_string(), text));
                    }
                }
            }
        }
        Ok(attributes)
    }

    fn event(self, data: Option<&Value>, now: &str) -> Result<Event, HookError> {
        let required = |value: Option<String>, name: &str| {
            value.ok_or_else(|| bad(format!("the cloudevent has no {name} (a required attribute)")))
        };
        let specversion = required(self.specversion, "specversion")?;
        if specversion != "1.0" {
            return Err(bad(format!("specversion must be \"1.0\", not {specversion:?}")));
        }
        let id = required(self.id, "id")?;
        let source = required(self.source, "source")?;
        let kind_text = required(self.kind, "type")?;
        let time = match &self.time {
            Some(time) => {
                Some(normalize_time(time).ok_or_else(|| bad(format!("time {time:?} is not an RFC 3339 timestamp")))?)
            }
            None => None,
        };
        let data = data.filter(|data| !data.is_null());
        let cdevent = CdEvent::parse(&kind_text, data);

        let kind = match &cdevent {
            Some(cdevent) => cdevent.kind(),
            None => keyword_kind(&kind_text),
        };
        let service = data
            .and_then(|data| named(data, "service"))
            .or_else(|| cdevent.as_ref().and_then(CdEvent::service))
            .or_else(|| self.subject.as_deref().map(last_segment));
        let environment = data
            .and_then(|data| named(data, "environment").or_else(|| named(data, "env")))
            .or_else(|| cdevent.as_ref().and_then(CdEvent::environment));
        let summary = match &cdevent {
            Some(cdevent) => cdevent.summary(service.as_deref(), environment.as_deref()),
            None => generic_summary(&kind_text, &source, self.subject.as_deref(), data),
        };

        let delivery = format!("{source}|{id}");
        let mut event = Event::new(time.unwrap_or_else(|| now.to_string()), SOURCE, kind, summary, delivery);
        event.service = service;
        event.environment = environment;
        event.attribute("ce.type", Some(kind_text));
        event.attribute("ce.source", Some(source));
        event.attribute("ce.id", Some(id));
        event.attribute("ce.subject", self.subject);
        event.attribute("ce.dataschema", self.dataschema);
        for (name, value) in self.extensions {
            event.attribute(&format!("ce.{name}"), Some(first_line(&value, 200)));
        }
        match &cdevent {
            Some(cdevent) => cdevent.describe(&mut event),
            None => {
                if let Some(data) = data {
                    let status =
                        ["status", "outcome", "state"].iter().find_map(|name| data.get(name).and_then(text_of));
                    event.attribute("status", status);
                    for name in ["url", "link", "html_url"] {
                        event.link(data.get(name).and_then(text_of).filter(|url| is_url(url)));
                    }
                }
            }
        }
        Ok(event)
    }
}

/// A binary-mode header value: unquoted if it is a quoted string, then percent-decoded once, as
/// the HTTP binding says; it must then be UTF-8.
fn header_value(name: &str, raw: &[u8]) -> Result<String, HookError> {
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|text| text.chars().all(|c| c == '\t' || (' '..='~').contains(&c)))
        .ok_or_else(|| bad(format!("the {name} header is not printable ASCII")))?
        .trim();
    let unquoted: String = match text.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            out
        }
        None => text.to_string(),
    };
    let bytes = unquoted.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let pair = bytes.get(index + 1..index + 3).and_then(|pair| std::str::from_utf8(pair).ok());
            let byte = pair
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| bad(format!("the {name} header has a broken percent-encoding")))?;
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| bad(format!("the {name} header is not UTF-8 once percent-decoded")))
}

/// Binary mode's data: the body, parsed when the content type is JSON (or absent and the body
/// parses); other media types are opaque to opsgate.
fn binary_data(media_type: &str, body: &[u8]) -> Result<Option<Value>, HookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = media_type == "application/json" || media_type.ends_with("+json") || media_type == "text/json";
    if json {
        serde_json::from_slice(body)
            .map(Some)
            .map_err(|error| bad(format!("the cloudevent's data is not valid JSON ({media_type}): {error}")))
    } else if media_type.is_empty() {
        Ok(serde_json::from_slice(body).ok())
    } else {
        Ok(None)
    }
}

fn keyword_kind(kind: &str) -> EventKind {
    let kind = kind.to_ascii_lowercase();
    if kind.contains("deploy") {
        EventKind::Deploy
    } else if ["pipeline", "build", "workflow"].iter().any(|word| kind.contains(word)) {
        EventKind::Pipeline
    } else if kind.contains("alert") {
        EventKind::Alert
    } else if kind.contains("release") {
        EventKind::Release
    } else if kind.contains("config") {
        EventKind::Config
    } else {
        EventKind::Other
    }
}

/// The last path segment of an id: `service/myapp` → `myapp`, `/namespace/taskrun-123` →
/// `taskrun-123`; the id itself when it has none.
fn last_segment(id: &str) -> String {
    id.trim_end_matches('/').rsplit('/').next().filter(|last| !last.is_empty()).unwrap_or(id).to_string()
}

/// `value[field]` as a name: a non-empty string, or an object's `name` or `id`.
fn named(value: &Value, field: &str) -> Option<String> {
    match value.get(field)? {
        Value::String(text) => Some(text.clone()),
        object @ Value::Object(_) => text_at(object, "/name").or_else(|| text_at(object, "/id")),
        _ => None,
    }
    .filter(|text| !text.is_empty())
}

/// The package name in a purl: `pkg:oci/myapp@sha256%3A…` → `myapp`,
/// `pkg:golang/mygit.com/myorg/myapp@234fd47` → `myapp`.
fn purl_name(purl: &str) -> Option<String> {
    let rest = purl.strip_prefix("pkg:")?;
    let path = rest.split(['@', '?', '#']).next()?;
    let (_, name) = path.rsplit_once('/')?;
    Some(name.to_string()).filter(|name| !name.is_empty())
}

fn generic_summary(kind: &str, source: &str, subject: Option<&str>, data: Option<&Value>) -> String {
    let mut summary = format!("{kind} from {source}");
    if let Some(subject) = subject {
        summary.push_str(&format!(" ({})", first_line(subject, 80)));
    }
    let text = data.and_then(|data| {
        ["summary", "message", "title", "description"].iter().find_map(|name| data.get(name).and_then(text_of))
    });
    if let Some(text) = text.map(|text| first_line(&text, 160)).filter(|text| !text.is_empty()) {
        summary.push_str(": ");
        summary.push_str(&text);
    }
    summary
}

/// A CDEvent carried as a CloudEvent's data (the CDEvents CloudEvents binding).
struct CdEvent<'a> {
    subject_kind: String,
    predicate: String,
    subject: Option<&'a Value>,
    content: Option<&'a Value>,
}

impl<'a> CdEvent<'a> {
    fn parse(kind: &str, data: Option<&'a Value>) -> Option<CdEvent<'a>> {
        let rest = kind.strip_prefix("dev.cdevents.")?;
        let mut parts = rest.split('.');
        let subject_kind = parts.next().filter(|part| !part.is_empty())?.to_string();
        let predicate = parts.next().filter(|part| !part.is_empty())?.to_string();
        let subject = data.and_then(|data| data.get("subject")).filter(|subject| subject.is_object());
        let content = subject.and_then(|subject| subject.get("content")).filter(|content| content.is_object());
        Some(CdEvent { subject_kind, predicate, subject, content })
    }

    fn kind(&self) -> EventKind {
        match (self.subject_kind.as_str(), self.predicate.as_str()) {
            ("service", _) => EventKind::Deploy,
            ("environment", _) => EventKind::Config,
            ("pipelinerun" | "taskrun" | "build" | "testcaserun" | "testsuiterun" | "testoutput", _) => {
                EventKind::Pipeline
            }
            ("incident", _) => EventKind::Alert,
            ("change", "merged") => EventKind::Merge,
            ("artifact", "published") => EventKind::Release,
            _ => EventKind::Other,
        }
    }

    fn subject_id(&self) -> Option<String> {
        self.subject.and_then(|subject| text_at(subject, "/id")).filter(|id| !id.is_empty())
    }

    fn content(&self, pointer: &str) -> Option<String> {
        self.content.and_then(|content| text_at(content, pointer)).filter(|text| !text.is_empty())
    }

    fn service(&self) -> Option<String> {
        self.content("/service/id")
            .or_else(|| if self.subject_kind == "service" { self.subject_id() } else { None })
            .map(|id| last_segment(&id))
            .or_else(|| self.content("/artifactId").and_then(|purl| purl_name(&purl)))
    }

    fn environment(&self) -> Option<String> {
        self.content("/environment/id").or_else(|| self.content("/environment/name")).or_else(|| {
            (self.subject_kind == "environment").then(|| self.content("/name").or_else(|| self.subject_id())).flatten()
        })
    }

    fn summary(&self, service: Option<&str>, environment: Option<&str>) -> String {
        let mut summary = format!("{} {}", self.subject_kind, self.predicate);
        let name = match self.subject_kind.as_str() {
            "pipelinerun" => self.content("/pipelineName"),
            "taskrun" => self.content("/taskName"),
            "environment" => environment.map(str::to_string),
            _ => None,
        }
        .or_else(|| service.map(str::to_string))
        .or_else(|| self.subject_id());
        if let Some(name) = name {
            summary.push_str(&format!(": {}", first_line(&name, 80)));
        }
        if let Some(environment) = environment.filter(|_| self.subject_kind != "environment") {
            summary.push_str(&format!(" in {}", first_line(environment, 60)));
        }
        if let Some(outcome) = self.content("/outcome") {
            summary.push_str(&format!(" ({outcome})"));
        }
        let detail = self
            .content("/errors")
            .or_else(|| self.content("/description"))
            .or_else(|| self.content("/artifactId").map(|purl| purl.split('@').next().unwrap_or(&purl).to_string()));
        if let Some(detail) = detail.map(|detail| first_line(&detail, 120)).filter(|detail| !detail.is_empty()) {
            summary.push_str(": ");
            summary.push_str(&detail);
        }
        summary
    }

    fn describe(&self, event: &mut Event) {
        event.attribute("cdevents.subject", Some(self.subject_kind.clone()));
        event.attribute("cdevents.predicate", Some(self.predicate.clone()));
        event.attribute("cdevents.subject_id", self.subject_id());
        event.attribute("status", self.content("/outcome"));
        event.attribute("artifact", self.content("/artifactId"));
        event.attribute("pipeline", self.content("/pipelineName"));
        event.attribute("errors", self.content("/errors").map(|errors| first_line(&errors, 500)));
        event.link(self.content("/uri").or_else(|| self.content("/url")).filter(|url| is_url(url)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::test_support::{attribute, one};

    const NOW: &str = "2026-11-21T12:30:00.000Z";

    /// A payload from `testdata/hooks/cloudevents/` (see the README there).
    fn testdata(name: &str) -> Vec<u8> {
        crate::hooks::test_support::testdata(&format!("cloudevents/{name}"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        headers
    }

    fn structured() -> HeaderMap {
        headers(&[("content-type", "application/cloudevents+json; charset=utf-8")])
    }

    /// The binary-mode headers the CDEvents binding sets for a CDEvent: its context's id, source,
    /// type and timestamp, its subject's id.
    fn cdevent_headers(body: &[u8]) -> HeaderMap {
        let cdevent: Value = serde_json::from_slice(body).expect("JSON");
        let text = |pointer: &str| text_at(&cdevent, pointer).expect(pointer);
        let (id, source, kind, time, subject) = (
            text("/context/id"),
            text("/context/source"),
            text("/context/type"),
            text("/context/timestamp"),
            text("/subject/id"),
        );
        headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", &id),
            ("ce-source", &source),
            ("ce-type", &kind),
            ("ce-time", &time),
            ("ce-subject", &subject),
            ("content-type", "application/json; charset=utf-8"),
        ])
    }

    #[test]
    fn the_bearer_token_must_match() {
        assert!(matches!(verify("t0k", &HeaderMap::new()), Err(HookError::Unauthorized(_))));
        assert_eq!(verify("t0k", &headers(&[("authorization", "Bearer t0k")])), Ok(()));
        assert!(matches!(
            verify("t0k", &headers(&[("authorization", "Bearer nope")])),
            Err(HookError::Unauthorized(_))
        ));
    }

    #[test]
    fn a_structured_event_keeps_its_attributes_and_extensions() {
        let event = one(normalize(&structured(), &testdata("structured-json-data.json"), NOW));
        assert_eq!(event.kind, EventKind::Other, "com.example.someevent names no known kind");
        assert_eq!(event.delivery_id, "/mycontext|C234-1234-1234", "source|id");
        assert_eq!(event.time, "2018-04-05T17:31:00.000Z");
        assert_eq!(event.summary, "com.example.someevent from /mycontext");
        assert_eq!(event.service, None, "no service in the data and a null subject");
        assert_eq!(attribute(&event, "ce.comexampleextension1"), Some("value"));
        assert_eq!(attribute(&event, "ce.comexampleothervalue"), Some("5"));
        assert_eq!(attribute(&event, "ce.subject"), None);

        // An extension is read from the event object, whatever its name holds (a JSON pointer
        // would read `vendor/flag` as a path).
        let vendor = crate::hooks::test_support::edited("cloudevents/structured-json-data.json", |event| {
            event["vendor/flag"] = "on".into();
        });
        assert_eq!(attribute(&one(normalize(&structured(), &vendor, NOW)), "ce.vendor/flag"), Some("on"));

        let xml = one(normalize(&structured(), &testdata("structured-xml-data.json"), NOW));
        assert_eq!(xml.delivery_id, "/mycontext|B234-1234-1234");
        assert_eq!(attribute(&xml, "ce.unsetextension"), None, "a null extension is unset");
    }

    #[test]
    fn a_cdevent_in_binary_mode_is_a_deploy_of_its_service() {
        let body = testdata("cdevents-service-deployed.json");
        let event = one(normalize(&cdevent_headers(&body), &body, NOW));
        assert_eq!(event.kind, EventKind::Deploy);
        assert_eq!(event.delivery_id, "/event/source/123|271069a8-fc18-44f1-b38f-9d70a1695819");
        assert_eq!(event.time, "2023-03-20T14:27:05.315Z");
        assert_eq!(event.service.as_deref(), Some("mySubject123"), "a service subject's id");
        assert_eq!(event.environment.as_deref(), Some("test123"));
        assert_eq!(event.summary, "service deployed: mySubject123 in test123: pkg:oci/myapp");
        assert_eq!(
            attribute(&event, "artifact"),
            Some("pkg:oci/myapp@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427")
        );
        assert_eq!(attribute(&event, "ce.type"), Some("dev.cdevents.service.deployed.0.3.0"));

        // The same event in structured mode is the same delivery.
        let structured_event =
            one(normalize(&structured(), &testdata("cdevents-service-deployed.structured.json"), NOW));
        assert_eq!(structured_event.delivery_id, event.delivery_id);
        assert_eq!(structured_event.kind, EventKind::Deploy);
        assert_eq!(structured_event.service, event.service);
        assert_eq!(structured_event.environment, event.environment);
    }

    #[test]
    fn cdevents_pipeline_runs_and_incidents_map_to_their_kinds() {
        let body = testdata("cdevents-pipelinerun-finished.json");
        let run = one(normalize(&cdevent_headers(&body), &body, NOW));
        assert_eq!(run.kind, EventKind::Pipeline);
        assert_eq!(run.summary, "pipelinerun finished: myPipeline (failure): Something went wrong");
        assert_eq!(attribute(&run, "status"), Some("failure"));
        assert_eq!(run.links, vec!["https://www.example.com/mySubject123".to_string()]);
        assert_eq!(run.service.as_deref(), Some("mySubject123"), "no service: the CloudEvents subject");

        let body = testdata("cdevents-incident-detected.json");
        let incident = one(normalize(&cdevent_headers(&body), &body, NOW));
        assert_eq!(incident.kind, EventKind::Alert);
        assert_eq!(incident.service.as_deref(), Some("myApp"));
        assert_eq!(incident.environment.as_deref(), Some("prod1"));
        assert_eq!(incident.time, "2022-11-11T13:52:20.079Z");
        assert_eq!(incident.summary, "incident detected: myApp in prod1: Response time above threshold of 100ms");
    }

    #[test]
    fn a_batch_is_several_events_and_names_the_bad_one() {
        let first: Value = serde_json::from_slice(&testdata("structured-json-data.json")).expect("JSON");
        let second: Value =
            serde_json::from_slice(&testdata("cdevents-service-deployed.structured.json")).expect("JSON");
        let batch_headers = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let body = serde_json::to_vec(&Value::Array(vec![first.clone(), second])).expect("serialise");
        match normalize(&batch_headers, &body, NOW) {
            Ok(Ingest::Events(events)) => {
                assert_eq!(events.len(), 2);
                assert_eq!(events[0].delivery_id, "/mycontext|C234-1234-1234");
                assert_eq!(events[1].kind, EventKind::Deploy);
            }
            other => panic!("batch gave {other:?}"),
        }
        let mut broken = first.clone();
        broken.as_object_mut().map(|object| object.remove("source"));
        let body = serde_json::to_vec(&Value::Array(vec![first, broken])).expect("serialise");
        assert!(matches!(
            normalize(&batch_headers, &body, NOW),
            Err(HookError::BadRequest(reason)) if reason.starts_with("event[1]: ") && reason.contains("source")
        ));
        assert!(matches!(normalize(&batch_headers, b"[]", NOW), Ok(Ingest::Ignored(_))));
        assert!(matches!(
            normalize(&batch_headers, b"{}", NOW),
            Err(HookError::BadRequest(reason)) if reason.contains("JSON array")
        ));
    }

    #[test]
    fn binary_headers_are_percent_decoded_and_data_read_by_content_type() {
        let body = br#"{"service": "payments-api", "environment": {"name": "production"}, "message": "rolled out v2\nmore", "url": "https://ci.example.com/42"}"#;
        let event = one(normalize(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "42"),
                ("ce-source", "https://ci.example.com/deployer"),
                ("ce-type", "com.example.deployment.finished"),
                ("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
                ("ce-comexampleextension1", "\"quoted value\""),
                ("content-type", "application/json"),
            ]),
            body,
            NOW,
        ));
        assert_eq!(event.kind, EventKind::Deploy);
        assert_eq!(event.time, NOW, "no time attribute: now");
        assert_eq!(event.service.as_deref(), Some("payments-api"));
        assert_eq!(event.environment.as_deref(), Some("production"));
        assert_eq!(attribute(&event, "ce.subject"), Some("Euro € 😀"));
        assert_eq!(attribute(&event, "ce.comexampleextension1"), Some("quoted value"));
        assert_eq!(
            event.summary,
            "com.example.deployment.finished from https://ci.example.com/deployer (Euro € 😀): rolled out v2"
        );
        assert_eq!(event.links, vec!["https://ci.example.com/42".to_string()]);

        let opaque = one(normalize(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "A234-1234-1234"),
                ("ce-source", "/mycontext"),
                ("ce-type", "com.example.someevent"),
                ("content-type", "application/vnd.apache.thrift.binary"),
            ]),
            b"\x00\x01 not json",
            NOW,
        ));
        assert_eq!(opaque.delivery_id, "/mycontext|A234-1234-1234");
    }

    #[test]
    fn types_map_to_kinds_by_keyword() {
        let cases = [
            ("com.example.deploy.finished", EventKind::Deploy),
            ("io.jenkins.build.completed", EventKind::Pipeline),
            ("com.github.workflow_run", EventKind::Pipeline),
            ("org.prometheus.alert.firing", EventKind::Alert),
            ("com.example.release.published", EventKind::Release),
            ("com.example.config.changed", EventKind::Config),
            ("com.example.object.created", EventKind::Other),
        ];
        for (kind, expected) in cases {
            assert_eq!(keyword_kind(kind), expected, "{kind}");
        }
        assert_eq!(CdEvent::parse("dev.cdevents.change.merged.0.2.0", None).map(|c| c.kind()), Some(EventKind::Merge));
        assert_eq!(
            CdEvent::parse("dev.cdevents.artifact.published.0.2.0", None).map(|c| c.kind()),
            Some(EventKind::Release)
        );
        assert_eq!(
            CdEvent::parse("dev.cdevents.environment.created.0.3.0", None).map(|c| c.kind()),
            Some(EventKind::Config)
        );
        assert_eq!(
            CdEvent::parse("dev.cdevents.taskrun.started.0.2.0", None).map(|c| c.kind()),
            Some(EventKind::Pipeline)
        );
        assert_eq!(purl_name("pkg:golang/mygit.com/myorg/myapp@234fd47e07d1004f0aed9c").as_deref(), Some("myapp"));
    }

    #[test]
    fn missing_or_wrong_attributes_are_refused_by_name() {
        let event: Value = serde_json::from_slice(&testdata("structured-json-data.json")).expect("JSON");
        let without = |name: &str| {
            let mut event = event.clone();
            event.as_object_mut().map(|object| object.remove(name));
            serde_json::to_vec(&event).expect("serialise")
        };
        let with = |name: &str, value: Value| {
            let mut event = event.clone();
            event[name] = value;
            serde_json::to_vec(&event).expect("serialise")
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (without("id"), "no id"),
            (without("source"), "no source"),
            (without("type"), "no type"),
            (without("specversion"), "no specversion"),
            (with("specversion", "0.3".into()), "must be \"1.0\""),
            (with("time", "yesterday".into()), "not an RFC 3339"),
            (b"[1, 2]".to_vec(), "must be a JSON object"),
            (b"not json".to_vec(), "not valid JSON"),
        ];
        for (body, reason) in cases {
            match normalize(&structured(), &body, NOW) {
                Err(HookError::BadRequest(message)) => assert!(message.contains(reason), "{reason}: {message}"),
                other => panic!("{} gave {other:?}", String::from_utf8_lossy(&body)),
            }
        }
        let binary = |pairs: &[(&str, &str)]| normalize(&headers(pairs), b"", NOW);
        assert!(matches!(
            binary(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "x")]),
            Err(HookError::BadRequest(reason)) if reason.contains("no source")
        ));
        assert!(matches!(
            binary(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "x"), ("ce-subject", "%C0%A0")]),
            Err(HookError::BadRequest(reason)) if reason.contains("not UTF-8")
        ));
        assert!(matches!(
            binary(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s%2"), ("ce-type", "x")]),
            Err(HookError::BadRequest(reason)) if reason.contains("percent-encoding")
        ));
        assert!(matches!(
            normalize(
                &headers(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "x"), ("content-type", "application/json")]),
                b"{broken",
                NOW
            ),
            Err(HookError::BadRequest(reason)) if reason.contains("data is not valid JSON")
        ));
    }
}
