-- The film catalogue: films, genres, persons and who did what.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE genres (
    id   uuid PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE persons (
    id        uuid PRIMARY KEY,
    full_name text NOT NULL UNIQUE
);
CREATE INDEX persons_name_trgm_idx ON persons USING gin (lower(full_name) gin_trgm_ops);
CREATE INDEX persons_name_fts_idx ON persons USING gin (to_tsvector('simple', full_name));

CREATE TABLE films (
    id                uuid     PRIMARY KEY,
    title             text     NOT NULL,
    release_date      date,
    imdb_rating       real,
    imdb_votes        integer,
    rotten_tomatoes   smallint,
    mpaa_rating       text,
    -- Russian age classification: 0, 6, 12, 16 or 18 (+).
    age_class         smallint NOT NULL CHECK (age_class IN (0, 6, 12, 16, 18)),
    access_tier       text     NOT NULL CHECK (access_tier IN ('free', 'subscription')),
    running_time_min  smallint,
    distributor       text,
    source            text,
    creative_type     text,
    us_gross          bigint,
    worldwide_gross   bigint,
    production_budget bigint,
    search            tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED
);
CREATE INDEX films_search_idx ON films USING gin (search);
CREATE INDEX films_title_trgm_idx ON films USING gin (lower(title) gin_trgm_ops);
CREATE INDEX films_rating_idx ON films (imdb_rating DESC NULLS LAST, id);
CREATE INDEX films_release_idx ON films (release_date DESC NULLS LAST, id);

CREATE TABLE film_genres (
    film_id  uuid NOT NULL REFERENCES films (id) ON DELETE CASCADE,
    genre_id uuid NOT NULL REFERENCES genres (id) ON DELETE CASCADE,
    PRIMARY KEY (film_id, genre_id)
);
CREATE INDEX film_genres_genre_idx ON film_genres (genre_id);

CREATE TABLE film_persons (
    film_id   uuid NOT NULL REFERENCES films (id) ON DELETE CASCADE,
    person_id uuid NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('director', 'actor', 'writer')),
    PRIMARY KEY (film_id, person_id, role)
);
CREATE INDEX film_persons_person_idx ON film_persons (person_id);
