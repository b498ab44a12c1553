//! Tools for the tasks extension: one that never runs as a task, and several that detach and go
//! on in the background (sleeping, failing, breaking, waiting for answers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opsgate_core::{CallContext, InputRequest, TaskSupport, Tool, ToolError, ToolOutput, parse_arguments};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::fixture::{Behaviour, Fixture, accepted};

enum Task {
    Greet,
    SlowCompute,
    FailingJob,
    ProtocolErrorJob,
    ConfirmDelete,
    MultiInput,
    GatherThenDetach,
}

pub fn tools() -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(Fixture::new(
            "greet",
            "Greets someone; never runs as a task",
            json!({"name": {"type": "string", "description": "who to greet"}}),
            &["name"],
            Task::Greet,
        )),
        Arc::new(
            Fixture::new(
                "slow_compute",
                "Sleeps for the given seconds, as a task when the client can poll one",
                json!({
                    "seconds": {"type": "number", "minimum": 0, "description": "how long to work"},
                    "label": {"type": "string", "description": "a name for this run"},
                }),
                &["seconds"],
                Task::SlowCompute,
            )
            .task_support(TaskSupport::Optional),
        ),
        Arc::new(
            Fixture::new("failing_job", "Fails after a second; runs only as a task", json!({}), &[], Task::FailingJob)
                .task_support(TaskSupport::Required),
        ),
        Arc::new(
            Fixture::new(
                "protocol_error_job",
                "Breaks inside the server, which reports a protocol error",
                json!({}),
                &[],
                Task::ProtocolErrorJob,
            )
            .task_support(TaskSupport::Optional),
        ),
        Arc::new(
            Fixture::new(
                "confirm_delete",
                "Asks the user to confirm deleting a file (deletes nothing)",
                json!({"filename": {"type": "string", "description": "the file to pretend to delete"}}),
                &[],
                Task::ConfirmDelete,
            )
            .task_support(TaskSupport::Optional),
        ),
        Arc::new(
            Fixture::new("multi_input", "Asks two questions at once", json!({}), &[], Task::MultiInput)
                .task_support(TaskSupport::Optional),
        ),
        Arc::new(
            Fixture::new(
                "test_tool_with_task",
                "Asks the user's name, then greets them from a task",
                json!({}),
                &[],
                Task::GatherThenDetach,
            )
            .task_support(TaskSupport::Required),
        ),
    ]
}

#[derive(Deserialize)]
struct GreetArguments {
    name: String,
}

#[derive(Deserialize)]
struct SlowComputeArguments {
    seconds: f64,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Deserialize)]
struct ConfirmDeleteArguments {
    #[serde(default)]
    filename: Option<String>,
}

fn confirm_form(message: String) -> InputRequest {
    InputRequest::elicitation(
        message,
        json!({"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}),
    )
}

fn confirmed(answer: Option<&Value>) -> bool {
    answer.and_then(accepted).and_then(|content| content.get("confirm")).and_then(Value::as_bool).unwrap_or(false)
}

#[async_trait::async_trait]
impl Behaviour for Task {
    async fn run(&self, context: CallContext, arguments: Map<String, Value>) -> Result<ToolOutput, ToolError> {
        match self {
            Task::Greet => {
                let arguments: GreetArguments = parse_arguments(arguments)?;
                Ok(ToolOutput::text(format!("Hello, {}!", arguments.name)))
            }
            Task::SlowCompute => {
                let arguments: SlowComputeArguments = parse_arguments(arguments)?;
                if !arguments.seconds.is_finite() || arguments.seconds < 0.0 {
                    return Err(ToolError::InvalidArguments("seconds must be a number of at least 0".to_string()));
                }
                context.client.detach().await;
                tokio::time::sleep(Duration::from_secs_f64(arguments.seconds)).await;
                let label = arguments.label.unwrap_or_else(|| "slow_compute".to_string());
                Ok(ToolOutput::text(format!("{label}: computed for {}s", arguments.seconds)))
            }
            Task::FailingJob => {
                context.client.detach().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                Err(ToolError::Backend("failing_job failed, as it always does".to_string()))
            }
            Task::ProtocolErrorJob => {
                context.client.detach().await;
                // What a bug looks like: the pipeline catches it, audits the call and reports an
                // internal error instead of losing the task.
                panic!("protocol_error_job broke on purpose");
            }
            Task::ConfirmDelete => {
                let arguments: ConfirmDeleteArguments = parse_arguments(arguments)?;
                let filename = arguments.filename.unwrap_or_else(|| "the file".to_string());
                context.client.detach().await;
                let question = confirm_form(format!("Delete {filename}?"));
                let answers = context.ask(BTreeMap::from([("confirm".to_string(), question)]), None).await?;
                let verdict = if confirmed(answers.get("confirm")) { "deleted" } else { "kept" };
                Ok(ToolOutput::text(format!("{filename}: {verdict} (nothing was touched)")))
            }
            Task::MultiInput => {
                context.client.detach().await;
                let requests = BTreeMap::from([
                    ("first".to_string(), confirm_form("First question: go on?".to_string())),
                    ("second".to_string(), confirm_form("Second question: really?".to_string())),
                ]);
                let answers = context.ask(requests, None).await?;
                let n_yes = ["first", "second"].into_iter().filter(|key| confirmed(answers.get(*key))).count();
                Ok(ToolOutput::text(format!("{n_yes} of 2 confirmed")))
            }
            Task::GatherThenDetach => {
                // Gather input while the client waits (input-required rounds), then detach.
                let form = InputRequest::elicitation(
                    "What is your name?",
                    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
                );
                let answers = context.ask(BTreeMap::from([("user_name".to_string(), form)]), None).await?;
                let name = answers
                    .get("user_name")
                    .and_then(accepted)
                    .and_then(|content| content.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("stranger")
                    .to_string();
                context.client.detach().await;
                Ok(ToolOutput::text(format!("Hello, {name}! (answered from a task)")))
            }
        }
    }
}
