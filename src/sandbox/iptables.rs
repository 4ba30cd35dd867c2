//! Running `iptables`: one place for how it is called (`-w 5`: wait up to 5 s for the
//! xtables lock rather than fail when Docker or firewalld holds it) and how its answers are
//! read. Works with both the nft-based and the legacy `iptables` (whichever the host's
//! `iptables` is; Docker uses the same one).

use std::process::Stdio;

use tokio::process::Command;

/// One check-and-write at a time across the daemon's rules (IMDS, fence, credentials
/// route): starts and the health check run concurrently, and a check racing a write
/// would insert a rule twice.
pub static KEEPER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `iptables -w 5 <args>`: `Ok(Ok(()))` on exit 0, `Ok(Err(message))` on exit 1 (for
/// `-C`: no such rule), `Err` when it cannot run or fails otherwise.
pub async fn run(args: &[String]) -> Result<Result<(), String>, String> {
    run_tool("iptables", args).await
}

/// [`run`] with `ip6tables` or another tool of the family.
pub async fn run_tool(tool: &str, args: &[String]) -> Result<Result<(), String>, String> {
    let output = Command::new(tool)
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    match output.status.code() {
        Some(0) => Ok(Ok(())),
        Some(1) => Ok(Err(message)),
        _ => Err(format!("{tool} {} failed: {message}", args.join(" "))),
    }
}

/// The rules of `table`/`chain` as `iptables -S` prints them, each split into its words
/// (double quotes group, as iptables prints a comment with spaces).
pub async fn list(table: &str, chain: &str) -> Result<Vec<Vec<String>>, String> {
    let listing = Command::new("iptables")
        .args(["-w", "5", "-t", table, "-S", chain])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if !listing.status.success() {
        return Err(format!(
            "iptables -t {table} -S {chain} failed: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(split_rule)
        .collect())
}

/// Deletes every rule of `table`/`chain` that carries `comment` and for which `matches`
/// (given the listed rule's words, `-A` first) is true. A rule that cannot be deleted is
/// logged, not fatal: the caller inserts what must be there anyway.
pub async fn delete_where(
    table: &str,
    chain: &str,
    comment: &str,
    matches: impl Fn(&[String]) -> bool,
) -> Result<(), String> {
    for words in list(table, chain).await? {
        if words.first().map(String::as_str) != Some("-A")
            || !words.iter().any(|w| w == comment)
            || !matches(&words)
        {
            continue;
        }
        let mut delete = vec!["-t".to_owned(), table.to_owned(), "-D".to_owned()];
        delete.extend(words[1..].iter().cloned());
        if let Err(message) = run(&delete).await? {
            tracing::warn!(%table, %chain, %message, "could not delete a stale rule of ours");
        }
    }
    Ok(())
}

/// Splits an `iptables -S` line into its words.
pub fn split_rule(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `words` (a rule after its chain) with `-s <source>`?
pub fn has_source(words: &[String], source: &str) -> bool {
    words.windows(2).any(|w| w[0] == "-s" && w[1] == source)
}
