//! Every catalogue endpoint, as an anonymous viewer (who may see up to 16+).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Auth, Movies, assert_problem, birth_date, titles};

async fn movies() -> (Auth, Movies) {
    let auth = Auth::in_process().await;
    let movies = Movies::start(&auth.url).await;
    (auth, movies)
}

#[tokio::test]
async fn films_list_sorts_filters_and_pages_within_the_age_limit() {
    let (_auth, movies) = movies().await;
    let page = movies.json("/api/v1/films", None).await;
    // Adults Only Night (18+) is left out for an anonymous viewer.
    assert_eq!(titles(&page), ["1941", "Classic Masterpiece", "Family Picnic", "Grown Up Drama", "Teen Spirit", "The Matrix"]);
    assert_eq!(page["page"]["total"], 6);
    let first = &page["items"][0];
    assert_eq!(first["title"], "Classic Masterpiece", "sorted by rating, best first");
    assert_eq!(first["age_class"], 6);
    assert_eq!(first["access_tier"], "subscription");

    let ascending = movies.json("/api/v1/films?sort=imdb_rating", None).await;
    assert_eq!(ascending["items"][0]["title"], "1941");
    let newest = movies.json("/api/v1/films?sort=-release_date", None).await;
    assert_eq!(newest["items"][0]["title"], "Teen Spirit");
    let by_title = movies.json("/api/v1/films?sort=title", None).await;
    assert_eq!(by_title["items"][0]["title"], "1941");

    let page2 = movies.json("/api/v1/films?page%5Bnumber%5D=2&page%5Bsize%5D=4", None).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 2);
    assert_eq!(page2["page"], serde_json::json!({"number": 2, "size": 4, "total": 6}));

    let genres: Vec<Value> = movies.json("/api/v1/genres", None).await.as_array().unwrap().clone();
    let drama = genres.iter().find(|g| g["name"] == "Drama").unwrap()["id"].as_str().unwrap().to_owned();
    let dramas = movies.json(&format!("/api/v1/films?genre={drama}"), None).await;
    assert_eq!(titles(&dramas), ["Classic Masterpiece", "Grown Up Drama"]);
}

#[tokio::test]
async fn bad_list_parameters_are_422_naming_the_parameter() {
    let (_auth, movies) = movies().await;
    for (query, field) in [
        ("sort=popularity", "sort"),
        ("page%5Bsize%5D=0", "page[size]"),
        ("page%5Bsize%5D=101", "page[size]"),
        ("page%5Bnumber%5D=0", "page[number]"),
        ("page%5Bnumber%5D=1000000", "page[number]"),
        ("page%5Bsize%5D=abc", "page[size]"),
        ("genre=not-a-uuid", "genre"),
        // Named by serde inside its message, not as a path prefix: was reported as
        // `query`, on the search endpoints a real parameter.
        ("page%5Bsize%5D=1&page%5Bsize%5D=2", "page[size]"),
        ("query=matrix&page%5Bsize%5D=1&page%5Bsize%5D=2", "page[size]"),
        ("query=matrix&query=neo", "query"),
    ] {
        let path = if query.starts_with("query=") { "/api/v1/films/search" } else { "/api/v1/films" };
        let response = movies.get(&format!("{path}?{query}"), None).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}

/// The search box reads `or` and `-word` as a web search does, in which titles match
/// as well as in their ranking: `matrix -reloaded` found only "The Matrix Reloaded",
/// and `godfather or matrix` nothing.
#[tokio::test]
async fn search_honours_or_and_minus_as_a_web_search_box_does() {
    let (_auth, movies) = movies().await;
    movies
        .load_with_fixture(serde_json::json!([
            {"Title": "The Matrix Reloaded", "MPAA Rating": "PG-13", "Release Date": "May 15 2003", "IMDB Rating": 7.2},
            {"Title": "The Godfather", "MPAA Rating": "PG", "Release Date": "Mar 15 1972", "IMDB Rating": 9.2},
            {"Title": "Dead or Alive", "MPAA Rating": "PG", "Release Date": "Jan 01 2006", "IMDB Rating": 4.8},
        ]))
        .await;
    let search = |query: &'static str| {
        let movies = &movies;
        async move {
            let mut found = titles(&movies.json(&format!("/api/v1/films/search?query={query}"), None).await);
            found.sort();
            found
        }
    };
    assert_eq!(search("matrix").await, ["The Matrix", "The Matrix Reloaded"]);
    assert_eq!(search("matrix%20-reloaded").await, ["The Matrix"]);
    assert_eq!(search("godfather%20or%20matrix").await, ["The Godfather", "The Matrix", "The Matrix Reloaded"]);
    assert_eq!(search("godfather%20OR%20matrx%20-reloaded").await, ["The Godfather", "The Matrix"], "typos are tolerated in each alternative");
    // Without operators every word must match, and a hyphen inside a word is no minus.
    assert_eq!(search("godfather%20matrix").await, Vec::<String>::new());
    assert_eq!(search("-reloaded%20or%20godfather").await, ["The Godfather"], "exclusions alone find nothing");
    assert_eq!(search("matrix-reloaded").await, ["The Matrix Reloaded"]);
    // A title with "or" in it is still found first by its whole name.
    let dead_or_alive = movies.json("/api/v1/films/search?query=dead%20or%20alive", None).await;
    assert_eq!(titles(&dead_or_alive)[0], "Dead or Alive");
}

