//! A connection's publishes through an app's handler, answered in the order they were
//! sent. Handler calls run at the same time (one slow call does not hold the next one
//! back from starting), but each is handed to the sequencer, or refused, only after
//! every earlier one: so a client's messages in a room keep their order, as they do
//! in a room without handlers.
//!
//! Most handlers answer without waiting for anything (a check, a rewrite). So a call is
//! first polled once, in place, when nothing of the connection's is in the lane: if it
//! is ready, its answer is acted on at once, with no task hop and no timer. A call that
//! has to wait goes to the lane, a task of its own started by the first such call,
//! where it runs under its deadline; the connection's own task never waits for a
//! handler. The lane ends when the connection does, after answering what it holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use tether_shared::{RejectCode, User};
use tokio::sync::mpsc;

use super::{Fault, Verdict, guarded, poll_once};
use crate::context::Context;
use crate::engine::Publish;
use crate::outbound::Outbound;
use crate::wire;

/// A publish whose handler call is under way.
pub(crate) struct Pending {
    pub id: String,
    pub room: String,
    pub user: User,
    /// Where the answer goes; the publish is counted in flight there.
    pub reply: Outbound,
}

/// A handler call and how long it may take.
pub(crate) struct HandlerCall {
    pub call: BoxFuture<'static, Verdict>,
    pub patience: Duration,
}

/// The sending end; dropping it lets the lane finish what it holds and end.
pub(crate) struct Lane {
    pending: mpsc::UnboundedSender<(Pending, HandlerCall)>,
    /// Publishes pushed and not yet acted on.
    held: Arc<AtomicUsize>,
}

impl Lane {
    /// Starts a lane for one connection.
    fn start(context: Arc<Context>) -> Lane {
        let (pending, incoming) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(incoming, context, held.clone()));
        Lane { pending, held }
    }

    /// Queues a publish behind the connection's earlier ones.
    fn push(&self, pending: Pending, call: HandlerCall) {
        self.held.fetch_add(1, Ordering::AcqRel);
        // The task ends only after this sender is dropped.
        let _ = self.pending.send((pending, call));
    }
}

/// Decides a publish by its handler's call: at once if the call is ready and nothing
/// earlier waits, else through the connection's lane (started if need be).
pub(crate) fn decide(
    lane: &mut Option<Lane>,
    context: &Arc<Context>,
    pending: Pending,
    mut call: HandlerCall,
) {
    let nothing_earlier = lane.as_ref().is_none_or(|lane| lane.held.load(Ordering::Acquire) == 0);
    if nothing_earlier && let Some(verdict) = poll_once(&mut call.call) {
        return hand_over(context, pending, verdict);
    }
    lane.get_or_insert_with(|| Lane::start(context.clone())).push(pending, call);
}

type Decided = (Pending, Result<Verdict, Fault>);

async fn run(
    mut incoming: mpsc::UnboundedReceiver<(Pending, HandlerCall)>,
    context: Arc<Context>,
    held: Arc<AtomicUsize>,
) {
    let mut running: FuturesOrdered<BoxFuture<'static, Decided>> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some((pending, verdict)) = running.next(), if !running.is_empty() => {
                hand_over(&context, pending, verdict);
                held.fetch_sub(1, Ordering::AcqRel);
            }
            next = incoming.recv() => match next {
                Some((pending, HandlerCall { call, patience })) => {
                    running.push_back(Box::pin(async move { (pending, guarded(call, patience).await) }));
                }
                None => break,
            },
        }
    }
    while let Some((pending, verdict)) = running.next().await {
        hand_over(&context, pending, verdict);
        held.fetch_sub(1, Ordering::AcqRel);
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
        Ok(Verdict::Store(body)) => match crate::limits::checked_raw(body, context.config.max_body_bytes) {
            Ok(body) => context.engine.publish(Publish { room, id, user, body: Arc::from(body), reply }),
            // What the handler returned is held to the limits of what a client sends.
            Err(refused) => reject(RejectCode::TooLarge, &refused.to_string()),
        },
        Ok(Verdict::Refuse(refused)) => {
            context.metrics.rejection(RejectCode::Refused);
            reply.push_reply(wire::refused(&id, refused));
        }
        Ok(Verdict::Broken(why)) => {
            tracing::error!(why, room, id, "publish handler's answer");
            reject(RejectCode::Internal, &why);
        }
        Ok(Verdict::Unavailable(why)) => {
            tracing::warn!(why, room, id, "publish hook");
            reject(RejectCode::Unavailable, &why);
        }
        Err(fault) => {
            tracing::error!(%fault, room, id, "publish handler");
            reject(RejectCode::Internal, &fault.to_string());
        }
    }
}
