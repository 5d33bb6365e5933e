//! `DryRun`: reads are answered from a cassette when it has them; writes are never sent — they get the
//! cassette's answer when one is recorded (so later steps see realistic data) or a stand-in `{}`.

use super::cassette::Cassette;
use super::replay::Replay;
use super::{BoxFuture, RequestSpec, Response, Transport, TransportError};

pub struct DryRun {
    replay: Replay,
}

impl DryRun {
    pub fn new(cassette: Option<Cassette>) -> DryRun {
        DryRun { replay: Replay::new(cassette.unwrap_or_default()) }
    }
}

impl Transport for DryRun {
    fn send<'a>(&'a self, req: &'a RequestSpec) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match self.replay.answer(req) {
                Ok(r) => Ok(r),
                Err(_) if req.is_write() => Ok(Response {
                    status: 200,
                    headers: vec![("x-weft-dry-run".into(), "not sent".into())],
                    body: serde_json::json!({}),
                }),
                Err(e) => Err(e),
            }
        })
    }
}
