//! The HTTP fallback transports in the browser, shaped like a [`BrowserSocket`]: the
//! same [`SocketEvent`]s come out, so the link and the shared core cannot tell them
//! from a WebSocket.
//!
//! "Opening" is immediate; the first frame sent (the core's `hello`) opens the
//! session with `POST /rt/open`, whose answer is the `welcome`. Frames go up with
//! `POST /rt/send`, one request at a time with whatever queued meanwhile, so they keep
//! their order. Frames come down as Server-Sent Events (the browser's `EventSource`
//! resumes a dropped stream with `Last-Event-ID` by itself) or by long-polling.
//! Bodies are sent as `text/plain`, which keeps cross-origin requests free of
//! preflights.
//!
//! [`BrowserSocket`]: crate::socket::BrowserSocket

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::mpsc;
use gloo_net::http::Request;
use serde_json::Value;
use tether_shared::close;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, MessageEvent};

use crate::socket::SocketEvent;

/// The reason of the close reported when a session's event stream is refused (not
/// merely dropped): the link then tries long-polling.
pub const STREAM_REFUSED: &str = "the event stream was refused";

/// How frames come down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downstream {
    /// A `text/event-stream` (`GET /rt/sse`).
    Sse,
    /// One `GET /rt/poll` after another.
    LongPoll,
}

/// A session over HTTP. Dropping it stops its requests and leaves the session.
pub struct HttpSocket {
    state: Rc<RefCell<State>>,
}

struct State {
    /// `http(s)://host[:port]`, where `/rt/…` lives.
    base: String,
    downstream: Downstream,
    session: Option<String>,
    /// Frames waiting for the request in flight to finish.
    outgoing: Vec<String>,
    sending: bool,
    ended: bool,
    events: mpsc::UnboundedSender<SocketEvent>,
    source: Option<EventStream>,
}

/// An `EventSource` with the callbacks it holds.
struct EventStream {
    source: web_sys::EventSource,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.source.set_onmessage(None);
        self.source.set_onerror(None);
        self.source.close();
    }
}

/// The HTTP base of a WebSocket URL: `ws://host/ws` → `http://host`.
pub fn http_base(ws_url: &str) -> String {
    let url = ws_url.replacen("wss://", "https://", 1).replacen("ws://", "http://", 1);
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    match url[scheme_end..].find('/') {
        Some(path) => url[..scheme_end + path].to_owned(),
        None => url,
    }
}

impl HttpSocket {
    /// Starts a session towards the server of `ws_url`; events arrive on the receiver.
    pub fn open(ws_url: &str, downstream: Downstream) -> (Self, mpsc::UnboundedReceiver<SocketEvent>) {
        let (events, receiver) = mpsc::unbounded();
        let _ = events.unbounded_send(SocketEvent::Opened);
        let state = State {
            base: http_base(ws_url),
            downstream,
            session: None,
            outgoing: Vec::new(),
            sending: false,
            ended: false,
            events,
            source: None,
        };
        (HttpSocket { state: Rc::new(RefCell::new(state)) }, receiver)
    }

    /// Queues a frame; it goes out with the next request.
    pub fn send(&self, text: &str) -> Result<(), String> {
        if self.state.borrow().ended {
            return Err("the session has ended".into());
        }
        self.state.borrow_mut().outgoing.push(text.to_owned());
        kick(&self.state);
        Ok(())
    }

    /// Leaves the session, as a WebSocket close would.
    pub fn close(&self, _code: u16, _reason: &str) {
        leave(&self.state);
    }
}

impl Drop for HttpSocket {
    fn drop(&mut self) {
        leave(&self.state);
    }
}

/// Ends the session here and tells the server, once.
fn leave(state: &Rc<RefCell<State>>) {
    let mut inner = state.borrow_mut();
    if inner.ended {
        return;
    }
    inner.ended = true;
    inner.source = None;
    if let Some(session) = inner.session.clone() {
        let url = format!("{}/rt/close?session={session}", inner.base);
        wasm_bindgen_futures::spawn_local(async move {
            let _ = Request::post(&url).send().await;
        });
    }
}

