//! Tools that ask the client: sampling and elicitation mid-call in 2025-11-25, input-required
//! rounds in 2026-07-28. Every one asks through `CallContext::ask`, so the same tool works on both
//! wires; the suite only calls each on the wire its scenario is about.

use std::collections::BTreeMap;
use std::sync::Arc;

use opsgate_core::{CallContext, ClientCapability, InputRequest, Tool, ToolError, ToolOutput};
use serde_json::{Map, Value, json};

use crate::fixture::{Behaviour, Fixture, accepted, sampled_text};

enum Ask {
    Sampling,
    Elicitation,
    ElicitationDefaults,
    ElicitationEnums,
    MissingCapability,
    StreamingElicitation,
    Name,
    Capital,
    Roots,
    RequestState,
    MultipleInputs,
    MultiRound,
    TamperedState,
    CapabilityAware,
}

pub fn tools() -> Vec<Arc<dyn Tool>> {
    let none = json!({});
    let fixture = |name: &str, description: &str, behaviour: Ask| -> Arc<dyn Tool> {
        Arc::new(Fixture::new(name, description, none.clone(), &[], behaviour))
    };
    vec![
        Arc::new(Fixture::new(
            "test_sampling",
            "Asks the client's model to answer a prompt",
            json!({"prompt": {"type": "string", "description": "what to ask the model"}}),
            &["prompt"],
            Ask::Sampling,
        )),
        Arc::new(Fixture::new(
            "test_elicitation",
            "Asks the user for a username and an email address",
            json!({"message": {"type": "string", "description": "what to tell the user"}}),
            &["message"],
            Ask::Elicitation,
        )),
        fixture(
            "test_elicitation_sep1034_defaults",
            "Asks the user to review a form whose fields have defaults",
            Ask::ElicitationDefaults,
        ),
        fixture(
            "test_elicitation_sep1330_enums",
            "Asks the user to pick from every kind of enum",
            Ask::ElicitationEnums,
        ),
        fixture("test_missing_capability", "Needs sampling, which the client must declare", Ask::MissingCapability),
        fixture("test_streaming_elicitation", "Asks the user a question", Ask::StreamingElicitation),
        fixture("test_input_required_result_elicitation", "Asks the user's name, then greets them", Ask::Name),
        fixture("test_input_required_result_sampling", "Asks the client's model a question", Ask::Capital),
        fixture("test_input_required_result_list_roots", "Asks the client for its roots", Ask::Roots),
        fixture(
            "test_input_required_result_request_state",
            "Asks for a confirmation and checks its own state on the retry",
            Ask::RequestState,
        ),
        fixture(
            "test_input_required_result_multiple_inputs",
            "Asks for an elicitation, a sample and the roots at once",
            Ask::MultipleInputs,
        ),
        fixture("test_input_required_result_multi_round", "Asks two questions in two rounds", Ask::MultiRound),
        fixture(
            "test_input_required_result_tampered_state",
            "Asks a question and hands out state that must come back intact",
            Ask::TamperedState,
        ),
        fixture(
            "test_input_required_result_capabilities",
            "Asks only what the client declared it can answer",
            Ask::CapabilityAware,
        ),
    ]
}

fn one(key: &str, request: InputRequest) -> BTreeMap<String, InputRequest> {
    BTreeMap::from([(key.to_string(), request)])
}

fn answer<'a>(answers: &'a Map<String, Value>, key: &str) -> Result<&'a Value, ToolError> {
    answers.get(key).ok_or_else(|| ToolError::Internal(format!("no answer for {key}")))
}

fn name_form() -> InputRequest {
    InputRequest::elicitation(
        "What is your name?",
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
    )
}

fn greeting(answer: &Value) -> String {
    match accepted(answer).and_then(|content| content.get("name")).and_then(Value::as_str) {
        Some(name) => format!("Hello, {name}!"),
        None => "Hello, whoever you are.".to_string(),
    }
}

