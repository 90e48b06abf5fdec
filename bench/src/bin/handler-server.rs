//! `handler-server`: Tether with one typed channel, `typed:*`, whose publish handler
//! accepts every message as it is and whose request handler answers each request with
//! its own body. The handlers workload runs the same load into
//! `typed:…` rooms and into plain rooms of this one server, so the difference is what a
//! channel costs: decoding each body as the channel's type, the handler call, and
//! re-encoding what it returns.

use serde::{Deserialize, Serialize};
use tether_server::{Handlers, Server};
use tether_shared::channel::{Channel, Reason};

/// The bodies the bench sends: `{"t": micros}` (fan-out) or `{"text": …}` (publishes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

struct Typed;

impl Channel for Typed {
    const ROOMS: &'static str = "typed:*";
    type Message = Sample;
    type State = Sample;
    type Meta = ();
    type Error = Reason;
}

impl tether_shared::Requests for Typed {
    type Request = Sample;
    type Reply = Sample;
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let accept_all = Handlers::<Typed>::new()
        .on_publish(|_call, sample: Sample| async move { Ok(sample) })
        .on_request(|_call, sample: Sample| async move { Ok(sample) });
    tether_server::cli::run(|config| Server::new(config).channel(accept_all)).await
}