/// The query is read into words in Rust, as PostgreSQL read it in the database's
/// `C.UTF-8` (`[[:space:]]`, `[[:alnum:]]`, `lower()`), which the title words were split
/// with: a no-break space (U+00A0, U+2007, U+202F) separates no tokens, so the minus
/// after it is no exclusion, while the ideographic space (U+3000) does; "İ" lowers to
/// "i" alone (Rust's `to_lowercase` adds a combining dot, which split "matrİx" in two);
/// "²" ends a word (Rust's `is_alphanumeric` takes it for a digit, and "-x²reloaded" left
/// out only the phrase "x reloaded").
#[tokio::test]
async fn search_reads_spaces_letters_and_case_as_postgresql_does() {
    let (_auth, movies) = movies().await;
    movies
        .load_with_fixture(serde_json::json!([
            {"Title": "The Matrix Reloaded", "MPAA Rating": "PG-13", "Release Date": "May 15 2003", "IMDB Rating": 7.2},
            {"Title": "The Godfather", "MPAA Rating": "PG", "Release Date": "Mar 15 1972", "IMDB Rating": 9.2},
        ]))
        .await;
    for (query, expected) in [
        ("matrix%C2%A0-reloaded", vec!["The Matrix Reloaded"]),
        ("matrix%E2%80%87-reloaded", vec!["The Matrix Reloaded"]),
        ("matrix%E2%80%AF-reloaded", vec!["The Matrix Reloaded"]),
        ("matrix%E3%80%80-reloaded", vec!["The Matrix"]),
        ("godfather%E3%80%80or%E3%80%80reloaded", vec!["The Godfather", "The Matrix Reloaded"]),
        ("MATR%C4%B0X%20-reloaded", vec!["The Matrix"]),
        ("matr%C4%B0x%20-reloaded", vec!["The Matrix"]),
        ("matrix%20-x%C2%B2reloaded", vec!["The Matrix"]),
    ] {
        assert_eq!(titles(&movies.json(&format!("/api/v1/films/search?query={query}"), None).await), expected, "{query}");
    }
}

