//! The tower layer: classify each request into checks, answer 429 when one refuses,
//! and report the state of every check in the response headers.
//!
//! What a request counts against is the service's decision, given as a function of
//! the request head ([`http::request::Parts`]): route groups, whom to count (user id
//! or client address), and which routes are never limited (an empty list).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::Response;
use futures::future::BoxFuture;
use http::{Request, StatusCode, request::Parts};

use crate::{
    headers,
    limiter::{Check, Limiter, Verdict},
};

type Refusal = Arc<dyn Fn(&Verdict) -> Response + Send + Sync>;

/// The default refusal: 429 `application/problem+json` with the code `rate_limited`.
pub fn too_many_requests(_: &Verdict) -> Response {
    problem::problem_response(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        Some("Too many requests; retry after the number of seconds in `Retry-After`.".into()),
        Vec::new(),
    )
}

#[derive(Clone)]
pub struct RateLimitLayer<C> {
    limiter: Limiter,
    classify: C,
    refusal: Refusal,
}

impl<C> RateLimitLayer<C>
where
    C: Fn(&mut Parts) -> Vec<Check> + Clone + Send + Sync + 'static,
{
    /// `classify` returns the checks a request counts against; none means not limited.
    /// It may add extensions, for example the verified token it read the user id from.
    pub fn new(limiter: Limiter, classify: C) -> Self {
        Self { limiter, classify, refusal: Arc::new(too_many_requests) }
    }

    /// Replaces the body of refusals; the rate-limit headers are added to it anyway.
    pub fn on_refused(mut self, refusal: impl Fn(&Verdict) -> Response + Send + Sync + 'static) -> Self {
        self.refusal = Arc::new(refusal);
        self
    }
}

impl<S, C: Clone> tower::Layer<S> for RateLimitLayer<C> {
    type Service = RateLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit { inner, limiter: self.limiter.clone(), classify: self.classify.clone(), refusal: Arc::clone(&self.refusal) }
    }
}

#[derive(Clone)]
pub struct RateLimit<S, C> {
    inner: S,
    limiter: Limiter,
    classify: C,
    refusal: Refusal,
}

impl<S, C, B> tower::Service<Request<B>> for RateLimit<S, C>
where
    S: tower::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    C: Fn(&mut Parts) -> Vec<Check> + Clone + Send + Sync + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service polled ready is the one to call; keep a fresh clone for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (mut parts, body) = req.into_parts();
        let checks = (self.classify)(&mut parts);
        let req = Request::from_parts(parts, body);
        if checks.is_empty() {
            return Box::pin(inner.call(req));
        }
        let limiter = self.limiter.clone();
        let refusal = Arc::clone(&self.refusal);
        Box::pin(async move {
            let verdict = limiter.acquire(&checks).await;
            let mut response = if verdict.allowed() {
                inner.call(req).await?
            } else {
                let policies: Vec<&str> = verdict.refused_by().map(|p| p.name()).collect();
                tracing::debug!(?policies, "request refused by rate limits");
                refusal(&verdict)
            };
            headers::apply(response.headers_mut(), &verdict);
            Ok(response)
        })
    }
}
