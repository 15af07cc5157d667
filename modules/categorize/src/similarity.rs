//! The similarity step of the pipeline: a category for an uncategorised transaction from
//! the tenant's own categorised history, with no external model (no embeddings; pgvector
//! is not available), and with the neighbours it leaned on so that a person can be told
//! why ("4 earlier transactions from GitHub were filed under Software").
//!
//! Pure: no database, no async. The caller loads the history once per tenant, builds a
//! [`History`], and asks it as often as it likes; a batch job asks it 100,000 times over
//! 50,000 examples, so a question costs well under a millisecond.
//!
//! # Algorithm
//!
//! Every example's category has a source, and each source has a weight
//! ([`ExampleSource::weight`]): a person's choice weighs most, the machine's own guesses
//! least.
//!
//! 1. **Exact merchant.** When the transaction has a merchant whose [`merchant_key`] some
//!    examples share (the left-out one aside), those examples vote, each with its source's
//!    weight. The winner is the category with the largest weighted vote (then the most
//!    examples, then the one met first in the history). With `s` the winner's share of the
//!    vote, each agreeing example is read as an independent witness that is right with
//!    probability `p = w / (w + 2/3)` (a person 0.82, an import 0.6), so
//!
//!    `confidence = min(0.99, s × (1 − Π (1 − p_i)))` over the winner's examples.
//!
//!    One person's example gives 0.82, one import 0.6, three agreeing imports 0.94, and a
//!    50/50 split stays below 0.5 however many examples there are. The neighbours are up
//!    to five of the winner's examples, people's first, each with similarity 1.0.
//!    Without a merchant (or a key) the step is skipped: guessing a key from the
//!    description would only repeat step 2 less carefully.
//! 2. **Token similarity.** The query's tokens are [`tokens`] of the merchant and of the
//!    description, the merchant's counting double; examples are tokenised the same way.
//!    A token weighs `idf = ln(1 + N / df)` (a token never seen in the history weighs as
//!    one seen once), and the score of an example is the cosine of the two weighted token
//!    vectors. Candidates are the examples sharing a token with the query, found through
//!    an inverted index, rarest tokens first; a token in more than 20% of a history of at
//!    least 50 examples finds no candidates (it still counts in the score), unless every
//!    token of the query is that common, and then the rarest one does. At most 2,000
//!    postings are taken per token and 8,000 in all, which bounds the cost of a query.
//!    The best five candidates scoring at least 0.3 (ties: the earlier in the history
//!    first) vote with `score × weight`, and
//!
//!    `confidence = min(0.99, (winner's vote / all votes) × best score among the winner's)`.
//!
//!    No candidate reaching 0.3 means no suggestion.
//!
//! The confidence never reaches 1: history is evidence, not proof.

use std::cmp::Ordering;
use std::collections::HashMap;

use ledger::domain::fold;
use uuid::Uuid;

/// Words that say how a payment was made or what kind of company took it, never who: left
/// in, "GITHUB.COM/BILLING" and "GitHub" would not share a key, and every card payment
/// would look alike. Kept short on purpose; rarer noise is left to the IDF weights.
const NOISE: &[&str] = &[
    "www",
    "http",
    "https",
    "com",
    "net",
    "org",
    "inc",
    "ltd",
    "gmbh",
    "llc",
    "co",
    "pos",
    "card",
    "purchase",
    "payment",
    "billing",
    "debit",
    "sepa",
    "lastschrift",
    "kartenzahlung",
];

/// How many neighbours vote, and how many a suggestion shows.
const TOP_K: usize = 5;
/// Below this cosine two texts share a word or two by chance rather than a merchant.
const MIN_SCORE: f64 = 0.3;
/// History is evidence, not proof: a person should be able to overrule it in approvals.
const MAX_CONFIDENCE: f64 = 0.99;
/// The merchant field names the counterparty; the description is half boilerplate.
const MERCHANT_TOKEN_WEIGHT: f64 = 2.0;
/// A token in more than this share of the history matches too much to find candidates.
const COMMON_SHARE: f64 = 0.2;
/// In a small history every token is in 20% of it; only larger ones have stop words.
const COMMON_MIN_HISTORY: usize = 50;
/// A token's postings taken at most, so that a frequent token cannot make a query slow.
const MAX_POSTINGS_PER_TOKEN: usize = 2_000;
/// Postings taken at most over all the query's tokens, for the same reason.
const MAX_CANDIDATE_POSTINGS: usize = 8_000;
/// In `p = w / (w + WITNESS_DOUBT)`: chosen so that one import (weight 1) is right with
/// probability 0.6 and one person (weight 3) with about 0.8.
const WITNESS_DOUBT: f64 = 2.0 / 3.0;

/// Where a history example's category came from; a person's choice weighs most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleSource {
    /// A person chose or confirmed the category of this very transaction.
    Person,
    /// One of the tenant's rules set it.
    Rule,
    /// It came with the imported file (the bank's or another app's category).
    Import,
    /// This step suggested it and nobody has looked since.
    Similarity,
    /// The LLM step suggested it and nobody has looked since.
    Llm,
}

