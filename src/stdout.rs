//! Printing command results to stdout without panicking when the reader goes away
//! (`autoheal tools --output json | head` must not crash with a broken pipe).

use std::io::Write;

/// Writes `text` and a newline to stdout; a closed pipe is not an error worth reporting.
pub fn print_line(text: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}
