-- Typo tolerance without a trigram scan of every title: the words of all titles, each
-- once, with a trigram index. A search replaces each of its words by itself or the
-- title words like it (trigram word similarity), then runs one full-text query, which
-- the tsvector's GIN index answers. A trigram scan of the titles themselves cost a
-- millisecond or more per search even through its index.
CREATE TABLE title_words (word text PRIMARY KEY);
CREATE INDEX title_words_trgm_idx ON title_words USING gin (word gin_trgm_ops);

CREATE FUNCTION remember_title_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO title_words (word)
  SELECT DISTINCT w FROM regexp_split_to_table(lower(NEW.title), '[^[:alnum:]]+') AS w WHERE w <> ''
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$;

-- Words of renamed or deleted films stay: an extra alternative that matches no title
-- costs nothing.
CREATE TRIGGER films_title_words AFTER INSERT OR UPDATE OF title ON films
  FOR EACH ROW EXECUTE FUNCTION remember_title_words();

INSERT INTO title_words (word)
SELECT DISTINCT w FROM films, regexp_split_to_table(lower(title), '[^[:alnum:]]+') AS w WHERE w <> ''
ON CONFLICT DO NOTHING;

DROP INDEX films_title_trgm_idx;
