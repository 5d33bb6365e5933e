//! What the engine sends calls through: the runtime's [`Caller`] (auth, rate limits, retries) for live runs,
//! or a bare transport ([`Direct`]) for replays and dry runs, which need neither credentials nor retries.

use std::sync::Arc;

use serde_json::Value;

use super::call::{CallErrorKind, Caller};
use crate::diag::{codes, Code};
use crate::transport::{BoxFuture, RequestSpec, Response, Transport};

/// A sent request's outcome as the engine needs it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub response: Response,
    pub attempts: u32,
}

/// Why a call failed, after the runtime's retries.
#[derive(Debug, Clone)]
pub struct SendError {
    pub code: &'static Code,
    pub status: Option<u16>,
    pub body: Option<Value>,
    pub attempts: u32,
    /// Already redacted.
    pub message: String,
}

/// What the engine sends calls through: the runtime's `Caller` (auth, rate limit, retries) for live runs, or
/// a bare transport for replays and dry runs.
pub trait Sender: Send + Sync {
    fn send<'a>(
        &'a self,
        req: &'a RequestSpec,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Sent, SendError>>;
}

/// A transport used as is: one attempt, no auth (replay, dry run).
pub struct Direct(pub Arc<dyn Transport>);

impl Sender for Direct {
    fn send<'a>(&'a self, req: &'a RequestSpec, _key: Option<&'a str>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            match self.0.send(req).await {
                Ok(response) if response.is_success() => Ok(Sent { response, attempts: 1 }),
                Ok(response) => Err(SendError {
                    code: codes::RUN_HTTP_STATUS,
                    status: Some(response.status),
                    message: format!("{} {} answered {}", req.method, req.path, response.status),
                    body: Some(response.body),
                    attempts: 1,
                }),
                Err(e) => Err(SendError {
                    code: if matches!(e, crate::transport::TransportError::Unmatched { .. }) {
                        codes::RUN_REPLAY_UNMATCHED
                    } else {
                        codes::RUN_HTTP_TRANSPORT
                    },
                    status: None,
                    body: None,
                    attempts: 1,
                    message: e.to_string(),
                }),
            }
        })
    }
}

impl Sender for Caller {
    fn send<'a>(
        &'a self,
        req: &'a RequestSpec,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            match self.call(req, idempotency_key).await {
                Ok(outcome) => Ok(Sent { response: outcome.response, attempts: outcome.attempts }),
                Err(e) => Err(SendError {
                    code: match e.kind {
                        CallErrorKind::Http => codes::RUN_HTTP_STATUS,
                        CallErrorKind::Transport => codes::RUN_HTTP_TRANSPORT,
                        CallErrorKind::Auth => codes::RUN_AUTH,
                        CallErrorKind::Secret | CallErrorKind::Config => codes::RUN_SECRET_MISSING,
                    },
                    status: e.status,
                    body: e.body,
                    attempts: e.attempts,
                    message: e.message,
                }),
            }
        })
    }
}
