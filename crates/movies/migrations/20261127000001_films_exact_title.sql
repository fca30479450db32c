-- A search finds a film by its exact title (any case), besides its words: a title made
-- only of stop words ("Up", "Once", "She's All That") has an empty tsvector, which no
-- text-search query matches. The equality is answered by this index, beside the GIN
-- index of the words (a BitmapOr), so the common search path stays as cheap.
CREATE INDEX films_title_lower_idx ON films (lower(title));