/// Ends the session and reports how.
fn end(state: &Rc<RefCell<State>>, code: u16, reason: String) {
    let mut inner = state.borrow_mut();
    if inner.ended {
        return;
    }
    inner.ended = true;
    inner.source = None;
    let _ = inner.events.unbounded_send(SocketEvent::Closed { code, reason, clean: code != close::ABNORMAL });
}

/// Starts the next request if none is in flight: the open, or a send of what queued.
fn kick(state: &Rc<RefCell<State>>) {
    let (url, body) = {
        let mut inner = state.borrow_mut();
        if inner.sending || inner.ended || inner.outgoing.is_empty() {
            return;
        }
        inner.sending = true;
        match inner.session.clone() {
            None => (format!("{}/rt/open", inner.base), inner.outgoing.remove(0)),
            Some(session) => {
                let frames = std::mem::take(&mut inner.outgoing);
                (format!("{}/rt/send?session={session}", inner.base), format!("[{}]", frames.join(",")))
            }
        }
    };
    let opening = state.borrow().session.is_none();
    let state = state.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let answer = match Request::post(&url).header("Content-Type", "text/plain").body(body) {
            Ok(request) => request.send().await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let answer = match answer {
            Ok(response) => Ok((response.status(), response.text().await.unwrap_or_default())),
            Err(error) => Err(error),
        };
        state.borrow_mut().sending = false;
        match answer {
            Ok((200, text)) if opening => opened(&state, &text),
            Ok((204, _)) if !opening => {}
            Ok((status, text)) => {
                let (code, reason) = refusal(status, &text, &state);
                end(&state, code, reason);
                return;
            }
            Err(error) => {
                end(&state, close::ABNORMAL, error);
                return;
            }
        }
        kick(&state);
    });
}

/// The open's answer: the session, and the `welcome` as the first frame.
fn opened(state: &Rc<RefCell<State>>, text: &str) {
    let Ok(answer) = serde_json::from_str::<Value>(text) else {
        return end(state, close::ABNORMAL, "the server's answer was not JSON".into());
    };
    let (Some(session), Some(event)) = (answer["session"].as_str(), answer["event"].as_u64()) else {
        return end(state, close::ABNORMAL, "the server's answer named no session".into());
    };
    let downstream = {
        let mut inner = state.borrow_mut();
        inner.session = Some(session.to_owned());
        let _ = inner.events.unbounded_send(SocketEvent::Text(answer["frame"].to_string()));
        inner.downstream
    };
    match downstream {
        Downstream::Sse => stream(state, event),
        Downstream::LongPoll => poll(state.clone(), event),
    }
}

/// What a refused request means, as a close code and reason. A refused `hello` also
/// hands its `error` frame to the core, as a socket would have.
fn refusal(status: u16, text: &str, state: &Rc<RefCell<State>>) -> (u16, String) {
    let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(frame) = answer.get("frame") {
        let _ = state.borrow().events.unbounded_send(SocketEvent::Text(frame.to_string()));
    }
    let code = answer["code"].as_u64().map(|code| code as u16).unwrap_or(match status {
        401 => close::UNAUTHORIZED,
        429 | 503 => close::TRY_AGAIN_LATER,
        _ => close::ABNORMAL,
    });
    let reason = answer["reason"].as_str().or(answer["message"].as_str()).unwrap_or("refused").to_owned();
    (code, reason)
}

/// The close code and reason of a session's end, as the server reports it
/// (`{"code":…,"reason":…}`).
fn ending(ended: &Value) -> (u16, String) {
    let code = ended["code"].as_u64().map_or(close::ABNORMAL, |code| code as u16);
    (code, ended["reason"].as_str().unwrap_or_default().to_owned())
}

