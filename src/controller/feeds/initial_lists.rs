//! How the watches of many objects take their initial list: streamed in the watch itself
//! where the API server can (WatchList: `sendInitialEvents`), pages of
//! [`LIST_PAGE_SIZE`] where it cannot.
//!
//! A streamed list is one request served from the API server's watch cache, object by
//! object; a paginated one is a request per page, each deserialized whole. At 10,000
//! namespaces with 20,000 NetworkPolicies the 300 pages took the operator 2 s before its
//! first write. WatchList is on by default in the API server this project tests
//! (v1.36.3) and off by default in 1.33, whose API server answers 422; servers older than
//! the feature refuse or ignore the parameter. The choice is made at start-up by asking
//! the API server ([`probe`]); and
//! since kube-runtime's watcher retries a refused streaming watch forever, each watch falls
//! back to pages for good if the API server later refuses it (an API server restarted
//! without WatchList, or an older one during an upgrade): [`watch`].

use std::fmt::Debug;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{WatchEvent, WatchParams};
use kube::runtime::watcher::{self, InitialListStrategy};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::{info, warn};

/// Objects per list page when lists are paginated (client-go's and kube's default is
/// 500). A page is deserialized whole and held until its last object has gone into a
/// cache, and at start-up every watch lists at once: at 500, those pages (managedFields
/// and all) were most of a restarted operator's heap at 1,000 namespaces. The price is
/// more list requests: about 1,500 instead of 300 at 10,000 namespaces.
pub const LIST_PAGE_SIZE: u32 = 100;

/// How long the probe waits for the API server's answer (a streamed list of at most one
/// namespace).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The annotation of the bookmark that ends a streamed initial list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// How the watches of many objects take their initial list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialLists {
    /// In the watch itself (`sendInitialEvents=true`).
    Streamed,
    /// Pages of [`LIST_PAGE_SIZE`], then a watch.
    Paginated,
}

impl InitialLists {
    /// The watcher configuration of a watch of a kind with objects in every namespace.
    pub fn config(self) -> watcher::Config {
        let config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
        match self {
            Self::Streamed => config.streaming_lists(),
            Self::Paginated => config,
        }
    }
}

/// A watch of `api` with `config` (from [`InitialLists::config`], selectors added). A
/// streamed initial list the API server refuses (400 or 422 when the watch starts; nothing
/// has been emitted for it yet) is replaced by a paginated watch for the rest of this
/// watch's life.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let fallback = (config.initial_list_strategy == InitialListStrategy::StreamingList)
        .then(|| (api.clone(), config.clone()));
    FallBackToPages {
        inner: watcher::watcher(api, config).boxed(),
        fallback,
    }
}

/// See [`watch`].
struct FallBackToPages<K> {
    inner: BoxStream<'static, watcher::Result<watcher::Event<K>>>,
    /// What to watch with pages instead, until that has happened.
    fallback: Option<(Api<K>, watcher::Config)>,
}

impl<K> Stream for FallBackToPages<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    type Item = watcher::Result<watcher::Event<K>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let next = std::task::ready!(self.inner.poll_next_unpin(cx));
            let refused = match &next {
                Some(Err(watcher::Error::WatchStartFailed(kube::Error::Api(status)))) => {
                    refuses_initial_events(status.code)
                }
                _ => false,
            };
            if refused && let Some((api, mut config)) = self.fallback.take() {
                warn!(
                    error = ?next,
                    "the API server refused a streamed initial list; this watch lists in pages from now on"
                );
                config.initial_list_strategy = InitialListStrategy::ListWatch;
                self.inner = watcher::watcher(api, config).boxed();
                continue;
            }
            return Poll::Ready(next);
        }
    }
}

/// The status codes of an API server that does not serve `sendInitialEvents`: 422 (1.33,
/// WatchList off), 400 (a parameter it cannot take).
fn refuses_initial_events(code: u16) -> bool {
    code == 422 || code == 400
}

/// Asks the API server for a streamed list of one namespace: lists are streamed if it
/// answers with the bookmark that ends a streamed list, paginated otherwise (a 422 from a
/// server with WatchList off, a plain watch from one that predates it, or any failure:
/// pages always work).
pub async fn probe(client: &Client) -> InitialLists {
    let namespaces = Api::<Namespace>::all(client.clone());
    let params = WatchParams::streaming_lists()
        .fields("metadata.name=default")
        .timeout(u32::try_from(PROBE_TIMEOUT.as_secs()).unwrap_or(10));
    let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
        let events = namespaces.watch(&params, "0").await?;
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.try_next().await? {
            if ends_initial_events(&event) {
                return Ok(true);
            }
        }
        Ok::<_, kube::Error>(false)
    })
    .await;
    decide(answer.ok())
}

/// The decision from the probe's outcome (`None`: no answer in time).
fn decide(outcome: Option<Result<bool, kube::Error>>) -> InitialLists {
    match outcome {
        Some(Ok(true)) => {
            info!("initial lists are streamed (WatchList)");
            InitialLists::Streamed
        }
        Some(Ok(false)) => {
            info!("the API server does not stream initial lists; lists are paginated");
            InitialLists::Paginated
        }
        Some(Err(kube::Error::Api(status))) if refuses_initial_events(status.code) => {
            info!(
                reason = %status.message,
                "the API server refuses streamed initial lists (WatchList off); lists are paginated"
            );
            InitialLists::Paginated
        }
        Some(Err(error)) => {
            warn!(%error, "could not ask whether the API server streams initial lists; lists are paginated");
            InitialLists::Paginated
        }
        None => {
            warn!(
                after = ?PROBE_TIMEOUT,
                "no answer to whether the API server streams initial lists; lists are paginated"
            );
            InitialLists::Paginated
        }
    }
}

