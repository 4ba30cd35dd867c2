//! `autoheal serve` as a child process for the tests: started on a free port against a
//! test bed, its log collected, called over HTTP, signalled, and killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{TestBed, wait_for};

pub const CANARY_TOKEN: &str = "canary-api-token-0123456789abcdef";

pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
    pub port: u16,
    pub config: std::path::PathBuf,
    /// Everything the daemon logged so far; read as it comes, so the pipe never fills.
    log: Arc<Mutex<String>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
}

/// A failed test must not leave the daemon (and so its sandboxes' keeper) running.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one integration every test here starts with.
pub const US_INTEGRATION: &str = r#"
[[integration]]
name = "us"
account_id = "123456789012"
auth = "instance_role"
endpoint_url = "{endpoint}"
"#;

impl Daemon {
    pub fn start(bed: &TestBed, dir: &std::path::Path) -> Self {
        Self::start_with_env(bed, dir, &[])
    }

    pub fn start_with_env(bed: &TestBed, dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::start_configured(bed, dir, env, "", "")
    }

    /// A daemon with extra `[server]` and `[sandbox]` lines in its config.
    pub fn start_configured(
        bed: &TestBed,
        dir: &std::path::Path,
        env: &[(&str, &str)],
        server: &str,
        sandbox: &str,
    ) -> Self {
        Self::start_with_integrations(bed, dir, env, server, sandbox, US_INTEGRATION)
    }

    /// A daemon with these `[server]` and `[sandbox]` lines and these integrations.
    pub fn start_with_integrations(
        bed: &TestBed,
        dir: &std::path::Path,
        env: &[(&str, &str)],
        server: &str,
        sandbox: &str,
        integrations: &str,
    ) -> Self {
        let port = super::free_port();
        let config = dir.join("autoheal.toml");
        write_config_with(bed, &config, port, server, sandbox, integrations);
        let mut child = Command::new(env!("CARGO_BIN_EXE_autoheal"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &bed.imds_endpoint)
            .env("AUTOHEAL_API_TOKEN", CANARY_TOKEN)
            .env("AUTOHEAL_LOG", "trace")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start autoheal serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            port,
            config,
            log,
            log_reader: Some(log_reader),
        }
    }

    /// Rewrites the daemon's config file (same listener) with these integrations.
    pub fn rewrite_config(&self, bed: &TestBed, integrations: &str) {
        write_config(bed, &self.config, self.port, integrations);
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Everything the daemon logged, once it has exited.
    pub fn log_after_exit(&mut self) -> String {
        if let Some(reader) = self.log_reader.take() {
            reader.join().unwrap();
        }
        self.log()
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    pub async fn exited(&mut self) -> std::process::ExitStatus {
        wait_for("the daemon to exit", Duration::from_secs(60), || {
            let status = self.child.try_wait().unwrap();
            async move { status }
        })
        .await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => panic!(
                "the daemon did not answer {method} {path}: {err}\n--- its log:\n{}",
                self.log()
            ),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

pub fn write_config(bed: &TestBed, path: &std::path::Path, port: u16, integrations: &str) {
    write_config_with(bed, path, port, "", "", integrations);
}

/// The test config: the daemon on `port`, host-network sandboxes of the test image living
/// at most 2 minutes (unless `sandbox` sets `max_lifetime`), and `server`/`sandbox` lines
/// added to those sections.
pub fn write_config_with(
    bed: &TestBed,
    path: &std::path::Path,
    port: u16,
    server: &str,
    sandbox: &str,
    integrations: &str,
) {
    let dir = path.parent().unwrap();
    let max_lifetime = if sandbox.contains("max_lifetime") {
        ""
    } else {
        "max_lifetime = \"2m\""
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
api_token_file = "{0}/api-token"
state_dir = "{0}/state"
{server}

[sandbox]
image = "autoheal-sandbox-test:latest"
network = "host"
{max_lifetime}
{sandbox}
{integrations}"#,
        dir.display()
    );
    std::fs::write(path, bed.config_toml(&text)).unwrap();
}

pub fn managed_containers() -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=autoheal.managed=true"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

pub async fn serving(daemon: &Daemon) {
    wait_for("the daemon to serve", Duration::from_secs(60), || async {
        let response = daemon
            .http
            .get(format!("{}/healthz", daemon.base))
            .send()
            .await;
        response.ok().filter(|r| r.status() == 200).map(|_| ())
    })
    .await;
}
