//! Federated servers' resources and prompts, beside opsgate's own. Names take the tool prefix
//! (`mcp__<server>__<name>`); a prompt is found by its name, a resource by its URI, which stays the
//! server's own so that resource links in tool results keep working. Text read from a server is
//! redacted like a tool's output.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use opsgate_core::federated_name;
use opsgate_policy::redact::Redactor;
use opsgate_server::surface::Surface;
use opsgate_server::{Change, ChangeFeed};
use rmcp::ErrorData;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResponse, Prompt,
    ReadResourceRequestParams, ReadResourceResult, Resource, ResourceTemplate,
};

use crate::tool::Link;

/// What one connected server offers besides tools, as it listed them.
pub struct Offer {
    pub link: Arc<Link>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
}

/// Every connected server's offer, shared by the supervisors (who write) and the surface (which
/// reads). Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    offers: Arc<RwLock<BTreeMap<String, Arc<Offer>>>>,
    changes: ChangeFeed,
}

impl Catalog {
    /// A catalog that announces its changes on `changes` (the registry's feed).
    pub fn new(changes: ChangeFeed) -> Catalog {
        Catalog { offers: Arc::default(), changes }
    }

    /// Replaces `server`'s offer and tells clients what changed.
    pub fn set(&self, server: &str, offer: Offer) {
        let offer = Arc::new(offer);
        let previous =
            self.offers.write().unwrap_or_else(PoisonError::into_inner).insert(server.to_string(), offer.clone());
        self.announce(previous.as_deref(), Some(&offer));
    }

    /// Takes `server`'s offer away (it stopped) and tells clients, if it offered anything.
    pub fn remove(&self, server: &str) {
        let previous = self.offers.write().unwrap_or_else(PoisonError::into_inner).remove(server);
        self.announce(previous.as_deref(), None);
    }

    fn get(&self, server: &str) -> Option<Arc<Offer>> {
        self.offers.read().unwrap_or_else(PoisonError::into_inner).get(server).cloned()
    }

    fn offers(&self) -> Vec<(String, Arc<Offer>)> {
        let offers = self.offers.read().unwrap_or_else(PoisonError::into_inner);
        offers.iter().map(|(server, offer)| (server.clone(), offer.clone())).collect()
    }

    fn announce(&self, before: Option<&Offer>, after: Option<&Offer>) {
        let resources = |offer: Option<&Offer>| offer.map_or(0, |offer| offer.resources.len() + offer.templates.len());
        let prompts = |offer: Option<&Offer>| offer.map_or(0, |offer| offer.prompts.len());
        if resources(before) + resources(after) > 0 {
            self.changes.publish(Change::ResourcesListChanged);
        }
        if prompts(before) + prompts(after) > 0 {
            self.changes.publish(Change::PromptsListChanged);
        }
    }
}

/// opsgate's own surface, then each connected server's resources and prompts.
pub struct FederatedSurface {
    own: Arc<dyn Surface>,
    catalog: Catalog,
    redactor: Arc<Redactor>,
}

impl FederatedSurface {
    /// `redactor`: the pipeline's, so resources and prompts are masked as tool outputs are.
    pub fn new(own: Arc<dyn Surface>, catalog: Catalog, redactor: Arc<Redactor>) -> FederatedSurface {
        FederatedSurface { own, catalog, redactor }
    }

    /// The server offering `uri`: the one that listed it, else the one with a template whose
    /// fixed start (up to its first `{`) begins the URI, the longest such start winning.
    fn server_of_uri(&self, uri: &str) -> Option<(String, Arc<Offer>)> {
        let offers = self.catalog.offers();
        if let Some(found) = offers.iter().find(|(_, offer)| offer.resources.iter().any(|resource| resource.uri == uri))
        {
            return Some(found.clone());
        }
        offers
            .into_iter()
            .filter_map(|(server, offer)| {
                let longest = offer
                    .templates
                    .iter()
                    .map(|template| template.uri_template.split('{').next().unwrap_or_default())
                    .filter(|start| !start.is_empty() && uri.starts_with(start))
                    .map(str::len)
                    .max()?;
                Some((longest, server, offer))
            })
            .max_by_key(|(longest, _, _)| *longest)
            .map(|(_, server, offer)| (server, offer))
    }

