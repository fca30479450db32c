//! Movies' film search query, from the search box's raw text:
//! `catalog::search_query::SearchQuery::parse`, `words` and `tolerant` (the
//! `to_tsquery` text handed to PostgreSQL), with a lexicon made from the input.
//!
//! Properties, for every input:
//! - nothing panics;
//! - every alternative has a word to find; every word is non-empty, made of letters and
//!   digits only (no space, no operator character: `-`, quotes, parentheses, `&`, `|`,
//!   `!`), lower-cased, and appears once in its list;
//! - `words()` names each word of the alternatives exactly once, asking for look-alikes
//!   exactly when it is a word to find in some alternative;
//! - the tolerant query, read back by a reader of `to_tsquery`'s syntax written here
//!   (quoted lexemes with `''` and backslash escapes, `&`, `|`, `!`, parentheses), is
//!   exactly the alternatives ORed, each its words to find (every one with its
//!   look-alikes, ORed) and its left-out words (NOT) ANDed, stop words and alternatives
//!   left without a word to find dropped: whatever a word or a look-alike holds (the
//!   lexicon here gives every word look-alikes with a quote and a backslash), it stays
//!   one lexeme and never becomes an operator. No query is `None`, never an empty text.
//!
//! Input: the `query` parameter of `GET /api/v1/films/search`, as UTF-8.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use movies::catalog::search_query::{Lexeme, Lexicon, SearchQuery};

/// A `to_tsquery` expression, flattened: a lexeme, NOT, or an AND / OR of two or more.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Tsq {
    Lexeme(String),
    Not(Box<Tsq>),
    And(Vec<Tsq>),
    Or(Vec<Tsq>),
}

/// `children` joined by `and` (true) or `or`: one child is itself; a child of the same
/// operator is flattened into it; OR's children are sorted (the order of look-alikes
/// and alternatives is not the property).
fn join(and: bool, children: Vec<Tsq>) -> Tsq {
    let mut flat = Vec::new();
    for child in children {
        match (and, child) {
            (true, Tsq::And(inner)) | (false, Tsq::Or(inner)) => flat.extend(inner),
            (_, child) => flat.push(child),
        }
    }
    if flat.len() == 1 {
        return flat.pop().expect("one child");
    }
    if and {
        Tsq::And(flat)
    } else {
        flat.sort();
        Tsq::Or(flat)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Lexeme(String),
}

/// `to_tsquery`'s tokens: a quoted lexeme ends at a single quote; inside, `''` is a quote
/// and a backslash takes the next character as it is.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '&' => out.push(Token::And),
            '|' => out.push(Token::Or),
            '!' => out.push(Token::Not),
            '\'' => {
                let mut lexeme = String::new();
                loop {
                    match chars.next().expect("a quoted lexeme is closed") {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            lexeme.push('\'');
                        }
                        '\'' => break,
                        '\\' => lexeme.push(chars.next().expect("a backslash escapes a character")),
                        c => lexeme.push(c),
                    }
                }
                out.push(Token::Lexeme(lexeme));
            }
            other => panic!("unexpected {other:?} outside a lexeme in {text:?}"),
        }
    }
    out
}

/// expr := term ('|' term)*; term := factor ('&' factor)*; factor := '!' factor | '(' expr ')' | lexeme.
fn expr(tokens: &[Token], at: &mut usize) -> Tsq {
    let mut terms = vec![term(tokens, at)];
    while tokens.get(*at) == Some(&Token::Or) {
        *at += 1;
        terms.push(term(tokens, at));
    }
    join(false, terms)
}

fn term(tokens: &[Token], at: &mut usize) -> Tsq {
    let mut factors = vec![factor(tokens, at)];
    while tokens.get(*at) == Some(&Token::And) {
        *at += 1;
        factors.push(factor(tokens, at));
    }
    join(true, factors)
}

