//! An operational event in the one shape every source is normalised to: a deploy, a pipeline run,
//! an alert firing or resolving, a merge, an action opsgate executed, an approval decision.
//! Webhooks (`opsgate-server/src/hooks/`) and the call pipeline produce them; the store keeps
//! them; `timeline`, `what_changed` and `search_context` read them back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened, coarsely: the filter `timeline` takes and the grouping `what_changed` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A version rolled out (GitHub deployment, GitLab deployment, Argo CD sync, Flux apply).
    Deploy,
    /// A CI/CD pipeline or workflow run.
    Pipeline,
    /// Commits pushed to a branch.
    Push,
    /// A pull or merge request merged.
    Merge,
    /// A release published.
    Release,
    /// A configuration change that is not a deploy (a Flux source revision, a config event).
    Config,
    /// An alert firing or resolved.
    Alert,
    /// A write opsgate executed.
    Action,
    /// A human decision on an approval request.
    Approval,
    /// Anything else a source sent (a CloudEvent of an unknown type).
    Other,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Deploy,
        EventKind::Pipeline,
        EventKind::Push,
        EventKind::Merge,
        EventKind::Release,
        EventKind::Config,
        EventKind::Alert,
        EventKind::Action,
        EventKind::Approval,
        EventKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Deploy => "deploy",
            EventKind::Pipeline => "pipeline",
            EventKind::Push => "push",
            EventKind::Merge => "merge",
            EventKind::Release => "release",
            EventKind::Config => "config",
            EventKind::Alert => "alert",
            EventKind::Action => "action",
            EventKind::Approval => "approval",
            EventKind::Other => "other",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The kinds `what_changed` reports: things that changed a service, not observations of it.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            EventKind::Deploy
                | EventKind::Pipeline
                | EventKind::Push
                | EventKind::Merge
                | EventKind::Release
                | EventKind::Config
                | EventKind::Action
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event. `source` + `delivery_id` identify it: a delivery seen twice is stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (the source's time when it gives one), RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Who sent it: `alertmanager`, `github`, `gitlab`, `argocd`, `flux`, `cloudevents`, `opsgate`.
    pub source: String,
    pub kind: EventKind,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// One line a person reads in a timeline.
    pub summary: String,
    /// The source's fields worth keeping, flat: `repository`, `sha`, `status`, `alertname`…
    /// Service and environment mapping rules match on these.
    pub attributes: BTreeMap<String, String>,
    /// URLs: the run, the commit, the alert's generator.
    pub links: Vec<String>,
    /// The source's id of this delivery, or a digest of what makes the event unique.
    pub delivery_id: String,
}

/// The longest summary kept: one line a person reads in a timeline.
pub const MAX_SUMMARY_CHARS: usize = 240;
/// The longest attribute value kept (a commit list keeps its lines within it).
pub const MAX_ATTRIBUTE_CHARS: usize = 2_000;
/// The longest name kept: service, environment, attribute names, link, delivery id.
pub const MAX_NAME_CHARS: usize = 500;
pub const MAX_ATTRIBUTES: usize = 40;
pub const MAX_LINKS: usize = 10;

/// At most `max` characters of `text`, ending in `…` when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The first non-empty line of `text`, at most `max` characters.
pub fn first_line(text: &str, max: usize) -> String {
    truncate_chars(text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default(), max)
}

impl Event {
    /// An event with no service, environment, attributes or links yet.
    pub fn new(
        time: impl Into<String>,
        source: impl Into<String>,
        kind: EventKind,
        summary: impl Into<String>,
        delivery_id: impl Into<String>,
    ) -> Event {
        Event {
            time: time.into(),
            source: source.into(),
            kind,
            service: None,
            environment: None,
            summary: summary.into(),
            attributes: BTreeMap::new(),
            links: Vec::new(),
            delivery_id: delivery_id.into(),
        }
    }