impl ExampleSource {
    /// The weight of one example's vote: Person 3.0, Rule 1.5, Import 1.0, Similarity 0.5,
    /// Llm 0.5.
    ///
    /// A person looked at this transaction, so their choice is the best evidence there is.
    /// A rule is a person's choice too, but made in general, and rules over-match. An
    /// import is someone's choice of unknown care, the baseline. The machine's own
    /// guesses weigh least: were they to count fully, one wrong guess would be repeated
    /// for every later transaction of the merchant and grow more confident each time.
    pub fn weight(self) -> f64 {
        match self {
            ExampleSource::Person => 3.0,
            ExampleSource::Rule => 1.5,
            ExampleSource::Import => 1.0,
            ExampleSource::Similarity | ExampleSource::Llm => 0.5,
        }
    }
}

/// One categorised transaction of the tenant's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The transaction, so that a suggestion can point at it and leave-one-out can skip it.
    pub transaction_id: Uuid,
    /// The counterparty as the bank or the import named it, if it did.
    pub merchant: Option<String>,
    /// The transaction's description (purpose, booking text).
    pub description: String,
    /// The category it is filed under.
    pub category_id: Uuid,
    /// Who chose that category.
    pub source: ExampleSource,
}

/// The normalised key of a merchant: folded, reference noise removed, so that
/// "AMZN Mktp US*2K4ZX" and "AMZN MKTP US*9QW1" share the key "amzn mktp us",
/// "GITHUB.COM/BILLING" and "GitHub" share "github", and "PAYPAL *SPOTIFY 4029357733"
/// becomes "paypal spotify".
///
/// The text is folded (lower case, accents stripped); it is cut at the first `*` when the
/// word right after the `*` has a digit, as card references do; it is split on everything
/// that is not a letter or digit; words with digits and noise words ("www", "com", "gmbh",
/// "pos", "card", "payment", "sepa", ...) are dropped; the rest is joined with single
/// spaces. `None` when nothing is left.
pub fn merchant_key(merchant: &str) -> Option<String> {
    let folded = fold(merchant);
    // Only the word right after '*' decides: "PAYPAL *SPOTIFY 4029357733" has digits after
    // the '*' too, and cutting there would file Spotify and Netflix under "paypal".
    let kept = match folded.split_once('*') {
        Some((head, tail)) if first_word(tail).is_some_and(has_digit) => head,
        _ => folded.as_str(),
    };
    let words: Vec<&str> = words(kept)
        .filter(|word| !has_digit(word) && !is_noise(word))
        .collect();
    if words.is_empty() {
        None
    } else {
        Some(words.join(" "))
    }
}

/// The tokens of a text for the token similarity: folded words of at least two letters,
/// without words that have digits (references, dates, amounts) or noise words, each once,
/// in the order they first appear.
pub fn tokens(text: &str) -> Vec<String> {
    let folded = fold(text);
    let mut out: Vec<String> = Vec::new();
    for word in words(&folded) {
        // Single letters are initials and fragments of "H&M"-like names: too ambiguous to
        // match on, which is why the merchant key keeps them and the tokens do not.
        if word.chars().nth(1).is_none() || has_digit(word) || is_noise(word) {
            continue;
        }
        if !out.iter().any(|known| known == word) {
            out.push(word.to_owned());
        }
    }
    out
}

/// One example a suggestion leaned on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The example's transaction.
    pub transaction_id: Uuid,
    /// The category it is filed under, the suggested one or not.
    pub category_id: Uuid,
    /// How alike it is to the transaction asked about, in [0, 1]; 1.0 for the same
    /// merchant.
    pub similarity: f64,
    /// Who chose its category.
    pub source: ExampleSource,
}

/// Which step of the similarity produced a suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// Examples with the same [`merchant_key`] voted.
    ExactMerchant {
        /// The key they share.
        key: String,
    },
    /// The examples most alike by their tokens voted.
    Tokens,
}

/// A suggested category, how sure the history is of it, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The suggested category.
    pub category_id: Uuid,
    /// How sure, in [0, 0.99].
    pub confidence: f64,
    /// Which step produced it.
    pub basis: Basis,
    /// The neighbours used, best first, at most five: for an exact merchant the winner's
    /// examples, people's first; for tokens the top five whatever their category, so a
    /// dissenting neighbour shows too.
    pub neighbours: Vec<Neighbour>,
    /// How many examples had the suggested category: for an exact merchant, all of the
    /// merchant's examples that did (possibly more than are shown); for tokens, the
    /// neighbours that did.
    pub agreeing: usize,
}

/// A tenant's categorised history, indexed for [`History::suggest`].
#[derive(Debug, Clone)]
pub struct History {
    examples: Vec<Example>,
    /// Merchant key to the indices of the examples with it, ascending.
    by_merchant: HashMap<String, Vec<usize>>,
    /// Token to its id; ids are given in the order tokens are first met, so that nothing
    /// about a result depends on a hash map's order.
    vocabulary: HashMap<String, usize>,
    /// Token id to the indices of the examples with it, ascending; its length is the
    /// token's document frequency.
    postings: Vec<Vec<usize>>,
    /// Token id to its IDF weight.
    idf: Vec<f64>,
    /// Example `i`'s weighted tokens are `terms[offsets[i]..offsets[i + 1]]`: one flat
    /// array rather than a vector per example, fewer allocations and better locality.
    offsets: Vec<usize>,
    /// (token id, multiplier × idf), sorted by token id within each example.
    terms: Vec<(usize, f64)>,
    /// Example to the Euclidean norm of its weighted tokens.
    norms: Vec<f64>,
}

