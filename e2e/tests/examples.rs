//! The example apps in Chromium: an axum app and a warp app, each with its own sign-in
//! and page, and Tether mounted under `/live`. The browser sends the app's session
//! cookie with the WebSocket upgrade, the app's connect handler reads it, and a
//! publish from the app's own route reaches the page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tether_e2e::Browser;
use tether_e2e::deadline::within;
use tether_examples::Sessions;

const PATIENCE: Duration = Duration::from_secs(20);

/// The axum app on a free port; its Tether, to stop.
async fn axum_app() -> (SocketAddr, tether_server::Tether) {
    let sessions = Sessions::default();
    let tether = within("building Tether", tether_examples::tether(&sessions)).await.expect("built");
    let app = tether_examples::axum_app::App { sessions, api: tether.api() };
    let router = tether_examples::axum_app::router(app, &tether);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, tether)
}

/// The warp app on a free port; its Tether, to stop.
async fn warp_app() -> (SocketAddr, tether_server::Tether) {
    let sessions = Sessions::default();
    let tether = within("building Tether", tether_examples::tether(&sessions)).await.expect("built");
    let routes = tether_examples::warp_app::routes(sessions, &tether);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    (addr, tether)
}

/// Signed out, the page is refused with the app's words; signed in through the app's
/// form, it is connected as the app's user and shows what the app's route publishes.
async fn one_sign_in_for_the_app_and_tether(browser: &Browser, app: &str, addr: SocketAddr) {
    let page = browser.page(&format!("Ada in the {app} app")).await;
    within("the page loading", page.client.goto(&format!("http://{addr}/"))).await.unwrap();
    let refused =
        "document.querySelector('#status').textContent === 'closed (4401): sign in at /login first'";
    page.until("the app's refusal of a signed-out connection", PATIENCE, refused).await;

    page.js("document.querySelector('#name').value = 'Ada'; document.querySelector('#sign-in button').click(); return true;")
        .await;
    let connected = "document.querySelector('#status').textContent === 'connected as Ada'";
    page.until("connected as the app's user", PATIENCE, connected).await;
    page.until(
        "the app's own page",
        PATIENCE,
        "document.querySelector('#who').textContent === 'Signed in as Ada'",
    )
    .await;

    // The app's own route publishes into `news` through Tether's handle. The page has
    // joined once its welcome came; the announcement is in the room's history either
    // way, and the join asks for it.
    let announced = page
        .js(&format!(
            "return fetch('/announce?text=' + encodeURIComponent('hello from {app}'), {{ method: 'POST' }}).then(r => r.status);"
        ))
        .await;
    assert_eq!(announced, 200);
    let shown = format!(
        "Array.from(document.querySelectorAll('#news li')).some(e => e.textContent === 'hello from {app}')"
    );
    page.until("the announcement on the page", PATIENCE, &shown).await;
    page.screenshot(&format!("example-{app}")).await;
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_the_example_apps_share_their_sign_in_with_tether_in_chromium() {
    let started = Instant::now();
    let browser = Browser::start().await;
    let (axum_addr, axum_tether) = axum_app().await;
    one_sign_in_for_the_app_and_tether(&browser, "axum", axum_addr).await;
    let (warp_addr, warp_tether) = warp_app().await;
    one_sign_in_for_the_app_and_tether(&browser, "warp", warp_addr).await;
    within("the axum app's Tether stopping", axum_tether.stop()).await;
    within("the warp app's Tether stopping", warp_tether.stop()).await;
    println!("scenario s15: {:.1} s", started.elapsed().as_secs_f64());
}
