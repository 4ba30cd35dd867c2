//! The release bundle as an operator gets it: `scripts/package` builds it (from the tests'
//! debug binary — a release build takes too long for CI), it is unpacked into a scratch
//! directory and its checksums hold; `install.sh` from it installs both layouts under
//! `--root` with no cargo on the PATH, loads the images with `docker load` and ends with a
//! passing `autoheal check` against the test bed; then the installed daemon serves from that
//! root and runs a sandbox from the loaded image, and an operator in the configuration's
//! group runs `config check` and `check` without root.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{TestBed, wait_for};

/// A PATH with the system's directories only: no cargo, no rustup, no checkout.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const ACCOUNT: &str = "123456789012";
const INTEGRATION: &str = "bundle-test";

/// The files the bundle must hold, at its top level.
const BUNDLE_FILES: [&str; 8] = [
    "autoheal",
    "autoheal-images.tar",
    "autoheal.service",
    "docker-compose.yml",
    "autoheal.example.toml",
    "install.sh",
    "SHA256SUMS",
    "doc/README.md",
];

struct Scratch(PathBuf);

/// The installed daemon, stopped however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn said(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds the bundle into `dir`; returns the tarball.
fn package(dir: &Path) -> PathBuf {
    let out = Command::new(support::repo_root().join("scripts/package"))
        .args(["--binary", env!("CARGO_BIN_EXE_autoheal"), "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/package failed\n{}",
        said(&out)
    );
    let name = format!(
        "autoheal-{}-{}.tar.gz",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    let tarball = dir.join(&name);
    assert!(tarball.is_file(), "no {name}\n{}", said(&out));
    let verify = Command::new("sha256sum")
        .args(["--strict", "-c", &format!("{name}.sha256")])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", said(&verify));
    tarball
}

/// `command` as on an EC2 host: the system PATH only, the instance role through the IMDS
/// emulator, no static keys, and the test bed instead of AWS (for `autoheal check`).
fn on_the_host<'a>(command: &'a mut Command, bed: &TestBed) -> &'a mut Command {
    command
        .env("PATH", SYSTEM_PATH)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &bed.imds_endpoint)
        .env("AWS_ENDPOINT_URL", &bed.endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
}

