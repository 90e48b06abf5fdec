//! A small "connection details" panel: what `use_connection` tells about the link.

use std::time::Duration;

use tether_shared::{Millis, State};
use tether_yew::use_connection;
use yew::prelude::*;

/// Round trip, traffic, reconnects and time connected, in a disclosure the person opens.
#[component]
pub fn ConnectionDetails() -> Html {
    let (view, _) = use_connection(None);
    let open = use_state(|| false);
    // While shown and connected, redraw each second so "connected for" counts up.
    let tick = use_state(|| 0u32);
    {
        let tick = tick.clone();
        let counting = *open && view.status.state == State::Open;
        use_effect_with(counting, move |counting| {
            let interval = counting
                .then(|| gloo_timers::callback::Interval::new(1_000, move || tick.set(tick.wrapping_add(1))));
            move || drop(interval)
        });
    }
    let ontoggle = {
        let open = open.clone();
        Callback::from(move |event: Event| {
            let details: web_sys::HtmlDetailsElement = event.target_unchecked_into();
            open.set(details.open());
        })
    };
    let stats = &view.status.stats;
    let ms = |rtt: Option<Duration>| rtt.map_or("–".to_owned(), |rtt| format!("{} ms", rtt.as_millis()));
    let connected_for = stats.connected_since.map_or("not connected".to_owned(), |since| {
        format!("{} s", Millis::monotonic().since(since).as_secs())
    });
    let row = |label: &'static str, value: String| {
        html! { <><dt>{ label }</dt><dd class={label.replace(' ', "-")}>{ value }</dd></> }
    };
    html! {
        <details class="connection-details" {ontoggle}>
            <summary>{ "Connection details" }</summary>
            <dl>
                { row("server", view.status.endpoint.clone()) }
                { row("transport", view.status.transport.name().to_owned()) }
                { row("round trip", format!("{} (smoothed {})", ms(stats.rtt), ms(stats.smoothed_rtt))) }
                { row("sent", format!("{} frames, {} bytes", stats.frames_sent, stats.bytes_sent)) }
                { row("received", format!("{} frames, {} bytes", stats.frames_received, stats.bytes_received)) }
                { row("reconnects", stats.reconnects.to_string()) }
                { row("connected for", connected_for) }
            </dl>
        </details>
    }
}
