//! A small glob matcher for exclusion and search patterns.
//!
//! `*` any run of characters except `/`; `?` one character except `/`; `[abc]`, `[a-z]`,
//! `[!a-z]` (or `[^a-z]`) one character of a class; `**` any run including `/`, and `**/`
//! zero or more whole directories. A pattern without `/` matches the file name in any
//! directory; a pattern with `/` matches the whole path from the volume root (a leading `/`
//! is implied).

use crate::{Error, Result};

/// Longest pattern accepted (bounds the matcher's work per path).
pub const MAX_GLOB_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Star,
    /// `**` not followed by `/`.
    DoubleStar,
    /// `**/`: empty, or anything ending with `/`.
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    toks: Vec<Tok>,
    anchored: bool,
    case_insensitive: bool,
    /// Literal text every match starts with / ends with: a cheap first test.
    prefix: String,
    suffix: String,
}

impl Glob {
    /// Compiles a case-sensitive pattern.
    pub fn new(pattern: &str) -> Result<Glob> {
        Self::with_case(pattern, false)
    }

    /// Compiles a pattern; `case_insensitive` folds case (NTFS, FAT, exFAT names).
    pub fn with_case(pattern: &str, case_insensitive: bool) -> Result<Glob> {
        if pattern.is_empty() {
            return Err(Error::Glob {
                pattern: pattern.into(),
                what: "empty pattern".into(),
            });
        }
        if pattern.len() > MAX_GLOB_LEN {
            return Err(Error::Glob {
                pattern: pattern.chars().take(64).collect(),
                what: format!("longer than {MAX_GLOB_LEN} bytes"),
            });
        }
        let anchored = pattern.contains('/');
        let mut body: String = if case_insensitive {
            pattern.to_lowercase()
        } else {
            pattern.to_string()
        };
        if anchored && !body.starts_with('/') {
            body.insert(0, '/');
        }
        // `/dir/` means the directory `/dir`.
        while anchored && body.len() > 1 && body.ends_with('/') {
            body.pop();
        }
        let chars: Vec<char> = body.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    if chars.get(i + 2) == Some(&'/') {
                        toks.push(Tok::Dirs);
                        i += 3;
                    } else {
                        toks.push(Tok::DoubleStar);
                        i += 2;
                    }
                    // `***` and the like collapse.
                    while chars.get(i) == Some(&'*') {
                        i += 1;
                    }
                }
                '*' => {
                    toks.push(Tok::Star);
                    i += 1;
                }
                '?' => {
                    toks.push(Tok::One);
                    i += 1;
                }
                '[' => {
                    let (tok, next) = parse_class(&chars, i).ok_or_else(|| Error::Glob {
                        pattern: pattern.into(),
                        what: format!("unclosed '[' at {i}"),
                    })?;
                    toks.push(tok);
                    i = next;
                }
                '\\' if i + 1 < chars.len() => {
                    toks.push(Tok::Lit(chars[i + 1]));
                    i += 2;
                }
                c => {
                    toks.push(Tok::Lit(c));
                    i += 1;
                }
            }
        }
        let prefix: String = toks.iter().map_while(lit).collect();
        let mut suffix: Vec<char> = toks.iter().rev().map_while(lit).collect();
        suffix.reverse();
        Ok(Glob {
            pattern: pattern.to_string(),
            toks,
            anchored,
            case_insensitive,
            prefix,
            suffix: suffix.into_iter().collect(),
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True when the pattern contains `/` and so matches whole paths.
    pub fn is_anchored(&self) -> bool {
        self.anchored
    }

    /// Does the entry at `path` (absolute, `/`-separated, e.g. `/home/a/x.mp3`) match?
    pub fn matches(&self, path: &str) -> bool {
        let subject = if self.anchored {
            path
        } else {
            path.rsplit('/').next().unwrap_or(path)
        };
        if self.case_insensitive {
            self.match_str(&subject.to_lowercase())
        } else {
            self.match_str(subject)
        }
    }

    /// Does `path` or any directory above it match? (`/home/*/Music` covers everything
    /// under each Music directory.)
    pub fn matches_or_under(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        let mut p = path;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if p.is_empty() {
                break;
            }
            if self.matches(p) {
                return true;
            }
        }
        false
    }

    /// Dynamic programming over (tokens × characters): O(len(pattern) · len(text)), no
    /// backtracking blow-up on hostile patterns.
    fn match_str(&self, text: &str) -> bool {
        if !text.starts_with(&self.prefix) || !text.ends_with(&self.suffix) {
            return false;
        }
        let t: Vec<char> = text.chars().collect();
        let n = t.len();
        let mut row = vec![false; n + 1];
        row[0] = true;
        let mut next = vec![false; n + 1];
        for tok in &self.toks {
            next.iter_mut().for_each(|x| *x = false);
            match tok {
                Tok::Star | Tok::DoubleStar => {
                    let cross = matches!(tok, Tok::DoubleStar);
                    for j in 0..=n {
                        next[j] = row[j] || (j > 0 && next[j - 1] && (cross || t[j - 1] != '/'));
                    }
                }
                Tok::Dirs => {
                    let mut seen = false;
                    for j in 0..=n {
                        next[j] = row[j] || (j > 0 && seen && t[j - 1] == '/');
                        seen |= row[j];
                    }
                }
                _ => {
                    for j in 1..=n {
                        next[j] = row[j - 1] && single(tok, t[j - 1]);
                    }
                }
            }
            std::mem::swap(&mut row, &mut next);
        }
        row[n]
    }
}

