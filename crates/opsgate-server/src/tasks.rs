//! Calls that go on in the background (MCP's tasks extension): the client gets a task id at once
//! and polls `tasks/get` for the result.
//!
//! A task-capable call starts like any other, through the pipeline, while the client waits. It
//! becomes a task only when the tool calls `ClientChannel::detach`: so a tool can first gather
//! what it needs in input-required rounds (each answered at once) and only then go away to work.
//! From that point the call keeps running in its own tokio task, still inside `Pipeline::call`,
//! so its audit record is written when it ends, whether it completed, failed or was cancelled.
//! Questions it asks after detaching park the task in `input_required` until `tasks/update`
//! brings the answers.
//!
//! The task table is rmcp's `TaskManager`: it keeps the wire shapes, expiry and the
//! cancel/update bookkeeping; this module connects it to the pipeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opsgate_core::{AskMode, ClientCapability, ClientChannel, InputRequest};
use rmcp::ErrorData;
use rmcp::model::{CallToolResponse, CreateTaskResult, DetailedTask, InputResponses};
use rmcp::task_manager::{TaskContext, TaskExit, TaskManager, TaskOptions};
use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

use crate::mcp::{call_response, mcp_input_request};
use crate::pipeline::{CallOutcome, CallRequest, Pipeline, RoundInput};

/// The background calls of one server, by task id. Shared by every connection.
#[derive(Clone, Default)]
pub struct Tasks {
    manager: TaskManager,
    /// Parent of every task-capable call's cancellation, so that shutdown can end them all.
    stopping: CancellationToken,
}

impl Tasks {
    pub fn get(&self, task_id: &str) -> Result<DetailedTask, ErrorData> {
        self.manager.get_task(task_id)
    }

    /// Delivers answers to questions a task is parked on; unknown keys are ignored.
    pub fn update(&self, task_id: &str, responses: InputResponses) -> Result<(), ErrorData> {
        self.manager.update_task(task_id, responses)
    }

    /// Asks the task to stop. It settles as `cancelled` once the call has ended and is audited.
    pub fn cancel(&self, task_id: &str) -> Result<(), ErrorData> {
        self.manager.cancel_task(task_id)
    }

    /// Cancels every call still running in the background, for shutdown after the grace
    /// period: each ends through the pipeline, so it is audited as cancelled.
    pub fn shutdown(&self) {
        self.stopping.cancel();
    }
}

/// Runs a call for a client that can poll tasks: answered directly if it ends before the tool
/// detaches, else handed back as a task.
pub async fn call_detachable(
    pipeline: Arc<Pipeline>,
    mut request: CallRequest,
    round: RoundInput,
    with_structured: bool,
) -> Result<CallToolResponse, ErrorData> {
    // The request's own token ends with the HTTP exchange; a task must outlive it, so the call
    // gets a token of its own that the request cancels only until the call detaches.
    let call_cancel = pipeline.tasks().stopping.child_token();
    let request_cancel = std::mem::replace(&mut request.cancel, call_cancel.clone());
    let (detach_requested, detach_wanted) = oneshot::channel();
    let (context_sender, context_receiver) = watch::channel(None);
    request.channel = Arc::new(TaskChannel {
        inner: request.channel.clone(),
        detach_requested: Mutex::new(Some(detach_requested)),
        context: context_receiver,
    });
    let running = pipeline.clone();
    let mut call = tokio::spawn(async move { running.call_round(request, round).await });

    tokio::select! {
        joined = &mut call => return call_response(settled(joined), with_structured),
        () = request_cancel.cancelled() => {
            call_cancel.cancel();
            return call_response(settled(call.await), with_structured);
        }
        Ok(()) = detach_wanted => {}
    }

    let task = pipeline.tasks().manager.spawn(TaskOptions::default(), move |context| {
        // The tool waits in `detach` until it can ask through the task.
        context_sender.send_replace(Some(context.clone()));
        Box::pin(async move {
            let joined = tokio::select! {
                joined = &mut call => joined,
                () = context.cancelled() => {
                    call_cancel.cancel();
                    // The call still ends through the pipeline, which audits it as cancelled.
                    let _ = call.await;
                    return Err(TaskExit::Cancelled);
                }
            };
            match settled(joined) {
                CallOutcome::InputRequired { .. } => Err(TaskExit::Error(ErrorData::internal_error(
                    "the tool asked for input by ending the call after it became a task",
                    None,
                ))),
                outcome => match call_response(outcome, with_structured) {
                    Ok(CallToolResponse::Complete(result)) => Ok(result),
                    Ok(_) => Err(TaskExit::Error(ErrorData::internal_error("the task ended without a result", None))),
                    Err(error) => Err(TaskExit::Error(error)),
                },
            }
        })
    });
    Ok(CreateTaskResult::new(task).into())
}

