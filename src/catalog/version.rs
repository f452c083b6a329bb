//! Comparing version strings of image builds: `24.04.10` > `24.04.9`, `2025.11.01` >
//! `2025.10.01`, `20250202` > `20241231`, `9.5-20241118.0` > `9.4-20240523.0`,
//! `20250101_05:24` > `20241231_17:00`.
//!
//! A version is split into segments, each a run of digits or a run of letters; everything else
//! (`.`, `-`, `_`, `:`, ...) only separates them. Segments are compared in turn: digits as
//! numbers (of any length), letters as text, and digits rank above letters. When one version
//! runs out first, the other is newer if its next segment is a number (`1.0.1` > `1.0`) and
//! older if it is a word (`3.21.0_rc1` < `3.21.0`: a suffix like rc, alpha or beta marks a
//! pre-release). Versions that compare equal this way fall back to plain text order so the
//! result is total and deterministic.

use std::cmp::Ordering;

#[derive(Debug, PartialEq, Eq)]
enum Seg<'a> {
    Num(&'a str),
    Word(&'a str),
}

fn segments(v: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Seg::Num(&v[start..i]));
        } else if bytes[i].is_ascii_alphabetic() {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Seg::Word(&v[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

fn cmp_num(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub fn compare(a: &str, b: &str) -> Ordering {
    let (sa, sb) = (segments(a), segments(b));
    for pair in sa.iter().zip(sb.iter()) {
        let o = match pair {
            (Seg::Num(x), Seg::Num(y)) => cmp_num(x, y),
            (Seg::Word(x), Seg::Word(y)) => x.cmp(y),
            (Seg::Num(_), Seg::Word(_)) => Ordering::Greater,
            (Seg::Word(_), Seg::Num(_)) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    let tail = |longer: &[Seg<'_>], shorter: usize| match longer.get(shorter) {
        Some(Seg::Num(_)) => Ordering::Greater,
        Some(Seg::Word(_)) => Ordering::Less,
        None => Ordering::Equal,
    };
    let o = match sa.len().cmp(&sb.len()) {
        Ordering::Greater => tail(&sa, sb.len()),
        Ordering::Less => tail(&sb, sa.len()).reverse(),
        Ordering::Equal => Ordering::Equal,
    };
    o.then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        let cases = [
            ("24.04.10", "24.04.9", Greater),
            ("24.04.2", "24.04.2", Equal),
            ("2025.11.01", "2025.10.01", Greater),
            ("20250202", "20241231", Greater),
            ("9.5-20241118.0", "9.4-20240523.0", Greater),
            ("9.10-20250101.0", "9.9-20250101.0", Greater),
            ("20250101_05:24", "20241231_17:00", Greater),
            ("20250101_05:24", "20250101_17:00", Less),
            ("1.0.1", "1.0", Greater),
            ("3.21.0_rc1", "3.21.0", Less),
            ("3.21.0_rc2", "3.21.0_rc1", Greater),
            ("42-1.1", "41-1.4", Greater),
            ("1.a", "1.0", Less),
            ("010", "9", Greater),
            ("123456789012345678901234567890", "99", Greater),
            ("", "1", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn equal_segments_still_order_deterministically() {
        assert_ne!(compare("1.0", "1-0"), Equal);
        assert_eq!(compare("1.0", "1-0"), compare("1-0", "1.0").reverse());
    }

    #[test]
    fn sorting_uses_it() {
        let mut v = vec!["3.9.1", "3.10.0", "3.10.0_rc1", "3.2", "edge"];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(v, ["edge", "3.2", "3.9.1", "3.10.0_rc1", "3.10.0"]);
    }
}
