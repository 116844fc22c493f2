//! Which endpoint a path is, and which methods it takes.
//!
//! Every API path also answers with a `.json` suffix. Unknown paths are 404, a known
//! path with a method it does not take is 405 with `Allow`. A listener serves the
//! routes of its [`Endpoints`]; the others are 404 there.

use http::Method;
use vero_model::UserAction;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Heartbeat,
    EventsTrack,
    /// `events/batch`: several track events in one request (not part of Vero's API).
    EventsBatch,
    /// One of the users endpoints, named by the command it produces.
    Users(UserAction),
    Metrics,
    Healthz,
    Readyz,
}

/// Which routes a listener serves: all of them on one port (the default), or the API
/// and the operator endpoints on separate listeners (`ops.listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    All,
    Api,
    Ops,
}

impl Endpoints {
    pub fn serves(self, route: Route) -> bool {
        match self {
            Self::All => true,
            Self::Api => route.is_api(),
            Self::Ops => !route.is_api(),
        }
    }
}

const API_PREFIX: &str = "/api/v2/";

impl Route {
    pub fn resolve(path: &str) -> Option<Self> {
        if let Some(api) = path.strip_prefix(API_PREFIX) {
            let api = api.strip_suffix(".json").unwrap_or(api);
            return match api {
                "heartbeat" => Some(Self::Heartbeat),
                "events/track" => Some(Self::EventsTrack),
                "events/batch" => Some(Self::EventsBatch),
                "users/track" => Some(Self::Users(UserAction::Track)),
                "users/edit" => Some(Self::Users(UserAction::Edit)),
                "users/tags/edit" => Some(Self::Users(UserAction::Tags)),
                "users/unsubscribe" => Some(Self::Users(UserAction::Unsubscribe)),
                "users/resubscribe" => Some(Self::Users(UserAction::Resubscribe)),
                "users/reidentify" => Some(Self::Users(UserAction::Reidentify)),
                "users/delete" => Some(Self::Users(UserAction::Delete)),
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
            Self::EventsTrack | Self::EventsBatch => "POST, OPTIONS",
            Self::Users(action) => match action {
                UserAction::Track | UserAction::Unsubscribe | UserAction::Resubscribe => "POST, OPTIONS",
                UserAction::Edit | UserAction::Tags | UserAction::Reidentify => "PUT, OPTIONS",
                UserAction::Delete => "POST, DELETE, OPTIONS",
            },
            Self::Heartbeat => "GET, HEAD, OPTIONS",
            Self::Metrics | Self::Healthz | Self::Readyz => "GET, HEAD",
        }
    }

    /// Whether `method` reaches the handler (`OPTIONS` on API routes is the CORS
    /// preflight, answered before this check).
    pub fn allows(self, method: &Method) -> bool {
        match self {
            Self::EventsTrack | Self::EventsBatch => method == Method::POST,
            Self::Users(action) => match action {
                UserAction::Track | UserAction::Unsubscribe | UserAction::Resubscribe => method == Method::POST,
                UserAction::Edit | UserAction::Tags | UserAction::Reidentify => method == Method::PUT,
                UserAction::Delete => method == Method::POST || method == Method::DELETE,
            },
            Self::Heartbeat | Self::Metrics | Self::Healthz | Self::Readyz => {
                method == Method::GET || method == Method::HEAD
            }
        }
    }

    /// Browser-facing API routes get CORS headers; operator endpoints do not.
    pub fn is_api(self) -> bool {
        matches!(self, Self::Heartbeat | Self::EventsTrack | Self::EventsBatch | Self::Users(_))
    }

    /// The `route` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::EventsTrack => "events_track",
            Self::EventsBatch => "events_batch",
            Self::Users(action) => match action {
                UserAction::Track => "users_track",
                UserAction::Edit => "users_edit",
                UserAction::Tags => "users_tags_edit",
                UserAction::Unsubscribe => "users_unsubscribe",
                UserAction::Resubscribe => "users_resubscribe",
                UserAction::Reidentify => "users_reidentify",
                UserAction::Delete => "users_delete",
            },
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
        assert_eq!(Route::resolve("/api/v2/events/batch"), Some(Route::EventsBatch));
        assert_eq!(Route::resolve("/api/v2/events/batch.json"), Some(Route::EventsBatch));
        assert!(Route::EventsBatch.allows(&Method::POST) && !Route::EventsBatch.allows(&Method::PUT));
        assert_eq!(Route::resolve("/api/v2/events/track/"), None);
        assert_eq!(Route::resolve("/api/v1/events/track"), None);
        assert_eq!(Route::resolve("/metrics.json"), None);
        assert_eq!(Route::resolve("/readyz"), Some(Route::Readyz));
        assert!(Route::EventsTrack.allows(&Method::POST) && !Route::EventsTrack.allows(&Method::GET));
    }

    #[test]
    fn separate_listeners_split_api_and_operator_routes() {
        for path in ["/metrics", "/healthz", "/readyz", "/api/v2/heartbeat", "/api/v2/events/track"] {
            let route = Route::resolve(path).unwrap();
            assert!(Endpoints::All.serves(route), "{path}");
            assert_ne!(Endpoints::Api.serves(route), Endpoints::Ops.serves(route), "{path}: exactly one of them");
            assert_eq!(Endpoints::Ops.serves(route), !path.starts_with("/api/"), "{path}");
        }
    }

    #[test]
    fn users_routes_and_their_methods() {
        let cases = [
            ("users/track", UserAction::Track, "POST, OPTIONS"),
            ("users/edit", UserAction::Edit, "PUT, OPTIONS"),
            ("users/tags/edit", UserAction::Tags, "PUT, OPTIONS"),
            ("users/unsubscribe", UserAction::Unsubscribe, "POST, OPTIONS"),
            ("users/resubscribe", UserAction::Resubscribe, "POST, OPTIONS"),
            ("users/reidentify", UserAction::Reidentify, "PUT, OPTIONS"),
            ("users/delete", UserAction::Delete, "POST, DELETE, OPTIONS"),
        ];
        for (path, action, allow) in cases {
            for path in [format!("/api/v2/{path}"), format!("/api/v2/{path}.json")] {
                assert_eq!(Route::resolve(&path), Some(Route::Users(action)), "{path}");
            }
            let route = Route::Users(action);
            assert_eq!(route.allow(), allow);
            // Allow lists exactly the methods `allows` takes, plus OPTIONS.
            for method in [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
                assert_eq!(route.allows(&method), allow.split(", ").any(|m| m == method.as_str()), "{path} {method}");
            }
            assert!(route.is_api() && route.label().starts_with("users_"));
        }
        assert_eq!(Route::resolve("/api/v2/users"), None);
        assert_eq!(Route::resolve("/api/v2/users/tags"), None);
    }
}
