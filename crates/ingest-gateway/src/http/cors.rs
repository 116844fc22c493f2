//! CORS for browser clients (Vero's JS SDK runs in web pages).
//!
//! Allowed origins come from `http.cors.allowed_origins` (`"*"` = any). Preflights
//! (`OPTIONS` with `Access-Control-Request-Method`) are answered 204 with the route's
//! methods; actual responses carry `Access-Control-Allow-Origin` and expose
//! `Retry-After` so scripts can honour 429/503. A disallowed origin gets no CORS
//! headers, which makes the browser refuse the call. No credentials are involved
//! (the token is in the request), so `Allow-Credentials` is never sent.

use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ALLOW, ORIGIN, VARY,
};
use http::{HeaderMap, Response, StatusCode};

use super::router::Route;
use crate::config::CorsSettings;
use crate::error::Body;

const DEFAULT_ALLOWED_HEADERS: &str = "content-type, content-encoding";

pub struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    max_age: HeaderValue,
}

impl Cors {
    pub fn new(settings: &CorsSettings) -> Self {
        Self {
            any_origin: settings.allowed_origins.iter().any(|o| o == "*"),
            origins: settings.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect(),
            max_age: HeaderValue::from(settings.max_age_secs),
        }
    }

    /// The `Access-Control-Allow-Origin` value for this request's `Origin`, if allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.any_origin {
            Some(HeaderValue::from_static("*"))
        } else {
            self.origins.iter().find(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes())).map(|_| origin.clone())
        }
    }

    /// Add CORS headers to an actual (non-preflight) API response; `origin` is the
    /// request's `Origin` header.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut Response<Body>) {
        if !self.any_origin {
            response.headers_mut().append(VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = self.allow_origin(origin) {
            let headers = response.headers_mut();
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Retry-After"));
        }
    }

    /// Answer an `OPTIONS` request on a known API route.
    pub fn preflight(&self, route: Route, request: &HeaderMap) -> Response<Body> {
        let mut response = Response::new(Body::default());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(ALLOW, HeaderValue::from_static(route.allow()));
        if !self.any_origin {
            headers.insert(VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = self.allow_origin(request.get(ORIGIN)) {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(route.allow()));
            let requested = request.get(ACCESS_CONTROL_REQUEST_HEADERS).cloned();
            headers.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                requested.unwrap_or(HeaderValue::from_static(DEFAULT_ALLOWED_HEADERS)),
            );
            headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        response
    }
}
