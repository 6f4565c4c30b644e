//! The "service" here is this test binary itself, re-run with `--exact fake_service` and a
//! mode in `TESTKIT_FAKE_SERVICE`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use autonoma_testkit::{ServiceProcess, free_port, run_to_exit_with_args};
use axum::Router;
use axum::routing::get;

const MODE: &str = "TESTKIT_FAKE_SERVICE";
const ARGS: &[&str] = &["--exact", "fake_service", "--nocapture"];

/// Not a test on its own: the fake service's body, inert unless `TESTKIT_FAKE_SERVICE` is set.
#[test]
fn fake_service() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    match mode.as_str() {
        "serve" => {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                let host = std::env::var("HOST").expect("HOST");
                let port = std::env::var("PORT").expect("PORT");
                let mut names: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
                names.sort();
                println!("env={}", names.join(","));
                println!("cwd={}", std::env::current_dir().expect("cwd").display());
                let listener = tokio::net::TcpListener::bind(format!("{host}:{port}"))
                    .await
                    .expect("bind");
                eprintln!("listening on {host}:{port}");
                let router = Router::new().route("/health", get(|| async { "ok" }));
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        term.recv().await;
                    })
                    .await
                    .expect("serve");
                println!("stopped on SIGTERM");
            });
        }
        "fail" => {
            eprintln!("invalid configuration: DATABASE_URL is missing");
            std::process::exit(3);
        }
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        other => panic!("unknown mode {other}"),
    }
}

fn this_binary() -> PathBuf {
    std::env::current_exe().expect("test binary path")
}

#[tokio::test]
async fn spawned_service_gets_a_clean_environment_and_stops_on_sigterm() {
    let mut service = ServiceProcess::spawn_with_args(
        &this_binary(),
        ARGS,
        &[(MODE, "serve".to_owned()), ("EXTRA", "1".to_owned())],
    )
    .expect("spawn");
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
    assert_ne!(service.port(), 0);
    assert_eq!(
        service.base_url(),
        format!("http://127.0.0.1:{}", service.port())
    );
    let body = reqwest::get(service.url("/health"))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");

    let output = service.output();
    assert!(
        output.contains("env=EXTRA,HOST,PATH,PORT,TESTKIT_FAKE_SERVICE\n"),
        "{output}"
    );
    let cwd = std::env::current_dir().expect("cwd");
    assert!(
        !output.contains(&format!("cwd={}\n", cwd.display())),
        "{output}"
    );
    assert!(
        service.stderr().contains("listening on 127.0.0.1:"),
        "{output}"
    );

    service.terminate().expect("SIGTERM");
    let status = service.wait(Duration::from_secs(10)).await.expect("exit");
    assert!(status.success(), "{status}");
    assert!(
        service.stdout().contains("stopped on SIGTERM"),
        "{}",
        service.output()
    );
}

#[tokio::test]
async fn given_port_and_host_are_kept() {
    let port = free_port();
    let mut service = ServiceProcess::spawn_with_args(
        &this_binary(),
        ARGS,
        &[
            (MODE, "serve".to_owned()),
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".to_owned()),
        ],
    )
    .expect("spawn");
    assert_eq!(service.port(), port);
    service
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy");
}

#[tokio::test]
async fn wait_healthy_fails_fast_when_the_service_exits() {
    let mut service =
        ServiceProcess::spawn_with_args(&this_binary(), ARGS, &[(MODE, "fail".to_owned())])
            .expect("spawn");
    let started = Instant::now();
    let err = service
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect_err("service exits");
    assert!(started.elapsed() < Duration::from_secs(30));
    let message = format!("{err:#}");
    assert!(message.contains("exited"), "{message}");
    assert!(message.contains("DATABASE_URL is missing"), "{message}");
}

#[tokio::test]
async fn run_to_exit_returns_status_and_output() {
    let output = run_to_exit_with_args(
        &this_binary(),
        ARGS,
        &[(MODE, "fail".to_owned())],
        Duration::from_secs(30),
    )
    .await
    .expect("runs to exit");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
}

#[tokio::test]
async fn run_to_exit_kills_a_binary_that_hangs() {
    let err = run_to_exit_with_args(
        &this_binary(),
        ARGS,
        &[(MODE, "hang".to_owned())],
        Duration::from_millis(500),
    )
    .await
    .expect_err("times out");
    assert!(
        format!("{err:#}").contains("did not exit within"),
        "{err:#}"
    );
}

#[tokio::test]
async fn dropping_a_service_kills_it() {
    let service =
        ServiceProcess::spawn_with_args(&this_binary(), ARGS, &[(MODE, "hang".to_owned())])
            .expect("spawn");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(service.pid()).expect("pid"));
    drop(service);
    assert_eq!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH),
        "process still exists after drop"
    );
}
