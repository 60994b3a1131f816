//! nginx in front of the relay with the scale-out template (`deploy/scale-out/nginx.conf`): a
//! webhook whose instance dies mid-request is sent to the other instance, so the shop gets its
//! 200 rather than a 502 (`proxy_next_upstream … non_idempotent` on `/webhooks/`, safe because
//! ingest stores each webhook-id once).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tests::shop::{Shop, order_body};
use tests::{AgentOptions, RelayOptions, SHOP, TENANT, eventually, requirements_met, setup_with};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// An instance that dies mid-request: it takes the connection, reads the request's head and
/// closes without answering. Counts the requests it took.
async fn dying_instance() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            });
        }
    });
    (port, taken)
}

/// nginx running in the foreground; stopped gracefully when dropped (a SIGKILL of its master
/// would leave the worker running), and killed if it has not exited within 10 s.
struct Nginx(Option<std::process::Child>);

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let pid = child.id();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let (exited, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = child.wait();
            let _ = exited.send(());
        });
        if wait.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn a_webhook_whose_instance_dies_mid_request_is_answered_by_the_other() {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists());
    if !requirements_met(
        "nginx",
        if nginx.is_some() { "" } else { "nginx" },
        "install Debian's nginx (scripts/test-deps.sh does)",
    ) {
        return;
    }
    let Some(nginx) = nginx else { return };
    let options = RelayOptions {
        tls: false,
        ..RelayOptions::default()
    };
    let world = setup_with(options, AgentOptions::default()).await;
    let (dead_port, taken) = dying_instance().await;

    // The template as shipped, pointed at the dying instance first and the live relay second.
    let template = include_str!("../../deploy/scale-out/nginx.conf");
    let port = free_port();
    let config = template
        .replace(
            "server relay-1:8080",
            &format!("server 127.0.0.1:{dead_port}"),
        )
        .replace(
            "server relay-2:8080",
            &format!("server 127.0.0.1:{}", world.relay.port),
        )
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    assert!(
        config.contains(&format!("127.0.0.1:{dead_port}")),
        "{config}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).expect("nginx.conf");
    let globals = format!(
        "daemon off; master_process on; worker_processes 1; pid {0}/nginx.pid; \
         error_log {0}/logs/error.log info;",
        dir.path().display()
    );
    let _nginx = Nginx(Some(
        std::process::Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg(globals)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts"),
    ));
    eventually("nginx listens", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;

    let shop = Shop::with_secret(
        reqwest::Client::new(),
        format!("http://127.0.0.1:{port}"),
        world.shop.secret.clone(),
    );
    const WEBHOOKS: usize = 6;
    for i in 0..WEBHOOKS {
        let (status, reply) = shop
            .send(
                SHOP,
                &order_body(SHOP, &format!("via-nginx-{i}"), "confirmed"),
            )
            .await;
        let log = std::fs::read_to_string(dir.path().join("logs/error.log")).unwrap_or_default();
        assert_eq!(status.as_u16(), 200, "webhook {i}: {reply}\nnginx:\n{log}");
    }
    assert!(
        taken.load(Ordering::SeqCst) >= 1,
        "no webhook went to the dying instance: the test proves nothing"
    );
    let events = world.admin.events(TENANT, None).await;
    assert_eq!(
        events.len(),
        WEBHOOKS,
        "each webhook stored once: {events:?}"
    );
}