fn lit(t: &Tok) -> Option<char> {
    match t {
        Tok::Lit(c) => Some(*c),
        _ => None,
    }
}

fn single(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::One => c != '/',
        Tok::Class { negated, ranges } => {
            c != '/' && (ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated)
        }
        _ => false,
    }
}

/// Parses `[...]` starting at `start`; returns the token and the index after `]`.
fn parse_class(chars: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Tok::Class { negated, ranges }, i + 1));
        }
        first = false;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']') {
            let e = chars[i + 2];
            ranges.push((c.min(e), c.max(e)));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Glob::new(p).unwrap().matches(path)
    }

    #[test]
    fn basics() {
        assert!(m("*.mp3", "/home/a/Music/x.mp3"));
        assert!(!m("*.mp3", "/home/a/x.mp4"));
        assert!(m("?.txt", "/a.txt"));
        assert!(!m("?.txt", "/ab.txt"));
        assert!(m("[a-c]x", "/bx"));
        assert!(!m("[!a-c]x", "/bx"));
        assert!(m("/home/*/Music", "/home/alice/Music"));
        assert!(!m("/home/*/Music", "/home/alice/x/Music"));
        assert!(m("/home/**/Music", "/home/alice/x/Music"));
        assert!(m("/home/**/Music", "/home/Music"));
        assert!(m("/home/**", "/home/a/b/c"));
        assert!(m("home/*", "/home/a"));
        assert!(m("/a/", "/a"));
    }

    #[test]
    fn under_and_case() {
        let g = Glob::new("/home/*/Music").unwrap();
        assert!(g.matches_or_under("/home/bob/Music/a/b.mp3"));
        assert!(!g.matches_or_under("/home/bob/Musical"));
        let g = Glob::with_case("/PAGEFILE.SYS", true).unwrap();
        assert!(g.matches("/pagefile.sys"));
        assert!(!Glob::new("/PAGEFILE.SYS").unwrap().matches("/pagefile.sys"));
    }

    #[test]
    fn hostile_patterns_are_bounded() {
        let p = "*a".repeat(100) + "b";
        let g = Glob::new(&p).unwrap();
        assert!(!g.matches(&format!("/{}", "a".repeat(1000))));
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("").is_err());
    }
}
