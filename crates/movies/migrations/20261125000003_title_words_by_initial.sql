-- Candidates for a misspelt word: title words with the same first letter and a length
-- within two of it, found through this index, before the (costly) trigram word
-- similarity is computed for them. A scan of every word cost 2 to 6 ms per search,
-- most of a search's time; the planner does not use the trigram index for `%>` at
-- this size. Same first letter is the usual spell-checker assumption.
CREATE INDEX title_words_initial_length_idx ON title_words (left(word, 1), length(word));
