//! The Tether demo app, built by trunk and served by `tether-server`.

use tether_yew::{EchoPage, default_socket_url};
use yew::prelude::*;

#[component]
fn App() -> Html {
    let url = use_memo((), |_| default_socket_url());
    html! {
        <main class="app">
            <header class="app-header"><h1>{ "Tether" }</h1></header>
            <EchoPage url={AttrValue::from((*url).clone())} />
        </main>
    }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
