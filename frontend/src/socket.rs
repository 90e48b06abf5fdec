//! A browser WebSocket as a stream of events.
//!
//! `web_sys::WebSocket` reports through four callbacks. This wrapper turns them into
//! one ordered channel of [`SocketEvent`]s, which is the shape a sans-IO core wants,
//! and it owns the closures, so that dropping a `BrowserSocket` detaches every callback
//! and closes the socket: nothing is leaked when a component unmounts.

use futures::channel::mpsc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, Event, MessageEvent};

/// Something the browser reported about a socket.
#[derive(Clone, Debug, PartialEq)]
pub enum SocketEvent {
    /// The handshake finished; sends are possible now.
    Opened,
    /// A text message arrived.
    Text(String),
    /// A binary message arrived: MessagePack frames, on a socket that asked for them.
    Binary(Vec<u8>),
    /// The socket closed. `code` 1006 means no close frame: the network or the server died.
    Closed {
        /// The close code.
        code: u16,
        /// The reason the peer gave, possibly empty.
        reason: String,
        /// Whether the closing handshake completed.
        clean: bool,
    },
    /// The browser signalled an error; a `Closed` always follows.
    Error,
}

thread_local! {
    static LIVE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Browser sockets that exist right now, opening or open: the library's own leak tests
/// count them.
#[doc(hidden)]
pub fn live_sockets() -> usize {
    LIVE.with(|live| live.get())
}

/// An open (or opening) browser WebSocket. Dropping it closes the socket.
pub struct BrowserSocket {
    socket: web_sys::WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl BrowserSocket {
    /// Starts opening `url`; events arrive on the returned receiver.
    pub fn open(url: &str) -> Result<(Self, mpsc::UnboundedReceiver<SocketEvent>), String> {
        BrowserSocket::open_with(url, None)
    }

    /// Starts opening `url`, asking for `subprotocol` (`tether.v1.msgpack`) if given.
    pub fn open_with(
        url: &str,
        subprotocol: Option<&str>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<SocketEvent>), String> {
        let socket = match subprotocol {
            Some(protocol) => web_sys::WebSocket::new_with_str(url, protocol),
            None => web_sys::WebSocket::new(url),
        }
        .map_err(describe)?;
        let (events, receiver) = mpsc::unbounded();

        let tx = events.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| {
            let _ = tx.unbounded_send(SocketEvent::Opened);
        });
        let tx = events.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let data = event.data();
            let reported = match data.as_string() {
                Some(text) => SocketEvent::Text(text),
                None => SocketEvent::Binary(
                    data.dyn_ref::<js_sys::ArrayBuffer>()
                        .map_or_else(Vec::new, |b| js_sys::Uint8Array::new(b).to_vec()),
                ),
            };
            let _ = tx.unbounded_send(reported);
        });
        let tx = events.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let _ = tx.unbounded_send(SocketEvent::Closed {
                code: event.code(),
                reason: event.reason(),
                clean: event.was_clean(),
            });
        });
        let tx = events;
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            let _ = tx.unbounded_send(SocketEvent::Error);
        });

        LIVE.with(|live| live.set(live.get() + 1));
        socket.set_binary_type(web_sys::BinaryType::Arraybuffer);
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok((
            BrowserSocket {
                socket,
                _on_open: on_open,
                _on_message: on_message,
                _on_close: on_close,
                _on_error: on_error,
            },
            receiver,
        ))
    }

    /// Sends a text message. Fails if the socket is not open.
    pub fn send(&self, text: &str) -> Result<(), String> {
        self.socket.send_with_str(text).map_err(describe)
    }

    /// Sends a binary message. Fails if the socket is not open.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        self.socket.send_with_u8_array(bytes).map_err(describe)
    }

    /// Closes with a code and reason. Codes must be 1000 or 3000–4999 (browser rule).
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.socket.close_with_code_and_reason(code, reason);
    }
}

impl Drop for BrowserSocket {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        self.socket.set_onerror(None);
        let _ = self.socket.close();
        LIVE.with(|live| live.set(live.get() - 1));
    }
}

fn describe(error: wasm_bindgen::JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| error.as_string())
        .unwrap_or_else(|| "the browser refused to open the socket".into())
}
