//! Health checks, the SPA fallback, and paths the fallback must never shadow.

mod common;

use common::*;

async fn server_with_bundle() -> (Running, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tether-spa-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><title>Tether</title>").unwrap();
    std::fs::write(dir.join("assets/app.js"), "console.log('tether')").unwrap();
    let mut config = tether_server::Config::for_tests();
    config.static_dir = dir.clone();
    (server_with(config).await, dir)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let server = server().await;
    let (status, _, body) = http_get(server.addr(), "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    server.stop().await;
}

#[tokio::test]
async fn static_files_and_spa_fallback() {
    let (server, dir) = server_with_bundle().await;
    let addr = server.addr();

    let (status, _, body) = http_get(addr, "/assets/app.js").await;
    assert_eq!((status, body.as_str()), (200, "console.log('tether')"));

    for path in ["/", "/rooms/general", "/deep/client/route?x=1"] {
        let (status, head, body) = http_get(addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/html"), "{path}: {head}");
        assert!(body.contains("<title>Tether</title>"), "{path}");
    }
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn reserved_paths_are_never_shadowed_by_the_app() {
    let (server, dir) = server_with_bundle().await;
    let addr = server.addr();

    let (status, _, body) = http_get(addr, "/api/does-not-exist").await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("/api/v1/")), "says where to look: {body}");

    let (status, _, body) = http_get(addr, "/ws").await;
    assert_eq!(status, 400, "a plain GET on /ws explains itself");
    assert!(body.contains("WebSocket upgrade"), "{body}");

    for path in ["/metrics/nope", "/healthz/extra"] {
        let (status, _, body) = http_get(addr, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("<title>Tether</title>"), "{path} fell through to the app");
    }
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_dashboard_is_its_own_page_or_says_it_is_not_built() {
    let (server, dir) = server_with_bundle().await;
    let addr = server.addr();
    for path in ["/admin", "/admin/", "/admin/rooms"] {
        let (status, _, body) = http_get(addr, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("dashboard is not built"), "{path} fell through to the app: {body}");
    }

    std::fs::create_dir_all(dir.join("admin")).unwrap();
    std::fs::write(dir.join("admin/index.html"), "<!doctype html><title>Tether dashboard</title>").unwrap();
    for path in ["/admin", "/admin/rooms"] {
        let (status, _, body) = http_get(addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<title>Tether dashboard</title>"), "{path}: {body}");
    }
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_bundle_in_a_folder_of_its_own_answers_every_path_under_it() {
    let (server, dir) = server_with_bundle().await;
    let addr = server.addr();
    std::fs::create_dir_all(dir.join("poker")).unwrap();
    std::fs::write(dir.join("poker/index.html"), "<!doctype html><title>Tether poker</title>").unwrap();
    std::fs::write(dir.join("poker/poker.js"), "console.log('poker')").unwrap();
    // A folder named like a reserved prefix, and one without a page.
    std::fs::create_dir_all(dir.join("metrics")).unwrap();
    std::fs::write(dir.join("metrics/index.html"), "<!doctype html><title>Shadow</title>").unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();

    for path in ["/poker", "/poker/", "/poker/table/sprint", "/poker?name=Ada&table=sprint"] {
        let (status, head, body) = http_get(addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/html"), "{path}: {head}");
        assert!(body.contains("<title>Tether poker</title>"), "{path}: {body}");
    }
    let (status, _, body) = http_get(addr, "/poker/poker.js").await;
    assert_eq!((status, body.as_str()), (200, "console.log('poker')"), "its files are still files");
    let (status, _, body) = http_get(addr, "/assets/app.js").await;
    assert_eq!((status, body.as_str()), (200, "console.log('tether')"));

    // A folder without a page is the app's route; a reserved prefix stays the server's.
    for path in ["/images/x", "/pokerface", "/%2e%2e/poker"] {
        let (status, _, body) = http_get(addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<title>Tether</title>"), "{path}: {body}");
    }
    for path in ["/metrics/nope", "/metrics/index.html"] {
        let (status, _, body) = http_get(addr, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("<title>"), "{path} served a page: {body}");
    }
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
