//! Characters that must never reach a reply, a log line or an operator's
//! terminal: control characters (which make TwiML ill-formed and can drive
//! a terminal), bidirectional overrides (which make text read differently
//! from what it is) and zero-width characters (which make two different
//! strings look the same).

use std::borrow::Cow;

/// A control, bidirectional-control or invisible formatting character.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'              // soft hyphen
                | '\u{061C}'        // Arabic letter mark
                | '\u{180E}'        // Mongolian vowel separator
                | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
                | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings and overrides
                | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
                | '\u{2066}'..='\u{2069}' // bidi isolates
                | '\u{FEFF}'        // zero-width no-break space (BOM)
                | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// The first unsafe character in `s`, if any.
pub fn first_unsafe_char(s: &str) -> Option<char> {
    s.chars().find(|&c| is_unsafe_char(c))
}

/// `s` without unsafe characters, keeping line breaks (`\n`): for replies.
pub fn printable(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| c == '\n' || !is_unsafe_char(c)) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .filter(|&c| c == '\n' || !is_unsafe_char(c))
                .collect(),
        )
    }
}

/// `s` on one line, each unsafe character shown as `\u{…}`: for operators'
/// output (the audit trail), where what is there must be visible.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if first_unsafe_char(s).is_none() {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| {
                    if is_unsafe_char(c) {
                        format!("\\u{{{:04X}}}", u32::from(c))
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_are_found_dropped_and_shown() {
        for c in [
            '\u{7}', '\u{1b}', '\r', '\u{85}', '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}',
        ] {
            assert!(is_unsafe_char(c), "{c:?}");
        }
        for c in ['a', 'é', 'ŵ', ' ', '’', '—', '😀'] {
            assert!(!is_unsafe_char(c), "{c:?}");
        }
        assert_eq!(first_unsafe_char("jane\u{202E}ten.shn@x"), Some('\u{202E}'));
        assert_eq!(printable("a\u{7}b\nc\u{200B}"), "ab\nc");
        assert!(matches!(printable("plain\ntext"), Cow::Borrowed(_)));
        assert_eq!(escaped("a\u{1b}[2Jb\u{202E}"), "a\\u{001B}[2Jb\\u{202E}");
        assert_eq!(escaped("a\nb"), "a\\u{000A}b");
    }
}