    /// Sets an attribute when there is a value; empty strings are left out.
    pub fn attribute(&mut self, name: &str, value: Option<impl Into<String>>) {
        if let Some(value) = value.map(Into::into).filter(|value| !value.is_empty()) {
            self.attributes.insert(name.to_string(), value);
        }
    }

    /// Cuts what came from a sender to size, whatever the source: the summary to one line, every
    /// value to its limit, and at most `MAX_ATTRIBUTES` attributes and `MAX_LINKS` links. Every
    /// event is bounded before it is stored, so a timeline costs an agent a known number of bytes.
    pub fn bound(&mut self) {
        self.summary = first_line(&self.summary, MAX_SUMMARY_CHARS);
        for name in [&mut self.service, &mut self.environment].into_iter().flatten() {
            *name = first_line(name, MAX_NAME_CHARS);
        }
        if self.attributes.len() > MAX_ATTRIBUTES
            || self.attributes.iter().any(|(name, value)| {
                name.chars().count() > MAX_NAME_CHARS || value.chars().count() > MAX_ATTRIBUTE_CHARS
            })
        {
            self.attributes = std::mem::take(&mut self.attributes)
                .into_iter()
                .take(MAX_ATTRIBUTES)
                .map(|(name, value)| {
                    (truncate_chars(&name, MAX_NAME_CHARS), truncate_chars(&value, MAX_ATTRIBUTE_CHARS))
                })
                .collect();
        }
        self.links.truncate(MAX_LINKS);
        for link in &mut self.links {
            *link = truncate_chars(link, MAX_NAME_CHARS);
        }
    }

    /// Adds a link when there is one.
    pub fn link(&mut self, url: Option<impl Into<String>>) {
        if let Some(url) = url.map(Into::into).filter(|url| !url.is_empty()) {
            self.links.push(url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names_and_serde() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::String(kind.as_str().into())));
        }
        assert_eq!(EventKind::parse("Deploy"), None, "names are lowercase");
    }

    #[test]
    fn summaries_take_the_first_line_bounded() {
        assert_eq!(first_line("\n  Fix the retry loop\n\nLong body", 80), "Fix the retry loop");
        assert_eq!(first_line("abcdef", 4), "abc…");
        assert_eq!(truncate_chars("ünïcödé", 3), "ün…", "cut on characters, not bytes");
    }

    #[test]
    fn bounding_cuts_everything_a_sender_controls() {
        let mut event = Event::new("t", "github", EventKind::Release, "release x: a\nsecond line", "d");
        event.summary = format!("{}\nsecond line", "a".repeat(1_000));
        event.service = Some("svc\ninjected".to_string());
        for index in 0..100 {
            event.attribute(&format!("label.{index:03}"), Some("v".repeat(5_000)));
        }
        event.attribute("commits", Some("4f2a9c1 one\n9b1e22d two"));
        event.links = vec!["https://example.com/run".to_string(); 50];
        event.bound();
        assert_eq!(event.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(event.summary.ends_with('…') && !event.summary.contains('\n'));
        assert_eq!(event.service.as_deref(), Some("svc"));
        assert_eq!(event.attributes.len(), MAX_ATTRIBUTES);
        assert!(event.attributes.values().all(|value| value.chars().count() <= MAX_ATTRIBUTE_CHARS));
        assert_eq!(event.links.len(), MAX_LINKS);
        let mut small = Event::new("t", "github", EventKind::Push, "pushed", "d");
        small.attribute("commits", Some("4f2a9c1 one\n9b1e22d two"));
        let before = small.clone();
        small.bound();
        assert_eq!(small, before, "what fits is left as it is, lines of a commit list included");
    }

    #[test]
    fn empty_attributes_and_links_are_left_out() {
        let mut event = Event::new("2026-11-21T12:00:00.000Z", "github", EventKind::Push, "pushed", "d1");
        event.attribute("sha", Some(""));
        event.attribute("branch", None::<String>);
        event.attribute("repository", Some("acme/payments-api"));
        event.link(Some(""));
        assert_eq!(event.attributes.len(), 1);
        assert!(event.links.is_empty());
    }
}
