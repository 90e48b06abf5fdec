//! The echo page: the smallest end-to-end check of a Tether deployment. It shows the
//! connection state and sends what is typed, and the server sends it straight back.

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use serde_json::Value;
use tether_shared::{ClientFrame, ServerFrame};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use tether_yew::socket::{BrowserSocket, SocketEvent};

/// The connection as the echo page shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum EchoStatus {
    /// Opening the socket.
    Connecting,
    /// Open: echoes are possible.
    Connected,
    /// Closed or failed, with a sentence saying why.
    Disconnected(String),
}

#[derive(Clone, Debug, PartialEq)]
struct EchoState {
    status: EchoStatus,
    replies: Vec<String>,
}

enum EchoAction {
    Status(EchoStatus),
    Reply(String),
}

impl Reducible for EchoState {
    type Action = EchoAction;

    fn reduce(self: Rc<Self>, action: EchoAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            EchoAction::Status(status) => next.status = status,
            EchoAction::Reply(text) => next.replies.push(text),
        }
        Rc::new(next)
    }
}

/// Properties of [`EchoPage`].
#[derive(Properties, PartialEq)]
pub struct EchoPageProps {
    /// The server's WebSocket URL, for example `ws://127.0.0.1:8080/ws`.
    pub url: AttrValue,
}

/// A page that opens a socket to `url`, shows its state, and echoes typed text.
#[component]
pub fn EchoPage(props: &EchoPageProps) -> Html {
    let state = use_reducer(|| EchoState { status: EchoStatus::Connecting, replies: Vec::new() });
    let outgoing = use_mut_ref(|| None::<mpsc::UnboundedSender<String>>);
    let input = use_node_ref();

    {
        let state = state.clone();
        let outgoing = outgoing.clone();
        use_effect_with(props.url.clone(), move |url| {
            state.dispatch(EchoAction::Status(EchoStatus::Connecting));
            let (sender, receiver) = mpsc::unbounded::<String>();
            *outgoing.borrow_mut() = Some(sender);
            wasm_bindgen_futures::spawn_local(drive(url.to_string(), receiver, state));
            // Dropping the sender ends `drive`, which drops (and so closes) the socket.
            move || drop(outgoing.borrow_mut().take())
        });
    }

    let onsubmit = {
        let input = input.clone();
        let outgoing = outgoing.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let Some(field) = input.cast::<HtmlInputElement>() else { return };
            let text = field.value();
            if text.is_empty() {
                return;
            }
            if let Some(sender) = outgoing.borrow().as_ref() {
                let frame = ClientFrame::Echo { body: Value::String(text) };
                if sender.unbounded_send(frame.encode()).is_ok() {
                    field.set_value("");
                }
            }
        })
    };

    let (class, label) = match &state.status {
        EchoStatus::Connecting => ("status connecting", "Connecting…".to_owned()),
        EchoStatus::Connected => ("status connected", "Connected".to_owned()),
        EchoStatus::Disconnected(why) => ("status failed", format!("Disconnected: {why}")),
    };
    let connected = state.status == EchoStatus::Connected;

    html! {
        <section class="echo">
            <h2>{ "Echo" }</h2>
            <p class={class} role="status" aria-live="polite">{ label }</p>
            <form {onsubmit}>
                <input ref={input} class="echo-input" placeholder="Type something" aria-label="Text to echo" />
                <button type="submit" disabled={!connected}>{ "Send" }</button>
            </form>
            <ol class="echo-replies">
                { for state.replies.iter().map(|reply| html! { <li>{ reply }</li> }) }
            </ol>
        </section>
    }
}

/// Pumps typed text out and echoes in until either side ends.
async fn drive(
    url: String,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    state: UseReducerHandle<EchoState>,
) {
    let status = |status| state.dispatch(EchoAction::Status(status));
    let (socket, mut events) = match BrowserSocket::open(&url) {
        Ok(opened) => opened,
        Err(why) => return status(EchoStatus::Disconnected(why)),
    };
    loop {
        futures::select! {
            text = outgoing.next() => match text {
                Some(text) => {
                    if let Err(why) = socket.send(&text) {
                        return status(EchoStatus::Disconnected(why));
                    }
                }
                // The page unmounted: dropping `socket` closes it.
                None => return,
            },
            event = events.next() => match event {
                Some(SocketEvent::Opened) => status(EchoStatus::Connected),
                Some(SocketEvent::Text(text)) => match ServerFrame::decode(&text) {
                    Ok(ServerFrame::Echo { body: Value::String(reply) }) => state.dispatch(EchoAction::Reply(reply)),
                    Ok(ServerFrame::Echo { body }) => state.dispatch(EchoAction::Reply(body.to_string())),
                    Ok(_) | Err(_) => {}
                },
                Some(SocketEvent::Closed { code, reason, .. }) => {
                    let why = if reason.is_empty() { format!("closed ({code})") } else { format!("{reason} ({code})") };
                    return status(EchoStatus::Disconnected(why));
                }
                Some(SocketEvent::Binary(_) | SocketEvent::Error) => {}
                None => return,
            },
        }
    }
}
