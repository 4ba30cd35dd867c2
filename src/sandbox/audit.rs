//! The sandbox audit log: one JSON line per sandbox start and end, in
//! `{server.state_dir}/audit/sandboxes.jsonl`, kept across restarts and rotated by size.
//!
//! It answers a reviewer's "which sandbox did what, and how did it end?" after the fact,
//! next to CloudTrail (whose session names are the sandboxes' — `session_name` here). A
//! start line is written before the container starts, and a sandbox whose start line cannot
//! be written is not started (an unaudited sandbox is worse than none). After a crash, the
//! next daemon finds starts without an end, writes their end (`stopped`, the daemon
//! restarted), and shows the finished ones again in `GET /v1/sandboxes`.
//!
//! Nothing secret is written: no environment, no credential, no output; the command and
//! error are masked like the tools' answers (an agent may pass a secret it read as an
//! argument).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::info::{EndedBy, SandboxInfo, SandboxKind, SandboxState};
use super::spec::rfc3339;
use crate::config::{CredentialsDelivery, SessionMode};
use crate::tools::{Capability, mask_text};

/// The file under the state directory.
pub const AUDIT_FILE: &str = "audit/sandboxes.jsonl";
/// Size at which the file is rotated: a line is ~400 bytes, so ~40 000 sandboxes a file.
pub const MAX_AUDIT_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Rotated files kept (`sandboxes.jsonl.1` newest … `.3` oldest): 64 MiB on disk at most.
pub const ROTATED_FILES: u32 = 3;
/// What an interrupted sandbox's end line says.
pub const INTERRUPTED: &str = "the daemon stopped while this sandbox ran (crash or kill); its container was removed when the daemon started again";
/// The same, when the engine could not be asked to remove it at start-up.
pub const INTERRUPTED_NOT_REMOVED: &str = "the daemon stopped while this sandbox ran (crash or kill); Docker did not answer when the daemon started again, so its container is removed once the engine answers";

/// `start` or `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    Start,
    End,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditLine {
    pub event: AuditEvent,
    pub id: String,
    pub integration: String,
    pub session: SessionMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Capability>>,
    /// How its credentials were delivered (lines written before this field: `env`).
    #[serde(default = "env_delivery")]
    pub credentials: CredentialsDelivery,
    /// `command` or `mcp_session` (lines written before this field: `command`).
    #[serde(default, skip_serializing_if = "is_command")]
    pub kind: SandboxKind,
    pub image: String,
    pub command: Vec<String>,
    /// When the event happened (RFC 3339).
    pub time: String,
    /// Start: when the sandbox is stopped at the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// End: how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SandboxState>,
    /// End: what ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditLine {
    /// The line with secrets in its command and error masked.
    fn masked(&self) -> Self {
        Self {
            command: self.command.iter().map(|a| mask_text(a).0).collect(),
            error: self.error.as_deref().map(|e| mask_text(e).0),
            ..self.clone()
        }
    }

    /// The start line of `info` (a sandbox about to start).
    pub fn start(info: &SandboxInfo) -> Self {
        Self {
            event: AuditEvent::Start,
            id: info.id.clone(),
            integration: info.integration.clone(),
            session: info.session,
            session_name: info.session_name.clone(),
            capabilities: info.capabilities.clone(),
            credentials: info.credentials,
            kind: info.kind,
            image: info.image.clone(),
            command: info.command.clone(),
            time: info.created_at.clone(),
            deadline: Some(info.deadline.clone()),
            state: None,
            ended_by: None,
            exit_code: None,
            duration_ms: None,
            error: None,
        }
    }

    /// The end line of `info` (a sandbox that ended).
    pub fn end(info: &SandboxInfo) -> Self {
        Self {
            event: AuditEvent::End,
            time: rfc3339(SystemTime::now()),
            deadline: None,
            state: Some(info.state),
            ended_by: info.ended_by,
            exit_code: info.exit_code,
            duration_ms: info.duration_ms,
            error: info.error.clone(),
            ..Self::start(info)
        }
    }
}

fn is_command(kind: &SandboxKind) -> bool {
    *kind == SandboxKind::Command
}

fn env_delivery() -> CredentialsDelivery {
    CredentialsDelivery::Env
}

/// Why the audit log cannot be written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the sandbox audit log {path} cannot be written: {source} (check server.state_dir: it must be a directory the daemon's user may write)"
)]
pub struct AuditError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The open log. Appends are serialized; each line is written whole with one `write`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    /// [`MAX_AUDIT_FILE_BYTES`]; smaller in tests.
    max_file_bytes: u64,
}

