//! The whole service started in-process through the composition root, as the binary does:
//! embedded defaults in an empty data directory, the embedded face model, then a clean drain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use asepsis::Services;
use asepsis_config::{Overrides, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_whole_service_in_process_and_drains_on_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let mut flags = Overrides::default();
    flags.server.data_dir = Some(data.path().to_owned());
    let settings = Settings::load(None, &flags).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(asepsis::run_on(
        listener,
        settings,
        Services::All,
        shutdown.clone(),
    ));

    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.text().await.unwrap(),
        "ready\n",
        "the embedded model is loaded"
    );
    assert!(data.path().join("keys/keyring.json").is_file());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), service)
        .await
        .expect("the service to stop once cancelled")
        .unwrap()
        .unwrap();
}
