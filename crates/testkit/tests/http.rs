use std::net::SocketAddr;
use std::time::Duration;

use autonoma_testkit::serve_router;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;

#[tokio::test]
async fn serve_router_answers_with_peer_address() {
    let router = Router::new().route(
        "/whoami",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let server = serve_router(router).await;
    assert_eq!(server.base_url, format!("http://{}", server.addr));
    assert!(server.addr.ip().is_loopback());

    let response = reqwest::get(server.url("/whoami")).await.expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "127.0.0.1");

    let missing = reqwest::get(server.url("/nope")).await.expect("request");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = serve_router(Router::new().route("/", get(|| async { "up" }))).await;
    let addr = server.addr;
    drop(server);
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "{addr} still accepts connections");
}
