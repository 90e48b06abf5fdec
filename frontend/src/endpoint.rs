//! Where the app's WebSocket lives.

/// The `/ws` endpoint of the server that served this page: `wss://` on an https page,
/// `ws://` otherwise. The app and its socket share an origin, so a deployment needs no
/// configuration and `trunk serve` reaches the server through its WebSocket proxy.
pub fn default_socket_url() -> String {
    let location = web_sys::window().expect("a browser window").location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().unwrap_or_else(|_| "127.0.0.1:8080".into());
    format!("{scheme}://{host}/ws")
}
