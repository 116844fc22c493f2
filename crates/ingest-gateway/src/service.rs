//! The request handler: route, then for events/track and the users endpoints read →
//! authenticate → validate → encode → produce, and the answer.
//!
//! Guarantees: 200 is sent only after the publisher acknowledged the record; every failure
//! goes through [`ApiError`] (one mapping to status and body); every answer is counted
//! in `vero_gateway_http_requests_total` and API answers get CORS headers.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, ORIGIN, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus::IntCounter;
use vero_model::topics::user_key;
use vero_model::UserAction;

use crate::auth::{Authenticator, Caller};
use crate::config::Settings;
use crate::error::{self, ApiError, Body};
use crate::fields;
use crate::http::body::{self as request_body, BodyLimits};
use crate::http::cors::Cors;
use crate::http::router::{Endpoints, Route};
use crate::metrics::{action_label, Metrics};
use crate::publish::Publisher;
use crate::stamp::Stamp;
use crate::{track, users};

pub struct Gateway {
    auth: Authenticator,
    publisher: Arc<dyn Publisher>,
    cors: Cors,
    limits: BodyLimits,
    /// `events/batch`'s body limits and most events.
    batch_limits: BodyLimits,
    batch_max_events: usize,
    /// What one request may add to a profile.
    profile_limits: crate::limits::LimitsSettings,
    retry_after_secs: u64,
    pub metrics: Metrics,
    /// The hot path's counters, resolved on first use (so a series appears in
    /// `/metrics` only once counted, as with a label lookup) and then reused: a label
    /// lookup hashes the labels and takes a lock on every request.
    events_track_ok: OnceLock<IntCounter>,
    /// `events_accepted_total` by project index (the order of `settings.projects`).
    events_accepted: Box<[OnceLock<IntCounter>]>,
}

impl Gateway {
    pub fn new(settings: &Settings, publisher: Arc<dyn Publisher>) -> Self {
        let http = &settings.http;
        Self {
            auth: Authenticator::new(&settings.projects, &settings.rate_limit),
            publisher,
            cors: Cors::new(&http.cors),
            limits: BodyLimits {
                max_body_bytes: http.max_body_bytes,
                max_decompressed_bytes: http.max_decompressed_bytes,
                read_timeout: http.body_read_timeout(),
                settings: BodyLimits::SETTINGS,
            },
            batch_limits: BodyLimits {
                max_body_bytes: http.batch_max_body_bytes,
                max_decompressed_bytes: http.batch_max_body_bytes,
                read_timeout: http.body_read_timeout(),
                settings: ("http.batch_max_body_bytes", "http.batch_max_body_bytes"),
            },
            batch_max_events: http.batch_max_events,
            profile_limits: settings.limits.clone(),
            retry_after_secs: http.retry_after_secs,
            metrics: Metrics::new(),
            events_track_ok: OnceLock::new(),
            events_accepted: settings.projects.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn publisher(&self) -> &Arc<dyn Publisher> {
        &self.publisher
    }

    /// Answer `request` as the only listener (API and operator endpoints).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.handle_on(Endpoints::All, request).await
    }

    /// Answer `request` on a listener serving `endpoints`; other routes are 404.
    pub async fn handle_on<B>(&self, endpoints: Endpoints, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(route) = Route::resolve(request.uri().path()).filter(|route| endpoints.serves(*route)) else {
            let response = ApiError::NotFound(truncated_path(request.uri().path())).into_response();
            self.metrics.requests.with_label_values(&["unknown", response.status().as_str()]).inc();
            return response;
        };
        let origin = if route.is_api() { request.headers().get(ORIGIN).cloned() } else { None };
        let mut response = if request.method() == Method::OPTIONS && route.is_api() {
            self.cors.preflight(route, request.headers())
        } else if !route.allows(request.method()) {
            let error = ApiError::MethodNotAllowed { method: request.method().to_string(), allow: route.allow() };
            self.count_rejection(route, &error);
            error.into_response()
        } else {
            match route {
                Route::EventsTrack => self.answer(route, self.accept(Producing::Event, request).await),
                Route::EventsBatch => self.answer(route, self.accept_batch(request).await),
                Route::Users(action) => self.answer(route, self.accept(Producing::Command(action), request).await),
                Route::Heartbeat => error::success(),
                Route::Metrics => self.metrics_response(),
                Route::Healthz => text(StatusCode::OK, "ok\n"),
                Route::Readyz => match self.publisher.readiness().await {
                    Ok(()) => text(StatusCode::OK, "ready\n"),
                    Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
                },
            }
        };
        if route.is_api() {
            self.cors.decorate(origin.as_ref(), &mut response);
        }
        if route == Route::EventsTrack && response.status() == StatusCode::OK {
            let labels = [route.label(), StatusCode::OK.as_str()];
            self.events_track_ok.get_or_init(|| self.metrics.requests.with_label_values(&labels)).inc();
        } else {
            self.metrics.requests.with_label_values(&[route.label(), response.status().as_str()]).inc();
        }
        response
    }

    /// The shared pipeline of every endpoint that produces a record: read → fields →
    /// token → rate limit → validate → encode → produce; `Ok` only once stored.
    async fn accept<B>(&self, producing: Producing, request: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let format = fields::body_format(parts.headers.get(CONTENT_TYPE))?;
        let bytes = request_body::read(body, &parts.headers, self.limits).await?;
        let mut fields = fields::parse(format, &bytes, producing.object_fields())?;
        let caller = self.caller(&mut fields, parts.uri.query())?;
        let stamp = stamp(&caller, &parts.headers);
        let (user_id, payload) = match producing {
            Producing::Event => {
                track::message_id::merge_header(&mut fields, parts.headers.get(track::message_id::HEADER))?;
                let event = track::build_event(fields, stamp)?;
                self.profile_limits.check_event(&event)?;
                let payload = vero_model::encode_event(&event);
                (event.user_id, payload)
            }
            Producing::Command(action) => {
                let command = users::build_command(action, fields, stamp)?;
                self.profile_limits.check_command(&command)?;
                let payload = vero_model::encode(&command);
                (command.user_id, payload)
            }
        };
        let started = Instant::now();
        // Events and commands share the topic and the key, so a user's records stay in
        // order on one partition (docs/design.md).
        let stored = self.publisher.produce(user_key(&user_id), &payload).await;
        self.metrics.produce_latency.observe(started.elapsed().as_secs_f64());
        stored.map_err(|e| ApiError::from_sink(e, self.retry_after_secs))?;
        match producing {
            Producing::Event => self.events_accepted[caller.project_index]
                .get_or_init(|| self.metrics.events_accepted.with_label_values(&[caller.project.as_ref()]))
                .inc(),
            Producing::Command(action) => self
                .metrics
                .user_commands_accepted
                .with_label_values(&[caller.project.as_ref(), action_label(action)])
                .inc(),
        }
        Ok(error::success())
    }

    /// `events/batch`: read → fields → token → rate limit → validate every event →
    /// produce them all; `Ok` only once every one is stored (`track::batch`).
    async fn accept_batch<B>(&self, request: Request<B>) -> Result<Response<Body>, ApiError>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        if fields::body_format(parts.headers.get(CONTENT_TYPE))? == fields::BodyFormat::Form {
            return Err(ApiError::UnsupportedMediaType(
                "A batch is a JSON object; send Content-Type: application/json.".into(),
            ));
        }
        if parts.headers.contains_key(track::message_id::HEADER) {
            return Err(ApiError::invalid(
                "Idempotency-Key names one event; in a batch give each event its own extras.message_id.",
            ));
        }
        let bytes = request_body::read(body, &parts.headers, self.batch_limits).await?;
        let mut fields = fields::parse(fields::BodyFormat::Json, &bytes, &[])?;
        let caller = self.caller(&mut fields, parts.uri.query())?;
        let stamp = stamp(&caller, &parts.headers);
        let events = track::build_batch(fields, stamp, self.batch_max_events, &self.profile_limits)?;
        let started = Instant::now();
        // Handed over in order, so one user's events keep their order on its partition.
        let deliveries: Vec<_> = events
            .iter()
            .map(|event| self.publisher.produce(user_key(&event.user_id), &vero_model::encode_event(event)))
            .collect();
        let mut failure = None;
        for delivery in deliveries {
            if let Err(error) = delivery.await {
                failure.get_or_insert(error);
            }
        }
        self.metrics.produce_latency.observe(started.elapsed().as_secs_f64());
        if let Some(error) = failure {
            return Err(ApiError::from_sink(error, self.retry_after_secs));
        }
        self.events_accepted[caller.project_index]
            .get_or_init(|| self.metrics.events_accepted.with_label_values(&[caller.project.as_ref()]))
            .inc_by(events.len() as u64);
        Ok(error::success())
    }