/// `install.sh` from the unpacked bundle, as root would run it from user data, but under
/// `--root` and with the system PATH only.
fn install(bundle: &Path, bed: &TestBed, root: &Path, method: &str) -> Output {
    on_the_host(&mut Command::new(bundle.join("install.sh")), bed)
        .args(["--root", root.to_str().unwrap(), "--method", method])
        .args(["--no-start", "--account-id", ACCOUNT, "--name", INTEGRATION])
        .env_remove("AUTOHEAL_CONFIG")
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_bundle_installs_without_cargo_and_runs_a_sandbox() {
    let bed = TestBed::start();
    let scratch =
        Scratch(std::env::temp_dir().join(format!("autoheal-bundle-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(scratch.0.join("unpacked")).unwrap();

    let packaging = Instant::now();
    let tarball = package(&scratch.0.join("dist"));
    let packaged_in = packaging.elapsed();
    let size = std::fs::metadata(&tarball).unwrap().len();

    let unpacking = Instant::now();
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(scratch.0.join("unpacked"))
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", said(&untar));
    let unpacked_in = unpacking.elapsed();
    let bundle = scratch.0.join("unpacked").join(
        tarball
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".tar.gz"),
    );
    for file in BUNDLE_FILES {
        assert!(bundle.join(file).is_file(), "the bundle lacks {file}");
    }

    let no_cargo = Command::new("bash")
        .args(["-c", "command -v cargo rustc"])
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap();
    assert!(!no_cargo.status.success(), "cargo is on {SYSTEM_PATH}");

    let mut install_times = Vec::new();
    for method in ["systemd", "compose"] {
        let root = scratch.0.join(format!("root-{method}"));
        let installing = Instant::now();
        let out = install(&bundle, &bed, &root, method);
        install_times.push((method, installing.elapsed()));
        assert!(
            out.status.success(),
            "install.sh --method {method}\n{}",
            said(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        for loaded in ["autoheal-sandbox:latest", "autoheal:latest"] {
            assert!(
                stdout.contains(&format!("Loaded image: {loaded}")),
                "{loaded} not loaded by install.sh\n{}",
                said(&out)
            );
        }
        // The install's own Test Connection passed, and the next steps follow it.
        assert!(stdout.contains("Test Connection"), "{}", said(&out));
        assert!(stdout.contains(ACCOUNT), "{}", said(&out));
        assert!(stdout.contains("Next:"), "{}", said(&out));

        let cli = root.join("usr/local/bin/autoheal");
        assert_eq!(
            std::fs::read(&cli).unwrap(),
            std::fs::read(bundle.join("autoheal")).unwrap(),
            "the CLI on the host is the bundle's binary ({method})"
        );
        let config = root.join("etc/autoheal/autoheal.toml");
        assert_eq!(mode(&config), 0o640);
        assert!(root.join("etc/autoheal/autoheal.example.toml").is_file());
        assert!(root.join("usr/share/doc/autoheal/README.md").is_file());
        assert_eq!(mode(&root.join("var/lib/autoheal")), 0o700);
        let service = match method {
            "systemd" => "etc/systemd/system/autoheal.service",
            _ => "opt/autoheal/docker-compose.yml",
        };
        assert!(root.join(service).is_file(), "{service} ({method})");

        // Again: idempotent, nothing installed twice.
        let again = install(&bundle, &bed, &root, method);
        assert!(again.status.success(), "{}", said(&again));
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert!(!stdout.contains("installed /"), "{stdout}");
        assert!(stdout.contains("kept the existing"), "{stdout}");
    }

    // A bundle changed after packaging is refused before anything is installed.
    let tampered = scratch.0.join("root-tampered");
    let compose_file = bundle.join("docker-compose.yml");
    let mut text = std::fs::read_to_string(&compose_file).unwrap();
    text.push_str("# changed\n");
    std::fs::write(&compose_file, text).unwrap();
    let refused = install(&bundle, &bed, &tampered, "compose");
    assert_eq!(refused.status.code(), Some(65), "{}", said(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("SHA256SUMS"),
        "{}",
        said(&refused)
    );
    assert!(
        !tampered.exists(),
        "nothing installed from a tampered bundle"
    );
    eprintln!(
        "bundle: {:.1} MiB; packaged in {:.1}s, unpacked in {:.1}s; install.sh to a passing check: {}",
        size as f64 / (1024.0 * 1024.0),
        packaged_in.as_secs_f64(),
        unpacked_in.as_secs_f64(),
        install_times
            .iter()
            .map(|(m, t)| format!("{m} {:.1}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let root = scratch.0.join("root-systemd");
    operators_in_the_group_check_without_root(&root, &bed);
    the_installed_daemon_runs_a_sandbox(&root, &bed).await;
}

/// `config check` and `check` by a user who is not root but in the configuration's group
/// (the installer makes it `autoheal`; here the system's `nogroup`, as `--root` creates no
/// group); a user outside it is told what to do, and so is an operator who needs the OIDC
/// signing keys (the daemon's user's alone).
fn operators_in_the_group_check_without_root(root: &Path, bed: &TestBed) {
    let config = root.join("etc/autoheal/autoheal.toml");
    std::os::unix::fs::chown(&config, Some(0), Some(65534)).unwrap();
    let cli = root.join("usr/local/bin/autoheal");
    let as_operator = |groups: &str, args: &[&str]| {
        on_the_host(&mut Command::new("setpriv"), bed)
            .args(["--reuid=65534", "--regid=65533", groups, "--"])
            .arg(&cli)
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
    for args in [&["config", "check"][..], &["check"][..]] {
        let out = as_operator("--groups=65534", args);
        assert!(
            out.status.success(),
            "{args:?} in the group\n{}",
            said(&out)
        );
    }
    let outsider = as_operator("--clear-groups", &["config", "check"]);
    assert_eq!(outsider.status.code(), Some(78), "{}", said(&outsider));
    let told = String::from_utf8_lossy(&outsider.stderr);
    assert!(
        told.contains("permission denied") && told.contains("usermod -aG"),
        "{told}"
    );

    // OIDC: root makes the key (the state directory is root's here, 0700).
    let keys = root.join("var/lib/autoheal/oidc");
    let oidc_config = root.join("etc/autoheal/oidc.toml");
    std::fs::write(
        &oidc_config,
        format!(
            "[oidc]\nissuer = \"https://oidc.example.com\"\ntenant_slug = \"example\"\n\
             key_dir = \"{}\"\n\n[[integration]]\nname = \"fed\"\naccount_id = \"{ACCOUNT}\"\n\
             auth = \"oidc\"\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/AutohealOidcRole\"\n",
            keys.display()
        ),
    )
    .unwrap();
    let keygen = Command::new(&cli)
        .args(["oidc", "keygen", "--config"])
        .arg(&oidc_config)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", said(&keygen));
    let token = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&cli)
        .args(["oidc", "token", "--integration", "fed", "--config"])
        .arg(&oidc_config)
        .output()
        .unwrap();
    assert!(!token.status.success(), "{}", said(&token));
    let told = String::from_utf8_lossy(&token.stderr);
    assert!(told.contains("sudo -u autoheal"), "{told}");
    std::fs::remove_file(&oidc_config).unwrap();
}

/// The installed binary and configuration serve (state, token and port moved into the test's
/// root by the environment, sandboxes on the host network) and run a sandbox from the image
/// install.sh loaded.
async fn the_installed_daemon_runs_a_sandbox(root: &Path, bed: &TestBed) {
    let config = root.join("etc/autoheal/autoheal.toml");
    // The test bed's endpoint, which no real host's configuration has.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("endpoint_url = \"{}\"\n", bed.endpoint));
    std::fs::write(&config, text).unwrap();
    let port = support::free_port();
    let state = root.join("var/lib/autoheal");
    let env = [
        ("PATH", SYSTEM_PATH.to_owned()),
        ("AUTOHEAL_SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("AUTOHEAL_SERVER__STATE_DIR", state.display().to_string()),
        (
            "AUTOHEAL_SERVER__API_TOKEN_FILE",
            state.join("api-token").display().to_string(),
        ),
        ("AUTOHEAL_SANDBOX__NETWORK", "host".to_owned()),
        (
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            bed.imds_endpoint.clone(),
        ),
    ];
    let cli = root.join("usr/local/bin/autoheal");
    let daemon = Command::new(&cli)
        .args(["serve", "--config"])
        .arg(&config)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = KillOnDrop(daemon);
    let http = reqwest::Client::new();
    wait_for(
        "the installed daemon to be ready",
        Duration::from_secs(60),
        || {
            let request = http.get(format!("http://127.0.0.1:{port}/readyz")).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        },
    )
    .await;
    let run = Command::new(&cli)
        .args(["sandbox", "run", "--integration", INTEGRATION, "--config"])
        .arg(&config)
        .args(["--", "autoheal", "tool", "whoami"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", said(&run));
    let answer = String::from_utf8_lossy(&run.stdout);
    assert!(answer.contains(ACCOUNT), "{answer}");
}
