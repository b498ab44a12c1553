//! `CallContext::ask` over a scripted channel: what is asked, how, and what comes back.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::*;

/// A client that answers every request with `{"answered": method}` and records what it was asked.
struct Scripted {
    mode: AskMode,
    declared: HashSet<ClientCapability>,
    asked: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ClientChannel for Scripted {
    async fn progress(&self, _progress: f64, _total: Option<f64>, _message: Option<String>) {}
    async fn log(&self, _level: &str, _logger: Option<&str>, _data: Value) {}

    async fn request(&self, method: &str, _params: Value) -> Result<Value, String> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(method.to_string());
        }
        Ok(json!({"answered": method}))
    }

    fn supports(&self, capability: ClientCapability) -> bool {
        self.declared.contains(&capability)
    }

    fn ask_mode(&self) -> AskMode {
        self.mode
    }
}

fn context(mode: AskMode, responses: Value) -> (CallContext, Arc<Scripted>) {
    let declared = HashSet::from([ClientCapability::Elicitation, ClientCapability::Roots]);
    let channel = Arc::new(Scripted { mode, declared, asked: Mutex::default() });
    let mut context = CallContext::new(None, OutputBudget::default(), channel.clone());
    context.input.responses = responses.as_object().cloned().unwrap_or_default();
    (context, channel)
}

fn questions() -> BTreeMap<String, InputRequest> {
    BTreeMap::from([
        ("name".to_string(), InputRequest::elicitation("name?", json!({"type": "object"}))),
        ("roots".to_string(), InputRequest::roots()),
    ])
}

fn asked(channel: &Scripted) -> Vec<String> {
    channel.asked.lock().map(|asked| asked.clone()).unwrap_or_default()
}

#[tokio::test]
async fn in_a_session_only_the_unanswered_questions_are_sent() {
    let (context, channel) = context(AskMode::Request, json!({"name": {"action": "accept"}}));
    let answers = context.ask(questions(), None).await.expect("answers");
    assert_eq!(Value::Object(answers), json!({"name": {"action": "accept"}, "roots": {"answered": "roots/list"}}));
    assert_eq!(asked(&channel), vec!["roots/list"]);
}

#[tokio::test]
async fn without_a_session_the_call_ends_with_the_missing_questions_state_and_answers_so_far() {
    let (context, channel) = context(AskMode::InputRequired, json!({"name": {"action": "accept"}, "junk": 5}));
    let error = context.ask(questions(), Some(json!({"step": 2}))).await.expect_err("input required");
    let ToolError::InputRequired(input_required) = error else { panic!("not input required: {error}") };
    assert_eq!(input_required.requests.keys().collect::<Vec<_>>(), vec!["roots"]);
    assert_eq!(input_required.state, Some(json!({"step": 2})));
    // Non-objects are not answers and are not carried into the next round.
    assert_eq!(Value::Object(input_required.answered), json!({"name": {"action": "accept"}}));
    assert!(asked(&channel).is_empty());
}

#[tokio::test]
async fn an_answer_that_is_not_an_object_is_asked_again() {
    let (context, _channel) = context(AskMode::InputRequired, json!({"name": 12345, "roots": null}));
    let error = context.ask(questions(), None).await.expect_err("input required");
    let ToolError::InputRequired(input_required) = error else { panic!("not input required: {error}") };
    assert_eq!(input_required.requests.len(), 2);
}

#[tokio::test]
async fn a_question_the_client_did_not_declare_it_can_answer_is_refused_up_front() {
    let (context, channel) = context(AskMode::Request, json!({}));
    let sampling = BTreeMap::from([("q".to_string(), InputRequest::sampling("hi", 5))]);
    let error = context.ask(sampling, None).await.expect_err("missing capability");
    assert_eq!(error, ToolError::MissingClientCapability(ClientCapability::Sampling));
    assert!(asked(&channel).is_empty());
}

#[tokio::test]
async fn a_client_that_cannot_be_asked_gets_an_error_naming_the_questions() {
    let (context, _channel) = context(AskMode::Unavailable, json!({}));
    let error = context.ask(questions(), None).await.expect_err("unavailable");
    assert_eq!(error.to_string(), "this client cannot be asked for input (elicitation/create, roots/list)");

    // The CLI declares nothing, so it is told what the call needs.
    let cli = CallContext::new(None, OutputBudget::default(), Arc::new(NoClient));
    let error = cli.ask(questions(), None).await.expect_err("missing capability");
    assert_eq!(error.to_string(), "the client must support elicitation for this call");

    // Everything answered already: no client needed.
    let mut cli = cli;
    cli.input.responses = Map::from_iter([
        ("name".to_string(), json!({"action": "decline"})),
        ("roots".to_string(), json!({"roots": []})),
    ]);
    assert_eq!(cli.ask(questions(), None).await.map(|answers| answers.len()), Ok(2));
}

#[test]
fn server_names_are_lowercase_words_with_hyphens() {
    for good in ["memory", "server-everything", "gh2", "a"] {
        assert!(is_valid_server_name(good), "{good}");
    }
    for bad in ["", "Memory", "2fa", "-x", "my_server", "a.b", "srv/1", &"x".repeat(65)] {
        assert!(!is_valid_server_name(bad), "{bad}");
    }
}

#[test]
fn federated_names_split_at_the_first_double_underscore() {
    assert_eq!(split_federated_name("mcp__memory__read_graph"), Some(("memory", "read_graph")));
    // The server's own tool name may hold `__`: the server name cannot.
    assert_eq!(split_federated_name("mcp__fs__read__file"), Some(("fs", "read__file")));
    assert_eq!(split_federated_name("get_active_alerts"), None);
    assert_eq!(split_federated_name("mcp__Bad__x"), None);
    assert_eq!(split_federated_name("mcp__memory__"), None);
    assert_eq!(split_federated_name("mcp__memory"), None);
}

#[test]
fn a_param_header_is_found_wherever_the_schema_declares_it() {
    let schema = |value: Value| value.as_object().cloned().unwrap_or_default();
    assert!(!names_param_headers(&schema(json!({"type": "object", "properties": {"x": {"type": "string"}}}))));
    let cases = [
        json!({"properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}),
        json!({"properties": {"outer": {"properties": {"inner": {"x-mcp-header": "Inner"}}}}}),
        json!({"anyOf": [{"properties": {"id": {"x-mcp-header": "Id"}}}]}),
        json!({"x-mcp-header": "Root"}),
    ];
    for case in cases {
        assert!(names_param_headers(&schema(case.clone())), "{case}");
    }
}
