//! Connection UI: an indicator, an offline banner, and the queue count. Each uses colour
//! and words, and announces changes to screen readers.

use tether_shared::State;
use yew::prelude::*;

use crate::hooks::{use_connection, use_link, use_status};
use crate::link::Transport;

/// Properties shared by the connection components.
#[derive(Properties, PartialEq, Default)]
pub struct ConnectionProps {
    /// The server URL; the provider's default when unset.
    #[prop_or_default]
    pub url: Option<AttrValue>,
}

/// The words and class for a state, as the indicator shows them.
pub fn describe(
    state: &State,
    retry_in_secs: Option<u64>,
    attempt: Option<(u32, Option<u32>)>,
) -> (&'static str, String) {
    match state {
        State::Open => ("connected", "Connected".into()),
        State::Idle | State::Connecting { attempt: 0 } => ("connecting", "Connecting…".into()),
        State::Connecting { attempt } => ("connecting", format!("Reconnecting… (attempt {attempt})")),
        State::Reconnecting { .. } => {
            let secs = retry_in_secs.unwrap_or(0);
            let of = match attempt {
                Some((k, Some(n))) => format!(" (attempt {k} of {n})"),
                Some((k, None)) => format!(" (attempt {k})"),
                None => String::new(),
            };
            ("reconnecting", format!("Reconnecting in {secs} s{of}"))
        }
        State::Offline => ("offline", "Offline".into()),
        State::Closed => ("closed", "Disconnected".into()),
        State::Failed { reason } => ("failed", format!("Connection failed: {reason}")),
    }
}

/// Connected / connecting / reconnecting in N s (attempt k) / offline / failed, with a
/// retry button when waiting or failed.
#[component]
pub fn ConnectionIndicator(props: &ConnectionProps) -> Html {
    let (view, retry_now) = use_connection(props.url.clone());
    let (class, mut text) = describe(&view.status.state, view.retry_in_secs, view.attempt);
    if view.status.state == State::Open && view.status.transport != Transport::WebSocket {
        text = format!("{text} (fallback: {})", view.status.transport.name());
    }
    let can_retry =
        matches!(view.status.state, State::Reconnecting { .. } | State::Failed { .. } | State::Closed);
    let error = match (&view.status.state, &view.status.last_error) {
        (State::Reconnecting { .. }, Some(error)) => Some(error.clone()),
        _ => None,
    };
    let onclick = Callback::from(move |_| retry_now.emit(()));
    // Which server and how far, on hover (and for tests, as data).
    let server = match view.status.stats.smoothed_rtt {
        Some(rtt) if view.status.state == State::Open => {
            format!("Server: {}, round trip {} ms", view.status.endpoint, rtt.as_millis())
        }
        _ => format!("Server: {}", view.status.endpoint),
    };
    html! {
        <div class={classes!("indicator", class)} role="status" aria-live="polite"
            title={server} data-endpoint={view.status.endpoint.clone()}>
            <span class="indicator-dot" aria-hidden="true"></span>
            <span class="indicator-text">{ text }</span>
            if let Some(error) = error { <span class="indicator-error">{ error }</span> }
            if can_retry { <button class="retry" {onclick}>{ "Retry now" }</button> }
        </div>
    }
}

/// A banner while the browser reports no network.
#[component]
pub fn OfflineBanner(props: &ConnectionProps) -> Html {
    let link = use_link(props.url.clone(), None);
    let status = use_status(&link);
    if status.state != State::Offline {
        return html! {};
    }
    html! {
        <div class="offline-banner" role="alert">
            { "You are offline. Messages you send are kept and will go out when the connection is back." }
        </div>
    }
}

/// "N messages waiting", plus any storage warning.
#[component]
pub fn QueueStatus(props: &ConnectionProps) -> Html {
    let link = use_link(props.url.clone(), None);
    let status = use_status(&link);
    let waiting = match status.queued {
        0 => None,
        1 => Some("1 message waiting".to_owned()),
        n => Some(format!("{n} messages waiting")),
    };
    html! {
        <div class="queue-status" aria-live="polite">
            if let Some(waiting) = waiting { <span class="queue-count">{ waiting }</span> }
            if let Some(warning) = status.warning { <span class="queue-warning" role="alert">{ warning.to_string() }</span> }
        </div>
    }
}
