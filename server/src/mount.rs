//! Tether inside an app's own server: the same core as the binary's, without a
//! listener. [`Tether`] is the built core; its routes come as a warp `Filter`
//! ([`Tether::filter`]), to compose with the app's own with `.or(…)`, or as a tower
//! `Service` ([`Tether::service`]), for axum (`Router::nest_service`) and hyper. Both
//! answer everything the binary answers: `/ws`, the HTTP fallback under `/rt/`, the
//! server API under `/api/v1/`, `/healthz`, `/metrics`, and the bundle (with
//! `--static-dir`). Mounted under a prefix, they answer under it.
//!
//! What the binary's accept loop does and a mount cannot: counting connections per
//! address from the moment they are accepted, and letting go of peers that stall
//! (headers, bodies, writes). Behind an app's listener those are the app's to provide:
//! with a mount, connections are not capped per address and bodies have no deadline
//! but the app's own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::Api;
use crate::context::Context;
use crate::shutdown::Shutdown;

/// The built core: state, store, sequencer and routes, serving wherever the app mounts
/// [`Tether::filter`] or [`Tether::service`]. Stop it with [`Tether::stop`] when the
/// app's server has stopped.
pub struct Tether {
    pub(crate) context: Arc<Context>,
    pub(crate) shutdown: Shutdown,
    pub(crate) engine: Arc<dyn crate::engine::Engine>,
    pub(crate) api: Api,
    pub(crate) routes: BoxedFilter<(Response,)>,
}

impl Tether {
    /// Every route, as a warp filter: `app.or(tether.filter())`, or under a prefix,
    /// `warp::path("realtime").and(tether.filter())`.
    pub fn filter(&self) -> BoxedFilter<(Response,)> {
        self.routes.clone()
    }

    /// Every route, as a tower service: `Router::new().nest_service("/realtime",
    /// tether.service())` in axum, or `hyper`'s `service_fn` around it.
    pub fn service(&self) -> TetherService {
        TetherService { routes: self.routes.clone() }
    }

    /// The server API as a cheap handle, for the app's own routes and tasks: publish,
    /// presence, history, disconnect, stats.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// Resolves once something asked the server to stop from inside (with
    /// `--test-endpoints`, `POST /api/test/stop`).
    pub async fn stop_requested(&self) {
        self.shutdown.triggered().await
    }

    /// Closes every WebSocket with 1001, lets in-flight publishes commit and their acks
    /// go out, and returns once all connections are closed (and, in cluster mode, once
    /// the other nodes know this one's members left).
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.shutdown.drained().await;
        self.engine.barrier().await;
        self.engine.leave().await;
    }
}

/// [`Tether::service`]: Tether's routes as a tower `Service` over any request body.
#[derive(Clone)]
pub struct TetherService {
    routes: BoxedFilter<(Response,)>,
}

impl<B> Service<http::Request<B>> for TetherService
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // warp reads bodies that are `Sync`; axum's is not. Polling needs only `&mut`,
        // so a mutex no one ever locks makes any body `Sync`.
        let request = request.map(|body| Synced(Mutex::new(Box::pin(body))));
        Box::pin(warp::service(self.routes.clone()).call(request))
    }
}

/// A body made `Sync` (see [`TetherService`]'s `call`).
struct Synced<B>(Mutex<Pin<Box<B>>>);

impl<B: http_body::Body> http_body::Body for Synced<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let body = self.get_mut().0.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().map(|body| body.is_end_stream()).unwrap_or(false)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().map(|body| body.size_hint()).unwrap_or_default()
    }
}