/// Frames as Server-Sent Events after event `after`.
fn stream(state: &Rc<RefCell<State>>, after: u64) {
    let url = {
        let inner = state.borrow();
        let session = inner.session.clone().unwrap_or_default();
        format!("{}/rt/sse?session={session}&last_event_id={after}", inner.base)
    };
    let Ok(source) = web_sys::EventSource::new(&url) else {
        return end(state, close::ABNORMAL, "the browser refused the event stream".into());
    };
    let events = state.borrow().events.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(text) = event.data().as_string() {
            let _ = events.unbounded_send(SocketEvent::Text(text));
        }
    });
    let weak = Rc::downgrade(state);
    let on_close = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let ended: Value =
            event.data().as_string().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        if let Some(state) = weak.upgrade() {
            let (code, reason) = ending(&ended);
            end(&state, code, reason);
        }
    });
    let weak = Rc::downgrade(state);
    let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
        // A dropped stream is reopened by the browser (with `Last-Event-ID`); one the
        // server refused stays closed, and then the session is lost.
        let Some(state) = weak.upgrade() else { return };
        let closed = state
            .borrow()
            .source
            .as_ref()
            .is_some_and(|s| s.source.ready_state() == web_sys::EventSource::CLOSED);
        if closed {
            end(&state, close::ABNORMAL, STREAM_REFUSED.into());
        }
    });
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let _ = source.add_event_listener_with_callback("close", on_close.as_ref().unchecked_ref());
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    state.borrow_mut().source =
        Some(EventStream { source, _on_message: on_message, _on_close: on_close, _on_error: on_error });
}

/// Frames by long-polling after event `after`, one request after another.
fn poll(state: Rc<RefCell<State>>, mut after: u64) {
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let url = {
                let inner = state.borrow();
                if inner.ended {
                    return;
                }
                let session = inner.session.clone().unwrap_or_default();
                format!("{}/rt/poll?session={session}&after={after}", inner.base)
            };
            let answer = match Request::get(&url).send().await {
                Ok(response) if response.status() == 200 => match response.text().await {
                    Ok(text) => serde_json::from_str::<Polled>(&text).map_err(|e| e.to_string()),
                    Err(error) => Err(error.to_string()),
                },
                Ok(response) => Err(format!("the poll was refused ({})", response.status())),
                Err(error) => Err(error.to_string()),
            };
            if state.borrow().ended {
                return;
            }
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => return end(&state, close::ABNORMAL, error),
            };
            for entry in answer.frames {
                after = entry.event;
                let _ = state.borrow().events.unbounded_send(SocketEvent::Text(entry.frame.get().to_owned()));
            }
            if let Some(ended) = &answer.closed {
                let (code, reason) = ending(ended);
                return end(&state, code, reason);
            }
        }
    });
}

/// A long-poll's answer. Each frame is kept as the server's text: read into a value, it
/// would nest three levels deeper than the frame itself, past what serde_json reads when
/// a body nests as deeply as the protocol allows.
#[derive(serde::Deserialize)]
struct Polled {
    frames: Vec<PolledFrame>,
    /// How the connection ended, once it has (`null` before).
    closed: Option<Value>,
}

#[derive(serde::Deserialize)]
struct PolledFrame {
    event: u64,
    frame: Box<serde_json::value::RawValue>,
}

#[cfg(test)]
mod tests {
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    use super::{Polled, http_base};

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn a_poll_carries_frames_as_deep_as_the_protocol_allows() {
        // A body nested 126 deep: within serde_json's limit alone, past it inside the
        // poll's answer if that were read as one value.
        let body = format!("{}1{}", "[".repeat(126), "]".repeat(126));
        let frame = format!(r#"{{"type":"echo","body":{body}}}"#);
        let answer = format!(r#"{{"frames":[{{"event":3,"frame":{frame}}}],"closed":null}}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&answer).is_err(), "too deep as one value");
        let polled: Polled = serde_json::from_str(&answer).expect("the answer reads");
        assert_eq!(polled.frames[0].event, 3);
        assert_eq!(polled.frames[0].frame.get(), frame, "the frame as the server wrote it");
        assert!(polled.closed.is_none());
        let ended: Polled =
            serde_json::from_str(r#"{"frames":[],"closed":{"code":4002,"reason":"idle"}}"#).unwrap();
        assert_eq!(ended.closed.unwrap()["code"], 4002);
    }

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn the_http_base_of_a_socket_url() {
        assert_eq!(http_base("ws://127.0.0.1:8080/ws"), "http://127.0.0.1:8080");
        assert_eq!(http_base("wss://chat.example.com/ws"), "https://chat.example.com");
        assert_eq!(http_base("ws://host"), "http://host");
    }
}
