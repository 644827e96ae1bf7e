//! The simulator's injected faults: which request a [`Fault`] hits, and
//! what it does to the reply (before the route answers, or to a listing
//! page after).

use axum::http::StatusCode;
use url::Url;

use crate::lock;
use crate::server::{Config, Ctx, Reply, Shared};
use crate::{Fault, FaultKind, Times};

impl Config {
    pub(crate) fn set_faults(&mut self, faults: Vec<Fault>) {
        self.faults = faults.into_iter().map(|fault| (fault, 0)).collect();
    }

    /// Fires (and counts) the first not-exhausted fault matching the request
    /// whose kind `wanted` accepts.
    pub(crate) fn fire(
        &mut self,
        ctx: &Ctx<'_>,
        wanted: impl Fn(FaultKind) -> bool,
    ) -> Option<FaultKind> {
        for (fault, fired) in &mut self.faults {
            let target = fault.target;
            let matches = target.family.is_none_or(|b| b == ctx.bucket)
                && target.route.is_none_or(|r| r == ctx.route)
                && target.page.is_none_or(|p| p == ctx.page)
                && wanted(fault.kind);
            let left = match fault.times {
                Times::Once => *fired < 1,
                Times::Count(count) => *fired < count,
                Times::Always => true,
            };
            if matches && left {
                *fired += 1;
                return Some(fault.kind);
            }
        }
        None
    }
}

impl Shared {
    /// Fires the first matching pre-response fault: a delay (then looks
    /// again), or an error reply.
    pub(crate) async fn injected_fault(&self, ctx: &Ctx<'_>) -> Option<Reply> {
        loop {
            let fault = lock(&self.config).fire(ctx, |kind| {
                matches!(
                    kind,
                    FaultKind::ServerError(_)
                        | FaultKind::RateLimited
                        | FaultKind::ConcurrencyLimited
                        | FaultKind::Slow(_)
                        | FaultKind::NotFound
                        | FaultKind::Forbidden
                )
            });
            match fault {
                None => return None,
                Some(FaultKind::Slow(delay)) => tokio::time::sleep(delay).await,
                Some(FaultKind::ServerError(status)) => {
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let (code, summary) = if status == StatusCode::SERVICE_UNAVAILABLE {
                        ("E0000010", "Service is in read only mode")
                    } else {
                        ("E0000009", "Internal Server Error")
                    };
                    let mut reply = Reply::error(status, code, summary, ctx.serial);
                    reply.rate = Some(self.peek_window(ctx.bucket));
                    return Some(reply);
                }
                Some(FaultKind::RateLimited) => {
                    let mut rate = self.peek_window(ctx.bucket);
                    rate.remaining = 0;
                    return Some(self.rate_limited(ctx, rate));
                }
                Some(FaultKind::NotFound) => {
                    let mut reply = Reply::error(
                        StatusCode::NOT_FOUND,
                        "E0000007",
                        &format!("Not found: Resource not found: {} (injected)", ctx.path),
                        ctx.serial,
                    );
                    reply.rate = Some(self.peek_window(ctx.bucket));
                    return Some(reply);
                }
                Some(FaultKind::Forbidden) => {
                    let mut reply = Reply::error(
                        StatusCode::FORBIDDEN,
                        "E0000006",
                        "You do not have permission to perform the requested action",
                        ctx.serial,
                    );
                    reply.rate = Some(self.peek_window(ctx.bucket));
                    return Some(reply);
                }
                Some(_) => return Some(self.concurrency_429(ctx)),
            }
        }
    }

    /// Fires the first matching fault that changes a listing page already
    /// built: a cut body, a foreign or repeated `next` link, a reset.
    pub(crate) fn post_fault(
        &self,
        ctx: &Ctx<'_>,
        reply: &mut Reply,
        self_url: &Url,
        next_url: &mut Option<Url>,
    ) {
        let post = lock(&self.config).fire(ctx, |kind| {
            matches!(
                kind,
                FaultKind::TruncatedBody
                    | FaultKind::ForeignNextLink
                    | FaultKind::RepeatCursor
                    | FaultKind::ConnectionReset
            )
        });
        match post {
            Some(FaultKind::TruncatedBody) => {
                let half = reply.body.len() / 2;
                reply.body.truncate(half);
            }
            Some(FaultKind::ForeignNextLink) => {
                let mut foreign = next_url.clone().unwrap_or_else(|| self_url.clone());
                let _ = foreign.set_host(Some("okta-sim-foreign.invalid"));
                *next_url = Some(foreign);
            }
            Some(FaultKind::RepeatCursor) => *next_url = Some(self_url.clone()),
            Some(FaultKind::ConnectionReset) => reply.reset = true,
            _ => {}
        }
    }
}
