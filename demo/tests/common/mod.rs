//! What the demo's browser tests share: where the demo's own server is.

/// The demo server's WebSocket URL (`tether-demo-server`'s `/ws`), fixed when the test
/// binary is compiled. Missing means the tests were not started by `cargo xtask test`,
/// which is a failure, not a skip: these are the only tests of the demo's handlers in a
/// browser.
pub fn demo_server_url() -> &'static str {
    match option_env!("TETHER_TEST_DEMO_SERVER") {
        Some(url) => url,
        None => panic!(
            "TETHER_TEST_DEMO_SERVER is unset: it names the demo server's /ws (tether-demo-server); \
             run the browser tests through `cargo xtask test`"
        ),
    }
}