    /// `own` followed by every server's items of one kind, each renamed `mcp__<server>__<name>`.
    fn with_federated<T: Clone>(
        &self,
        mut own: Vec<T>,
        items: impl Fn(&Offer) -> &Vec<T>,
        name: impl Fn(&mut T) -> &mut String,
    ) -> Vec<T> {
        for (server, offer) in self.catalog.offers() {
            own.extend(items(&offer).iter().map(|item| {
                let mut item = item.clone();
                let renamed = federated_name(&server, name(&mut item));
                *name(&mut item) = renamed;
                item
            }));
        }
        own
    }

    /// Masks secrets anywhere in a federated answer (every text, embedded resources and
    /// descriptions included), by the same JSON walk the pipeline gives tool outputs.
    fn redact<T: serde::Serialize + serde::de::DeserializeOwned>(&self, answer: &mut T) {
        let Ok(mut value) = serde_json::to_value(&*answer) else { return };
        if !self.redactor.needs_redaction(&value) {
            return;
        }
        self.redactor.redact_value(&mut value);
        match serde_json::from_value(value) {
            Ok(redacted) => *answer = redacted,
            Err(error) => tracing::error!(%error, "a redacted federated answer no longer parses"),
        }
    }
}

/// Sends one request to a server within its concurrency cap and call timeout; a failure that
/// shows the connection broken makes the supervisor reconnect.
async fn forward<'a, T, F>(
    server: &str,
    link: &'a Link,
    what: &str,
    request: impl FnOnce(&'a rmcp::service::Peer<rmcp::RoleClient>) -> F,
) -> Result<T, ErrorData>
where
    F: Future<Output = Result<T, rmcp::ServiceError>>,
{
    let _slot = link.slot().await.map_err(|message| ErrorData::internal_error(message, None))?;
    match tokio::time::timeout(link.call_timeout, request(&link.peer)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => {
            link.saw(&error);
            Err(upstream_error(server, what, error))
        }
        Err(_) => Err(upstream_error(server, what, format!("no answer within {:?}", link.call_timeout))),
    }
}

/// A server's failure as the client sees it: named, and not mistaken for opsgate's own.
fn upstream_error(server: &str, what: &str, error: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("server {server} failed {what}: {error}"), None)
}

#[async_trait::async_trait]
impl Surface for FederatedSurface {
    fn resources(&self) -> Vec<Resource> {
        self.with_federated(self.own.resources(), |offer| &offer.resources, |resource| &mut resource.name)
    }

    fn resource_templates(&self) -> Vec<ResourceTemplate> {
        self.with_federated(self.own.resource_templates(), |offer| &offer.templates, |template| &mut template.name)
    }

    async fn read_resource(&self, request: ReadResourceRequestParams) -> Result<ReadResourceResult, ErrorData> {
        let own = self.own.resources().iter().any(|resource| resource.uri == request.uri);
        let Some((server, offer)) = (!own).then(|| self.server_of_uri(&request.uri)).flatten() else {
            return self.own.read_resource(request).await;
        };
        let mut result = forward(&server, &offer.link, "resources/read", |peer| peer.read_resource(request)).await?;
        self.redact(&mut result.contents);
        Ok(result)
    }

    fn prompts(&self) -> Vec<Prompt> {
        self.with_federated(self.own.prompts(), |offer| &offer.prompts, |prompt| &mut prompt.name)
    }

    async fn get_prompt_response(&self, mut request: GetPromptRequestParams) -> Result<GetPromptResponse, ErrorData> {
        let Some((server, name)) = opsgate_core::split_federated_name(&request.name) else {
            return self.own.get_prompt_response(request).await;
        };
        let (server, name) = (server.to_string(), name.to_string());
        let Some(offer) =
            self.catalog.get(&server).filter(|offer| offer.prompts.iter().any(|prompt| prompt.name == name))
        else {
            return Err(ErrorData::invalid_params(format!("no prompt {}", request.name), None));
        };
        request.name = name;
        let response = forward(&server, &offer.link, "prompts/get", |peer| peer.get_prompt_once(request)).await?;
        match response {
            GetPromptResponse::Complete(mut result) => {
                self.redact(&mut result);
                Ok(GetPromptResponse::Complete(result))
            }
            _ => Err(upstream_error(
                &server,
                "prompts/get",
                "it asked the client for input, which opsgate does not relay for federated prompts yet",
            )),
        }
    }

    async fn complete(&self, request: CompleteRequestParams) -> Result<CompleteResult, ErrorData> {
        self.own.complete(request).await
    }

    fn subscribable(&self) -> bool {
        self.own.subscribable()
    }
}