impl History {
    /// Indexes the examples: merchant keys, an inverted index of tokens, and their document
    /// frequencies.
    ///
    /// The order matters only where a limit applies: ties go to the earlier example, and a
    /// token's postings beyond 2,000 are not looked at, so give the newest examples first.
    pub fn new(examples: Vec<Example>) -> History {
        let mut by_merchant: HashMap<String, Vec<usize>> = HashMap::new();
        let mut vocabulary: HashMap<String, usize> = HashMap::new();
        let mut postings: Vec<Vec<usize>> = Vec::new();
        let mut offsets = Vec::with_capacity(examples.len() + 1);
        let mut terms: Vec<(usize, f64)> = Vec::new();
        offsets.push(0);
        for (index, example) in examples.iter().enumerate() {
            if let Some(key) = example.merchant.as_deref().and_then(merchant_key) {
                by_merchant.entry(key).or_default().push(index);
            }
            let start = terms.len();
            for (token, multiplier) in
                weighted_tokens(example.merchant.as_deref(), &example.description)
            {
                let fresh = postings.len();
                let id = *vocabulary.entry(token).or_insert(fresh);
                if id == fresh {
                    postings.push(Vec::new());
                }
                postings[id].push(index);
                terms.push((id, multiplier));
            }
            terms[start..].sort_unstable_by_key(|&(id, _)| id);
            offsets.push(terms.len());
        }
        let n = examples.len();
        let idf: Vec<f64> = postings.iter().map(|p| idf(n, p.len())).collect();
        let mut norms = Vec::with_capacity(n);
        for window in offsets.windows(2) {
            let mut squares = 0.0;
            for term in &mut terms[window[0]..window[1]] {
                term.1 *= idf[term.0];
                squares += term.1 * term.1;
            }
            norms.push(squares.sqrt());
        }
        History {
            examples,
            by_merchant,
            vocabulary,
            postings,
            idf,
            offsets,
            terms,
            norms,
        }
    }

    /// How many examples the history holds.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether the history holds no examples (then it never suggests anything).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// A category for a transaction with this merchant and description, or `None` when
    /// the history has nothing alike enough.
    ///
    /// `exclude` leaves the examples of one transaction out, to measure accuracy
    /// leave-one-out; the token weights still count it, a difference of one in one
    /// document frequency.
    pub fn suggest(
        &self,
        merchant: Option<&str>,
        description: &str,
        exclude: Option<Uuid>,
    ) -> Option<Suggestion> {
        if let Some(key) = merchant.and_then(merchant_key)
            && let Some(suggestion) = self.by_exact_merchant(key, exclude)
        {
            return Some(suggestion);
        }
        self.by_tokens(merchant, description, exclude)
    }

