//! Token → project resolution and the per-token rate limit.
//!
//! Guarantees: every configured token is compared on every lookup with `subtle`'s
//! constant-time equality, so response timing does not reveal how much of a token
//! matched or which token it was (only the token's length is observable). The token
//! itself is dropped here: everything downstream sees the project name and an
//! opaque token index.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{Project, RateLimitSettings};
use crate::error::ApiError;

/// What a token resolved to.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub project: &'a Arc<str>,
    /// Position of the project in the configured list.
    pub project_index: usize,
    /// Position of the token in the configured list; the rate-limit key.
    pub token_index: usize,
}

pub struct Authenticator {
    tokens: Vec<(Box<[u8]>, usize)>,
    projects: Vec<Arc<str>>,
    limiters: Option<Vec<DefaultDirectRateLimiter>>,
    clock: DefaultClock,
}

impl Authenticator {
    pub fn new(projects: &[Project], rate_limit: &RateLimitSettings) -> Self {
        let names: Vec<Arc<str>> = projects.iter().map(|p| Arc::from(p.name.as_str())).collect();
        let tokens: Vec<(Box<[u8]>, usize)> = projects
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.tokens.iter().map(move |t| (t.as_bytes().into(), i)))
            .collect();
        let limiters = rate_limit.enabled.then(|| {
            let per_second = NonZeroU32::new(rate_limit.requests_per_second).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(rate_limit.burst).unwrap_or(per_second);
            let quota = Quota::per_second(per_second).allow_burst(burst);
            tokens.iter().map(|_| RateLimiter::direct(quota)).collect()
        });
        Self { tokens, projects: names, limiters, clock: DefaultClock::default() }
    }

    /// Resolve `token` (None when the request carried none).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller<'_>, ApiError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(ApiError::MissingToken)?.as_bytes();
        // 0 = no match, else index + 1. No early exit: every token is compared.
        let mut found = 0u32;
        for (i, (candidate, _)) in self.tokens.iter().enumerate() {
            let hit = candidate.as_ref().ct_eq(token);
            found = u32::conditional_select(&found, &(i as u32 + 1), hit);
        }
        let token_index = (found as usize).checked_sub(1).ok_or(ApiError::UnknownToken)?;
        let project_index = self.tokens[token_index].1;
        Ok(Caller { project: &self.projects[project_index], project_index, token_index })
    }

    /// Take one request from the caller's token budget, if rate limiting is on.
    pub fn check_rate(&self, caller: &Caller<'_>) -> Result<(), ApiError> {
        let Some(limiters) = &self.limiters else { return Ok(()) };
        limiters[caller.token_index].check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Round up: a client waiting the advertised seconds must get through.
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited { retry_after_secs: retry_after_secs.max(1) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projects() -> Vec<Project> {
        vec![
            Project { name: "shop".into(), tokens: vec!["tok-a".into(), "tok-b".into()] },
            Project { name: "blog".into(), tokens: vec!["tok-c".into()] },
        ]
    }

    fn no_limit() -> RateLimitSettings {
        RateLimitSettings { enabled: false, requests_per_second: 1, burst: 1 }
    }

    #[test]
    fn tokens_resolve_to_their_project() {
        let auth = Authenticator::new(&projects(), &no_limit());
        assert_eq!(&**auth.authenticate(Some("tok-b")).unwrap().project, "shop");
        assert_eq!(&**auth.authenticate(Some("tok-c")).unwrap().project, "blog");
        assert_eq!(auth.authenticate(Some("tok-")).unwrap_err(), ApiError::UnknownToken);
        assert_eq!(auth.authenticate(Some("tok-cc")).unwrap_err(), ApiError::UnknownToken);
        assert_eq!(auth.authenticate(Some("")).unwrap_err(), ApiError::MissingToken);
        assert_eq!(auth.authenticate(None).unwrap_err(), ApiError::MissingToken);
    }

    #[test]
    fn rate_limit_is_per_token_and_says_when_to_retry() {
        let limit = RateLimitSettings { enabled: true, requests_per_second: 1, burst: 2 };
        let auth = Authenticator::new(&projects(), &limit);
        let a = auth.authenticate(Some("tok-a")).unwrap();
        assert!(auth.check_rate(&a).is_ok() && auth.check_rate(&a).is_ok());
        assert_eq!(auth.check_rate(&a).unwrap_err(), ApiError::RateLimited { retry_after_secs: 1 });
        let b = auth.authenticate(Some("tok-b")).unwrap();
        assert!(auth.check_rate(&b).is_ok(), "another token of the same project has its own budget");
    }
}
