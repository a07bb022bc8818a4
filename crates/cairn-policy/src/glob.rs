//! Glob patterns on guest paths (`exclude`) and on VM paths (`vms`).
//!
//! `*` matches any run of characters except `/`, `**` any run including `/`, `?` one
//! character except `/`, `[abc]` / `[a-z]` / `[!a-z]` one character of a set. A pattern
//! without `/` matches the last path component anywhere (`*.mp3`); a pattern with `/` matches
//! the whole path (`/home/*/Music`) and, for exclusions, everything below a matching directory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Longest accepted pattern, in characters (a path limit, with room to spare).
pub const MAX_GLOB_LEN: usize = 4096;
/// Longest path a pattern is matched against, in characters; longer paths never match
/// (guest paths are bounded far below this by every file system Cairn reads).
pub const MAX_MATCH_PATH_LEN: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Tok {
    Lit(char),
    Any,      // ?
    Star,     // *
    StarStar, // **
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A validated glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    text: String,
    toks: Vec<Tok>,
    anchored: bool,
}

impl Glob {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no wildcard (it names one path).
    pub fn is_literal(&self) -> bool {
        self.toks.iter().all(|t| matches!(t, Tok::Lit(_)))
    }

    /// Does `path` match? Patterns without `/` are tried against the last component.
    pub fn matches(&self, path: &str) -> bool {
        if path.len() > MAX_MATCH_PATH_LEN {
            return false;
        }
        if self.anchored {
            let chars: Vec<char> = path.chars().collect();
            match_toks(&self.toks, &chars)
        } else {
            let name = path.rsplit('/').next().unwrap_or(path);
            let chars: Vec<char> = name.chars().collect();
            match_toks(&self.toks, &chars)
        }
    }

    /// Exclusion test: `path` or one of its ancestor directories matches (so `/home/*/Music`
    /// excludes `/home/ann/Music/a.mp3`).
    pub fn excludes(&self, path: &str) -> bool {
        if self.matches(path) {
            return true;
        }
        if !self.anchored {
            return path.split('/').any(|c| !c.is_empty() && self.matches(c));
        }
        path.char_indices()
            .filter(|&(i, c)| c == '/' && i > 0)
            .any(|(i, _)| self.matches(&path[..i]))
    }
}

/// Wildcard matching by dynamic programming over (token, character) pairs: O(n*m) time and
/// O(m) memory whatever the pattern, so hostile patterns cannot cause exponential backtracking.
fn match_toks(toks: &[Tok], s: &[char]) -> bool {
    let m = s.len();
    // prev[j]: tokens[..i] match s[..j]
    let mut prev = vec![false; m + 1];
    prev[0] = true;
    let mut cur = vec![false; m + 1];
    for tok in toks {
        cur.iter_mut().for_each(|c| *c = false);
        match tok {
            Tok::Star | Tok::StarStar => {
                let crosses = matches!(tok, Tok::StarStar);
                for j in 0..=m {
                    cur[j] = prev[j] || (j > 0 && cur[j - 1] && (crosses || s[j - 1] != '/'));
                }
            }
            _ => {
                for j in 1..=m {
                    cur[j] = prev[j - 1] && single_matches(tok, s[j - 1]);
                }
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[m]
}

fn single_matches(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::Any => c != '/',
        Tok::Class { negated, ranges } => {
            c != '/' && (ranges.iter().any(|&(a, b)| a <= c && c <= b) != *negated)
        }
        Tok::Star | Tok::StarStar => false,
    }
}

impl FromStr for Glob {
    type Err = Error;

    fn from_str(s: &str) -> Result<Glob, Error> {
        let bad = |reason: String| Error::Value {
            what: "glob",
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("empty pattern".to_owned()));
        }
        if s.chars().count() > MAX_GLOB_LEN {
            return Err(bad(format!("longer than {MAX_GLOB_LEN} characters")));
        }
        if s.contains('\0') {
            return Err(bad("NUL character".to_owned()));
        }
        let chars: Vec<char> = s.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if chars.get(i + 1) == Some(&'*') {
                        toks.push(Tok::StarStar);
                        i += 2;
                        while chars.get(i) == Some(&'*') {
                            i += 1;
                        }
                        continue;
                    }
                    toks.push(Tok::Star);
                }
                '?' => toks.push(Tok::Any),
                '\\' => {
                    i += 1;
                    let c = *chars
                        .get(i)
                        .ok_or_else(|| bad("trailing backslash".to_owned()))?;
                    toks.push(Tok::Lit(c));
                }
                '[' => {
                    let start = i;
                    i += 1;
                    let negated = matches!(chars.get(i), Some('!') | Some('^'));
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *chars.get(i).ok_or_else(|| {
                            bad(format!("unclosed '[' at character {}", start + 1))
                        })?;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.get(i + 1) == Some(&'-')
                            && chars.get(i + 2).is_some_and(|&e| e != ']')
                        {
                            let e = chars[i + 2];
                            if e < c {
                                return Err(bad(format!("reversed range {c}-{e}")));
                            }
                            ranges.push((c, e));
                            i += 3;
                        } else {
                            ranges.push((c, c));
                            i += 1;
                        }
                    }
                    toks.push(Tok::Class { negated, ranges });
                }
                c => toks.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Glob {
            text: s.to_owned(),
            toks,
            anchored: s.contains('/'),
        })
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Glob, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Glob {
        s.parse().unwrap()
    }

    #[test]
    fn matching() {
        assert!(g("*.mp3").matches("/home/ann/Music/a.mp3"));
        assert!(!g("*.mp3").matches("/home/ann/a.mp3.txt"));
        assert!(g("/home/*/Music").matches("/home/ann/Music"));
        assert!(!g("/home/*/Music").matches("/home/ann/x/Music"));
        assert!(g("/home/**/Music").matches("/home/ann/x/Music"));
        assert!(g("/home/*/Music").excludes("/home/ann/Music/a.flac"));
        assert!(!g("/home/*/Music").excludes("/home/ann/Musical"));
        assert!(g("cache").excludes("/var/cache/apt/x.deb"));
        assert!(g("file?.[ch]").matches("/src/file1.c"));
        assert!(!g("file?.[!ch]").matches("/src/file1.c"));
        assert!(g("[a-c]x").matches("bx"));
        assert!(g("\\*").matches("*") && !g("\\*").matches("a"));
        assert!(g("/vms/web01.vmdk").is_literal());
        assert!(!g("/vms/*.vmdk").is_literal());
        // No exponential blow-up on a hostile pattern.
        let evil = g(&"*a".repeat(200));
        assert!(!evil.matches(&("a".repeat(3000) + "b")));
        assert!(evil.matches(&"a".repeat(3000)));
        for bad in ["", "[abc", "x\\", "[z-a]"] {
            assert!(bad.parse::<Glob>().is_err(), "{bad}");
        }
    }
}
