//! Text that came from outside (registry bodies and headers, file names, uv's
//! output) made safe to print: control characters and bidi overrides are
//! shown escaped, so an escape sequence cannot clear the screen, set the
//! window title or hide a line.

use std::borrow::Cow;

/// Every control character escaped, newlines too: for one-line values.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// Control characters escaped, line breaks kept: for multi-line text.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

fn escape_with(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls, DEL, and the bidi embedding/override/isolate marks.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_sequences() {
        assert_eq!(escape("plain `text` é"), "plain `text` é");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]0;pwned\x07\x1b[2J"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(escape("a\nb\r\tc\u{9b}"), "a\\nb\\r\\tc\\u{9b}");
        assert_eq!(escape_lines("a\nb\x1b[1m"), "a\nb\\u{1b}[1m");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
    }
}