impl AuditLog {
    /// Opens (creating, mode 0700 directory / 0600 file) the log under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, AuditError> {
        let path = state_dir.join(AUDIT_FILE);
        let fail = |source| AuditError {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let mut file = open_append(&path).map_err(fail)?;
        end_a_torn_line(&mut file).map_err(fail)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            max_file_bytes: MAX_AUDIT_FILE_BYTES,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (rotating first when the file is full).
    pub fn record(&self, line: &AuditLine) -> Result<(), AuditError> {
        let fail = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        let mut text = serde_json::to_string(&line.masked()).expect("audit lines serialize");
        text.push('\n');
        let mut file = self.file.lock().expect("audit log lock");
        let mut size = file.metadata().map_err(fail)?.len();
        if size > 0 && size + text.len() as u64 > self.max_file_bytes {
            *file = self.rotate().map_err(fail)?;
            size = 0;
        }
        if let Err(err) = file.write_all(text.as_bytes()) {
            // A half-written line (disk full) must not swallow the next one.
            let _ = file.set_len(size);
            return Err(fail(err));
        }
        Ok(())
    }

    /// `sandboxes.jsonl.{n}` → `.{n+1}` (the oldest is dropped), the current file → `.1`,
    /// and a new current file.
    fn rotate(&self) -> std::io::Result<File> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        match std::fs::remove_file(numbered(ROTATED_FILES)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        for n in (1..ROTATED_FILES).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        open_append(&self.path)
    }

    /// Every line of every kept file, oldest first; lines that do not parse (a line torn
    /// by a crash) are skipped.
    pub fn read_all(&self) -> Vec<AuditLine> {
        let mut files: Vec<PathBuf> = (1..=ROTATED_FILES)
            .rev()
            .map(|n| PathBuf::from(format!("{}.{n}", self.path.display())))
            .collect();
        files.push(self.path.clone());
        // Split on bytes: a line torn inside a multi-byte character is skipped alone.
        files
            .iter()
            .filter_map(|p| File::open(p).ok())
            .flat_map(|f| BufReader::new(f).split(b'\n').map_while(Result::ok))
            .filter_map(|line| serde_json::from_slice(&line).ok())
            .collect()
    }
}

/// Opens for appending; an existing file (or its directory) readable by others is made
/// private again, since `mode` applies only to a file it creates.
fn open_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    if let Some(dir) = path.parent() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(file)
}

