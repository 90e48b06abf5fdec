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

/// Two more servers of `cargo xtask test`, there to be stopped: the endpoint failover
/// test stops the one its link uses.
pub fn failover_urls() -> [String; 2] {
    let urls = match option_env!("TETHER_TEST_FAILOVER") {
        Some(urls) => urls,
        None => panic!("TETHER_TEST_FAILOVER is unset: run the browser tests through `cargo xtask test`"),
    };
    let mut urls = urls.split_whitespace().map(str::to_owned);
    match (urls.next(), urls.next()) {
        (Some(first), Some(second)) => [first, second],
        _ => panic!("TETHER_TEST_FAILOVER holds two URLs: {urls:?}"),
    }
}

/// A fresh element attached to `<body>` for one test to render into.
pub fn mount_point() -> Element {
    let document = web_sys::window().unwrap().document().unwrap();
    let element = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&element).unwrap();
    element
}

/// Resolves once `condition` holds, re-checking after every animation frame: the link
/// hands out its events once per frame and Yew renders right after, so a frame is the
/// event that can change what the page shows. `limit` only keeps a broken test from
/// hanging; it is far above what any check needs.
pub async fn until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = js_sys::Date::now();
    while !condition() {
        if js_sys::Date::now() - start > limit.as_millis() as f64 {
            panic!("gave up after {limit:?} waiting for {what}");
        }
        next_frame().await;
    }
}

/// Resolves at the next animation frame.
pub async fn next_frame() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().request_animation_frame(&resolve).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

/// Counts animation frames from creation until dropped.
pub struct FrameCounter {
    frames: std::rc::Rc<std::cell::Cell<usize>>,
    _next: std::rc::Rc<std::cell::RefCell<Option<gloo_render::AnimationFrame>>>,
}

impl FrameCounter {
    /// Starts counting.
    pub fn start() -> Self {
        let frames = std::rc::Rc::new(std::cell::Cell::new(0));
        let next = std::rc::Rc::new(std::cell::RefCell::new(None));
        fn arm(
            frames: std::rc::Rc<std::cell::Cell<usize>>,
            next: std::rc::Rc<std::cell::RefCell<Option<gloo_render::AnimationFrame>>>,
        ) {
            let again = next.clone();
            *next.borrow_mut() = Some(gloo_render::request_animation_frame(move |_| {
                frames.set(frames.get() + 1);
                arm(frames, again);
            }));
        }
        arm(frames.clone(), next.clone());
        FrameCounter { frames, _next: next }
    }

    /// Frames so far.
    pub fn frames(&self) -> usize {
        self.frames.get()
    }
}

impl Drop for FrameCounter {
    fn drop(&mut self) {
        // Cancels the pending frame and breaks the closure's cycle back to the slot.
        self._next.borrow_mut().take();
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