    /// Step 1: the examples with the same merchant key vote.
    fn by_exact_merchant(&self, key: String, exclude: Option<Uuid>) -> Option<Suggestion> {
        let indices = self.by_merchant.get(&key)?;
        let mut tallies: Vec<Tally> = Vec::new();
        let mut total = 0.0;
        for &index in indices {
            let example = &self.examples[index];
            if Some(example.transaction_id) == exclude {
                continue;
            }
            let weight = example.source.weight();
            total += weight;
            let doubt = WITNESS_DOUBT / (weight + WITNESS_DOUBT);
            match tallies
                .iter_mut()
                .find(|tally| tally.category_id == example.category_id)
            {
                Some(tally) => {
                    tally.vote += weight;
                    tally.count += 1;
                    tally.doubt *= doubt;
                }
                None => tallies.push(Tally {
                    category_id: example.category_id,
                    vote: weight,
                    count: 1,
                    doubt,
                }),
            }
        }
        // Strictly better replaces, so a tie goes to the category met first.
        let mut winner = *tallies.first()?;
        for tally in &tallies[1..] {
            let better = match tally.vote.total_cmp(&winner.vote) {
                Ordering::Greater => true,
                Ordering::Equal => tally.count > winner.count,
                Ordering::Less => false,
            };
            if better {
                winner = *tally;
            }
        }
        let share = winner.vote / total;
        let confidence = (share * (1.0 - winner.doubt)).clamp(0.0, MAX_CONFIDENCE);

        let mut agreeing: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&index| {
                let example = &self.examples[index];
                example.category_id == winner.category_id && Some(example.transaction_id) != exclude
            })
            .collect();
        // Stable: within one source the history's order stands.
        agreeing.sort_by(|&a, &b| {
            let weight = |index: usize| self.examples[index].source.weight();
            weight(b).total_cmp(&weight(a))
        });
        let neighbours = agreeing
            .iter()
            .take(TOP_K)
            .map(|&index| self.neighbour(index, 1.0))
            .collect();
        Some(Suggestion {
            category_id: winner.category_id,
            confidence,
            basis: Basis::ExactMerchant { key },
            neighbours,
            agreeing: winner.count,
        })
    }

    /// Step 2: the examples most alike by their weighted tokens vote.
    fn by_tokens(
        &self,
        merchant: Option<&str>,
        description: &str,
        exclude: Option<Uuid>,
    ) -> Option<Suggestion> {
        if self.is_empty() {
            return None;
        }
        let unseen_idf = idf(self.len(), 1);
        let mut query: Vec<(usize, f64)> = Vec::new();
        let mut squares = 0.0;
        for (token, multiplier) in weighted_tokens(merchant, description) {
            // A token the history never saw matches nothing, but it still makes the query
            // less like any example: "Uber Eats" is not quite "Uber".
            let weight = match self.vocabulary.get(&token) {
                Some(&id) => {
                    let weight = multiplier * self.idf[id];
                    query.push((id, weight));
                    weight
                }
                None => multiplier * unseen_idf,
            };
            squares += weight * weight;
        }
        if query.is_empty() {
            return None;
        }
        let query_norm: f64 = squares.sqrt();

        let candidates = self.candidates(&query);
        query.sort_unstable_by_key(|&(id, _)| id);

        let mut top: Vec<(f64, usize)> = Vec::with_capacity(TOP_K + 1);
        for &index in &candidates {
            let norm = self.norms[index];
            if norm <= 0.0 || Some(self.examples[index].transaction_id) == exclude {
                continue;
            }
            let terms = &self.terms[self.offsets[index]..self.offsets[index + 1]];
            // Rounding can put a text identical to the query a hair above 1.
            let score = (dot(&query, terms) / (query_norm * norm)).min(1.0);
            if score < MIN_SCORE {
                continue;
            }
            // Candidates come in history order, so an equal score goes after: the earlier
            // example wins a tie.
            let at = top.iter().position(|&(best, _)| best < score);
            match at {
                Some(at) => {
                    top.insert(at, (score, index));
                    top.truncate(TOP_K);
                }
                None if top.len() < TOP_K => top.push((score, index)),
                None => {}
            }
        }
        if top.is_empty() {
            return None;
        }

        // (category, vote, best score); in rank order, so the best neighbour's category
        // wins a tie.
        let mut votes: Vec<(Uuid, f64, f64)> = Vec::with_capacity(TOP_K);
        let mut total = 0.0;
        for &(score, index) in &top {
            let example = &self.examples[index];
            let vote = score * example.source.weight();
            total += vote;
            match votes.iter_mut().find(|v| v.0 == example.category_id) {
                Some(entry) => {
                    entry.1 += vote;
                    entry.2 = entry.2.max(score);
                }
                None => votes.push((example.category_id, vote, score)),
            }
        }
        let mut winner = votes[0];
        for &entry in &votes[1..] {
            if entry.1 > winner.1 {
                winner = entry;
            }
        }
        let (category_id, vote, best) = winner;
        let confidence = (vote / total * best).clamp(0.0, MAX_CONFIDENCE);
        let agreeing = top
            .iter()
            .filter(|&&(_, index)| self.examples[index].category_id == category_id)
            .count();
        let neighbours = top
            .iter()
            .map(|&(score, index)| self.neighbour(index, score))
            .collect();
        Some(Suggestion {
            category_id,
            confidence,
            basis: Basis::Tokens,
            neighbours,
            agreeing,
        })
    }

    /// The examples sharing a token with the query, ascending and each once, within the
    /// limits on postings.
    fn candidates(&self, query: &[(usize, f64)]) -> Vec<usize> {
        // Rarest first: they say the most and cost the least, so the limits cut the
        // tokens that matter least.
        let mut order: Vec<usize> = query.iter().map(|&(id, _)| id).collect();
        order.sort_unstable_by_key(|&id| (self.postings[id].len(), id));
        let common_history = self.len() >= COMMON_MIN_HISTORY;
        let limit = COMMON_SHARE * self.len() as f64;
        let mut candidates: Vec<usize> = Vec::new();
        for (rank, &id) in order.iter().enumerate() {
            let postings = &self.postings[id];
            // Ordered by frequency, so once one is common the rest are too; the rarest is
            // taken whatever, so that a query of common words alone still finds something.
            if rank > 0 && common_history && postings.len() as f64 > limit {
                break;
            }
            let room = MAX_CANDIDATE_POSTINGS - candidates.len();
            let take = postings.len().min(MAX_POSTINGS_PER_TOKEN).min(room);
            candidates.extend_from_slice(&postings[..take]);
            if candidates.len() >= MAX_CANDIDATE_POSTINGS {
                break;
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
    }

    fn neighbour(&self, index: usize, similarity: f64) -> Neighbour {
        let example = &self.examples[index];
        Neighbour {
            transaction_id: example.transaction_id,
            category_id: example.category_id,
            similarity,
            source: example.source,
        }
    }
}

/// One category's share of an exact-merchant vote.
#[derive(Debug, Clone, Copy)]
struct Tally {
    category_id: Uuid,
    vote: f64,
    count: usize,
    /// Π (1 − p) over the category's examples: the chance that all of them are wrong.
    doubt: f64,
}

/// `ln(1 + n / df)`: the +1 inside keeps a token that every example has above zero, so a
/// query of common words alone can still match.
fn idf(n: usize, df: usize) -> f64 {
    (1.0 + n as f64 / df.max(1) as f64).ln()
}

/// The merchant's tokens (double weight), then the description's not already there.
fn weighted_tokens(merchant: Option<&str>, description: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = merchant
        .map(tokens)
        .unwrap_or_default()
        .into_iter()
        .map(|token| (token, MERCHANT_TOKEN_WEIGHT))
        .collect();
    let from_merchant = out.len();
    for token in tokens(description) {
        if !out[..from_merchant]
            .iter()
            .any(|(known, _)| *known == token)
        {
            out.push((token, 1.0));
        }
    }
    out
}

/// The dot product of two weighted token lists, each sorted by token id.
fn dot(a: &[(usize, f64)], b: &[(usize, f64)]) -> f64 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while let (Some(&(x, wx)), Some(&(y, wy))) = (a.get(i), b.get(j)) {
        match x.cmp(&y) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                sum += wx * wy;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
}

fn first_word(text: &str) -> Option<&str> {
    words(text).next()
}

fn has_digit(word: &str) -> bool {
    word.chars().any(char::is_numeric)
}

fn is_noise(word: &str) -> bool {
    NOISE.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const SOFTWARE: Uuid = Uuid::from_u128(0x50f7);
    const OTHER: Uuid = Uuid::from_u128(0x07e5);
    const TRAVEL: Uuid = Uuid::from_u128(0x7a4e);
    const GROCERIES: Uuid = Uuid::from_u128(0x6a0c);

    fn example(
        n: u128,
        merchant: Option<&str>,
        description: &str,
        category_id: Uuid,
        source: ExampleSource,
    ) -> Example {
        Example {
            transaction_id: id(n),
            merchant: merchant.map(str::to_owned),
            description: description.to_owned(),
            category_id,
            source,
        }
    }

    /// `count` examples of one merchant, one category, one source, ids from `first`.
    fn same_merchant(
        first: u128,
        count: u128,
        merchant: &str,
        category_id: Uuid,
        source: ExampleSource,
    ) -> Vec<Example> {
        (first..first + count)
            .map(|n| example(n, Some(merchant), "card payment", category_id, source))
            .collect()
    }

    fn exact_confidence(examples: Vec<Example>) -> f64 {
        let history = History::new(examples);
        let suggestion = history
            .suggest(Some("GitHub"), "", None)
            .expect("a suggestion");
        assert!(matches!(suggestion.basis, Basis::ExactMerchant { .. }));
        suggestion.confidence
    }

    #[test]
    fn amazon_references_share_a_key() {
        let a = merchant_key("AMZN Mktp US*2K4ZX");
        let b = merchant_key("AMZN MKTP US*9QW1");
        assert_eq!(a.as_deref(), Some("amzn mktp us"));
        assert_eq!(a, b);
    }

    #[test]
    fn github_billing_is_github() {
        assert_eq!(
            merchant_key("GITHUB.COM/BILLING").as_deref(),
            Some("github")
        );
        assert_eq!(merchant_key("GitHub").as_deref(), Some("github"));
        assert_eq!(merchant_key("www.github.com").as_deref(), Some("github"));
    }

    #[test]
    fn paypal_keeps_the_merchant_behind_the_star() {
        let spotify = merchant_key("PAYPAL *SPOTIFY 4029357733");
        assert_eq!(spotify.as_deref(), Some("paypal spotify"));
        assert_eq!(spotify, merchant_key("PAYPAL *SPOTIFY 35314369001"));
        assert_eq!(
            merchant_key("PAYPAL *NETFLIX").as_deref(),
            Some("paypal netflix")
        );
        assert_ne!(spotify, merchant_key("PAYPAL *NETFLIX 4029357733"));
    }

    #[test]
    fn merchant_keys_fold_and_drop_noise() {
        assert_eq!(
            merchant_key("Café Zürich GmbH").as_deref(),
            Some("cafe zurich")
        );
        assert_eq!(merchant_key("H&M").as_deref(), Some("h m"));
        assert_eq!(
            merchant_key("SEPA Lastschrift  Stadtwerke  München 2026-03").as_deref(),
            Some("stadtwerke munchen")
        );
        assert_eq!(
            merchant_key("SQ *BLUE BOTTLE").as_deref(),
            Some("sq blue bottle")
        );
        assert_eq!(merchant_key(""), None);
        assert_eq!(merchant_key("12345 / 678"), None);
        assert_eq!(merchant_key("POS CARD *4711"), None);
        assert_eq!(merchant_key("*4711"), None);
    }

    #[test]
    fn tokens_are_folded_words_once() {
        assert_eq!(tokens("UBER *TRIP HELP.UBER.COM"), ["uber", "trip", "help"]);
        assert_eq!(
            tokens("Kartenzahlung Bäckerei Müller 12.03. 4,50 EUR R 7X9"),
            ["backerei", "muller", "eur"]
        );
        assert!(tokens("").is_empty());
        assert!(tokens("123 a b 4k").is_empty());
    }

    #[test]
    fn a_person_outweighs_two_imports() {
        let mut examples = same_merchant(1, 2, "GITHUB.COM/BILLING", OTHER, ExampleSource::Import);
        examples.push(example(
            3,
            Some("GitHub"),
            "subscription",
            SOFTWARE,
            ExampleSource::Person,
        ));
        let history = History::new(examples);
        let suggestion = history
            .suggest(Some("GitHub, Inc."), "GitHub subscription", None)
            .expect("a suggestion");
        assert_eq!(suggestion.category_id, SOFTWARE);
        assert_eq!(
            suggestion.basis,
            Basis::ExactMerchant {
                key: "github".to_owned()
            }
        );
        assert_eq!(suggestion.agreeing, 1);
        assert_eq!(suggestion.neighbours.len(), 1);
        assert_eq!(suggestion.neighbours[0].transaction_id, id(3));
        assert_eq!(suggestion.neighbours[0].similarity, 1.0);
        // Dissent shows: a person against two imports is no sure thing.
        assert!(suggestion.confidence < 0.6, "{}", suggestion.confidence);
    }

    #[test]
    fn exact_neighbours_put_people_first_and_stop_at_five() {
        let mut examples = same_merchant(1, 6, "GitHub", SOFTWARE, ExampleSource::Import);
        examples.push(example(
            7,
            Some("GitHub"),
            "",
            SOFTWARE,
            ExampleSource::Person,
        ));
        let history = History::new(examples);
        let suggestion = history
            .suggest(Some("GITHUB"), "", None)
            .expect("a suggestion");
        assert_eq!(suggestion.agreeing, 7);
        let shown: Vec<Uuid> = suggestion
            .neighbours
            .iter()
            .map(|n| n.transaction_id)
            .collect();
        assert_eq!(shown, [id(7), id(1), id(2), id(3), id(4)]);
    }

    #[test]
    fn leave_one_out_skips_the_example() {
        let history = History::new(vec![
            example(1, Some("GitHub"), "", SOFTWARE, ExampleSource::Person),
            example(2, Some("GitHub"), "", OTHER, ExampleSource::Import),
            example(3, Some("Netflix"), "", OTHER, ExampleSource::Import),
        ]);
        let all = history
            .suggest(Some("GitHub"), "", None)
            .expect("a suggestion");
        assert_eq!(all.category_id, SOFTWARE);
        let without = history
            .suggest(Some("GitHub"), "", Some(id(1)))
            .expect("a suggestion");
        assert_eq!(without.category_id, OTHER);
        assert_eq!(without.agreeing, 1);
        assert!(without.neighbours.iter().all(|n| n.transaction_id != id(1)));
        // With its only example left out, a merchant is unknown, tokens included.
        assert_eq!(history.suggest(Some("Netflix"), "", Some(id(3))), None);
    }

    #[test]
    fn tokens_find_an_uber_trip() {
        let history = History::new(vec![
            example(
                1,
                Some("UBER *TRIP HELP.UBER.COM"),
                "UBER *TRIP HELP.UBER.COM",
                TRAVEL,
                ExampleSource::Person,
            ),
            example(
                2,
                Some("REWE Markt"),
                "REWE SAGT DANKE 4711",
                GROCERIES,
                ExampleSource::Import,
            ),
            example(
                3,
                Some("Edeka Berlin"),
                "Edeka Center",
                GROCERIES,
                ExampleSource::Import,
            ),
            example(
                4,
                Some("GitHub"),
                "GitHub subscription",
                SOFTWARE,
                ExampleSource::Import,
            ),
        ]);
        let suggestion = history
            .suggest(None, "Uber trip Berlin", None)
            .expect("a suggestion");
        assert_eq!(suggestion.category_id, TRAVEL);
        assert_eq!(suggestion.basis, Basis::Tokens);
        assert_eq!(suggestion.neighbours[0].transaction_id, id(1));
        assert_eq!(suggestion.agreeing, 1);
        assert!(suggestion.confidence >= 0.3 && suggestion.confidence <= 0.99);
        for pair in suggestion.neighbours.windows(2) {
            assert!(pair[0].similarity >= pair[1].similarity);
        }
    }

    #[test]
    fn unknown_merchant_falls_back_to_tokens() {
        let history = History::new(vec![
            example(1, Some("UBER *TRIP"), "", TRAVEL, ExampleSource::Import),
            example(2, Some("GitHub"), "", SOFTWARE, ExampleSource::Import),
        ]);
        let suggestion = history
            .suggest(Some("Uber BV"), "Uber trip 2026-03-02", None)
            .expect("a suggestion");
        assert_eq!(suggestion.basis, Basis::Tokens);
        assert_eq!(suggestion.category_id, TRAVEL);
    }

    #[test]
    fn unrelated_text_suggests_nothing() {
        let history = History::new(vec![
            example(
                1,
                Some("UBER *TRIP"),
                "Uber trip",
                TRAVEL,
                ExampleSource::Person,
            ),
            example(
                2,
                Some("GitHub"),
                "GitHub subscription",
                SOFTWARE,
                ExampleSource::Import,
            ),
        ]);
        assert_eq!(
            history.suggest(Some("Bäckerei Schmidt"), "Brötchen", None),
            None
        );
        assert_eq!(history.suggest(None, "12345 / 2026-03-02", None), None);
        assert_eq!(history.suggest(None, "", None), None);
        assert_eq!(
            History::new(Vec::new()).suggest(Some("GitHub"), "GitHub", None),
            None
        );
    }

    #[test]
    fn a_shared_word_alone_is_not_enough() {
        let history = History::new(vec![
            example(
                1,
                Some("Hotel Adlon Kempinski"),
                "Hotel Adlon Kempinski Berlin room service minibar",
                TRAVEL,
                ExampleSource::Person,
            ),
            example(
                2,
                Some("GitHub"),
                "GitHub subscription",
                SOFTWARE,
                ExampleSource::Import,
            ),
        ]);
        assert_eq!(
            history.suggest(
                Some("Zoo Berlin"),
                "Eintritt Familie Tiergarten Ausflug",
                None
            ),
            None
        );
    }

    #[test]
    fn exact_confidence_properties() {
        use ExampleSource::{Import, Llm, Person};
        let one_person = exact_confidence(same_merchant(1, 1, "GitHub", SOFTWARE, Person));
        assert!((0.75..=0.85).contains(&one_person), "{one_person}");
        let one_import = exact_confidence(same_merchant(1, 1, "GitHub", SOFTWARE, Import));
        assert!((0.55..=0.65).contains(&one_import), "{one_import}");
        let three_imports = exact_confidence(same_merchant(1, 3, "GitHub", SOFTWARE, Import));
        assert!(three_imports >= 0.9, "{three_imports}");
        let three_people = exact_confidence(same_merchant(1, 3, "GitHub", SOFTWARE, Person));
        assert!(three_people >= 0.9, "{three_people}");
        // The machine's own guesses do not grow sure by repeating themselves.
        let three_guesses = exact_confidence(same_merchant(1, 3, "GitHub", SOFTWARE, Llm));
        assert!(three_guesses < three_imports, "{three_guesses}");
        let many = exact_confidence(same_merchant(1, 200, "GitHub", SOFTWARE, Person));
        assert!(many <= MAX_CONFIDENCE, "{many}");

        let mut split = same_merchant(1, 1, "GitHub", SOFTWARE, Import);
        split.extend(same_merchant(2, 1, "GitHub", OTHER, Import));
        let split = exact_confidence(split);
        assert!(split < 0.6, "{split}");
        let mut big_split = same_merchant(1, 10, "GitHub", SOFTWARE, Person);
        big_split.extend(same_merchant(11, 10, "GitHub", OTHER, Person));
        let big_split = exact_confidence(big_split);
        assert!(big_split < 0.6, "{big_split}");

        // More agreement, more confidence.
        let mut counts =
            (1..=6).map(|n| exact_confidence(same_merchant(1, n, "GitHub", SOFTWARE, Import)));
        let mut last = counts.next().unwrap_or_default();
        for next in counts {
            assert!(next >= last);
            last = next;
        }
    }

    #[test]
    fn a_tie_goes_to_the_category_met_first() {
        let mut examples = same_merchant(1, 1, "GitHub", OTHER, ExampleSource::Import);
        examples.extend(same_merchant(
            2,
            1,
            "GitHub",
            SOFTWARE,
            ExampleSource::Import,
        ));
        let history = History::new(examples);
        for _ in 0..3 {
            let suggestion = history
                .suggest(Some("GitHub"), "", None)
                .expect("a suggestion");
            assert_eq!(suggestion.category_id, OTHER);
        }
    }

    #[test]
    fn token_votes_weigh_sources_and_show_dissent() {
        let history = History::new(vec![
            example(
                1,
                None,
                "Monthly rent flat Kastanienallee",
                OTHER,
                ExampleSource::Llm,
            ),
            example(
                2,
                None,
                "Monthly rent flat Kastanienallee",
                OTHER,
                ExampleSource::Llm,
            ),
            example(
                3,
                None,
                "Monthly rent flat Kastanienallee",
                GROCERIES,
                ExampleSource::Person,
            ),
            example(
                4,
                None,
                "GitHub subscription",
                SOFTWARE,
                ExampleSource::Import,
            ),
        ]);
        let suggestion = history
            .suggest(None, "Monthly rent flat Kastanienallee", None)
            .expect("a suggestion");
        assert_eq!(suggestion.category_id, GROCERIES);
        assert_eq!(suggestion.agreeing, 1);
        assert_eq!(suggestion.neighbours.len(), 3);
        // Identical texts tie: the earlier example first.
        let shown: Vec<Uuid> = suggestion
            .neighbours
            .iter()
            .map(|n| n.transaction_id)
            .collect();
        assert_eq!(shown, [id(1), id(2), id(3)]);
        // 3 of 4 weighted votes times a perfect match.
        assert!(
            (suggestion.confidence - 0.75).abs() < 1e-9,
            "{}",
            suggestion.confidence
        );
    }

    #[test]
    fn common_words_alone_still_match() {
        // Every example has every one of these tokens: all are "common", yet the rarest
        // must still find candidates.
        let examples: Vec<Example> = (1..=60)
            .map(|n| {
                example(
                    n,
                    None,
                    "Rent Berlin apartment",
                    OTHER,
                    ExampleSource::Import,
                )
            })
            .collect();
        let history = History::new(examples);
        let suggestion = history
            .suggest(None, "rent berlin apartment", None)
            .expect("a suggestion");
        assert_eq!(suggestion.category_id, OTHER);
        assert_eq!(suggestion.neighbours.len(), TOP_K);
        assert_eq!(suggestion.agreeing, TOP_K);
    }

    #[test]
    fn results_are_deterministic() {
        let examples = synthetic(2_000);
        let one = History::new(examples.clone());
        let two = History::new(examples.clone());
        for n in 0..200 {
            let (merchant, description) = synthetic_query(&examples, n);
            let a = one.suggest(merchant.as_deref(), &description, None);
            assert_eq!(a, one.suggest(merchant.as_deref(), &description, None));
            assert_eq!(a, two.suggest(merchant.as_deref(), &description, None));
            if let Some(suggestion) = a {
                assert!((0.0..=MAX_CONFIDENCE).contains(&suggestion.confidence));
                assert!(suggestion.neighbours.len() <= TOP_K);
                assert!(suggestion.agreeing >= 1);
            }
        }
    }

    /// A small deterministic generator: the crate has no `rand`, and a fixed sequence
    /// keeps the test and the benchmark repeatable.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    const SYLLABLES: &[&str] = &[
        "ka", "ro", "mi", "ten", "sul", "bra", "do", "vex", "lin", "qua", "zor", "pe", "tam",
        "gri", "no", "has", "vel", "tu", "mar", "fli",
    ];
    const CITIES: &[&str] = &[
        "berlin", "hamburg", "munich", "cologne", "vienna", "zurich", "paris", "madrid",
    ];

    fn word(rng: &mut Lcg, syllables: usize) -> String {
        (0..syllables)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect()
    }

    /// Examples over 1,500 merchants in 30 categories: a reference on half the merchants,
    /// a city (each in about 1/8 of the history), and words from a vocabulary of 4,000.
    fn synthetic(count: usize) -> Vec<Example> {
        let mut rng = Lcg(42);
        let merchants: Vec<String> = (0..1_500).map(|_| word(&mut rng, 3)).collect();
        let vocabulary: Vec<String> = (0..4_000).map(|_| word(&mut rng, 4)).collect();
        (0..count)
            .map(|n| {
                let m = rng.below(merchants.len());
                let merchant = if n % 2 == 0 {
                    format!("{} *{}X{}", merchants[m], rng.below(9_999), rng.below(99))
                } else {
                    merchants[m].to_uppercase()
                };
                let description = format!(
                    "{} {} {} {} {}",
                    merchants[m],
                    CITIES[rng.below(CITIES.len())],
                    vocabulary[rng.below(vocabulary.len())],
                    vocabulary[rng.below(vocabulary.len())],
                    rng.below(100_000),
                );
                let source = match n % 10 {
                    0 | 1 => ExampleSource::Person,
                    2 => ExampleSource::Rule,
                    3 => ExampleSource::Llm,
                    _ => ExampleSource::Import,
                };
                let category = m % 30 + n % 7 / 6;
                Example {
                    transaction_id: Uuid::from_u128(n as u128 + 1),
                    merchant: (n % 5 != 0).then_some(merchant),
                    description,
                    category_id: Uuid::from_u128(category as u128 + 1_000),
                    source,
                }
            })
            .collect()
    }

    /// A mix drawn from the history: a known merchant, a known description without its
    /// merchant, a new merchant with some known words, and text mostly new.
    fn synthetic_query(examples: &[Example], n: usize) -> (Option<String>, String) {
        let mut rng = Lcg(n as u64 * 7 + 1);
        let known = &examples[rng.below(examples.len())];
        match n % 4 {
            0 => (known.merchant.clone(), "card payment".to_owned()),
            1 => (None, known.description.clone()),
            2 => {
                let words: Vec<&str> = known.description.split(' ').take(3).collect();
                (
                    Some(format!("{} GMBH", word(&mut rng, 2))),
                    format!("{} ref 123", words.join(" ")),
                )
            }
            _ => {
                let city = CITIES[rng.below(CITIES.len())];
                (
                    Some(word(&mut rng, 3)),
                    format!("{} {city} {}", word(&mut rng, 3), word(&mut rng, 4)),
                )
            }
        }
    }

    /// `cargo test -p categorize --lib similarity -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn benchmark_suggest() {
        let examples = synthetic(50_000);
        let queries: Vec<(Option<String>, String)> =
            (0..10_000).map(|n| synthetic_query(&examples, n)).collect();
        let started = std::time::Instant::now();
        let history = History::new(examples);
        let built = started.elapsed();
        let started = std::time::Instant::now();
        let mut found = 0;
        for (merchant, description) in &queries {
            if history
                .suggest(merchant.as_deref(), description, None)
                .is_some()
            {
                found += 1;
            }
        }
        let elapsed = started.elapsed();
        println!(
            "built {} examples in {built:?}; {} suggests in {elapsed:?}, {:.1} µs per call, {found} with a suggestion",
            history.len(),
            queries.len(),
            elapsed.as_secs_f64() * 1e6 / queries.len() as f64,
        );
    }
}