/// A daemon killed mid-write leaves a last line without its newline: end it, so the next
/// line is not glued to it.
fn end_a_torn_line(file: &mut File) -> std::io::Result<()> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(size - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

/// What the log says about sandboxes a previous daemon ran: the newest `keep` finished
/// ones (as the API shows them, without output; oldest first), and the starts that never
/// got an end line.
pub fn replay(lines: Vec<AuditLine>, keep: usize) -> (VecDeque<SandboxInfo>, Vec<AuditLine>) {
    let mut starts: HashMap<String, AuditLine> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut finished = VecDeque::new();
    for line in lines {
        match line.event {
            AuditEvent::Start => {
                order.push(line.id.clone());
                starts.insert(line.id.clone(), line);
            }
            AuditEvent::End => {
                let start = starts.remove(&line.id);
                finished.push_back(info_of(start.as_ref(), &line));
                if finished.len() > keep {
                    finished.pop_front();
                }
            }
        }
    }
    let unfinished = order
        .into_iter()
        .filter_map(|id| starts.remove(&id))
        .collect();
    (finished, unfinished)
}

/// The API's view of a sandbox from its lines.
pub fn info_of(start: Option<&AuditLine>, end: &AuditLine) -> SandboxInfo {
    let state = end.state.unwrap_or(SandboxState::Failed);
    SandboxInfo {
        id: end.id.clone(),
        integration: end.integration.clone(),
        image: end.image.clone(),
        command: end.command.clone(),
        state,
        kind: end.kind,
        ended_by: end.ended_by,
        created_at: start.map(|s| s.time.clone()).unwrap_or_default(),
        deadline: start.and_then(|s| s.deadline.clone()).unwrap_or_default(),
        deadline_note: None,
        credentials_expire_at: String::new(),
        session: end.session,
        session_name: end.session_name.clone(),
        capabilities: end.capabilities.clone(),
        credentials: end.credentials,
        egress_refused: Vec::new(),
        exit_code: end.exit_code,
        stdout: None,
        stderr: None,
        stdout_truncated: false,
        stderr_truncated: false,
        output_dropped: true,
        duration_ms: end.duration_ms,
        timed_out: state == SandboxState::TimedOut,
        error: end.error.clone(),
    }
}

/// The end line of a sandbox a previous daemon left running; `removed` says whether its
/// container is known to be gone.
pub fn interrupted(start: &AuditLine, removed: bool) -> AuditLine {
    AuditLine {
        event: AuditEvent::End,
        time: rfc3339(SystemTime::now()),
        deadline: None,
        state: Some(SandboxState::Stopped),
        ended_by: Some(EndedBy::Shutdown),
        exit_code: None,
        duration_ms: None,
        error: Some(if removed {
            INTERRUPTED.into()
        } else {
            INTERRUPTED_NOT_REMOVED.into()
        }),
        ..start.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: &str) -> AuditLine {
        AuditLine {
            event: AuditEvent::Start,
            id: id.into(),
            integration: "prod".into(),
            session: SessionMode::PerSandbox,
            session_name: Some(format!("autoheal-sandbox-{id}")),
            capabilities: Some(vec![Capability::Logs]),
            credentials: CredentialsDelivery::Endpoint,
            kind: SandboxKind::Command,
            image: "img".into(),
            command: vec!["autoheal".into(), "tool".into(), "whoami".into()],
            time: "2026-11-29T10:00:00.000Z".into(),
            deadline: Some("2026-11-29T10:15:00.000Z".into()),
            state: None,
            ended_by: None,
            exit_code: None,
            duration_ms: None,
            error: None,
        }
    }

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "autoheal-audit-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn lines_survive_a_reopen_and_a_torn_line_is_skipped() {
        let dir = temp();
        let log = AuditLog::open(&dir).unwrap();
        log.record(&start("a")).unwrap();
        let mut end = start("a");
        end.event = AuditEvent::End;
        end.state = Some(SandboxState::Exited);
        end.exit_code = Some(3);
        log.record(&end).unwrap();
        log.record(&start("b")).unwrap();
        drop(log);
        // A crash mid-write: half a line, no newline.
        let path = dir.join(AUDIT_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"event\":\"start\",\"id\":\"c").unwrap();
        drop(file);

        let log = AuditLog::open(&dir).unwrap();
        log.record(&start("d")).unwrap();
        let (finished, unfinished) = replay(log.read_all(), 10);
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].exit_code, Some(3));
        assert_eq!(finished[0].created_at, "2026-11-29T10:00:00.000Z");
        assert_eq!(
            unfinished.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            ["b", "d"]
        );
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_file_is_rotated_and_the_oldest_dropped() {
        let dir = temp();
        let mut log = AuditLog::open(&dir).unwrap();
        assert_eq!(replay(Vec::new(), 10).0.len(), 0);
        log.max_file_bytes = 64 * 1024;
        let line = start("x");
        let per_line = serde_json::to_string(&line).unwrap().len() as u64 + 1;
        let per_file = log.max_file_bytes / per_line;
        // Fill the current file and every rotated one, and one more line.
        let written = per_file * u64::from(ROTATED_FILES + 1) + 1;
        for _ in 0..written {
            log.record(&line).unwrap();
        }
        let kept = log.read_all().len() as u64;
        assert!(kept < written, "the oldest file was dropped");
        assert!(kept >= per_file * u64::from(ROTATED_FILES), "{kept}");
        for n in 1..=ROTATED_FILES {
            assert!(PathBuf::from(format!("{}.{n}", log.path().display())).exists());
        }
        assert!(!PathBuf::from(format!("{}.{}", log.path().display(), ROTATED_FILES + 1)).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn replay_keeps_the_newest_finished_and_commands_are_masked() {
        let mut lines = Vec::new();
        for id in ["a", "b", "c"] {
            lines.push(start(id));
            let mut end = start(id);
            end.event = AuditEvent::End;
            end.state = Some(SandboxState::Exited);
            lines.push(end);
        }
        let (finished, _) = replay(lines, 2);
        let ids: Vec<&str> = finished.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "the newest two, oldest first");

        let dir = temp();
        let log = AuditLog::open(&dir).unwrap();
        let mut line = start("m");
        line.command = vec!["echo".into(), "AKIAIOSFODNN7EXAMPLE".into()];
        log.record(&line).unwrap();
        let text = std::fs::read_to_string(dir.join(AUDIT_FILE)).unwrap();
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        assert!(text.contains("[masked:"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