#[async_trait::async_trait]
impl Behaviour for Ask {
    async fn run(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        match self {
            Ask::Sampling => {
                let prompt = arguments.get("prompt").and_then(Value::as_str).unwrap_or("Say something");
                let answers = context.ask(one("sample", InputRequest::sampling(prompt, 100)), None).await?;
                let text = sampled_text(answer(&answers, "sample")?).unwrap_or("(no text)");
                Ok(ToolOutput::text(format!("LLM response: {text}")))
            }
            Ask::Elicitation => {
                let message =
                    arguments.get("message").and_then(Value::as_str).unwrap_or("Please provide your information");
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"},
                    },
                    "required": ["username", "email"],
                });
                let answers = context.ask(one("user", InputRequest::elicitation(message, schema)), None).await?;
                let user = answer(&answers, "user")?;
                let action = user.get("action").and_then(Value::as_str).unwrap_or("unknown");
                let content = user.get("content").cloned().unwrap_or(Value::Null);
                Ok(ToolOutput::text(format!("User response: action={action}, content={content}")))
            }
            Ask::ElicitationDefaults => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "User name", "default": "John Doe"},
                        "age": {"type": "integer", "description": "User age", "default": 30},
                        "score": {"type": "number", "description": "User score", "default": 95.5},
                        "status": {
                            "type": "string",
                            "description": "User status",
                            "enum": ["active", "inactive", "pending"],
                            "default": "active",
                        },
                        "verified": {"type": "boolean", "description": "Verification status", "default": true},
                    },
                });
                let form = InputRequest::elicitation("Please review and update the form fields with defaults", schema);
                let answers = context.ask(one("form", form), None).await?;
                Ok(ToolOutput::text(format!("Elicitation completed: {}", answer(&answers, "form")?)))
            }
            Ask::ElicitationEnums => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {
                            "type": "string",
                            "description": "Pick one",
                            "enum": ["option1", "option2", "option3"],
                        },
                        "titledSingle": {
                            "type": "string",
                            "description": "Pick one, by title",
                            "oneOf": [
                                {"const": "value1", "title": "First Option"},
                                {"const": "value2", "title": "Second Option"},
                                {"const": "value3", "title": "Third Option"},
                            ],
                        },
                        "legacyEnum": {
                            "type": "string",
                            "description": "Pick one, old style",
                            "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"],
                        },
                        "untitledMulti": {
                            "type": "array",
                            "description": "Pick several",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                        },
                        "titledMulti": {
                            "type": "array",
                            "description": "Pick several, by title",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": {"anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"},
                            ]},
                        },
                    },
                });
                let answers =
                    context.ask(one("enums", InputRequest::elicitation("Pick your options", schema)), None).await?;
                Ok(ToolOutput::text(format!("Elicitation completed: {}", answer(&answers, "enums")?)))
            }
            Ask::MissingCapability => {
                let answers =
                    context.ask(one("sample", InputRequest::sampling("Say hello in one word", 20)), None).await?;
                Ok(ToolOutput::text(format!("sampled: {}", sampled_text(answer(&answers, "sample")?).unwrap_or(""))))
            }
            Ask::StreamingElicitation => {
                let answers = context.ask(one("user_name", name_form()), None).await?;
                Ok(ToolOutput::text(greeting(answer(&answers, "user_name")?)))
            }
            Ask::Name => {
                let answers = context.ask(one("user_name", name_form()), None).await?;
                Ok(ToolOutput::text(greeting(answer(&answers, "user_name")?)))
            }
            Ask::Capital => {
                let question = InputRequest::sampling("What is the capital of France?", 100);
                let answers = context.ask(one("capital_question", question), None).await?;
                let text = sampled_text(answer(&answers, "capital_question")?).unwrap_or("(no answer)");
                Ok(ToolOutput::text(format!("The model says: {text}")))
            }
            Ask::Roots => {
                let answers = context.ask(one("client_roots", InputRequest::roots()), None).await?;
                let roots = answer(&answers, "client_roots")?.get("roots").and_then(Value::as_array).map(Vec::len);
                Ok(ToolOutput::text(format!("The client has {} root(s)", roots.unwrap_or(0))))
            }
            Ask::RequestState => {
                let state = json!({"step": "confirm"});
                let confirm = InputRequest::elicitation(
                    "Please confirm",
                    json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}),
                );
                context.ask(one("confirm", confirm), Some(state.clone())).await?;
                // The answer alone could be forged; the state came back sealed.
                let verdict = if context.input.state.as_ref() == Some(&state) { "state-ok" } else { "state-missing" };
                Ok(ToolOutput::text(format!("confirmed: {verdict}")))
            }
            Ask::MultipleInputs => {
                let requests = BTreeMap::from([
                    ("user_name".to_string(), name_form()),
                    ("greeting".to_string(), InputRequest::sampling("Write a one-line greeting", 50)),
                    ("client_roots".to_string(), InputRequest::roots()),
                ]);
                let answers = context.ask(requests, Some(json!({"asked": 3}))).await?;
                Ok(ToolOutput::text(format!("{} answers: {}", answers.len(), greeting(answer(&answers, "user_name")?))))
            }
            Ask::MultiRound => {
                let step = |n: u32| {
                    InputRequest::elicitation(
                        format!("Step {n}: anything to add?"),
                        json!({"type": "object", "properties": {"note": {"type": "string"}}}),
                    )
                };
                context.ask(one("step1", step(1)), Some(json!({"round": 1}))).await?;
                context.ask(one("step2", step(2)), Some(json!({"round": 2}))).await?;
                Ok(ToolOutput::text("Both rounds answered"))
            }
            Ask::TamperedState => {
                let answers = context.ask(one("user_name", name_form()), Some(json!({"issued": "by opsgate"}))).await?;
                Ok(ToolOutput::text(greeting(answer(&answers, "user_name")?)))
            }
            Ask::CapabilityAware => {
                // Ask only what the client can answer: a form if it can show one, else its model.
                let (key, request) = if context.client.supports(ClientCapability::Elicitation) {
                    ("user_name", name_form())
                } else {
                    ("sample", InputRequest::sampling("Make up a name", 20))
                };
                let answers = context.ask(one(key, request), None).await?;
                Ok(ToolOutput::text(format!("answered {key}: {}", answer(&answers, key)?)))
            }
        }
    }
}
