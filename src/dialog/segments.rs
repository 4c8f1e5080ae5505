//! How many SMS segments a text takes (3GPP TS 23.038 and 23.040).
//!
//! A text that uses only the GSM 7-bit default alphabet (and its extension
//! table, whose characters take two septets) goes as GSM-7: 160 septets in
//! one segment, 153 a segment once it is split (the rest carries the
//! concatenation header). Any other character makes the whole text UCS-2:
//! 70 UTF-16 code units in one segment, 67 a segment once split. An escape
//! pair (GSM-7) or a surrogate pair (UCS-2) is never split across two
//! segments.

use std::fmt;

/// How a text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        })
    }
}

/// The GSM 7-bit default alphabet (one septet each).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table (an escape septet plus one: two septets each).
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Septets a character takes in GSM-7, or `None` if GSM-7 cannot carry it.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding a text needs.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The characters of `text` that GSM-7 cannot carry, each once, in order.
pub fn non_gsm7(text: &str) -> Vec<char> {
    let mut out = Vec::new();
    for c in text.chars() {
        if gsm7_septets(c).is_none() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// A text's size on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub encoding: Encoding,
    /// Characters as counted by the encoding: septets (GSM-7) or UTF-16
    /// code units (UCS-2).
    pub units: usize,
    pub segments: usize,
}

impl Size {
    pub fn of(text: &str) -> Self {
        let encoding = encoding(text);
        let widths: Vec<usize> = match encoding {
            Encoding::Gsm7 => text.chars().filter_map(gsm7_septets).collect(),
            Encoding::Ucs2 => text.chars().map(char::len_utf16).collect(),
        };
        let (single, part) = match encoding {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        };
        let units: usize = widths.iter().sum();
        let segments = if units <= single {
            1
        } else {
            // Fill each part; a character that does not fit whole starts
            // the next one.
            let mut segments = 1;
            let mut used = 0;
            for w in widths {
                if used + w > part {
                    segments += 1;
                    used = 0;
                }
                used += w;
            }
            segments
        };
        Size {
            encoding,
            units,
            segments,
        }
    }

    /// Most characters of this encoding that fit in `segments` segments
    /// (one unit a character).
    pub fn capacity(encoding: Encoding, segments: usize) -> usize {
        match (encoding, segments) {
            (Encoding::Gsm7, 1) => 160,
            (Encoding::Gsm7, n) => 153 * n,
            (Encoding::Ucs2, 1) => 70,
            (Encoding::Ucs2, n) => 67 * n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_english_is_gsm7() {
        let s = Size::of("Reply 1 to unlock, or EXIT.");
        assert_eq!(s.encoding, Encoding::Gsm7);
        assert_eq!(s.units, 27);
        assert_eq!(s.segments, 1);
    }

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(Size::of(&"a".repeat(160)).segments, 1);
        assert_eq!(Size::of(&"a".repeat(161)).segments, 2);
        assert_eq!(Size::of(&"a".repeat(306)).segments, 2);
        assert_eq!(Size::of(&"a".repeat(307)).segments, 3);
        assert_eq!(Size::of("").segments, 1);
    }

    #[test]
    fn the_extension_table_takes_two_septets() {
        let s = Size::of("€[x]");
        assert_eq!(s.encoding, Encoding::Gsm7);
        assert_eq!(s.units, 7);
        // 159 + a two-septet character no longer fits one segment.
        assert_eq!(Size::of(&format!("{}€", "a".repeat(158))).segments, 1);
        assert_eq!(Size::of(&format!("{}€", "a".repeat(159))).segments, 2);
        // An escape pair is not split: 152 + € fills part one to 152, then
        // the pair moves whole to part two.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(Size::of(&text).units, 306);
        assert_eq!(Size::of(&text).segments, 3);
    }

    #[test]
    fn accents_in_the_default_alphabet_stay_gsm7() {
        assert_eq!(encoding("café Zoë"), Encoding::Ucs2, "ë is not GSM-7");
        assert_eq!(encoding("café Åsa Müller"), Encoding::Gsm7);
    }

    #[test]
    fn curly_quotes_and_welsh_circumflexes_force_ucs2() {
        assert_eq!(encoding("don\u{2019}t"), Encoding::Ucs2);
        for c in ['â', 'ê', 'î', 'ô', 'û', 'ŵ', 'ŷ'] {
            assert_eq!(encoding(&format!("a{c}")), Encoding::Ucs2, "{c}");
        }
        assert_eq!(non_gsm7("Tŷ ŵyr ŷ"), vec!['ŷ', 'ŵ']);
    }

    #[test]
    fn ucs2_boundaries() {
        let w = |n: usize| "ŵ".repeat(n);
        assert_eq!(Size::of(&w(70)).segments, 1);
        assert_eq!(Size::of(&w(71)).segments, 2);
        assert_eq!(Size::of(&w(201)).segments, 3);
        assert_eq!(Size::of(&w(202)).segments, 4);
        // A character outside the BMP is two code units, never split.
        let text = format!("{}😀", w(66));
        assert_eq!(Size::of(&text).units, 68);
        assert_eq!(Size::of(&text).segments, 1);
        let text = format!("{}😀{}", w(66), w(60));
        assert_eq!(Size::of(&text).segments, 2, "66 + (2 + 60)");
        let text = format!("{}😀{}", w(66), w(66));
        assert_eq!(Size::of(&text).segments, 3);
    }

    #[test]
    fn capacities() {
        assert_eq!(Size::capacity(Encoding::Gsm7, 2), 306);
        assert_eq!(Size::capacity(Encoding::Ucs2, 3), 201);
        assert_eq!(Size::capacity(Encoding::Gsm7, 1), 160);
    }
}
