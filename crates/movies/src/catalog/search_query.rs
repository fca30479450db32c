//! The film search box's query, read in Rust: its alternatives (`or`), the words each
//! must match and the words it leaves out (`-word`), as PostgreSQL's
//! `websearch_to_tsquery` reads them. PostgreSQL is asked only what it alone knows, the
//! stop words and each word's look-alike title words ([`Lexicon`]); the typo-tolerant
//! text-search query is written here ([`SearchQuery::tolerant`]).
//!
//! The words are the ones PostgreSQL found when it split the query itself, in the
//! catalogue's `C.UTF-8`, and with which `title_words` was filled: tokens separated by
//! `[[:space:]]`, words made of `[[:alnum:]]`, after `lower()`. Rust's own classes differ
//! at the edges ([`is_space`], [`is_word_char`], [`lower`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A film search query, as the search box reads it: `or` between words offers
/// alternatives, `-word` leaves out titles with that word, every other word must match.
/// Only alternatives with a word to find are kept: one made only of left-out words
/// names nothing to find, and finds nothing (not the whole catalogue).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    alternatives: Vec<Alternative>,
}

/// One side of the `or`s: words that must all match, and words that must not. Each
/// word once, in the order typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alternative {
    wanted: Vec<String>,
    excluded: Vec<String>,
}

impl Alternative {
    pub fn wanted(&self) -> &[String] {
        &self.wanted
    }

    pub fn excluded(&self) -> &[String] {
        &self.excluded
    }
}

/// What PostgreSQL knows of one word of the query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lexeme {
    /// False for a stop word ("the", "a", "in"): the full-text index holds none, so it is
    /// left out of the query.
    pub lexical: bool,
    /// Title words like it (same first letter, length within two, trigram word
    /// similarity): asked for the words to find only, never for left-out ones.
    pub look_alikes: Vec<String>,
}

/// The words of a query, as PostgreSQL answered for them.
pub type Lexicon = HashMap<String, Lexeme>;

impl SearchQuery {
    /// Reads the query; never fails: a text without words is a query without
    /// alternatives.
    pub fn parse(text: &str) -> Self {
        let lowered: String = text.chars().map(lower).collect();
        let mut alternatives = vec![Alternative::default()];
        // The words of the current alternative so far, each with whether it is left out.
        let mut seen: HashSet<(bool, &str)> = HashSet::new();
        for token in lowered.split(is_space).filter(|t| !t.is_empty()) {
            if token == "or" {
                alternatives.push(Alternative::default());
                seen.clear();
                continue;
            }
            let current = alternatives.last_mut().expect("there is always a current alternative");
            let excluded = token.starts_with('-');
            for word in token.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()) {
                if seen.insert((excluded, word)) {
                    if excluded { &mut current.excluded } else { &mut current.wanted }.push(word.to_owned());
                }
            }
        }
        alternatives.retain(|a| !a.wanted.is_empty());
        Self { alternatives }
    }

    pub fn alternatives(&self) -> &[Alternative] {
        &self.alternatives
    }

    /// The words to ask PostgreSQL about, each once, with whether its look-alikes are
    /// wanted (it is a word to find in some alternative), in the order typed.
    pub fn words(&self) -> (Vec<String>, Vec<bool>) {
        let mut words: Vec<String> = Vec::new();
        let mut look_alikes: Vec<bool> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for alternative in &self.alternatives {
            let typed = alternative.wanted.iter().map(|w| (w, true)).chain(alternative.excluded.iter().map(|w| (w, false)));
            for (word, wanted) in typed {
                match index.get(word.as_str()) {
                    Some(&at) => look_alikes[at] |= wanted,
                    None => {
                        index.insert(word, words.len());
                        words.push(word.clone());
                        look_alikes.push(wanted);
                    }
                }
            }
        }
        (words, look_alikes)
    }

    /// The typo-tolerant query, in `to_tsquery` syntax: each word to find stands for
    /// itself or a title word like it (`('matrx' | 'matrix')`), a left-out word for itself
    /// (`!('reloaded')`), the words of an alternative are ANDed and the alternatives
    /// ORed. Stop words are left out, and with them an alternative left without a word to
    /// find. `None` when nothing is left: PostgreSQL answers an empty text-search query
    /// with a NOTICE, which sqlx logs at INFO, a log line any client could write per
    /// request; NULL finds nothing, silently. A word PostgreSQL did not answer for counts
    /// as a stop word.
    pub fn tolerant(&self, lexicon: &Lexicon) -> Option<String> {
        let lexeme = |word: &String| lexicon.get(word).filter(|l| l.lexical);
        let mut alternatives = Vec::new();
        for alternative in &self.alternatives {
            let mut groups: Vec<String> = Vec::new();
            for word in &alternative.wanted {
                if let Some(lexeme) = lexeme(word) {
                    let spellings: BTreeSet<&str> = std::iter::once(word.as_str()).chain(lexeme.look_alikes.iter().map(String::as_str)).collect();
                    groups.push(format!("({})", spellings.into_iter().map(quote).collect::<Vec<_>>().join(" | ")));
                }
            }
            if groups.is_empty() {
                continue;
            }
            groups.extend(alternative.excluded.iter().filter(|w| lexeme(w).is_some()).map(|w| format!("!({})", quote(w))));
            alternatives.push(format!("({})", groups.join(" & ")));
        }
        (!alternatives.is_empty()).then(|| alternatives.join(" | "))
    }
}