    /// Who sent a request: its token taken out of `fields` (so it cannot travel further),
    /// authenticated, and one request taken from the token's rate budget.
    fn caller(
        &self,
        fields: &mut serde_json::Map<String, serde_json::Value>,
        query: Option<&str>,
    ) -> Result<Caller<'_>, ApiError> {
        let token = fields::take_token(fields, query);
        let caller = self.auth.authenticate(token.as_deref())?;
        drop(token);
        self.auth.check_rate(&caller)?;
        Ok(caller)
    }

    fn answer(&self, route: Route, outcome: Result<Response<Body>, ApiError>) -> Response<Body> {
        outcome.unwrap_or_else(|error| {
            self.count_rejection(route, &error);
            error.into_response()
        })
    }

    fn count_rejection(&self, route: Route, error: &ApiError) {
        match route {
            Route::EventsTrack | Route::EventsBatch => {
                self.metrics.events_rejected.with_label_values(&[error.reason()]).inc()
            }
            Route::Users(action) => {
                self.metrics.user_commands_rejected.with_label_values(&[action_label(action), error.reason()]).inc()
            }
            _ => {}
        }
        tracing::debug!(route = route.label(), status = error.status().as_u16(), reason = error.reason(), "rejected");
        if let ApiError::Internal(reason) = error {
            tracing::error!(reason, "record could not be stored: operator action needed");
        }
    }

    fn metrics_response(&self) -> Response<Body> {
        self.metrics.producer_queue_depth.set(self.publisher.queue_depth());
        let mut response = text(StatusCode::OK, self.metrics.render());
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        response
    }
}

/// The endpoints that produce a record, and which record.
#[derive(Debug, Clone, Copy)]
enum Producing {
    Event,
    Command(UserAction),
}

impl Producing {
    /// Fields a form body may send as JSON-encoded objects.
    fn object_fields(self) -> &'static [&'static str] {
        match self {
            Producing::Event => track::OBJECT_FIELDS,
            Producing::Command(_) => users::OBJECT_FIELDS,
        }
    }
}

/// What the gateway adds to the records of `caller`'s request with `headers`.
fn stamp<'a>(caller: &'a Caller<'_>, headers: &'a http::HeaderMap) -> Stamp<'a> {
    Stamp {
        project: caller.project.as_ref(),
        received_at: now_millis(),
        user_agent: headers.get(USER_AGENT).and_then(|v| v.to_str().ok()),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn truncated_path(path: &str) -> String {
    path.chars().take(200).collect()
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