fn factor(tokens: &[Token], at: &mut usize) -> Tsq {
    let token = tokens.get(*at).expect("an operand");
    *at += 1;
    match token {
        Token::Not => Tsq::Not(Box::new(factor(tokens, at))),
        Token::Open => {
            let inner = expr(tokens, at);
            assert_eq!(tokens.get(*at), Some(&Token::Close), "parentheses balance");
            *at += 1;
            inner
        }
        Token::Lexeme(lexeme) => Tsq::Lexeme(lexeme.clone()),
        other => panic!("an operand expected, found {other:?}"),
    }
}

/// A stop word, for this harness: words of an odd number of characters.
fn lexical(word: &str) -> bool {
    word.chars().count() % 2 == 0
}

/// Look-alikes that a careless quoting would turn into operators.
fn look_alikes(word: &str) -> Vec<String> {
    vec![format!("{word}' | !'x"), format!("{word}\\"), word.to_owned()]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let query = SearchQuery::parse(text);

    for alternative in query.alternatives() {
        assert!(!alternative.wanted().is_empty(), "{text:?}: an alternative without a word to find");
        for list in [alternative.wanted(), alternative.excluded()] {
            let distinct: BTreeSet<&String> = list.iter().collect();
            assert_eq!(distinct.len(), list.len(), "{text:?}: a word twice in one list");
            for word in list {
                assert!(!word.is_empty());
                assert!(word.chars().all(char::is_alphanumeric), "{text:?}: {word:?} holds a space or punctuation");
                assert!(!word.chars().any(|c| c.is_ascii_uppercase()), "{text:?}: {word:?} is not lowered");
            }
        }
    }

    let (words, wants_look_alikes) = query.words();
    assert_eq!(words.len(), wants_look_alikes.len());
    assert_eq!(words.iter().collect::<BTreeSet<_>>().len(), words.len(), "{text:?}: a word asked for twice");
    let wanted: BTreeSet<&String> = query.alternatives().iter().flat_map(|a| a.wanted()).collect();
    let all: BTreeSet<&String> = query.alternatives().iter().flat_map(|a| a.wanted().iter().chain(a.excluded())).collect();
    assert_eq!(words.iter().collect::<BTreeSet<_>>(), all);
    for (word, wants) in words.iter().zip(&wants_look_alikes) {
        assert_eq!(*wants, wanted.contains(word), "{text:?}: look-alikes of {word:?}");
    }

    // What PostgreSQL would answer, made up: odd-length words are stop words; words to
    // find have look-alikes full of operator characters.
    let lexicon: Lexicon = words
        .iter()
        .zip(&wants_look_alikes)
        .map(|(w, wants)| (w.clone(), Lexeme { lexical: lexical(w), look_alikes: if *wants { look_alikes(w) } else { Vec::new() } }))
        .collect();
    let expected: Vec<Tsq> = query
        .alternatives()
        .iter()
        .filter_map(|alternative| {
            let found: Vec<Tsq> = alternative
                .wanted()
                .iter()
                .filter(|w| lexical(w))
                .map(|w| join(false, look_alikes(w).into_iter().collect::<BTreeSet<_>>().into_iter().map(Tsq::Lexeme).collect()))
                .collect();
            if found.is_empty() {
                return None;
            }
            let left_out = alternative.excluded().iter().filter(|w| lexical(w)).map(|w| Tsq::Not(Box::new(Tsq::Lexeme(w.clone()))));
            Some(join(true, found.into_iter().chain(left_out).collect()))
        })
        .collect();
    match query.tolerant(&lexicon) {
        None => assert!(expected.is_empty(), "{text:?}: no query, yet {expected:?}"),
        Some(tolerant) => {
            assert!(!expected.is_empty(), "{text:?}: {tolerant:?} for nothing to find");
            let tokens = tokens(&tolerant);
            let mut at = 0;
            let read = expr(&tokens, &mut at);
            assert_eq!(at, tokens.len(), "{tolerant:?}: tokens left over");
            assert_eq!(read, join(false, expected), "{text:?} gave {tolerant:?}");
        }
    }
});