/// A lexeme quoted for `to_tsquery`: inside single quotes, a quote is doubled and a
/// backslash escapes the next character. (Words are letters and digits, but a quote
/// that slipped through would otherwise end the lexeme and let the rest be read as
/// operators.)
pub fn quote(lexeme: &str) -> String {
    let mut quoted = String::with_capacity(lexeme.len() + 2);
    quoted.push('\'');
    for c in lexeme.chars() {
        match c {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

/// `[[:space:]]` of PostgreSQL's regular expressions in `C.UTF-8` (glibc's `iswspace`):
/// Unicode's `White_Space` but for the no-break spaces and NEL, which glibc leaves out.
/// The same set, compared over every code point with this host's PostgreSQL.
fn is_space(c: char) -> bool {
    c.is_whitespace() && !matches!(c, '\u{85}' | '\u{A0}' | '\u{2007}' | '\u{202F}')
}

/// `[[:alnum:]]` in `C.UTF-8` (glibc's `iswalnum`): letters (Unicode `Alphabetic`) and
/// decimal digits, not the other numbers Rust's `is_alphanumeric` adds ("²", "½", "①").
/// Compared over every code point with this host's PostgreSQL (glibc of Unicode 14), it
/// differs only for characters glibc does not know yet and 38 combining marks that later
/// Unicode made alphabetic ("ͣ"), which Rust takes as letters.
fn is_word_char(c: char) -> bool {
    c.is_alphabetic() || c.general_category() == GeneralCategory::DecimalNumber
}

/// `lower()` in `C.UTF-8` (glibc's `towlower`), a character at a time: the simple
/// lowercase mapping, so "İ" is "i" alone, not "i" and a combining dot above as in
/// Rust's full mapping. Compared over every code point with this host's PostgreSQL, it
/// differs only for 55 letters glibc does not know yet.
fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alternatives read, written back: words to find, then `-` and each left-out
    /// word, alternatives between ` | `.
    fn read(text: &str) -> String {
        let query = SearchQuery::parse(text);
        let written: Vec<String> = query
            .alternatives()
            .iter()
            .map(|a| a.wanted().iter().cloned().chain(a.excluded().iter().map(|w| format!("-{w}"))).collect::<Vec<_>>().join(" "))
            .collect();
        written.join(" | ")
    }

    #[test]
    fn every_word_must_match_when_there_are_no_operators() {
        assert_eq!(read("Grown  Up drama"), "grown up drama");
    }

    #[test]
    fn a_minus_at_the_start_of_a_token_leaves_its_words_out() {
        assert_eq!(read("matrix -reloaded"), "matrix -reloaded");
        assert_eq!(read("-reloaded matrix"), "matrix -reloaded");
        // Every word of the token, and a doubled minus is one.
        assert_eq!(read("matrix --reloaded-revolutions"), "matrix -reloaded -revolutions");
    }

    #[test]
    fn a_hyphen_inside_a_word_is_no_minus() {
        assert_eq!(read("matrix-reloaded"), "matrix reloaded");
        assert_eq!(read("spider-man -2"), "spider man -2");
    }

    #[test]
    fn or_between_words_offers_alternatives() {
        assert_eq!(read("godfather or matrix"), "godfather | matrix");
        assert_eq!(read("Godfather OR matrx -reloaded"), "godfather | matrx -reloaded");
        assert_eq!(read("harry potter or hobbit"), "harry potter | hobbit");
    }

    #[test]
    fn or_at_the_start_or_end_or_doubled_offers_no_empty_alternative() {
        assert_eq!(read("or matrix"), "matrix");
        assert_eq!(read("matrix or"), "matrix");
        assert_eq!(read("or"), "");
        assert_eq!(read("or OR or"), "");
        assert_eq!(read("godfather or or matrix"), "godfather | matrix");
    }

    #[test]
    fn or_is_an_operator_only_as_a_token_of_its_own() {
        // Quoted, or inside a word, it is a word (a stop word, left out later).
        assert_eq!(read("dead \"or\" alive"), "dead or alive");
        assert_eq!(read("oracle orb"), "oracle orb");
        assert_eq!(read("-or matrix"), "matrix -or");
    }

    #[test]
    fn an_alternative_of_left_out_words_alone_is_dropped() {
        assert_eq!(read("-only -excluded"), "");
        assert_eq!(read("-reloaded or godfather"), "godfather");
        assert_eq!(SearchQuery::parse("-matrix").tolerant(&Lexicon::new()), None);
    }

    #[test]
    fn punctuation_separates_words_and_is_never_one() {
        assert_eq!(read("she's all that!"), "she s all that");
        assert_eq!(read("!?'\" % - --"), "");
        assert_eq!(read("'matrix' & | ! <-> :*"), "matrix");
    }

    #[test]
    fn each_word_is_kept_once_per_alternative_and_list() {
        assert_eq!(read("matrix Matrix MATRIX -matrix -Matrix"), "matrix -matrix");
    }

    #[test]
    fn unicode_letters_are_words_lowered_as_postgresql_lowers_them() {
        assert_eq!(read("МАТРИЦА Amélie ß 東京"), "матрица amélie ß 東京");
        // The simple lowercase mapping: "İ" is "i", with no combining dot after it.
        assert_eq!(read("MATRİX"), "matrix");
        // Digits of other scripts are digits; other numbers ("²", "½") are not.
        assert_eq!(read("٣ matrix²reloaded ½"), "٣ matrix reloaded");
    }

    #[test]
    fn only_the_spaces_postgresql_knows_separate_tokens() {
        // The ideographic space does, the no-break spaces do not: after one, a minus is
        // inside the token, and no exclusion.
        assert_eq!(read("matrix\u{3000}-reloaded"), "matrix -reloaded");
        for space in ['\u{A0}', '\u{2007}', '\u{202F}', '\u{85}'] {
            assert_eq!(read(&format!("matrix{space}-reloaded")), "matrix reloaded", "U+{:04X}", u32::from(space));
        }
        assert_eq!(read("godfather\tor\nmatrix"), "godfather | matrix");
    }

    #[test]
    fn empty_or_blank_text_has_no_alternatives() {
        for text in ["", " ", "\t\n \u{3000}"] {
            assert_eq!(SearchQuery::parse(text), SearchQuery::default(), "{text:?}");
            assert_eq!(SearchQuery::parse(text).tolerant(&Lexicon::new()), None);
        }
    }

    #[test]
    fn very_long_input_is_read_whole() {
        let query = SearchQuery::parse(&"matrix or -reloaded ".repeat(20_000));
        assert_eq!(query.alternatives().len(), 20_000, "each but the first has a left-out word and a word to find");
        assert_eq!(query.words(), (vec!["matrix".to_owned(), "reloaded".to_owned()], vec![true, false]));
        let distinct: Vec<String> = (0..50_000).map(|n| format!("w{n}")).collect();
        let query = SearchQuery::parse(&distinct.join(" "));
        assert_eq!(query.words().0, distinct, "in the order typed");
        let word = "x".repeat(100_000);
        assert_eq!(SearchQuery::parse(&word).words().0, [word]);
    }

    #[test]
    fn words_are_asked_for_once_with_look_alikes_when_any_alternative_wants_them() {
        let query = SearchQuery::parse("matrix -reloaded or reloaded -matrix or -godfather");
        assert_eq!(query.words(), (vec!["matrix".to_owned(), "reloaded".to_owned()], vec![true, true]));
        let query = SearchQuery::parse("matrix -reloaded");
        assert_eq!(query.words(), (vec!["matrix".to_owned(), "reloaded".to_owned()], vec![true, false]));
    }

    fn lexicon(entries: &[(&str, bool, &[&str])]) -> Lexicon {
        entries
            .iter()
            .map(|(w, lexical, alikes)| (w.to_string(), Lexeme { lexical: *lexical, look_alikes: alikes.iter().map(|a| a.to_string()).collect() }))
            .collect()
    }

    #[test]
    fn the_tolerant_query_ands_words_with_their_look_alikes_and_ors_alternatives() {
        let words = lexicon(&[
            ("godfather", true, &["godfather"]),
            ("matrx", true, &["matrix"]),
            ("reloaded", true, &[]),
            ("the", false, &["the", "then", "thin"]),
        ]);
        let tolerant = |text: &str| SearchQuery::parse(text).tolerant(&words);
        assert_eq!(tolerant("matrx").as_deref(), Some("(('matrix' | 'matrx'))"));
        assert_eq!(tolerant("the matrx -reloaded").as_deref(), Some("(('matrix' | 'matrx') & !('reloaded'))"));
        assert_eq!(tolerant("godfather OR matrx -reloaded").as_deref(), Some("(('godfather')) | (('matrix' | 'matrx') & !('reloaded'))"));
        // Stop words are left out, and an alternative with nothing else to find with them.
        assert_eq!(tolerant("the"), None);
        assert_eq!(tolerant("the -matrx or godfather").as_deref(), Some("(('godfather'))"));
        assert_eq!(tolerant("matrx -the").as_deref(), Some("(('matrix' | 'matrx'))"));
        // A word PostgreSQL did not answer for is left out.
        assert_eq!(tolerant("unknown"), None);
    }

    #[test]
    fn lexemes_are_quoted_for_to_tsquery() {
        assert_eq!(quote("matrix"), "'matrix'");
        assert_eq!(quote("o'brien"), "'o''brien'");
        assert_eq!(quote("a\\b"), "'a\\\\b'");
        assert_eq!(quote("' | !x"), "''' | !x'");
        let words = lexicon(&[("it's", true, &["it\\s"])]);
        let query = SearchQuery { alternatives: vec![Alternative { wanted: vec!["it's".to_owned()], excluded: vec![] }] };
        assert_eq!(query.tolerant(&words).as_deref(), Some("(('it''s' | 'it\\\\s'))"));
    }
}
