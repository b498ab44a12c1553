//! The words around a match, for a SQLite hit.
//!
//! FTS5's own `snippet()` needs the full-text cursor on the row, so it is either computed for
//! every ranked candidate (thousands, to return ten) or looked up again per hit, which costs a
//! full-text seek each. Here the hits' text is marked after ranking instead: a word of the text
//! matches when its Porter stem is one of the query's, as the index's `porter` tokenizer
//! compares them (the Snowball English stemmer here and FTS5's Porter stemmer agree on all but
//! a few rare endings, which at worst leave a word unmarked).

use rust_stemmers::{Algorithm, Stemmer};

/// The most words a snippet shows.
const SNIPPET_WORDS: usize = 12;

/// The stems of a query's words.
pub(super) struct Stems {
    stemmer: Stemmer,
    stems: Vec<String>,
    /// The first letters of each query word and of its stem: a word is stemmed only when it
    /// begins with one of these.
    heads: Vec<String>,
}

/// A word's or a stem's first two letters. Three would miss words whose stem changes their
/// third letter (`aws` → `aw`, `dry` → `dri`, `added` → `ad`).
fn head(text: &str) -> String {
    text.chars().take(2).collect()
}

/// One word of the text: where it is, and which query word it matches.
struct Token {
    start: usize,
    end: usize,
    matched: Option<usize>,
}

impl Stems {
    /// `words` lowercased, as `query_words` gives them.
    pub(super) fn of(words: &[String]) -> Stems {
        let stemmer = Stemmer::create(Algorithm::English);
        let stems: Vec<String> = words.iter().map(|word| stemmer.stem(word).into_owned()).collect();
        let mut heads: Vec<String> = words.iter().chain(&stems).map(|text| head(text)).collect();
        heads.sort_unstable();
        heads.dedup();
        Stems { stemmer, stems, heads }
    }

    /// The best of `title` and `body` (the one whose best run holds more of the query's words;
    /// the body when they tie), or an empty string when neither holds any.
    pub(super) fn snippet(&self, title: &str, body: &str) -> String {
        let body_run = self.best_run(body);
        let title_run = self.best_run(title);
        match (title_run, body_run) {
            (Some(title_run), Some(body_run)) if title_run.0 > body_run.0 => title_run.1,
            (_, Some(body_run)) => body_run.1,
            (Some(title_run), None) => title_run.1,
            (None, None) => String::new(),
        }
    }

    /// `text`'s run of at most `SNIPPET_WORDS` words holding the most distinct query words (the
    /// first such), those marked `[` `]`, with `…` where text was left out; and how many
    /// distinct query words it holds. `None` when no word of `text` matches.
    fn best_run(&self, text: &str) -> Option<(usize, String)> {
        let tokens = self.tokens(text);
        if tokens.iter().all(|token| token.matched.is_none()) {
            return None;
        }
        let distinct = |run: &[Token]| {
            let mut seen: Vec<usize> = run.iter().filter_map(|token| token.matched).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len()
        };
        let (mut best_start, mut best_count) = (0, 0);
        for start in 0..tokens.len() {
            if tokens[start].matched.is_none() {
                continue;
            }
            // A run starts a word or two before its first match, for context.
            let from = start.saturating_sub(2);
            let count = distinct(&tokens[from..(from + SNIPPET_WORDS).min(tokens.len())]);
            if count > best_count {
                (best_start, best_count) = (from, count);
            }
        }
        let run = &tokens[best_start..(best_start + SNIPPET_WORDS).min(tokens.len())];
        let mut snippet = String::new();
        if best_start > 0 {
            snippet.push('…');
        }
        // A run at either end of the text keeps the text's leading or trailing punctuation.
        let mut at = if best_start == 0 { 0 } else { run[0].start };
        for token in run {
            snippet.push_str(&text[at..token.start]);
            match token.matched {
                Some(_) => {
                    snippet.push('[');
                    snippet.push_str(&text[token.start..token.end]);
                    snippet.push(']');
                }
                None => snippet.push_str(&text[token.start..token.end]),
            }
            at = token.end;
        }
        if best_start + run.len() < tokens.len() {
            snippet.push('…');
        } else {
            snippet.push_str(&text[at..]);
        }
        Some((best_count, snippet))
    }

    /// The words of `text` (runs of letters and digits, as the index splits them), each with the
    /// query word it matches. Only a word that begins like some query word or its stem is
    /// stemmed: a stem keeps its word's first two letters, bar a rare few (`dying` → `die`,
    /// which a query for `die` then leaves unmarked).
    fn tokens(&self, text: &str) -> Vec<Token> {
        let mut tokens = Vec::new();
        let mut start = None;
        for (index, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
            match (c.is_alphanumeric(), start) {
                (true, None) => start = Some(index),
                (false, Some(from)) => {
                    tokens.push(Token { start: from, end: index, matched: self.matching(&text[from..index]) });
                    start = None;
                }
                _ => {}
            }
        }
        tokens
    }

    fn matching(&self, word: &str) -> Option<usize> {
        let word = word.to_lowercase();
        if !self.heads.iter().any(|head| word.starts_with(head.as_str())) {
            return None;
        }
        let stem = self.stemmer.stem(&word);
        self.stems.iter().position(|candidate| *candidate == stem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(words: &[&str]) -> Stems {
        Stems::of(&words.iter().map(|word| word.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn words_are_marked_by_stem_and_the_run_is_cut_with_ellipses() {
        let stems = stems(&["deployed", "failing"]);
        let body = "one two three four five six seven eight nine ten eleven twelve thirteen Deploy of payments-api \
                    failed at step 3 of 9, rolled back by the pipeline after that";
        let snippet = stems.snippet("", body);
        assert_eq!(snippet, "…twelve thirteen [Deploy] of payments-api [failed] at step 3 of 9…");
    }

    #[test]
    fn the_run_with_the_most_distinct_words_wins_and_the_title_when_it_holds_more() {
        let stems = stems(&["checkout", "oomkilled"]);
        let body = "checkout checkout checkout a b c d e f g h i j k l m n o p OOMKilled on checkout-web";
        assert_eq!(stems.snippet("", body), "…o p [OOMKilled] on [checkout]-web");
        assert_eq!(
            stems.snippet("[FIRING] OOMKilled on checkout-api", "checkout-api\nqa"),
            "[FIRING] [OOMKilled] on [checkout]-api"
        );
        assert_eq!(stems.snippet("nothing here", "nor here"), "");
    }

    #[test]
    fn words_whose_stem_changes_their_third_letter_are_marked() {
        let stems = stems(&["aws", "dry", "added"]);
        assert_eq!(stems.snippet("", "Dry run on AWS: 3 nodes added"), "[Dry] run on [AWS]: 3 nodes [added]");
    }

    #[test]
    fn text_that_is_not_ascii_is_cut_on_character_boundaries() {
        let stems = stems(&["überprüfung"]);
        assert_eq!(stems.snippet("", "Die Überprüfung läuft — ok"), "Die [Überprüfung] läuft — ok");
    }
}
