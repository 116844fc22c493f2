//! Which endpoint a path is, and which methods it takes.
//!
//! Every API path also answers with a `.json` suffix. Unknown paths are 404, a known
//! path with a method it does not take is 405 with `Allow`. The users endpoints slot
//! in as further [`Route`] variants.

use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Heartbeat,
    EventsTrack,
    Metrics,
    Healthz,
    Readyz,
}

const API_PREFIX: &str = "/api/v2/";

impl Route {
    pub fn resolve(path: &str) -> Option<Self> {
        if let Some(api) = path.strip_prefix(API_PREFIX) {
            let api = api.strip_suffix(".json").unwrap_or(api);
            return match api {
                "heartbeat" => Some(Self::Heartbeat),
                "events/track" => Some(Self::EventsTrack),
                _ => None,
            };
        }
        match path {
            "/metrics" => Some(Self::Metrics),
            "/healthz" => Some(Self::Healthz),
            "/readyz" => Some(Self::Readyz),
            _ => None,
        }
    }

    /// The `Allow` header value, also used for CORS preflights.
    pub fn allow(self) -> &'static str {
        match self {
            Self::EventsTrack => "POST, OPTIONS",
            Self::Heartbeat => "GET, HEAD, OPTIONS",
            Self::Metrics | Self::Healthz | Self::Readyz => "GET, HEAD",
        }
    }

    pub fn allows(self, method: &Method) -> bool {
        match self {
            Self::EventsTrack => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }

    /// Browser-facing API routes get CORS headers; operator endpoints do not.
    pub fn is_api(self) -> bool {
        matches!(self, Self::Heartbeat | Self::EventsTrack)
    }

    /// The `route` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::EventsTrack => "events_track",
            Self::Metrics => "metrics",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_json_suffix() {
        assert_eq!(Route::resolve("/api/v2/events/track"), Some(Route::EventsTrack));
        assert_eq!(Route::resolve("/api/v2/events/track.json"), Some(Route::EventsTrack));
        assert_eq!(Route::resolve("/api/v2/heartbeat.json"), Some(Route::Heartbeat));
        assert_eq!(Route::resolve("/api/v2/events/track/"), None);
        assert_eq!(Route::resolve("/api/v1/events/track"), None);
        assert_eq!(Route::resolve("/metrics.json"), None);
        assert_eq!(Route::resolve("/readyz"), Some(Route::Readyz));
        assert!(Route::EventsTrack.allows(&Method::POST) && !Route::EventsTrack.allows(&Method::GET));
    }
}
