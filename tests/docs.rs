//! The docs cannot rot: every fenced block marked ```` ```sh test ```` in `docs/*.md` runs
//! here, against a test bed seeded in two regions, with `autoheal` and the AWS CLI (the test
//! bed's) on the PATH and the test bed's keys in the environment (its IMDS emulator in
//! `TESTBED_IMDS_ENDPOINT`, for the blocks that need an instance role). A file's blocks run in
//! order in one shell (`set -euo pipefail`), in a scratch directory.

mod support;

use std::process::Command;

use support::TestBed;

/// The `sh test` blocks of a Markdown text, in order.
fn runnable_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        match (&mut current, fence) {
            (None, true) if line.trim() == "```sh test" => current = Some(String::new()),
            (Some(block), false) => {
                block.push_str(line);
                block.push('\n');
            }
            (Some(_), true) => blocks.push(current.take().unwrap_or_default()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_runnable_block_in_the_docs_runs() {
    let bed = TestBed::start_with(&[
        "--seed",
        "--seed-region",
        "us-east-1",
        "--seed-region",
        "eu-west-1",
    ]);
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_autoheal"));
    let path = format!(
        "{}:{}:{}",
        binary.parent().unwrap().display(),
        support::testbed_python().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = Vec::new();
    let mut docs: Vec<_> = std::fs::read_dir(support::repo_root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for doc in docs {
        let blocks = runnable_blocks(&std::fs::read_to_string(&doc).unwrap());
        if blocks.is_empty() {
            continue;
        }
        let scratch = std::env::temp_dir().join(format!(
            "autoheal-docs-{}-{}",
            std::process::id(),
            doc.file_stem().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
        let out = Command::new("bash")
            .args(["-c", &script])
            .current_dir(&scratch)
            .env("PATH", &path)
            .env("AWS_ENDPOINT_URL", &bed.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testbed")
            .env("AWS_SECRET_ACCESS_KEY", "testbed")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TESTBED_IMDS_ENDPOINT", &bed.imds_endpoint)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AUTOHEAL_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: a runnable block failed\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            doc.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran.push(doc.file_name().unwrap().to_string_lossy().into_owned());
        let _ = std::fs::remove_dir_all(&scratch);
    }
    assert!(ran.len() >= 2, "the docs with runnable blocks: {ran:?}");
}

#[test]
fn blocks_are_found_in_order_and_only_when_marked() {
    let text = "x\n```sh test\na\nb\n```\n```sh\nnot this\n```\n```sh test\nc\n```\n";
    assert_eq!(runnable_blocks(text), ["a\nb\n", "c\n"]);
}
