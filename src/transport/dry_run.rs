//! `DryRun`: nothing is sent. A request gets the cassette's answer when one is recorded (so later steps see
//! realistic data); else a write, and with no cassette at all a read too, gets a stand-in of the operation's
//! response schema (`crate::catalog::schema::stand_in`: strings read `<contact.id>`), so that the steps after
//! it still show the requests they would send (`{}` when the operation declares no response). With a
//! cassette, a read it does not have fails the step, as in `weft test`: the cassette was meant to cover it.

use std::collections::HashMap;

use serde_json::Value;

use super::cassette::Cassette;
use super::replay::Replay;
use super::{BoxFuture, RequestSpec, Response, Transport, TransportError};

/// The header on an answer that was made up, not recorded (for whoever reads raw responses; the dry-run
/// report tells stand-ins apart by comparing a step's output with its operation's stand-in).
const STAND_IN_HEADER: &str = "x-weft-dry-run";

pub struct DryRun {
    replay: Replay,
    /// Operation (as `RequestSpec::operation` names it) → the stand-in answer for its unanswered requests.
    stand_ins: HashMap<String, Value>,
    /// No cassette was given: reads get stand-ins too.
    stand_in_reads: bool,
}

impl DryRun {
    pub fn new(cassette: Option<Cassette>, stand_ins: HashMap<String, Value>) -> DryRun {
        let stand_in_reads = cassette.is_none();
        DryRun { replay: Replay::new(cassette.unwrap_or_default()), stand_ins, stand_in_reads }
    }
}

impl Transport for DryRun {
    fn send<'a>(&'a self, req: &'a RequestSpec) -> BoxFuture<'a, Result<Response, TransportError>> {
        Box::pin(async move {
            match self.replay.answer(req) {
                Ok(r) => Ok(r),
                Err(_) if req.is_write() || self.stand_in_reads => Ok(Response {
                    status: 200,
                    headers: vec![(STAND_IN_HEADER.into(), "not sent".into())],
                    body: self.stand_ins.get(&req.operation).cloned().unwrap_or_else(|| serde_json::json!({})),
                }),
                Err(e) => Err(e),
            }
        })
    }
}
