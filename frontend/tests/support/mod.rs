//! Shared by the browser tests: the address of the real server that `cargo xtask test`
//! started, a private mount point, and waiting for the page to reach a state.
#![allow(dead_code, missing_docs)]

use std::time::Duration;

use wasm_bindgen::JsCast;
use web_sys::Element;

/// The test server's WebSocket URL, fixed when the test binary is compiled. Missing
/// means the tests were not started by `cargo xtask test`, which is a failure, not a skip.
pub fn server_url() -> &'static str {
    match option_env!("TETHER_TEST_SERVER") {
        Some(url) => url,
        None => panic!("TETHER_TEST_SERVER is unset: run the browser tests through `cargo xtask test`"),
    }
}

/// A fresh element attached to `<body>` for one test to render into.
pub fn mount_point() -> Element {
    let document = web_sys::window().unwrap().document().unwrap();
    let element = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&element).unwrap();
    element
}

/// Resolves once `condition` holds, re-checking whenever the browser has run its
/// pending work; panics with `what` after `limit`.
pub async fn until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = js_sys::Date::now();
    while !condition() {
        if js_sys::Date::now() - start > limit.as_millis() as f64 {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        yew::platform::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The text of the first element matching `selector` under `root`.
pub fn text_of(root: &Element, selector: &str) -> Option<String> {
    root.query_selector(selector).ok().flatten().and_then(|e| e.text_content())
}

/// Sets an input's value as if typed.
pub fn type_into(root: &Element, selector: &str, text: &str) {
    let input: web_sys::HtmlInputElement =
        root.query_selector(selector).unwrap().unwrap().dyn_into().unwrap();
    input.set_value(text);
}

/// Clicks the first element matching `selector`.
pub fn click(root: &Element, selector: &str) {
    let element: web_sys::HtmlElement = root.query_selector(selector).unwrap().unwrap().dyn_into().unwrap();
    element.click();
}