#[tokio::test]
async fn search_finds_titles_despite_typos_and_respects_the_age_limit() {
    let (_auth, movies) = movies().await;
    let exact = movies.json("/api/v1/films/search?query=matrix", None).await;
    assert_eq!(titles(&exact), ["The Matrix"]);
    let typo = movies.json("/api/v1/films/search?query=matrx", None).await;
    assert_eq!(titles(&typo), ["The Matrix"]);
    let stemmed = movies.json("/api/v1/films/search?query=dramas", None).await;
    assert_eq!(titles(&stemmed), ["Grown Up Drama"]);
    // Every word must match, each as typed or as a title word like it.
    let two_typos = movies.json("/api/v1/films/search?query=grownn%20dramma", None).await;
    assert_eq!(titles(&two_typos), ["Grown Up Drama"]);
    let one_unknown = movies.json("/api/v1/films/search?query=matrix%20zzzqqq", None).await;
    assert_eq!(one_unknown["page"]["total"], 0);
    let punctuation = movies.json("/api/v1/films/search?query=%21%3F%27%22", None).await;
    assert_eq!(punctuation["page"]["total"], 0, "no words, no films, no error");
    let hidden = movies.json("/api/v1/films/search?query=adults%20only", None).await;
    assert_eq!(hidden["page"]["total"], 0, "18+ is not found by an anonymous viewer");
    for query in ["", "%20%20", &"x".repeat(201)] {
        let response = movies.get(&format!("/api/v1/films/search?query={query}"), None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let missing = movies.get("/api/v1/films/search", None).await;
    assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

/// A stop word of the query ("the", "a", "in") stood for the title words like it while
/// the full-text index ignores the word itself, so "the matrix" asked for "matrix" and
/// one of "thin", "then", ...: once any title held such a word, the film's own title
/// found nothing (1,430 of the demo catalogue's 3,201 titles).
#[tokio::test]
async fn a_search_with_stop_words_still_finds_the_title() {
    let (_auth, movies) = movies().await;
    movies.load_with_fixture(serde_json::json!([{"Title": "The Thin Man", "MPAA Rating": "PG", "Release Date": "May 25 1934"}])).await;
    for query in ["the%20matrix", "The%20Matrix", "matrix%20the", "a%20matrix%20in%20the"] {
        assert_eq!(titles(&movies.json(&format!("/api/v1/films/search?query={query}"), None).await), ["The Matrix"], "{query}");
    }
    assert_eq!(titles(&movies.json("/api/v1/films/search?query=the%20thin%20man", None).await), ["The Thin Man"]);
    assert_eq!(titles(&movies.json("/api/v1/films/search?query=thin", None).await), ["The Thin Man"]);
    assert_eq!(titles(&movies.json("/api/v1/films/search?query=grown%20up%20drama", None).await), ["Grown Up Drama"]);
    // Stop words alone find nothing, rather than the titles with words like them.
    assert_eq!(movies.json("/api/v1/films/search?query=the", None).await["page"]["total"], 0);
    // "-matrix" leaves out the titles with "matrix", and names nothing to find: it finds
    // nothing, not every film without "matrix".
    assert_eq!(movies.json("/api/v1/films/search?query=-matrix", None).await["page"]["total"], 0);
}

/// A title made only of stop words ("Up", "Once", "She's All That": six of the demo
/// catalogue) has an empty tsvector, so no search found it, not even its exact title;
/// and an exact title ranked below longer titles holding it ("District 9" above "9").
#[tokio::test]
async fn a_search_for_an_exact_title_finds_it_first_even_when_all_its_words_are_stop_words() {
    let (_auth, movies) = movies().await;
    movies
        .load_with_fixture(serde_json::json!([
            {"Title": "Up", "MPAA Rating": "PG", "Release Date": "May 29 2009", "IMDB Rating": 8.4},
            {"Title": "She's All That", "MPAA Rating": "PG-13", "Release Date": "Jan 29 1999", "IMDB Rating": 5.4},
            {"Title": 9, "MPAA Rating": "PG-13", "Release Date": "Sep 09 2009", "IMDB Rating": 7.8},
            {"Title": "District 9", "MPAA Rating": "R", "Release Date": "Aug 14 2009", "IMDB Rating": 8.3},
        ]))
        .await;
    let in_order =
        |page: Value| -> Vec<String> { page["items"].as_array().unwrap().iter().map(|f| f["title"].as_str().unwrap().to_owned()).collect() };
    for (query, expected) in [
        ("up", vec!["Up"]),
        ("UP", vec!["Up"]),
        ("she%27s%20all%20that", vec!["She's All That"]),
        ("She%27s%20All%20That", vec!["She's All That"]),
        ("9", vec!["9", "District 9"]),
        ("district%209", vec!["District 9"]),
    ] {
        assert_eq!(in_order(movies.json(&format!("/api/v1/films/search?query={query}"), None).await), expected, "{query}");
    }
    // Only the whole title: stop words that are part of a title still find nothing.
    assert_eq!(movies.json("/api/v1/films/search?query=all%20that", None).await["page"]["total"], 0);
}

/// A query without lexemes (`%`, punctuation, only stop words) made PostgreSQL send a
/// NOTICE for its empty text-search query, which sqlx logs at INFO: any client could
/// write a log line per request, varying the query to pass the cache.
#[tokio::test]
async fn searches_without_lexemes_write_no_log_line() {
    let (logs, _logging) = platform::testing::CapturedLogs::capture(tracing::Level::INFO);
    let (_auth, movies) = movies().await;
    // Six sizes each: the cache keys differ, and PostgreSQL switches a statement to its
    // generic plan after five runs, which must be as quiet as the first.
    for size in 1..=6 {
        for query in ["%25", "%21%3F", "the", "a%20the", "-the", "%22the%22%20or"] {
            for path in ["/api/v1/films/search", "/api/v1/persons/search"] {
                let found = movies.json(&format!("{path}?query={query}&page%5Bsize%5D={size}"), None).await;
                assert_eq!(found["page"]["total"], 0, "{path}?query={query}: {found}");
            }
        }
    }
    // A notice of our own, on the service's pool: the capture would have seen theirs.
    sqlx::query("DO $$ BEGIN RAISE NOTICE 'control notice'; END $$").execute(&movies.state.db).await.unwrap();
    let text = logs.text();
    let notices: Vec<&str> = text.lines().filter(|line| line.contains("sqlx::postgres::notice")).collect();
    assert_eq!(notices.len(), 1, "{} notice lines, the first: {:#?}", notices.len(), &notices[..notices.len().min(2)]);
    assert!(notices[0].contains("control notice"), "{notices:#?}");
}

/// A page past the last still reports how many results there are, as the film list
/// does: the search's count rode on the page's rows, and an empty page said 0.
#[tokio::test]
async fn searches_report_their_total_past_the_last_page() {
    let (_auth, movies) = movies().await;
    let films = "/api/v1/films/search?query=matrix&page%5Bsize%5D=1";
    assert_eq!(movies.json(&format!("{films}&page%5Bnumber%5D=1"), None).await["page"]["total"], 1);
    let past = movies.json(&format!("{films}&page%5Bnumber%5D=5"), None).await;
    assert_eq!(past["items"], serde_json::json!([]));
    assert_eq!(past["page"]["total"], 1, "{past}");
    let persons = "/api/v1/persons/search?query=bob%20maker&page%5Bsize%5D=1";
    let total = movies.json(&format!("{persons}&page%5Bnumber%5D=1"), None).await["page"]["total"].clone();
    assert!(total.as_i64().unwrap() >= 1, "{total}");
    let past = movies.json(&format!("{persons}&page%5Bnumber%5D=50"), None).await;
    assert_eq!(past["items"], serde_json::json!([]));
    assert_eq!(past["page"]["total"], total, "{past}");
}

#[tokio::test]
async fn film_details_carry_genres_and_directors() {
    let (_auth, movies) = movies().await;
    let id = movies.film_id("Grown Up Drama").await;
    let film = movies.json(&format!("/api/v1/films/{id}"), None).await;
    assert_eq!(film["title"], "Grown Up Drama");
    assert_eq!(film["mpaa_rating"], "R");
    assert_eq!(film["age_class"], 16);
    assert_eq!(film["access_tier"], "free");
    assert_eq!(film["genres"][0]["name"], "Drama");
    assert_eq!(film["directors"][0]["full_name"], "Ann Director");
    assert_eq!(film["release_date"], "1999-10-01");

    assert_problem(movies.get(&format!("/api/v1/films/{}", uuid::Uuid::new_v4()), None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(movies.get("/api/v1/films/nope", None).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn genres_and_persons_are_served() {
    let (auth, movies) = movies().await;
    let genres = movies.json("/api/v1/genres", None).await;
    let names: Vec<&str> = genres.as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Action", "Comedy", "Drama"]);
    let comedy = genres.as_array().unwrap().iter().find(|g| g["name"] == "Comedy").unwrap();
    assert_eq!(comedy["film_count"], 3);
    let one = movies.json(&format!("/api/v1/genres/{}", comedy["id"].as_str().unwrap()), None).await;
    assert_eq!(&one, comedy);
    assert_problem(movies.get(&format!("/api/v1/genres/{}", uuid::Uuid::new_v4()), None).await, StatusCode::NOT_FOUND, "not_found").await;
    // Counts are of the films the viewer may see: anonymous viewers see up to 16+, so
    // the 18+ drama is not counted for them, nor their answer, once cached, served to
    // others (the cache is written in the background: waited for, or a key without
    // the class could pass unseen).
    let adult = auth.viewer(&[], Some("1980-01-01")).await;
    movies.cached("genres:16").await;
    let drama = |genres: &serde_json::Value| genres.as_array().unwrap().iter().find(|g| g["name"] == "Drama").unwrap()["film_count"].clone();
    assert_eq!(drama(&genres), 2);
    assert_eq!(drama(&movies.json("/api/v1/genres", Some(&adult.access)).await), 3);
    assert_eq!(drama(&movies.json("/api/v1/genres", None).await), 2);

    let found = movies.json("/api/v1/persons/search?query=spilberg", None).await;
    assert_eq!(found["items"][0]["full_name"], "Steven Spielberg", "typo tolerated");
    let bob = movies.json("/api/v1/persons/search?query=bob%20maker", None).await;
    let bob = &bob["items"][0];
    assert_eq!(bob["roles"], serde_json::json!(["director"]));
    assert_eq!(bob["film_count"], 1, "the 18+ film is not counted for an anonymous viewer");
    let id = bob["id"].as_str().unwrap();
    let anonymous = movies.json(&format!("/api/v1/persons/{id}"), None).await;
    assert_eq!((&anonymous["full_name"], &anonymous["film_count"]), (&serde_json::json!("Bob Maker"), &serde_json::json!(1)));
    movies.cached(&format!("person:{}:16", id.replace('-', ""))).await;
    movies.cached("persons:16:*:bob maker").await;
    assert_eq!(movies.json(&format!("/api/v1/persons/{id}"), Some(&adult.access)).await["film_count"], 2);
    assert_eq!(movies.json("/api/v1/persons/search?query=bob%20maker", Some(&adult.access)).await["items"][0]["film_count"], 2);
    let films = movies.json(&format!("/api/v1/persons/{id}/film"), None).await;
    let films: Vec<&str> = films.as_array().unwrap().iter().map(|f| f["title"].as_str().unwrap()).collect();
    assert_eq!(films, ["Classic Masterpiece"], "the 18+ film of the person is left out for anonymous viewers");
    assert_problem(movies.get(&format!("/api/v1/persons/{}", uuid::Uuid::new_v4()), None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(movies.get(&format!("/api/v1/persons/{}/film", uuid::Uuid::new_v4()), None).await, StatusCode::NOT_FOUND, "not_found").await;

    // A person all of whose films are hidden from the viewer is not named to them: the
    // director of The Matrix (16+) for a twelve-year-old, whatever they ask first.
    let child = auth.viewer(&[], Some(&birth_date(13))).await;
    let lana = movies.json("/api/v1/persons/search?query=wachowski", Some(&child.access)).await;
    assert_eq!((lana["items"].as_array().unwrap().len(), &lana["page"]["total"]), (0, &serde_json::json!(0)), "{lana}");
    let past = movies.json("/api/v1/persons/search?query=wachowski&page%5Bnumber%5D=2", Some(&child.access)).await;
    assert_eq!(past["page"]["total"], 0, "{past}");
    let lana = movies.json("/api/v1/persons/search?query=wachowski", None).await;
    assert_eq!((&lana["items"][0]["film_count"], &lana["page"]["total"]), (&serde_json::json!(1), &serde_json::json!(1)), "{lana}");
    let lana = lana["items"][0]["id"].as_str().unwrap().to_owned();
    for path in [format!("/api/v1/persons/{lana}"), format!("/api/v1/persons/{lana}/film")] {
        assert_problem(movies.get(&path, Some(&child.access)).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Bob Maker stays listed for the child through his PG film, his 18+ film uncounted.
    let bob = movies.json("/api/v1/persons/search?query=bob%20maker", Some(&child.access)).await;
    assert_eq!((&bob["items"][0]["roles"], &bob["items"][0]["film_count"]), (&serde_json::json!(["director"]), &serde_json::json!(1)));
}

#[tokio::test]
async fn answers_are_cached_in_redis_and_served_from_the_database_without_it() {
    let (auth, movies) = movies().await;
    let id = movies.film_id("Family Picnic").await;
    let path = format!("/api/v1/films/{id}");
    assert_eq!(movies.json(&path, None).await["title"], "Family Picnic");
    // Once the detail is cached (written after the answer is sent), a change in the
    // database does not show until the TTL.
    movies.cached(&format!("film:{}", id.simple())).await;
    sqlx::query("UPDATE films SET title = 'Changed' WHERE id = $1").bind(id).execute(&movies.state.db).await.unwrap();
    let cached = movies.json(&path, None).await;
    assert_eq!(cached["title"], "Family Picnic");

    // With Redis unreachable, the same answers come from the database, never an error.
    let without_redis =
        Movies::start_with(&auth.url, crate::helpers::MoviesOptions { vars: vec![("REDIS_URL", "redis://127.0.0.1:1".into())] }).await;
    let page = without_redis.json("/api/v1/films", None).await;
    assert_eq!(page["page"]["total"], 6);
    assert_eq!(without_redis.json("/api/v1/genres", None).await.as_array().unwrap().len(), 3);
}

/// Film ids held the record's place in the file and the loader deleted nothing: a
/// record removed moved every later film to a new id, beside its old one (the bundled
/// file, then it without its first record: 6,398 films).
#[tokio::test]
async fn loading_a_changed_file_updates_the_catalogue_in_place() {
    let (_auth, movies) = movies().await;
    let db = &movies.state.db;
    let catalogue = || async {
        let films: Vec<(String, uuid::Uuid)> = sqlx::query_as("SELECT title, id FROM films ORDER BY title").fetch_all(db).await.unwrap();
        let links: i64 =
            sqlx::query_scalar("SELECT (SELECT count(*) FROM film_genres) + (SELECT count(*) FROM film_persons)").fetch_one(db).await.unwrap();
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM genres UNION ALL SELECT full_name FROM persons ORDER BY 1").fetch_all(db).await.unwrap();
        (films, links, names)
    };
    let load = |records: Vec<Value>| async move {
        let records: Vec<movies::demo::Record> = serde_json::from_value(Value::Array(records)).unwrap();
        movies::demo::load(db, &records).await.unwrap();
    };
    let (films, links, names) = catalogue().await;
    // A file with no film is refused, rather than replace the catalogue with nothing.
    let empty = movies::demo::load(db, &[]).await.unwrap_err();
    assert!(empty.to_string().contains("no film"), "{empty}");
    assert_eq!(catalogue().await, (films.clone(), links, names.clone()));
    let mut records: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(crate::helpers::FIXTURE).unwrap()).unwrap();
    // The only film of its director and the only action film, before a film of 1941.
    let only = records.iter().position(|r| r["Title"] == "The Matrix").unwrap();
    let removed = records.remove(only);
    assert_eq!((removed["Director"].as_str(), removed["Major Genre"].as_str()), (Some("Lana Wachowski"), Some("Action")), "{removed}");
    load(records.clone()).await;
    let (fewer, fewer_links, fewer_names) = catalogue().await;
    let expected: Vec<_> = films.iter().filter(|(title, _)| title != "The Matrix").cloned().collect();
    assert_eq!(fewer, expected, "the other films keep their ids; the film no longer in the file is gone");
    assert_eq!(fewer_links, links - 2, "with its genre and director links");
    let expected: Vec<_> = names.iter().filter(|n| *n != "Action" && *n != "Lana Wachowski").cloned().collect();
    assert_eq!(fewer_names, expected, "a genre or person no longer in the file is gone");
    // Back, first in the file this time: every film has the id it had.
    records.insert(0, removed);
    load(records).await;
    assert_eq!(catalogue().await, (films, links, names));
}

#[tokio::test]
async fn the_load_demo_command_loads_the_bundled_catalogue_idempotently() {
    let database = crate::helpers::Database::new("movies");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_movies"))
            .arg("load-demo")
            .env("MOVIES_DATABASE_URL", &database.url)
            .env("MOVIES_REDIS_KEY_PREFIX", format!("test:{}", uuid::Uuid::new_v4().simple()))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let output = run();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "loaded 3201 films, 12 genres, 550 persons");
    }
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    let counts: (i64, i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM films), (SELECT count(*) FROM genres), (SELECT count(*) FROM persons)")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(counts, (3201, 12, 550));
    let classes: Vec<(i16, i64)> = sqlx::query_as("SELECT age_class, count(*) FROM films GROUP BY 1 ORDER BY 1").fetch_all(&db).await.unwrap();
    assert_eq!(classes.iter().map(|(_, n)| n).sum::<i64>(), 3201);
    assert_eq!(classes.len(), 5, "{classes:?}");

    // Searches read no pending list of new index entries, and are planned with statistics.
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pgstattuple").execute(&db).await.unwrap();
    let gin: Vec<(String, Option<Vec<String>>, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.reloptions, (pgstatginindex(c.oid)).pending_tuples
           FROM pg_class c JOIN pg_am am ON am.oid = c.relam
          WHERE am.amname = 'gin' AND c.relnamespace = 'public'::regnamespace ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(gin.len(), 4, "{gin:?}");
    for (index, options, pending) in &gin {
        assert!(options.as_deref().unwrap_or_default().contains(&"fastupdate=off".to_owned()), "{index}: {options:?}");
        assert_eq!(*pending, 0, "{index}");
    }
    let analyzed: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_user_tables
          WHERE relname IN ('films', 'film_genres', 'film_persons', 'genres', 'persons', 'title_words') AND last_analyze IS NOT NULL ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(analyzed, ["film_genres", "film_persons", "films", "genres", "persons", "title_words"]);
    db.close().await;
}

/// Answers are cached per age class: an adult's answer, cached first, is never served
/// to a viewer of a lower class (search and a person's films, whose cache keys once
/// could lose the class without any test noticing), nor a child's to an adult.
#[tokio::test]
async fn cached_answers_of_one_age_class_never_reach_another() {
    let (auth, movies) = movies().await;
    // The cache is filled in the background: each answer below is in Redis before the
    // next viewer asks, or a wrong key could pass unseen.
    let adult = auth.viewer(&[], Some("1980-01-01")).await;
    let child = auth.viewer(&[], Some(&birth_date(13))).await;
    let search = "/api/v1/films/search?query=adults%20only";
    assert_eq!(movies.json(search, Some(&adult.access)).await["page"]["total"], 1, "the adult finds the 18+ film");
    movies.cached("search:18:*:adults only").await;
    assert_eq!(movies.json(search, None).await["page"]["total"], 0, "not from the adult's cached answer");
    assert_eq!(movies.json(search, Some(&child.access)).await["page"]["total"], 0);

    let bob = movies.json("/api/v1/persons/search?query=bob%20maker", None).await["items"][0]["id"].as_str().unwrap().to_owned();
    let films = |page: Value| page.as_array().unwrap().iter().map(|f| f["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let path = format!("/api/v1/persons/{bob}/film");
    assert_eq!(films(movies.json(&path, Some(&adult.access)).await).len(), 2, "the adult sees both of Bob Maker's films");
    movies.cached(&format!("person-films:{}:18", bob.replace('-', ""))).await;
    assert_eq!(films(movies.json(&path, None).await), ["Classic Masterpiece"]);
    assert_eq!(films(movies.json(&path, Some(&child.access)).await), ["Classic Masterpiece"]);

    // The other way round: a lower class's answer, cached first, does not cap the adult.
    let other = "/api/v1/films/search?query=adults%20only%20night";
    assert_eq!(movies.json(other, Some(&child.access)).await["page"]["total"], 0);
    movies.cached("search:12:*:adults only night").await;
    assert_eq!(movies.json(other, Some(&adult.access)).await["page"]["total"], 1);
}

/// Search's statements are planned once per connection, not at every search: with the
/// words and the tolerant query in plain sight of the planner, a plan made for them was
/// costed below the generic plan, and PostgreSQL planned each statement again at every
/// run, which took as long as running it. On the demo catalogue: the planner's choice
/// turns on the statistics, and the few films of the fixture hid it for the films'
/// statement.
#[tokio::test]
async fn searches_plan_their_statements_once_per_connection() {
    let (_auth, movies) = movies().await;
    let demo = movies::demo::read(std::path::Path::new(movies::demo::DEFAULT_DATASET)).unwrap();
    movies::demo::load(&movies.state.db, &demo).await.unwrap();
    // One connection, so that its prepared statements are the ones searched with.
    let options = (*movies.state.db.connect_options()).clone();
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let paging = movies::catalog::Paging { number: 1, size: 50 };
    let queries = [
        "matrix",
        "matrx",
        "grown up drama",
        "godfather or matrix",
        "matrix -reloaded",
        "dramma",
        "teen",
        "family picnic",
        "classic",
        "the matrix",
        "spirit",
        "1941",
    ];
    for query in queries {
        movies::catalog::films::search(&db, 16, query, paging).await.unwrap();
    }
    let plans: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
          WHERE (statement LIKE '%title_words%' OR statement LIKE '%films f%') AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(plans.len(), 2, "the words' statement and the films': {plans:#?}");
    for (statement, generic, custom) in plans {
        // PostgreSQL plans the first five runs for their values, then compares.
        assert_eq!((generic, custom), (queries.len() as i64 - 5, 5), "{statement}");
    }
}

/// The service's connections compile no statement to machine code: search's plan was
/// costed past PostgreSQL's JIT thresholds while it split the query's words in SQL
/// (1,000 rows counted for each split), and compiling took about 400 ms of CPU for a
/// statement that runs in 1 ms, which took uncached search from about 2,000 to 5 per
/// second. None of the catalogue's statements reads enough rows for JIT to pay. This
/// server's own default (`jit = on`) is what the service turns off.
#[tokio::test]
async fn searches_are_not_jit_compiled() {
    let (_auth, movies) = movies().await;
    let server_default: String = sqlx::query_scalar("SELECT boot_val FROM pg_settings WHERE name = 'jit'").fetch_one(&movies.state.db).await.unwrap();
    assert_eq!(server_default, "on", "PostgreSQL's default, which the test relies on");
    let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(&movies.state.db).await.unwrap();
    assert_eq!(jit, "off", "every pooled connection");
}