fn settled(joined: Result<CallOutcome, JoinError>) -> CallOutcome {
    joined.unwrap_or_else(|error| {
        tracing::error!(%error, "a background call ended abnormally");
        CallOutcome::Internal("the call ended abnormally; see the server log".to_string())
    })
}

/// The client channel of a task-capable call: the request's own channel until the call
/// detaches, the task afterwards.
struct TaskChannel {
    inner: Arc<dyn ClientChannel>,
    detach_requested: Mutex<Option<oneshot::Sender<()>>>,
    /// Set once the task exists.
    context: watch::Receiver<Option<TaskContext>>,
}

impl TaskChannel {
    fn task(&self) -> Option<TaskContext> {
        self.context.borrow().clone()
    }
}

#[async_trait::async_trait]
impl ClientChannel for TaskChannel {
    async fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) {
        match self.task() {
            // Nobody waits on the request stream any more; the message is what a poller sees.
            Some(task) => {
                if let Some(message) = message {
                    task.set_status_message(message);
                }
            }
            None => self.inner.progress(progress, total, message).await,
        }
    }

    async fn log(&self, level: &str, logger: Option<&str>, data: Value) {
        if self.task().is_none() {
            self.inner.log(level, logger, data).await;
        }
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        if self.task().is_none() {
            return self.inner.request(method, params).await;
        }
        let key = format!("input-{}", uuid::Uuid::new_v4());
        let request = InputRequest::new(method, params);
        let mut answers = self.request_all(BTreeMap::from([(key.clone(), request)])).await?;
        answers.remove(&key).ok_or_else(|| format!("no answer to {method}"))
    }

    async fn request_all(&self, requests: BTreeMap<String, InputRequest>) -> Result<Map<String, Value>, String> {
        let Some(task) = self.task() else {
            return self.inner.request_all(requests).await;
        };
        // All questions are open at once: the client sees every key in one `tasks/get`.
        let mut waiting = Vec::with_capacity(requests.len());
        for (key, request) in requests {
            let request = mcp_input_request(&request)?;
            let task = task.clone();
            waiting.push(async move {
                let answer = task.request_input(key.clone(), request).await;
                (key, answer)
            });
        }
        let mut answers = Map::new();
        for (key, answer) in futures::future::join_all(waiting).await {
            match answer {
                Ok(answer) => {
                    answers.insert(key, answer);
                }
                Err(TaskExit::Cancelled) => return Err("the task was cancelled while waiting for input".to_string()),
                Err(TaskExit::Error(error)) => return Err(error.message.to_string()),
            }
        }
        Ok(answers)
    }

    fn supports(&self, capability: ClientCapability) -> bool {
        self.inner.supports(capability)
    }

    fn ask_mode(&self) -> AskMode {
        if self.task().is_some() { AskMode::Request } else { self.inner.ask_mode() }
    }

    async fn detach(&self) {
        let sender = self.detach_requested.lock().ok().and_then(|mut sender| sender.take());
        if let Some(sender) = sender {
            // A closed receiver means the call is no longer watched; nothing to wait for.
            if sender.send(()).is_err() {
                return;
            }
        }
        let mut context = self.context.clone();
        // Ends when the task exists, or when the sender is gone because it never will.
        let _ = context.wait_for(Option::is_some).await;
    }
}
