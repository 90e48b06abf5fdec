//! A connection's publishes through an app's handler, answered in the order they were
//! sent. Handler calls run at the same time (one slow call does not hold the next one
//! back from starting), but each is handed to the sequencer, or refused, only after
//! every earlier one: so a client's messages in a room keep their order, as they do
//! in a room without handlers.
//!
//! The lane is a task of its own, started by a connection's first publish to a room
//! with a publish handler; the connection's own task never waits for a handler. It
//! ends when the connection does, after answering what it holds.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use tether_shared::{RejectCode, User};
use tokio::sync::mpsc;

use super::{Fault, Verdict, guarded};
use crate::context::Context;
use crate::outbound::Outbound;
use crate::sequencer::Publish;
use crate::wire;

/// A publish whose handler call is under way.
pub(crate) struct Pending {
    pub id: String,
    pub room: String,
    pub user: User,
    /// Where the answer goes; the publish is counted in flight there.
    pub reply: Outbound,
    pub call: BoxFuture<'static, Verdict>,
    pub patience: Duration,
}

/// The sending end; dropping it lets the lane finish what it holds and end.
pub(crate) struct Lane {
    pending: mpsc::UnboundedSender<Pending>,
}

impl Lane {
    /// Starts a lane for one connection.
    pub(crate) fn start(context: Arc<Context>) -> Lane {
        let (pending, incoming) = mpsc::unbounded_channel();
        tokio::spawn(run(incoming, context));
        Lane { pending }
    }

    /// Queues a publish behind the connection's earlier ones.
    pub(crate) fn push(&self, pending: Pending) {
        // The task ends only after this sender is dropped.
        let _ = self.pending.send(pending);
    }
}

type Decided = (Pending, Result<Verdict, Fault>);

async fn run(mut incoming: mpsc::UnboundedReceiver<Pending>, context: Arc<Context>) {
    let mut running: FuturesOrdered<BoxFuture<'static, Decided>> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some((pending, verdict)) = running.next(), if !running.is_empty() => {
                hand_over(&context, pending, verdict);
            }
            next = incoming.recv() => match next {
                Some(mut pending) => {
                    let call = std::mem::replace(&mut pending.call, Box::pin(async { Ok(serde_json::Value::Null) }));
                    let patience = pending.patience;
                    running.push_back(Box::pin(async move { (pending, guarded(call, patience).await) }));
                }
                None => break,
            },
        }
    }
    while let Some((pending, verdict)) = running.next().await {
        hand_over(&context, pending, verdict);
    }
}

/// The handler's answer, acted on: stored (through the sequencer, which acks), or
/// answered with a rejection that ends the publish in flight.
fn hand_over(context: &Context, pending: Pending, verdict: Result<Verdict, Fault>) {
    let Pending { id, room, user, reply, .. } = pending;
    let reject = |code: RejectCode, message: &str| {
        context.metrics.rejection(code);
        reply.push_reply(wire::reject(&id, code, message));
    };
    match verdict {
        Ok(Ok(body)) => match crate::limits::checked_body(&body, context.config.max_body_bytes) {
            Ok(body) => context.sequencer.publish(Publish { room, id, user, body: Arc::from(body), reply }),
            // The handler's rewrite is held to the same limits as what a client sends.
            Err(refused) => reject(RejectCode::TooLarge, &refused.to_string()),
        },
        Ok(Err(refused)) => {
            context.metrics.rejection(RejectCode::Refused);
            reply.push_reply(wire::refused(&id, refused));
        }
        Err(fault) => {
            tracing::error!(%fault, room, id, "publish handler");
            reject(RejectCode::Internal, &fault.to_string());
        }
    }
}