fn ends_initial_events(event: &WatchEvent<Namespace>) -> bool {
    matches!(event, WatchEvent::Bookmark(bookmark)
        if bookmark.metadata.annotations.get(INITIAL_EVENTS_END).map(String::as_str) == Some("true"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::client::Body;

    #[test]
    fn streamed_lists_ask_for_initial_events_and_paginated_ones_for_pages() {
        let streamed = InitialLists::Streamed.config();
        assert_eq!(
            streamed.initial_list_strategy,
            watcher::InitialListStrategy::StreamingList
        );
        let paginated = InitialLists::Paginated.config();
        assert_eq!(
            paginated.initial_list_strategy,
            watcher::InitialListStrategy::ListWatch
        );
        assert_eq!(paginated.page_size, Some(LIST_PAGE_SIZE));
    }

    /// The probe against an API server that answers every request with `status` and
    /// `body`; also returns the query the probe sent.
    async fn probe_against(status: u16, body: &str) -> (InitialLists, String) {
        let body = body.as_bytes().to_vec();
        let queries = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = queries.clone();
        let service = tower::service_fn(move |request: http::Request<Body>| {
            seen.lock()
                .push(request.uri().query().unwrap_or_default().to_string());
            let body = body.clone();
            async move {
                Ok::<_, tower::BoxError>(
                    http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .expect("response"),
                )
            }
        });
        let strategy = probe(&Client::new(service, "default")).await;
        let query = queries.lock().concat();
        (strategy, query)
    }

    /// Kubernetes 1.33's API server, whose WatchList gate is off.
    const REFUSED: &str = r#"{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"Invalid","code":422,"message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"}"#;

    const ADDED: &str = r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default","resourceVersion":"7"}}}"#;

    const INITIAL_EVENTS_END_BOOKMARK: &str = r#"{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"resourceVersion":"9","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;

    #[tokio::test]
    async fn lists_are_streamed_when_the_server_ends_its_initial_events_with_the_bookmark() {
        let body = format!("{ADDED}\n{INITIAL_EVENTS_END_BOOKMARK}\n");
        let (strategy, query) = probe_against(200, &body).await;
        assert_eq!(strategy, InitialLists::Streamed);
        for asked in [
            "watch=true",
            "sendInitialEvents=true",
            "resourceVersionMatch=NotOlderThan",
            "allowWatchBookmarks=true",
        ] {
            assert!(query.contains(asked), "{asked} not in {query}");
        }
    }

    #[tokio::test]
    async fn lists_are_paginated_when_the_server_refuses_initial_events() {
        let (strategy, _) = probe_against(422, REFUSED).await;
        assert_eq!(strategy, InitialLists::Paginated);
    }

    #[tokio::test]
    async fn lists_are_paginated_when_the_server_ignores_initial_events() {
        // An API server older than WatchList: a plain watch, no bookmark ending a list.
        let (strategy, _) = probe_against(200, ADDED).await;
        assert_eq!(strategy, InitialLists::Paginated);
    }

    #[tokio::test]
    async fn lists_are_paginated_when_the_probe_fails() {
        let (strategy, _) = probe_against(503, "").await;
        assert_eq!(strategy, InitialLists::Paginated);
    }

    /// An API server that refuses streamed lists and serves pages: a watch with
    /// `sendInitialEvents` gets 422, a list one namespace, a plain watch nothing.
    fn server_without_streamed_lists() -> Client {
        let service = tower::service_fn(|request: http::Request<Body>| {
            let query = request.uri().query().unwrap_or_default().to_string();
            let (status, body) = if query.contains("sendInitialEvents=true") {
                (422, REFUSED)
            } else if query.contains("watch=true") {
                (200, "")
            } else {
                (
                    200,
                    r#"{"apiVersion":"v1","kind":"NamespaceList","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","resourceVersion":"7"}}]}"#,
                )
            };
            async move {
                Ok::<_, tower::BoxError>(
                    http::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.as_bytes().to_vec()))
                        .expect("response"),
                )
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn a_watch_whose_streamed_list_is_refused_lists_in_pages() {
        let api = Api::<Namespace>::all(server_without_streamed_lists());
        let events: Vec<_> = watch(api, InitialLists::Streamed.config())
            .take(3)
            .collect()
            .await;
        let names: Vec<String> = events
            .iter()
            .map(|event| match event {
                Ok(watcher::Event::Init) => "Init".to_string(),
                Ok(watcher::Event::InitApply(ns)) => {
                    format!("InitApply {}", ns.metadata.name.as_deref().unwrap_or(""))
                }
                Ok(watcher::Event::InitDone) => "InitDone".to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["Init", "InitApply a", "InitDone"]);
    }

    #[tokio::test]
    async fn a_watch_passes_other_failures_on() {
        let forbidden = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, tower::BoxError>(
                http::Response::builder()
                    .status(403)
                    .header("content-type", "application/json")
                    .body(Body::from(
                        br#"{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden"}"#
                            .to_vec(),
                    ))
                    .expect("response"),
            )
        });
        let api = Api::<Namespace>::all(Client::new(forbidden, "default"));
        let first = watch(api, InitialLists::Streamed.config()).next().await;
        assert!(
            matches!(
                first,
                Some(Err(watcher::Error::WatchStartFailed(kube::Error::Api(ref status)))) if status.code == 403
            ),
            "{first:?}"
        );
    }
}
